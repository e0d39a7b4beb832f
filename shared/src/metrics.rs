//! The metric catalogue: every CloudWatch metric the functions emit, by name, unit and
//! labels, recorded through the `metrics` facade. The Lambda edge
//! ([`crate::lambda::metrics`]) writes them as Embedded Metric Format after each
//! invocation; the template's alarms and dashboard name these constants (checked by
//! `tests/template/test_observability.py`), and `docs/operations.md` lists them.
//!
//! Labels become CloudWatch dimensions, so every label value here comes from a closed
//! set (an enum's code, a bucketed status): never a task id, a URL or an endpoint id.

use std::time::Duration;

use metrics::{
    Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};

// Receiver.
pub const CALLBACKS: &str = "Callbacks";
pub const CALLBACKS_BY_SCHEME: &str = "CallbacksByScheme";
pub const CALLBACKS_BY_UPSTREAM_CODE: &str = "CallbacksByUpstreamCode";
pub const CALLBACK_REJECTIONS: &str = "CallbackRejections";
pub const CALLBACK_SERVER_ERRORS: &str = "CallbackServerErrors";
pub const CALLBACK_ANSWER_TIME: &str = "CallbackAnswerTime";
pub const INBOX_SPILLS: &str = "InboxSpills";
// Ingest.
pub const INGEST_OUTCOMES: &str = "IngestOutcomes";
pub const INGEST_FAILURES: &str = "IngestFailures";
pub const INGEST_FAILED: &str = "IngestFailed";
pub const INGEST_BYTES: &str = "IngestBytes";
pub const INGEST_SECONDS: &str = "IngestSeconds";
pub const INGEST_THROUGHPUT: &str = "IngestThroughput";
pub const INGEST_RESUMES: &str = "IngestResumes";
pub const INGEST_RESTARTS: &str = "IngestRestarts";
// Reconciler.
pub const RECONCILER_REDRIVES: &str = "ReconcilerRedrives";
pub const RECONCILER_GAVE_UP: &str = "ReconcilerGaveUp";
pub const RECONCILER_REPLAYED: &str = "ReconcilerReplayed";
pub const RECONCILER_EXPIRED: &str = "ReconcilerExpired";
pub const RECONCILER_ERRORS: &str = "ReconcilerErrors";
pub const STUCK_TASKS: &str = "StuckTasks";
pub const OPEN_TASKS: &str = "OpenTasks";
pub const EXPECTED_TASKS: &str = "ExpectedTasks";
// Notifications.
pub const NOTIFICATIONS_QUEUED: &str = "NotificationsQueued";
pub const DELIVERIES: &str = "Deliveries";
pub const DELIVERY_ATTEMPTS: &str = "DeliveryAttempts";
pub const DEAD_DELIVERIES: &str = "DeadDeliveries";
pub const ENDPOINTS_DISABLED: &str = "EndpointsDisabled";

/// Label (dimension) names.
pub const OUTCOME: &str = "Outcome";
pub const SCHEME: &str = "Scheme";
pub const UPSTREAM_CODE: &str = "UpstreamCode";
pub const CODE: &str = "Code";
pub const REASON: &str = "Reason";

/// Every metric with its unit, for [`describe`] (and the catalogue's own tests).
pub const CATALOGUE: &[(&str, Unit, Kind)] = &[
    (CALLBACKS, Unit::Count, Kind::Counter),
    (CALLBACKS_BY_SCHEME, Unit::Count, Kind::Counter),
    (CALLBACKS_BY_UPSTREAM_CODE, Unit::Count, Kind::Counter),
    (CALLBACK_REJECTIONS, Unit::Count, Kind::Counter),
    (CALLBACK_SERVER_ERRORS, Unit::Count, Kind::Counter),
    (CALLBACK_ANSWER_TIME, Unit::Milliseconds, Kind::Histogram),
    (INBOX_SPILLS, Unit::Count, Kind::Counter),
    (INGEST_OUTCOMES, Unit::Count, Kind::Counter),
    (INGEST_FAILURES, Unit::Count, Kind::Counter),
    (INGEST_FAILED, Unit::Count, Kind::Counter),
    (INGEST_BYTES, Unit::Bytes, Kind::Histogram),
    (INGEST_SECONDS, Unit::Seconds, Kind::Histogram),
    // CloudWatch's Megabits/Second (10^6 bits): the facade has no bytes-per-second unit.
    (INGEST_THROUGHPUT, Unit::MegabitsPerSecond, Kind::Histogram),
    (INGEST_RESUMES, Unit::Count, Kind::Counter),
    (INGEST_RESTARTS, Unit::Count, Kind::Counter),
    (RECONCILER_REDRIVES, Unit::Count, Kind::Counter),
    (RECONCILER_GAVE_UP, Unit::Count, Kind::Counter),
    (RECONCILER_REPLAYED, Unit::Count, Kind::Counter),
    (RECONCILER_EXPIRED, Unit::Count, Kind::Counter),
    (RECONCILER_ERRORS, Unit::Count, Kind::Counter),
    (STUCK_TASKS, Unit::Count, Kind::Gauge),
    (OPEN_TASKS, Unit::Count, Kind::Gauge),
    (EXPECTED_TASKS, Unit::Count, Kind::Gauge),
    (NOTIFICATIONS_QUEUED, Unit::Count, Kind::Counter),
    (DELIVERIES, Unit::Count, Kind::Counter),
    (DELIVERY_ATTEMPTS, Unit::Count, Kind::Counter),
    (DEAD_DELIVERIES, Unit::Count, Kind::Counter),
    (ENDPOINTS_DISABLED, Unit::Count, Kind::Counter),
];

/// How a metric aggregates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Summed per flush (a delta).
    Counter,
    /// The last value set, written at every flush.
    Gauge,
    /// Every value recorded since the last flush.
    Histogram,
}

/// Registers every metric's unit with the installed recorder. Call once, after the
/// recorder is installed.
pub fn describe() {
    for &(name, unit, kind) in CATALOGUE {
        match kind {
            Kind::Counter => describe_counter!(name, unit, ""),
            Kind::Gauge => describe_gauge!(name, unit, ""),
            Kind::Histogram => describe_histogram!(name, unit, ""),
        }
    }
}

/// How a callback was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallbackAnswer {
    /// Recorded (a new task, or a new outcome for one).
    Received,
    /// Already recorded: nothing changed.
    Duplicate,
    /// Kept in the inbox because the table could not take it.
    Spilled,
    /// Refused with a 4xx; the error code.
    Rejected(&'static str),
    /// Answered 5xx: neither the table nor the inbox took it.
    Unavailable,
}

impl CallbackAnswer {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Received => "received",
            Self::Duplicate => "duplicate",
            Self::Spilled => "spilled",
            Self::Rejected(_) => "rejected",
            Self::Unavailable => "unavailable",
        }
    }
}

/// One answered callback and the time the handler took.
pub fn callback_answered(answer: CallbackAnswer, elapsed: Duration) {
    counter!(CALLBACKS, OUTCOME => answer.as_str()).increment(1);
    match answer {
        CallbackAnswer::Rejected(code) => counter!(CALLBACK_REJECTIONS, CODE => code).increment(1),
        CallbackAnswer::Unavailable => counter!(CALLBACK_SERVER_ERRORS).increment(1),
        CallbackAnswer::Spilled => counter!(INBOX_SPILLS).increment(1),
        CallbackAnswer::Received | CallbackAnswer::Duplicate => {}
    }
    histogram!(CALLBACK_ANSWER_TIME).record(elapsed.as_secs_f64() * 1000.0);
}

/// An accepted callback's verification scheme and upstream code.
pub fn callback_accepted(scheme: &'static str, upstream_code: u16) {
    counter!(CALLBACKS_BY_SCHEME, SCHEME => scheme).increment(1);
    counter!(CALLBACKS_BY_UPSTREAM_CODE, UPSTREAM_CODE => upstream_code_label(upstream_code))
        .increment(1);
}

/// The upstream's documented codes, and `other`: the label set stays closed whatever a
/// sender puts in `code`.
pub fn upstream_code_label(code: u16) -> &'static str {
    match code {
        200 => "200",
        400 => "400",
        451 => "451",
        500 => "500",
        _ => "other",
    }
}

/// What became of one ingest stream record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IngestOutcome {
    Stored,
    /// Failed for good; the failure reason's code.
    Failed(&'static str),
    Skipped,
    Retry,
}

impl IngestOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stored => "stored",
            Self::Failed(_) => "failed",
            Self::Skipped => "skipped",
            Self::Retry => "retry",
        }
    }
}

/// One ingest record's outcome.
pub fn ingest_outcome(outcome: IngestOutcome) {
    counter!(INGEST_OUTCOMES, OUTCOME => outcome.as_str()).increment(1);
    if let IngestOutcome::Failed(reason) = outcome {
        counter!(INGEST_FAILURES, REASON => reason).increment(1);
        counter!(INGEST_FAILED).increment(1);
    }
}

/// One finished copy: its size, how long it took, and how often it resumed or restarted.
pub fn ingest_transfer(bytes: u64, elapsed: Duration, resumes: u32, restarts: u32) {
    histogram!(INGEST_BYTES).record(bytes as f64);
    let secs = elapsed.as_secs_f64();
    histogram!(INGEST_SECONDS).record(secs);
    if secs > 0.0 {
        histogram!(INGEST_THROUGHPUT).record(bytes as f64 * 8.0 / 1e6 / secs);
    }
    if resumes > 0 {
        counter!(INGEST_RESUMES).increment(u64::from(resumes));
    }
    if restarts > 0 {
        counter!(INGEST_RESTARTS).increment(u64::from(restarts));
    }
}

/// What one reconciler run did. Counters for the actions; gauges for what it saw, set on
/// every run so a quiet run reads 0 rather than nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReconcileRun {
    pub redriven: u32,
    pub gave_up: u32,
    pub replayed: u32,
    pub expired: u32,
    pub errors: u32,
    pub open_seen: u32,
    pub expected_polled: u32,
}

pub fn reconcile_run(run: ReconcileRun) {
    counter!(RECONCILER_REDRIVES).increment(u64::from(run.redriven));
    counter!(RECONCILER_GAVE_UP).increment(u64::from(run.gave_up));
    counter!(RECONCILER_REPLAYED).increment(u64::from(run.replayed));
    counter!(RECONCILER_EXPIRED).increment(u64::from(run.expired));
    counter!(RECONCILER_ERRORS).increment(u64::from(run.errors));
    gauge!(STUCK_TASKS).set(f64::from(run.redriven + run.gave_up));
    gauge!(OPEN_TASKS).set(f64::from(run.open_seen));
    gauge!(EXPECTED_TASKS).set(f64::from(run.expected_polled));
}

/// Deliveries created for one task outcome (or batch).
pub fn notifications_queued(count: usize) {
    if count > 0 {
        counter!(NOTIFICATIONS_QUEUED).increment(count as u64);
    }
}

/// What became of one delivery job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryOutcome {
    Succeeded,
    Retry,
    Dead,
    SkippedDisabled,
    NotYet,
}

impl DeliveryOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::Retry => "retry",
            Self::Dead => "dead",
            Self::SkippedDisabled => "skipped_disabled",
            Self::NotYet => "not_yet",
        }
    }

    /// Whether it ran an attempt (succeeded, failed and retried, or failed for good).
    fn attempted(self) -> bool {
        matches!(self, Self::Succeeded | Self::Retry | Self::Dead)
    }
}

/// One delivery processed.
pub fn delivery(outcome: DeliveryOutcome) {
    counter!(DELIVERIES, OUTCOME => outcome.as_str()).increment(1);
    if outcome.attempted() {
        counter!(DELIVERY_ATTEMPTS).increment(1);
    }
    if outcome == DeliveryOutcome::Dead {
        counter!(DEAD_DELIVERIES).increment(1);
    }
}

/// The health policy disabled an endpoint.
pub fn endpoint_disabled() {
    counter!(ENDPOINTS_DISABLED).increment(1);
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn catalogue_names_are_unique_and_cloudwatch_safe() {
        let mut seen = HashSet::new();
        for (name, _, _) in CATALOGUE {
            assert!(seen.insert(*name), "{name} twice");
            assert!(
                name.chars().all(|c| c.is_ascii_alphanumeric()) && name.len() <= 255,
                "{name}"
            );
        }
        assert_eq!(seen.len(), 28);
    }

    #[test]
    fn upstream_codes_fall_into_a_closed_set() {
        let labels: HashSet<_> = (0..=u16::MAX).map(upstream_code_label).collect();
        assert_eq!(labels, HashSet::from(["200", "400", "451", "500", "other"]));
    }
}
