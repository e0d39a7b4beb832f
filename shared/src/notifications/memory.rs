//! In-memory endpoint and delivery stores with the same conditional semantics as the
//! DynamoDB adapter: atomic counters, revision-checked saves, first-writer-wins
//! disable. They can be switched off to act as an outage.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use super::{DeliveryStore, Endpoint, EndpointStore, NotifyStoreError, Saved};
use crate::domain::clock::Timestamp;
use crate::domain::notify::delivery::{Delivery, DeliveryId};
use crate::domain::notify::endpoint::EndpointId;
use crate::domain::notify::health::{Health, HealthChange};

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[derive(Debug, Default)]
pub struct MemoryEndpoints {
    endpoints: Mutex<HashMap<EndpointId, Endpoint>>,
    windows: Mutex<HashMap<(EndpointId, i64), u32>>,
    down: AtomicBool,
}

impl MemoryEndpoints {
    pub fn insert(&self, endpoint: Endpoint) {
        lock(&self.endpoints).insert(endpoint.id.clone(), endpoint);
    }

    pub fn snapshot(&self, id: &EndpointId) -> Option<Endpoint> {
        lock(&self.endpoints).get(id).cloned()
    }

    pub fn set_unavailable(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    fn up(&self) -> Result<(), NotifyStoreError> {
        if self.down.load(Ordering::SeqCst) {
            Err(NotifyStoreError::Unavailable(
                "memory endpoints switched off".into(),
            ))
        } else {
            Ok(())
        }
    }
}

impl EndpointStore for MemoryEndpoints {
    async fn get(&self, id: &EndpointId) -> Result<Option<Endpoint>, NotifyStoreError> {
        self.up()?;
        Ok(self.snapshot(id))
    }

    async fn record_health(
        &self,
        id: &EndpointId,
        change: HealthChange,
    ) -> Result<Health, NotifyStoreError> {
        self.up()?;
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
        self.up()?;
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
        self.up()?;
        let mut windows = lock(&self.windows);
        let taken = windows.entry((id.clone(), window)).or_insert(0);
        if *taken >= max {
            return Ok(false);
        }
        *taken += 1;
        Ok(true)
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
