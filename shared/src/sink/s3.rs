//! S3 adapter of [`VideoSink`]: `PutObject` for small videos, multipart upload with CRC32C
//! part checksums (verified by S3 on every part) for the rest.
//!
//! Bodies are sent with an unsigned payload: the CRC32C that S3 verifies already protects
//! the bytes (and TLS the connection), so a second SHA-256 pass over every byte only
//! to sign it would cost a fifth of ingest's CPU (measured: docs/benchmarks.md).

use std::collections::HashMap;
use std::sync::Arc;

use aws_sdk_s3::Client;
use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart, MetadataDirective,
};
use bytes::Bytes;

use super::{MultipartUpload, ObjectInfo, ObjectMeta, SinkError, UploadedPart, VideoSink};

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

/// `CopySource` is `bucket/key`, URL-encoded.
fn copy_source(bucket: &str, key: &str) -> String {
    let mut out = String::with_capacity(bucket.len() + key.len() + 8);
    out.push_str(bucket);
    out.push('/');
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl VideoSink for S3VideoSink {
    type Upload = S3MultipartUpload;

    async fn put(&self, key: &str, body: Bytes, meta: &ObjectMeta) -> Result<(), SinkError> {
        self.client
            .put_object()
            .bucket(&*self.bucket)
            .key(key)
            .content_type(&meta.content_type)
            .set_metadata(Some(metadata_map(meta)))
            .checksum_algorithm(ChecksumAlgorithm::Crc32C)
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
            .checksum_algorithm(ChecksumAlgorithm::Crc32C)
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

    async fn replace_metadata(&self, key: &str, meta: &ObjectMeta) -> Result<(), SinkError> {
        // An in-place copy is the only way to change an object's metadata.
        self.client
            .copy_object()
            .bucket(&*self.bucket)
            .key(key)
            .copy_source(copy_source(&self.bucket, key))
            .metadata_directive(MetadataDirective::Replace)
            .content_type(&meta.content_type)
            .set_metadata(Some(metadata_map(meta)))
            .send()
            .await
            .map_err(|e| sink_error("CopyObject", e))?;
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
        match result {
            Ok(out) => Ok(Some(ObjectInfo {
                bytes: out
                    .content_length
                    .and_then(|n| u64::try_from(n).ok())
                    .unwrap_or(0),
                metadata: out.metadata.unwrap_or_default().into_iter().collect(),
            })),
            Err(SdkError::ServiceError(e)) if e.err().is_not_found() => Ok(None),
            Err(e) => Err(sink_error("HeadObject", e)),
        }
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
            .checksum_algorithm(ChecksumAlgorithm::Crc32C)
            .body(ByteStream::from(body))
            .customize()
            .disable_payload_signing()
            .send()
            .await
            .map_err(|e| sink_error("UploadPart", e))?;
        Ok(UploadedPart {
            number,
            etag: out.e_tag.unwrap_or_default(),
            checksum_crc32c: out.checksum_crc32_c,
        })
    }

    async fn complete(&self, mut parts: Vec<UploadedPart>) -> Result<(), SinkError> {
        parts.sort_by_key(|p| p.number);
        let completed = parts
            .into_iter()
            .map(|p| {
                CompletedPart::builder()
                    .part_number(p.number)
                    .e_tag(p.etag)
                    .set_checksum_crc32_c(p.checksum_crc32c)
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
    fn copy_source_encodes_reserved_characters() {
        assert_eq!(copy_source("b", "videos/t_1.mp4"), "b/videos/t_1.mp4");
        assert_eq!(
            copy_source("b", "videos/a:b c.mp4"),
            "b/videos/a%3Ab%20c.mp4"
        );
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
