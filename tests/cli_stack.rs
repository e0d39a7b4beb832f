//! The operator CLI (`mvcb`, built by `cargo build --workspace --bins`, as `make test`
//! does) run as a process against the local stack: signed test callbacks with each
//! scheme, `tasks show|list|watch|expect|redrive`, the endpoint and delivery commands,
//! and `doctor`, each checked by its JSON and its exit code.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step is a failed test

use std::process::Command;
use std::time::Duration;

use integration_tests::{Stack, eventually, repo_root, target_binary, unique_task_id};
use serde_json::Value;

/// `mvcb --local …` (the stack's settings file named explicitly: tests run in `tests/`).
fn mvcb(args: &[&str]) -> (i32, Value, String) {
    let output = Command::new(target_binary("mvcb"))
        .arg("--local")
        .arg("--stack-env")
        .arg(repo_root().join(".local/stack.env"))
        .args(args)
        .env_remove("MVCB_STACK")
        .env_remove("MVCB_CALLBACK_SECRET")
        .output()
        .expect("run mvcb");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let json = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    (
        output.status.code().unwrap_or(-1),
        json,
        format!("{stdout}{stderr}"),
    )
}

/// `mvcb … --json`, which must exit `code`.
fn mvcb_json(code: i32, args: &[&str]) -> Value {
    let mut all: Vec<&str> = args.to_vec();
    all.push("--json");
    let (exit, json, text) = mvcb(&all);
    assert_eq!(exit, code, "mvcb {}: {text}", args.join(" "));
    json
}

#[test]
fn signed_callbacks_with_each_scheme_are_recorded_and_shown() {
    Stack::load();
    for scheme in ["token", "upstream-hmac", "standard-webhooks"] {
        let task = unique_task_id(&format!("cli-{scheme}"));
        let sent = mvcb_json(
            0,
            &[
                "callback",
                "send",
                "--scheme",
                scheme,
                "--task-id",
                &task,
                "--code",
                "451",
            ],
        );
        assert_eq!(
            (sent["status"].as_u64(), sent["answer"]["status"].as_str()),
            (Some(200), Some("received")),
            "{sent}"
        );
        let shown = mvcb_json(0, &["tasks", "show", &task]);
        assert_eq!(
            (
                shown["status"].as_str(),
                shown["upstream_code"].as_u64(),
                shown["callback_count"].as_u64()
            ),
            (Some("failed"), Some(451), Some(1)),
            "{scheme}: {shown}"
        );
        // Sent again: a duplicate, counted.
        let again = mvcb_json(
            0,
            &[
                "callback",
                "send",
                "--scheme",
                scheme,
                "--task-id",
                &task,
                "--code",
                "451",
            ],
        );
        assert_eq!(again["answer"]["status"], "duplicate", "{again}");
    }
    // A wrong secret is refused by the receiver: exit 1.
    let (code, _, text) = mvcb(&[
        "callback",
        "send",
        "--scheme",
        "upstream-hmac",
        "--secret",
        "not-the-secret-0123456789",
        "--code",
        "500",
    ]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("401"), "{text}");

    // Unknown task: 3; a bad id: 2 (never sent); a final task cannot be re-driven: 5.
    assert_eq!(mvcb(&["tasks", "show", &unique_task_id("cli-nobody")]).0, 3);
    assert_eq!(mvcb(&["tasks", "show", "a/b"]).0, 2);
    let failed = unique_task_id("cli-final");
    mvcb_json(
        0,
        &["callback", "send", "--task-id", &failed, "--code", "500"],
    );
    let (code, _, text) = mvcb(&["tasks", "redrive", &failed]);
    assert_eq!(code, 5, "{text}");
    assert!(text.contains("not_redrivable"), "{text}");

    // Expected tasks are registered once.
    let expected = unique_task_id("cli-expect");
    let registered = mvcb_json(0, &["tasks", "expect", &expected, &failed]);
    assert_eq!(
        registered["registered"][0],
        expected.as_str(),
        "{registered}"
    );
    assert_eq!(
        registered["existing"][0]["status"], "failed",
        "{registered}"
    );
    assert_eq!(
        mvcb_json(0, &["tasks", "show", &expected])["status"],
        "expected"
    );
}

#[test]
fn a_task_is_watched_to_stored_and_listed_by_status() {
    Stack::load();
    let task = unique_task_id("cli-watch");
    // A success with the stack's sample video (3 MiB): received → downloading → stored.
    mvcb_json(
        0,
        &[
            "callback",
            "send",
            "--scheme",
            "standard-webhooks",
            "--task-id",
            &task,
        ],
    );
    let watched = mvcb_json(
        0,
        &[
            "tasks",
            "watch",
            &task,
            "--timeout",
            "3m",
            "--interval",
            "300ms",
        ],
    );
    assert_eq!(watched["status"], "stored", "{watched}");
    assert_eq!(watched["video"]["bytes"], 3 * 1024 * 1024, "{watched}");
    assert!(
        watched["video"]["url"]
            .as_str()
            .is_some_and(|u| u.starts_with("http"))
    );

    // Listed among the stored tasks of the last 10 minutes (an index query, newest first).
    let listed = eventually(
        Duration::from_secs(30),
        "the task in the by-status index",
        || async {
            let listed = mvcb_json(
                0,
                &[
                    "tasks", "list", "--status", "stored", "--since", "10m", "--all",
                ],
            );
            let found = listed["tasks"]
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t["task_id"] == task.as_str());
            found.then_some(listed)
        },
    );
    let listed = futures_block(listed);
    assert!(
        listed["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["status"] == "stored")
    );
    assert_eq!(
        listed["next_cursor"],
        Value::Null,
        "--all follows every page"
    );
    // Paginated: one a page, a cursor to the next.
    let first = mvcb_json(0, &["tasks", "list", "--status", "stored", "--limit", "1"]);
    assert_eq!(first["tasks"].as_array().unwrap().len(), 1);
    if let Some(cursor) = first["next_cursor"].as_str() {
        let second = mvcb_json(
            0,
            &[
                "tasks", "list", "--status", "stored", "--limit", "1", "--cursor", cursor,
            ],
        );
        assert_ne!(second["tasks"][0]["task_id"], first["tasks"][0]["task_id"]);
    }
    // Not stored long ago: nothing older than a day in a fresh stack's window.
    let old = mvcb_json(
        0,
        &[
            "tasks",
            "list",
            "--status",
            "stored",
            "--older-than",
            "1000d",
        ],
    );
    assert_eq!(old["tasks"], Value::Array(vec![]));
    // A watched failure exits 7.
    let failing = unique_task_id("cli-watch-failed");
    mvcb_json(
        0,
        &["callback", "send", "--task-id", &failing, "--code", "500"],
    );
    assert_eq!(mvcb(&["tasks", "watch", &failing, "--timeout", "1m"]).0, 7);
}

/// Runs a future to completion on a small runtime (the rest of these tests is blocking).
fn futures_block<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

#[test]
fn endpoints_are_added_tested_switched_and_their_deliveries_listed() {
    let stack = Stack::load();
    let name = unique_task_id("cli-ep");
    let url = format!("{}/hooks/{name}", stack.var("INBOX_URL"));
    // Filtered to tasks nobody sends, so only the test event arrives.
    let added = mvcb_json(
        0,
        &[
            "endpoints",
            "add",
            "--url",
            &url,
            "--description",
            "mvcb test",
            "--task-id-prefix",
            "cli-nobody-",
        ],
    );
    let id = added["endpoint"]["id"].as_str().unwrap().to_owned();
    let secret = added["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"), "{added}");
    futures_block(async {
        let put = reqwest::Client::new()
            .put(format!("{}/_secret/{name}", stack.var("INBOX_URL")))
            .body(secret.clone())
            .send()
            .await
            .unwrap();
        assert!(put.status().is_success());
    });

    let listed = mvcb_json(0, &["endpoints", "list"]);
    let shown = listed["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == id.as_str())
        .cloned()
        .unwrap();
    assert_eq!(shown["enabled"], true);
    assert!(
        !listed.to_string().contains(&secret[6..]),
        "the secret is never shown again"
    );

    let tested = mvcb_json(0, &["endpoints", "test", &id]);
    assert_eq!(tested["outcome"], "succeeded", "{tested}");
    let arrived = futures_block(async {
        let requests: Value = reqwest::get(format!("{}/_requests/{name}", stack.var("INBOX_URL")))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        requests
    });
    assert_eq!(arrived[0]["signature"], "valid", "{arrived}");

    let off = mvcb_json(0, &["endpoints", "disable", &id]);
    assert_eq!(off["endpoint"]["enabled"], false, "{off}");
    assert_eq!(
        mvcb(&["endpoints", "test", &id]).0,
        5,
        "a disabled endpoint is not tested"
    );
    let on = mvcb_json(0, &["endpoints", "enable", &id]);
    assert_eq!(on["endpoint"]["enabled"], true, "{on}");

    let deliveries = mvcb_json(0, &["deliveries", "list", "--endpoint", &id]);
    let first = &deliveries["deliveries"][0];
    assert_eq!(
        (first["event"]["type"].as_str(), first["status"].as_str()),
        (Some("test"), Some("succeeded")),
        "{deliveries}"
    );
    let retried = mvcb_json(0, &["deliveries", "retry", first["id"].as_str().unwrap()]);
    assert_eq!(retried["delivery"]["status"], "pending", "{retried}");
    let recovered = mvcb_json(0, &["endpoints", "recover", &id, "--since", "1h"]);
    assert!(recovered["scanned"].as_u64().is_some(), "{recovered}");
    // An unknown endpoint: 3.
    let unknown = [
        "deliveries",
        "list",
        "--endpoint",
        "ep_aaaaaaaaaaaaaaaaaaaa",
    ];
    assert_eq!(mvcb(&unknown).0, 3);
}

#[test]
fn doctor_passes_on_the_local_stack_and_usage_errors_exit_2() {
    Stack::load();
    let report = mvcb_json(0, &["doctor"]);
    assert_eq!(report["ok"], true, "{report}");
    let results: Vec<(&str, &str)> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["check"].as_str().unwrap(), c["result"].as_str().unwrap()))
        .collect();
    assert!(results.contains(&("round trip", "ok")), "{report}");
    assert!(results.contains(&("verification", "ok")), "{report}");
    assert!(results.contains(&("alarms", "skip")), "{report}");
    let hmac = mvcb_json(0, &["doctor", "--scheme", "upstream-hmac"]);
    assert_eq!(hmac["ok"], true, "{hmac}");

    // No target at all: 6; a bad argument: 2 (clap's usage error).
    let none = Command::new(target_binary("mvcb"))
        .args(["doctor"])
        .env_remove("MVCB_STACK")
        .output()
        .unwrap();
    assert_eq!(none.status.code(), Some(6));
    assert_eq!(mvcb(&["tasks", "list"]).0, 2);
    let missing = Command::new(target_binary("mvcb"))
        .args(["--local", "--stack-env", "/nonexistent/stack.env", "doctor"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(6));
    // Completions print a script.
    let (code, _, text) = mvcb(&["completions", "bash"]);
    assert_eq!(code, 0);
    assert!(text.contains("mvcb"), "{text}");
}
