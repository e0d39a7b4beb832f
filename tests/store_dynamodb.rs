//! The DynamoDB adapter against the local DynamoDB-protocol server: one conditional
//! write per new task, deduplication under concurrency, and rendered patches that do
//! exactly what the domain's patch application does (a lifecycle walk here; random
//! sequences in `store_patch_property.rs`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step is a failed test

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use integration_tests::{Stack, unique_task_id};
use shared::domain::envelope::CallbackEnvelope;
use shared::domain::task::{
    ClaimDecision, DEFAULT_TASK_TTL, FailureReason, Lease, Patch, StoredVideo, Task, TaskStatus,
};
use shared::store::{Applied, Created, TaskStore};
use shared::usecase::record_callback::{Recorded, record_callback};
use shared::{TaskId, Timestamp};

fn envelope(task_id: &str, code: u16) -> CallbackEnvelope {
    let url = (code == 200).then_some("https://cdn.example/v.mp4");
    shared::test_support::envelope(task_id, code, url, &format!("code {code}"))
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

/// Applies `patch` both to the stored item (DynamoDB) and to the domain's own
/// application of it, and checks they agree.
async fn apply_and_compare(store: &impl TaskStore, before: &Task, update: Patch) -> Task {
    let expected = before
        .apply(&update)
        .expect("the reference accepts the update");
    match store.apply(&before.task_id, &update).await.unwrap() {
        Applied::Done(after) => {
            assert_eq!(
                *after, expected,
                "DynamoDB and Task::apply disagree on {:?}",
                update
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
    let ClaimDecision::Claim(claim) =
        task.decide_claim("inv-1", Timestamp::now(), lease, 5, DEFAULT_TASK_TTL)
    else {
        panic!("a received task is claimable")
    };
    let claimed = apply_and_compare(&store, &task, claim.clone()).await;
    // The same claim again: the revision moved on, so it conflicts and returns the record.
    match store.apply(&task.task_id, &claim).await.unwrap() {
        Applied::Conflict(Some(current)) => assert_eq!(*current, claimed),
        other => panic!("expected a conflict, got {other:?}"),
    }
    let owner = Lease::new("inv-1", lease);
    let progressed = apply_and_compare(
        &store,
        &claimed,
        owner.renew(1 << 26, lease, Timestamp::now()),
    )
    .await;
    // Another owner cannot write an outcome.
    let intruder = Lease::new("inv-2", lease).fail(
        FailureReason::NotMp4,
        "x",
        Timestamp::now(),
        DEFAULT_TASK_TTL,
    );
    assert!(matches!(
        store.apply(&task.task_id, &intruder).await.unwrap(),
        Applied::Conflict(Some(_))
    ));

    let released = apply_and_compare(&store, &progressed, owner.release(Timestamp::now())).await;
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
        owner.store(video, Timestamp::now(), DEFAULT_TASK_TTL),
    )
    .await;
    assert_eq!(stored.status, TaskStatus::Stored);
    let item = stack.raw_item(stack.direct_table(), &id).await.unwrap();
    assert!(!item.contains_key("open_status") && !item.contains_key("lease_owner"));

    // A missing task is a conflict without a record, never an error.
    let ghost = Lease::new("x", lease).release(Timestamp::now());
    let missing = TaskId::parse(&unique_task_id("ghost")).unwrap();
    assert_eq!(
        store.apply(&missing, &ghost).await.unwrap(),
        Applied::Conflict(None)
    );
}

/// Hole 7: whatever the body limit, a huge `msg` is stored capped, and the item stays
/// far below DynamoDB's 400 KB (a 1 MiB message used to make every retry a 503).
#[tokio::test]
async fn a_one_mebibyte_message_is_recorded_capped() {
    let stack = Stack::load();
    let store = stack.direct_task_store();
    let id = unique_task_id("huge-msg");
    let huge = "é".repeat(512 * 1024); // 1 MiB of two-byte characters
    let envelope = shared::test_support::envelope(&id, 500, None, &huge);
    let recorded = record_callback(&store, &envelope, Timestamp::now(), DEFAULT_TASK_TTL)
        .await
        .unwrap();
    assert_eq!(
        recorded,
        Recorded::Created {
            status: TaskStatus::Failed
        }
    );
    let item = stack.raw_item(stack.direct_table(), &id).await.unwrap();
    let AttributeValue::S(msg) = &item["upstream_msg"] else {
        panic!("upstream_msg is a string")
    };
    assert_eq!(msg.len(), shared::domain::task::MAX_STORED_TEXT);
    assert!(huge.starts_with(msg.as_str()));
    // And again on a revive, and on a duplicate (which writes no message at all).
    let revive = shared::test_support::envelope(&id, 200, Some("https://cdn.example/v.mp4"), &huge);
    let r = record_callback(&store, &revive, Timestamp::now(), DEFAULT_TASK_TTL)
        .await
        .unwrap();
    assert_eq!(r, Recorded::Revived { callback_count: 2 });
}

/// The reconciler's read: the sparse open-tasks index, by status, oldest change first,
/// in pages; closed tasks never appear.
#[tokio::test]
async fn open_tasks_are_listed_from_the_sparse_index_in_pages() {
    use shared::store::Listed;
    let stack = Stack::load();
    let store = stack.direct_task_store();
    let prefix = unique_task_id("open");
    // Old enough that no other test's tasks interleave: a fixed instant in 2020.
    let base = Timestamp::from_secs(1_580_000_000 + i64::from(fastrand::u32(..1_000_000)));
    let mut ids = Vec::new();
    for i in 0..7 {
        let id = format!("{prefix}-{i}");
        let at = base.saturating_add(Duration::from_secs(i));
        store
            .create(&Task::from_callback(
                &envelope(&id, 200),
                at,
                DEFAULT_TASK_TTL,
            ))
            .await
            .unwrap();
        ids.push(id);
    }
    store
        .create(&Task::from_callback(
            &envelope(&format!("{prefix}-failed"), 451),
            base,
            DEFAULT_TASK_TTL,
        ))
        .await
        .unwrap();
    let before = base.saturating_add(Duration::from_secs(7));
    let mut seen = Vec::new();
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let page = store
            .list_open(TaskStatus::Received, before, 3, cursor.as_ref())
            .await
            .unwrap();
        pages += 1;
        for listed in page.tasks {
            let Listed::Task(task) = listed else {
                panic!("all readable")
            };
            if task.task_id.as_str().starts_with(&prefix) {
                seen.push(task.task_id.to_string());
            }
        }
        cursor = page.next;
        if cursor.is_none() {
            break;
        }
        assert!(pages < 1_000, "the cursor never ran out");
    }
    assert_eq!(seen, ids, "oldest first, every one, no closed task");
    assert!(pages >= 3, "paged: {pages}");
}
