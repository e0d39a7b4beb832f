//! The stream-image decoder on raw event bytes, as ingest receives them: the Lambda
//! DynamoDB event is parsed, each record's new image decoded into a task (or, when it
//! does not decode, salvaged by its key). Never panics; a decoded task re-encodes.
#![no_main]

use aws_lambda_events::event::dynamodb::Event;
use libfuzzer_sys::fuzz_target;
use shared::store::image::{task_from_image, unreadable_image};

fuzz_target!(|data: &[u8]| {
    let Ok(event) = serde_json::from_slice::<Event>(data) else {
        return;
    };
    for record in event.records {
        match task_from_image(record.change.new_image.clone()) {
            Ok(task) => {
                let item = task.to_item().expect("a decoded task re-encodes");
                let again = shared::Task::from_item(item).expect("and decodes again");
                assert_eq!(again.task_id, task.task_id);
                let _ = task.state();
            }
            Err(_) => {
                let _ = unreadable_image(&record.change.keys, &record.change.new_image);
            }
        }
    }
});
