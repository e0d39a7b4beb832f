//! `mvcb tasks list|show|watch|expect|redrive`.

use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};
use shared::Timestamp;

use super::{Ctx, age, task_id};
use crate::cli::TasksCommand;
use crate::error::CliError;
use crate::output::{Format, Table, bytes, cell, emit, fields};

pub async fn run(ctx: &Ctx, command: TasksCommand) -> Result<(), CliError> {
    match command {
        TasksCommand::List {
            status,
            since,
            older_than,
            limit,
            cursor,
            all,
        } => {
            let now = Timestamp::now();
            let mut query = vec![
                ("status", status.as_str().to_owned()),
                ("limit", limit.to_string()),
            ];
            if let Some(since) = since {
                query.push(("since", now.saturating_sub(since).to_rfc3339()));
            }
            if let Some(older) = older_than {
                query.push(("until", now.saturating_sub(older).to_rfc3339()));
            }
            let mut tasks = Vec::new();
            let mut next = cursor;
            loop {
                let mut page_query = query.clone();
                if let Some(cursor) = &next {
                    page_query.push(("cursor", cursor.clone()));
                }
                let page = ctx.api.get("/tasks", &page_query, "tasks").await?;
                tasks.extend(page["tasks"].as_array().cloned().unwrap_or_default());
                next = page["next_cursor"].as_str().map(str::to_owned);
                if !all || next.is_none() {
                    break;
                }
            }
            let answer = json!({ "tasks": tasks, "next_cursor": next });
            emit(ctx.format, &answer, || list_table(&answer, now))
        }
        TasksCommand::Show { task_id: raw } => {
            let task = show(ctx, &raw).await?;
            emit(ctx.format, &task, || task_fields(&task))
        }
        TasksCommand::Watch {
            task_id: raw,
            timeout,
            interval,
        } => watch(ctx, &raw, timeout, interval).await,
        TasksCommand::Expect { task_ids } => {
            for raw in &task_ids {
                task_id(raw)?;
            }
            let answer = ctx
                .api
                .post("/tasks", Some(&json!({ "task_ids": task_ids })), "tasks")
                .await?;
            emit(ctx.format, &answer, || {
                let mut table = Table::new(&["task_id", "status"]);
                for id in answer["registered"].as_array().into_iter().flatten() {
                    table.row(vec![cell(id), "expected (registered now)".into()]);
                }
                for known in answer["existing"].as_array().into_iter().flatten() {
                    table.row(vec![
                        cell(&known["task_id"]),
                        format!("{} (already known)", cell(&known["status"])),
                    ]);
                }
                table.render()
            })
        }
        TasksCommand::Redrive { task_id: raw } => {
            let id = task_id(&raw)?;
            let answer = ctx
                .api
                .post(&format!("/tasks/{id}/redrive"), None, &format!("task {id}"))
                .await?;
            emit(ctx.format, &answer, || {
                format!(
                    "{id}: re-driven ({} → {}); ingest takes it from the stream\n",
                    cell(&answer["previous_status"]),
                    cell(&answer["status"])
                )
            })
        }
    }
}

/// `GET /tasks/{id}`.
pub async fn show(ctx: &Ctx, raw: &str) -> Result<Value, CliError> {
    let id = task_id(raw)?;
    ctx.api
        .get(&format!("/tasks/{id}"), &[], &format!("task {id}"))
        .await
}

/// The listing as a table, with the next page's cursor under it.
pub fn list_table(answer: &Value, now: Timestamp) -> String {
    let mut table = Table::new(&[
        "task_id", "status", "changed", "attempts", "code", "bytes", "reason",
    ]);
    for task in answer["tasks"].as_array().into_iter().flatten() {
        table.row(vec![
            cell(&task["task_id"]),
            cell(&task["status"]),
            format!("{} ago", age(&task["updated_at"], now)),
            cell(&task["attempts"]),
            cell(&task["upstream_code"]),
            task["bytes"]
                .as_u64()
                .map(bytes)
                .unwrap_or_else(|| "-".into()),
            cell(&task["failure_reason"]),
        ]);
    }
    let mut text = match table.is_empty() {
        true => "no tasks\n".to_owned(),
        false => table.render(),
    };
    if let Some(cursor) = answer["next_cursor"].as_str() {
        text.push_str(&format!("more: --cursor {cursor}\n"));
    }
    text
}

/// One task as `key  value` lines.
pub fn task_fields(task: &Value) -> String {
    let video = &task["video"];
    let mut pairs = vec![
        ("task_id", cell(&task["task_id"])),
        ("status", cell(&task["status"])),
        (
            "upstream",
            format!(
                "{} {}",
                cell(&task["upstream_code"]),
                task["upstream_msg"].as_str().unwrap_or("")
            ),
        ),
        ("callbacks", cell(&task["callback_count"])),
        ("attempts", cell(&task["attempts"])),
        ("received_at", cell(&task["received_at"])),
        ("updated_at", cell(&task["updated_at"])),
        ("source", task["source"].as_str().unwrap_or("").to_owned()),
        (
            "failure",
            task["failure_reason"]
                .as_str()
                .map(|r| match task["failure_detail"].as_str() {
                    Some(detail) => format!("{r}: {detail}"),
                    None => r.to_owned(),
                })
                .unwrap_or_default(),
        ),
        (
            "progress",
            task["progress"]["bytes_received"]
                .as_u64()
                .map(bytes)
                .unwrap_or_default(),
        ),
    ];
    if video.is_object() {
        pairs.push((
            "video",
            format!("s3://{}/{}", cell(&video["bucket"]), cell(&video["key"])),
        ));
        pairs.push((
            "bytes",
            video["bytes"]
                .as_u64()
                .map(|b| format!("{b} ({})", bytes(b)))
                .unwrap_or_default(),
        ));
        pairs.push(("sha256", cell(&video["sha256"])));
        pairs.push(("url", cell(&video["url"])));
        pairs.push(("url_expires_at", cell(&video["url_expires_at"])));
    }
    fields(&pairs)
}

/// Reads the task until it is stored or failed: a live byte counter while it downloads
/// (to stderr, only on a terminal), then the result.
async fn watch(
    ctx: &Ctx,
    raw: &str,
    timeout: Duration,
    interval: Duration,
) -> Result<(), CliError> {
    let started = Instant::now();
    let bar = match ctx.format {
        Format::Human => ProgressBar::new_spinner(),
        Format::Json => ProgressBar::hidden(),
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {prefix} {msg} {bytes} ({bytes_per_sec}, {elapsed})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.set_prefix(raw.to_owned());
    bar.enable_steady_tick(Duration::from_millis(120));
    let task = loop {
        let task = match show(ctx, raw).await {
            Ok(task) => task,
            // Not recorded yet (a callback on its way): keep waiting.
            Err(CliError::NotFound(_)) => Value::Null,
            Err(e) => {
                bar.finish_and_clear();
                return Err(e);
            }
        };
        let status = task["status"].as_str().unwrap_or("unknown");
        bar.set_message(status.to_owned());
        if let Some(received) = task["progress"]["bytes_received"].as_u64() {
            bar.set_position(received);
        }
        if matches!(status, "stored" | "failed") {
            if let Some(total) = task["video"]["bytes"].as_u64() {
                bar.set_position(total);
            }
            break task;
        }
        if started.elapsed() >= timeout {
            bar.finish_and_clear();
            return Err(CliError::Task(format!(
                "{raw} is still {status} after {}",
                humantime::format_duration(timeout)
            )));
        }
        tokio::time::sleep(interval).await;
    };
    bar.finish_and_clear();
    emit(ctx.format, &task, || task_fields(&task))?;
    match task["status"].as_str() {
        Some("failed") => Err(CliError::TaskFailed(format!(
            "{raw} failed: {}",
            task["failure_reason"]
                .as_str()
                .unwrap_or("upstream failure")
        ))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listing_is_a_table_with_the_next_cursor() {
        let now = Timestamp::parse_rfc3339("2026-12-01T10:10:00.000Z").unwrap();
        let answer = json!({
            "tasks": [
                {"task_id": "demo-2", "status": "stored", "updated_at": "2026-12-01T10:09:00.000Z",
                 "attempts": 1, "upstream_code": 200, "bytes": 3_145_728, "failure_reason": null},
                {"task_id": "demo-1", "status": "failed", "updated_at": "2026-12-01T10:00:00.000Z",
                 "attempts": 0, "upstream_code": 451, "failure_reason": null},
            ],
            "next_cursor": "abc",
        });
        assert_eq!(
            list_table(&answer, now),
            "TASK_ID  STATUS  CHANGED  ATTEMPTS  CODE  BYTES    REASON\n\
             demo-2   stored  1m ago   1         200   3.0 MiB  -\n\
             demo-1   failed  10m ago  0         451   -        -\n\
             more: --cursor abc\n"
        );
        assert_eq!(
            list_table(&json!({"tasks": [], "next_cursor": null}), now),
            "no tasks\n"
        );
    }

    #[test]
    fn a_stored_task_shows_its_video() {
        let task = json!({
            "task_id": "demo-1", "status": "stored", "upstream_code": 200, "upstream_msg": "ok",
            "callback_count": 2, "attempts": 1, "received_at": "r", "updated_at": "u",
            "failure_reason": null, "source": "callback",
            "video": {"bucket": "b", "key": "videos/demo-1.mp4", "bytes": 1024, "sha256": "ab",
                      "url": "https://s3/x", "url_expires_at": "e"},
        });
        let text = task_fields(&task);
        assert!(
            text.starts_with("task_id         demo-1\nstatus          stored\n"),
            "{text}"
        );
        assert!(
            text.contains("video           s3://b/videos/demo-1.mp4\n"),
            "{text}"
        );
        assert!(text.contains("bytes           1024 (1.0 KiB)\n"), "{text}");
        assert!(
            !text.contains("failure"),
            "empty fields are left out: {text}"
        );
    }
}
