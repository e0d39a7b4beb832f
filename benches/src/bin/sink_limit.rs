//! The sink's own limit, for `make bench-ingest`: a multipart upload of `SIZE` bytes
//! straight from memory into the S3 server, through the same adapter, part size,
//! concurrency and checksums as ingest (CRC64NVME parts and full-object checksum,
//! unsigned payload), with no source and no task. Ingest cannot beat this; the ratio says
//! how much of the sink's speed it keeps.
//!
//! Then the commit's last step, both ways, on the uploaded object: the in-place
//! `CopyObject` that used to write the final metadata (what a 1 GiB video cost before) and
//! the `PutObjectTagging` that replaced it.
//!
//! ```text
//! sink-limit <bucket> <key> <size-bytes> [part-size-bytes] [concurrency]
//! ```
//! The AWS environment (endpoint, credentials, region) is the caller's; prints one JSON
//! line: `{"upload_s": …, "copy_s": …, "tag_s": …, "parts": …}`.

use std::time::Instant;

use aws_sdk_s3::types::MetadataDirective;
use bytes::Bytes;
use shared::lambda::aws::{s3_client, sdk_config};
use shared::sink::s3::S3VideoSink;
use shared::sink::{Finished, MultipartUpload, ObjectMeta, VideoSink};
use tokio::task::JoinSet;

type Error = Box<dyn std::error::Error + Send + Sync>;

fn arg(args: &[String], i: usize, default: Option<u64>) -> Result<u64, Error> {
    match args.get(i) {
        Some(v) => Ok(v.parse()?),
        None => default.ok_or_else(|| format!("argument {i} is required").into()),
    }
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(bucket), Some(key)) = (args.get(1), args.get(2)) else {
        return Err("usage: sink-limit <bucket> <key> <size> [part-size] [concurrency]".into());
    };
    let size = arg(&args, 3, None)?;
    let part_size = usize::try_from(arg(&args, 4, Some(8 << 20))?)?;
    let concurrency = usize::try_from(arg(&args, 5, Some(4))?)?;

    let client = s3_client(&sdk_config().await, true);
    let sink = S3VideoSink::new(client.clone(), bucket.clone());
    let meta = ObjectMeta {
        content_type: "video/mp4".into(),
        metadata: vec![("task-id".into(), "sink-limit".into())],
    };
    // One part's bytes, shared by every part (no copy per part): the bytes do not matter
    // to the server, only their number.
    let part = Bytes::from((0..part_size).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
    let parts = size.div_ceil(part_size as u64);
    let last = size - (parts - 1) * part_size as u64;
    let mut crc = crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc64Nvme);
    for n in 1..=parts {
        let len = if n == parts { last as usize } else { part_size };
        crc.update(&part[..len]);
    }
    let finished = Finished {
        bytes: size,
        sha256: "0".repeat(64),
        crc64nvme: crc.finalize(),
    };

    let started = Instant::now();
    let upload = sink.start(key, &meta).await?;
    let mut running = JoinSet::new();
    let mut done = Vec::new();
    for n in 1..=parts {
        if running.len() >= concurrency {
            if let Some(joined) = running.join_next().await {
                done.push(joined??);
            }
        }
        let len = if n == parts { last as usize } else { part_size };
        let body = part.slice(..len);
        let upload = upload.clone();
        running.spawn(async move {
            upload
                .upload_part(i32::try_from(n)?, body)
                .await
                .map_err(Error::from)
        });
    }
    while let Some(joined) = running.join_next().await {
        done.push(joined??);
    }
    upload.complete(done, &finished).await?;
    let upload_s = started.elapsed().as_secs_f64();

    let started = Instant::now();
    client
        .copy_object()
        .bucket(bucket)
        .key(key)
        .copy_source(format!("{bucket}/{key}"))
        .metadata_directive(MetadataDirective::Replace)
        .content_type("video/mp4")
        .metadata("sha256", "0".repeat(64))
        .send()
        .await?;
    let copy_s = started.elapsed().as_secs_f64();

    let started = Instant::now();
    sink.tag(key, &finished).await?;
    let tag_s = started.elapsed().as_secs_f64();
    sink.delete(key).await?;

    println!(
        "{}",
        serde_json::json!({"upload_s": upload_s, "copy_s": copy_s, "tag_s": tag_s, "parts": parts})
    );
    Ok(())
}
