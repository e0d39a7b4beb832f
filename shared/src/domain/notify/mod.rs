//! Outbound notifications, as the domain sees them: pure, no I/O. What an event is and
//! its deterministic id ([`event`]), how a delivery is signed ([`signing`]), what an
//! attempt's answer means ([`classify`]), when the next attempt goes ([`schedule`]),
//! when an endpoint is disabled ([`health`]), and how each target kind wants its body
//! ([`format`]); what an endpoint is ([`endpoint`]), how a delivery moves
//! ([`delivery`]), and when batch and drain endpoints hear something ([`threshold`]). The notify and deliver functions apply these decisions; they never
//! re-derive them.

pub mod classify;
pub mod delivery;
pub mod endpoint;
pub mod event;
pub mod format;
pub mod health;
pub mod schedule;
pub mod signing;
pub mod threshold;

pub use classify::{Attempted, FailureClass, TransportError, Verdict, classify};
pub use event::{Event, EventData, EventId, EventType, TaskEvent, VideoRef};
pub use format::{Rendered, TargetKind};
pub use health::{Health, HealthChange, HealthPolicy};
pub use schedule::RetrySchedule;
pub use signing::SigningKeys;
