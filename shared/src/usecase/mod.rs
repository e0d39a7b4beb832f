//! Use cases: what the functions do, written against the ports only.

pub mod record_callback;
