//! An HTTP client that can only reach what the SSRF guard allows: every host name is
//! resolved by [`GuardedResolver`], which refuses the whole name if any address is not
//! public and hands the connector exactly the addresses it checked (so DNS rebinding
//! between check and connect is impossible); every redirect hop is re-checked; proxies
//! are ignored.

use std::error::Error as StdError;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
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

/// Name resolution, the one thing the guard takes on trust: the system resolver in
/// production ([`SystemLookup`]); tests put a name anywhere they like with
/// `test_support::StaticLookup`, to prove the guard checks what the name resolved to.
pub trait HostLookup: std::fmt::Debug + Send + Sync + 'static {
    /// Every address `host` resolves to (the port is set by the caller).
    fn lookup(
        &self,
        host: String,
    ) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<IpAddr>>> + Send>>;
}

/// The system resolver (getaddrinfo, on a blocking thread).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemLookup;

impl HostLookup for SystemLookup {
    fn lookup(
        &self,
        host: String,
    ) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<IpAddr>>> + Send>> {
        Box::pin(async move {
            Ok(tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .map(|a| a.ip())
                .collect())
        })
    }
}

/// Resolves host names through a [`HostLookup`] and lets through only names whose every
/// address passes [`UrlPolicy::check_ip`].
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    policy: Arc<UrlPolicy>,
    lookup: Arc<dyn HostLookup>,
}

impl GuardedResolver {
    pub fn new(policy: Arc<UrlPolicy>, lookup: Arc<dyn HostLookup>) -> Self {
        Self { policy, lookup }
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = Arc::clone(&self.policy);
        let lookup = Arc::clone(&self.lookup);
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> = lookup
                .lookup(host.clone())
                .await?
                .into_iter()
                .map(|ip| SocketAddr::new(ip, 0))
                .collect();
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

/// Builds the guarded client, resolving names through `lookup`. Callers still check the
/// first URL with [`UrlPolicy::check_url`] (IP-literal hosts bypass resolvers).
pub fn guarded_client_with(
    policy: UrlPolicy,
    timeouts: FetchTimeouts,
    lookup: Arc<dyn HostLookup>,
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
        .dns_resolver(Arc::new(GuardedResolver::new(Arc::clone(&policy), lookup)))
        .redirect(redirects)
        .no_proxy()
        .https_only(!policy.allow_http)
        .connect_timeout(timeouts.connect)
        .read_timeout(timeouts.read_idle)
        .tcp_nodelay(true)
        .user_agent(concat!("music-video-ingest/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// The client that sends notifications: the same guard on every name, no redirects (a
/// 3xx is the endpoint's answer, not somewhere to go), one `timeout` for the whole
/// exchange.
pub fn guarded_sender_client(
    policy: UrlPolicy,
    connect: Duration,
    timeout: Duration,
    lookup: Arc<dyn HostLookup>,
) -> reqwest::Result<reqwest::Client> {
    let policy = Arc::new(policy);
    reqwest::Client::builder()
        .dns_resolver(Arc::new(GuardedResolver::new(Arc::clone(&policy), lookup)))
        .redirect(redirect::Policy::none())
        .no_proxy()
        .https_only(!policy.allow_http)
        .connect_timeout(connect)
        .timeout(timeout)
        .user_agent(concat!("music-video-notify/", env!("CARGO_PKG_VERSION")))
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
        guarded_client_with(
            policy,
            FetchTimeouts {
                connect: Duration::from_secs(2),
                read_idle: Duration::from_secs(2),
            },
            Arc::new(SystemLookup),
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

    async fn resolve(lookup: StaticLookup, host: &str) -> Result<Vec<SocketAddr>, String> {
        let resolver = GuardedResolver::new(Arc::new(UrlPolicy::default()), Arc::new(lookup));
        match resolver.resolve(host.parse().unwrap()).await {
            Ok(addrs) => Ok(addrs.collect()),
            Err(e) => Err(e.to_string()),
        }
    }

    use crate::test_support::StaticLookup;

    #[tokio::test]
    async fn a_name_is_judged_by_every_address_it_resolves_to() {
        let lookup = StaticLookup::default()
            .with(
                "public.test",
                &["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"],
            )
            .with("rebind.test", &["93.184.215.14", "127.0.0.1"])
            .with("metadata.test", &["169.254.169.254"])
            .with("mapped.test", &["::ffff:10.0.0.1"])
            .with("nothing.test", &[]);
        let ok = resolve(lookup.clone(), "public.test").await.unwrap();
        assert_eq!(
            ok.len(),
            2,
            "every checked address is handed on, and only those"
        );
        for (host, why) in [
            ("rebind.test", "loopback"),
            ("metadata.test", "link_local"),
            ("mapped.test", "private"),
            ("nothing.test", "resolved to no address"),
        ] {
            let err = resolve(lookup.clone(), host).await.unwrap_err();
            assert!(err.contains(why), "{host}: {err}");
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
