//! The receiver's use case: record a verified callback, deduplicating on its task id,
//! written against the [`TaskStore`] port. A new task costs exactly one conditional
//! write; a repeat costs two (the failed put that returns the existing record, then the
//! decided patch). The reconciler replays the inbox through [`record_callback`]; polling
//! already holds the expected record it listed, so it enters at [`record_repeat`].

use std::time::Duration;

use crate::domain::clock::Timestamp;
use crate::domain::envelope::CallbackEnvelope;
use crate::domain::task::{Patch, RecordSource, RepeatDecision, Task, TaskStatus};
use crate::store::{Applied, Created, StoreError, TaskStore};

/// How many times a revive is retried when concurrent writers change the record under it.
const MAX_CONFLICT_RETRIES: usize = 5;

/// What recording a callback did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// First callback for this task; it is now in `status`.
    Created { status: TaskStatus },
    /// Seen before; counted, nothing else changed.
    Duplicate { callback_count: u32 },
    /// A failed task got a success callback and is `received` again, or an expected task
    /// got its outcome.
    Revived { callback_count: u32 },
}

impl Recorded {
    /// The outcome as reported to the sender and in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created { .. } | Self::Revived { .. } => "received",
            Self::Duplicate { .. } => "duplicate",
        }
    }

    /// How many callbacks the task has had, this one included.
    pub fn callback_count(self) -> u32 {
        match self {
            Self::Created { .. } => 1,
            Self::Duplicate { callback_count } | Self::Revived { callback_count } => callback_count,
        }
    }
}

/// Records `envelope` at `now`; a record it creates or changes lives `ttl` from now.
pub async fn record_callback<S: TaskStore>(
    store: &S,
    envelope: &CallbackEnvelope,
    now: Timestamp,
    ttl: Duration,
) -> Result<Recorded, StoreError> {
    let task = Task::from_outcome(envelope, RecordSource::Callback, now, ttl);
    match store.create(&task).await? {
        Created::New => Ok(Recorded::Created {
            status: task.status,
        }),
        Created::Exists(existing) => {
            record_repeat(store, *existing, envelope, RecordSource::Callback, now, ttl).await
        }
    }
}

/// Records `envelope`, from `source`, for a task already on record (`existing`, as read
/// some time ago: a change under it is retried on the current record). Polling starts
/// here, with the expected task it listed, so it never pays for a put bound to fail.
pub async fn record_repeat<S: TaskStore>(
    store: &S,
    mut existing: Task,
    envelope: &CallbackEnvelope,
    source: RecordSource,
    now: Timestamp,
    ttl: Duration,
) -> Result<Recorded, StoreError> {
    for _ in 0..MAX_CONFLICT_RETRIES {
        let (patch, revives) = match existing.on_repeat_outcome(envelope, source, now, ttl) {
            RepeatDecision::Duplicate => (Patch::count_callback(now), false),
            RepeatDecision::Revive(patch) => (patch, true),
        };
        match store.apply(&envelope.task_id, &patch).await? {
            Applied::Done(task) if revives => {
                return Ok(Recorded::Revived {
                    callback_count: task.callback_count,
                });
            }
            Applied::Done(task) => {
                return Ok(Recorded::Duplicate {
                    callback_count: task.callback_count,
                });
            }
            // Changed under us: decide again on what is there now.
            Applied::Conflict(Some(current)) if revives => existing = *current,
            Applied::Conflict(_) => {
                return Err(StoreError::Vanished(envelope.task_id.clone()));
            }
        }
    }
    Err(StoreError::Contended(envelope.task_id.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::envelope::{Outcome, VideoUrl};
    use crate::domain::ssrf::UrlPolicy;
    use crate::domain::task::DEFAULT_TASK_TTL;
    use crate::domain::task_id::TaskId;
    use crate::store::memory::MemoryTaskStore;

    fn envelope(code: u16) -> CallbackEnvelope {
        let outcome = if code == 200 {
            Outcome::Succeeded {
                video_url: VideoUrl::parse("https://cdn.example/v.mp4", &UrlPolicy::default())
                    .unwrap(),
            }
        } else {
            Outcome::Failed { code }
        };
        CallbackEnvelope {
            task_id: TaskId::parse("t-1").unwrap(),
            msg: String::new(),
            outcome,
        }
    }

    #[tokio::test]
    async fn new_duplicate_and_revive() {
        let store = MemoryTaskStore::default();
        let now = Timestamp::from_secs(1_795_000_000);
        let r = record_callback(&store, &envelope(451), now, DEFAULT_TASK_TTL)
            .await
            .unwrap();
        assert_eq!(
            r,
            Recorded::Created {
                status: TaskStatus::Failed
            }
        );
        let r = record_callback(&store, &envelope(451), now, DEFAULT_TASK_TTL)
            .await
            .unwrap();
        assert_eq!(r, Recorded::Duplicate { callback_count: 2 });
        let r = record_callback(&store, &envelope(200), now, DEFAULT_TASK_TTL)
            .await
            .unwrap();
        assert_eq!(r, Recorded::Revived { callback_count: 3 });
        let r = record_callback(&store, &envelope(200), now, DEFAULT_TASK_TTL)
            .await
            .unwrap();
        assert_eq!(r, Recorded::Duplicate { callback_count: 4 });
        let task = store.snapshot(&TaskId::parse("t-1").unwrap()).unwrap();
        assert_eq!(
            (task.status, task.callback_count),
            (TaskStatus::Received, 4)
        );
    }

    #[tokio::test]
    async fn store_errors_propagate() {
        let store = MemoryTaskStore::default();
        store.set_unavailable(true);
        let now = Timestamp::from_secs(1_795_000_000);
        let err = record_callback(&store, &envelope(200), now, DEFAULT_TASK_TTL)
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Unavailable(_)));
        assert!(store.is_empty());
    }
}
