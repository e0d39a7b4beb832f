//! Load with duplicates (`make test-load`): 2 000 callbacks for 400 tasks, each sent 5
//! times in a shuffled order by 32 concurrent senders, videos of 1–20 MiB, through the
//! local stack (receiver and ingest under `cargo lambda watch`, the stream pump with the
//! template's ParallelizationFactor).
//!
//! Pass: every callback answered 200; exactly one item per task, each `stored` and
//! counting all its callbacks; one object per task whose bytes hash to the source's
//! SHA-256; exactly one full GET per video at the video server; no multipart upload
//! left. A tenth of the tasks hold their later copies back until their video is being
//! downloaded (the source stalls for a moment mid-body), so duplicates provably arrive
//! while the first copy is still downloading. Prints `LOAD ...` lines (the figures in
//! docs/reliability.md), including the receiver's p50/p99 answer times.
//!
//! Sizes are overridable for a quick run: `LOAD_TASKS`, `LOAD_COPIES`, `LOAD_CONCURRENCY`,
//! `LOAD_MAX_MIB`, `LOAD_SEED`, `LOAD_TIMEOUT_SECS`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step is a failed test

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use integration_tests::Stack;
use integration_tests::video_server::{Behaviour, Video, VideoServer};
use serde_json::json;
use sha2::{Digest, Sha256};
use shared::domain::task::{Task, TaskStatus};
use shared::domain::task_id::TaskId;
use shared::store::TaskStore;
use shared::store::dynamodb::DynamoTaskStore;

const MIB: u64 = 1 << 20;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name}={v}: not a number"))
        })
        .unwrap_or(default)
}

#[derive(Debug, Clone)]
struct LoadTask {
    id: String,
    path: String,
    url: String,
    video: Video,
    /// Later copies wait until the first GET of the video has started.
    held: bool,
}

#[derive(Debug)]
struct Answer {
    task: usize,
    status: u16,
    body: String,
    took: Duration,
}

async fn send(client: &reqwest::Client, stack: &Stack, task: &LoadTask, index: usize) -> Answer {
    let body = json!({"code": 200, "msg": "MP4 generated successfully.",
                      "data": {"task_id": task.id, "video_url": task.url}});
    let started = Instant::now();
    let response = stack.post_callback(client, &body).await;
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    Answer {
        task: index,
        status,
        body: text,
        took: started.elapsed(),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Items of this run in the table (a scan: the load test owns its prefix).
async fn count_items(stack: &Stack, prefix: &str) -> usize {
    let client = stack.dynamodb();
    let mut count = 0;
    let mut start = None;
    loop {
        let out = client
            .scan()
            .table_name(stack.table())
            .filter_expression("begins_with(task_id, :p)")
            .expression_attribute_values(":p", AttributeValue::S(prefix.to_owned()))
            .set_exclusive_start_key(start)
            .send()
            .await
            .expect("Scan");
        count += out.items().len();
        start = out.last_evaluated_key;
        if start.is_none() {
            return count;
        }
    }
}

/// SHA-256 of the object as S3 returns it, streamed.
async fn object_sha256(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> (u64, String) {
    let mut body = s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .expect("GetObject")
        .body;
    let mut hasher = Sha256::new();
    let mut bytes = 0u64;
    while let Some(chunk) = body.try_next().await.expect("object body") {
        bytes += chunk.len() as u64;
        hasher.update(&chunk);
    }
    let hex = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    (bytes, hex)
}

/// The receiver's own `latency_ms` for this run's callbacks, from the local stack's log.
fn in_function_latencies(run: &str) -> Vec<Duration> {
    let log = integration_tests::repo_root().join(".local/logs/cargo-lambda.log");
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut out: Vec<Duration> = text
        .lines()
        .filter(|l| l.contains(run) && l.contains("\"callback recorded\""))
        .filter_map(|l| l.find('{').map(|i| &l[i..]))
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| {
            v["span"]["task_id"]
                .as_str()
                .is_some_and(|t| t.starts_with(&format!("{run}-")))
        })
        .filter_map(|v| v["latency_ms"].as_f64())
        .map(|ms| Duration::from_secs_f64(ms / 1000.0))
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "minutes of load: make test-load"]
async fn duplicates_under_load_keep_every_callback_and_every_video_once() {
    let stack = Stack::load();
    let tasks_n = env_or("LOAD_TASKS", 400) as usize;
    let copies = env_or("LOAD_COPIES", 5) as usize;
    let concurrency = env_or("LOAD_CONCURRENCY", 32) as usize;
    let max_mib = env_or("LOAD_MAX_MIB", 20).max(1);
    let seed = env_or("LOAD_SEED", fastrand::u64(..));
    let timeout = Duration::from_secs(env_or("LOAD_TIMEOUT_SECS", 3600));
    assert!(copies >= 2, "duplicates need LOAD_COPIES >= 2");
    let mut rng = fastrand::Rng::with_seed(seed);
    let run = format!("load-{:08x}", rng.u32(..));
    println!(
        "LOAD run {run}: {tasks_n} tasks x {copies} copies, {concurrency} concurrent, 1-{max_mib} MiB, seed {seed}"
    );

    let server = VideoServer::start(0).await;
    let tasks: Vec<LoadTask> = (0..tasks_n)
        .map(|i| {
            let len = rng.u64(MIB..=max_mib * MIB);
            let video = Video::new(len, rng.u64(..));
            let id = format!("{run}-{i:04}");
            let path = format!("/load/{id}.mp4");
            let held = i % 10 == 0;
            let url = if held {
                // Stalls mid-body once: the held copies land while this download is open.
                server.route(
                    &path,
                    Behaviour::Stall {
                        video,
                        after: (len / 3).min(4 * MIB),
                        pause: Duration::from_secs(2),
                        times: 1,
                    },
                )
            } else {
                server.serve(&path, video)
            };
            LoadTask {
                id,
                path,
                url,
                video,
                held,
            }
        })
        .collect();
    let total_bytes: u64 = tasks.iter().map(|t| t.video.len).sum();

    // The shuffled queue: every copy of every task, but a held task's later copies.
    let mut queue: Vec<usize> = Vec::with_capacity(tasks_n * copies);
    for (i, t) in tasks.iter().enumerate() {
        let n = if t.held { 1 } else { copies };
        queue.extend(std::iter::repeat_n(i, n));
    }
    rng.shuffle(&mut queue);
    let queued = queue.len();
    let queue = Arc::new(Mutex::new(VecDeque::from(queue)));

    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(concurrency)
        .build()
        .unwrap();
    // Warm-up: one request per sender, all at once, so `cargo lambda watch` has started
    // the receiver instances (each a `cargo run`) before anything is timed. A GET is
    // answered 405 by the function itself, and writes nothing.
    let warm = Instant::now();
    let warmups: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, url) = (client.clone(), stack.var("CALLBACK_URL").to_owned());
            tokio::spawn(async move { client.get(url).send().await.map(|r| r.status().as_u16()) })
        })
        .collect();
    for w in warmups {
        assert_eq!(w.await.unwrap().expect("warm-up GET"), 405);
    }
    println!(
        "LOAD warm-up: {concurrency} concurrent GETs answered 405 in {:.1} s (instance start-up, not counted)",
        warm.elapsed().as_secs_f64()
    );

    // Baseline, in the same run: answer times of sequential callbacks on the idle stack
    // (failure callbacks: an item each, no download; ids outside this run's prefix).
    let mut idle = Vec::new();
    for n in 0..20 {
        let body = json!({"code": 500, "msg": "baseline", "data": {"task_id": format!("idle-{run}-{n}"), "video_url": null}});
        let t = Instant::now();
        assert_eq!(stack.post_callback(&client, &body).await.status(), 200);
        idle.push(t.elapsed());
    }
    idle.sort();

    let tasks = Arc::new(tasks);
    let stack = Arc::new(stack);
    let answers = Arc::new(Mutex::new(Vec::<Answer>::with_capacity(tasks_n * copies)));
    let started = Instant::now();

    let mut senders = Vec::new();
    for _ in 0..concurrency {
        let (queue, tasks, stack, client, answers) = (
            Arc::clone(&queue),
            Arc::clone(&tasks),
            Arc::clone(&stack),
            client.clone(),
            Arc::clone(&answers),
        );
        senders.push(tokio::spawn(async move {
            loop {
                let next = queue.lock().unwrap().pop_front();
                let Some(i) = next else { break };
                let answer = send(&client, &stack, &tasks[i], i).await;
                answers.lock().unwrap().push(answer);
            }
        }));
    }

    // The held copies: sent as soon as the video server sees the first GET, and the
    // task's state read right after each answer.
    let held_statuses = Arc::new(Mutex::new(Vec::<TaskStatus>::new()));
    let server = Arc::new(server);
    let watcher = {
        let (tasks, stack, client, answers, held_statuses, server) = (
            Arc::clone(&tasks),
            Arc::clone(&stack),
            client.clone(),
            Arc::clone(&answers),
            Arc::clone(&held_statuses),
            Arc::clone(&server),
        );
        tokio::spawn(async move {
            let store = DynamoTaskStore::new(stack.dynamodb(), stack.table());
            let mut waiting: Vec<usize> = (0..tasks.len()).filter(|&i| tasks[i].held).collect();
            let mut inflight = Vec::new();
            let deadline = Instant::now() + timeout;
            while !waiting.is_empty() && Instant::now() < deadline {
                let (ready, rest): (Vec<usize>, Vec<usize>) = waiting
                    .into_iter()
                    .partition(|&i| !server.gets(&tasks[i].path).is_empty());
                waiting = rest;
                for i in ready {
                    for _ in 1..copies {
                        let (tasks, stack, client, answers, held_statuses, store) = (
                            Arc::clone(&tasks),
                            Arc::clone(&stack),
                            client.clone(),
                            Arc::clone(&answers),
                            Arc::clone(&held_statuses),
                            store.clone(),
                        );
                        inflight.push(tokio::spawn(async move {
                            let answer = send(&client, &stack, &tasks[i], i).await;
                            let id = TaskId::parse(&tasks[i].id).unwrap();
                            let task = store.get(&id).await.expect("GetItem").expect("recorded");
                            held_statuses.lock().unwrap().push(task.status);
                            answers.lock().unwrap().push(answer);
                        }));
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            for h in inflight {
                h.await.unwrap();
            }
        })
    };

    for s in senders {
        s.await.unwrap();
    }
    let sent_main = started.elapsed();
    println!(
        "LOAD {queued} shuffled callbacks answered in {:.1} s",
        sent_main.as_secs_f64()
    );

    // Wait for every task to be final (stored or failed), reading only the open ones.
    let store = DynamoTaskStore::new(stack.dynamodb(), stack.table());
    let mut finals: HashMap<usize, Task> = HashMap::new();
    let mut last_report = Instant::now();
    let mut reported = 0;
    while finals.len() < tasks_n {
        assert!(
            started.elapsed() < timeout,
            "timed out: {}/{tasks_n} tasks final",
            finals.len()
        );
        for i in 0..tasks.len() {
            if finals.contains_key(&i) {
                continue;
            }
            let id = TaskId::parse(&tasks[i].id).unwrap();
            if let Ok(Some(task)) = store.get(&id).await {
                if matches!(task.status, TaskStatus::Stored | TaskStatus::Failed) {
                    finals.insert(i, task);
                }
            }
        }
        if last_report.elapsed() > Duration::from_secs(30) {
            println!(
                "LOAD progress: {}/{tasks_n} final (+{} in the last 30 s)",
                finals.len(),
                finals.len() - reported
            );
            reported = finals.len();
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let all_final = started.elapsed();
    watcher.await.unwrap();

    // 1. Every callback answered 200.
    let answers = std::mem::take(&mut *answers.lock().unwrap());
    let refused: Vec<String> = answers
        .iter()
        .filter(|a| a.status != 200)
        .map(|a| format!("{} -> {} {}", tasks[a.task].id, a.status, a.body))
        .collect();
    assert_eq!(answers.len(), tasks_n * copies, "every copy was sent");
    assert!(refused.is_empty(), "refused callbacks: {refused:?}");

    // 2. Exactly one item per task, stored, with every callback counted.
    let items = count_items(&stack, &format!("{run}-")).await;
    assert_eq!(items, tasks_n, "items of this run");
    let mut problems = Vec::new();
    for (i, t) in tasks.iter().enumerate() {
        let task = &finals[&i];
        if task.status != TaskStatus::Stored {
            problems.push(format!(
                "{}: {:?} {:?} {:?}",
                t.id, task.status, task.failure_reason, task.failure_detail
            ));
        } else if task.callback_count as usize != copies {
            problems.push(format!("{}: callback_count {}", t.id, task.callback_count));
        }
    }
    assert!(problems.is_empty(), "tasks not as expected: {problems:?}");

    // 3. One object per task, whose bytes hash to the source's SHA-256 (computed here
    //    from the generator, not taken from what ingest recorded).
    let s3 = stack.s3();
    let mut checks = Vec::new();
    let checked = Arc::new(tokio::sync::Semaphore::new(4));
    for (i, t) in tasks.iter().enumerate() {
        let video = finals[&i]
            .video
            .clone()
            .expect("a stored task names its object");
        let (s3, bucket, source, permit) = (
            s3.clone(),
            stack.bucket().to_owned(),
            t.video,
            Arc::clone(&checked),
        );
        let id = t.id.clone();
        checks.push(tokio::spawn(async move {
            let _permit = permit.acquire().await.unwrap();
            let expected = tokio::task::spawn_blocking(move || source.sha256())
                .await
                .unwrap();
            let (bytes, got) = object_sha256(&s3, &bucket, &video.key).await;
            let mut bad = Vec::new();
            if bytes != source.len || got != expected {
                bad.push(format!(
                    "{id}: object {bytes} bytes {got}, source {} bytes {expected}",
                    source.len
                ));
            }
            if video.sha256 != expected {
                bad.push(format!(
                    "{id}: recorded sha256 {} != {expected}",
                    video.sha256
                ));
            }
            (video.key, bad)
        }));
    }
    let mut keys = Vec::new();
    let mut bad_objects = Vec::new();
    for c in checks {
        let (key, bad) = c.await.unwrap();
        keys.push(key);
        bad_objects.extend(bad);
    }
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), tasks_n, "one object per task");
    assert!(bad_objects.is_empty(), "objects: {bad_objects:?}");

    // 4. Exactly one full GET per video (none for a duplicate), and how many ranged ones.
    let mut full_gets = 0;
    let mut ranged_gets = 0;
    let mut extra = Vec::new();
    for t in tasks.iter() {
        let gets = server.gets(&t.path);
        let full = gets.iter().filter(|g| g.range.is_none()).count();
        full_gets += full;
        ranged_gets += gets.len() - full;
        if full != 1 {
            extra.push(format!("{}: {full} full GETs {gets:?}", t.id));
        }
    }
    assert!(
        extra.is_empty(),
        "videos not fetched exactly once: {extra:?}"
    );

    // 5. No multipart upload left behind.
    let open_uploads = stack.open_multipart_uploads(&format!("videos/{run}")).await;
    assert!(open_uploads.is_empty(), "open uploads: {open_uploads:?}");

    // 6. Duplicates that arrived while the first copy was downloading.
    let held = held_statuses.lock().unwrap().clone();
    let during = held
        .iter()
        .filter(|s| **s == TaskStatus::Downloading)
        .count();
    assert!(
        during > 0,
        "no held duplicate arrived during a download: {held:?}"
    );

    let mut took: Vec<Duration> = answers.iter().map(|a| a.took).collect();
    took.sort();
    let inside = in_function_latencies(&run);
    let redrives: u32 = finals.values().map(|t| t.redrives).sum();
    let attempts_over_one = finals.values().filter(|t| t.attempts > 1).count();
    println!(
        "LOAD callbacks sent {} / answered 200 {} / items {items} / objects {} (SHA-256 verified) / full GETs {full_gets} / ranged GETs {ranged_gets} / open multipart uploads {}",
        answers.len(),
        answers.iter().filter(|a| a.status == 200).count(),
        keys.len(),
        open_uploads.len()
    );
    println!(
        "LOAD receiver answer time: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (client side, through cargo lambda watch)",
        ms(percentile(&took, 50.0)),
        ms(percentile(&took, 99.0)),
        ms(percentile(&took, 100.0))
    );
    println!(
        "LOAD baseline (same run, 20 sequential callbacks, idle stack): p50 {:.1} ms, p99 {:.1} ms; under load / idle p50: {:.1}x",
        ms(percentile(&idle, 50.0)),
        ms(percentile(&idle, 99.0)),
        percentile(&took, 50.0).as_secs_f64() / percentile(&idle, 50.0).as_secs_f64()
    );
    if !inside.is_empty() {
        println!(
            "LOAD receiver in-function time (its latency_ms log field, {} lines): p50 {:.1} ms, p99 {:.1} ms; the rest of the answer time is queueing for one of the local instances",
            inside.len(),
            ms(percentile(&inside, 50.0)),
            ms(percentile(&inside, 99.0))
        );
    }
    println!(
        "LOAD duplicates held until their download started: {} sent, {during} answered while the task was downloading, {} after it was stored",
        held.len(),
        held.iter().filter(|s| **s == TaskStatus::Stored).count()
    );
    println!(
        "LOAD {:.0} MiB in {:.1} s to the last stored video ({:.1} MiB/s); re-drives {redrives}; tasks with more than one attempt {attempts_over_one}",
        total_bytes as f64 / MIB as f64,
        all_final.as_secs_f64(),
        total_bytes as f64 / MIB as f64 / all_final.as_secs_f64()
    );

    // The objects are gigabytes: do not leave them to the next run's disk.
    if std::env::var_os("LOAD_KEEP").is_none() {
        for key in &keys {
            let _ = s3
                .delete_object()
                .bucket(stack.bucket())
                .key(key)
                .send()
                .await;
        }
    }
}
