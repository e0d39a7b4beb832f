//! DynamoDB adapter of [`TaskStore`]. Each operation is one request; conditions and
//! `ReturnValuesOnConditionCheckFailure = ALL_OLD` turn races into domain outcomes.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};

use super::{Applied, Created, StoreError, TaskStore};
use crate::clock::Timestamp;
use crate::task::{Guard, Task, TaskChange, TaskStatus, Update, expiry};
use crate::task_id::TaskId;

type Item = HashMap<String, AttributeValue>;

/// Attribute present only on open tasks: the partition key of the sparse `open-tasks`
/// index (template.yaml), which the reconciler reads.
pub const OPEN_STATUS_ATTRIBUTE: &str = "open_status";

/// Task records in one DynamoDB table keyed by `task_id`.
#[derive(Debug, Clone)]
pub struct DynamoTaskStore {
    client: Client,
    table: String,
    ttl: Duration,
}

impl DynamoTaskStore {
    /// `ttl` is how long a record lives after its last state change.
    pub fn new(client: Client, table: impl Into<String>, ttl: Duration) -> Self {
        Self {
            client,
            table: table.into(),
            ttl,
        }
    }

    fn key(task_id: &TaskId) -> Item {
        HashMap::from([("task_id".to_owned(), AttributeValue::S(task_id.to_string()))])
    }
}

/// The item for a new task: its fields plus the derived index key.
pub fn task_to_item(task: &Task) -> Result<Item, StoreError> {
    let mut item: Item =
        serde_dynamo::to_item(task).map_err(|e| StoreError::Malformed(e.to_string()))?;
    if task.status.is_open() {
        item.insert(
            OPEN_STATUS_ATTRIBUTE.into(),
            AttributeValue::S(task.status.as_str().into()),
        );
    }
    Ok(item)
}

pub fn task_from_item(item: Item) -> Result<Task, StoreError> {
    serde_dynamo::from_item(item).map_err(|e| StoreError::Malformed(e.to_string()))
}

fn unavailable<E>(e: E) -> StoreError
where
    E: std::error::Error + Send + Sync + 'static,
{
    StoreError::Unavailable(Box::new(e))
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

/// An update expression under construction.
#[derive(Default)]
struct Expr {
    set: Vec<String>,
    add: Vec<String>,
    remove: Vec<&'static str>,
    values: Item,
    names: HashMap<String, String>,
}

impl Expr {
    fn set(&mut self, attr: &str, value: AttributeValue) -> &mut Self {
        let placeholder = format!(":{attr}");
        let alias = self.name(attr);
        self.set.push(format!("{alias} = {placeholder}"));
        self.values.insert(placeholder, value);
        self
    }

    fn add(&mut self, attr: &str, by: i64) -> &mut Self {
        let placeholder = format!(":add_{attr}");
        let alias = self.name(attr);
        self.add.push(format!("{alias} {placeholder}"));
        self.values.insert(placeholder, n(by));
        self
    }

    fn remove(&mut self, attrs: &[&'static str]) -> &mut Self {
        self.remove.extend_from_slice(attrs);
        self
    }

    /// `status` is a DynamoDB reserved word; alias every attribute the same way.
    fn name(&mut self, attr: &str) -> String {
        let alias = format!("#{attr}");
        self.names.insert(alias.clone(), attr.to_owned());
        alias
    }

    fn status(&mut self, status: TaskStatus) -> &mut Self {
        self.set("status", s(status.as_str()));
        if status.is_open() {
            self.set(OPEN_STATUS_ATTRIBUTE, s(status.as_str()))
        } else {
            self.remove(&[OPEN_STATUS_ATTRIBUTE])
        }
    }

    fn expression(&mut self) -> String {
        let removed: Vec<String> = self.remove.clone().iter().map(|a| self.name(a)).collect();
        let mut clauses = Vec::new();
        if !self.set.is_empty() {
            clauses.push(format!("SET {}", self.set.join(", ")));
        }
        if !self.add.is_empty() {
            clauses.push(format!("ADD {}", self.add.join(", ")));
        }
        if !removed.is_empty() {
            clauses.push(format!("REMOVE {}", removed.join(", ")));
        }
        clauses.join(" ")
    }

    /// Writes `guard` as a condition expression.
    fn condition(&mut self, guard: &Guard) -> String {
        match guard {
            Guard::Revision(r) => {
                self.values.insert(":guard_revision".into(), n(r));
                format!("{} = :guard_revision", self.name("revision"))
            }
            Guard::LeaseOwner(owner) => {
                self.values.insert(":guard_owner".into(), s(owner.clone()));
                self.values.insert(
                    ":guard_downloading".into(),
                    s(TaskStatus::Downloading.as_str()),
                );
                format!(
                    "{} = :guard_downloading AND {} = :guard_owner",
                    self.name("status"),
                    self.name("lease_owner")
                )
            }
        }
    }
}

const LEASE_FIELDS: [&str; 3] = ["lease_owner", "lease_until", "bytes_received"];

/// The update expression implementing [`Task::apply`] for `update`.
fn update_expression(update: &Update, ttl: Duration) -> Result<Expr, StoreError> {
    let mut e = Expr::default();
    let at = update.at;
    e.set("updated_at", s(at.to_rfc3339()));
    if update.change.changes_status() {
        e.add("revision", 1);
    }
    match &update.change {
        TaskChange::Revive {
            video_url,
            upstream_code,
            upstream_msg,
        } => {
            e.status(TaskStatus::Received)
                .set("video_url", s(video_url.as_str()))
                .set("upstream_code", n(upstream_code))
                .set("upstream_msg", s(upstream_msg.clone()))
                .set("attempts", n(0))
                .set("last_callback_at", s(at.to_rfc3339()))
                .set("expires_at", n(expiry(at, ttl)))
                .add("callback_count", 1)
                .remove(&["failure_reason", "failure_detail"])
                .remove(&LEASE_FIELDS);
        }
        TaskChange::Claim { owner, lease_until } => {
            e.status(TaskStatus::Downloading)
                .set("lease_owner", s(owner.clone()))
                .set("lease_until", n(lease_until.as_millis()))
                .set("bytes_received", n(0))
                .add("attempts", 1);
        }
        TaskChange::Progress { bytes_received } => {
            e.set("bytes_received", n(bytes_received));
        }
        TaskChange::Store { video } => {
            let video = serde_dynamo::to_attribute_value(video)
                .map_err(|err| StoreError::Malformed(err.to_string()))?;
            e.status(TaskStatus::Stored)
                .set("video", video)
                .set("expires_at", n(expiry(at, ttl)))
                .remove(&LEASE_FIELDS);
        }
        TaskChange::Fail { reason, detail } => {
            e.status(TaskStatus::Failed)
                .set("failure_reason", s(reason.as_str()))
                .set("failure_detail", s(detail.clone()))
                .set("expires_at", n(expiry(at, ttl)))
                .remove(&LEASE_FIELDS);
        }
        TaskChange::Release => {
            e.set("lease_until", n(at.as_millis()));
        }
    }
    Ok(e)
}

impl TaskStore for DynamoTaskStore {
    async fn create(&self, task: &Task) -> Result<Created, StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(task_to_item(task)?))
            .condition_expression("attribute_not_exists(task_id)")
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(Created::New),
            Err(SdkError::ServiceError(e)) => match e.into_err() {
                PutItemError::ConditionalCheckFailedException(ccf) => {
                    let existing = ccf.item.ok_or_else(|| {
                        StoreError::Malformed(
                            "conditional check failed without the existing item".into(),
                        )
                    })?;
                    Ok(Created::Exists(Box::new(task_from_item(existing)?)))
                }
                other => Err(unavailable(other)),
            },
            Err(other) => Err(unavailable(other)),
        }
    }

    async fn count_callback(&self, task_id: &TaskId, at: Timestamp) -> Result<u32, StoreError> {
        let mut e = Expr::default();
        e.set("last_callback_at", s(at.to_rfc3339()))
            .set("updated_at", s(at.to_rfc3339()))
            .add("callback_count", 1);
        let expression = e.expression();
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(task_id)))
            .update_expression(expression)
            .condition_expression("attribute_exists(task_id)")
            .set_expression_attribute_names(Some(e.names))
            .set_expression_attribute_values(Some(e.values))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await;
        match result {
            Ok(out) => match out.attributes().and_then(|a| a.get("callback_count")) {
                Some(AttributeValue::N(count)) => count
                    .parse()
                    .map_err(|_| StoreError::Malformed(format!("callback_count {count:?}"))),
                _ => Err(StoreError::Malformed(
                    "callback_count missing after update".into(),
                )),
            },
            Err(SdkError::ServiceError(e)) => match e.into_err() {
                UpdateItemError::ConditionalCheckFailedException(_) => {
                    Err(StoreError::Vanished(task_id.clone()))
                }
                other => Err(unavailable(other)),
            },
            Err(other) => Err(unavailable(other)),
        }
    }

    async fn apply(&self, task_id: &TaskId, update: &Update) -> Result<Applied, StoreError> {
        let mut e = update_expression(update, self.ttl)?;
        let expression = e.expression();
        let condition = e.condition(&update.guard);
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(task_id)))
            .update_expression(expression)
            .condition_expression(condition)
            .set_expression_attribute_names(Some(e.names))
            .set_expression_attribute_values(Some(e.values))
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(out) => {
                let item = out
                    .attributes
                    .ok_or_else(|| StoreError::Malformed("update returned no attributes".into()))?;
                Ok(Applied::Done(Box::new(task_from_item(item)?)))
            }
            Err(SdkError::ServiceError(e)) => match e.into_err() {
                UpdateItemError::ConditionalCheckFailedException(ccf) => match ccf.item {
                    // An update on a missing key fails the condition with no old item.
                    None => Ok(Applied::Conflict(None)),
                    Some(item) => Ok(Applied::Conflict(Some(Box::new(task_from_item(item)?)))),
                },
                other => Err(unavailable(other)),
            },
            Err(other) => Err(unavailable(other)),
        }
    }

    async fn get(&self, task_id: &TaskId) -> Result<Option<Task>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(task_id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        out.item.map(task_from_item).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{CallbackEnvelope, Outcome, VideoUrl, VideoUrlPolicy};
    use crate::task::{DEFAULT_TASK_TTL, FailureReason};

    fn task() -> Task {
        let envelope = CallbackEnvelope {
            task_id: TaskId::parse("t-1").unwrap(),
            msg: "ok".into(),
            outcome: Outcome::Succeeded {
                video_url: VideoUrl::parse(
                    "https://cdn.example/v.mp4?sig=1",
                    &VideoUrlPolicy::default(),
                )
                .unwrap(),
            },
        };
        Task::from_callback(
            &envelope,
            Timestamp::from_secs(1_795_000_000),
            DEFAULT_TASK_TTL,
        )
    }

    #[test]
    fn new_item_carries_typed_attributes_and_the_sparse_index_key() {
        let item = task_to_item(&task()).unwrap();
        assert_eq!(item["task_id"], s("t-1"));
        assert_eq!(item["status"], s("received"));
        assert_eq!(item[OPEN_STATUS_ATTRIBUTE], s("received"));
        assert_eq!(item["callback_count"], n(1));
        assert_eq!(item["upstream_code"], n(200));
        assert_eq!(item["expires_at"], n(1_795_000_000 + 30 * 24 * 3600));
        assert!(!item.contains_key("lease_owner"));
        assert_eq!(task_from_item(item).unwrap(), task());

        let mut failed = task();
        failed.status = TaskStatus::Failed;
        assert!(
            !task_to_item(&failed)
                .unwrap()
                .contains_key(OPEN_STATUS_ATTRIBUTE)
        );
    }

    #[test]
    fn expressions_alias_every_name_and_guard_conditions() {
        let update = Update {
            change: TaskChange::Fail {
                reason: FailureReason::NotMp4,
                detail: "html".into(),
            },
            guard: Guard::LeaseOwner("inv-1".into()),
            at: Timestamp::from_secs(1_795_000_100),
        };
        let mut e = update_expression(&update, DEFAULT_TASK_TTL).unwrap();
        let expr = e.expression();
        let cond = e.condition(&update.guard);
        assert!(expr.starts_with("SET #updated_at = :updated_at"), "{expr}");
        assert!(
            expr.contains("#status = :status") && expr.contains("ADD #revision :add_revision"),
            "{expr}"
        );
        assert!(
            expr.contains("REMOVE #open_status, #lease_owner, #lease_until, #bytes_received"),
            "{expr}"
        );
        assert_eq!(
            cond,
            "#status = :guard_downloading AND #lease_owner = :guard_owner"
        );
        assert_eq!(e.values[":failure_reason"], s("not_mp4"));
        // Every placeholder used has a value and every alias a name.
        for token in format!("{expr} {cond}").split([' ', ',']) {
            if token.starts_with(':') {
                assert!(e.values.contains_key(token), "{token}");
            }
            if token.starts_with('#') {
                assert!(e.names.contains_key(token), "{token}");
            }
        }
    }
}
