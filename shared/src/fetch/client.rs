//! An HTTP client that can only reach what the SSRF guard allows: every host name is
//! resolved by [`GuardedResolver`], which refuses the whole name if any address is not
//! public and hands the connector exactly the addresses it checked (so DNS rebinding
//! between check and connect is impossible); every redirect hop is re-checked; proxies
//! are ignored.

use std::error::Error as StdError;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::redirect;

use crate::domain::ssrf::{Blocked, UrlPolicy};

/// Why the guarded client could not be built (TLS backend initialisation).
pub type BuildError = reqwest::Error;

/// Redirects followed at most.
pub const MAX_REDIRECTS: usize = 5;

/// Too many redirects (a guard decision, like [`Blocked`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("more than {MAX_REDIRECTS} redirects")]
pub struct TooManyRedirects;

/// Resolves host names through the system resolver and lets through only names whose
/// every address passes [`UrlPolicy::check_ip`].
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    policy: Arc<UrlPolicy>,
}

impl GuardedResolver {
    pub fn new(policy: Arc<UrlPolicy>) -> Self {
        Self { policy }
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = Arc::clone(&self.policy);
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if addrs.is_empty() {
                return Err(
                    Box::new(Blocked::Unresolvable(host)) as Box<dyn StdError + Send + Sync>
                );
            }
            // One bad address blocks the name: a mixed answer is how rebinding attacks start.
            for addr in &addrs {
                policy
                    .check_ip(addr.ip())
                    .map_err(|b| Box::new(b) as Box<dyn StdError + Send + Sync>)?;
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// Timeouts of the guarded client.
#[derive(Debug, Clone, Copy)]
pub struct FetchTimeouts {
    pub connect: Duration,
    /// Longest wait for the next bytes of a response (an idle read), not a total.
    pub read_idle: Duration,
}

/// Builds the guarded client. Callers still check the first URL with
/// [`UrlPolicy::check_url`] (IP-literal hosts bypass resolvers).
pub fn guarded_client(
    policy: UrlPolicy,
    timeouts: FetchTimeouts,
) -> reqwest::Result<reqwest::Client> {
    let policy = Arc::new(policy);
    let hop_policy = Arc::clone(&policy);
    let redirects = redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() > MAX_REDIRECTS {
            return attempt.error(TooManyRedirects);
        }
        match hop_policy.check_url(attempt.url()) {
            Ok(()) => attempt.follow(),
            Err(blocked) => attempt.error(blocked),
        }
    });
    reqwest::Client::builder()
        .dns_resolver(Arc::new(GuardedResolver::new(Arc::clone(&policy))))
        .redirect(redirects)
        .no_proxy()
        .https_only(!policy.allow_http)
        .connect_timeout(timeouts.connect)
        .read_timeout(timeouts.read_idle)
        .tcp_nodelay(true)
        .user_agent(concat!("music-video-ingest/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// The guard decision inside a reqwest error, if that is what stopped it.
pub fn guard_cause(err: &reqwest::Error) -> Option<GuardRefusal> {
    let mut source: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = source {
        if let Some(blocked) = e.downcast_ref::<Blocked>() {
            return Some(GuardRefusal::Blocked(blocked.clone()));
        }
        if e.downcast_ref::<TooManyRedirects>().is_some() {
            return Some(GuardRefusal::TooManyRedirects);
        }
        source = e.source();
    }
    None
}

/// A permanent refusal by the guard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuardRefusal {
    Blocked(Blocked),
    TooManyRedirects,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(policy: UrlPolicy) -> reqwest::Client {
        guarded_client(
            policy,
            FetchTimeouts {
                connect: Duration::from_secs(2),
                read_idle: Duration::from_secs(2),
            },
        )
        .unwrap()
    }

    #[tokio::test]
    async fn names_resolving_to_loopback_are_refused_before_connecting() {
        // `localhost` resolves to loopback without any network.
        let err = client(UrlPolicy {
            allow_http: true,
            ..UrlPolicy::default()
        })
        .get("http://localhost:9/")
        .send()
        .await
        .unwrap_err();
        match guard_cause(&err) {
            Some(GuardRefusal::Blocked(Blocked::Address { class, .. })) => {
                assert_eq!(class, crate::domain::ssrf::AddressClass::Loopback)
            }
            other => panic!("expected a loopback block, got {other:?} from {err:?}"),
        }
    }

    #[tokio::test]
    async fn plain_http_is_refused_unless_allowed() {
        let err = client(UrlPolicy::default())
            .get("http://cdn.example/")
            .send()
            .await
            .unwrap_err();
        assert!(
            err.is_builder() || err.to_string().contains("https"),
            "{err:?}"
        );
    }
}
