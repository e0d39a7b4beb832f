//! The video sink port: where ingest writes videos. A small object is one put; a large
//! one is a multipart upload that is completed, or aborted so that no part is left behind.
//!
//! What is known only once every byte has passed ([`Finished`]: length, SHA-256,
//! CRC64NVME) goes with the commit: the sink checks the whole object against the
//! CRC64NVME, and the length and SHA-256 become object tags. Tags change without
//! rewriting the object, so no in-place copy is needed (and no 5 GiB copy limit applies).

use std::future::Future;

use bytes::Bytes;

#[cfg(any(test, feature = "test-support"))]
pub mod memory;
#[cfg(feature = "s3")]
pub mod s3;

/// Object key of a task's video: deterministic, so a retry overwrites the same object.
pub fn video_key(task_id: &crate::domain::task_id::TaskId) -> String {
    format!("videos/{task_id}.mp4")
}

/// Content type every stored video gets.
pub const VIDEO_CONTENT_TYPE: &str = "video/mp4";

/// What to write besides the bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    pub content_type: String,
    /// User metadata (`x-amz-meta-*`), e.g. `task-id`, `sha256`.
    pub metadata: Vec<(String, String)>,
}

/// What the sink holds under a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub bytes: u64,
    /// User metadata (`x-amz-meta-*`), written when the object was started.
    pub metadata: Vec<(String, String)>,
    /// Object tags, written by the commit ([`Finished::tags`]).
    pub tags: Vec<(String, String)>,
}

fn lookup<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

impl ObjectInfo {
    pub fn metadata(&self, name: &str) -> Option<&str> {
        lookup(&self.metadata, name)
    }

    pub fn tag(&self, name: &str) -> Option<&str> {
        lookup(&self.tags, name)
    }
}

/// Tag names of a committed object.
pub mod tag {
    pub const SHA256: &str = "sha256";
    pub const BYTES: &str = "bytes";
}

/// What the whole stream turned out to be, known at the commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    pub bytes: u64,
    /// Lowercase hex SHA-256.
    pub sha256: String,
    /// CRC64NVME of the whole object, which the sink verifies against what it stored.
    pub crc64nvme: u64,
}

impl Finished {
    /// The object's tags: its length and SHA-256 (by which a later attempt recognises a
    /// finished upload, and a reader checks the bytes).
    pub fn tags(&self) -> Vec<(String, String)> {
        vec![
            (tag::SHA256.into(), self.sha256.clone()),
            (tag::BYTES.into(), self.bytes.to_string()),
        ]
    }

    /// The checksum as S3 spells it: base64 of the 8 big-endian bytes.
    pub fn crc64nvme_base64(&self) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(self.crc64nvme.to_be_bytes())
    }
}

/// One uploaded part, as `complete` needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadedPart {
    pub number: i32,
    pub etag: String,
    /// Base64 CRC64NVME the service computed and verified for the part.
    pub checksum_crc64nvme: Option<String>,
}

/// A write to the sink failed (after the SDK's own retries). Never the video's fault, so
/// the task is always retried, never failed, for it.
#[derive(Debug, thiserror::Error)]
#[error("{operation} failed: {source}")]
pub struct SinkError {
    pub operation: &'static str,
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

/// Object storage for videos.
pub trait VideoSink: Send + Sync {
    type Upload: MultipartUpload;

    /// Writes a whole object in one request (videos smaller than one part), tagged and
    /// checked against `finished`.
    fn put(
        &self,
        key: &str,
        body: Bytes,
        meta: &ObjectMeta,
        finished: &Finished,
    ) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// Starts a multipart upload.
    fn start(
        &self,
        key: &str,
        meta: &ObjectMeta,
    ) -> impl Future<Output = Result<Self::Upload, SinkError>> + Send;

    /// Tags a completed multipart object with [`Finished::tags`] (in place: the object's
    /// bytes are not rewritten).
    fn tag(
        &self,
        key: &str,
        finished: &Finished,
    ) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// What is stored under `key`, if anything.
    fn head(&self, key: &str)
    -> impl Future<Output = Result<Option<ObjectInfo>, SinkError>> + Send;

    /// Aborts every multipart upload still open for exactly `key` (a killed attempt's),
    /// returning how many there were.
    fn abort_uploads(&self, key: &str) -> impl Future<Output = Result<usize, SinkError>> + Send;

    /// Removes the object under `key` (absent is fine).
    fn delete(&self, key: &str) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// The bucket name, for the task record.
    fn bucket(&self) -> &str;
}

/// A multipart upload in progress. Cloneable so parts can upload concurrently.
pub trait MultipartUpload: Clone + Send + Sync + 'static {
    fn upload_part(
        &self,
        number: i32,
        body: Bytes,
    ) -> impl Future<Output = Result<UploadedPart, SinkError>> + Send;

    /// Assembles the parts (in part-number order) into the object, which the sink
    /// checks against the whole-object CRC64NVME in `finished`.
    fn complete(
        &self,
        parts: Vec<UploadedPart>,
        finished: &Finished,
    ) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// Discards the upload and every part uploaded so far.
    fn abort(&self) -> impl Future<Output = Result<(), SinkError>> + Send;

    fn upload_id(&self) -> &str;
}
