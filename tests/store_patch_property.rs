//! One rule, two stores: random sequences of domain decisions (callbacks, claims, lease
//! writes, stale decisions, writes to missing tasks) applied both to the memory store
//! (the domain's `Patch::apply_to`) and to the local DynamoDB server (the rendered
//! `UpdateItem`). After every step the outcomes and the stored items must be identical.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step is a failed test

use std::sync::LazyLock;
use std::time::Duration;

use integration_tests::{Stack, unique_task_id};
use proptest::prelude::*;
use shared::domain::task::{
    ClaimDecision, DEFAULT_TASK_TTL, FailureReason, Lease, Patch, StoredVideo, Task,
};
use shared::store::TaskStore;
use shared::store::dynamodb::{DynamoTaskStore, to_dynamo_item};
use shared::test_support::{MemoryTaskStore, envelope};
use shared::usecase::record_callback::record_callback;
use shared::{TaskId, Timestamp};

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
});

const OWNERS: [&str; 3] = ["inv-a", "inv-b", "inv-c"];
const MAX_ATTEMPTS: u32 = 2;
const T0: i64 = 1_795_000_000_000;

#[derive(Debug, Clone)]
enum Op {
    /// A callback through the receiver's use case: 200 (with one of two URLs), 451 or 500.
    Callback {
        code: u16,
        url: u8,
        msg: u8,
    },
    /// An ingest claim decided on the current record.
    Claim {
        owner: usize,
        lease_ms: u32,
    },
    /// A claim decided on an earlier snapshot of the record (its revision may be stale).
    StaleClaim {
        back: usize,
        owner: usize,
    },
    Progress {
        owner: usize,
        bytes: u32,
    },
    Store {
        owner: usize,
        bytes: u32,
    },
    Fail {
        owner: usize,
        reason: usize,
    },
    Release {
        owner: usize,
    },
    /// Time passes (leases run out).
    Wait {
        ms: u32,
    },
    /// A lease write to a task that does not exist.
    Ghost {
        owner: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let owner = 0..OWNERS.len();
    prop_oneof![
        3 => (prop_oneof![Just(200u16), Just(451), Just(500)], 0..2u8, 0..3u8)
            .prop_map(|(code, url, msg)| Op::Callback { code, url, msg }),
        4 => (owner.clone(), 1..120_000u32).prop_map(|(owner, lease_ms)| Op::Claim { owner, lease_ms }),
        1 => (0..8usize, owner.clone()).prop_map(|(back, owner)| Op::StaleClaim { back, owner }),
        2 => (owner.clone(), any::<u32>()).prop_map(|(owner, bytes)| Op::Progress { owner, bytes }),
        2 => (owner.clone(), any::<u32>()).prop_map(|(owner, bytes)| Op::Store { owner, bytes }),
        2 => (owner.clone(), 0..FAILURES.len()).prop_map(|(owner, reason)| Op::Fail { owner, reason }),
        2 => owner.clone().prop_map(|owner| Op::Release { owner }),
        2 => (1..200_000u32).prop_map(|ms| Op::Wait { ms }),
        1 => owner.prop_map(|owner| Op::Ghost { owner }),
    ]
}

const FAILURES: [FailureReason; 3] = [
    FailureReason::NotMp4,
    FailureReason::SourceExpired,
    FailureReason::TooLarge,
];

struct Run {
    stack: Stack,
    memory: MemoryTaskStore,
    dynamo: DynamoTaskStore,
    id: TaskId,
    now: Timestamp,
    history: Vec<Task>,
}

impl Run {
    fn lease(&self, owner: usize) -> Lease {
        Lease::new(
            OWNERS[owner],
            self.now.saturating_add(Duration::from_secs(60)),
        )
    }

    /// Applies `patch` to `id` in both stores and requires the same outcome.
    async fn both(&self, id: &TaskId, patch: &Patch) -> Result<(), TestCaseError> {
        let expected = self.memory.apply(id, patch).await.unwrap();
        let actual = self.dynamo.apply(id, patch).await.unwrap();
        prop_assert_eq!(&actual, &expected, "outcomes differ for {:?}", patch);
        Ok(())
    }

    async fn step(&mut self, op: &Op) -> Result<(), TestCaseError> {
        self.now = self.now.saturating_add(Duration::from_millis(7));
        let current = self.memory.snapshot(&self.id);
        match *op {
            Op::Callback { code, url, msg } => {
                let url = (code == 200).then(|| format!("https://cdn.example/{url}.mp4"));
                let msg = ["", "ok", "MP4 generated successfully."][usize::from(msg)];
                let envelope = envelope(self.id.as_str(), code, url.as_deref(), msg);
                let expected = record_callback(&self.memory, &envelope, self.now, DEFAULT_TASK_TTL)
                    .await
                    .unwrap();
                let actual = record_callback(&self.dynamo, &envelope, self.now, DEFAULT_TASK_TTL)
                    .await
                    .unwrap();
                prop_assert_eq!(actual, expected);
            }
            Op::Claim { owner, lease_ms } => {
                if let Some(task) = current {
                    let lease_until = self
                        .now
                        .saturating_add(Duration::from_millis(lease_ms.into()));
                    self.claim(&task, owner, lease_until).await?;
                }
            }
            Op::StaleClaim { back, owner } => {
                if let Some(old) = self.history.iter().rev().nth(back).cloned() {
                    let lease_until = self.now.saturating_add(Duration::from_secs(30));
                    self.claim(&old, owner, lease_until).await?;
                }
            }
            Op::Progress { owner, bytes } => {
                let until = self.now.saturating_add(Duration::from_secs(90));
                let patch = self.lease(owner).renew(bytes.into(), until, self.now);
                self.both(&self.id, &patch).await?;
            }
            Op::Store { owner, bytes } => {
                let video = StoredVideo {
                    bucket: "b".into(),
                    key: format!("videos/{}.mp4", self.id),
                    bytes: bytes.into(),
                    sha256: format!("{:064x}", bytes),
                    content_type: "video/mp4".into(),
                };
                let patch = self.lease(owner).store(video, self.now, DEFAULT_TASK_TTL);
                self.both(&self.id, &patch).await?;
            }
            Op::Fail { owner, reason } => {
                let patch =
                    self.lease(owner)
                        .fail(FAILURES[reason], "detail", self.now, DEFAULT_TASK_TTL);
                self.both(&self.id, &patch).await?;
            }
            Op::Release { owner } => {
                let patch = self.lease(owner).release(self.now);
                self.both(&self.id, &patch).await?;
            }
            Op::Wait { ms } => {
                self.now = self.now.saturating_add(Duration::from_millis(ms.into()));
            }
            Op::Ghost { owner } => {
                let ghost = TaskId::parse(&unique_task_id("ghost")).unwrap();
                let patch = self.lease(owner).release(self.now);
                self.both(&ghost, &patch).await?;
                prop_assert!(self.memory.item(&ghost).is_none());
            }
        }
        self.compare_items().await
    }

    async fn claim(
        &self,
        seen: &Task,
        owner: usize,
        lease_until: Timestamp,
    ) -> Result<(), TestCaseError> {
        let decision = seen.decide_claim(
            OWNERS[owner],
            self.now,
            lease_until,
            MAX_ATTEMPTS,
            DEFAULT_TASK_TTL,
        );
        match decision {
            ClaimDecision::Claim(patch) | ClaimDecision::GiveUp(patch) => {
                self.both(&self.id, &patch).await
            }
            ClaimDecision::Skip(_) => Ok(()),
        }
    }

    /// The stored items are the same attribute for attribute.
    async fn compare_items(&mut self) -> Result<(), TestCaseError> {
        let memory = self.memory.item(&self.id);
        let dynamo = self
            .stack
            .raw_item(self.stack.direct_table(), self.id.as_str())
            .await;
        let memory = memory.map(|i| to_dynamo_item(&i).unwrap());
        prop_assert_eq!(dynamo, memory);
        if let Some(task) = self.memory.snapshot(&self.id) {
            self.history.push(task);
        }
        Ok(())
    }
}

async fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let stack = Stack::load();
    let mut run = Run {
        dynamo: stack.direct_task_store(),
        stack,
        memory: MemoryTaskStore::default(),
        id: TaskId::parse(&unique_task_id("prop")).unwrap(),
        now: Timestamp::from_millis(T0),
        history: Vec::new(),
    };
    for op in &ops {
        run.step(op).await?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 64,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn memory_and_dynamodb_apply_every_patch_alike(ops in prop::collection::vec(op(), 1..24)) {
        RUNTIME.block_on(run(ops))?;
    }
}
