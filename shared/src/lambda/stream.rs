//! DynamoDB stream batches with `ReportBatchItemFailures`, as both stream consumers
//! (ingest, notify) handle them: records in order; from the first one that must be
//! retried, it and every later record are reported. The stream resumes from the lowest
//! failed sequence number anyway, and a later record of the same item must not overtake
//! the one being retried.

use std::future::Future;

use aws_lambda_events::event::dynamodb::EventRecord;
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};

/// A record to retry carries no sequence number: only failing the whole batch retries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a record to retry has no sequence number")]
pub struct MissingSequence;

/// Runs `process` on each record in order until one answers `true` (retry it); that
/// record and every later one (not processed) are the batch item failures.
pub async fn in_order<'a, F, Fut>(
    records: &'a [EventRecord],
    mut process: F,
) -> Result<DynamoDbEventResponse, MissingSequence>
where
    F: FnMut(&'a EventRecord) -> Fut,
    Fut: Future<Output = bool>,
{
    let mut response = DynamoDbEventResponse::default();
    let mut retrying = false;
    for record in records {
        if !retrying {
            retrying = process(record).await;
        }
        if retrying {
            let sequence = record
                .change
                .sequence_number
                .clone()
                .ok_or(MissingSequence)?;
            let mut failure = DynamoDbBatchItemFailure::default();
            failure.item_identifier = Some(sequence);
            response.batch_item_failures.push(failure);
        }
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(n: usize) -> Vec<EventRecord> {
        (0..n)
            .map(|i| {
                let mut r = EventRecord::default();
                r.change.sequence_number = Some(format!("seq-{i}"));
                r
            })
            .collect()
    }

    fn ids(response: &DynamoDbEventResponse) -> Vec<String> {
        response
            .batch_item_failures
            .iter()
            .filter_map(|f| f.item_identifier.clone())
            .collect()
    }

    #[tokio::test]
    async fn from_the_first_retry_every_record_is_reported_and_none_after_it_runs() {
        let batch = records(4);
        let mut seen = Vec::new();
        let response = in_order(&batch, |r| {
            let seq = r.change.sequence_number.clone().unwrap_or_default();
            seen.push(seq.clone());
            async move { seq == "seq-1" }
        })
        .await
        .unwrap();
        assert_eq!(ids(&response), ["seq-1", "seq-2", "seq-3"]);
        assert_eq!(seen, ["seq-0", "seq-1"], "nothing after the retry runs");
        let all_ok = in_order(&batch, |_| async { false }).await.unwrap();
        assert!(all_ok.batch_item_failures.is_empty());
        let mut no_seq = records(1);
        no_seq[0].change.sequence_number = None;
        assert_eq!(
            in_order(&no_seq, |_| async { true }).await.unwrap_err(),
            MissingSequence
        );
    }
}
