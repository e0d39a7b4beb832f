//! DynamoDB adapters of the notification ports: deliveries in one table (key
//! `delivery_id`, the `by-endpoint` index on `endpoint_id` + `created_at`), endpoints and
//! their counters in another (key `endpoint_id` + `sk`: `endpoint`, `completions`,
//! `batch#<seq>`, `busy`, `rate#<window>`). Every racing write is one conditional
//! request or one atomic counter update; a failed condition is an outcome.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::delete_item::DeleteItemError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};

use super::{
    DeliveryCursor, DeliveryLog, DeliveryPage, DeliveryQuery, DeliveryStore, Endpoint,
    EndpointAdmin, EndpointStore, NotifyStoreError, Saved, ThresholdStore,
};
use crate::domain::clock::Timestamp;
use crate::domain::notify::delivery::{Delivery, DeliveryId};
use crate::domain::notify::endpoint::{EndpointId, EndpointSettings};
use crate::domain::notify::health::{Health, HealthChange};
use crate::domain::notify::signing::SigningKeys;
use crate::domain::notify::threshold::{Batch, Busy};
use crate::domain::secret::Secret;
use crate::domain::task_id::TaskId;

type DynamoItem = HashMap<String, AttributeValue>;

/// How long a rate window's counter is kept (windows are at most an hour long).
const RATE_WINDOW_KEPT_SECS: i64 = 2 * 3_600;

#[derive(Debug, Clone)]
pub struct DynamoNotifications {
    client: Client,
    deliveries: String,
    endpoints: String,
}

impl DynamoNotifications {
    pub fn new(
        client: Client,
        deliveries_table: impl Into<String>,
        endpoints_table: impl Into<String>,
    ) -> Self {
        Self {
            client,
            deliveries: deliveries_table.into(),
            endpoints: endpoints_table.into(),
        }
    }

    /// An update of endpoint `id`'s own item (not its counters).
    fn update_endpoint_item(
        &self,
        id: &EndpointId,
    ) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
        self.client
            .update_item()
            .table_name(&self.endpoints)
            .set_key(Some(Self::key(id, "endpoint")))
    }

    fn key(endpoint: &EndpointId, sk: &str) -> DynamoItem {
        HashMap::from([
            ("endpoint_id".to_owned(), s(endpoint.as_str())),
            ("sk".to_owned(), s(sk)),
        ])
    }
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn unavailable<E: std::error::Error + Send + Sync + 'static>(e: E) -> NotifyStoreError {
    NotifyStoreError::Unavailable(Box::new(e))
}

fn malformed(e: impl ToString) -> NotifyStoreError {
    NotifyStoreError::Malformed(e.to_string())
}

fn batch_sk(seq: u64) -> String {
    // Zero-padded, so batches sort in order.
    format!("batch#{seq:020}")
}

/// An update that may fail its condition: `Ok(None)` when it did.
async fn conditional_update(
    request: aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder,
) -> Result<Option<DynamoItem>, NotifyStoreError> {
    match request.send().await {
        Ok(out) => Ok(Some(out.attributes.unwrap_or_default())),
        Err(SdkError::ServiceError(e)) => match e.into_err() {
            UpdateItemError::ConditionalCheckFailedException(_) => Ok(None),
            other => Err(unavailable(other)),
        },
        Err(other) => Err(unavailable(other)),
    }
}

/// A put that may fail its condition: `false` when it did.
async fn conditional_put(
    request: aws_sdk_dynamodb::operation::put_item::builders::PutItemFluentBuilder,
) -> Result<bool, NotifyStoreError> {
    match request.send().await {
        Ok(_) => Ok(true),
        Err(SdkError::ServiceError(e)) => match e.into_err() {
            PutItemError::ConditionalCheckFailedException(_) => Ok(false),
            other => Err(unavailable(other)),
        },
        Err(other) => Err(unavailable(other)),
    }
}

fn number(item: &DynamoItem, name: &str) -> Result<u64, NotifyStoreError> {
    match item.get(name) {
        Some(AttributeValue::N(v)) => v
            .parse()
            .map_err(|_| malformed(format!("{name} is not a count"))),
        None => Ok(0),
        Some(_) => Err(malformed(format!("{name} is not a number"))),
    }
}

fn timestamp(item: &DynamoItem, name: &str) -> Result<Option<Timestamp>, NotifyStoreError> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Timestamp::parse_rfc3339(v)
            .map(Some)
            .ok_or_else(|| malformed(format!("{name} is not a timestamp"))),
        None => Ok(None),
        Some(_) => Err(malformed(format!("{name} is not a string"))),
    }
}

fn bytes(item: &DynamoItem, name: &str) -> Option<Secret> {
    match item.get(name) {
        Some(AttributeValue::B(b)) => Some(Secret::new(b.as_ref().to_vec())),
        _ => None,
    }
}

fn health_of(item: &DynamoItem) -> Result<Health, NotifyStoreError> {
    Ok(Health {
        consecutive_failures: u32::try_from(number(item, "consecutive_failures")?)
            .unwrap_or(u32::MAX),
        failing_since: timestamp(item, "failing_since")?,
    })
}

/// An endpoint as an item: settings and health. Its secrets are never written here; they
/// live in the endpoint vault ([`super::vault`]).
pub fn endpoint_to_item(e: &Endpoint) -> Result<DynamoItem, NotifyStoreError> {
    let mut item = DynamoNotifications::key(&e.id, "endpoint");
    item.insert(
        "settings".into(),
        serde_dynamo::to_attribute_value(&e.settings).map_err(malformed)?,
    );
    item.insert("enabled".into(), AttributeValue::Bool(e.enabled));
    item.insert(
        "consecutive_failures".into(),
        n(e.health.consecutive_failures),
    );
    if let Some(since) = e.health.failing_since {
        item.insert("failing_since".into(), s(since.to_rfc3339()));
    }
    if let Some((at, reason)) = &e.disabled {
        item.insert("disabled_at".into(), s(at.to_rfc3339()));
        item.insert("disabled_reason".into(), s(reason.clone()));
    }
    item.insert("created_at".into(), s(e.created_at.to_rfc3339()));
    item.insert("updated_at".into(), s(e.updated_at.to_rfc3339()));
    Ok(item)
}

pub fn endpoint_from_item(item: &DynamoItem) -> Result<Endpoint, NotifyStoreError> {
    let id = match item.get("endpoint_id") {
        Some(AttributeValue::S(v)) => {
            EndpointId::parse(v).ok_or_else(|| malformed("bad endpoint_id"))?
        }
        _ => return Err(malformed("endpoint_id missing")),
    };
    let settings: EndpointSettings = serde_dynamo::from_attribute_value(
        item.get("settings")
            .cloned()
            .ok_or_else(|| malformed("settings missing"))?,
    )
    .map_err(malformed)?;
    // Secrets as attributes: only items written before the vault have them.
    let signing = bytes(item, "signing_key").map(|current| SigningKeys {
        scheme: settings.signing,
        current,
        previous: bytes(item, "signing_previous").and_then(|p| {
            timestamp(item, "signing_previous_until")
                .ok()
                .flatten()
                .map(|until| (p, until))
        }),
    });
    let disabled = match (timestamp(item, "disabled_at")?, item.get("disabled_reason")) {
        (Some(at), Some(AttributeValue::S(r))) => Some((at, r.clone())),
        _ => None,
    };
    Ok(Endpoint {
        id,
        settings,
        signing,
        feishu_secret: bytes(item, "feishu_secret"),
        health: health_of(item)?,
        enabled: matches!(item.get("enabled"), Some(AttributeValue::Bool(true))),
        disabled,
        created_at: timestamp(item, "created_at")?
            .ok_or_else(|| malformed("created_at missing"))?,
        updated_at: timestamp(item, "updated_at")?
            .ok_or_else(|| malformed("updated_at missing"))?,
    })
}

fn delivery_to_item(d: &Delivery) -> Result<DynamoItem, NotifyStoreError> {
    let mut item: DynamoItem = serde_dynamo::to_item(d).map_err(malformed)?;
    // The table's key; `id` stays for the decoder.
    item.insert("delivery_id".into(), s(d.id.as_str()));
    Ok(item)
}

fn delivery_from_item(item: DynamoItem) -> Result<Delivery, NotifyStoreError> {
    serde_dynamo::from_item(item).map_err(malformed)
}

fn batch_from_item(item: &DynamoItem) -> Result<Batch, NotifyStoreError> {
    let members = match item.get("members") {
        Some(AttributeValue::L(list)) => list
            .iter()
            .map(|v| match v {
                AttributeValue::S(id) => TaskId::parse(id).map_err(malformed),
                _ => Err(malformed("a batch member is not a string")),
            })
            .collect::<Result<Vec<_>, _>>()?,
        None => Vec::new(),
        Some(_) => return Err(malformed("members is not a list")),
    };
    Ok(Batch {
        members,
        first_at: timestamp(item, "first_at")?,
        flushed: matches!(item.get("flushed"), Some(AttributeValue::Bool(true))),
        sent: matches!(item.get("sent"), Some(AttributeValue::Bool(true))),
    })
}

fn busy_from_item(item: &DynamoItem) -> Result<Busy, NotifyStoreError> {
    Ok(Busy {
        since: timestamp(item, "since")?,
        last_completion_at: timestamp(item, "last_completion_at")?,
        completed: number(item, "completed")?,
    })
}

impl EndpointAdmin for DynamoNotifications {
    async fn create_endpoint(&self, endpoint: &Endpoint) -> Result<bool, NotifyStoreError> {
        let request = self
            .client
            .put_item()
            .table_name(&self.endpoints)
            .set_item(Some(endpoint_to_item(endpoint)?))
            .condition_expression("attribute_not_exists(endpoint_id)");
        conditional_put(request).await
    }

    async fn update_endpoint(&self, endpoint: &Endpoint) -> Result<bool, NotifyStoreError> {
        // The settings `endpoint_to_item` writes: set the present ones, remove the absent
        // ones (the secret attributes of an item from before the vault go this way);
        // health and the enabled flag stay.
        let item = endpoint_to_item(endpoint)?;
        const REPLACED: [&str; 6] = [
            "settings",
            "signing_key",
            "signing_previous",
            "signing_previous_until",
            "feishu_secret",
            "updated_at",
        ];
        let mut request = self
            .update_endpoint_item(&endpoint.id)
            .condition_expression("attribute_exists(endpoint_id)");
        let (mut set, mut remove) = (Vec::new(), Vec::new());
        for name in REPLACED {
            match item.get(name) {
                Some(value) => {
                    set.push(format!("{name} = :{name}"));
                    request =
                        request.expression_attribute_values(format!(":{name}"), value.clone());
                }
                None => remove.push(name),
            }
        }
        let mut expression = format!("SET {}", set.join(", "));
        if !remove.is_empty() {
            expression.push_str(&format!(" REMOVE {}", remove.join(", ")));
        }
        Ok(conditional_update(request.update_expression(expression))
            .await?
            .is_some())
    }

    async fn enable(&self, id: &EndpointId, now: Timestamp) -> Result<bool, NotifyStoreError> {
        let request = self
            .update_endpoint_item(id)
            .update_expression(
                "SET enabled = :yes, consecutive_failures = :zero, updated_at = :now \
                 REMOVE failing_since, disabled_at, disabled_reason",
            )
            .condition_expression("attribute_exists(endpoint_id)")
            .expression_attribute_values(":yes", AttributeValue::Bool(true))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":now", s(now.to_rfc3339()));
        Ok(conditional_update(request).await?.is_some())
    }

    async fn delete_endpoint(&self, id: &EndpointId) -> Result<bool, NotifyStoreError> {
        let deleted = match self
            .client
            .delete_item()
            .table_name(&self.endpoints)
            .set_key(Some(Self::key(id, "endpoint")))
            .condition_expression("attribute_exists(endpoint_id)")
            .send()
            .await
        {
            Ok(_) => true,
            Err(SdkError::ServiceError(e)) => match e.into_err() {
                DeleteItemError::ConditionalCheckFailedException(_) => false,
                other => return Err(unavailable(other)),
            },
            Err(other) => return Err(unavailable(other)),
        };
        // Then its counters, batches and busy period (rate windows expire on their own,
        // but go too when found).
        let mut start = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.endpoints)
                .key_condition_expression("endpoint_id = :id")
                .expression_attribute_values(":id", s(id.as_str()))
                .projection_expression("endpoint_id, sk")
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(unavailable)?;
            for key in page.items.unwrap_or_default() {
                self.client
                    .delete_item()
                    .table_name(&self.endpoints)
                    .set_key(Some(key))
                    .send()
                    .await
                    .map_err(unavailable)?;
            }
            start = page.last_evaluated_key;
            if start.is_none() {
                break;
            }
        }
        Ok(deleted)
    }
}

impl EndpointStore for DynamoNotifications {
    async fn list(&self) -> Result<Vec<Endpoint>, NotifyStoreError> {
        let mut out = Vec::new();
        let mut start = None;
        loop {
            // A small table: endpoints and their counters. Only endpoint items are kept.
            let page = self
                .client
                .scan()
                .table_name(&self.endpoints)
                .consistent_read(true)
                .filter_expression("sk = :endpoint")
                .expression_attribute_values(":endpoint", s("endpoint"))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(unavailable)?;
            for item in page.items.unwrap_or_default() {
                out.push(endpoint_from_item(&item)?);
            }
            start = page.last_evaluated_key;
            if start.is_none() {
                break;
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    async fn get(&self, id: &EndpointId) -> Result<Option<Endpoint>, NotifyStoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.endpoints)
            .set_key(Some(Self::key(id, "endpoint")))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        out.item.as_ref().map(endpoint_from_item).transpose()
    }

    async fn record_health(
        &self,
        id: &EndpointId,
        change: HealthChange,
    ) -> Result<Health, NotifyStoreError> {
        let request = self
            .update_endpoint_item(id)
            .condition_expression("attribute_exists(endpoint_id)")
            .return_values(ReturnValue::AllNew);
        let request = match change {
            HealthChange::None | HealthChange::DisableNow { .. } => {
                return Ok(EndpointStore::get(self, id).await?.map(|e| e.health).unwrap_or_default());
            }
            HealthChange::Reset => request
                .update_expression("SET consecutive_failures = :zero REMOVE failing_since")
                .expression_attribute_values(":zero", n(0)),
            HealthChange::CountFailure { at } => request
                .update_expression(
                    "ADD consecutive_failures :one SET failing_since = if_not_exists(failing_since, :at)",
                )
                .expression_attribute_values(":one", n(1))
                .expression_attribute_values(":at", s(at.to_rfc3339())),
        };
        match conditional_update(request).await? {
            Some(item) => health_of(&item),
            None => Err(malformed(format!("endpoint {id} is gone"))),
        }
    }

    async fn disable(
        &self,
        id: &EndpointId,
        reason: &str,
        now: Timestamp,
    ) -> Result<bool, NotifyStoreError> {
        let request = self
            .update_endpoint_item(id)
            .update_expression(
                "SET enabled = :no, disabled_at = :now, disabled_reason = :why, updated_at = :now",
            )
            .condition_expression("enabled = :yes")
            .expression_attribute_values(":no", AttributeValue::Bool(false))
            .expression_attribute_values(":yes", AttributeValue::Bool(true))
            .expression_attribute_values(":now", s(now.to_rfc3339()))
            .expression_attribute_values(":why", s(reason));
        Ok(conditional_update(request).await?.is_some())
    }

    async fn take_send_slot(
        &self,
        id: &EndpointId,
        window: i64,
        max: u32,
    ) -> Result<bool, NotifyStoreError> {
        // The window number is in the key; the counter expires well after its window.
        let expires = Timestamp::now()
            .as_secs()
            .saturating_add(RATE_WINDOW_KEPT_SECS);
        let request = self
            .client
            .update_item()
            .table_name(&self.endpoints)
            .set_key(Some(Self::key(id, &format!("rate#{window}"))))
            .update_expression(
                "ADD taken :one SET expires_at = if_not_exists(expires_at, :expires)",
            )
            .condition_expression("attribute_not_exists(taken) OR taken < :max")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":max", n(max))
            .expression_attribute_values(":expires", n(expires));
        Ok(conditional_update(request).await?.is_some())
    }
}

impl ThresholdStore for DynamoNotifications {
    async fn next_completion(&self, endpoint: &EndpointId) -> Result<u64, NotifyStoreError> {
        let out = self
            .client
            .update_item()
            .table_name(&self.endpoints)
            .set_key(Some(Self::key(endpoint, "completions")))
            .update_expression("ADD completions :one")
            .expression_attribute_values(":one", n(1))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await
            .map_err(unavailable)?;
        number(&out.attributes.unwrap_or_default(), "completions")
    }

    async fn skip_past(&self, endpoint: &EndpointId, k: u64) -> Result<(), NotifyStoreError> {
        let request = self
            .client
            .update_item()
            .table_name(&self.endpoints)
            .set_key(Some(Self::key(endpoint, "completions")))
            .update_expression("SET completions = :k")
            .condition_expression("attribute_not_exists(completions) OR completions < :k")
            .expression_attribute_values(":k", n(k));
        // Already past it: nothing to do.
        conditional_update(request).await.map(|_| ())
    }

    async fn join_batch(
        &self,
        endpoint: &EndpointId,
        seq: u64,
        task: &TaskId,
        now: Timestamp,
    ) -> Result<Option<Batch>, NotifyStoreError> {
        let request = self
            .client
            .update_item()
            .table_name(&self.endpoints)
            .set_key(Some(Self::key(endpoint, &batch_sk(seq))))
            .update_expression(
                "SET members = list_append(if_not_exists(members, :empty), :one), first_at = if_not_exists(first_at, :now)",
            )
            .condition_expression("attribute_not_exists(sent) AND attribute_not_exists(flushed)")
            .expression_attribute_values(":empty", AttributeValue::L(Vec::new()))
            .expression_attribute_values(":one", AttributeValue::L(vec![s(task.as_str())]))
            .expression_attribute_values(":now", s(now.to_rfc3339()))
            .return_values(ReturnValue::AllNew);
        conditional_update(request)
            .await?
            .map(|item| batch_from_item(&item))
            .transpose()
    }

    async fn close_batch(
        &self,
        endpoint: &EndpointId,
        seq: u64,
        flushed: bool,
    ) -> Result<Option<Batch>, NotifyStoreError> {
        let mark = if flushed { "flushed" } else { "sent" };
        let request = self
            .client
            .update_item()
            .table_name(&self.endpoints)
            .set_key(Some(Self::key(endpoint, &batch_sk(seq))))
            .update_expression(format!("SET {mark} = :yes"))
            .condition_expression("attribute_exists(members) AND attribute_not_exists(sent) AND attribute_not_exists(flushed)")
            .expression_attribute_values(":yes", AttributeValue::Bool(true))
            .return_values(ReturnValue::AllNew);
        conditional_update(request)
            .await?
            .map(|item| batch_from_item(&item))
            .transpose()
    }

    async fn mark_busy(
        &self,
        endpoint: &EndpointId,
        now: Timestamp,
    ) -> Result<Busy, NotifyStoreError> {
        let out = self
            .client
            .update_item()
            .table_name(&self.endpoints)
            .set_key(Some(Self::key(endpoint, "busy")))
            .update_expression("SET since = if_not_exists(since, :now), last_completion_at = :now ADD completed :one")
            .expression_attribute_values(":now", s(now.to_rfc3339()))
            .expression_attribute_values(":one", n(1))
            .return_values(ReturnValue::AllNew)
            .send()
            .await
            .map_err(unavailable)?;
        busy_from_item(&out.attributes.unwrap_or_default())
    }

    async fn busy(&self, endpoint: &EndpointId) -> Result<Busy, NotifyStoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.endpoints)
            .set_key(Some(Self::key(endpoint, "busy")))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        out.item
            .map_or(Ok(Busy::default()), |item| busy_from_item(&item))
    }

    async fn end_busy(
        &self,
        endpoint: &EndpointId,
        since: Timestamp,
    ) -> Result<bool, NotifyStoreError> {
        let request = self
            .client
            .update_item()
            .table_name(&self.endpoints)
            .set_key(Some(Self::key(endpoint, "busy")))
            .update_expression("SET completed = :zero REMOVE since, last_completion_at")
            .condition_expression("since = :since")
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":since", s(since.to_rfc3339()));
        Ok(conditional_update(request).await?.is_some())
    }
}

impl DeliveryStore for DynamoNotifications {
    async fn create(&self, delivery: &Delivery) -> Result<bool, NotifyStoreError> {
        let request = self
            .client
            .put_item()
            .table_name(&self.deliveries)
            .set_item(Some(delivery_to_item(delivery)?))
            .condition_expression("attribute_not_exists(delivery_id)");
        conditional_put(request).await
    }

    async fn get(&self, id: &DeliveryId) -> Result<Option<Delivery>, NotifyStoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.deliveries)
            .key("delivery_id", s(id.as_str()))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        out.item.map(delivery_from_item).transpose()
    }

    async fn save(
        &self,
        delivery: &Delivery,
        expected_revision: u64,
    ) -> Result<Saved, NotifyStoreError> {
        let request = self
            .client
            .put_item()
            .table_name(&self.deliveries)
            .set_item(Some(delivery_to_item(delivery)?))
            .condition_expression("revision = :expected")
            .expression_attribute_values(":expected", n(expected_revision));
        Ok(if conditional_put(request).await? {
            Saved::Done
        } else {
            Saved::Conflict
        })
    }
}

/// The `by-endpoint` index's name (template.yaml, DeliveriesTable).
const BY_ENDPOINT: &str = "by-endpoint";

impl DeliveryLog for DynamoNotifications {
    async fn list_for_endpoint(&self, q: &DeliveryQuery) -> Result<DeliveryPage, NotifyStoreError> {
        let mut condition = "endpoint_id = :e".to_owned();
        let mut request = self
            .client
            .query()
            .table_name(&self.deliveries)
            .index_name(BY_ENDPOINT)
            .scan_index_forward(false)
            .expression_attribute_values(":e", s(q.endpoint.as_str()));
        // Timestamps are fixed-width RFC 3339 (milliseconds, Z): they sort as they compare.
        let from = q.since.map(Timestamp::to_rfc3339);
        let to = q.until.map(Timestamp::to_rfc3339);
        match (from, to) {
            (Some(a), Some(b)) => {
                condition.push_str(" AND created_at BETWEEN :a AND :b");
                request = request
                    .expression_attribute_values(":a", s(a))
                    .expression_attribute_values(":b", s(b));
            }
            (Some(a), None) => {
                condition.push_str(" AND created_at >= :a");
                request = request.expression_attribute_values(":a", s(a));
            }
            (None, Some(b)) => {
                condition.push_str(" AND created_at <= :b");
                request = request.expression_attribute_values(":b", s(b));
            }
            (None, None) => {}
        }
        if let Some(after) = &q.after {
            request = request.set_exclusive_start_key(Some(HashMap::from([
                ("delivery_id".to_owned(), s(after.id.as_str())),
                ("endpoint_id".to_owned(), s(q.endpoint.as_str())),
                ("created_at".to_owned(), s(after.created_at.to_rfc3339())),
            ])));
        }
        let limit = i32::try_from(q.limit.max(1)).unwrap_or(i32::MAX);
        let out = request
            .key_condition_expression(condition)
            .limit(limit)
            .send()
            .await
            .map_err(unavailable)?;
        let deliveries = out
            .items
            .unwrap_or_default()
            .into_iter()
            .map(delivery_from_item)
            .collect::<Result<Vec<_>, _>>()?;
        // DynamoDB names a last key whenever the page is full, even if nothing follows.
        let next = out
            .last_evaluated_key
            .and_then(|_| deliveries.last().map(DeliveryCursor::after));
        Ok(DeliveryPage { deliveries, next })
    }
}
