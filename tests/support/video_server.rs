//! A local HTTP/1.1 video server for ingest tests and benchmarks, written on raw TCP so
//! it can misbehave exactly: cut the connection after N bytes, lie in Content-Length,
//! stall, answer errors or HTML, ignore Range. Content is generated from (seed, offset),
//! so gigabytes cost no memory and any range can be served.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

pub use shared::test_support::Video;

/// How a full (non-ranged) answer is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    ContentLength,
    /// `Transfer-Encoding: chunked`: no length declared.
    Chunked,
    /// No length, no chunks: the body ends when the connection closes.
    CloseDelimited,
}

/// A source that misbehaves in the ways that once let a truncated video look complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tricky {
    pub video: Video,
    pub framing: Framing,
    /// The first full answer ends after this many bytes…
    pub cut_first_after: Option<u64>,
    /// …cleanly (a chunk terminator, a close: it looks complete) or by dropping the
    /// connection mid-stream.
    pub clean_cut: bool,
    /// Ranged answers cover at most this many bytes (with the true total).
    pub segment: Option<u64>,
    /// Ranged answers name this ETag, whatever `If-Range` says: the object "changed".
    pub resume_etag: Option<&'static str>,
    /// A range starting at the end is answered `416 bytes */<len>` (what a good server
    /// does); otherwise ranges are ignored altogether (200, the whole body, same framing).
    pub ranges: bool,
}

impl Tricky {
    pub fn new(video: Video, framing: Framing) -> Self {
        Self {
            video,
            framing,
            cut_first_after: None,
            clean_cut: true,
            segment: None,
            resume_etag: None,
            ranges: true,
        }
    }
}

/// How a path answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Behaviour {
    /// See [`Tricky`].
    Tricky(Tricky),
    /// Serves the video, honouring `Range`.
    Serve {
        video: Video,
        content_type: &'static str,
    },
    /// Like `Serve`, but the first `times` responses are cut after `after` bytes.
    CutAfter {
        video: Video,
        after: u64,
        times: u32,
    },
    /// Like `Serve`, but `Range` is ignored (always 200 with everything).
    NoRange {
        video: Video,
        times_cut: u32,
        after: u64,
    },
    /// Declares `declared` bytes, sends `actual`, closes.
    LieContentLength {
        video: Video,
        declared: u64,
        actual: u64,
    },
    /// Sends `after` bytes, then goes silent for `pause`, on the first `times` responses.
    Stall {
        video: Video,
        after: u64,
        pause: Duration,
        times: u32,
    },
    /// Answers this status with a short text body.
    Status(u16),
    /// 200 with an HTML page (what an expired CDN link often returns).
    Html,
    /// 302 to `location`.
    Redirect(String),
    /// 200 `application/octet-stream` with `len` bytes that are not an MP4.
    NotMp4 { len: u64 },
}

/// A request the server saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub range: Option<String>,
}

#[derive(Debug, Default)]
struct State {
    routes: HashMap<String, Behaviour>,
    seen: Vec<Seen>,
    served: HashMap<String, u32>,
}

/// The running server; stops when dropped.
#[derive(Debug)]
pub struct VideoServer {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl VideoServer {
    /// Binds 127.0.0.1 on `port` (0 for any free port) and serves in the background.
    pub async fn start(port: u16) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind video server");
        let addr = listener.local_addr().expect("local addr");
        let state = Arc::new(Mutex::new(State::default()));
        let shared = Arc::clone(&state);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = Arc::clone(&shared);
                tokio::spawn(async move {
                    let _ = serve(stream, state).await;
                });
            }
        });
        Self { addr, state, task }
    }

    pub fn route(&self, path: &str, behaviour: Behaviour) -> String {
        self.lock().routes.insert(path.to_owned(), behaviour);
        self.url(path)
    }

    /// Serves `video` at `path` as `video/mp4`, honouring `Range`; returns its URL.
    pub fn serve(&self, path: &str, video: Video) -> String {
        self.route(
            path,
            Behaviour::Serve {
                video,
                content_type: "video/mp4",
            },
        )
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// GET requests to `path`, in order.
    pub fn gets(&self, path: &str) -> Vec<Seen> {
        self.lock()
            .seen
            .iter()
            .filter(|s| s.method == "GET" && s.path == path)
            .cloned()
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for VideoServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn parse_range(raw: &str, len: u64) -> Option<u64> {
    let start: u64 = raw
        .strip_prefix("bytes=")?
        .strip_suffix('-')?
        .parse()
        .ok()?;
    (start < len).then_some(start)
}

async fn serve(mut stream: TcpStream, state: Arc<Mutex<State>>) -> std::io::Result<()> {
    let Some(request) = crate::http1::read_request(&mut stream).await? else {
        return Ok(());
    };
    let method = request.method.clone();
    let path = request.target.clone();
    let range = request.header("range").map(str::to_owned);

    let (behaviour, nth) = {
        let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
        s.seen.push(Seen {
            method: method.clone(),
            path: path.clone(),
            range: range.clone(),
        });
        let nth = s.served.entry(path.clone()).or_insert(0);
        *nth += 1;
        let nth = *nth;
        (s.routes.get(&path).cloned(), nth)
    };
    let head_only = method == "HEAD";

    match behaviour {
        None => simple(&mut stream, 404, "text/plain", b"not found").await,
        Some(Behaviour::Status(code)) => {
            simple(&mut stream, code, "text/plain", b"no video here").await
        }
        Some(Behaviour::Html) => {
            simple(
                &mut stream,
                200,
                "text/html; charset=utf-8",
                b"<!DOCTYPE html><html><body>Link expired</body></html>",
            )
            .await
        }
        Some(Behaviour::NotMp4 { len }) => {
            // The video's bytes from offset 32 on: random, no ftyp box.
            let video = Video::new(len + 32, 99);
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
            );
            stream.write_all(head.as_bytes()).await?;
            write_range(&mut stream, video, 32, len + 32, None).await?;
            stream.shutdown().await
        }
        Some(Behaviour::Tricky(tricky)) => {
            send_tricky(&mut stream, &tricky, range.as_deref(), nth).await
        }
        Some(Behaviour::Redirect(location)) => {
            let head = format!(
                "HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            stream.write_all(head.as_bytes()).await
        }
        Some(Behaviour::Serve {
            video,
            content_type,
        }) => {
            send_video(
                &mut stream,
                video,
                content_type,
                range.as_deref(),
                None,
                None,
                head_only,
            )
            .await
        }
        Some(Behaviour::CutAfter {
            video,
            after,
            times,
        }) => {
            let cut = (nth <= times).then_some(after);
            send_video(
                &mut stream,
                video,
                "video/mp4",
                range.as_deref(),
                cut,
                None,
                head_only,
            )
            .await
        }
        Some(Behaviour::NoRange {
            video,
            times_cut,
            after,
        }) => {
            let cut = (nth <= times_cut).then_some(after);
            send_video(&mut stream, video, "video/mp4", None, cut, None, head_only).await
        }
        Some(Behaviour::Stall {
            video,
            after,
            pause,
            times,
        }) => {
            let stall = (nth <= times).then_some((after, pause));
            send_video(
                &mut stream,
                video,
                "video/mp4",
                range.as_deref(),
                None,
                stall,
                head_only,
            )
            .await
        }
        Some(Behaviour::LieContentLength {
            video,
            declared,
            actual,
        }) => {
            let start = range
                .as_deref()
                .and_then(|r| parse_range(r, declared))
                .unwrap_or(0);
            let head = if start > 0 {
                format!(
                    "HTTP/1.1 206 Partial Content\r\nContent-Type: video/mp4\r\nContent-Length: {}\r\nContent-Range: bytes {start}-{}/{declared}\r\nConnection: close\r\n\r\n",
                    declared - start,
                    declared - 1
                )
            } else {
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: video/mp4\r\nContent-Length: {declared}\r\nAccept-Ranges: bytes\r\nConnection: close\r\n\r\n"
                )
            };
            stream.write_all(head.as_bytes()).await?;
            if start < actual {
                write_range(&mut stream, video, start, actual, None).await?;
            }
            stream.shutdown().await
        }
    }
}

async fn send_tricky(
    stream: &mut TcpStream,
    t: &Tricky,
    range: Option<&str>,
    nth: u32,
) -> std::io::Result<()> {
    let len = t.video.len;
    let etag = format!("\"v{}\"", t.video.seed);
    let start = range
        .filter(|_| t.ranges)
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|r| r.parse::<u64>().ok());
    match start {
        Some(start) if start >= len => {
            let head = format!(
                "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{len}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            stream.write_all(head.as_bytes()).await?;
            stream.shutdown().await
        }
        Some(start) => {
            let end = t.segment.map_or(len, |n| (start + n).min(len));
            let etag = t.resume_etag.map_or(etag, str::to_owned);
            let head = format!(
                "HTTP/1.1 206 Partial Content\r\nContent-Type: video/mp4\r\nContent-Length: {}\r\nContent-Range: bytes {start}-{}/{len}\r\nETag: {etag}\r\nConnection: close\r\n\r\n",
                end - start,
                end - 1
            );
            stream.write_all(head.as_bytes()).await?;
            write_range(stream, t.video, start, end, None).await?;
            stream.shutdown().await
        }
        None => {
            // Only the first full answer is cut.
            let cut = t.cut_first_after.filter(|_| nth == 1);
            let end = cut.map_or(len, |c| c.min(len));
            let framing = match t.framing {
                Framing::ContentLength => format!("Content-Length: {len}\r\n"),
                Framing::Chunked => "Transfer-Encoding: chunked\r\n".into(),
                Framing::CloseDelimited => String::new(),
            };
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: video/mp4\r\n{framing}ETag: {etag}\r\nConnection: close\r\n\r\n"
            );
            stream.write_all(head.as_bytes()).await?;
            if t.framing == Framing::Chunked {
                let broken = cut.is_some() && !t.clean_cut;
                let mut pos = 0;
                let mut block = vec![0u8; 64 * 1024];
                while pos < end {
                    let n = (end - pos).min(block.len() as u64) as usize;
                    let last = pos + n as u64 == end;
                    t.video.fill(pos, &mut block[..n]);
                    // A broken stream: the last chunk promises more of the video than comes.
                    let declared = if broken && last { n + 4096 } else { n };
                    stream
                        .write_all(format!("{declared:x}\r\n").as_bytes())
                        .await?;
                    stream.write_all(&block[..n]).await?;
                    if broken && last {
                        return Ok(());
                    }
                    stream.write_all(b"\r\n").await?;
                    pos += n as u64;
                }
                stream.write_all(b"0\r\n\r\n").await?;
            } else {
                write_range(stream, t.video, 0, end, None).await?;
                if cut.is_some() && !t.clean_cut {
                    // Reset, not closed: a plain drop would send FIN, which looks like
                    // the end of a close-delimited body.
                    stream.set_zero_linger()?;
                    return Ok(());
                }
            }
            stream.shutdown().await
        }
    }
}

async fn simple(
    stream: &mut TcpStream,
    code: u16,
    content_type: &str,
    body: &[u8],
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {code} X\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    stream.shutdown().await
}

async fn send_video(
    stream: &mut TcpStream,
    video: Video,
    content_type: &str,
    range: Option<&str>,
    cut_after: Option<u64>,
    stall: Option<(u64, Duration)>,
    head_only: bool,
) -> std::io::Result<()> {
    let start = range.and_then(|r| parse_range(r, video.len));
    let head = match start {
        Some(start) => format!(
            "HTTP/1.1 206 Partial Content\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nContent-Range: bytes {start}-{}/{}\r\nETag: \"v{}\"\r\nConnection: close\r\n\r\n",
            video.len - start,
            video.len - 1,
            video.len,
            video.seed
        ),
        None => format!(
            "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nAccept-Ranges: bytes\r\nETag: \"v{}\"\r\nConnection: close\r\n\r\n",
            video.len, video.seed
        ),
    };
    stream.write_all(head.as_bytes()).await?;
    if head_only {
        return stream.shutdown().await;
    }
    let start = start.unwrap_or(0);
    // A cut is counted from the start of this response's body.
    let end = cut_after.map_or(video.len, |n| (start + n).min(video.len));
    write_range(
        stream,
        video,
        start,
        end,
        stall.map(|(after, pause)| (start + after, pause)),
    )
    .await?;
    if cut_after.is_some() {
        // Drop without a clean close: the client sees a reset/short body.
        return Ok(());
    }
    stream.shutdown().await
}

async fn write_range(
    stream: &mut TcpStream,
    video: Video,
    start: u64,
    end: u64,
    stall_at: Option<(u64, Duration)>,
) -> std::io::Result<()> {
    let mut block = vec![0u8; 256 * 1024];
    let mut pos = start;
    let mut stalled = false;
    while pos < end {
        let mut n = (end - pos).min(block.len() as u64);
        if let Some((at, _)) = stall_at {
            if !stalled && pos < at {
                n = n.min(at - pos);
            }
        }
        let n = n as usize;
        video.fill(pos, &mut block[..n]);
        stream.write_all(&block[..n]).await?;
        pos += n as u64;
        if let Some((at, pause)) = stall_at {
            if !stalled && pos >= at {
                stalled = true;
                tokio::time::sleep(pause).await;
            }
        }
    }
    Ok(())
}
