//! The secret store's fake: one value (any id), settable, with a fetch count and an
//! outage switch.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::{SecretError, SecretStore};

#[derive(Debug, Default)]
struct State {
    value: Mutex<Option<String>>,
    failing: AtomicBool,
    fetches: AtomicUsize,
}

/// Secrets in memory, shared by its clones.
#[derive(Debug, Clone, Default)]
pub struct MemorySecrets(Arc<State>);

impl MemorySecrets {
    /// The value every fetch returns from now on.
    pub fn set(&self, value: &str) {
        *self.0.value.lock().unwrap_or_else(|p| p.into_inner()) = Some(value.to_owned());
    }

    /// Fetches fail as if the store did not answer.
    pub fn set_failing(&self, failing: bool) {
        self.0.failing.store(failing, Ordering::SeqCst);
    }

    /// Fetches so far.
    pub fn fetches(&self) -> usize {
        self.0.fetches.load(Ordering::SeqCst)
    }
}

impl SecretStore for MemorySecrets {
    async fn fetch(&self, id: &str) -> Result<String, SecretError> {
        self.0.fetches.fetch_add(1, Ordering::SeqCst);
        if self.0.failing.load(Ordering::SeqCst) {
            return Err(SecretError::Unavailable("injected outage".into()));
        }
        self.0
            .value
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| SecretError::NotFound(id.to_owned()))
    }
}
