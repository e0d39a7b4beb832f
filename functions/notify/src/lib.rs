//! Notify: the second consumer of the tasks stream. A task that has just reached an
//! outcome (`stored` or `failed`) is handed to the notify use case
//! ([`shared::usecase::notify::Notifier`]), which creates one delivery per matching
//! endpoint (conditionally: a redelivered record creates nothing) and queues it.
//!
//! - [`handler`]: the stream-batch plumbing (which records are outcomes, spans, batch
//!   item failures);
//! - [`config`]: the tables and the queue.

pub mod config;
pub mod handler;
