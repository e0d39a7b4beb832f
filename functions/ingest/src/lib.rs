//! Ingest: copies each received task's video from its (callback-supplied) URL into S3,
//! in constant memory, resuming broken downloads, behind the SSRF guard. The binary
//! (`main.rs`) only wires the AWS clients to [`handler::Ingest`].

pub mod backoff;
pub mod config;
pub mod handler;
pub mod sniff;
pub mod source;
pub mod transfer;
