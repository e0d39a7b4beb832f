//! Ingest: copies each received task's video from its (callback-supplied) URL into S3,
//! in constant memory, resuming broken downloads, behind the SSRF guard.
//!
//! - [`handler`]: the stream-batch plumbing (records, spans, batch item failures);
//! - [`ingest_task`]: the use case for one task (claim, transfer, outcome under the lease);
//! - [`transfer`]: source → sink, part pool, resume and restart, abort on every failure;
//! - [`sniff`]: is it an MP4.
//!
//! The binary (`main.rs`) only wires the AWS clients to [`handler::Ingest`].

pub mod config;
pub mod handler;
pub mod ingest_task;
pub mod sniff;
pub mod transfer;
