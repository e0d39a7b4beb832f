//! One event of every type, with realistic values: what a custom template is checked
//! against when it is saved, and what `/test` can preview.

use crate::domain::notify::event::{Event, EventData, EventId, EventType, TaskEvent, VideoRef};
use crate::domain::task::{FailureReason, TaskStatus};
use crate::domain::task_id::TaskId;

fn task_id(raw: &str) -> TaskId {
    // Literal ids from the task id alphabet.
    TaskId::parse(raw).unwrap_or_else(|_| unreachable!("{raw} is a valid task id"))
}

pub fn all() -> Vec<Event> {
    let stored = task_id("sample-stored-1");
    let failed = task_id("sample-failed-1");
    vec![
        Event {
            id: EventId::for_task(&stored, TaskStatus::Stored, 3),
            event_type: EventType::TaskStored,
            data: EventData::Task(TaskEvent {
                task_id: stored.clone(),
                status: TaskStatus::Stored,
                upstream_code: 200,
                failure_reason: None,
                video: Some(VideoRef {
                    bucket: "music-videos".into(),
                    key: "videos/sample-stored-1.mp4".into(),
                    bytes: 48_234_112,
                    sha256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into(),
                    url: Some("https://music-videos.s3.amazonaws.com/videos/sample-stored-1.mp4?X-Amz-Signature=sample".into()),
                    url_expires_at: Some("2026-11-18T12:06:40.000Z".into()),
                }),
            }),
        },
        Event {
            id: EventId::for_task(&failed, TaskStatus::Failed, 2),
            event_type: EventType::TaskFailed,
            data: EventData::Task(TaskEvent {
                task_id: failed,
                status: TaskStatus::Failed,
                upstream_code: 451,
                failure_reason: Some(FailureReason::UpstreamFailed),
                video: None,
            }),
        },
        Event {
            id: EventId::derive(&["batch", "sample", "1"]),
            event_type: EventType::BatchCompleted,
            data: EventData::Batch {
                count: 2,
                task_ids: vec![stored, task_id("sample-stored-2")],
                partial: false,
            },
        },
        Event {
            id: EventId::derive(&["drain", "sample", "1"]),
            event_type: EventType::QueueDrained,
            data: EventData::Drained {
                busy_since: "2026-11-18T10:00:00.000Z".into(),
                completed: 12,
            },
        },
        Event {
            id: EventId::derive(&["disabled", "sample", "1"]),
            event_type: EventType::EndpointDisabled,
            data: EventData::Disabled {
                endpoint_id: "ep_sample".into(),
                reason: "failing".into(),
                consecutive_failures: 20,
                failing_since: Some("2026-11-13T10:00:00.000Z".into()),
            },
        },
        Event {
            id: EventId::derive(&["test", "sample", "1"]),
            event_type: EventType::Test,
            data: EventData::Test {
                message: "test notification from the music-video receiver".into(),
            },
        },
    ]
}

#[cfg(test)]
mod tests {
    #[test]
    fn one_of_every_type() {
        let types: Vec<_> = super::all().iter().map(|e| e.event_type).collect();
        assert_eq!(types, crate::domain::notify::EventType::ALL);
    }
}
