//! What a notification says. An [`Event`] is its id, its type and its data; the body a
//! receiver gets is `{type, timestamp, data}` with the timestamp of the send, so a replay
//! keeps the id (receivers deduplicate on it) and gets a new timestamp and signature.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::domain::clock::Timestamp;
use crate::domain::task::{FailureReason, Task, TaskStatus};
use crate::domain::task_id::TaskId;

/// The kinds of event an endpoint can subscribe to. The string form is the body's `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventType {
    #[serde(rename = "task.stored")]
    TaskStored,
    #[serde(rename = "task.failed")]
    TaskFailed,
    /// `n` tasks completed (an endpoint in `batch` mode).
    #[serde(rename = "tasks.batch_completed")]
    BatchCompleted,
    /// No task is open any more after a busy period (an endpoint in `drain` mode).
    #[serde(rename = "tasks.queue_drained")]
    QueueDrained,
    /// An endpoint was disabled (sent to the fallback endpoint).
    #[serde(rename = "endpoint.disabled")]
    EndpointDisabled,
    /// Sent by `POST /endpoints/{id}/test`.
    #[serde(rename = "test")]
    Test,
}

impl EventType {
    pub const ALL: [Self; 6] = [
        Self::TaskStored,
        Self::TaskFailed,
        Self::BatchCompleted,
        Self::QueueDrained,
        Self::EndpointDisabled,
        Self::Test,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::TaskStored => "task.stored",
            Self::TaskFailed => "task.failed",
            Self::BatchCompleted => "tasks.batch_completed",
            Self::QueueDrained => "tasks.queue_drained",
            Self::EndpointDisabled => "endpoint.disabled",
            Self::Test => "test",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An event's id: `evt_` and 32 hex digits of a SHA-256 over what identifies the event,
/// so the same change always gets the same id (a redelivered stream record, a replay)
/// and a different change never does.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EventId(String);

impl EventId {
    const PREFIX: &'static str = "evt_";
    const HEX_LEN: usize = 32;

    /// The id of a task reaching `status` at `revision`: `failed` then `stored` (a revive)
    /// are two events, a redelivery of either is the same one.
    pub fn for_task(task_id: &TaskId, status: TaskStatus, revision: u64) -> Self {
        Self::derive(&[
            "task",
            task_id.as_str(),
            status.as_str(),
            &revision.to_string(),
        ])
    }

    /// The id of anything else, from the parts that identify it (kind first).
    pub fn derive(parts: &[&str]) -> Self {
        let mut hash = Sha256::new();
        for part in parts {
            // Length-prefixed, so ("ab", "c") and ("a", "bc") differ.
            hash.update((part.len() as u64).to_be_bytes());
            hash.update(part.as_bytes());
        }
        let digest = hash.finalize();
        let mut id = String::with_capacity(Self::PREFIX.len() + Self::HEX_LEN);
        id.push_str(Self::PREFIX);
        for b in &digest[..Self::HEX_LEN / 2] {
            id.push(char::from_digit(u32::from(b >> 4), 16).unwrap_or('0'));
            id.push(char::from_digit(u32::from(b & 0xf), 16).unwrap_or('0'));
        }
        Self(id)
    }

    /// An id read back from storage or a route: `evt_` and 32 lowercase hex digits.
    pub fn parse(s: &str) -> Option<Self> {
        let hex = s.strip_prefix(Self::PREFIX)?;
        (hex.len() == Self::HEX_LEN && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            .then(|| Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a stored video is; the URL only when the endpoint asked for one (presigned at
/// send time, short-lived).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VideoRef {
    pub bucket: String,
    pub key: String,
    pub bytes: u64,
    pub sha256: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_expires_at: Option<String>,
}

/// A task's outcome, thin: enough to act on, nothing a receiver must not see.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskEvent {
    pub task_id: TaskId,
    pub status: TaskStatus,
    pub upstream_code: u16,
    /// Present (null) on every task event, so receivers can rely on the key.
    pub failure_reason: Option<FailureReason>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub video: Option<VideoRef>,
}

/// What an event carries, by type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EventData {
    Task(TaskEvent),
    Batch {
        count: usize,
        task_ids: Vec<TaskId>,
        /// Whether `max_wait` flushed it before `n` completions.
        partial: bool,
    },
    Drained {
        /// When the busy period began (its first completion).
        busy_since: String,
        completed: u64,
    },
    Disabled {
        endpoint_id: String,
        reason: String,
        consecutive_failures: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        failing_since: Option<String>,
    },
    Test {
        message: String,
    },
}

/// A notification: its id, its type and its data. The body adds the send's timestamp.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub id: EventId,
    #[serde(rename = "type")]
    pub event_type: EventType,
    pub data: EventData,
}

/// The wire form: `{"type": ..., "timestamp": ..., "data": ...}`.
#[derive(Serialize)]
struct Body<'a> {
    #[serde(rename = "type")]
    event_type: EventType,
    timestamp: String,
    data: &'a EventData,
}

impl Event {
    /// The event for `task`'s current status, if it is an outcome (`stored` with its
    /// video, or `failed`); `None` for every other status.
    pub fn for_task(task: &Task) -> Option<Self> {
        let (event_type, video) = match task.status {
            TaskStatus::Stored => {
                let v = task.video.as_ref()?;
                let video = VideoRef {
                    bucket: v.bucket.clone(),
                    key: v.key.clone(),
                    bytes: v.bytes,
                    sha256: v.sha256.clone(),
                    url: None,
                    url_expires_at: None,
                };
                (EventType::TaskStored, Some(video))
            }
            TaskStatus::Failed => (EventType::TaskFailed, None),
            _ => return None,
        };
        Some(Self {
            id: EventId::for_task(&task.task_id, task.status, task.revision),
            event_type,
            data: EventData::Task(TaskEvent {
                task_id: task.task_id.clone(),
                status: task.status,
                upstream_code: task.upstream_code,
                failure_reason: task.failure_reason,
                video,
            }),
        })
    }

    /// A `test` event for `endpoint_id`, unique to `now` and `nonce`.
    pub fn test(endpoint_id: &str, now: Timestamp, nonce: u64) -> Self {
        Self {
            id: EventId::derive(&[
                "test",
                endpoint_id,
                &now.as_millis().to_string(),
                &nonce.to_string(),
            ]),
            event_type: EventType::Test,
            data: EventData::Test {
                message: "test notification from the music-video receiver".into(),
            },
        }
    }

    /// The task this event is about, if it is a task event.
    pub fn task(&self) -> Option<&TaskEvent> {
        match &self.data {
            EventData::Task(t) => Some(t),
            _ => None,
        }
    }

    /// The body as sent at `at`.
    pub fn body(&self, at: Timestamp) -> Vec<u8> {
        let body = Body {
            event_type: self.event_type,
            timestamp: at.to_rfc3339(),
            data: &self.data,
        };
        // Plain structs of strings and numbers: serialising cannot fail.
        serde_json::to_vec(&body).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::task::{DEFAULT_TASK_TTL, StoredVideo};
    use crate::test_support::envelope;

    fn task(code: u16) -> Task {
        let url = (code == 200).then_some("https://cdn.example/v.mp4");
        Task::from_callback(
            &envelope("task-1", code, url, "m"),
            Timestamp::from_millis(1_795_000_000_000),
            DEFAULT_TASK_TTL,
        )
    }

    #[test]
    fn event_ids_are_deterministic_and_tell_changes_apart() {
        let id = TaskId::parse("task-1").unwrap();
        let a = EventId::for_task(&id, TaskStatus::Stored, 4);
        assert_eq!(a, EventId::for_task(&id, TaskStatus::Stored, 4));
        assert_ne!(a, EventId::for_task(&id, TaskStatus::Stored, 5));
        assert_ne!(a, EventId::for_task(&id, TaskStatus::Failed, 4));
        assert_ne!(
            a,
            EventId::for_task(&TaskId::parse("task-2").unwrap(), TaskStatus::Stored, 4)
        );
        assert_ne!(EventId::derive(&["ab", "c"]), EventId::derive(&["a", "bc"]));
        assert_eq!(a.as_str().len(), 36);
        assert_eq!(EventId::parse(a.as_str()), Some(a.clone()));
        for bad in [
            "",
            "evt_",
            "evt_XYZ",
            "msg_0123456789abcdef0123456789abcdef",
        ] {
            assert_eq!(EventId::parse(bad), None, "{bad}");
        }
        assert_eq!(EventId::parse(&a.as_str().to_uppercase()), None);
    }

    #[test]
    fn only_outcomes_are_events() {
        let received = task(200);
        assert_eq!(Event::for_task(&received), None);
        let mut stored = received.clone();
        stored.status = TaskStatus::Stored;
        assert_eq!(Event::for_task(&stored), None, "stored needs its video");
        stored.video = Some(StoredVideo {
            bucket: "b".into(),
            key: "videos/task-1.mp4".into(),
            bytes: 42,
            sha256: "ab".repeat(32),
            content_type: "video/mp4".into(),
        });
        stored.revision = 3;
        let event = Event::for_task(&stored).unwrap();
        assert_eq!(event.event_type, EventType::TaskStored);
        assert_eq!(
            event.id,
            EventId::for_task(&stored.task_id, TaskStatus::Stored, 3)
        );
        let failed = task(451);
        let event = Event::for_task(&failed).unwrap();
        assert_eq!(event.event_type, EventType::TaskFailed);
        assert_eq!(event.task().unwrap().video, None);
    }

    #[test]
    fn the_body_is_type_timestamp_and_thin_data() {
        let failed = task(451);
        let event = Event::for_task(&failed).unwrap();
        let body: serde_json::Value =
            serde_json::from_slice(&event.body(Timestamp::from_millis(1_795_000_000_123))).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "type": "task.failed",
                "timestamp": "2026-11-18T11:06:40.123Z",
                "data": {
                    "task_id": "task-1",
                    "status": "failed",
                    "upstream_code": 451,
                    "failure_reason": "upstream_failed",
                }
            })
        );
        // A replay: same id, new timestamp.
        let later = event.body(Timestamp::from_millis(1_795_000_060_000));
        assert!(
            String::from_utf8(later)
                .unwrap()
                .contains("2026-11-18T11:07:40.000Z")
        );
    }

    #[test]
    fn event_types_round_trip_through_their_names() {
        for t in EventType::ALL {
            assert_eq!(EventType::parse(t.as_str()), Some(t));
            assert_eq!(
                serde_json::to_value(t).unwrap(),
                serde_json::Value::String(t.as_str().into())
            );
        }
        assert_eq!(EventType::parse("task.downloading"), None);
    }

    #[test]
    fn stored_events_round_trip_through_storage() {
        let event = Event::test("ep_1", Timestamp::from_millis(5), 9);
        let json = serde_json::to_string(&event).unwrap();
        assert_eq!(serde_json::from_str::<Event>(&json).unwrap(), event);
        assert_ne!(
            event.id,
            Event::test("ep_1", Timestamp::from_millis(5), 10).id
        );
    }
}
