//! The video sink port: where ingest writes videos. A small object is one put; a large
//! one is a multipart upload that is completed, or aborted so that no part is left behind.

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
    /// User metadata (`x-amz-meta-*`).
    pub metadata: Vec<(String, String)>,
}

impl ObjectInfo {
    pub fn metadata(&self, name: &str) -> Option<&str> {
        self.metadata
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One uploaded part, as `complete` needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadedPart {
    pub number: i32,
    pub etag: String,
    /// Base64 CRC32C the service computed and verified for the part.
    pub checksum_crc32c: Option<String>,
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

    /// Writes a whole object in one request (videos smaller than one part).
    fn put(
        &self,
        key: &str,
        body: Bytes,
        meta: &ObjectMeta,
    ) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// Starts a multipart upload.
    fn start(
        &self,
        key: &str,
        meta: &ObjectMeta,
    ) -> impl Future<Output = Result<Self::Upload, SinkError>> + Send;

    /// Replaces the user metadata of a completed object (to add what is known only at
    /// the end, like the SHA-256 of the whole stream).
    fn replace_metadata(
        &self,
        key: &str,
        meta: &ObjectMeta,
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

    /// Assembles the parts (in part-number order) into the object.
    fn complete(
        &self,
        parts: Vec<UploadedPart>,
    ) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// Discards the upload and every part uploaded so far.
    fn abort(&self) -> impl Future<Output = Result<(), SinkError>> + Send;

    fn upload_id(&self) -> &str;
}
