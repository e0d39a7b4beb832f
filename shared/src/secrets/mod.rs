//! Secrets from a secret store (AWS Secrets Manager), read at cold start and refreshed on
//! an interval, so a rotated callback token, HMAC secret or API key takes effect without a
//! redeploy.
//!
//! A function's secret (`SECRETS_ID`: its ARN or name) is one JSON object of strings
//! whose keys are the configuration variables it replaces (`CALLBACK_TOKENS`,
//! `UPSTREAM_API_KEY`, …): the values are laid over the environment and the usual
//! readers build the configuration from that, so there is one reader per setting whether
//! it comes from the environment (local stacks) or the store. Each role may read only its
//! own secret (template.yaml).
//!
//! [`Refreshing`] keeps a value built from the secret and rebuilds it when it is older
//! than the refresh interval. A refresh that fails (the store unreachable, a malformed or
//! invalid value) keeps the current value and is logged: a bad rotation never locks the
//! callbacks out, and never prints a value.

#[cfg(any(test, feature = "test-support"))]
pub mod memory;
#[cfg(feature = "secrets")]
pub mod secretsmanager;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;
use tracing::{info, warn};

use crate::lambda::config::{ConfigError, Env};

/// The variable naming a function's secret.
pub const SECRETS_ID: &str = "SECRETS_ID";
/// The variable setting how often the secret is read again (seconds).
pub const SECRETS_REFRESH_SECS: &str = "SECRETS_REFRESH_SECS";
/// Read again every five minutes unless `SECRETS_REFRESH_SECS` says otherwise.
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(300);

/// Reads a secret's current value.
pub trait SecretStore: Send + Sync + 'static {
    /// The secret's string value.
    fn fetch(&self, id: &str) -> impl Future<Output = Result<String, SecretError>> + Send;
}

/// Why a secret could not be used. Never carries the value.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("the secret store did not answer: {0}")]
    Unavailable(String),
    #[error("no such secret, or no permission to read it: {0}")]
    NotFound(String),
    #[error("the secret is not a JSON object of strings: {0}")]
    Malformed(String),
    #[error("the secret's configuration is invalid: {0}")]
    Invalid(#[from] ConfigError),
}

/// The secret's variables: a JSON object whose values are strings (a list is one string,
/// as in the environment). Errors name the key, never a value.
pub fn secret_vars(json: &str) -> Result<Vec<(String, String)>, SecretError> {
    let value: serde_json::Value = serde_json::from_str(json).map_err(|e| {
        SecretError::Malformed(format!(
            "not JSON (line {}, column {})",
            e.line(),
            e.column()
        ))
    })?;
    let serde_json::Value::Object(map) = value else {
        return Err(SecretError::Malformed("not an object".into()));
    };
    map.into_iter()
        .map(|(key, value)| {
            if key.is_empty()
                || !key
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
            {
                return Err(SecretError::Malformed(format!(
                    "key {key:?} is not a variable name"
                )));
            }
            match value {
                serde_json::Value::String(s) => Ok((key, s)),
                _ => Err(SecretError::Malformed(format!(
                    "the value of {key} is not a string"
                ))),
            }
        })
        .collect()
}

/// Where a function's secret is, if it has one: `SECRETS_ID` and
/// `SECRETS_REFRESH_SECS` (default 300, at least 10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretSettings {
    pub id: String,
    pub refresh: Duration,
}

impl SecretSettings {
    pub fn from_env(env: &Env) -> Result<Option<Self>, ConfigError> {
        let Some(id) = env.optional(SECRETS_ID) else {
            return Ok(None);
        };
        let secs = env.ranged(SECRETS_REFRESH_SECS, DEFAULT_REFRESH.as_secs(), 10..=86_400)?;
        Ok(Some(Self {
            id: id.to_owned(),
            refresh: Duration::from_secs(secs),
        }))
    }
}

/// How a value is built from the environment with the secret's variables laid over it.
pub type Build<T> = fn(&Env) -> Result<T, ConfigError>;

type Fetch = Arc<
    dyn Fn() -> Pin<Box<dyn Future<Output = Result<String, SecretError>> + Send>> + Send + Sync,
>;

/// The cold-start environment: `env` with the secret's variables laid over it when
/// `settings` names a secret (a failure here is fatal: fail fast, with the reason).
pub async fn overlay_secret<S: SecretStore>(
    env: Env,
    store: &S,
    settings: Option<&SecretSettings>,
) -> Result<Env, SecretError> {
    match settings {
        Some(settings) => Ok(env.overlaid(secret_vars(&store.fetch(&settings.id).await?)?)),
        None => Ok(env),
    }
}

/// The cold start's configuration source: the process environment with the function's
/// secret (if `SECRETS_ID` names one) laid over it, and that secret's settings for the
/// [`Refreshing`] values built from it.
pub async fn cold_start_env<S: SecretStore>(
    process: &Env,
    store: &S,
) -> Result<(Env, Option<SecretSettings>), SecretError> {
    let settings = SecretSettings::from_env(process)?;
    let env = overlay_secret(process.clone(), store, settings.as_ref()).await?;
    if let Some(settings) = &settings {
        info!(secret = %settings.id, refresh_secs = settings.refresh.as_secs(), "configuration secret read");
    }
    Ok((env, settings))
}

/// [`Refreshing::new`] when there is a secret, [`Refreshing::fixed`] when there is not.
pub fn refreshing<T: Send + Sync + 'static, S: SecretStore>(
    initial: T,
    process: Env,
    store: S,
    settings: Option<SecretSettings>,
    build: Build<T>,
) -> Refreshing<T> {
    match settings {
        Some(settings) => Refreshing::new(initial, process, store, settings, build),
        None => Refreshing::fixed(initial),
    }
}

struct State<T> {
    current: Arc<T>,
    fetched_at: Instant,
    refreshing: bool,
}

/// Where a refreshing value comes from: the secret's reader, which secret and how often,
/// and how the value is built from the environment with the secret laid over it.
struct Source<T> {
    fetch: Fetch,
    settings: SecretSettings,
    env: Env,
    build: Build<T>,
}

/// A value built from the environment and the secret, rebuilt when older than the
/// refresh interval; or, without a secret, a fixed value.
pub struct Refreshing<T> {
    /// `None` for a fixed value: nothing to read, nothing to rebuild.
    source: Option<Source<T>>,
    state: Mutex<State<T>>,
}

impl<T> fmt::Debug for Refreshing<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Refreshing")
            .field("secret", &self.source.as_ref().map(|s| &s.settings.id))
            .finish_non_exhaustive()
    }
}

impl<T: Send + Sync + 'static> Refreshing<T> {
    /// A value that never changes (no secret configured, and tests).
    pub fn fixed(value: T) -> Self {
        Self::from_source(value, None)
    }

    fn from_source(initial: T, source: Option<Source<T>>) -> Self {
        Self {
            source,
            state: Mutex::new(State {
                current: Arc::new(initial),
                fetched_at: Instant::now(),
                refreshing: false,
            }),
        }
    }

    /// `initial`, built at cold start from `env` with the secret laid over it, rebuilt by
    /// `build` from `env` and the secret's value once `settings.refresh` has passed.
    pub fn new<S: SecretStore>(
        initial: T,
        env: Env,
        store: S,
        settings: SecretSettings,
        build: Build<T>,
    ) -> Self {
        let store = Arc::new(store);
        let id: Arc<str> = settings.id.as_str().into();
        let fetch: Fetch = Arc::new(move || {
            let store = Arc::clone(&store);
            let id = Arc::clone(&id);
            Box::pin(async move { store.fetch(&id).await })
        });
        let source = Source {
            fetch,
            settings,
            env,
            build,
        };
        Self::from_source(initial, Some(source))
    }

    /// At cold start: the value built from `env` (with the secret laid over it, if
    /// `settings` names one) and kept fresh from then on.
    pub async fn load<S: SecretStore>(
        env: Env,
        store: S,
        settings: Option<SecretSettings>,
        build: Build<T>,
    ) -> Result<Self, SecretError> {
        let initial = build(&overlay_secret(env.clone(), &store, settings.as_ref()).await?)?;
        Ok(refreshing(initial, env, store, settings, build))
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The value now.
    pub fn current(&self) -> Arc<T> {
        Arc::clone(&self.lock().current)
    }

    /// Whether the value is due a refresh (and none is running); marks one as running.
    fn claim_refresh(&self) -> bool {
        let Some(source) = &self.source else {
            return false;
        };
        let mut state = self.lock();
        if state.refreshing || state.fetched_at.elapsed() < source.settings.refresh {
            return false;
        }
        state.refreshing = true;
        true
    }

    /// Reads the secret again and rebuilds the value; on any failure keeps the current
    /// one. Returns whether the value was replaced.
    pub async fn refresh(&self) -> bool {
        let Some(Source {
            fetch,
            settings,
            env,
            build,
        }) = &self.source
        else {
            return false;
        };
        let rebuilt = match fetch().await {
            Ok(raw) => build_from(env, &raw, *build),
            Err(e) => Err(e),
        };
        let mut state = self.lock();
        state.refreshing = false;
        match rebuilt {
            Ok(value) => {
                state.current = Arc::new(value);
                state.fetched_at = Instant::now();
                info!(secret = %settings.id, "secret refreshed");
                true
            }
            Err(error) => {
                // Try again after another interval, not on every request.
                state.fetched_at = Instant::now();
                warn!(secret = %settings.id, %error, "secret refresh failed; keeping the current value");
                false
            }
        }
    }

    /// The value now; if it is due a refresh, one starts in the background (the caller
    /// never waits on the store).
    pub fn current_refreshing(self: &Arc<Self>) -> Arc<T> {
        if self.claim_refresh() {
            let this = Arc::clone(self);
            tokio::spawn(async move {
                this.refresh().await;
            });
        }
        self.current()
    }

    /// The value now, refreshing it first (bounded by `wait`) if it is due: for callers
    /// that are not latency-bound (ingest, the reconciler).
    pub async fn current_after_refresh(&self, wait: Duration) -> Arc<T> {
        if self.claim_refresh() && tokio::time::timeout(wait, self.refresh()).await.is_err() {
            self.lock().refreshing = false;
            warn!("secret refresh timed out; keeping the current value");
        }
        self.current()
    }
}

fn build_from<T>(env: &Env, raw: &str, build: Build<T>) -> Result<T, SecretError> {
    let vars = secret_vars(raw)?;
    Ok(build(&env.overlaid(vars))?)
}

#[cfg(test)]
mod tests {
    use super::memory::MemorySecrets;
    use super::*;

    fn tokens(env: &Env) -> Result<Vec<String>, ConfigError> {
        let list = env.list("CALLBACK_TOKENS");
        if list.is_empty() {
            return Err(ConfigError::Missing {
                name: "CALLBACK_TOKENS",
            });
        }
        Ok(list)
    }

    /// Intervals in milliseconds: the tests run on the real clock.
    fn settings(refresh_ms: u64) -> Option<SecretSettings> {
        Some(SecretSettings {
            id: "arn:aws:secretsmanager:us-east-1:1:secret:cb".into(),
            refresh: Duration::from_millis(refresh_ms),
        })
    }

    async fn pass(ms: u64) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }

    #[test]
    fn secret_values_must_be_an_object_of_strings_and_errors_show_no_value() {
        assert_eq!(
            secret_vars(r#"{"CALLBACK_TOKENS":"a,b","UPSTREAM_API_KEY":"k"}"#).unwrap(),
            [
                ("CALLBACK_TOKENS".to_owned(), "a,b".to_owned()),
                ("UPSTREAM_API_KEY".to_owned(), "k".to_owned())
            ]
        );
        for bad in [
            "s3cr3t-plain-string",
            r#"["s3cr3t"]"#,
            r#"{"CALLBACK_TOKENS": 12345678}"#,
            r#"{"lower": "s3cr3t"}"#,
            r#"{"CALLBACK_TOKENS": "s3cr3t""#,
        ] {
            let err = secret_vars(bad).unwrap_err().to_string();
            assert!(
                !err.contains("s3cr3t") && !err.contains("12345678"),
                "{err}"
            );
        }
    }

    #[test]
    fn settings_are_optional_and_the_interval_is_bounded() {
        assert_eq!(
            SecretSettings::from_env(&Env::from_pairs([])).unwrap(),
            None
        );
        let s = SecretSettings::from_env(&Env::from_pairs([(SECRETS_ID, "cb")]))
            .unwrap()
            .unwrap();
        assert_eq!((s.id.as_str(), s.refresh), ("cb", DEFAULT_REFRESH));
        let err = SecretSettings::from_env(&Env::from_pairs([
            (SECRETS_ID, "cb"),
            (SECRETS_REFRESH_SECS, "1"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains(SECRETS_REFRESH_SECS));
    }

    #[tokio::test]
    async fn the_secret_overrides_the_environment_and_without_one_the_environment_is_used() {
        let env = Env::from_pairs([("CALLBACK_TOKENS", "from-env")]);
        let store = MemorySecrets::default();
        store.set(r#"{"CALLBACK_TOKENS": "from-secret"}"#);
        let r = Refreshing::load(env.clone(), store.clone(), settings(300_000), tokens)
            .await
            .unwrap();
        assert_eq!(*r.current(), ["from-secret"]);
        let r = Refreshing::load(env, store.clone(), None, tokens)
            .await
            .unwrap();
        assert_eq!(*r.current(), ["from-env"]);
        assert_eq!(store.fetches(), 1, "no secret, no fetch");
    }

    #[tokio::test]
    async fn a_cold_start_without_a_readable_valid_secret_fails_fast() {
        let store = MemorySecrets::default();
        let err = Refreshing::load(
            Env::from_pairs([]),
            store.clone(),
            settings(300_000),
            tokens,
        )
        .await
        .unwrap_err();
        assert!(matches!(err, SecretError::NotFound(_)), "{err}");
        store.set(r#"{"OTHER": "x"}"#);
        let err = Refreshing::load(Env::from_pairs([]), store, settings(300_000), tokens)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("CALLBACK_TOKENS"), "{err}");
    }

    /// Rotation: once the interval has passed, the next use starts a refresh in the
    /// background and later uses see the new value; before that nothing is fetched.
    #[tokio::test]
    async fn a_rotated_secret_is_picked_up_after_the_interval_without_blocking() {
        let store = MemorySecrets::default();
        store.set(r#"{"CALLBACK_TOKENS": "old"}"#);
        let r = Arc::new(
            Refreshing::load(Env::from_pairs([]), store.clone(), settings(200), tokens)
                .await
                .unwrap(),
        );
        store.set(r#"{"CALLBACK_TOKENS": "old,new"}"#);
        assert_eq!(*r.current_refreshing(), ["old"]);
        assert_eq!(store.fetches(), 1, "not due: nothing fetched");

        pass(250).await;
        assert_eq!(*r.current_refreshing(), ["old"], "this use does not wait");
        assert_eq!(*r.current_refreshing(), ["old"]);
        pass(50).await;
        assert_eq!(*r.current_refreshing(), ["old", "new"]);
        assert_eq!(store.fetches(), 2, "one refresh, however many uses");
    }

    /// A refresh that cannot read the secret, or reads an invalid one, keeps the value it
    /// has, and tries again only after another interval.
    #[tokio::test]
    async fn a_failed_or_invalid_refresh_keeps_the_current_value() {
        let wait = Duration::from_secs(1);
        let store = MemorySecrets::default();
        store.set(r#"{"CALLBACK_TOKENS": "good"}"#);
        let r = Refreshing::load(Env::from_pairs([]), store.clone(), settings(100), tokens)
            .await
            .unwrap();
        pass(120).await;
        store.set_failing(true);
        assert_eq!(*r.current_after_refresh(wait).await, ["good"], "store down");
        store.set_failing(false);
        store.set(r#"{"CALLBACK_TOKENS": ""}"#);
        assert_eq!(
            *r.current_after_refresh(wait).await,
            ["good"],
            "not due again yet"
        );
        assert_eq!(store.fetches(), 2);
        pass(120).await;
        assert_eq!(
            *r.current_after_refresh(wait).await,
            ["good"],
            "invalid value"
        );
        store.set(r#"{"CALLBACK_TOKENS": "rotated"}"#);
        pass(120).await;
        assert_eq!(*r.current_after_refresh(wait).await, ["rotated"]);
        assert_eq!(store.fetches(), 4);
    }
}
