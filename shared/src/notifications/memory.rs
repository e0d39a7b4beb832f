//! In-memory endpoint and delivery stores with the same conditional semantics as the
//! DynamoDB adapter: atomic counters, revision-checked saves, first-writer-wins
//! disable. The delivery store can be switched off to act as an outage.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use std::time::Duration;

use super::{
    DeliveryCursor, DeliveryLog, DeliveryPage, DeliveryQuery, DeliveryStore, Endpoint,
    EndpointAdmin, EndpointStore, Job, JobQueue, NotifyStoreError, QueueError, QueuedJob, Requeue,
    Saved, ThresholdStore,
};
use crate::domain::clock::Timestamp;
use crate::domain::notify::delivery::{Delivery, DeliveryId};
use crate::domain::notify::endpoint::EndpointId;
use crate::domain::notify::health::{Health, HealthChange};
use crate::domain::notify::threshold::{Batch, Busy};
use crate::domain::task_id::TaskId;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[derive(Debug, Default)]
pub struct MemoryEndpoints {
    endpoints: Mutex<HashMap<EndpointId, Endpoint>>,
    windows: Mutex<HashMap<(EndpointId, i64), u32>>,
}

impl MemoryEndpoints {
    pub fn insert(&self, endpoint: Endpoint) {
        lock(&self.endpoints).insert(endpoint.id.clone(), endpoint);
    }

    pub fn snapshot(&self, id: &EndpointId) -> Option<Endpoint> {
        lock(&self.endpoints).get(id).cloned()
    }
}

impl EndpointStore for MemoryEndpoints {
    async fn list(&self) -> Result<Vec<Endpoint>, NotifyStoreError> {
        let mut all: Vec<Endpoint> = lock(&self.endpoints).values().cloned().collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(all)
    }

    async fn get(&self, id: &EndpointId) -> Result<Option<Endpoint>, NotifyStoreError> {
        Ok(self.snapshot(id))
    }

    async fn record_health(
        &self,
        id: &EndpointId,
        change: HealthChange,
    ) -> Result<Health, NotifyStoreError> {
        let mut all = lock(&self.endpoints);
        let endpoint = all
            .get_mut(id)
            .ok_or_else(|| NotifyStoreError::Malformed(format!("endpoint {id} is gone")))?;
        endpoint.health = endpoint.health.applied(change);
        Ok(endpoint.health)
    }

    async fn disable(
        &self,
        id: &EndpointId,
        reason: &str,
        now: Timestamp,
    ) -> Result<bool, NotifyStoreError> {
        let mut all = lock(&self.endpoints);
        match all.get_mut(id) {
            Some(e) if e.enabled => {
                e.enabled = false;
                e.disabled = Some((now, reason.to_owned()));
                e.updated_at = now;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn take_send_slot(
        &self,
        id: &EndpointId,
        window: i64,
        max: u32,
    ) -> Result<bool, NotifyStoreError> {
        let mut windows = lock(&self.windows);
        let taken = windows.entry((id.clone(), window)).or_insert(0);
        if *taken >= max {
            return Ok(false);
        }
        *taken += 1;
        Ok(true)
    }
}

impl EndpointAdmin for MemoryEndpoints {
    async fn create_endpoint(&self, endpoint: &Endpoint) -> Result<bool, NotifyStoreError> {
        let mut all = lock(&self.endpoints);
        if all.contains_key(&endpoint.id) {
            return Ok(false);
        }
        all.insert(endpoint.id.clone(), endpoint.clone());
        Ok(true)
    }

    async fn update_endpoint(&self, endpoint: &Endpoint) -> Result<bool, NotifyStoreError> {
        let mut all = lock(&self.endpoints);
        let Some(stored) = all.get_mut(&endpoint.id) else {
            return Ok(false);
        };
        stored.settings = endpoint.settings.clone();
        stored.signing = endpoint.signing.clone();
        stored.feishu_secret = endpoint.feishu_secret.clone();
        stored.updated_at = endpoint.updated_at;
        Ok(true)
    }

    async fn enable(&self, id: &EndpointId, now: Timestamp) -> Result<bool, NotifyStoreError> {
        let mut all = lock(&self.endpoints);
        let Some(stored) = all.get_mut(id) else {
            return Ok(false);
        };
        stored.enabled = true;
        stored.disabled = None;
        stored.health = Health::default();
        stored.updated_at = now;
        Ok(true)
    }

    async fn delete_endpoint(&self, id: &EndpointId) -> Result<bool, NotifyStoreError> {
        lock(&self.windows).retain(|(e, _), _| e != id);
        Ok(lock(&self.endpoints).remove(id).is_some())
    }
}

#[derive(Debug, Default)]
pub struct MemoryDeliveries {
    deliveries: Mutex<HashMap<DeliveryId, Delivery>>,
    down: AtomicBool,
}

impl MemoryDeliveries {
    pub fn snapshot(&self, id: &DeliveryId) -> Option<Delivery> {
        lock(&self.deliveries).get(id).cloned()
    }

    pub fn all(&self) -> Vec<Delivery> {
        lock(&self.deliveries).values().cloned().collect()
    }

    pub fn set_unavailable(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    fn up(&self) -> Result<(), NotifyStoreError> {
        if self.down.load(Ordering::SeqCst) {
            Err(NotifyStoreError::Unavailable(
                "memory deliveries switched off".into(),
            ))
        } else {
            Ok(())
        }
    }
}

impl DeliveryStore for MemoryDeliveries {
    async fn create(&self, delivery: &Delivery) -> Result<bool, NotifyStoreError> {
        self.up()?;
        let mut all = lock(&self.deliveries);
        if all.contains_key(&delivery.id) {
            return Ok(false);
        }
        all.insert(delivery.id.clone(), delivery.clone());
        Ok(true)
    }

    async fn get(&self, id: &DeliveryId) -> Result<Option<Delivery>, NotifyStoreError> {
        self.up()?;
        Ok(self.snapshot(id))
    }

    async fn save(
        &self,
        delivery: &Delivery,
        expected_revision: u64,
    ) -> Result<Saved, NotifyStoreError> {
        self.up()?;
        let mut all = lock(&self.deliveries);
        match all.get(&delivery.id) {
            Some(current) if current.revision == expected_revision => {
                all.insert(delivery.id.clone(), delivery.clone());
                Ok(Saved::Done)
            }
            _ => Ok(Saved::Conflict),
        }
    }
}

impl DeliveryLog for MemoryDeliveries {
    async fn list_for_endpoint(&self, q: &DeliveryQuery) -> Result<DeliveryPage, NotifyStoreError> {
        self.up()?;
        let key = |d: &Delivery| (d.created_at, d.id.clone());
        let mut all: Vec<Delivery> = lock(&self.deliveries)
            .values()
            .filter(|d| d.endpoint_id == q.endpoint)
            .filter(|d| q.since.is_none_or(|s| d.created_at >= s))
            .filter(|d| q.until.is_none_or(|u| d.created_at <= u))
            .filter(|d| {
                q.after
                    .as_ref()
                    .is_none_or(|c| key(d) < (c.created_at, c.id.clone()))
            })
            .cloned()
            .collect();
        all.sort_by_key(|d| std::cmp::Reverse(key(d)));
        let more = all.len() > q.limit;
        all.truncate(q.limit);
        let next = more
            .then(|| all.last().map(DeliveryCursor::after))
            .flatten();
        Ok(DeliveryPage {
            deliveries: all,
            next,
        })
    }
}

#[derive(Debug, Default)]
pub struct MemoryThresholds {
    completions: Mutex<HashMap<EndpointId, u64>>,
    batches: Mutex<HashMap<(EndpointId, u64), Batch>>,
    busy: Mutex<HashMap<EndpointId, Busy>>,
}

impl MemoryThresholds {
    pub fn completions(&self, endpoint: &EndpointId) -> u64 {
        lock(&self.completions).get(endpoint).copied().unwrap_or(0)
    }

    pub fn batch(&self, endpoint: &EndpointId, seq: u64) -> Option<Batch> {
        lock(&self.batches).get(&(endpoint.clone(), seq)).cloned()
    }
}

impl ThresholdStore for MemoryThresholds {
    async fn next_completion(&self, endpoint: &EndpointId) -> Result<u64, NotifyStoreError> {
        let mut all = lock(&self.completions);
        let n = all.entry(endpoint.clone()).or_insert(0);
        *n += 1;
        Ok(*n)
    }

    async fn skip_past(&self, endpoint: &EndpointId, k: u64) -> Result<(), NotifyStoreError> {
        let mut all = lock(&self.completions);
        let n = all.entry(endpoint.clone()).or_insert(0);
        *n = (*n).max(k);
        Ok(())
    }

    async fn join_batch(
        &self,
        endpoint: &EndpointId,
        seq: u64,
        task: &TaskId,
        now: Timestamp,
    ) -> Result<Option<Batch>, NotifyStoreError> {
        let mut all = lock(&self.batches);
        let batch = all.entry((endpoint.clone(), seq)).or_default();
        if batch.sent || batch.flushed {
            return Ok(None);
        }
        batch.members.push(task.clone());
        batch.first_at.get_or_insert(now);
        Ok(Some(batch.clone()))
    }

    async fn close_batch(
        &self,
        endpoint: &EndpointId,
        seq: u64,
        flushed: bool,
    ) -> Result<Option<Batch>, NotifyStoreError> {
        let mut all = lock(&self.batches);
        let Some(batch) = all.get_mut(&(endpoint.clone(), seq)) else {
            return Ok(None);
        };
        if batch.sent || batch.flushed {
            return Ok(None);
        }
        if flushed {
            batch.flushed = true;
        } else {
            batch.sent = true;
        }
        Ok(Some(batch.clone()))
    }

    async fn mark_busy(
        &self,
        endpoint: &EndpointId,
        now: Timestamp,
    ) -> Result<Busy, NotifyStoreError> {
        let mut all = lock(&self.busy);
        let busy = all.entry(endpoint.clone()).or_default();
        *busy = busy.completed_at(now);
        Ok(*busy)
    }

    async fn busy(&self, endpoint: &EndpointId) -> Result<Busy, NotifyStoreError> {
        Ok(lock(&self.busy).get(endpoint).copied().unwrap_or_default())
    }

    async fn end_busy(
        &self,
        endpoint: &EndpointId,
        since: Timestamp,
    ) -> Result<bool, NotifyStoreError> {
        let mut all = lock(&self.busy);
        match all.get(endpoint) {
            Some(b) if b.since == Some(since) => {
                all.insert(endpoint.clone(), Busy::default());
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

/// Records queued jobs and their delays, in order; and, as the consumer's [`Requeue`],
/// the jobs sent again and the receipts hidden.
#[derive(Debug, Default)]
pub struct MemoryQueue {
    jobs: Mutex<Vec<(Job, Duration)>>,
    resent: Mutex<Vec<(QueuedJob, Duration)>>,
    hidden: Mutex<Vec<(String, Duration)>>,
}

impl MemoryQueue {
    pub fn jobs(&self) -> Vec<(Job, Duration)> {
        lock(&self.jobs).clone()
    }

    pub fn resent(&self) -> Vec<(QueuedJob, Duration)> {
        lock(&self.resent).clone()
    }

    pub fn hidden(&self) -> Vec<(String, Duration)> {
        lock(&self.hidden).clone()
    }
}

impl Requeue for MemoryQueue {
    async fn resend(&self, job: &QueuedJob, delay: Duration) -> Result<(), QueueError> {
        lock(&self.resent).push((job.clone(), delay));
        Ok(())
    }

    async fn hide(&self, receipt: &str, wait: Duration) -> Result<(), QueueError> {
        lock(&self.hidden).push((receipt.to_owned(), wait));
        Ok(())
    }
}

impl JobQueue for MemoryQueue {
    async fn enqueue(&self, job: &Job, delay: Duration) -> Result<(), QueueError> {
        lock(&self.jobs).push((job.clone(), delay));
        Ok(())
    }
}

/// The endpoint vault in memory: counts reads (so tests can see the cache work) and can
/// be switched off to act as a Secrets Manager outage.
#[derive(Debug, Default)]
pub struct MemoryVault {
    entries: Mutex<HashMap<EndpointId, super::vault::EndpointSecrets>>,
    reads: std::sync::atomic::AtomicUsize,
    down: AtomicBool,
}

impl MemoryVault {
    pub fn entry(&self, id: &EndpointId) -> Option<super::vault::EndpointSecrets> {
        lock(&self.entries).get(id).cloned()
    }

    pub fn reads(&self) -> usize {
        self.reads.load(Ordering::SeqCst)
    }

    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    fn up(&self) -> Result<(), NotifyStoreError> {
        match self.down.load(Ordering::SeqCst) {
            true => Err(NotifyStoreError::Unavailable("vault down".into())),
            false => Ok(()),
        }
    }
}

impl super::vault::EndpointVault for MemoryVault {
    async fn put(
        &self,
        id: &EndpointId,
        secrets: &super::vault::EndpointSecrets,
    ) -> Result<(), NotifyStoreError> {
        self.up()?;
        // Through the stored form, as the real vault does.
        let stored = super::vault::EndpointSecrets::from_json(&secrets.to_json())?;
        lock(&self.entries).insert(id.clone(), stored);
        Ok(())
    }

    async fn read(
        &self,
        id: &EndpointId,
    ) -> Result<Option<super::vault::EndpointSecrets>, NotifyStoreError> {
        self.up()?;
        self.reads.fetch_add(1, Ordering::SeqCst);
        Ok(self.entry(id))
    }

    async fn delete(&self, id: &EndpointId) -> Result<(), NotifyStoreError> {
        self.up()?;
        lock(&self.entries).remove(id);
        Ok(())
    }
}
