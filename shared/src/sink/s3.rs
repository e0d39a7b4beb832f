//! S3 adapter of [`VideoSink`]: `PutObject` for small videos, multipart upload for the
//! rest, both with CRC64NVME: S3 checks every part, and the whole object against the
//! full-object checksum computed as the stream passed (`ChecksumType: FULL_OBJECT`). The
//! length and SHA-256 are object tags (`PutObjectTagging`), so the commit never copies the
//! object and no 5 GiB copy limit applies.
//!
//! Bodies are sent with an unsigned payload: the CRC64NVME that S3 verifies already protects
//! the bytes (and TLS the connection), so a second SHA-256 pass over every byte only
//! to sign it would cost a fifth of ingest's CPU (measured: docs/benchmarks.md).

use std::collections::HashMap;
use std::sync::Arc;

use aws_sdk_s3::Client;
use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    ChecksumAlgorithm, ChecksumType, CompletedMultipartUpload, CompletedPart, Tag, Tagging,
};
use bytes::Bytes;

use super::{
    Finished, MultipartUpload, ObjectInfo, ObjectMeta, SinkError, UploadedPart, VideoSink,
};

/// Videos in one S3 bucket.
#[derive(Debug, Clone)]
pub struct S3VideoSink {
    client: Client,
    bucket: Arc<str>,
}

impl S3VideoSink {
    pub fn new(client: Client, bucket: impl Into<String>) -> Self {
        Self {
            client,
            bucket: bucket.into().into(),
        }
    }
}

fn metadata_map(meta: &ObjectMeta) -> HashMap<String, String> {
    meta.metadata.iter().cloned().collect()
}

/// Wraps an SDK error with the operation that failed.
fn sink_error<E>(
    operation: &'static str,
    err: SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> SinkError
where
    E: std::error::Error + Send + Sync + 'static,
{
    SinkError {
        operation,
        source: Box::new(err),
    }
}

/// The `x-amz-tagging` header: `k=v&k=v`. Tag names and values are ours (hex, digits),
/// which need no escaping; anything else is percent-encoded all the same.
fn tagging_header(tags: &[(String, String)]) -> String {
    fn encode(out: &mut String, s: &str) {
        for b in s.bytes() {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                out.push(char::from(b));
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
    let mut out = String::new();
    for (i, (k, v)) in tags.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        encode(&mut out, k);
        out.push('=');
        encode(&mut out, v);
    }
    out
}

fn tag_set(tags: &[(String, String)]) -> Result<Tagging, SinkError> {
    let invalid = |e: aws_sdk_s3::error::BuildError| SinkError {
        operation: "PutObjectTagging",
        source: Box::new(e),
    };
    let set = tags
        .iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build().map_err(invalid))
        .collect::<Result<Vec<_>, _>>()?;
    Tagging::builder()
        .set_tag_set(Some(set))
        .build()
        .map_err(invalid)
}

impl VideoSink for S3VideoSink {
    type Upload = S3MultipartUpload;

    async fn put(
        &self,
        key: &str,
        body: Bytes,
        meta: &ObjectMeta,
        finished: &Finished,
    ) -> Result<(), SinkError> {
        self.client
            .put_object()
            .bucket(&*self.bucket)
            .key(key)
            .content_type(&meta.content_type)
            .set_metadata(Some(metadata_map(meta)))
            .tagging(tagging_header(&finished.tags()))
            // Our value, computed as the stream passed: S3 checks it against the body.
            .checksum_algorithm(ChecksumAlgorithm::Crc64Nvme)
            .checksum_crc64_nvme(finished.crc64nvme_base64())
            .body(ByteStream::from(body))
            .customize()
            .disable_payload_signing()
            .send()
            .await
            .map_err(|e| sink_error("PutObject", e))?;
        Ok(())
    }

    async fn start(&self, key: &str, meta: &ObjectMeta) -> Result<S3MultipartUpload, SinkError> {
        let out = self
            .client
            .create_multipart_upload()
            .bucket(&*self.bucket)
            .key(key)
            .content_type(&meta.content_type)
            .set_metadata(Some(metadata_map(meta)))
            .checksum_algorithm(ChecksumAlgorithm::Crc64Nvme)
            .checksum_type(ChecksumType::FullObject)
            .send()
            .await
            .map_err(|e| sink_error("CreateMultipartUpload", e))?;
        let upload_id = out.upload_id.ok_or_else(|| SinkError {
            operation: "CreateMultipartUpload",
            source: "response carried no upload id".into(),
        })?;
        Ok(S3MultipartUpload {
            client: self.client.clone(),
            bucket: Arc::clone(&self.bucket),
            key: key.into(),
            upload_id: upload_id.into(),
        })
    }

    async fn tag(&self, key: &str, finished: &Finished) -> Result<(), SinkError> {
        self.client
            .put_object_tagging()
            .bucket(&*self.bucket)
            .key(key)
            .tagging(tag_set(&finished.tags())?)
            .send()
            .await
            .map_err(|e| sink_error("PutObjectTagging", e))?;
        Ok(())
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectInfo>, SinkError> {
        // Without s3:ListBucket, HeadObject on a missing key answers 403, not 404, and
        // ListBucket on the whole bucket would let ingest list the inbox too. So ask the
        // listing first (ListBucket is granted for the videos/ prefix only: a condition a
        // HeadObject's implicit check would not satisfy), and HEAD only a key that exists.
        // The exact key sorts first among the keys it prefixes, so one entry is enough.
        let listed = self
            .client
            .list_objects_v2()
            .bucket(&*self.bucket)
            .prefix(key)
            .max_keys(1)
            .send()
            .await
            .map_err(|e| sink_error("ListObjectsV2", e))?;
        if !listed.contents().iter().any(|o| o.key() == Some(key)) {
            return Ok(None);
        }
        let result = self
            .client
            .head_object()
            .bucket(&*self.bucket)
            .key(key)
            .send()
            .await;
        let head = match result {
            Ok(out) => out,
            Err(SdkError::ServiceError(e)) if e.err().is_not_found() => return Ok(None),
            Err(e) => return Err(sink_error("HeadObject", e)),
        };
        let tags = self
            .client
            .get_object_tagging()
            .bucket(&*self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| sink_error("GetObjectTagging", e))?
            .tag_set
            .into_iter()
            .map(|t| (t.key, t.value))
            .collect();
        Ok(Some(ObjectInfo {
            bytes: head
                .content_length
                .and_then(|n| u64::try_from(n).ok())
                .unwrap_or(0),
            metadata: head.metadata.unwrap_or_default().into_iter().collect(),
            tags,
        }))
    }

    async fn abort_uploads(&self, key: &str) -> Result<usize, SinkError> {
        let out = self
            .client
            .list_multipart_uploads()
            .bucket(&*self.bucket)
            .prefix(key)
            .send()
            .await
            .map_err(|e| sink_error("ListMultipartUploads", e))?;
        let mut aborted = 0;
        for upload in out.uploads() {
            let (Some(k), Some(id)) = (upload.key(), upload.upload_id()) else {
                continue;
            };
            if k != key {
                continue;
            }
            S3MultipartUpload {
                client: self.client.clone(),
                bucket: Arc::clone(&self.bucket),
                key: k.into(),
                upload_id: id.into(),
            }
            .abort()
            .await?;
            aborted += 1;
        }
        Ok(aborted)
    }

    async fn delete(&self, key: &str) -> Result<(), SinkError> {
        self.client
            .delete_object()
            .bucket(&*self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| sink_error("DeleteObject", e))?;
        Ok(())
    }

    fn bucket(&self) -> &str {
        &self.bucket
    }
}

/// An S3 multipart upload in progress.
#[derive(Debug, Clone)]
pub struct S3MultipartUpload {
    client: Client,
    bucket: Arc<str>,
    key: Arc<str>,
    upload_id: Arc<str>,
}

impl MultipartUpload for S3MultipartUpload {
    async fn upload_part(&self, number: i32, body: Bytes) -> Result<UploadedPart, SinkError> {
        let out = self
            .client
            .upload_part()
            .bucket(&*self.bucket)
            .key(&*self.key)
            .upload_id(&*self.upload_id)
            .part_number(number)
            .checksum_algorithm(ChecksumAlgorithm::Crc64Nvme)
            .body(ByteStream::from(body))
            .customize()
            .disable_payload_signing()
            .send()
            .await
            .map_err(|e| sink_error("UploadPart", e))?;
        Ok(UploadedPart {
            number,
            etag: out.e_tag.unwrap_or_default(),
            checksum_crc64nvme: out.checksum_crc64_nvme,
        })
    }

    async fn complete(
        &self,
        mut parts: Vec<UploadedPart>,
        finished: &Finished,
    ) -> Result<(), SinkError> {
        parts.sort_by_key(|p| p.number);
        let completed = parts
            .into_iter()
            .map(|p| {
                CompletedPart::builder()
                    .part_number(p.number)
                    .e_tag(p.etag)
                    .set_checksum_crc64_nvme(p.checksum_crc64nvme)
                    .build()
            })
            .collect();
        self.client
            .complete_multipart_upload()
            .bucket(&*self.bucket)
            .key(&*self.key)
            .upload_id(&*self.upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(completed))
                    .build(),
            )
            .checksum_type(ChecksumType::FullObject)
            .checksum_crc64_nvme(finished.crc64nvme_base64())
            .send()
            .await
            .map_err(|e| sink_error("CompleteMultipartUpload", e))?;
        Ok(())
    }

    async fn abort(&self) -> Result<(), SinkError> {
        self.client
            .abort_multipart_upload()
            .bucket(&*self.bucket)
            .key(&*self.key)
            .upload_id(&*self.upload_id)
            .send()
            .await
            .map_err(|e| sink_error("AbortMultipartUpload", e))?;
        Ok(())
    }

    fn upload_id(&self) -> &str {
        &self.upload_id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tagging_header_is_form_encoded() {
        let finished = Finished {
            bytes: 42,
            sha256: "ab".repeat(32),
            crc64nvme: 0,
        };
        assert_eq!(
            tagging_header(&finished.tags()),
            format!("sha256={}&bytes=42", "ab".repeat(32))
        );
        assert_eq!(
            tagging_header(&[("a b".into(), "x&y=z".into())]),
            "a%20b=x%26y%3Dz"
        );
    }

    #[test]
    fn the_crc64nvme_is_base64_of_its_big_endian_bytes() {
        // The CRC64NVME check value ("123456789") and its base64, as S3 prints it.
        let crc = crc_fast::checksum(crc_fast::CrcAlgorithm::Crc64Nvme, b"123456789");
        assert_eq!(crc, 0xae8b_1486_0a79_9888);
        let finished = Finished {
            bytes: 9,
            sha256: String::new(),
            crc64nvme: crc,
        };
        assert_eq!(finished.crc64nvme_base64(), "rosUhgp5mIg=");
    }
}

/// [`VideoLinks`] as presigned S3 GETs, computed locally with the function's credentials
/// (a link stops working when they expire, whatever its TTL says).
#[derive(Debug, Clone)]
pub struct S3VideoLinks {
    client: aws_sdk_s3::Client,
}

impl S3VideoLinks {
    pub fn new(client: aws_sdk_s3::Client) -> Self {
        Self { client }
    }
}

impl crate::notifications::VideoLinks for S3VideoLinks {
    fn link<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
        ttl: std::time::Duration,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<String, String>> + Send + 'a>>
    {
        Box::pin(async move {
            let config = aws_sdk_s3::presigning::PresigningConfig::expires_in(ttl)
                .map_err(|e| e.to_string())?;
            let request = self
                .client
                .get_object()
                .bucket(bucket)
                .key(key)
                .presigned(config)
                .await
                .map_err(|e| e.to_string())?;
            Ok(request.uri().to_owned())
        })
    }
}
