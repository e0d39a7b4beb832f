//! The HTTP sender: reqwest through the SSRF guard's resolver (every name is checked on
//! every attempt, so a name re-pointed at a private address after the endpoint was saved
//! is refused), redirects not followed, [`SEND_TIMEOUT`] for the whole exchange, and at
//! most [`ANSWER_KEPT`] bytes of the answer read.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{ANSWER_KEPT, Outgoing, SEND_TIMEOUT, SendFailed, Sender, Sent};
use crate::domain::notify::classify::TransportError;
use crate::domain::ssrf::{Blocked, UrlPolicy};
use crate::fetch::client::{
    BuildError, GuardRefusal, HostLookup, SystemLookup, guard_cause, guarded_sender_client,
};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct HttpSender {
    client: reqwest::Client,
    policy: UrlPolicy,
}

impl HttpSender {
    pub fn new(policy: UrlPolicy) -> Result<Self, BuildError> {
        Self::with_lookup(policy, Arc::new(SystemLookup), SEND_TIMEOUT)
    }

    /// Resolving names through `lookup`, with `timeout` for a whole attempt.
    pub fn with_lookup(
        policy: UrlPolicy,
        lookup: Arc<dyn HostLookup>,
        timeout: Duration,
    ) -> Result<Self, BuildError> {
        let client = guarded_sender_client(
            policy.clone(),
            CONNECT_TIMEOUT.min(timeout),
            timeout,
            lookup,
        )?;
        Ok(Self { client, policy })
    }
}

fn failed(error: TransportError, detail: impl Into<String>, started: Instant) -> SendFailed {
    SendFailed {
        error,
        detail: detail.into(),
        took: started.elapsed(),
    }
}

/// What a reqwest error was, without its URL (chat URLs carry their credential).
fn transport_error(err: &reqwest::Error) -> (TransportError, String) {
    if let Some(refusal) = guard_cause(err) {
        return match refusal {
            GuardRefusal::Blocked(Blocked::Unresolvable(host)) => (
                TransportError::Dns,
                format!("{host:?} resolved to no address"),
            ),
            GuardRefusal::Blocked(b) => (TransportError::Blocked, b.to_string()),
            GuardRefusal::TooManyRedirects => (TransportError::Other, "redirected".into()),
        };
    }
    let detail = text_without_url(err);
    let kind = if err.is_timeout() {
        TransportError::Timeout
    } else if err.is_connect() {
        // reqwest names no DNS or TLS kind; its source chain's text does.
        let text = format!("{err:?}").to_ascii_lowercase();
        if text.contains("dns") || text.contains("lookup") {
            TransportError::Dns
        } else if text.contains("certificate") || text.contains("tls") {
            TransportError::Tls
        } else {
            TransportError::Connect
        }
    } else {
        TransportError::Other
    };
    (kind, detail)
}

/// The error's text with its URL replaced (`reqwest::Error::without_url` needs ownership).
fn text_without_url(err: &reqwest::Error) -> String {
    let text = err.to_string();
    match err.url() {
        Some(url) => text.replace(url.as_str(), "<endpoint>"),
        None => text,
    }
}

impl Sender for HttpSender {
    async fn send(&self, request: Outgoing) -> Result<Sent, SendFailed> {
        let started = Instant::now();
        // IP-literal hosts never reach the resolver: the guard checks them here.
        self.policy
            .check_url(&request.url)
            .map_err(|b| failed(TransportError::Blocked, b.to_string(), started))?;
        let mut builder = self
            .client
            .post(request.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json");
        for (name, value) in &request.headers {
            builder = builder.header(*name, value);
        }
        let mut response = builder.body(request.body).send().await.map_err(|e| {
            let (kind, detail) = transport_error(&e);
            failed(kind, detail, started)
        })?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mut body = Vec::new();
        // Read no more than we keep: an endpoint cannot make us download its answer.
        while body.len() < ANSWER_KEPT {
            match response.chunk().await {
                Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                Ok(None) => break,
                // The status arrived: a body cut short is still this answer.
                Err(_) => break,
            }
        }
        body.truncate(ANSWER_KEPT);
        Ok(Sent {
            status,
            retry_after,
            body,
            took: started.elapsed(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    fn local() -> UrlPolicy {
        UrlPolicy {
            allow_http: true,
            allow_loopback: true,
            allowed_hosts: Vec::new(),
        }
    }

    /// A one-shot server: answers every connection with `answer`, after `delay`, and
    /// hands back what each request carried.
    async fn serve(
        answer: &'static [u8],
        delay: Duration,
    ) -> (SocketAddr, tokio::sync::mpsc::Receiver<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let tx = tx.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    let mut got = Vec::new();
                    // Headers and a small body arrive together here.
                    while !String::from_utf8_lossy(&got).contains("\r\n\r\n{") {
                        let Ok(n) = s.read(&mut buf).await else {
                            return;
                        };
                        if n == 0 {
                            break;
                        }
                        got.extend_from_slice(&buf[..n]);
                    }
                    let _ = tx.send(String::from_utf8_lossy(&got).into_owned()).await;
                    tokio::time::sleep(delay).await;
                    let _ = s.write_all(answer).await;
                    let _ = s.shutdown().await;
                });
            }
        });
        (addr, rx)
    }

    fn outgoing(addr: SocketAddr) -> Outgoing {
        Outgoing {
            url: format!("http://{addr}/hook?key=SECRETKEY").parse().unwrap(),
            headers: vec![("webhook-id", "evt_1".into())],
            body: br#"{"type":"test"}"#.to_vec(),
        }
    }

    #[tokio::test]
    async fn an_answer_is_kept_whatever_its_status_with_its_retry_after() {
        let (addr, mut seen) = serve(
            b"HTTP/1.1 503 Busy\r\nRetry-After: 30\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbusy",
            Duration::ZERO,
        )
        .await;
        let sender = HttpSender::new(local()).unwrap();
        let sent = sender.send(outgoing(addr)).await.unwrap();
        assert_eq!(
            (sent.status, sent.retry_after.as_deref(), &sent.body[..]),
            (503, Some("30"), &b"busy"[..])
        );
        let request = seen.recv().await.unwrap();
        assert!(
            request.starts_with("POST /hook?key=SECRETKEY HTTP/1.1"),
            "{request}"
        );
        assert!(request.contains("webhook-id: evt_1"));
        assert!(request.contains("content-type: application/json"));
        assert!(request.ends_with(r#"{"type":"test"}"#));
    }

    #[tokio::test]
    async fn redirects_are_answers_not_directions() {
        let (addr, _seen) = serve(
            b"HTTP/1.1 302 Found\r\nLocation: http://169.254.169.254/\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            Duration::ZERO,
        )
        .await;
        let sent = HttpSender::new(local())
            .unwrap()
            .send(outgoing(addr))
            .await
            .unwrap();
        assert_eq!(sent.status, 302);
    }

    #[tokio::test]
    async fn only_four_kib_of_an_answer_is_read() {
        static BIG: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
        let big = BIG.get_or_init(|| {
            let body = vec![b'x'; 1 << 20];
            let mut r = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )
            .into_bytes();
            r.extend(body);
            r
        });
        let (addr, _seen) = serve(big, Duration::ZERO).await;
        let sent = HttpSender::new(local())
            .unwrap()
            .send(outgoing(addr))
            .await
            .unwrap();
        assert_eq!((sent.status, sent.body.len()), (200, ANSWER_KEPT));
    }

    #[tokio::test]
    async fn no_answer_in_time_is_a_timeout_and_the_url_never_shows() {
        let (addr, _seen) = serve(b"HTTP/1.1 200 OK\r\n\r\n", Duration::from_secs(10)).await;
        let sender =
            HttpSender::with_lookup(local(), Arc::new(SystemLookup), Duration::from_millis(300))
                .unwrap();
        let err = sender.send(outgoing(addr)).await.unwrap_err();
        assert_eq!(err.error, TransportError::Timeout, "{err:?}");
        assert!(!err.detail.contains("SECRETKEY"), "{}", err.detail);
        assert!(err.took < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_connect_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let err = HttpSender::new(local())
            .unwrap()
            .send(outgoing(addr))
            .await
            .unwrap_err();
        assert_eq!(err.error, TransportError::Connect, "{err:?}");
        assert!(!err.detail.contains("SECRETKEY"), "{}", err.detail);
    }

    #[tokio::test]
    async fn the_guard_refuses_private_targets_before_connecting() {
        let production = UrlPolicy {
            allow_http: true,
            ..UrlPolicy::default()
        };
        let (addr, mut seen) = serve(
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
            Duration::ZERO,
        )
        .await;
        let sender = HttpSender::new(production).unwrap();
        let err = sender.send(outgoing(addr)).await.unwrap_err();
        assert_eq!(err.error, TransportError::Blocked, "{err:?}");
        // A name that resolves to loopback, through the resolver.
        let mut named = outgoing(addr);
        named.url = format!("http://localhost:{}/hook", addr.port())
            .parse()
            .unwrap();
        let err = sender.send(named).await.unwrap_err();
        assert_eq!(err.error, TransportError::Blocked, "{err:?}");
        assert!(seen.try_recv().is_err(), "nothing reached the listener");
    }
}
