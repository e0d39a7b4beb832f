//! The DynamoDB adapter against the local DynamoDB-protocol server: one conditional
//! write per new task, deduplication under concurrency, and update expressions that
//! match the domain's reference semantics (`Task::apply`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step is a failed test

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use integration_tests::{Stack, unique_task_id};
use video_tasks::envelope::{CallbackEnvelope, Outcome, VideoUrl, VideoUrlPolicy};
use video_tasks::record::{Recorded, record_callback};
use video_tasks::store::{Applied, Created, TaskStore};
use video_tasks::task::{
    DEFAULT_TASK_TTL, FailureReason, Guard, StoredVideo, Task, TaskChange, TaskStatus, Update,
};
use video_tasks::{TaskId, Timestamp};

fn envelope(task_id: &str, code: u16) -> CallbackEnvelope {
    let outcome = match code {
        200 => Outcome::Succeeded {
            video_url: VideoUrl::parse("https://cdn.example/v.mp4", &VideoUrlPolicy::default())
                .unwrap(),
        },
        code => Outcome::Failed { code },
    };
    CallbackEnvelope {
        task_id: TaskId::parse(task_id).unwrap(),
        msg: format!("code {code}"),
        outcome,
    }
}

#[tokio::test]
async fn a_new_task_is_one_item_with_every_attribute() {
    let stack = Stack::load();
    let store = stack.direct_task_store();
    let id = unique_task_id("new");
    let now = Timestamp::now();
    let recorded = record_callback(&store, &envelope(&id, 200), now, DEFAULT_TASK_TTL)
        .await
        .unwrap();
    assert_eq!(
        recorded,
        Recorded::Created {
            status: TaskStatus::Received
        }
    );

    let item = stack
        .raw_item(stack.direct_table(), &id)
        .await
        .expect("item written");
    assert_eq!(item["status"], AttributeValue::S("received".into()));
    assert_eq!(
        item["open_status"],
        AttributeValue::S("received".into()),
        "sparse index key"
    );
    assert_eq!(
        item["video_url"],
        AttributeValue::S("https://cdn.example/v.mp4".into())
    );
    assert_eq!(item["upstream_code"], AttributeValue::N("200".into()));
    assert_eq!(item["callback_count"], AttributeValue::N("1".into()));
    assert_eq!(
        item["expires_at"],
        AttributeValue::N((now.as_secs() + 30 * 86_400).to_string())
    );
    for attr in [
        "received_at",
        "updated_at",
        "last_callback_at",
        "upstream_msg",
        "revision",
    ] {
        assert!(item.contains_key(attr), "{attr} missing");
    }
}

#[tokio::test]
async fn duplicates_are_counted_and_failure_then_success_revives() {
    let stack = Stack::load();
    let store = stack.direct_task_store();
    let id = unique_task_id("dup");
    let now = Timestamp::now();
    let r = record_callback(&store, &envelope(&id, 451), now, DEFAULT_TASK_TTL)
        .await
        .unwrap();
    assert_eq!(
        r,
        Recorded::Created {
            status: TaskStatus::Failed
        }
    );
    let failed = stack.raw_item(stack.direct_table(), &id).await.unwrap();
    assert!(
        !failed.contains_key("open_status"),
        "failed tasks are not in the sparse index"
    );
    assert_eq!(failed["upstream_msg"], AttributeValue::S("code 451".into()));

    let r = record_callback(&store, &envelope(&id, 451), now, DEFAULT_TASK_TTL)
        .await
        .unwrap();
    assert_eq!(r, Recorded::Duplicate { callback_count: 2 });
    let r = record_callback(&store, &envelope(&id, 200), now, DEFAULT_TASK_TTL)
        .await
        .unwrap();
    assert_eq!(r, Recorded::Revived { callback_count: 3 });
    let r = record_callback(&store, &envelope(&id, 200), now, DEFAULT_TASK_TTL)
        .await
        .unwrap();
    assert_eq!(r, Recorded::Duplicate { callback_count: 4 });

    let task = store
        .get(&TaskId::parse(&id).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (task.status, task.callback_count, task.upstream_code),
        (TaskStatus::Received, 4, 200)
    );
    assert_eq!(task.failure_reason, None);
    let item = stack.raw_item(stack.direct_table(), &id).await.unwrap();
    assert_eq!(item["open_status"], AttributeValue::S("received".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_callbacks_make_one_item_counted_fifty_times() {
    let stack = Stack::load();
    let store = Arc::new(stack.direct_task_store());
    let id = unique_task_id("fifty");
    let envelope = Arc::new(envelope(&id, 200));
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let store = Arc::clone(&store);
            let envelope = Arc::clone(&envelope);
            tokio::spawn(async move {
                record_callback(&*store, &envelope, Timestamp::now(), DEFAULT_TASK_TTL).await
            })
        })
        .collect();
    let mut created = 0;
    let mut duplicates = 0;
    for t in tasks {
        match t.await.unwrap().unwrap() {
            Recorded::Created { .. } => created += 1,
            Recorded::Duplicate { .. } => duplicates += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((created, duplicates), (1, 49));
    let items = stack
        .dynamodb()
        .query()
        .table_name(stack.direct_table())
        .key_condition_expression("task_id = :id")
        .expression_attribute_values(":id", AttributeValue::S(id.clone()))
        .consistent_read(true)
        .send()
        .await
        .unwrap();
    assert_eq!(items.count(), 1);
    assert_eq!(
        items.items()[0]["callback_count"],
        AttributeValue::N("50".into())
    );
}

/// Applies `update` both to the stored item (DynamoDB) and to the domain's reference,
/// and checks they agree.
async fn apply_and_compare(store: &impl TaskStore, before: &Task, update: Update) -> Task {
    let expected = before
        .apply(&update, DEFAULT_TASK_TTL)
        .expect("the reference accepts the update");
    match store.apply(&before.task_id, &update).await.unwrap() {
        Applied::Done(after) => {
            assert_eq!(
                *after, expected,
                "DynamoDB and Task::apply disagree on {:?}",
                update.change
            );
            *after
        }
        other => panic!("expected the update to apply, got {other:?}"),
    }
}

#[tokio::test]
async fn update_expressions_match_the_reference_semantics() {
    let stack = Stack::load();
    let store = stack.direct_task_store();
    let id = unique_task_id("lifecycle");
    let task = Task::from_callback(&envelope(&id, 200), Timestamp::now(), DEFAULT_TASK_TTL);
    assert_eq!(store.create(&task).await.unwrap(), Created::New);
    assert!(
        matches!(store.create(&task).await.unwrap(), Created::Exists(existing) if *existing == task)
    );

    let lease = Timestamp::now().saturating_add(Duration::from_secs(900));
    let claim = Update {
        change: TaskChange::Claim {
            owner: "inv-1".into(),
            lease_until: lease,
        },
        guard: Guard::Revision(task.revision),
        at: Timestamp::now(),
    };
    let claimed = apply_and_compare(&store, &task, claim.clone()).await;
    // The same claim again: the revision moved on, so it conflicts and returns the record.
    match store.apply(&task.task_id, &claim).await.unwrap() {
        Applied::Conflict(Some(current)) => assert_eq!(*current, claimed),
        other => panic!("expected a conflict, got {other:?}"),
    }
    let owner = Guard::LeaseOwner("inv-1".into());
    let progressed = apply_and_compare(
        &store,
        &claimed,
        Update {
            change: TaskChange::Progress {
                bytes_received: 1 << 26,
            },
            guard: owner.clone(),
            at: Timestamp::now(),
        },
    )
    .await;
    // Another owner cannot write an outcome.
    let intruder = Update {
        change: TaskChange::Fail {
            reason: FailureReason::NotMp4,
            detail: "x".into(),
        },
        guard: Guard::LeaseOwner("inv-2".into()),
        at: Timestamp::now(),
    };
    assert!(matches!(
        store.apply(&task.task_id, &intruder).await.unwrap(),
        Applied::Conflict(Some(_))
    ));

    let released = apply_and_compare(
        &store,
        &progressed,
        Update {
            change: TaskChange::Release,
            guard: owner.clone(),
            at: Timestamp::now(),
        },
    )
    .await;
    let video = StoredVideo {
        bucket: "b".into(),
        key: format!("videos/{id}.mp4"),
        bytes: 42,
        sha256: "cd".repeat(32),
        content_type: "video/mp4".into(),
    };
    let stored = apply_and_compare(
        &store,
        &released,
        Update {
            change: TaskChange::Store { video },
            guard: owner,
            at: Timestamp::now(),
        },
    )
    .await;
    assert_eq!(stored.status, TaskStatus::Stored);
    let item = stack.raw_item(stack.direct_table(), &id).await.unwrap();
    assert!(!item.contains_key("open_status") && !item.contains_key("lease_owner"));

    // A missing task is a conflict without a record, never an error.
    let ghost = Update {
        change: TaskChange::Release,
        guard: Guard::LeaseOwner("x".into()),
        at: Timestamp::now(),
    };
    let missing = TaskId::parse(&unique_task_id("ghost")).unwrap();
    assert_eq!(
        store.apply(&missing, &ghost).await.unwrap(),
        Applied::Conflict(None)
    );
}
