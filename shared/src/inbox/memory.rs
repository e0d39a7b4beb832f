//! An in-memory [`Inbox`], which can be told to fail its writes.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::{Inbox, InboxError, InboxPage, Spilled};

#[derive(Debug, Default)]
pub struct MemoryInbox {
    objects: Mutex<BTreeMap<String, Vec<u8>>>,
    failing: Mutex<bool>,
}

impl MemoryInbox {
    /// Every put fails while set.
    pub fn set_failing(&self, failing: bool) {
        *self.failing.lock().unwrap_or_else(|p| p.into_inner()) = failing;
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Stores raw bytes under `key` (to seed a malformed object).
    pub fn put_raw(&self, key: &str, bytes: Vec<u8>) {
        self.lock().insert(key.to_owned(), bytes);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Vec<u8>>> {
        self.objects.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Inbox for MemoryInbox {
    async fn put(&self, spilled: &Spilled) -> Result<String, InboxError> {
        if *self.failing.lock().unwrap_or_else(|p| p.into_inner()) {
            return Err(InboxError::Unavailable {
                operation: "PutObject",
                source: "injected failure".into(),
            });
        }
        let key = spilled.key();
        self.lock().insert(key.clone(), spilled.to_json());
        Ok(key)
    }

    async fn list(&self, limit: usize, after: Option<&str>) -> Result<InboxPage, InboxError> {
        let objects = self.lock();
        let mut keys: Vec<String> = objects
            .keys()
            .filter(|k| after.is_none_or(|a| k.as_str() > a))
            .take(limit + 1)
            .cloned()
            .collect();
        let more = keys.len() > limit;
        keys.truncate(limit);
        let next = more.then(|| keys.last().cloned()).flatten();
        Ok(InboxPage { keys, next })
    }

    async fn get(&self, key: &str) -> Result<Option<Spilled>, InboxError> {
        self.lock()
            .get(key)
            .map(|b| Spilled::from_json(b))
            .transpose()
    }

    async fn delete(&self, key: &str) -> Result<(), InboxError> {
        self.lock().remove(key);
        Ok(())
    }
}
