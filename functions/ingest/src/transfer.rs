//! Source → sink in constant memory: bytes are copied into one part buffer; a full part
//! is handed to a bounded pool of concurrent part uploads, and reading waits for a free
//! slot, so memory stays near `(concurrency + 1) × part_size` whatever the video's size.
//! The SHA-256 and the CRC64NVME of the whole stream are computed as it passes: S3 checks
//! the object against the CRC64NVME at the commit, and the SHA-256 becomes a tag. Any
//! failure drains the in-flight parts and aborts the multipart upload: nothing
//! half-written stays behind.
//!
//! Part size adapts so that any video up to S3's 5 TiB object limit fits in its 10 000
//! parts: from the declared length when there is one, else by doubling every
//! [`PARTS_PER_STEP`] parts.
//!
//! The copy stops at the deadline or when the lease is lost ([`Limits`]), but the commit
//! (the put, or `CompleteMultipartUpload`, and the tagging that follows) is never cut
//! short: S3 may finish a commit it was not waited for, and a completed object must be
//! either recorded or removed. A commit that fails removes the object.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use sha2::{Digest, Sha256};
use shared::TaskId;
use shared::domain::task::FailureReason;
use shared::fetch::{Origin, SourceError, VideoSource};
use shared::sink::{
    Finished, MultipartUpload, ObjectMeta, SinkError, UploadedPart, VIDEO_CONTENT_TYPE, VideoSink,
};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{info, warn};
use url::Url;

use crate::sniff::{Sniff, sniff_mp4};

/// Smallest part S3 accepts (except the last).
pub const MIN_PART_SIZE: usize = 5 * 1024 * 1024;
/// Largest part S3 accepts.
pub const MAX_PART_SIZE: usize = 5 * 1024 * 1024 * 1024;
/// Most parts one upload may have.
pub const MAX_PARTS: u64 = 10_000;
/// Largest object S3 stores.
pub const MAX_OBJECT_BYTES: u64 = 5 * 1024 * 1024 * 1024 * 1024;
/// Of unknown length, the part size doubles every this many parts: 16 steps of 625, so
/// 10 000 parts hold more than 5 TiB from any base of at least 5 MiB, while a video of a
/// few GiB never leaves the configured size (and memory stays where it was).
pub const PARTS_PER_STEP: u64 = 625;

/// The size of part `number` (from 1) of a video of `length` bytes (if declared), for
/// the configured `base` size. Every part but the last is this size's sequence, so the
/// parts of a declared length are all equal, and those of an unknown one step up.
pub fn part_size_for(number: u64, base: usize, length: Option<u64>) -> usize {
    const MIB: u64 = 1024 * 1024;
    let base = base as u64;
    let size = match length {
        // The smallest whole MiB that fits the length in MAX_PARTS parts.
        Some(length) => base.max(length.div_ceil(MAX_PARTS).div_ceil(MIB) * MIB),
        None => {
            let step = (number.saturating_sub(1) / PARTS_PER_STEP).min(20);
            base.saturating_mul(1 << step)
        }
    };
    usize::try_from(size.min(MAX_PART_SIZE as u64)).unwrap_or(MAX_PART_SIZE)
}

/// How one transfer runs.
#[derive(Debug, Clone, Copy)]
pub struct TransferSettings {
    pub part_size: usize,
    pub concurrency: usize,
    /// Restarts from byte 0 when the source cannot resume.
    pub max_restarts: u32,
    pub progress: ProgressPolicy,
}

/// When progress is worth a write: after `interval`, or after `bytes` more bytes, but
/// never more often than `min_gap`.
#[derive(Debug, Clone, Copy)]
pub struct ProgressPolicy {
    pub interval: Duration,
    pub bytes: u64,
    pub min_gap: Duration,
}

/// Decides when to report progress (pure, given the clock).
#[derive(Debug, Clone, Copy)]
pub struct ProgressClock {
    policy: ProgressPolicy,
    last_at: Instant,
    last_bytes: u64,
}

impl ProgressClock {
    pub fn new(policy: ProgressPolicy, now: Instant) -> Self {
        Self {
            policy,
            last_at: now,
            last_bytes: 0,
        }
    }

    /// Whether `bytes` should be reported at `now`; if so, records it as reported.
    pub fn due(&mut self, bytes: u64, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last_at);
        let grown = bytes.saturating_sub(self.last_bytes);
        let due = grown > 0
            && elapsed >= self.policy.min_gap
            && (elapsed >= self.policy.interval || grown >= self.policy.bytes);
        if due {
            self.last_at = now;
            self.last_bytes = bytes;
        }
        due
    }
}

/// Receives progress (the use case writes it to the task, with the lease).
pub trait Progress: Send + Sync {
    /// A report worth a write (the [`ProgressClock`] decided).
    fn report(&self, bytes_received: u64) -> impl Future<Output = ()> + Send;

    /// Every chunk: bytes so far, for whoever writes next (a lease heartbeat while the
    /// source stalls). Cheap: no I/O.
    fn saw(&self, _bytes_received: u64) {}
}

/// What a finished transfer produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transferred {
    pub bytes: u64,
    /// Lowercase hex SHA-256 of the whole stream.
    pub sha256: String,
    /// Parts uploaded (0 for a single put).
    pub parts: usize,
    /// Ranged requests sent to resume a broken download.
    pub ranged_requests: u32,
    /// Times the transfer started over from byte 0.
    pub restarts: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("not an MP4 file: no ftyp box at the start")]
    NotMp4,
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// The commit failed; the object it may have left was removed.
    #[error("commit failed: {0}")]
    Commit(#[source] SinkError),
    #[error("the invocation's deadline arrived after {0} bytes")]
    Deadline(u64),
    /// Another invocation took the task over (the lease was lost).
    #[error("the lease was lost after {0} bytes")]
    Stopped(u64),
    /// A part upload's task panicked or was cancelled.
    #[error("a part upload task did not finish: {0}")]
    PartTask(String),
    /// A state the transfer never gets into (a part without an upload, a closed pool).
    #[error("transfer bookkeeping: {0}")]
    Bookkeeping(&'static str),
}

impl TransferError {
    /// `Some(reason)` when the task must fail; `None` when a later attempt may succeed.
    pub fn failure_reason(&self) -> Option<FailureReason> {
        match self {
            Self::Source(e) => e.failure_reason(),
            Self::NotMp4 => Some(FailureReason::NotMp4),
            Self::Sink(_)
            | Self::Commit(_)
            | Self::Deadline(_)
            | Self::Stopped(_)
            | Self::PartTask(_)
            | Self::Bookkeeping(_) => None,
        }
    }
}

/// Where the bytes go and under which name.
#[derive(Debug)]
pub struct Destination<'a, K> {
    pub sink: &'a K,
    pub key: &'a str,
    pub task_id: &'a TaskId,
    /// [`source_fingerprint`] of the URL the bytes come from, kept on the object.
    pub source: &'a str,
}

/// Object metadata: the task and the source it came from. (Its length and SHA-256, known
/// at the commit, are tags: [`shared::sink::tag`].)
pub mod meta {
    pub const TASK_ID: &str = "task-id";
    pub const SOURCE: &str = "source";
}

/// A stable name for a source URL that reveals nothing of it (signed URLs carry
/// credentials): its SHA-256.
pub fn source_fingerprint(url: &Url) -> String {
    hex(&Sha256::digest(url.as_str().as_bytes()))
}

/// When the copy must stop: the deadline, or the lease lost.
#[derive(Debug, Clone)]
pub struct Limits {
    pub deadline: Instant,
    pub stop: Stop,
}

/// Told to stop (another invocation holds the task now).
#[derive(Debug, Clone)]
pub struct Stop(tokio::sync::watch::Receiver<bool>);

impl Stop {
    /// A stop and the switch that triggers it.
    pub fn new() -> (tokio::sync::watch::Sender<bool>, Self) {
        let (tx, rx) = tokio::sync::watch::channel(false);
        (tx, Self(rx))
    }

    /// One that never triggers.
    #[cfg(test)]
    pub fn never() -> Self {
        Self::new().1
    }

    async fn stopped(&self) {
        let mut rx = self.0.clone();
        // A dropped switch can no longer stop anything.
        if rx.wait_for(|stop| *stop).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Where the bytes come from.
#[derive(Debug)]
pub struct Source<'a, O> {
    pub origin: &'a O,
    pub url: &'a Url,
}

/// Copies `source` to `destination` within `limits`.
pub async fn transfer<O: Origin, K: VideoSink, P: Progress>(
    source: &Source<'_, O>,
    destination: &Destination<'_, K>,
    settings: &TransferSettings,
    limits: &Limits,
    progress: &P,
) -> Result<Transferred, TransferError> {
    let mut restarts = 0;
    loop {
        match attempt(source, destination, settings, limits, progress).await {
            Ok(done) => return Ok(Transferred { restarts, ..done }),
            Err(TransferError::Source(SourceError::CannotResume { offset, mismatch }))
                if restarts < settings.max_restarts =>
            {
                restarts += 1;
                warn!(offset, %mismatch, restarts, "source cannot resume; starting over from byte 0");
            }
            Err(e) => return Err(e),
        }
    }
}

async fn abort<U: MultipartUpload>(upload: &U) {
    match upload.abort().await {
        Ok(()) => info!(upload_id = upload.upload_id(), "multipart upload aborted"),
        // The bucket's lifecycle rule removes it after a day; say so loudly.
        Err(e) => {
            warn!(upload_id = upload.upload_id(), error = %e, "could not abort multipart upload")
        }
    }
}

/// Awaits `fut` unless the deadline comes first or the lease is lost. Never for a commit.
async fn within<T>(
    limits: &Limits,
    bytes: u64,
    fut: impl Future<Output = T>,
) -> Result<T, TransferError> {
    tokio::select! {
        result = fut => Ok(result),
        () = tokio::time::sleep_until(limits.deadline) => Err(TransferError::Deadline(bytes)),
        () = limits.stop.stopped() => Err(TransferError::Stopped(bytes)),
    }
}

/// One pass from byte 0. On failure nothing is left behind: the running parts are
/// stopped first (none may still be uploading), then the multipart upload is aborted.
async fn attempt<O: Origin, K: VideoSink, P: Progress>(
    source: &Source<'_, O>,
    destination: &Destination<'_, K>,
    settings: &TransferSettings,
    limits: &Limits,
    progress: &P,
) -> Result<Transferred, TransferError> {
    let mut parts = PartUploads::new(settings.concurrency);
    let result = copy(source, destination, settings, limits, progress, &mut parts).await;
    if let Err(e) = &result {
        parts.cancel().await;
        if let Some(upload) = parts.upload.take() {
            abort(&upload).await;
        }
        // A failed commit may still have left an object (S3 finished what we stopped
        // hearing about): remove it, so nothing unrecorded stays.
        if matches!(e, TransferError::Commit(_)) {
            remove(destination).await;
        }
    }
    result
}

async fn remove<K: VideoSink>(destination: &Destination<'_, K>) {
    match destination.sink.delete(destination.key).await {
        Ok(()) => info!(key = destination.key, "object of a failed commit removed"),
        // Not recorded, and the next attempt overwrites the same key.
        Err(e) => {
            warn!(key = destination.key, error = %e, "could not remove the object of a failed commit")
        }
    }
}

async fn copy<O: Origin, K: VideoSink, P: Progress>(
    source: &Source<'_, O>,
    destination: &Destination<'_, K>,
    settings: &TransferSettings,
    limits: &Limits,
    progress: &P,
    parts: &mut PartUploads<K::Upload>,
) -> Result<Transferred, TransferError> {
    let meta = ObjectMeta {
        content_type: VIDEO_CONTENT_TYPE.into(),
        metadata: vec![
            (meta::TASK_ID.into(), destination.task_id.to_string()),
            (meta::SOURCE.into(), destination.source.to_owned()),
        ],
    };
    let mut reader = within(limits, 0, source.origin.open(source.url)).await??;
    let length = reader.length();
    let mut part_size = part_size_for(1, settings.part_size, length);
    let mut hasher = Sha256::new();
    let mut crc = crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc64Nvme);
    let mut buffer = parts.buffer(part_size);
    let mut sniffed = false;
    let mut next_part: i32 = 1;
    let mut clock = ProgressClock::new(settings.progress, Instant::now());

    while let Some(chunk) = within(limits, reader.offset(), reader.next_chunk()).await?? {
        hasher.update(&chunk);
        crc.update(&chunk);
        let mut rest: &[u8] = &chunk;
        while !rest.is_empty() {
            let take = rest.len().min(part_size - buffer.len());
            buffer.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if !sniffed {
                match sniff_mp4(&buffer, false) {
                    Sniff::Mp4 { .. } => sniffed = true,
                    Sniff::NotMp4 => return Err(TransferError::NotMp4),
                    Sniff::NeedMore => {}
                }
            }
            if buffer.len() == part_size {
                if parts.upload.is_none() {
                    let started = within(
                        limits,
                        reader.offset(),
                        destination.sink.start(destination.key, &meta),
                    )
                    .await??;
                    parts.upload = Some(started);
                }
                let part = std::mem::take(&mut buffer).freeze();
                within(limits, reader.offset(), parts.dispatch(next_part, part)).await??;
                next_part += 1;
                part_size = part_size_for(next_part as u64, settings.part_size, length);
                if next_part as u64 > MAX_PARTS {
                    return Err(TransferError::Bookkeeping("more than 10 000 parts"));
                }
                // Taken after the dispatch got its slot: a finished part has returned its
                // buffer by then, so the same few buffers circulate.
                buffer = parts.buffer(part_size);
            }
        }
        progress.saw(reader.offset());
        if clock.due(reader.offset(), Instant::now()) {
            progress.report(reader.offset()).await;
        }
    }

    if !sniffed && !matches!(sniff_mp4(&buffer, true), Sniff::Mp4 { .. }) {
        return Err(TransferError::NotMp4);
    }
    let finished = Finished {
        bytes: reader.offset(),
        sha256: hex(&hasher.finalize()),
        crc64nvme: crc.finalize(),
    };
    let bytes = finished.bytes;

    let part_count = match parts.upload.clone() {
        None => {
            // The commit of a small video.
            let body = buffer.freeze();
            let put = destination
                .sink
                .put(destination.key, body, &meta, &finished);
            put.await.map_err(TransferError::Commit)?;
            0
        }
        Some(upload) => {
            if !buffer.is_empty() {
                within(limits, bytes, parts.dispatch(next_part, buffer.freeze())).await??;
            }
            let uploaded = within(limits, bytes, parts.finish()).await??;
            let count = uploaded.len();
            // The commit: not cut short by the deadline (the margin is kept for it).
            upload
                .complete(uploaded, &finished)
                .await
                .map_err(TransferError::Commit)?;
            // The whole-stream hash is known only now: a tag, set without a copy.
            destination
                .sink
                .tag(destination.key, &finished)
                .await
                .map_err(TransferError::Commit)?;
            count
        }
    };
    Ok(Transferred {
        bytes,
        sha256: finished.sha256,
        parts: part_count,
        ranged_requests: reader.ranged_requests(),
        restarts: 0,
    })
}

/// Concurrent part uploads, at most `concurrency` at a time, and the part buffers they
/// circulate: a finished upload hands its buffer back before it frees its slot, so at
/// most `concurrency + 1` buffers ever exist and memory does not grow with the video
/// (fresh allocations per part let the allocator's heap creep up instead).
struct PartUploads<U> {
    /// Started lazily, with the first full part: a video smaller than one part is a put.
    upload: Option<U>,
    running: JoinSet<Result<UploadedPart, SinkError>>,
    slots: Arc<Semaphore>,
    done: Vec<UploadedPart>,
    spare: Arc<Mutex<Vec<BytesMut>>>,
}

impl<U: MultipartUpload> PartUploads<U> {
    fn new(concurrency: usize) -> Self {
        Self {
            upload: None,
            running: JoinSet::new(),
            slots: Arc::new(Semaphore::new(concurrency.max(1))),
            done: Vec::new(),
            spare: Arc::default(),
        }
    }

    /// An empty buffer of `capacity`: a returned one if any, else a new one.
    fn buffer(&self, capacity: usize) -> BytesMut {
        let returned = self.spare.lock().unwrap_or_else(|p| p.into_inner()).pop();
        returned
            .filter(|b| b.capacity() >= capacity)
            .unwrap_or_else(|| BytesMut::with_capacity(capacity))
    }

    /// Starts uploading a part once a slot is free; fails fast if an earlier part failed.
    async fn dispatch(&mut self, number: i32, body: Bytes) -> Result<(), TransferError> {
        let upload = self.upload.clone().ok_or(TransferError::Bookkeeping(
            "a part without a multipart upload",
        ))?;
        self.collect_finished()?;
        let slot = Arc::clone(&self.slots)
            .acquire_owned()
            .await
            .map_err(|_| TransferError::Bookkeeping("the part pool closed"))?;
        self.collect_finished()?;
        let spare = Arc::clone(&self.spare);
        self.running.spawn(async move {
            let kept = body.clone();
            let result = upload.upload_part(number, body).await;
            // The SDK has dropped its references once the call returns; if it has not,
            // the buffer is simply freed and a new one allocated.
            if let Ok(mut buffer) = kept.try_into_mut() {
                buffer.clear();
                spare.lock().unwrap_or_else(|p| p.into_inner()).push(buffer);
            }
            drop(slot);
            result
        });
        Ok(())
    }

    fn collect_finished(&mut self) -> Result<(), TransferError> {
        while let Some(joined) = self.running.try_join_next() {
            self.done
                .push(joined.map_err(|e| TransferError::PartTask(e.to_string()))??);
        }
        Ok(())
    }

    /// Waits for every part; the first failure wins.
    async fn finish(&mut self) -> Result<Vec<UploadedPart>, TransferError> {
        while let Some(joined) = self.running.join_next().await {
            self.done
                .push(joined.map_err(|e| TransferError::PartTask(e.to_string()))??);
        }
        Ok(std::mem::take(&mut self.done))
    }

    /// Stops every running part and waits until they are gone.
    async fn cancel(&mut self) {
        self.running.abort_all();
        while self.running.join_next().await.is_some() {}
    }
}

/// Test helpers other modules' tests share.
#[cfg(test)]
pub(crate) mod tests_support {
    use sha2::{Digest, Sha256};

    /// Lowercase hex SHA-256, as recorded.
    pub fn sha(bytes: &[u8]) -> String {
        super::hex(&Sha256::digest(bytes))
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: ProgressPolicy = ProgressPolicy {
        interval: Duration::from_secs(5),
        bytes: 64 << 20,
        min_gap: Duration::from_secs(1),
    };

    /// Any video up to S3's object limit fits in 10 000 parts of at most 5 GiB, declared
    /// length or not, from any configured size; a declared length gets equal parts, and
    /// a video of a few GiB stays at the configured size.
    #[test]
    fn part_sizes_fit_any_video_up_to_the_object_limit_in_ten_thousand_parts() {
        const MIB: usize = 1024 * 1024;
        for base in [MIN_PART_SIZE, 8 * MIB, 64 * MIB, 512 * MIB] {
            let sizes: Vec<usize> = (1..=MAX_PARTS)
                .map(|n| part_size_for(n, base, None))
                .collect();
            let capacity: u64 = sizes.iter().map(|s| *s as u64).sum();
            assert!(capacity >= MAX_OBJECT_BYTES, "base {base}: {capacity}");
            assert!(sizes.windows(2).all(|w| w[0] <= w[1]), "never shrinks");
            assert!(
                sizes
                    .iter()
                    .all(|s| (MIN_PART_SIZE..=MAX_PART_SIZE).contains(s))
            );
            assert!(sizes[..PARTS_PER_STEP as usize].iter().all(|s| *s == base));
            // 4 GiB in 8 MiB parts is 512 parts: all at the configured size.
            assert_eq!(part_size_for(512, base, None), base);

            for length in [1, 4 << 30, 100 << 30, MAX_OBJECT_BYTES] {
                let size = part_size_for(1, base, Some(length));
                assert!(size >= base && size % MIB == 0 && size <= MAX_PART_SIZE);
                assert!(
                    size as u64 * MAX_PARTS >= length,
                    "{length} in parts of {size}"
                );
                assert_eq!(
                    size,
                    part_size_for(9_999, base, Some(length)),
                    "equal parts"
                );
            }
        }
        assert_eq!(part_size_for(1, 8 * MIB, Some(4 << 30)), 8 * MIB);
        // 5 TiB / 10 000 is 524.3 MiB: 525 MiB parts.
        assert_eq!(part_size_for(1, 8 * MIB, Some(MAX_OBJECT_BYTES)), 525 * MIB);
    }

    #[test]
    fn progress_is_reported_by_time_or_volume_but_rate_limited() {
        let t0 = Instant::now();
        let mut clock = ProgressClock::new(POLICY, t0);
        assert!(
            !clock.due(10 << 20, t0 + Duration::from_secs(2)),
            "little data, little time"
        );
        assert!(
            clock.due(10 << 20, t0 + Duration::from_secs(5)),
            "interval elapsed"
        );
        assert!(
            !clock.due(200 << 20, t0 + Duration::from_millis(5_500)),
            "volume, but within min_gap"
        );
        assert!(
            clock.due(200 << 20, t0 + Duration::from_millis(6_100)),
            "volume after min_gap"
        );
        assert!(
            !clock.due(200 << 20, t0 + Duration::from_secs(60)),
            "no new bytes, no write"
        );
    }

    #[test]
    fn hex_encodes_lowercase() {
        assert_eq!(hex(&[0x00, 0xab, 0xff]), "00abff");
        assert_eq!(
            hex(&Sha256::digest(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn classification() {
        assert_eq!(
            TransferError::NotMp4.failure_reason(),
            Some(FailureReason::NotMp4)
        );
        assert_eq!(TransferError::Deadline(5).failure_reason(), None);
        assert_eq!(TransferError::PartTask("x".into()).failure_reason(), None);
        assert_eq!(TransferError::Bookkeeping("x").failure_reason(), None);
    }

    // --- the transfer on fakes: every path through the part pool, resume and abort ---

    use std::sync::atomic::{AtomicUsize, Ordering};

    use shared::fetch::scripted::{ScriptedOrigin, Step, chunks};
    use shared::sink::memory::Written;
    use shared::test_support::{MemoryVideoSink, Video};

    const PART: usize = 4096;

    struct Reports(AtomicUsize);

    impl Progress for Reports {
        async fn report(&self, _bytes_received: u64) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn settings() -> TransferSettings {
        TransferSettings {
            part_size: PART,
            concurrency: 2,
            max_restarts: 2,
            progress: ProgressPolicy {
                interval: Duration::from_secs(3600),
                bytes: 2 * PART as u64,
                min_gap: Duration::ZERO,
            },
        }
    }

    fn task_id() -> TaskId {
        TaskId::parse("t-1").unwrap()
    }

    fn video(len: usize) -> Vec<u8> {
        Video::new(len as u64, 9).bytes()
    }

    /// Runs one transfer of `origin` into `sink` under `videos/t-1.mp4`.
    async fn run_with(
        origin: &ScriptedOrigin,
        sink: &MemoryVideoSink,
        deadline: Instant,
        progress: &Reports,
    ) -> Result<Transferred, TransferError> {
        run_stoppable(origin, sink, deadline, progress, Stop::never()).await
    }

    async fn run_stoppable(
        origin: &ScriptedOrigin,
        sink: &MemoryVideoSink,
        deadline: Instant,
        progress: &Reports,
        stop: Stop,
    ) -> Result<Transferred, TransferError> {
        let url = Url::parse("https://cdn.example/v.mp4").unwrap();
        let task_id = task_id();
        let source = source_fingerprint(&url);
        transfer(
            &Source { origin, url: &url },
            &Destination {
                sink,
                key: "videos/t-1.mp4",
                task_id: &task_id,
                source: &source,
            },
            &settings(),
            &Limits { deadline, stop },
            progress,
        )
        .await
    }

    async fn run(
        origin: &ScriptedOrigin,
        sink: &MemoryVideoSink,
    ) -> Result<Transferred, TransferError> {
        let progress = Reports(AtomicUsize::new(0));
        run_with(
            origin,
            sink,
            Instant::now() + Duration::from_secs(60),
            &progress,
        )
        .await
    }

    fn sha(bytes: &[u8]) -> String {
        hex(&Sha256::digest(bytes))
    }

    /// The object is the video, byte for byte, with its SHA-256 recorded.
    fn assert_stored(sink: &MemoryVideoSink, bytes: &[u8], written: Written) {
        let object = sink.object("videos/t-1.mp4").expect("object written");
        assert!(object.bytes == bytes, "stored bytes differ from the source");
        assert_eq!(object.written, written);
        let meta: std::collections::HashMap<_, _> = object.meta.metadata.into_iter().collect();
        let tags: std::collections::HashMap<_, _> = object.tags.into_iter().collect();
        assert_eq!(tags.get("sha256"), Some(&sha(bytes)));
        assert_eq!(meta.get("task-id").map(String::as_str), Some("t-1"));
        assert_eq!(tags.get("bytes"), Some(&bytes.len().to_string()));
        let url = Url::parse("https://cdn.example/v.mp4").unwrap();
        assert_eq!(meta.get("source"), Some(&source_fingerprint(&url)));
        assert_eq!(object.meta.content_type, VIDEO_CONTENT_TYPE);
        assert!(sink.open_uploads().is_empty(), "{:?}", sink.open_uploads());
    }

    fn assert_nothing_left(sink: &MemoryVideoSink) {
        assert!(sink.object("videos/t-1.mp4").is_none(), "nothing stored");
        assert!(sink.open_uploads().is_empty(), "{:?}", sink.open_uploads());
    }

    #[tokio::test]
    async fn a_part_failing_mid_stream_aborts_the_upload() {
        let bytes = video(5 * PART + 10);
        let origin = ScriptedOrigin::new([chunks(&bytes, 1000, None)]);
        let sink = MemoryVideoSink::default();
        sink.fail_part(3);
        let err = run(&origin, &sink).await.unwrap_err();
        assert!(
            matches!(&err, TransferError::Sink(e) if e.operation == "UploadPart"),
            "{err}"
        );
        assert_eq!(
            err.failure_reason(),
            None,
            "a sink failure is retried, never failed"
        );
        assert_eq!(sink.aborted().len(), 1);
        assert_nothing_left(&sink);
    }

    #[tokio::test]
    async fn a_cut_source_resumes_and_keeps_every_byte() {
        let bytes = video(3 * PART + 123);
        let cut = PART + 777;
        let origin = ScriptedOrigin::new([chunks(&bytes, 1000, Some(cut))]);
        let sink = MemoryVideoSink::default();
        let done = run(&origin, &sink).await.unwrap();
        assert_eq!(
            (
                done.bytes,
                done.sha256.as_str(),
                done.ranged_requests,
                done.restarts
            ),
            (bytes.len() as u64, sha(&bytes).as_str(), 1, 0)
        );
        assert_eq!(origin.opens(), 1);
        assert_stored(&sink, &bytes, Written::Multipart { parts: 4 });
        assert!(sink.aborted().is_empty());
    }

    #[tokio::test]
    async fn a_refused_resume_aborts_and_restarts_from_byte_zero() {
        let bytes = video(4 * PART + 5);
        let mut first = chunks(&bytes[..3 * PART + 100], 1000, None);
        first.push(Step::cannot_resume());
        let origin = ScriptedOrigin::new([first, chunks(&bytes, 1000, None)]);
        let sink = MemoryVideoSink::default();
        let done = run(&origin, &sink).await.unwrap();
        assert_eq!((done.restarts, done.bytes), (1, bytes.len() as u64));
        assert_eq!(
            done.sha256,
            sha(&bytes),
            "the hash covers the second pass only"
        );
        assert_eq!(origin.opens(), 2);
        assert_eq!(
            sink.aborted().len(),
            1,
            "the first pass's upload is aborted"
        );
        assert_stored(&sink, &bytes, Written::Multipart { parts: 5 });
    }

    #[tokio::test]
    async fn restarts_are_bounded() {
        let bytes = video(2 * PART);
        let refusing = || {
            let mut steps = chunks(&bytes[..PART + 1], 1000, None);
            steps.push(Step::cannot_resume());
            steps
        };
        let origin = ScriptedOrigin::new([refusing(), refusing(), refusing(), refusing()]);
        let sink = MemoryVideoSink::default();
        let err = run(&origin, &sink).await.unwrap_err();
        assert!(
            matches!(err, TransferError::Source(SourceError::CannotResume { .. })),
            "{err}"
        );
        assert_eq!(
            origin.opens(),
            3,
            "the first pass and max_restarts = 2 more"
        );
        assert_eq!(sink.aborted().len(), 3);
        assert_nothing_left(&sink);
    }

    #[tokio::test]
    async fn the_deadline_stops_the_transfer_and_aborts() {
        let bytes = video(4 * PART);
        let mut steps = chunks(&bytes[..2 * PART + 50], 1000, None);
        steps.push(Step::Stall(Duration::from_secs(30)));
        steps.extend(chunks(&bytes[2 * PART + 50..], 1000, None));
        let origin = ScriptedOrigin::new([steps]);
        let sink = MemoryVideoSink::default();
        let progress = Reports(AtomicUsize::new(0));
        let started = Instant::now();
        let deadline = started + Duration::from_millis(300);
        let err = run_with(&origin, &sink, deadline, &progress)
            .await
            .unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "stopped at the deadline"
        );
        assert!(
            matches!(err, TransferError::Deadline(n) if n == 2 * PART as u64 + 50),
            "{err}"
        );
        assert_eq!(err.failure_reason(), None);
        assert_eq!(sink.aborted().len(), 1);
        assert_nothing_left(&sink);
    }

    #[tokio::test]
    async fn a_failing_abort_still_reports_the_transfer_error() {
        let bytes = video(4 * PART);
        let origin = ScriptedOrigin::new([chunks(&bytes, 1000, None)]);
        let sink = MemoryVideoSink::default();
        sink.fail_part(2).fail_abort();
        let err = run(&origin, &sink).await.unwrap_err();
        assert!(
            matches!(&err, TransferError::Sink(e) if e.operation == "UploadPart"),
            "{err}"
        );
        // The upload stays open for the bucket's lifecycle rule; nothing is stored.
        assert_eq!(sink.open_uploads().len(), 1);
        assert!(sink.aborted().is_empty());
        assert!(sink.object("videos/t-1.mp4").is_none());
    }

    #[tokio::test]
    async fn zero_bytes_are_not_an_mp4_and_nothing_is_written() {
        let origin = ScriptedOrigin::new([Vec::new()]);
        let sink = MemoryVideoSink::default();
        let err = run(&origin, &sink).await.unwrap_err();
        assert!(matches!(err, TransferError::NotMp4), "{err}");
        assert_eq!(err.failure_reason(), Some(FailureReason::NotMp4));
        assert_eq!(sink.uploads_started(), 0);
        assert_nothing_left(&sink);
    }

    #[tokio::test]
    async fn an_html_page_is_refused_before_any_upload() {
        let mut page = b"<!DOCTYPE html><html>expired</html>".to_vec();
        page.resize(3 * PART, b' ');
        let origin = ScriptedOrigin::new([chunks(&page, 1000, None)]);
        let sink = MemoryVideoSink::default();
        let err = run(&origin, &sink).await.unwrap_err();
        assert!(matches!(err, TransferError::NotMp4), "{err}");
        assert_eq!(sink.uploads_started(), 0);
        assert_nothing_left(&sink);
    }

    #[tokio::test]
    async fn a_permanent_source_refusal_writes_nothing() {
        let origin = ScriptedOrigin::new([vec![Step::refuse_with_status(404)]]);
        let sink = MemoryVideoSink::default();
        let err = run(&origin, &sink).await.unwrap_err();
        assert_eq!(err.failure_reason(), Some(FailureReason::SourceNotFound));
        assert_eq!(sink.uploads_started(), 0);
        assert_nothing_left(&sink);
    }

    #[tokio::test]
    async fn an_exact_multiple_of_the_part_size_has_no_empty_last_part() {
        let bytes = video(3 * PART);
        let origin = ScriptedOrigin::new([chunks(&bytes, 1000, None)]);
        let sink = MemoryVideoSink::default();
        let done = run(&origin, &sink).await.unwrap();
        assert_eq!(done.parts, 3);
        assert_stored(&sink, &bytes, Written::Multipart { parts: 3 });
    }

    #[tokio::test]
    async fn the_last_part_alone_is_one_byte() {
        let bytes = video(3 * PART + 1);
        // One chunk per byte of the boundary region too: chunking must not matter.
        let origin = ScriptedOrigin::new([chunks(&bytes, PART, None)]);
        let sink = MemoryVideoSink::default();
        let done = run(&origin, &sink).await.unwrap();
        assert_eq!(done.parts, 4);
        assert_stored(&sink, &bytes, Written::Multipart { parts: 4 });
    }

    #[tokio::test]
    async fn a_video_within_one_part_is_a_single_put() {
        for len in [12, PART - 1, PART] {
            let bytes = video(len);
            let origin = ScriptedOrigin::new([chunks(&bytes, 999, None)]);
            let sink = MemoryVideoSink::default();
            let done = run(&origin, &sink).await.unwrap();
            // A video of exactly one part fills the buffer, so it goes multipart.
            let written = if len == PART {
                Written::Multipart { parts: 1 }
            } else {
                Written::Put
            };
            assert_stored(&sink, &bytes, written);
            assert_eq!(done.bytes, len as u64);
        }
    }

    #[tokio::test]
    async fn a_failed_put_or_completion_leaves_nothing() {
        let small = video(100);
        let origin = ScriptedOrigin::new([chunks(&small, 30, None)]);
        let sink = MemoryVideoSink::default();
        sink.fail_put();
        assert!(matches!(
            run(&origin, &sink).await,
            Err(TransferError::Commit(_))
        ));
        assert_nothing_left(&sink);

        let big = video(3 * PART + 9);
        let origin = ScriptedOrigin::new([chunks(&big, 1000, None)]);
        let sink = MemoryVideoSink::default();
        sink.fail_complete();
        let err = run(&origin, &sink).await.unwrap_err();
        assert!(
            matches!(&err, TransferError::Commit(e) if e.operation == "CompleteMultipartUpload"),
            "{err}"
        );
        assert_eq!(sink.aborted().len(), 1);
        assert_eq!(
            sink.deleted(),
            ["videos/t-1.mp4"],
            "whatever S3 finished is removed"
        );
        assert_nothing_left(&sink);
    }

    #[tokio::test]
    async fn a_failed_tagging_removes_the_completed_object() {
        let big = video(2 * PART + 9);
        let origin = ScriptedOrigin::new([chunks(&big, 1000, None)]);
        let sink = MemoryVideoSink::default();
        sink.fail_tagging();
        let err = run(&origin, &sink).await.unwrap_err();
        assert!(
            matches!(&err, TransferError::Commit(e) if e.operation == "PutObjectTagging"),
            "{err}"
        );
        assert_eq!(sink.deleted(), ["videos/t-1.mp4"]);
        assert_nothing_left(&sink);
    }

    #[tokio::test]
    async fn the_commit_is_not_cut_short_by_the_deadline() {
        // The last byte arrives well before the deadline; completing the upload takes
        // until long after it. Cut short, S3 could still finish an upload then aborted.
        let bytes = video(3 * PART);
        let origin = ScriptedOrigin::new([chunks(&bytes, 1000, None)]);
        let sink = MemoryVideoSink::default();
        sink.delay_complete(Duration::from_millis(600));
        let progress = Reports(AtomicUsize::new(0));
        let started = Instant::now();
        let deadline = started + Duration::from_millis(300);
        let done = run_with(&origin, &sink, deadline, &progress).await.unwrap();
        assert!(
            Instant::now() > deadline,
            "the commit ran past the deadline"
        );
        assert_eq!(done.parts, 3);
        assert_stored(&sink, &bytes, Written::Multipart { parts: 3 });
        assert!(sink.aborted().is_empty());
    }

    #[tokio::test]
    async fn an_upload_that_cannot_start_uploads_nothing() {
        let bytes = video(3 * PART);
        let origin = ScriptedOrigin::new([chunks(&bytes, 1000, None)]);
        let sink = MemoryVideoSink::default();
        sink.fail_start();
        let err = run(&origin, &sink).await.unwrap_err();
        assert!(
            matches!(&err, TransferError::Sink(e) if e.operation == "CreateMultipartUpload"),
            "{err}"
        );
        assert_nothing_left(&sink);
    }

    #[tokio::test]
    async fn a_failed_commit_is_reported_even_when_its_object_cannot_be_removed() {
        let bytes = video(2 * PART + 9);
        let origin = ScriptedOrigin::new([chunks(&bytes, 1000, None)]);
        let sink = MemoryVideoSink::default();
        sink.fail_tagging().fail_delete();
        let err = run(&origin, &sink).await.unwrap_err();
        // The commit's error, not the cleanup's: the object stays, unrecorded, and the
        // next attempt overwrites the same key.
        assert!(
            matches!(&err, TransferError::Commit(e) if e.operation == "PutObjectTagging"),
            "{err}"
        );
        assert!(sink.deleted().is_empty());
    }

    #[tokio::test]
    async fn a_lost_lease_stops_the_copy_and_aborts() {
        let bytes = video(6 * PART);
        let mut steps = chunks(&bytes[..2 * PART + 7], 1000, None);
        steps.push(Step::Stall(Duration::from_secs(30)));
        steps.extend(chunks(&bytes[2 * PART + 7..], 1000, None));
        let origin = ScriptedOrigin::new([steps]);
        let sink = MemoryVideoSink::default();
        let progress = Reports(AtomicUsize::new(0));
        let (switch, stop) = Stop::new();
        let stopper = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            switch.send(true).unwrap();
            switch
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        let err = run_stoppable(&origin, &sink, deadline, &progress, stop)
            .await
            .unwrap_err();
        drop(stopper.await.unwrap());
        assert!(
            matches!(err, TransferError::Stopped(n) if n == 2 * PART as u64 + 7),
            "{err}"
        );
        assert_eq!(err.failure_reason(), None);
        assert_eq!(sink.aborted().len(), 1);
        assert_nothing_left(&sink);
    }

    #[tokio::test]
    async fn progress_is_reported_while_copying() {
        let bytes = video(8 * PART);
        let origin = ScriptedOrigin::new([chunks(&bytes, 1000, None)]);
        let sink = MemoryVideoSink::default();
        sink.delay_parts(Duration::from_millis(5));
        let progress = Reports(AtomicUsize::new(0));
        run_with(
            &origin,
            &sink,
            Instant::now() + Duration::from_secs(60),
            &progress,
        )
        .await
        .unwrap();
        // Every 2 parts' worth of bytes: about four reports.
        let reports = progress.0.load(Ordering::SeqCst);
        assert!((3..=4).contains(&reports), "{reports} reports");
        assert_stored(&sink, &bytes, Written::Multipart { parts: 8 });
    }
}
