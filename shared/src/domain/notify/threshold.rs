//! Thresholds (seed 001: notify only past a threshold, or when the queue ends), as
//! decisions over counters the store updates atomically, so concurrent completions can
//! neither lose a task nor send a batch twice.
//!
//! **Batch** `{n, max_wait}`: every completion takes the next number `k` from the
//! endpoint's counter (an atomic add) and joins batch `(k - 1) / n`, appending its task
//! id and adding one to the batch's count in one conditional update. The completion
//! that brings the count to `n` sends the batch, complete. A batch still short of `n`
//! when `max_wait` has passed since its first member is flushed by whoever marks it
//! `flushed` first (a conditional write); a completion that finds its batch already
//! flushed moves the counter past that batch and takes a new number. One event id per
//! batch: `(endpoint, batch number)`.
//!
//! **Drain** `{quiet}`: every completion marks the endpoint busy (the busy period
//! starts at its first completion) and schedules a check `quiet` later. A check sends
//! `tasks.queue_drained` when nothing completed since and no task is open (the sparse
//! open-tasks index: one single-item query per open status), ending the busy period with a conditional write on
//! its start, so exactly one check wins. One event id per busy period.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::endpoint::EndpointId;
use super::event::{Event, EventData, EventId, EventType};
use crate::domain::clock::Timestamp;
use crate::domain::task_id::TaskId;

/// Where completion number `k` (1-based) goes in batches of `n`: the batch number and
/// whether it is the batch's last member.
pub fn batch_slot(k: u64, n: u32) -> (u64, bool) {
    let n = u64::from(n.max(1));
    let k = k.max(1);
    ((k - 1) / n, k % n == 0)
}

/// A batch as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    pub members: Vec<TaskId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_at: Option<Timestamp>,
    /// Sent short of `n` after `max_wait`.
    #[serde(default)]
    pub flushed: bool,
    #[serde(default)]
    pub sent: bool,
}

/// What to do with a batch after a member joined, or when its wait may be over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchDecision {
    /// Keep collecting; look again at this time (the first member's wait ends).
    Wait { flush_at: Timestamp },
    /// Send it now, complete.
    SendFull,
    /// Mark it flushed (conditionally) and send it short.
    Flush,
    /// Already sent or flushed: nothing to do.
    Done,
}

impl Batch {
    /// `n` and `max_wait` from the endpoint; `now` the time of the look.
    pub fn decide(&self, n: u32, max_wait: Duration, now: Timestamp) -> BatchDecision {
        if self.sent || self.flushed {
            return BatchDecision::Done;
        }
        if self.members.len() >= usize::try_from(n).unwrap_or(usize::MAX) {
            return BatchDecision::SendFull;
        }
        match self.first_at {
            None => BatchDecision::Done,
            Some(first) => {
                let flush_at = first.saturating_add(max_wait);
                if now >= flush_at {
                    BatchDecision::Flush
                } else {
                    BatchDecision::Wait { flush_at }
                }
            }
        }
    }

    /// The batch's event for `endpoint`.
    pub fn event(&self, endpoint: &EndpointId, seq: u64) -> Event {
        Event {
            id: EventId::derive(&["batch", endpoint.as_str(), &seq.to_string()]),
            event_type: EventType::BatchCompleted,
            data: EventData::Batch {
                count: self.members.len(),
                task_ids: self.members.clone(),
                partial: self.flushed,
            },
        }
    }
}

/// An endpoint's busy period, as stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Busy {
    /// The period's first completion; absent when idle.
    pub since: Option<Timestamp>,
    pub last_completion_at: Option<Timestamp>,
    pub completed: u64,
}

/// What a scheduled drain check finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrainCheck {
    /// No busy period (an earlier check ended it).
    Idle,
    /// Something completed within `quiet`: its own check comes later.
    NotQuiet,
    /// A task is still open: its completion will schedule the next check.
    StillOpen,
    /// Send `tasks.queue_drained` and end the period (conditional on `since`).
    Drained { since: Timestamp, completed: u64 },
}

impl Busy {
    pub fn check(&self, now: Timestamp, quiet: Duration, open_task_exists: bool) -> DrainCheck {
        let (Some(since), Some(last)) = (self.since, self.last_completion_at) else {
            return DrainCheck::Idle;
        };
        if now < last.saturating_add(quiet) {
            DrainCheck::NotQuiet
        } else if open_task_exists {
            DrainCheck::StillOpen
        } else {
            DrainCheck::Drained {
                since,
                completed: self.completed,
            }
        }
    }

    /// The period after one more completion at `now` (what the store's update computes).
    pub fn completed_at(self, now: Timestamp) -> Self {
        Self {
            since: self.since.or(Some(now)),
            last_completion_at: Some(self.last_completion_at.map_or(now, |l| l.max(now))),
            completed: self.completed.saturating_add(1),
        }
    }
}

/// The drained event for `endpoint`'s busy period that began at `since`.
pub fn drained_event(endpoint: &EndpointId, since: Timestamp, completed: u64) -> Event {
    Event {
        id: EventId::derive(&["drain", endpoint.as_str(), &since.as_millis().to_string()]),
        event_type: EventType::QueueDrained,
        data: EventData::Drained {
            busy_since: since.to_rfc3339(),
            completed,
        },
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::sync::{Arc, Mutex};

    use super::*;

    const T0: Timestamp = Timestamp::from_secs(1_795_000_000);
    const MINUTE: Duration = Duration::from_secs(60);

    fn id(i: u64) -> TaskId {
        TaskId::parse(&format!("t-{i}")).unwrap()
    }

    #[test]
    fn slots() {
        assert_eq!(batch_slot(1, 3), (0, false));
        assert_eq!(batch_slot(3, 3), (0, true));
        assert_eq!(batch_slot(4, 3), (1, false));
        assert_eq!(batch_slot(6, 3), (1, true));
        assert_eq!(
            batch_slot(0, 0),
            (0, true),
            "degenerate input stays in range"
        );
    }

    #[test]
    fn a_batch_sends_when_full_and_flushes_after_its_wait() {
        let mut b = Batch::default();
        assert_eq!(
            b.decide(3, MINUTE, T0),
            BatchDecision::Done,
            "no member yet"
        );
        b.members.push(id(1));
        b.first_at = Some(T0);
        let flush_at = T0.saturating_add(MINUTE);
        assert_eq!(b.decide(3, MINUTE, T0), BatchDecision::Wait { flush_at });
        assert_eq!(b.decide(3, MINUTE, flush_at), BatchDecision::Flush);
        b.members.extend([id(2), id(3)]);
        assert_eq!(b.decide(3, MINUTE, T0), BatchDecision::SendFull);
        b.sent = true;
        assert_eq!(b.decide(3, MINUTE, flush_at), BatchDecision::Done);
        let event = b.event(&EndpointId::generate(1), 0);
        assert_eq!(event.event_type, EventType::BatchCompleted);
        assert_eq!(event.id, b.event(&EndpointId::generate(1), 0).id);
        assert_ne!(event.id, b.event(&EndpointId::generate(1), 1).id);
    }

    /// The store's conditional updates, in memory: a counter, and batches that take a
    /// member only while not flushed and below `n`.
    #[derive(Default)]
    struct Store {
        counter: u64,
        batches: BTreeMap<u64, Batch>,
        sent: Vec<(u64, Vec<TaskId>, bool)>,
    }

    /// One completion, as the notify function runs it against the store.
    fn complete(store: &Mutex<Store>, task: TaskId, n: u32, now: Timestamp) {
        loop {
            let k = {
                let mut s = store.lock().unwrap();
                s.counter += 1;
                s.counter
            };
            let (seq, _) = batch_slot(k, n);
            std::thread::yield_now(); // let other completions interleave here
            let mut s = store.lock().unwrap();
            let batch = s.batches.entry(seq).or_default();
            if batch.flushed {
                continue; // the batch left without us: take a new number
            }
            batch.members.push(task.clone());
            batch.first_at.get_or_insert(now);
            if batch.decide(n, MINUTE, now) == BatchDecision::SendFull {
                batch.sent = true;
                let members = batch.members.clone();
                s.sent.push((seq, members, false));
            }
            return;
        }
    }

    fn sweep(store: &Mutex<Store>, n: u32, now: Timestamp) {
        let mut s = store.lock().unwrap();
        let mut flushed = Vec::new();
        for (seq, b) in s.batches.iter_mut() {
            if b.decide(n, MINUTE, now) == BatchDecision::Flush {
                b.flushed = true;
                flushed.push((*seq, b.members.clone(), true));
            }
        }
        s.sent.extend(flushed);
    }

    #[test]
    fn concurrent_completions_make_every_batch_once_and_lose_no_task() {
        let store = Arc::new(Mutex::new(Store::default()));
        let n = 7;
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let store = Arc::clone(&store);
                std::thread::spawn(move || {
                    for i in 0..100 {
                        complete(&store, id(t * 1_000 + i), n, T0);
                        if i % 25 == 0 {
                            sweep(&store, n, T0.saturating_add(MINUTE)); // a flush races in
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        sweep(&store, n, T0.saturating_add(MINUTE));
        let s = store.lock().unwrap();
        let mut seen = BTreeSet::new();
        let mut seqs = BTreeSet::new();
        for (seq, members, partial) in &s.sent {
            assert!(seqs.insert(*seq), "batch {seq} sent twice");
            assert!(members.len() <= n as usize);
            assert_eq!(
                *partial,
                members.len() < n as usize,
                "only short batches are partial"
            );
            for m in members {
                assert!(seen.insert(m.clone()), "{m} in two batches");
            }
        }
        assert_eq!(seen.len(), 800, "every completion is in exactly one batch");
        // Both paths ran: batches that filled, and batches a sweep flushed short.
        assert!(s.sent.iter().any(|(_, _, p)| !p) && s.sent.iter().any(|(_, _, p)| *p));
    }

    #[test]
    fn a_drain_is_one_event_per_busy_period() {
        let quiet = MINUTE;
        let idle = Busy::default();
        assert_eq!(idle.check(T0, quiet, false), DrainCheck::Idle);
        let busy = idle
            .completed_at(T0)
            .completed_at(T0.saturating_add(Duration::from_secs(30)));
        assert_eq!(busy.since, Some(T0));
        assert_eq!(busy.completed, 2);
        // The first completion's check comes too early: the second one's check decides.
        assert_eq!(
            busy.check(T0.saturating_add(MINUTE), quiet, false),
            DrainCheck::NotQuiet
        );
        let later = T0.saturating_add(Duration::from_secs(90));
        assert_eq!(busy.check(later, quiet, true), DrainCheck::StillOpen);
        assert_eq!(
            busy.check(later, quiet, false),
            DrainCheck::Drained {
                since: T0,
                completed: 2
            }
        );
        // A completion arriving out of order never moves the period's last completion back.
        assert_eq!(
            busy.completed_at(T0).last_completion_at,
            busy.last_completion_at
        );
        let ep = EndpointId::generate(9);
        let a = drained_event(&ep, T0, 2);
        assert_eq!(
            a.id,
            drained_event(&ep, T0, 3).id,
            "one id per period, whatever the count"
        );
        assert_ne!(a.id, drained_event(&ep, later, 2).id);
    }
}
