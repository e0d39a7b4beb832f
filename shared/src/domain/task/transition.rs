//! The state machine, in one table: which event may happen in which status, and where
//! it leads. Every patch that changes a status takes its target from here.
//!
//! ```text
//!   registered (POST /tasks) ──► expected ──success callback or poll──► received
//!                                   └──failure callback or poll, never completed──► failed
//!   success callback ──► received ──claim──► downloading ──► stored   (final)
//!   failure callback ──► failed ◄──────────────────┘ │
//!        ▲                 │      ▲                  │ lease ran out (reconciler re-drive)
//!        │                 │      └─── received ◄────┘
//!        └─────────────────┴──► received   (success callback: the upstream failed, then succeeded)
//! ```

use super::TaskStatus;

/// What can happen to a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskEvent {
    SuccessCallback,
    FailureCallback,
    /// Ingest takes the task (from `received`, or over an expired lease).
    Claim,
    /// Ingest finished copying.
    Store,
    /// Ingest failed permanently, or gave up after too many attempts.
    Fail,
    /// Ingest hit a transient error and hands the lease back for a retry.
    Release,
    /// The reconciler hands a stuck task to ingest again (a dead invocation's lease ran
    /// out, or a received task's stream record was lost).
    Redrive,
    /// An expected task's callback never came, nor did polling find an outcome.
    Expire,
}

impl TaskEvent {
    pub const ALL: [Self; 8] = [
        Self::SuccessCallback,
        Self::FailureCallback,
        Self::Claim,
        Self::Store,
        Self::Fail,
        Self::Release,
        Self::Redrive,
        Self::Expire,
    ];
}

/// The result of an event in a state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// The status changes (or is re-entered, for a lease takeover).
    To(TaskStatus),
    /// Accepted without a status change (a duplicate callback, a release).
    Stay,
    /// Not allowed: the writer skips, nothing is written.
    Refused,
}

/// The state machine, in one table.
pub fn transition(from: TaskStatus, event: TaskEvent) -> Transition {
    use TaskEvent as E;
    use TaskStatus as S;
    match (from, event) {
        // The upstream may fail and later succeed: a success revives a failed task; the
        // first outcome of a registered task decides it.
        (S::Failed | S::Expected, E::SuccessCallback) => Transition::To(S::Received),
        (S::Expected, E::FailureCallback | E::Expire) => Transition::To(S::Failed),
        // Any other repeat callback is a duplicate: counted, never a regression.
        (_, E::SuccessCallback | E::FailureCallback) => Transition::Stay,
        (S::Received | S::Downloading, E::Claim) => Transition::To(S::Downloading),
        (S::Downloading, E::Store) => Transition::To(S::Stored),
        (S::Downloading, E::Fail) => Transition::To(S::Failed),
        (S::Downloading, E::Release) => Transition::Stay,
        // Re-entered, so the revision moves and two overlapping reconcilers cannot both win.
        (S::Received | S::Downloading, E::Redrive) => Transition::To(S::Received),
        _ => Transition::Refused,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_event_pair() {
        use TaskEvent as E;
        use TaskStatus as S;
        use Transition::{Refused, Stay, To};
        let expected = |s: S, e: E| -> Transition {
            match (s, e) {
                (S::Received, E::SuccessCallback | E::FailureCallback) => Stay,
                (S::Received, E::Claim) => To(S::Downloading),
                (S::Received, E::Store | E::Fail | E::Release) => Refused,
                (S::Received, E::Redrive) => To(S::Received),
                (S::Received, E::Expire) => Refused,
                (S::Downloading, E::SuccessCallback | E::FailureCallback) => Stay,
                (S::Downloading, E::Claim) => To(S::Downloading),
                (S::Downloading, E::Store) => To(S::Stored),
                (S::Downloading, E::Fail) => To(S::Failed),
                (S::Downloading, E::Release) => Stay,
                (S::Downloading, E::Redrive) => To(S::Received),
                (S::Downloading, E::Expire) => Refused,
                (S::Stored, E::SuccessCallback | E::FailureCallback) => Stay,
                (S::Stored, E::Claim | E::Store | E::Fail | E::Release) => Refused,
                (S::Stored, E::Redrive | E::Expire) => Refused,
                (S::Failed, E::SuccessCallback) => To(S::Received),
                (S::Failed, E::FailureCallback) => Stay,
                (S::Failed, E::Claim | E::Store | E::Fail | E::Release) => Refused,
                (S::Failed, E::Redrive | E::Expire) => Refused,
                (S::Expected, E::SuccessCallback) => To(S::Received),
                (S::Expected, E::FailureCallback | E::Expire) => To(S::Failed),
                (S::Expected, E::Claim | E::Store | E::Fail | E::Release | E::Redrive) => Refused,
            }
        };
        for s in TaskStatus::ALL {
            for e in TaskEvent::ALL {
                assert_eq!(transition(s, e), expected(s, e), "{s:?} + {e:?}");
            }
        }
    }

    #[test]
    fn nothing_leaves_stored() {
        for e in TaskEvent::ALL {
            assert!(
                !matches!(transition(TaskStatus::Stored, e), Transition::To(s) if s != TaskStatus::Stored)
            );
        }
    }
}
