//! One reconciler run, written against the ports: replay the inbox, then sweep the open
//! tasks of each status (oldest change first, a bounded number), applying what the
//! domain decides for each ([`Task::decide_reconcile`]).

use serde::Serialize;
use shared::domain::envelope::{CallbackEnvelope, Outcome, VideoUrl};
use shared::domain::task::{Patch, Reconcile, RecordSource, Task, TaskStatus};
use shared::inbox::Inbox;
use shared::metrics::{self, ReconcileRun};
use shared::store::{Applied, Listed, StoreError, TaskStore};
use shared::upstream::{UpstreamApi, UpstreamError, UpstreamRecord};
use shared::usecase::record_callback::{record_callback, record_repeat};
use shared::{TaskId, Timestamp};
use tracing::{debug, error, info, warn};

use crate::config::ReconcilerConfig;

/// Open tasks and inbox keys read per request.
const PAGE: usize = 100;

/// What one run did; also its log line and the Lambda's result.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Spilled callbacks recorded and removed from the inbox.
    pub replayed: u32,
    /// Inbox objects left in place (unreadable, or the table still unavailable).
    pub replay_failed: u32,
    /// Tasks handed to ingest again.
    pub redriven: u32,
    /// Tasks failed as `max_attempts_exceeded`.
    pub gave_up: u32,
    /// Expected tasks asked about upstream.
    pub polled: u32,
    /// Of those, decided by the answer (recorded through the callback path).
    pub recorded_by_poll: u32,
    /// Expected tasks failed as `never_completed`.
    pub expired: u32,
    /// Unreadable records failed as `unreadable_record`.
    pub unreadable: u32,
    /// Writes another writer got to first (nothing to do).
    pub conflicts: u32,
    /// Store, inbox or upstream errors (the next run tries again).
    pub errors: u32,
    /// Open tasks looked at.
    pub seen: u32,
}

impl Report {
    /// The run's metrics: what it did, and what it saw.
    pub fn metrics(&self) -> ReconcileRun {
        ReconcileRun {
            redriven: self.redriven,
            gave_up: self.gave_up,
            replayed: self.replayed,
            expired: self.expired,
            errors: self.errors + self.replay_failed,
            open_seen: self.seen,
            expected_polled: self.polled,
        }
    }
}

/// The reconciler's dependencies, built once per cold start.
#[derive(Debug)]
pub struct Reconciler<S, I, U> {
    pub store: S,
    pub inbox: I,
    pub upstream: U,
    pub config: ReconcilerConfig,
}

impl<S: TaskStore, I: Inbox, U: UpstreamApi> Reconciler<S, I, U> {
    /// One run at `now`.
    pub async fn run(&self, now: Timestamp) -> Report {
        let mut report = Report::default();
        self.replay_inbox(&mut report).await;
        // Downloading first: a dead invocation's task is the most urgent.
        for status in [
            TaskStatus::Downloading,
            TaskStatus::Received,
            TaskStatus::Expected,
        ] {
            if let Err(e) = self.sweep(status, now, &mut report).await {
                error!(status = status.as_str(), error = %e, "could not read the open tasks");
                report.errors += 1;
            }
        }
        metrics::reconcile_run(report.metrics());
        report
    }

    /// Records every spilled callback (oldest first) and removes it once recorded.
    async fn replay_inbox(&self, report: &mut Report) {
        let mut after: Option<String> = None;
        let mut looked = 0;
        loop {
            let page = match self.inbox.list(PAGE, after.as_deref()).await {
                Ok(page) => page,
                Err(e) => {
                    error!(error = %e, "could not list the inbox");
                    report.errors += 1;
                    return;
                }
            };
            for key in &page.keys {
                looked += 1;
                match self.replay(key).await {
                    Ok(()) => report.replayed += 1,
                    Err(Replay::StoreDown(e)) => {
                        // The table is still down: the rest waits for the next run.
                        warn!(error = %e, "the task store is still unavailable; replay stops here");
                        report.replay_failed += 1;
                        return;
                    }
                    Err(Replay::Kept(why)) => {
                        error!(inbox_key = %key, error = %why, "spilled callback kept in the inbox");
                        report.replay_failed += 1;
                    }
                }
            }
            after = page.next;
            if after.is_none() || looked >= self.config.max_per_run {
                return;
            }
        }
    }

    async fn replay(&self, key: &str) -> Result<(), Replay> {
        let Some(spilled) = self
            .inbox
            .get(key)
            .await
            .map_err(|e| Replay::Kept(e.to_string()))?
        else {
            return Ok(()); // Another run replayed it.
        };
        let envelope = CallbackEnvelope::parse(&spilled.body, &self.config.url_policy)
            .map_err(|e| Replay::Kept(format!("the spilled body no longer parses: {e}")))?;
        // Recorded as of when it arrived, exactly as the receiver would have.
        let recorded = record_callback(
            &self.store,
            &envelope,
            spilled.received_at,
            self.config.policy.ttl,
        )
        .await
        .map_err(Replay::StoreDown)?;
        info!(task_id = %spilled.task_id, outcome = recorded.as_str(), scheme = %spilled.scheme,
              "spilled callback recorded");
        // A failed delete leaves a copy that replays as a duplicate: harmless.
        if let Err(e) = self.inbox.delete(key).await {
            warn!(inbox_key = %key, error = %e, "recorded, but the inbox copy stays");
        }
        Ok(())
    }

    /// Looks at the open tasks in `status` and acts on the overdue ones.
    async fn sweep(
        &self,
        status: TaskStatus,
        now: Timestamp,
        report: &mut Report,
    ) -> Result<(), StoreError> {
        // Received tasks are overdue only once untouched for a while; the index's sort
        // key does that filtering. Leases and polls are judged per task.
        let changed_before = match status {
            TaskStatus::Received => now.saturating_sub(self.config.policy.received_after),
            _ => now,
        };
        debug!(status = status.as_str(), changed_before = %changed_before, "sweeping open tasks");
        let mut cursor = None;
        let mut looked = 0;
        loop {
            let page = self
                .store
                .list_open(status, changed_before, PAGE, cursor.as_ref())
                .await?;
            for listed in page.tasks {
                looked += 1;
                report.seen += 1;
                match listed {
                    Listed::Task(task) => self.reconcile(&task, now, report).await,
                    Listed::Unreadable {
                        task_id,
                        raw,
                        detail,
                    } => {
                        let ttl = self.config.policy.ttl;
                        let Ok(patch) =
                            Task::fail_unreadable(task_id.clone(), &raw, &detail, now, ttl)
                        else {
                            report.errors += 1;
                            continue;
                        };
                        if self.write(&task_id, &patch, report).await {
                            error!(task_id = %task_id, error = %detail, outcome = "failed",
                                   reason = "unreadable_record", "unreadable task failed");
                            report.unreadable += 1;
                        }
                    }
                }
            }
            cursor = page.next;
            if cursor.is_none() || looked >= self.config.max_per_run {
                return Ok(());
            }
        }
    }

    async fn reconcile(&self, task: &Task, now: Timestamp, report: &mut Report) {
        let task_id = &task.task_id;
        match task.decide_reconcile(now, &self.config.policy) {
            Reconcile::Nothing => {}
            Reconcile::Redrive(patch) => {
                if self.write(task_id, &patch, report).await {
                    info!(task_id = %task_id, from = task.status.as_str(), attempts = task.attempts,
                          outcome = "redriven", "task handed to ingest again");
                    report.redriven += 1;
                }
            }
            Reconcile::GiveUp(patch) => {
                if self.write(task_id, &patch, report).await {
                    warn!(task_id = %task_id, attempts = task.attempts, outcome = "failed",
                          reason = "max_attempts_exceeded", "task out of attempts");
                    report.gave_up += 1;
                }
            }
            Reconcile::Expire(patch) => {
                if self.write(task_id, &patch, report).await {
                    warn!(task_id = %task_id, outcome = "failed", reason = "never_completed",
                          "expected task never completed");
                    report.expired += 1;
                }
            }
            Reconcile::Poll => self.poll(task, now, report).await,
        }
    }

    /// Asks the upstream about an expected task and records what it says through the
    /// callback path (marked `source: poll`), or polls again later.
    async fn poll(&self, task: &Task, now: Timestamp, report: &mut Report) {
        let answer = self.upstream.record_info(&task.task_id).await;
        if matches!(answer, Err(UpstreamError::NotConfigured)) {
            return; // Polling is off: expected tasks wait for their callback (or expire).
        }
        report.polled += 1;
        let decided = match answer {
            Ok(UpstreamRecord::Succeeded { video_url }) => {
                match VideoUrl::parse(&video_url, &self.config.url_policy) {
                    Ok(video_url) => {
                        Some((Outcome::Succeeded { video_url }, "found by polling".into()))
                    }
                    Err(e) => {
                        error!(task_id = %task.task_id, error = %e, "the upstream's video URL is not acceptable");
                        None
                    }
                }
            }
            Ok(UpstreamRecord::Failed { code, message }) => {
                Some((Outcome::Failed { code }, message))
            }
            Ok(UpstreamRecord::Pending) => None,
            Err(e) => {
                warn!(task_id = %task.task_id, error = %e, "could not poll the upstream");
                report.errors += 1;
                None
            }
        };
        let Some((outcome, msg)) = decided else {
            if let Some(patch) = task.schedule_poll(now, &self.config.policy) {
                self.write(&task.task_id, &patch, report).await;
            }
            return;
        };
        let envelope = CallbackEnvelope {
            task_id: task.task_id.clone(),
            msg,
            outcome,
        };
        match record_repeat(
            &self.store,
            task.clone(),
            &envelope,
            RecordSource::Poll,
            now,
            self.config.policy.ttl,
        )
        .await
        {
            Ok(recorded) => {
                info!(task_id = %task.task_id, upstream_code = envelope.code(), outcome = recorded.as_str(),
                      source = "poll", "expected task's outcome recorded from polling");
                report.recorded_by_poll += 1;
            }
            Err(e) => {
                error!(task_id = %task.task_id, error = %e, "could not record the polled outcome");
                report.errors += 1;
            }
        }
    }

    /// One conditional write; `true` if it applied.
    async fn write(&self, task_id: &TaskId, patch: &Patch, report: &mut Report) -> bool {
        match self.store.apply(task_id, patch).await {
            Ok(Applied::Done(_)) => true,
            Ok(Applied::Conflict(_)) => {
                report.conflicts += 1;
                false
            }
            Err(e) => {
                error!(task_id = %task_id, error = %e, "reconciler write failed");
                report.errors += 1;
                false
            }
        }
    }
}

enum Replay {
    /// The table did not take it: stop, keep everything.
    StoreDown(StoreError),
    /// This object cannot be replayed now: keep it, go on.
    Kept(String),
}

#[cfg(test)]
mod tests {
    use shared::domain::task::{ClaimDecision, DEFAULT_TASK_TTL, FailureReason};
    use shared::inbox::Spilled;
    use shared::lambda::config::Env;
    use shared::test_support::{MemoryInbox, MemoryTaskStore, failure, success};
    use shared::upstream::scripted::ScriptedUpstream;
    use shared::upstream::{NoUpstream, UpstreamRecord};

    use super::*;

    const T0: i64 = 1_795_000_000_000;

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_millis(T0 + secs * 1000)
    }

    fn config() -> ReconcilerConfig {
        ReconcilerConfig::from_env(&Env::from_pairs([
            ("TABLE_NAME", "t"),
            ("MAX_ATTEMPTS", "2"),
            ("VIDEO_URL_ALLOW_HTTP", "true"),
        ]))
        .unwrap()
    }

    fn reconciler<U: UpstreamApi>(upstream: U) -> Reconciler<MemoryTaskStore, MemoryInbox, U> {
        Reconciler {
            store: MemoryTaskStore::default(),
            inbox: MemoryInbox::default(),
            upstream,
            config: config(),
        }
    }

    fn id(s: &str) -> TaskId {
        TaskId::parse(s).unwrap()
    }

    async fn received(
        r: &Reconciler<MemoryTaskStore, MemoryInbox, impl UpstreamApi>,
        name: &str,
        at: Timestamp,
    ) -> Task {
        let task = Task::from_callback(
            &success(name, "https://cdn.example/v.mp4"),
            at,
            DEFAULT_TASK_TTL,
        );
        r.store.create(&task).await.unwrap();
        task
    }

    async fn claimed(
        r: &Reconciler<MemoryTaskStore, MemoryInbox, impl UpstreamApi>,
        task: &Task,
        at: Timestamp,
        lease_until: Timestamp,
    ) -> Task {
        let ClaimDecision::Claim(claim) =
            task.decide_claim("inv", at, lease_until, 5, DEFAULT_TASK_TTL)
        else {
            panic!("claimable")
        };
        match r.store.apply(&task.task_id, &claim).await.unwrap() {
            Applied::Done(t) => *t,
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn an_abandoned_download_is_redriven_once_its_lease_runs_out() {
        let r = reconciler(NoUpstream);
        let task = received(&r, "dead", t(0)).await;
        claimed(&r, &task, t(1), t(121)).await;
        assert_eq!(r.run(t(100)).await.redriven, 0, "the lease still holds");
        let report = r.run(t(121)).await;
        assert_eq!(report.redriven, 1);
        let back = r.store.snapshot(&id("dead")).unwrap();
        assert_eq!(
            (back.status, back.attempts, back.lease_owner),
            (TaskStatus::Received, 1, None)
        );
        // An overlapping run sees nothing left to do.
        assert_eq!(r.run(t(122)).await.redriven, 0);
    }

    /// Each run sets the gauges, so a quiet run reads 0 (and the stuck-tasks alarm can
    /// clear), and counts what it did.
    #[test]
    fn each_run_reports_what_it_saw_and_did() {
        use shared::metrics::*;
        use shared::test_support::CapturedMetrics;

        let (reports, m) = CapturedMetrics::run(async {
            let r = reconciler(NoUpstream);
            received(&r, "lost", t(0)).await;
            let first = r.run(t(121)).await;
            let quiet = r.run(t(122)).await;
            (first, quiet)
        });
        assert_eq!((reports.0.redriven, reports.1.redriven), (1, 0));
        assert_eq!(m.counter(RECONCILER_REDRIVES, &[]), 1);
        assert_eq!(
            m.gauge(STUCK_TASKS, &[]),
            Some(0.0),
            "the last run found none"
        );
        assert_eq!(m.gauge(OPEN_TASKS, &[]), Some(f64::from(reports.1.seen)));
        assert_eq!(m.gauge(EXPECTED_TASKS, &[]), Some(0.0));
        assert_eq!(
            reports.0.metrics(),
            ReconcileRun {
                redriven: 1,
                open_seen: reports.0.seen,
                ..ReconcileRun::default()
            }
        );
    }

    #[tokio::test]
    async fn a_received_task_nobody_took_is_redriven_after_the_threshold() {
        let r = reconciler(NoUpstream);
        received(&r, "lost", t(0)).await;
        assert_eq!(r.run(t(119)).await.redriven, 0);
        let report = r.run(t(121)).await;
        assert_eq!(report.redriven, 1);
        let task = r.store.snapshot(&id("lost")).unwrap();
        assert_eq!((task.status, task.redrives), (TaskStatus::Received, 1));
        assert!(task.redrive_mark.is_some());
        // Re-driven again later, the mark flips (the stream filter sees each one).
        r.run(t(400)).await;
        assert!(
            r.store
                .snapshot(&id("lost"))
                .unwrap()
                .redrive_mark
                .is_none()
        );
    }

    #[tokio::test]
    async fn out_of_attempts_the_task_fails() {
        let r = reconciler(NoUpstream);
        let task = received(&r, "tired", t(0)).await;
        let once = claimed(&r, &task, t(1), t(10)).await;
        r.run(t(11)).await; // back to received, 1 attempt used
        let again = r.store.snapshot(&id("tired")).unwrap();
        claimed(&r, &again, t(12), t(20)).await; // 2 attempts = MAX_ATTEMPTS
        let report = r.run(t(21)).await;
        assert_eq!(report.gave_up, 1, "{report:?}");
        let failed = r.store.snapshot(&id("tired")).unwrap();
        assert_eq!(
            (failed.status, failed.failure_reason, failed.attempts),
            (
                TaskStatus::Failed,
                Some(FailureReason::MaxAttemptsExceeded),
                2
            )
        );
        drop(once);
    }

    #[tokio::test]
    async fn spilled_callbacks_are_replayed_through_the_record_path_and_removed() {
        let r = reconciler(NoUpstream);
        let body = br#"{"code":200,"msg":"ok","data":{"task_id":"spilled-1","video_url":"https://cdn.example/s.mp4"}}"#;
        for _ in 0..2 {
            r.inbox
                .put(&Spilled {
                    task_id: id("spilled-1"),
                    received_at: t(5),
                    scheme: "token".into(),
                    body: body.to_vec(),
                })
                .await
                .unwrap();
        }
        // While the table is down nothing is lost.
        r.store.set_unavailable(true);
        let report = r.run(t(10)).await;
        assert_eq!((report.replayed, r.inbox.len()), (0, 2));
        r.store.set_unavailable(false);
        let report = r.run(t(11)).await;
        assert_eq!(report.replayed, 2);
        assert!(r.inbox.is_empty());
        let task = r.store.snapshot(&id("spilled-1")).unwrap();
        assert_eq!(
            (task.status, task.callback_count),
            (TaskStatus::Received, 2)
        );
        assert_eq!(task.received_at, t(5), "recorded as of its arrival");
    }

    #[tokio::test]
    async fn an_unreplayable_object_stays_and_the_rest_goes_on() {
        let r = reconciler(NoUpstream);
        r.inbox.put_raw("inbox/0-broken.json", b"not json".to_vec());
        let body = br#"{"code":451,"msg":"x","data":{"task_id":"after"}}"#;
        r.inbox
            .put(&Spilled {
                task_id: id("after"),
                received_at: t(1),
                scheme: "token".into(),
                body: body.to_vec(),
            })
            .await
            .unwrap();
        let report = r.run(t(2)).await;
        assert_eq!((report.replayed, report.replay_failed), (1, 1));
        assert_eq!(
            r.inbox.len(),
            1,
            "the broken object is kept for an operator"
        );
        assert_eq!(
            r.store.snapshot(&id("after")).unwrap().status,
            TaskStatus::Failed
        );
    }

    #[tokio::test]
    async fn expected_tasks_are_polled_recorded_and_expired() {
        let upstream = ScriptedUpstream::default();
        upstream.answer(
            &id("late"),
            [
                UpstreamRecord::Pending,
                UpstreamRecord::Succeeded {
                    video_url: "https://cdn.example/late.mp4".into(),
                },
            ],
        );
        upstream.answer(
            &id("broken"),
            [UpstreamRecord::Failed {
                code: 451,
                message: "source download failed".into(),
            }],
        );
        let r = reconciler(upstream);
        for name in ["late", "broken", "silent"] {
            r.store
                .create(&Task::expected(id(name), t(0), DEFAULT_TASK_TTL))
                .await
                .unwrap();
        }
        r.upstream.answer(&id("silent"), [UpstreamRecord::Pending]);
        assert_eq!(r.run(t(30)).await.polled, 0, "within the grace period");
        let first = r.run(t(60)).await;
        assert_eq!((first.polled, first.recorded_by_poll), (3, 1));
        let broken = r.store.snapshot(&id("broken")).unwrap();
        assert_eq!(
            (broken.status, broken.upstream_code, broken.source),
            (TaskStatus::Failed, 451, Some(RecordSource::Poll))
        );
        // "late" answered PENDING: asked again no sooner than 30 s later.
        assert_eq!(r.run(t(80)).await.polled, 0);
        let second = r.run(t(91)).await;
        assert_eq!(second.recorded_by_poll, 1);
        let late = r.store.snapshot(&id("late")).unwrap();
        assert_eq!(
            (late.status, late.source),
            (TaskStatus::Received, Some(RecordSource::Poll))
        );
        assert_eq!(
            late.video_url.unwrap().as_str(),
            "https://cdn.example/late.mp4"
        );
        // "silent" never completes.
        let report = r.run(t(86_400)).await;
        assert_eq!(report.expired, 1);
        let silent = r.store.snapshot(&id("silent")).unwrap();
        assert_eq!(silent.failure_reason, Some(FailureReason::NeverCompleted));
    }

    #[tokio::test]
    async fn a_callback_that_arrives_meanwhile_wins_over_the_poll() {
        let upstream = ScriptedUpstream::default();
        upstream.answer(&id("both"), [UpstreamRecord::Pending]);
        let r = reconciler(upstream);
        r.store
            .create(&Task::expected(id("both"), t(0), DEFAULT_TASK_TTL))
            .await
            .unwrap();
        record_callback(&r.store, &failure("both", 500), t(50), DEFAULT_TASK_TTL)
            .await
            .unwrap();
        let report = r.run(t(61)).await;
        assert_eq!(report.polled, 0, "no longer expected");
        assert_eq!(
            r.store.snapshot(&id("both")).unwrap().status,
            TaskStatus::Failed
        );
    }

    #[tokio::test]
    async fn unreadable_records_are_failed_not_skipped() {
        let r = reconciler(NoUpstream);
        let task = received(&r, "odd", t(0)).await;
        let mut item = task.to_item().unwrap();
        item.insert("video_url".into(), serde_json::json!(12));
        r.store.put_item(&task.task_id, item);
        let report = r.run(t(200)).await;
        assert_eq!(report.unreadable, 1);
        let item = r.store.item(&task.task_id).unwrap();
        assert_eq!(item["status"], "failed");
        assert_eq!(item["failure_reason"], "unreadable_record");
        assert!(!item.contains_key("open_status"));
    }

    #[tokio::test]
    async fn a_run_is_bounded() {
        let mut r = reconciler(NoUpstream);
        r.config.max_per_run = 150;
        for i in 0..400 {
            received(&r, &format!("many-{i:03}"), t(0)).await;
        }
        let report = r.run(t(1_000)).await;
        assert!(report.seen <= 200 && report.seen >= 150, "{report:?}");
        assert_eq!(report.redriven, report.seen);
    }
}
