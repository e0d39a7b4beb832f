//! The job queue on SQS: one message per job, its body the [`QueuedJob`] JSON, delayed
//! by at most SQS's 15 minutes (the consumer serves longer waits in legs).

use std::time::Duration;

use aws_sdk_sqs::Client;

use super::{Job, JobQueue, QueueError, QueuedJob, Requeue};
use crate::domain::clock::Timestamp;
use crate::domain::notify::delivery::{SQS_MAX_DELAY, SQS_MAX_VISIBILITY};

#[derive(Debug, Clone)]
pub struct SqsJobQueue {
    client: Client,
    queue_url: String,
}

impl SqsJobQueue {
    pub fn new(client: Client, queue_url: impl Into<String>) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
        }
    }

    /// Sends `message` with `delay` (cut to SQS's maximum).
    pub async fn send(&self, message: &QueuedJob, delay: Duration) -> Result<(), QueueError> {
        let body = serde_json::to_string(message).map_err(|e| QueueError(Box::new(e)))?;
        let delay_secs = i32::try_from(delay.min(SQS_MAX_DELAY).as_secs()).unwrap_or(0);
        self.client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .delay_seconds(delay_secs)
            .send()
            .await
            .map_err(|e| QueueError(Box::new(e)))?;
        Ok(())
    }
}

impl JobQueue for SqsJobQueue {
    async fn enqueue(&self, job: &Job, delay: Duration) -> Result<(), QueueError> {
        let message = QueuedJob {
            job: job.clone(),
            not_before: Timestamp::now().saturating_add(delay),
        };
        self.send(&message, delay).await
    }
}

impl Requeue for SqsJobQueue {
    async fn resend(&self, job: &QueuedJob, delay: Duration) -> Result<(), QueueError> {
        self.send(job, delay).await
    }

    async fn hide(&self, receipt: &str, wait: Duration) -> Result<(), QueueError> {
        let secs = i32::try_from(wait.min(SQS_MAX_VISIBILITY).as_secs()).unwrap_or(0);
        self.client
            .change_message_visibility()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt)
            .visibility_timeout(secs)
            .send()
            .await
            .map_err(|e| QueueError(Box::new(e)))?;
        Ok(())
    }
}
