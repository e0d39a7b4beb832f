//! The domain: pure and synchronous, no I/O, no environment. The callback envelope and
//! its task id, the task record with its state machine and changes (as data), callback
//! verification (one file per scheme), the URL/SSRF policy, retry backoff and the clock.

pub mod backoff;
pub mod clock;
pub mod envelope;
pub mod secret;
pub mod ssrf;
pub mod task;
pub mod task_id;
pub mod verify;
