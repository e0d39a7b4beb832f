//! Deliver: the consumer of the notification job queue. Each message is one job: an
//! attempt of one delivery ([`shared::usecase::deliver::Courier`]), a batch's flush, or
//! a drain check ([`shared::usecase::notify::Notifier`]).
//!
//! - [`handler`]: the SQS-batch plumbing (early jobs waited out in legs, the next
//!   attempt queued, partial batch failures);
//! - [`config`]: tables, queue, sender policy, health policy, fallback endpoint.

pub mod config;
pub mod handler;
