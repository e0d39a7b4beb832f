//! The transition table as a property: random sequences of every decision the functions
//! make (callbacks, registrations, claims, stale claims, heartbeats, stores, failures,
//! releases, re-drives, give-ups, expiries, time passing), applied the way a store
//! applies them ([`Task::apply`]), and after every step the record must agree with the
//! table and with itself.

use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::domain::ssrf::UrlPolicy;
use crate::domain::task_id::TaskId;

const OWNERS: [&str; 3] = ["inv-a", "inv-b", "inv-c"];
const MAX_ATTEMPTS: u32 = 3;
const TTL: Duration = DEFAULT_TASK_TTL;

#[derive(Debug, Clone)]
enum Op {
    Callback {
        code: u16,
        url: u8,
    },
    Claim {
        owner: usize,
        lease_ms: u32,
    },
    /// A decision made on an earlier snapshot (its revision may be stale).
    StaleClaim {
        back: usize,
        owner: usize,
    },
    Heartbeat {
        owner: usize,
        bytes: u32,
    },
    Store {
        owner: usize,
    },
    Fail {
        owner: usize,
    },
    Release {
        owner: usize,
    },
    Reconcile,
    SchedulePoll,
    Wait {
        ms: u32,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let owner = 0..OWNERS.len();
    prop_oneof![
        3 => (prop_oneof![Just(200u16), Just(400), Just(451), Just(500)], 0..2u8)
            .prop_map(|(code, url)| Op::Callback { code, url }),
        4 => (owner.clone(), 1..120_000u32).prop_map(|(owner, lease_ms)| Op::Claim { owner, lease_ms }),
        1 => (0..8usize, owner.clone()).prop_map(|(back, owner)| Op::StaleClaim { back, owner }),
        2 => (owner.clone(), any::<u32>()).prop_map(|(owner, bytes)| Op::Heartbeat { owner, bytes }),
        2 => owner.clone().prop_map(|owner| Op::Store { owner }),
        2 => owner.clone().prop_map(|owner| Op::Fail { owner }),
        2 => owner.prop_map(|owner| Op::Release { owner }),
        2 => Just(Op::Reconcile),
        1 => Just(Op::SchedulePoll),
        2 => (1..400_000u32).prop_map(|ms| Op::Wait { ms }),
    ]
}

fn policy() -> ReconcilePolicy {
    ReconcilePolicy {
        received_after: Duration::from_secs(60),
        max_attempts: MAX_ATTEMPTS,
        poll_grace: Duration::from_secs(30),
        poll_min_interval: Duration::from_secs(10),
        poll_max_interval: Duration::from_secs(120),
        expected_max_age: Duration::from_secs(900),
        ttl: TTL,
    }
}

fn envelope(id: &TaskId, code: u16, url: u8) -> CallbackEnvelope {
    let outcome = if code == 200 {
        let raw = format!("https://cdn.example/{url}.mp4");
        Outcome::Succeeded {
            video_url: VideoUrl::parse(&raw, &UrlPolicy::default()).unwrap(),
        }
    } else {
        Outcome::Failed { code }
    };
    CallbackEnvelope {
        task_id: id.clone(),
        msg: "m".into(),
        outcome,
    }
}

/// Whether the table has an event leading `from -> to`.
fn table_allows(from: TaskStatus, to: TaskStatus) -> bool {
    TaskEvent::ALL
        .iter()
        .any(|&e| transition(from, e) == Transition::To(to))
}

/// What must hold of every record, whatever happened before.
fn check_record(task: &Task) -> Result<(), TestCaseError> {
    prop_assert!(task.state().is_ok(), "inconsistent record {:?}", task);
    let item = task.to_item().unwrap();
    let open = item.contains_key(attr::OPEN_STATUS);
    prop_assert_eq!(
        open,
        task.status.is_open(),
        "open-tasks index key on {:?}",
        task.status
    );
    prop_assert_eq!(task.video.is_some(), task.status == TaskStatus::Stored);
    prop_assert_eq!(
        task.failure_reason.is_some(),
        task.status == TaskStatus::Failed,
        "failure reason on {:?}",
        task.status
    );
    if task.status != TaskStatus::Downloading {
        prop_assert!(
            task.lease_owner.is_none(),
            "a lease outside downloading: {:?}",
            task
        );
    }
    prop_assert!(
        task.attempts <= MAX_ATTEMPTS + 1,
        "attempts {}",
        task.attempts
    );
    Ok(())
}

struct Run {
    id: TaskId,
    now: Timestamp,
    task: Option<Task>,
    history: Vec<Task>,
    callbacks: u32,
}

impl Run {
    fn lease(&self, owner: usize) -> Lease {
        Lease::new(
            OWNERS[owner],
            self.now.saturating_add(Duration::from_secs(60)),
        )
    }

    /// Applies `patch` like a store; checks the step against the table.
    fn apply(&mut self, patch: &Patch) -> Result<(), TestCaseError> {
        let Some(before) = self.task.clone() else {
            return Ok(());
        };
        if let Some(after) = before.apply(patch) {
            // A status change needs an edge; what keeps the status (counting a callback,
            // a heartbeat, scheduling a poll) may not touch another status's fields.
            prop_assert!(
                after.status == before.status || table_allows(before.status, after.status),
                "{:?} -> {:?} is not in the table ({:?})",
                before.status,
                after.status,
                patch
            );
            prop_assert!(after.revision >= before.revision, "revision went back");
            if after.status != before.status {
                prop_assert!(
                    after.revision > before.revision,
                    "a status change kept the revision"
                );
            }
            if before.status == TaskStatus::Stored {
                prop_assert_eq!(after.status, TaskStatus::Stored, "stored is final");
                prop_assert_eq!(&after.video, &before.video, "a stored video changed");
            }
            self.task = Some(after);
        }
        Ok(())
    }

    fn claim(&mut self, seen: &Task, owner: usize, lease_ms: u32) -> Result<(), TestCaseError> {
        let until = self
            .now
            .saturating_add(Duration::from_millis(lease_ms.into()));
        match seen.decide_claim(OWNERS[owner], self.now, until, MAX_ATTEMPTS, TTL) {
            ClaimDecision::Claim(p) | ClaimDecision::GiveUp(p) => self.apply(&p),
            ClaimDecision::Skip(_) => Ok(()),
        }
    }

    fn step(&mut self, op: &Op) -> Result<(), TestCaseError> {
        self.now = self.now.saturating_add(Duration::from_millis(7));
        match *op {
            Op::Callback { code, url } => {
                let env = envelope(&self.id, code, url);
                self.callbacks += 1;
                match self.task.clone() {
                    None => self.task = Some(Task::from_callback(&env, self.now, TTL)),
                    Some(t) => match t.on_repeat_callback(&env, self.now, TTL) {
                        RepeatDecision::Duplicate => {
                            self.apply(&Patch::count_callback(self.now))?
                        }
                        RepeatDecision::Revive(p) => {
                            let before = self.task.clone();
                            self.apply(&p)?;
                            // A revive always lands here: its condition is the current revision.
                            prop_assert_ne!(&self.task, &before, "a revive did not apply");
                        }
                    },
                }
                let count = self.task.as_ref().map_or(0, |t| t.callback_count);
                prop_assert_eq!(count, self.callbacks, "callback count");
            }
            Op::Claim { owner, lease_ms } => {
                if let Some(t) = self.task.clone() {
                    self.claim(&t, owner, lease_ms)?;
                }
            }
            Op::StaleClaim { back, owner } => {
                if let Some(old) = self.history.iter().rev().nth(back).cloned() {
                    self.claim(&old, owner, 30_000)?;
                }
            }
            Op::Heartbeat { owner, bytes } => {
                let until = self.now.saturating_add(Duration::from_secs(90));
                let p = self.lease(owner).renew(bytes.into(), until, self.now);
                self.apply(&p)?;
            }
            Op::Store { owner } => {
                let video = StoredVideo {
                    bucket: "b".into(),
                    key: format!("videos/{}.mp4", self.id),
                    bytes: 7,
                    sha256: "0".repeat(64),
                    content_type: "video/mp4".into(),
                };
                let p = self.lease(owner).store(video, self.now, TTL);
                self.apply(&p)?;
            }
            Op::Fail { owner } => {
                let p = self
                    .lease(owner)
                    .fail(FailureReason::NotMp4, "d", self.now, TTL);
                self.apply(&p)?;
            }
            Op::Release { owner } => {
                let p = self.lease(owner).release(self.now);
                self.apply(&p)?;
            }
            Op::Reconcile => {
                if let Some(t) = self.task.clone() {
                    match t.decide_reconcile(self.now, &policy()) {
                        Reconcile::Redrive(p) | Reconcile::GiveUp(p) | Reconcile::Expire(p) => {
                            self.apply(&p)?
                        }
                        Reconcile::Poll | Reconcile::Nothing => {}
                    }
                }
            }
            Op::SchedulePoll => {
                if let Some(p) = self
                    .task
                    .as_ref()
                    .and_then(|t| t.schedule_poll(self.now, &policy()))
                {
                    self.apply(&p)?;
                }
            }
            Op::Wait { ms } => self.now = self.now.saturating_add(Duration::from_millis(ms.into())),
        }
        if let Some(t) = &self.task {
            check_record(t)?;
            self.history.push(t.clone());
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn every_step_follows_the_table_and_leaves_a_consistent_record(
        registered in any::<bool>(),
        ops in prop::collection::vec(op(), 1..40),
    ) {
        let id = TaskId::parse("prop-task").unwrap();
        let now = Timestamp::from_millis(1_795_000_000_000);
        let task = registered.then(|| Task::expected(id.clone(), now, TTL));
        if let Some(t) = &task {
            check_record(t)?;
        }
        let mut run = Run { id, now, task, history: Vec::new(), callbacks: 0 };
        for op in &ops {
            run.step(op)?;
        }
    }
}
