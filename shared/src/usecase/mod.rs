//! Use cases: what the functions do, written against the ports only.

pub mod deliver;
pub mod notify;
pub mod operate;
pub mod record_callback;
