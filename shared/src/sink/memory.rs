//! An in-memory [`VideoSink`] that records every object, upload and part, checks a
//! completion the way S3 does (parts 1..n, each as uploaded, and the whole object against
//! its CRC64NVME), and can be told to fail a given part, the start, the completion, the
//! abort, the put or the tagging. For
//! unit tests of the transfer; integration tests run against an S3-protocol server.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;

use super::{
    Finished, MultipartUpload, ObjectInfo, ObjectMeta, SinkError, UploadedPart, VideoSink,
};

/// How an object came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    Put,
    Multipart { parts: usize },
}

/// A completed object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredObject {
    pub bytes: Vec<u8>,
    pub meta: ObjectMeta,
    pub tags: Vec<(String, String)>,
    pub written: Written,
}

/// S3's answer to a whole-object checksum that does not match the bytes.
fn check_crc(operation: &'static str, bytes: &[u8], finished: &Finished) -> Result<(), SinkError> {
    let actual = crc_fast::checksum(crc_fast::CrcAlgorithm::Crc64Nvme, bytes);
    if actual == finished.crc64nvme {
        return Ok(());
    }
    Err(SinkError {
        operation,
        source: format!(
            "BadDigest: the CRC64NVME you specified ({:016x}) did not match the object ({actual:016x})",
            finished.crc64nvme
        )
        .into(),
    })
}

/// Which calls fail (each as a [`SinkError`], as after the SDK's own retries).
#[derive(Debug, Clone, Default)]
struct Faults {
    part: Option<i32>,
    start: bool,
    complete: bool,
    abort: bool,
    put: bool,
    tagging: bool,
    delete: bool,
    part_delay: Duration,
    complete_delay: Duration,
}

#[derive(Debug, Default)]
struct State {
    objects: HashMap<String, StoredObject>,
    open: HashMap<String, OpenUpload>,
    aborted: Vec<String>,
    deleted: Vec<String>,
    next_id: u64,
    faults: Faults,
}

#[derive(Debug)]
struct OpenUpload {
    key: String,
    meta: ObjectMeta,
    parts: BTreeMap<i32, Bytes>,
}

/// Videos in memory, shared by its clones.
#[derive(Debug, Clone)]
pub struct MemoryVideoSink {
    bucket: String,
    state: Arc<Mutex<State>>,
}

impl Default for MemoryVideoSink {
    fn default() -> Self {
        Self::new("videos")
    }
}

fn fail(operation: &'static str) -> SinkError {
    SinkError {
        operation,
        source: "injected failure".into(),
    }
}

impl MemoryVideoSink {
    pub fn new(bucket: impl Into<String>) -> Self {
        Self {
            bucket: bucket.into(),
            state: Arc::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `UploadPart` number `n` fails (every time).
    pub fn fail_part(&self, n: i32) -> &Self {
        self.lock().faults.part = Some(n);
        self
    }

    pub fn fail_start(&self) -> &Self {
        self.lock().faults.start = true;
        self
    }

    pub fn fail_complete(&self) -> &Self {
        self.lock().faults.complete = true;
        self
    }

    pub fn fail_abort(&self) -> &Self {
        self.lock().faults.abort = true;
        self
    }

    pub fn fail_put(&self) -> &Self {
        self.lock().faults.put = true;
        self
    }

    pub fn fail_tagging(&self) -> &Self {
        self.lock().faults.tagging = true;
        self
    }

    pub fn fail_delete(&self) -> &Self {
        self.lock().faults.delete = true;
        self
    }

    /// Stores an object as if a put had written it (to seed what an earlier attempt left),
    /// without tags: an upload whose commit did not finish.
    pub fn seed(&self, key: &str, bytes: Vec<u8>, meta: ObjectMeta) {
        self.seed_tagged(key, bytes, meta, Vec::new());
    }

    /// [`MemoryVideoSink::seed`] with the tags a finished commit writes.
    pub fn seed_tagged(
        &self,
        key: &str,
        bytes: Vec<u8>,
        meta: ObjectMeta,
        tags: Vec<(String, String)>,
    ) {
        self.lock().objects.insert(
            key.to_owned(),
            StoredObject {
                bytes,
                meta,
                tags,
                written: Written::Put,
            },
        );
    }

    /// Keys deleted so far, in order.
    pub fn deleted(&self) -> Vec<String> {
        self.lock().deleted.clone()
    }

    /// Each part upload takes this long (to keep parts in flight).
    pub fn delay_parts(&self, delay: Duration) -> &Self {
        self.lock().faults.part_delay = delay;
        self
    }

    /// `CompleteMultipartUpload` takes `delay` (S3 assembling a large object).
    pub fn delay_complete(&self, delay: Duration) -> &Self {
        self.lock().faults.complete_delay = delay;
        self
    }

    /// The completed object under `key`.
    pub fn object(&self, key: &str) -> Option<StoredObject> {
        self.lock().objects.get(key).cloned()
    }

    /// Multipart uploads neither completed nor aborted.
    pub fn open_uploads(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.lock().open.keys().cloned().collect();
        ids.sort();
        ids
    }

    /// Upload ids aborted so far, in order.
    pub fn aborted(&self) -> Vec<String> {
        self.lock().aborted.clone()
    }

    /// Uploads ever started.
    pub fn uploads_started(&self) -> u64 {
        self.lock().next_id
    }
}

impl VideoSink for MemoryVideoSink {
    type Upload = MemoryUpload;

    async fn put(
        &self,
        key: &str,
        body: Bytes,
        meta: &ObjectMeta,
        finished: &Finished,
    ) -> Result<(), SinkError> {
        let mut state = self.lock();
        if state.faults.put {
            return Err(fail("PutObject"));
        }
        check_crc("PutObject", &body, finished)?;
        state.objects.insert(
            key.to_owned(),
            StoredObject {
                bytes: body.to_vec(),
                meta: meta.clone(),
                tags: finished.tags(),
                written: Written::Put,
            },
        );
        Ok(())
    }

    async fn start(&self, key: &str, meta: &ObjectMeta) -> Result<MemoryUpload, SinkError> {
        let mut state = self.lock();
        if state.faults.start {
            return Err(fail("CreateMultipartUpload"));
        }
        state.next_id += 1;
        let id = format!("upload-{}", state.next_id);
        state.open.insert(
            id.clone(),
            OpenUpload {
                key: key.to_owned(),
                meta: meta.clone(),
                parts: BTreeMap::new(),
            },
        );
        Ok(MemoryUpload {
            id: id.into(),
            state: Arc::clone(&self.state),
        })
    }

    async fn tag(&self, key: &str, finished: &Finished) -> Result<(), SinkError> {
        let mut state = self.lock();
        if state.faults.tagging {
            return Err(fail("PutObjectTagging"));
        }
        let object = state.objects.get_mut(key).ok_or_else(|| SinkError {
            operation: "PutObjectTagging",
            source: format!("no object {key}").into(),
        })?;
        object.tags = finished.tags();
        Ok(())
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectInfo>, SinkError> {
        Ok(self.lock().objects.get(key).map(|o| ObjectInfo {
            bytes: o.bytes.len() as u64,
            metadata: o.meta.metadata.clone(),
            tags: o.tags.clone(),
        }))
    }

    async fn abort_uploads(&self, key: &str) -> Result<usize, SinkError> {
        let mut state = self.lock();
        let ids: Vec<String> = state
            .open
            .iter()
            .filter(|(_, u)| u.key == key)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &ids {
            state.open.remove(id);
            state.aborted.push(id.clone());
        }
        Ok(ids.len())
    }

    async fn delete(&self, key: &str) -> Result<(), SinkError> {
        let mut state = self.lock();
        if state.faults.delete {
            return Err(fail("DeleteObject"));
        }
        state.objects.remove(key);
        state.deleted.push(key.to_owned());
        Ok(())
    }

    fn bucket(&self) -> &str {
        &self.bucket
    }
}

/// A multipart upload of a [`MemoryVideoSink`].
#[derive(Debug, Clone)]
pub struct MemoryUpload {
    id: Arc<str>,
    state: Arc<Mutex<State>>,
}

impl MemoryUpload {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl MultipartUpload for MemoryUpload {
    async fn upload_part(&self, number: i32, body: Bytes) -> Result<UploadedPart, SinkError> {
        let delay = self.lock().faults.part_delay;
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let mut state = self.lock();
        if state.faults.part == Some(number) {
            return Err(fail("UploadPart"));
        }
        let upload = state.open.get_mut(&*self.id).ok_or_else(|| SinkError {
            operation: "UploadPart",
            source: "no such upload (completed or aborted)".into(),
        })?;
        let etag = format!("\"{}-{}\"", number, body.len());
        upload.parts.insert(number, body);
        Ok(UploadedPart {
            number,
            etag,
            checksum_crc64nvme: None,
        })
    }

    async fn complete(
        &self,
        mut parts: Vec<UploadedPart>,
        finished: &Finished,
    ) -> Result<(), SinkError> {
        let delay = self.lock().faults.complete_delay;
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let mut state = self.lock();
        if state.faults.complete {
            return Err(fail("CompleteMultipartUpload"));
        }
        let invalid = |why: String| SinkError {
            operation: "CompleteMultipartUpload",
            source: why.into(),
        };
        let upload = state
            .open
            .remove(&*self.id)
            .ok_or_else(|| invalid("no such upload".into()))?;
        parts.sort_by_key(|p| p.number);
        let numbers: Vec<i32> = parts.iter().map(|p| p.number).collect();
        let expected: Vec<i32> = (1..).take(upload.parts.len()).collect();
        let bodies: Vec<&Bytes> = upload.parts.values().collect();
        let consistent = numbers == expected
            && upload.parts.keys().copied().eq(expected.iter().copied())
            && parts
                .iter()
                .zip(&bodies)
                .all(|(p, b)| p.etag == format!("\"{}-{}\"", p.number, b.len()))
            && bodies.iter().all(|b| !b.is_empty());
        if !consistent {
            let why = format!("parts {numbers:?} do not match the uploaded {expected:?}");
            state.open.insert(self.id.to_string(), upload);
            return Err(invalid(why));
        }
        let bytes: Vec<u8> = bodies.iter().flat_map(|b| b.iter().copied()).collect();
        if let Err(e) = check_crc("CompleteMultipartUpload", &bytes, finished) {
            // As S3: the upload stays open (to be aborted), no object appears.
            state.open.insert(self.id.to_string(), upload);
            return Err(e);
        }
        state.objects.insert(
            upload.key,
            StoredObject {
                bytes,
                meta: upload.meta,
                tags: Vec::new(),
                written: Written::Multipart {
                    parts: numbers.len(),
                },
            },
        );
        Ok(())
    }

    async fn abort(&self) -> Result<(), SinkError> {
        let mut state = self.lock();
        if state.faults.abort {
            return Err(fail("AbortMultipartUpload"));
        }
        state.open.remove(&*self.id);
        state.aborted.push(self.id.to_string());
        Ok(())
    }

    fn upload_id(&self) -> &str {
        &self.id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finished(bytes: &[u8]) -> Finished {
        Finished {
            bytes: bytes.len() as u64,
            sha256: String::new(),
            crc64nvme: crc_fast::checksum(crc_fast::CrcAlgorithm::Crc64Nvme, bytes),
        }
    }

    fn meta() -> ObjectMeta {
        ObjectMeta {
            content_type: "video/mp4".into(),
            metadata: Vec::new(),
        }
    }

    #[tokio::test]
    async fn seeded_objects_are_seen_with_their_tags() {
        let sink = MemoryVideoSink::default();
        sink.seed("videos/u.mp4", b"abc".to_vec(), meta());
        let tags = finished(b"xyz").tags();
        sink.seed_tagged("videos/t.mp4", b"xyz".to_vec(), meta(), tags.clone());
        assert!(
            sink.head("videos/u.mp4")
                .await
                .unwrap()
                .unwrap()
                .tags
                .is_empty()
        );
        let info = sink.head("videos/t.mp4").await.unwrap().unwrap();
        assert_eq!((info.bytes, info.tags), (3, tags));
    }

    /// As S3 with a full-object checksum: a CRC64NVME that does not match the assembled
    /// parts is refused, no object appears, and the upload stays open to be aborted.
    #[tokio::test]
    async fn a_wrong_whole_object_checksum_is_refused_like_s3() {
        let sink = MemoryVideoSink::default();
        let upload = sink.start("videos/a.mp4", &meta()).await.unwrap();
        let p1 = upload
            .upload_part(1, Bytes::from_static(b"hello "))
            .await
            .unwrap();
        let p2 = upload
            .upload_part(2, Bytes::from_static(b"world"))
            .await
            .unwrap();
        let wrong = finished(b"hello there");
        let err = upload
            .complete(vec![p1.clone(), p2.clone()], &wrong)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("BadDigest"), "{err}");
        assert!(sink.object("videos/a.mp4").is_none());
        assert_eq!(sink.open_uploads().len(), 1);

        upload
            .complete(vec![p2, p1], &finished(b"hello world"))
            .await
            .unwrap();
        assert_eq!(sink.object("videos/a.mp4").unwrap().bytes, b"hello world");

        let err = sink
            .put(
                "videos/b.mp4",
                Bytes::from_static(b"abc"),
                &meta(),
                &finished(b"abd"),
            )
            .await
            .unwrap_err();
        assert!(err.to_string().contains("BadDigest"), "{err}");
        assert!(sink.object("videos/b.mp4").is_none());
    }
}
