//! The state machine, in one table: which event may happen in which status, and where
//! it leads. Every patch that changes a status takes its target from here.
//!
//! ```text
//!   success callback ──► received ──claim──► downloading ──► stored   (final)
//!   failure callback ──► failed ◄──────────────────┘
//!        ▲                 │ success callback (the upstream failed, then succeeded)
//!        └─────────────────┴──► received
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
}

impl TaskEvent {
    pub const ALL: [Self; 6] = [
        Self::SuccessCallback,
        Self::FailureCallback,
        Self::Claim,
        Self::Store,
        Self::Fail,
        Self::Release,
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
        // The upstream may fail and later succeed: a success revives a failed task.
        (S::Failed, E::SuccessCallback) => Transition::To(S::Received),
        // Any other repeat callback is a duplicate: counted, never a regression.
        (_, E::SuccessCallback | E::FailureCallback) => Transition::Stay,
        (S::Received | S::Downloading, E::Claim) => Transition::To(S::Downloading),
        (S::Downloading, E::Store) => Transition::To(S::Stored),
        (S::Downloading, E::Fail) => Transition::To(S::Failed),
        (S::Downloading, E::Release) => Transition::Stay,
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
                (S::Downloading, E::SuccessCallback | E::FailureCallback) => Stay,
                (S::Downloading, E::Claim) => To(S::Downloading),
                (S::Downloading, E::Store) => To(S::Stored),
                (S::Downloading, E::Fail) => To(S::Failed),
                (S::Downloading, E::Release) => Stay,
                (S::Stored, E::SuccessCallback | E::FailureCallback) => Stay,
                (S::Stored, E::Claim | E::Store | E::Fail | E::Release) => Refused,
                (S::Failed, E::SuccessCallback) => To(S::Received),
                (S::Failed, E::FailureCallback) => Stay,
                (S::Failed, E::Claim | E::Store | E::Fail | E::Release) => Refused,
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
