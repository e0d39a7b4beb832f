//! Endpoint secrets (Standard Webhooks signing keys, Feishu secrets) in a secret store
//! rather than the endpoints table: [`EndpointVault`] is the port (Secrets Manager in
//! `secretsmanager`, `MemoryVault` the fake), [`VaultedEndpoints`] the endpoint store that
//! keeps each endpoint's settings in the table and its secrets in the vault.
//!
//! Writes order themselves so that nothing half-written is left and a reader never signs
//! with a mix: a new endpoint's item is written first (a duplicate id stops there), then
//! its secret, and a secret that cannot be written takes the item back out; an update
//! writes the secret first and then the item, whose `updated_at` moves on, so a cached
//! secret is read again. A delete removes the item, then the secret (also when the item
//! was already gone, so a retried delete cleans up).
//!
//! Items written before the vault (secrets as table attributes) are still read; their
//! secrets move into the vault on the endpoint's next update or rotation.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value};
use tracing::{error, warn};

use super::{Endpoint, EndpointAdmin, EndpointStore, NotifyStoreError};
use crate::domain::clock::Timestamp;
use crate::domain::notify::endpoint::EndpointId;
use crate::domain::notify::format::TargetKind;
use crate::domain::notify::health::{Health, HealthChange};
use crate::domain::notify::signing::{SigningKeys, SigningScheme};
use crate::domain::secret::Secret;

/// How long a secret read from the vault is used before it is read again, when its
/// endpoint has not changed (a rotation outside the API, e.g. in the console).
pub const DEFAULT_VAULT_CACHE: Duration = Duration::from_secs(300);

/// One endpoint's secrets, as the vault holds them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EndpointSecrets {
    /// The current signing key, and the one rotated out with the time it stops signing.
    pub signing: Option<(Secret, Option<(Secret, Timestamp)>)>,
    pub feishu_secret: Option<Secret>,
}

impl EndpointSecrets {
    pub fn of(endpoint: &Endpoint) -> Self {
        Self {
            signing: endpoint
                .signing
                .as_ref()
                .map(|k| (k.current.clone(), k.previous.clone())),
            feishu_secret: endpoint.feishu_secret.clone(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.signing.is_none() && self.feishu_secret.is_none()
    }

    /// `endpoint` holding these secrets (the signing scheme is a setting, not a secret).
    fn fill(self, mut endpoint: Endpoint, scheme: SigningScheme) -> Endpoint {
        endpoint.signing = self.signing.map(|(current, previous)| SigningKeys {
            scheme,
            current,
            previous,
        });
        endpoint.feishu_secret = self.feishu_secret;
        endpoint
    }

    /// The stored form: a JSON object of base64 keys and an RFC 3339 time.
    pub fn to_json(&self) -> String {
        let b64 = |s: &Secret| Value::String(STANDARD.encode(s.expose()));
        let mut out = Map::new();
        if let Some((current, previous)) = &self.signing {
            out.insert("signing_key".into(), b64(current));
            if let Some((key, until)) = previous {
                out.insert("signing_previous".into(), b64(key));
                out.insert(
                    "signing_previous_until".into(),
                    Value::String(until.to_rfc3339()),
                );
            }
        }
        if let Some(secret) = &self.feishu_secret {
            out.insert("feishu_secret".into(), b64(secret));
        }
        Value::Object(out).to_string()
    }

    /// The stored form read back; `Malformed` names the field, never its value.
    pub fn from_json(raw: &str) -> Result<Self, NotifyStoreError> {
        let bad = |what: &str| NotifyStoreError::Malformed(format!("endpoint secret: {what}"));
        let value: Value = serde_json::from_str(raw).map_err(|_| bad("not JSON"))?;
        let object = value.as_object().ok_or_else(|| bad("not an object"))?;
        let secret = |name: &str| -> Result<Option<Secret>, NotifyStoreError> {
            object
                .get(name)
                .map(|v| {
                    v.as_str()
                        .and_then(|s| STANDARD.decode(s).ok())
                        .filter(|b| !b.is_empty())
                        .map(Secret::new)
                        .ok_or_else(|| bad(&format!("{name} is not base64")))
                })
                .transpose()
        };
        let previous = match (
            secret("signing_previous")?,
            object.get("signing_previous_until"),
        ) {
            (Some(key), Some(until)) => {
                let until = until
                    .as_str()
                    .and_then(Timestamp::parse_rfc3339)
                    .ok_or_else(|| bad("signing_previous_until is not RFC 3339"))?;
                Some((key, until))
            }
            (None, None) => None,
            _ => return Err(bad("signing_previous without its time, or the reverse")),
        };
        let signing = match secret("signing_key")? {
            Some(current) => Some((current, previous)),
            None if previous.is_some() => return Err(bad("signing_previous without signing_key")),
            None => None,
        };
        Ok(Self {
            signing,
            feishu_secret: secret("feishu_secret")?,
        })
    }
}

/// Only signed kinds and Feishu have secrets; the vault is never asked about the others.
pub fn may_hold_secrets(kind: TargetKind) -> bool {
    kind.is_signed() || kind == TargetKind::Feishu
}

/// Where endpoint secrets live, one entry per endpoint.
pub trait EndpointVault: Send + Sync {
    /// Creates the endpoint's entry, or replaces what it holds.
    fn put(
        &self,
        id: &EndpointId,
        secrets: &EndpointSecrets,
    ) -> impl Future<Output = Result<(), NotifyStoreError>> + Send;

    /// The endpoint's secrets; `None` when it has no entry.
    fn read(
        &self,
        id: &EndpointId,
    ) -> impl Future<Output = Result<Option<EndpointSecrets>, NotifyStoreError>> + Send;

    /// Removes the entry at once (no recovery window: the endpoint is gone); no entry is
    /// not an error.
    fn delete(&self, id: &EndpointId) -> impl Future<Output = Result<(), NotifyStoreError>> + Send;
}

struct Cached {
    /// The endpoint's `updated_at` when the secret was read: any change reads it again.
    version: Timestamp,
    read_at: Instant,
    secrets: Option<EndpointSecrets>,
}

/// Endpoints with their settings in `table` and their secrets in `vault`. Reads are
/// cached per endpoint for `cache` unless the endpoint changes, so deliver asks the vault
/// once per endpoint and cold start, not once per delivery.
pub struct VaultedEndpoints<E, V> {
    table: E,
    vault: V,
    cache_for: Duration,
    cache: Mutex<HashMap<EndpointId, Cached>>,
}

impl<E, V> std::fmt::Debug for VaultedEndpoints<E, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultedEndpoints")
            .field("cache_for", &self.cache_for)
            .finish_non_exhaustive()
    }
}

impl<E: EndpointStore + EndpointAdmin, V: EndpointVault> VaultedEndpoints<E, V> {
    pub fn new(table: E, vault: V, cache_for: Duration) -> Self {
        Self {
            table,
            vault,
            cache_for,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The table's own store (settings, health; no secrets).
    pub fn table(&self) -> &E {
        &self.table
    }

    pub fn vault(&self) -> &V {
        &self.vault
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<EndpointId, Cached>> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `endpoint` as the table holds it, with its secrets from the vault (or, for an item
    /// written before the vault, from the table).
    async fn with_secrets(&self, endpoint: Endpoint) -> Result<Endpoint, NotifyStoreError> {
        if !may_hold_secrets(endpoint.settings.kind) {
            return Ok(endpoint);
        }
        let cached = self.cache().get(&endpoint.id).and_then(|c| {
            (c.version == endpoint.updated_at && c.read_at.elapsed() < self.cache_for)
                .then(|| c.secrets.clone())
        });
        let secrets = match cached {
            Some(secrets) => secrets,
            None => {
                let secrets = self.vault.read(&endpoint.id).await?;
                self.cache().insert(
                    endpoint.id.clone(),
                    Cached {
                        version: endpoint.updated_at,
                        read_at: Instant::now(),
                        secrets: secrets.clone(),
                    },
                );
                secrets
            }
        };
        let scheme = endpoint.settings.signing;
        Ok(match secrets {
            Some(secrets) => secrets.fill(endpoint, scheme),
            // Written before the vault: whatever the table holds.
            None => endpoint,
        })
    }

    fn forget(&self, id: &EndpointId) {
        self.cache().remove(id);
    }
}

/// `endpoint` without its secrets: what the table is given.
fn without_secrets(endpoint: &Endpoint) -> Endpoint {
    Endpoint {
        signing: None,
        feishu_secret: None,
        ..endpoint.clone()
    }
}

impl<E: EndpointStore + EndpointAdmin, V: EndpointVault> EndpointAdmin for VaultedEndpoints<E, V> {
    async fn create_endpoint(&self, endpoint: &Endpoint) -> Result<bool, NotifyStoreError> {
        if !self
            .table
            .create_endpoint(&without_secrets(endpoint))
            .await?
        {
            return Ok(false);
        }
        let secrets = EndpointSecrets::of(endpoint);
        if secrets.is_empty() {
            return Ok(true);
        }
        if let Err(e) = self.vault.put(&endpoint.id, &secrets).await {
            // No endpoint without its secret: take the item back out.
            if let Err(undo) = self.table.delete_endpoint(&endpoint.id).await {
                error!(endpoint_id = %endpoint.id, error = %undo,
                       "an endpoint whose secret could not be stored is left without it");
            }
            return Err(e);
        }
        self.forget(&endpoint.id);
        Ok(true)
    }

    async fn update_endpoint(&self, endpoint: &Endpoint) -> Result<bool, NotifyStoreError> {
        let secrets = EndpointSecrets::of(endpoint);
        if !secrets.is_empty() {
            self.vault.put(&endpoint.id, &secrets).await?;
        }
        self.forget(&endpoint.id);
        let updated = self
            .table
            .update_endpoint(&without_secrets(endpoint))
            .await?;
        if !updated && !secrets.is_empty() {
            // Deleted meanwhile: its secret goes too.
            warn!(endpoint_id = %endpoint.id, "endpoint gone during its update; removing its secret");
            self.vault.delete(&endpoint.id).await?;
        }
        Ok(updated)
    }

    async fn enable(&self, id: &EndpointId, now: Timestamp) -> Result<bool, NotifyStoreError> {
        self.table.enable(id, now).await
    }

    async fn delete_endpoint(&self, id: &EndpointId) -> Result<bool, NotifyStoreError> {
        let deleted = self.table.delete_endpoint(id).await?;
        self.vault.delete(id).await?;
        self.forget(id);
        Ok(deleted)
    }
}

impl<E: EndpointStore + EndpointAdmin, V: EndpointVault> EndpointStore for VaultedEndpoints<E, V> {
    async fn list(&self) -> Result<Vec<Endpoint>, NotifyStoreError> {
        let mut out = Vec::new();
        for endpoint in self.table.list().await? {
            out.push(self.with_secrets(endpoint).await?);
        }
        Ok(out)
    }

    async fn get(&self, id: &EndpointId) -> Result<Option<Endpoint>, NotifyStoreError> {
        match self.table.get(id).await? {
            Some(endpoint) => Ok(Some(self.with_secrets(endpoint).await?)),
            None => Ok(None),
        }
    }

    async fn record_health(
        &self,
        id: &EndpointId,
        change: HealthChange,
    ) -> Result<Health, NotifyStoreError> {
        self.table.record_health(id, change).await
    }

    async fn disable(
        &self,
        id: &EndpointId,
        reason: &str,
        now: Timestamp,
    ) -> Result<bool, NotifyStoreError> {
        self.table.disable(id, reason, now).await
    }

    async fn take_send_slot(
        &self,
        id: &EndpointId,
        window: i64,
        max: u32,
    ) -> Result<bool, NotifyStoreError> {
        self.table.take_send_slot(id, window, max).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::notify::endpoint::{EndpointSpec, EndpointUrlPolicy};
    use crate::domain::notify::signing::DEFAULT_ROTATION_OVERLAP;
    use crate::notifications::memory::{MemoryEndpoints, MemoryVault};

    const T0: Timestamp = Timestamp::from_secs(1_795_000_000);

    type World = VaultedEndpoints<MemoryEndpoints, MemoryVault>;

    fn world() -> World {
        VaultedEndpoints::new(
            MemoryEndpoints::default(),
            MemoryVault::default(),
            DEFAULT_VAULT_CACHE,
        )
    }

    fn endpoint(json: serde_json::Value, seed: u128) -> Endpoint {
        let spec: EndpointSpec = serde_json::from_value(json).unwrap();
        let settings = spec.validate(&EndpointUrlPolicy::local()).unwrap();
        let signing = settings
            .kind
            .is_signed()
            .then(|| SigningKeys::with_scheme(settings.signing, Secret::new(vec![seed as u8; 32])));
        Endpoint::new(EndpointId::generate(seed), settings, signing, None, T0)
    }

    fn webhook(seed: u128) -> Endpoint {
        endpoint(
            serde_json::json!({"kind": "webhook", "url": "http://127.0.0.1:9/hook"}),
            seed,
        )
    }

    fn feishu(seed: u128) -> Endpoint {
        let mut e = endpoint(
            serde_json::json!({"kind": "feishu",
                "url": "https://open.feishu.cn/open-apis/bot/v2/hook/2c9e"}),
            seed,
        );
        e.feishu_secret = Some(Secret::new(b"feishu-sign-secret".to_vec()));
        e
    }

    fn slack(seed: u128) -> Endpoint {
        endpoint(
            serde_json::json!({"kind": "slack",
                "url": "https://hooks.slack.com/services/T000/B000/XXXX"}),
            seed,
        )
    }

    #[test]
    fn the_stored_form_round_trips_and_names_only_the_bad_field() {
        let full = EndpointSecrets {
            signing: Some((
                Secret::new(vec![1; 32]),
                Some((Secret::new(vec![2; 32]), T0)),
            )),
            feishu_secret: Some(Secret::new(b"f".to_vec())),
        };
        for secrets in [full.clone(), EndpointSecrets::default()] {
            assert_eq!(
                EndpointSecrets::from_json(&secrets.to_json()).unwrap(),
                secrets
            );
        }
        for (raw, field) in [
            (r#"{"signing_key":"%%%"}"#, "signing_key"),
            (
                r#"{"signing_key":"AQ==","signing_previous":"Ag=="}"#,
                "signing_previous",
            ),
            (
                r#"{"signing_previous":"Ag==","signing_previous_until":"2026-01-01T00:00:00Z"}"#,
                "without signing_key",
            ),
            (
                r#"{"signing_key":"AQ==","signing_previous":"Ag==","signing_previous_until":"soon"}"#,
                "RFC 3339",
            ),
            (r#"["AQ=="]"#, "not an object"),
            ("whsec_not-json", "not JSON"),
        ] {
            let err = EndpointSecrets::from_json(raw).unwrap_err().to_string();
            assert!(err.contains(field), "{raw}: {err}");
            assert!(!err.contains("AQ=="), "no value in the error: {err}");
        }
    }

    #[tokio::test]
    async fn secrets_go_to_the_vault_and_never_to_the_table() {
        let w = world();
        for e in [webhook(1), feishu(2), slack(3)] {
            assert!(w.create_endpoint(&e).await.unwrap());
            let in_table = w.table().snapshot(&e.id).unwrap();
            assert!(in_table.signing.is_none() && in_table.feishu_secret.is_none());
            let read = w.get(&e.id).await.unwrap().unwrap();
            assert_eq!(
                EndpointSecrets::of(&read),
                EndpointSecrets::of(&e),
                "{:?}",
                e.settings.kind
            );
            assert_eq!(
                w.vault().entry(&e.id).is_some(),
                e.settings.kind != TargetKind::Slack
            );
        }
        // A duplicate id stops at the table: the first endpoint's secret is untouched.
        let mut twin = webhook(1);
        twin.signing = Some(SigningKeys::new(Secret::new(vec![9; 32])));
        assert!(!w.create_endpoint(&twin).await.unwrap());
        let kept = w.get(&twin.id).await.unwrap().unwrap().signing.unwrap();
        assert_eq!(kept.current, Secret::new(vec![1; 32]));
    }

    #[tokio::test]
    async fn an_endpoint_whose_secret_cannot_be_stored_is_not_left_behind() {
        let w = world();
        w.vault().set_down(true);
        let e = webhook(1);
        assert!(w.create_endpoint(&e).await.is_err());
        assert!(
            w.table().snapshot(&e.id).is_none(),
            "the item was taken back out"
        );
        // An endpoint without secrets does not need the vault at all.
        let s = slack(2);
        assert!(w.create_endpoint(&s).await.unwrap());
        assert_eq!(w.list().await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_rotation_is_read_at_once_and_otherwise_the_vault_is_read_once() {
        let w = world();
        let e = webhook(1);
        w.create_endpoint(&e).await.unwrap();
        for _ in 0..5 {
            w.get(&e.id).await.unwrap();
            w.list().await.unwrap();
        }
        assert_eq!(
            w.vault().reads(),
            1,
            "cached while the endpoint is unchanged"
        );

        let mut rotated = e.clone();
        rotated.signing = Some(e.signing.clone().unwrap().rotated(
            Secret::new(vec![7; 32]),
            T0,
            DEFAULT_ROTATION_OVERLAP,
        ));
        rotated.updated_at = T0.saturating_add(Duration::from_secs(1));
        assert!(w.update_endpoint(&rotated).await.unwrap());
        let read = w.get(&e.id).await.unwrap().unwrap().signing.unwrap();
        assert_eq!(read.current, Secret::new(vec![7; 32]));
        assert_eq!(read.previous.unwrap().0, Secret::new(vec![1; 32]));
        assert_eq!(w.vault().reads(), 2);
        assert!(w.table().snapshot(&e.id).unwrap().signing.is_none());

        // A cache of zero reads every time (the console's rotations show at once).
        let eager = VaultedEndpoints::new(
            MemoryEndpoints::default(),
            MemoryVault::default(),
            Duration::ZERO,
        );
        eager.create_endpoint(&e).await.unwrap();
        eager.get(&e.id).await.unwrap();
        eager.get(&e.id).await.unwrap();
        assert_eq!(eager.vault().reads(), 2);
    }

    #[tokio::test]
    async fn deletes_take_the_secret_too_even_when_retried() {
        let w = world();
        let e = webhook(1);
        w.create_endpoint(&e).await.unwrap();
        assert!(w.delete_endpoint(&e.id).await.unwrap());
        assert!(w.vault().entry(&e.id).is_none());
        assert!(w.get(&e.id).await.unwrap().is_none());

        // An orphaned secret (the item went, the secret's delete failed) goes on a retry.
        w.vault()
            .put(&e.id, &EndpointSecrets::of(&e))
            .await
            .unwrap();
        assert!(!w.delete_endpoint(&e.id).await.unwrap());
        assert!(w.vault().entry(&e.id).is_none());

        // An update racing a delete leaves no secret behind.
        assert!(!w.update_endpoint(&e).await.unwrap());
        assert!(w.vault().entry(&e.id).is_none());
    }

    #[tokio::test]
    async fn items_from_before_the_vault_keep_signing_and_move_on_their_next_update() {
        let w = world();
        let legacy = webhook(1);
        w.table().insert(legacy.clone()); // secrets in the table, as before
        let read = w.get(&legacy.id).await.unwrap().unwrap();
        assert_eq!(EndpointSecrets::of(&read), EndpointSecrets::of(&legacy));

        let mut next = legacy.clone();
        next.updated_at = T0.saturating_add(Duration::from_secs(1));
        assert!(w.update_endpoint(&next).await.unwrap());
        assert!(w.table().snapshot(&legacy.id).unwrap().signing.is_none());
        let read = w.get(&legacy.id).await.unwrap().unwrap();
        assert_eq!(EndpointSecrets::of(&read), EndpointSecrets::of(&legacy));
    }

    #[tokio::test]
    async fn a_vault_outage_is_an_error_not_an_unsigned_endpoint() {
        let w = world();
        let e = webhook(1);
        w.create_endpoint(&e).await.unwrap();
        let eager = VaultedEndpoints::new(w.table, w.vault, Duration::ZERO);
        eager.vault().set_down(true);
        assert!(matches!(
            eager.get(&e.id).await,
            Err(NotifyStoreError::Unavailable(_))
        ));
    }
}
