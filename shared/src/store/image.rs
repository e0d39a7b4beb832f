//! A DynamoDB stream record's image as a task: what ingest does with every record it is
//! handed. The same decoding as a read, on `serde_dynamo`'s own attribute type, so it
//! needs no SDK (and can be fuzzed on its own: `fuzz/`).

use super::StoreError;
use crate::domain::task::{Item, Task, attr};
use crate::domain::task_id::TaskId;

/// A task from a stream record's image (the same decoding as a read).
pub fn task_from_image(image: serde_dynamo::Item) -> Result<Task, StoreError> {
    serde_dynamo::from_item(image).map_err(|e| StoreError::Malformed(e.to_string()))
}

/// Which task an image that does not decode is about, and the image as the domain's
/// item, so the task can still be failed with a reason.
pub fn unreadable_image(
    keys: &serde_dynamo::Item,
    image: &serde_dynamo::Item,
) -> Option<(TaskId, Item)> {
    let task_id = [keys, image]
        .into_iter()
        .find_map(|item| match item.get(attr::TASK_ID) {
            Some(serde_dynamo::AttributeValue::S(id)) => TaskId::parse(id).ok(),
            _ => None,
        })?;
    let raw: Item = serde_dynamo::from_item(image.clone()).unwrap_or_default();
    Some((task_id, raw))
}
