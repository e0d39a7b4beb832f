//! The notification stores' ports: endpoints (settings, health, rate windows; their
//! secrets through [`vault`]) and deliveries (one per event and endpoint). Every write
//! that can race is conditional or an atomic counter update, and a lost race is an
//! outcome, never an error. [`dynamodb`] is the adapter, `secretsmanager` the vault's;
//! `memory` (tests and feature `test-support`) the fakes.

#[cfg(feature = "dynamodb")]
pub mod dynamodb;
#[cfg(any(test, feature = "test-support"))]
pub mod memory;
#[cfg(feature = "secrets")]
pub mod secretsmanager;
#[cfg(feature = "sqs")]
pub mod sqs;
pub mod vault;
pub mod view;

use std::future::Future;

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::domain::clock::Timestamp;
use crate::domain::notify::delivery::{Delivery, DeliveryId};
use crate::domain::notify::endpoint::{EndpointId, EndpointSettings};
use crate::domain::notify::health::{Health, HealthChange};
use crate::domain::notify::signing::SigningKeys;
use crate::domain::notify::threshold::{Batch, Busy};
use crate::domain::secret::Secret;
use crate::domain::task_id::TaskId;

/// An endpoint as stored.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub id: EndpointId,
    pub settings: EndpointSettings,
    /// Standard Webhooks keys (webhook and custom kinds).
    pub signing: Option<SigningKeys>,
    pub feishu_secret: Option<Secret>,
    pub health: Health,
    pub enabled: bool,
    /// When and why it was disabled (absent while enabled).
    pub disabled: Option<(Timestamp, String)>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl Endpoint {
    /// A new, enabled, healthy endpoint.
    pub fn new(
        id: EndpointId,
        settings: EndpointSettings,
        signing: Option<SigningKeys>,
        feishu_secret: Option<Secret>,
        now: Timestamp,
    ) -> Self {
        Self {
            id,
            settings,
            signing,
            feishu_secret,
            health: Health::default(),
            enabled: true,
            disabled: None,
            created_at: now,
            updated_at: now,
        }
    }
}

/// Why a notification store could not answer.
#[derive(Debug, thiserror::Error)]
pub enum NotifyStoreError {
    #[error("notification store unavailable: {0}")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("stored notification item is malformed: {0}")]
    Malformed(String),
}

/// Result of a conditional delivery write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Saved {
    Done,
    /// Someone else changed it first (its revision moved on).
    Conflict,
}

pub trait EndpointStore: Send + Sync {
    /// Every endpoint (a small table, read page by page by the adapter).
    fn list(&self) -> impl Future<Output = Result<Vec<Endpoint>, NotifyStoreError>> + Send;

    fn get(
        &self,
        id: &EndpointId,
    ) -> impl Future<Output = Result<Option<Endpoint>, NotifyStoreError>> + Send;

    /// Applies `change` atomically (an add, or a reset) and returns the counters after it.
    fn record_health(
        &self,
        id: &EndpointId,
        change: HealthChange,
    ) -> impl Future<Output = Result<Health, NotifyStoreError>> + Send;

    /// Disables the endpoint if it is enabled; `true` for the caller that did it (and so
    /// sends `endpoint.disabled`), `false` if it already was.
    fn disable(
        &self,
        id: &EndpointId,
        reason: &str,
        now: Timestamp,
    ) -> impl Future<Output = Result<bool, NotifyStoreError>> + Send;

    /// Takes one send of fixed window `window` if fewer than `max` were taken; `false`
    /// when the window is full.
    fn take_send_slot(
        &self,
        id: &EndpointId,
        window: i64,
        max: u32,
    ) -> impl Future<Output = Result<bool, NotifyStoreError>> + Send;
}

pub trait DeliveryStore: Send + Sync {
    /// Writes `delivery` unless one with its id exists (`false` then: nothing new).
    fn create(
        &self,
        delivery: &Delivery,
    ) -> impl Future<Output = Result<bool, NotifyStoreError>> + Send;

    fn get(
        &self,
        id: &DeliveryId,
    ) -> impl Future<Output = Result<Option<Delivery>, NotifyStoreError>> + Send;

    /// Writes `delivery` if the stored one is still at `expected_revision`.
    fn save(
        &self,
        delivery: &Delivery,
        expected_revision: u64,
    ) -> impl Future<Output = Result<Saved, NotifyStoreError>> + Send;
}

impl<T: EndpointStore> EndpointStore for std::sync::Arc<T> {
    fn list(&self) -> impl Future<Output = Result<Vec<Endpoint>, NotifyStoreError>> + Send {
        (**self).list()
    }

    fn get(
        &self,
        id: &EndpointId,
    ) -> impl Future<Output = Result<Option<Endpoint>, NotifyStoreError>> + Send {
        (**self).get(id)
    }

    fn record_health(
        &self,
        id: &EndpointId,
        change: HealthChange,
    ) -> impl Future<Output = Result<Health, NotifyStoreError>> + Send {
        (**self).record_health(id, change)
    }

    fn disable(
        &self,
        id: &EndpointId,
        reason: &str,
        now: Timestamp,
    ) -> impl Future<Output = Result<bool, NotifyStoreError>> + Send {
        (**self).disable(id, reason, now)
    }

    fn take_send_slot(
        &self,
        id: &EndpointId,
        window: i64,
        max: u32,
    ) -> impl Future<Output = Result<bool, NotifyStoreError>> + Send {
        (**self).take_send_slot(id, window, max)
    }
}

impl<T: DeliveryStore> DeliveryStore for std::sync::Arc<T> {
    fn create(
        &self,
        delivery: &Delivery,
    ) -> impl Future<Output = Result<bool, NotifyStoreError>> + Send {
        (**self).create(delivery)
    }

    fn get(
        &self,
        id: &DeliveryId,
    ) -> impl Future<Output = Result<Option<Delivery>, NotifyStoreError>> + Send {
        (**self).get(id)
    }

    fn save(
        &self,
        delivery: &Delivery,
        expected_revision: u64,
    ) -> impl Future<Output = Result<Saved, NotifyStoreError>> + Send {
        (**self).save(delivery, expected_revision)
    }
}

impl<T: JobQueue> JobQueue for std::sync::Arc<T> {
    fn enqueue(
        &self,
        job: &Job,
        delay: Duration,
    ) -> impl Future<Output = Result<(), QueueError>> + Send {
        (**self).enqueue(job, delay)
    }
}

impl<T: Requeue> Requeue for std::sync::Arc<T> {
    fn resend(
        &self,
        job: &QueuedJob,
        delay: Duration,
    ) -> impl Future<Output = Result<(), QueueError>> + Send {
        (**self).resend(job, delay)
    }

    fn hide(
        &self,
        receipt: &str,
        wait: Duration,
    ) -> impl Future<Output = Result<(), QueueError>> + Send {
        (**self).hide(receipt, wait)
    }
}

/// Short-lived links to stored videos (S3 presigned GETs), for endpoints that ask for one
/// in `task.stored` events (`include_video_url`). Made at send time, so every attempt
/// carries a fresh link. Boxed so the deliver settings can hold one of any kind.
pub trait VideoLinks: Send + Sync + std::fmt::Debug {
    fn link<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
        ttl: Duration,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<String, String>> + Send + 'a>>;
}

/// The operator's writes to endpoints (the `/endpoints` routes).
pub trait EndpointAdmin: Send + Sync {
    /// Writes a new endpoint; `false` if one with its id exists.
    fn create_endpoint(
        &self,
        endpoint: &Endpoint,
    ) -> impl Future<Output = Result<bool, NotifyStoreError>> + Send;

    /// Replaces the settings, secrets and `updated_at` of an existing endpoint (health,
    /// counters and the enabled flag stay); `false` if there is none.
    fn update_endpoint(
        &self,
        endpoint: &Endpoint,
    ) -> impl Future<Output = Result<bool, NotifyStoreError>> + Send;

    /// Enables the endpoint again with its health reset; `false` if there is none.
    fn enable(
        &self,
        id: &EndpointId,
        now: Timestamp,
    ) -> impl Future<Output = Result<bool, NotifyStoreError>> + Send;

    /// Deletes the endpoint and its counters; `false` if there was none. Its deliveries
    /// stay until their TTL (the history an operator may still want to read).
    fn delete_endpoint(
        &self,
        id: &EndpointId,
    ) -> impl Future<Output = Result<bool, NotifyStoreError>> + Send;
}

/// Where a page of deliveries starts: after this one (newest first, so an older one).
/// Shown to callers as `created_at|delivery_id`, the same for every adapter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryCursor {
    pub created_at: Timestamp,
    pub id: DeliveryId,
}

impl DeliveryCursor {
    pub fn after(delivery: &Delivery) -> Self {
        Self {
            created_at: delivery.created_at,
            id: delivery.id.clone(),
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        let (at, id) = raw.split_once('|')?;
        Some(Self {
            created_at: Timestamp::parse_rfc3339(at)?,
            id: DeliveryId::parse(id)?,
        })
    }
}

impl std::fmt::Display for DeliveryCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}|{}", self.created_at.to_rfc3339(), self.id)
    }
}

/// Which deliveries of one endpoint to list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryQuery {
    pub endpoint: EndpointId,
    /// Created at or after…
    pub since: Option<Timestamp>,
    /// …and at or before.
    pub until: Option<Timestamp>,
    pub limit: usize,
    pub after: Option<DeliveryCursor>,
}

/// Deliveries, newest first, and where the next page starts (none: this was the last).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryPage {
    pub deliveries: Vec<Delivery>,
    pub next: Option<DeliveryCursor>,
}

/// Reading an endpoint's deliveries (the `by-endpoint` index), newest first.
pub trait DeliveryLog: Send + Sync {
    fn list_for_endpoint(
        &self,
        query: &DeliveryQuery,
    ) -> impl Future<Output = Result<DeliveryPage, NotifyStoreError>> + Send;
}

impl<T: EndpointAdmin> EndpointAdmin for std::sync::Arc<T> {
    fn create_endpoint(
        &self,
        endpoint: &Endpoint,
    ) -> impl Future<Output = Result<bool, NotifyStoreError>> + Send {
        (**self).create_endpoint(endpoint)
    }

    fn update_endpoint(
        &self,
        endpoint: &Endpoint,
    ) -> impl Future<Output = Result<bool, NotifyStoreError>> + Send {
        (**self).update_endpoint(endpoint)
    }

    fn enable(
        &self,
        id: &EndpointId,
        now: Timestamp,
    ) -> impl Future<Output = Result<bool, NotifyStoreError>> + Send {
        (**self).enable(id, now)
    }

    fn delete_endpoint(
        &self,
        id: &EndpointId,
    ) -> impl Future<Output = Result<bool, NotifyStoreError>> + Send {
        (**self).delete_endpoint(id)
    }
}

impl<T: DeliveryLog> DeliveryLog for std::sync::Arc<T> {
    fn list_for_endpoint(
        &self,
        query: &DeliveryQuery,
    ) -> impl Future<Output = Result<DeliveryPage, NotifyStoreError>> + Send {
        (**self).list_for_endpoint(query)
    }
}

/// The counters behind batch and drain endpoints (see `domain::notify::threshold`).
pub trait ThresholdStore: Send + Sync {
    /// Adds one to the endpoint's completion counter; the new value.
    fn next_completion(
        &self,
        endpoint: &EndpointId,
    ) -> impl Future<Output = Result<u64, NotifyStoreError>> + Send;

    /// Raises the completion counter to at least `k` (past a flushed batch).
    fn skip_past(
        &self,
        endpoint: &EndpointId,
        k: u64,
    ) -> impl Future<Output = Result<(), NotifyStoreError>> + Send;

    /// Appends `task` to batch `seq` unless it was sent or flushed; the batch after, or
    /// `None` when it left without this member.
    fn join_batch(
        &self,
        endpoint: &EndpointId,
        seq: u64,
        task: &TaskId,
        now: Timestamp,
    ) -> impl Future<Output = Result<Option<Batch>, NotifyStoreError>> + Send;

    /// Marks batch `seq` sent (or `flushed`, short) if neither is set yet; the batch for
    /// the caller that did it, `None` for everyone else.
    fn close_batch(
        &self,
        endpoint: &EndpointId,
        seq: u64,
        flushed: bool,
    ) -> impl Future<Output = Result<Option<Batch>, NotifyStoreError>> + Send;

    /// One more completion in the endpoint's busy period (starting one if idle).
    fn mark_busy(
        &self,
        endpoint: &EndpointId,
        now: Timestamp,
    ) -> impl Future<Output = Result<Busy, NotifyStoreError>> + Send;

    fn busy(
        &self,
        endpoint: &EndpointId,
    ) -> impl Future<Output = Result<Busy, NotifyStoreError>> + Send;

    /// Ends the busy period that began at `since`; `true` for the caller that did it.
    fn end_busy(
        &self,
        endpoint: &EndpointId,
        since: Timestamp,
    ) -> impl Future<Output = Result<bool, NotifyStoreError>> + Send;
}

/// Work for the deliver function, as queued (the SQS message body).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "job", rename_all = "snake_case")]
pub enum Job {
    Deliver {
        delivery_id: DeliveryId,
    },
    /// A batch's `max_wait` is over: flush it if it is still open.
    FlushBatch {
        endpoint_id: EndpointId,
        seq: u64,
    },
    /// A drain endpoint's quiet time may be over.
    DrainCheck {
        endpoint_id: EndpointId,
    },
}

/// A job as it travels: the job and the earliest time it may run. SQS holds a message at
/// most 15 minutes, so a longer wait is served in legs: a job that arrives early goes
/// back for the rest ([`QueuedJob::arrival`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedJob {
    #[serde(flatten)]
    pub job: Job,
    pub not_before: Timestamp,
}

/// What to do with a job that has just arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arrival {
    Run(Job),
    /// Early: wait this much more.
    WaitAgain(crate::domain::notify::delivery::SqsWait),
}

impl QueuedJob {
    pub fn arrival(self, now: Timestamp) -> Arrival {
        if now >= self.not_before {
            Arrival::Run(self.job)
        } else {
            Arrival::WaitAgain(crate::domain::notify::delivery::sqs_wait(
                self.not_before.saturating_duration_since(now),
            ))
        }
    }
}

/// Why a job could not be queued.
#[derive(Debug, thiserror::Error)]
#[error("job queue unavailable: {0}")]
pub struct QueueError(#[source] pub Box<dyn std::error::Error + Send + Sync>);

pub trait JobQueue: Send + Sync {
    /// Queues `job` to run no earlier than `delay` from now (the adapter splits long
    /// delays: SQS holds a message at most 15 minutes).
    fn enqueue(
        &self,
        job: &Job,
        delay: Duration,
    ) -> impl Future<Output = Result<(), QueueError>> + Send;
}

/// The consumer's side of the queue: what it does with a message that arrived before
/// its job's time ([`QueuedJob::arrival`]).
pub trait Requeue: Send + Sync {
    /// Sends `job` again, delayed `delay` (at most SQS's 15 minutes); the message that
    /// brought it is then done.
    fn resend(
        &self,
        job: &QueuedJob,
        delay: Duration,
    ) -> impl Future<Output = Result<(), QueueError>> + Send;

    /// Keeps the received message `receipt` hidden for `wait` (at most 12 hours); it is
    /// received again then, so the consumer must not delete it.
    fn hide(
        &self,
        receipt: &str,
        wait: Duration,
    ) -> impl Future<Output = Result<(), QueueError>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::notify::delivery::SqsWait;

    #[test]
    fn a_job_travels_as_json_and_waits_out_its_legs() {
        let t0 = Timestamp::from_secs(1_795_000_000);
        let job = QueuedJob {
            job: Job::FlushBatch {
                endpoint_id: EndpointId::generate(3),
                seq: 7,
            },
            not_before: t0.saturating_add(Duration::from_secs(3_600)),
        };
        let json = serde_json::to_value(&job).unwrap();
        assert_eq!(json["job"], "flush_batch");
        assert_eq!(json["seq"], 7);
        assert_eq!(json["not_before"], "2026-11-18T12:06:40.000Z");
        let back: QueuedJob = serde_json::from_value(json).unwrap();
        assert_eq!(back, job);
        // Arriving after the first 15-minute leg: 45 minutes to go, hidden that long.
        let early = t0.saturating_add(Duration::from_secs(900));
        assert_eq!(
            back.clone().arrival(early),
            Arrival::WaitAgain(SqsWait::VisibilitySeconds(2_700))
        );
        let nearly = t0.saturating_add(Duration::from_secs(3_000));
        assert_eq!(
            back.clone().arrival(nearly),
            Arrival::WaitAgain(SqsWait::DelaySeconds(600))
        );
        assert_eq!(
            back.clone().arrival(job.not_before),
            Arrival::Run(job.job.clone())
        );
    }
}
