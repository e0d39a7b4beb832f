//! S3 adapter of [`Inbox`]: one object per spilled callback under `inbox/` in the videos
//! bucket, listed in key (= time) order.

use aws_sdk_s3::Client;
use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::primitives::ByteStream;

use super::{INBOX_PREFIX, Inbox, InboxError, InboxPage, Spilled};

#[derive(Debug, Clone)]
pub struct S3Inbox {
    client: Client,
    bucket: String,
}

impl S3Inbox {
    pub fn new(client: Client, bucket: impl Into<String>) -> Self {
        Self {
            client,
            bucket: bucket.into(),
        }
    }
}

fn unavailable<E: std::error::Error + Send + Sync + 'static>(
    operation: &'static str,
) -> impl FnOnce(E) -> InboxError {
    move |e| InboxError::Unavailable {
        operation,
        source: Box::new(e),
    }
}

impl Inbox for S3Inbox {
    async fn put(&self, spilled: &Spilled) -> Result<String, InboxError> {
        let key = spilled.key();
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(&key)
            .content_type("application/json")
            .body(ByteStream::from(spilled.to_json()))
            .send()
            .await
            .map_err(unavailable("PutObject"))?;
        Ok(key)
    }

    async fn list(&self, limit: usize, after: Option<&str>) -> Result<InboxPage, InboxError> {
        let out = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(INBOX_PREFIX)
            .set_start_after(after.map(str::to_owned))
            .max_keys(i32::try_from(limit).unwrap_or(1000))
            .send()
            .await
            .map_err(unavailable("ListObjectsV2"))?;
        let keys: Vec<String> = out
            .contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_owned))
            .collect();
        let next = if out.is_truncated() == Some(true) {
            keys.last().cloned()
        } else {
            None
        };
        Ok(InboxPage { keys, next })
    }

    async fn get(&self, key: &str) -> Result<Option<Spilled>, InboxError> {
        let result = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await;
        let out = match result {
            Ok(out) => out,
            Err(SdkError::ServiceError(e)) if e.err().is_no_such_key() => return Ok(None),
            Err(e) => return Err(unavailable("GetObject")(e)),
        };
        let bytes = out
            .body
            .collect()
            .await
            .map_err(unavailable("GetObject"))?
            .into_bytes();
        Spilled::from_json(&bytes).map(Some)
    }

    async fn delete(&self, key: &str) -> Result<(), InboxError> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(unavailable("DeleteObject"))?;
        Ok(())
    }
}
