//! DynamoDB adapter of [`TaskStore`]. Each operation is one request: a new task is one
//! conditional `PutItem`; a [`Patch`] is rendered, as it is, into one conditional
//! `UpdateItem` (names and values aliased); `ReturnValuesOnConditionCheckFailure =
//! ALL_OLD` turns races into domain outcomes. No transition is written down here: the
//! domain decided what each patch changes.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};

use super::image::{task_from_image, unreadable_image};
use super::{
    Applied, Created, Cursor, Listed, OpenPage, StatusQuery, StoreError, TaskIndex, TaskStore,
};
use crate::domain::clock::Timestamp;
use crate::domain::task::{Condition, Item, Patch, Task, TaskStatus, attr};
use crate::domain::task_id::TaskId;

/// The sparse global secondary index of open tasks (template.yaml): partition key
/// `open_status`, sort key `updated_at`.
pub const OPEN_TASKS_INDEX: &str = "open-tasks";
/// The global secondary index of every task by status (template.yaml): partition key
/// `status`, sort key `updated_at`.
pub const BY_STATUS_INDEX: &str = "by-status";

/// An item as the SDK holds it.
pub type DynamoItem = HashMap<String, AttributeValue>;

/// Task records in one DynamoDB table keyed by `task_id`.
#[derive(Debug, Clone)]
pub struct DynamoTaskStore {
    client: Client,
    table: String,
}

impl DynamoTaskStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    fn key(task_id: &TaskId) -> DynamoItem {
        HashMap::from([(
            attr::TASK_ID.to_owned(),
            AttributeValue::S(task_id.to_string()),
        )])
    }
}

/// The domain's item as DynamoDB attribute values (one to one).
pub fn to_dynamo_item(item: &Item) -> Result<DynamoItem, StoreError> {
    serde_dynamo::to_item(item).map_err(|e| StoreError::Malformed(e.to_string()))
}

/// The item for a new task: its fields plus the derived index key.
pub fn task_to_item(task: &Task) -> Result<DynamoItem, StoreError> {
    to_dynamo_item(&task.to_item()?)
}

/// A task from an item as the SDK returns it: the same decoding as a stream image.
pub fn task_from_item(item: DynamoItem) -> Result<Task, StoreError> {
    task_from_image(item.into())
}

/// A listed item: the task, or what is needed to fail it (see the memory store).
fn listed(item: DynamoItem) -> Option<Listed> {
    let item: serde_dynamo::Item = item.into();
    match task_from_image(item.clone()) {
        Ok(task) => Some(Listed::Task(Box::new(task))),
        Err(e) => {
            let (task_id, raw) = unreadable_image(&item, &item)?;
            Some(Listed::Unreadable {
                task_id,
                raw,
                detail: e.to_string(),
            })
        }
    }
}

fn unavailable<E>(e: E) -> StoreError
where
    E: std::error::Error + Send + Sync + 'static,
{
    StoreError::Unavailable(Box::new(e))
}

/// A patch as DynamoDB expressions.
#[derive(Debug, Clone, PartialEq)]
struct Rendered {
    pub update: String,
    pub condition: String,
    pub names: HashMap<String, String>,
    pub values: DynamoItem,
}

/// Renders `patch`: `SET #a = :a`, `ADD #n :add_n`, `REMOVE #r`, and its condition.
/// Every attribute is aliased (`status` is a reserved word).
fn render(patch: &Patch) -> Result<Rendered, StoreError> {
    let mut names = HashMap::new();
    let mut values = HashMap::new();
    let mut alias = |attr: &str| {
        let alias = format!("#{attr}");
        names.insert(alias.clone(), attr.to_owned());
        alias
    };
    let mut set = Vec::with_capacity(patch.set.len());
    for (attr, value) in &patch.set {
        let placeholder = format!(":{attr}");
        set.push(format!("{} = {placeholder}", alias(attr)));
        let value = serde_dynamo::to_attribute_value(value)
            .map_err(|e| StoreError::Malformed(e.to_string()))?;
        values.insert(placeholder, value);
    }
    let mut add = Vec::with_capacity(patch.add.len());
    for (attr, by) in &patch.add {
        let placeholder = format!(":add_{attr}");
        add.push(format!("{} {placeholder}", alias(attr)));
        values.insert(placeholder, AttributeValue::N(by.to_string()));
    }
    let remove: Vec<String> = patch.remove.iter().map(|a| alias(a)).collect();

    let condition = match &patch.condition {
        Condition::Exists => format!("attribute_exists({})", alias(attr::TASK_ID)),
        Condition::Revision(r) => {
            values.insert(":guard_revision".into(), AttributeValue::N(r.to_string()));
            format!("{} = :guard_revision", alias(attr::REVISION))
        }
        Condition::LeaseHeldBy(owner) => {
            values.insert(":guard_owner".into(), AttributeValue::S(owner.clone()));
            values.insert(
                ":guard_downloading".into(),
                AttributeValue::S(TaskStatus::Downloading.as_str().into()),
            );
            format!(
                "{} = :guard_downloading AND {} = :guard_owner",
                alias(attr::STATUS),
                alias(attr::LEASE_OWNER)
            )
        }
    };

    let mut clauses = Vec::new();
    if !set.is_empty() {
        clauses.push(format!("SET {}", set.join(", ")));
    }
    if !add.is_empty() {
        clauses.push(format!("ADD {}", add.join(", ")));
    }
    if !remove.is_empty() {
        clauses.push(format!("REMOVE {}", remove.join(", ")));
    }
    Ok(Rendered {
        update: clauses.join(" "),
        condition,
        names,
        values,
    })
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

    async fn apply(&self, task_id: &TaskId, patch: &Patch) -> Result<Applied, StoreError> {
        let rendered = render(patch)?;
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(task_id)))
            .update_expression(rendered.update)
            .condition_expression(rendered.condition)
            .set_expression_attribute_names(Some(rendered.names))
            .set_expression_attribute_values(Some(rendered.values))
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

    async fn list_open(
        &self,
        status: TaskStatus,
        changed_before: Timestamp,
        limit: usize,
        cursor: Option<&Cursor>,
    ) -> Result<OpenPage, StoreError> {
        let start = cursor.map(|c| {
            c.0.iter()
                .map(|(k, v)| (k.clone(), AttributeValue::S(v.clone())))
                .collect::<DynamoItem>()
        });
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(OPEN_TASKS_INDEX)
            .key_condition_expression("#open = :status AND #updated < :before")
            .expression_attribute_names("#open", attr::OPEN_STATUS)
            .expression_attribute_names("#updated", attr::UPDATED_AT)
            .expression_attribute_values(":status", AttributeValue::S(status.as_str().into()))
            .expression_attribute_values(":before", AttributeValue::S(changed_before.to_rfc3339()))
            .scan_index_forward(true)
            .limit(i32::try_from(limit).unwrap_or(i32::MAX))
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(unavailable)?;
        let tasks = out
            .items
            .unwrap_or_default()
            .into_iter()
            .filter_map(listed)
            .collect();
        Ok(OpenPage {
            tasks,
            next: out.last_evaluated_key.map(cursor_of),
        })
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

/// The key condition of a [`StatusQuery`]: the status, and the range of `updated_at`
/// (its name only when used: DynamoDB refuses unused names).
fn status_condition(query: &StatusQuery) -> (String, HashMap<String, String>, DynamoItem) {
    let mut names = HashMap::from([("#status".to_owned(), attr::STATUS.to_owned())]);
    let mut values = HashMap::from([(
        ":status".to_owned(),
        AttributeValue::S(query.status.as_str().into()),
    )]);
    let mut bound = |name: &str, at: Timestamp| {
        values.insert(name.to_owned(), AttributeValue::S(at.to_rfc3339()));
    };
    let range = match (query.since, query.until) {
        (Some(since), Some(until)) => {
            bound(":since", since);
            bound(":until", until);
            " AND #updated BETWEEN :since AND :until"
        }
        (Some(since), None) => {
            bound(":since", since);
            " AND #updated >= :since"
        }
        (None, Some(until)) => {
            bound(":until", until);
            " AND #updated <= :until"
        }
        (None, None) => "",
    };
    if !range.is_empty() {
        names.insert("#updated".to_owned(), attr::UPDATED_AT.to_owned());
    }
    (format!("#status = :status{range}"), names, values)
}

/// The SDK's last evaluated key as a cursor: the index's key plus the table's (every key
/// attribute is a string in both indexes).
fn cursor_of(key: DynamoItem) -> Cursor {
    Cursor(
        key.into_iter()
            .filter_map(|(k, v)| match v {
                AttributeValue::S(s) => Some((k, s)),
                _ => None,
            })
            .collect(),
    )
}

impl TaskIndex for DynamoTaskStore {
    async fn list_by_status(
        &self,
        query: &StatusQuery,
        cursor: Option<&Cursor>,
    ) -> Result<OpenPage, StoreError> {
        let start = cursor.map(|c| {
            c.0.iter()
                .map(|(k, v)| (k.clone(), AttributeValue::S(v.clone())))
                .collect::<DynamoItem>()
        });
        let (condition, names, values) = status_condition(query);
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(BY_STATUS_INDEX)
            .key_condition_expression(condition)
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .scan_index_forward(false)
            .limit(i32::try_from(query.limit).unwrap_or(i32::MAX))
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(unavailable)?;
        let tasks = out
            .items
            .unwrap_or_default()
            .into_iter()
            .filter_map(listed)
            .collect();
        Ok(OpenPage {
            tasks,
            next: out.last_evaluated_key.map(cursor_of),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::clock::Timestamp;
    use crate::domain::envelope::{CallbackEnvelope, Outcome, VideoUrl};
    use crate::domain::ssrf::UrlPolicy;
    use crate::domain::task::{DEFAULT_TASK_TTL, FailureReason, Lease};

    const OPEN_STATUS_ATTRIBUTE: &str = attr::OPEN_STATUS;

    fn n(v: impl ToString) -> AttributeValue {
        AttributeValue::N(v.to_string())
    }

    fn s(v: impl Into<String>) -> AttributeValue {
        AttributeValue::S(v.into())
    }

    fn task() -> Task {
        let envelope = CallbackEnvelope {
            task_id: TaskId::parse("t-1").unwrap(),
            msg: "ok".into(),
            outcome: Outcome::Succeeded {
                video_url: VideoUrl::parse(
                    "https://cdn.example/v.mp4?sig=1",
                    &UrlPolicy::default(),
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
        let update = Lease::new("inv-1", Timestamp::from_secs(1_795_000_900)).fail(
            FailureReason::NotMp4,
            "html",
            Timestamp::from_secs(1_795_000_100),
            DEFAULT_TASK_TTL,
        );
        let e = render(&update).unwrap();
        let expr = e.update.clone();
        let cond = e.condition.clone();
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

    #[test]
    fn a_status_query_names_only_what_its_condition_uses() {
        let at = Timestamp::from_secs(1_795_000_000);
        let query = |since, until| StatusQuery {
            status: TaskStatus::Stored,
            since,
            until,
            limit: 10,
        };
        let (all, names, values) = status_condition(&query(None, None));
        assert_eq!(all, "#status = :status");
        assert_eq!(names.len(), 1);
        assert_eq!(values[":status"], s("stored"));
        let (since, names, values) = status_condition(&query(Some(at), None));
        assert_eq!(since, "#status = :status AND #updated >= :since");
        assert_eq!(names["#updated"], "updated_at");
        assert_eq!(values[":since"], s(at.to_rfc3339()));
        let (until, _, _) = status_condition(&query(None, Some(at)));
        assert_eq!(until, "#status = :status AND #updated <= :until");
        let (both, _, values) = status_condition(&query(Some(at), Some(at)));
        assert_eq!(
            both,
            "#status = :status AND #updated BETWEEN :since AND :until"
        );
        assert_eq!(values.len(), 3);
    }

    #[test]
    fn every_condition_is_rendered_with_its_values() {
        let at = Timestamp::from_secs(1_795_000_000);
        let exists = render(&Patch::count_callback(at)).unwrap();
        assert_eq!(exists.condition, "attribute_exists(#task_id)");
        assert_eq!(exists.names["#task_id"], "task_id");
        assert_eq!(
            exists.update,
            "SET #last_callback_at = :last_callback_at, #updated_at = :updated_at \
             ADD #callback_count :add_callback_count"
        );
        assert_eq!(exists.values[":add_callback_count"], n(1));
    }
}
