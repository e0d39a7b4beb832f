//! The domain: pure and synchronous, no I/O, no environment. The callback envelope and
//! its task id, the task record with its state machine and changes (as data), callback
//! verification (one file per scheme), the URL/SSRF policy, retry backoff, the clock, and
//! outbound notifications (events, signing, retry and health decisions, target formats).

pub mod backoff;
pub mod clock;
pub mod envelope;
pub mod notify;
pub mod secret;
pub mod ssrf;
pub mod task;
pub mod task_id;
pub mod text;
pub mod verify;
