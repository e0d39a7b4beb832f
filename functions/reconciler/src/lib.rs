//! The reconciler: on a schedule (EventBridge, every 5 minutes; every ~15 s under
//! `make run`) it makes sure nothing acknowledged is stuck or lost:
//!
//! - replays callbacks spilled to the inbox while the table was down, through the
//!   receiver's record path, deleting each only once it is recorded;
//! - re-drives `downloading` tasks whose lease ran out (a dead or stuck invocation) and
//!   `received` tasks nobody took (a lost stream record), failing those out of attempts;
//! - polls the upstream's API for `expected` tasks whose callback never came, and fails
//!   the ones that never complete.
//!
//! It reads only the sparse `open-tasks` index (never a scan), a bounded number per run,
//! and every change is a conditional write, so two overlapping runs cannot both act.
//! [`reconcile`] is the use case; `main.rs` wires it.

pub mod config;
pub mod reconcile;
