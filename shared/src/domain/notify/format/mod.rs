//! How each target kind wants an event. The generic webhook gets the event body itself
//! (signed by the sender); chat targets get a message built from one [`Summary`] of the
//! event, so every kind says the same thing in its own markup and within its own limits.
//! A custom endpoint renders its own JSON template ([`custom`]).

pub mod custom;
pub mod discord;
pub mod feishu;
pub mod samples;
pub mod slack;
pub mod wecom;

use serde::{Deserialize, Serialize};

use super::event::{Event, EventData};
use crate::domain::clock::Timestamp;
use crate::domain::secret::Secret;
use crate::domain::task::TaskStatus;

/// The kinds of endpoint. The string form is the endpoint's stored `kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    /// Standard Webhooks: the event body, signed.
    Webhook,
    Slack,
    Discord,
    /// WeCom (企业微信) group robot.
    #[serde(rename = "wecom")]
    WeCom,
    /// Feishu / Lark custom bot.
    Feishu,
    /// A JSON template of the operator's.
    Custom,
}

impl TargetKind {
    pub const ALL: [Self; 6] = [
        Self::Webhook,
        Self::Slack,
        Self::Discord,
        Self::WeCom,
        Self::Feishu,
        Self::Custom,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Webhook => "webhook",
            Self::Slack => "slack",
            Self::Discord => "discord",
            Self::WeCom => "wecom",
            Self::Feishu => "feishu",
            Self::Custom => "custom",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Chat targets' URLs carry their credential: they are secrets, never shown whole.
    pub fn url_is_secret(self) -> bool {
        matches!(
            self,
            Self::Slack | Self::Discord | Self::WeCom | Self::Feishu
        )
    }

    /// Whether the body carries Standard Webhooks signature headers.
    pub fn is_signed(self) -> bool {
        matches!(self, Self::Webhook | Self::Custom)
    }
}

/// What to send: the body, and what to add to the endpoint's URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub body: Vec<u8>,
    /// A query parameter the target needs (Discord's `wait=true`, so errors come back).
    pub query: Option<(&'static str, &'static str)>,
}

impl Rendered {
    fn json(value: &serde_json::Value) -> Self {
        Self {
            // A `Value` always serialises.
            body: serde_json::to_vec(value).unwrap_or_default(),
            query: None,
        }
    }
}

/// Why an event could not be rendered for an endpoint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error("the custom template failed: {0}")]
    Template(String),
    #[error("the custom template's output is not JSON: {0}")]
    NotJson(String),
    #[error("a custom endpoint needs a template")]
    MissingTemplate,
}

/// What an endpoint needs to render for its kind.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub kind: TargetKind,
    /// Feishu's optional signing secret (sent inside the body).
    pub feishu_secret: Option<&'a Secret>,
    /// A custom endpoint's template.
    pub template: Option<&'a str>,
}

impl<'a> Target<'a> {
    pub fn of(kind: TargetKind) -> Self {
        Self {
            kind,
            feishu_secret: None,
            template: None,
        }
    }
}

/// `event` as `target` wants it, sent at `at`.
pub fn render(target: Target<'_>, event: &Event, at: Timestamp) -> Result<Rendered, RenderError> {
    Ok(match target.kind {
        TargetKind::Webhook => Rendered {
            body: event.body(at),
            query: None,
        },
        TargetKind::Slack => Rendered::json(&slack::message(&Summary::of(event, at))),
        TargetKind::Discord => Rendered {
            query: Some(("wait", "true")),
            ..Rendered::json(&discord::message(&Summary::of(event, at)))
        },
        TargetKind::WeCom => Rendered::json(&wecom::message(&Summary::of(event, at))),
        TargetKind::Feishu => Rendered::json(&feishu::message(
            &Summary::of(event, at),
            target.feishu_secret,
            at,
        )),
        TargetKind::Custom => {
            let template = target.template.ok_or(RenderError::MissingTemplate)?;
            Rendered {
                body: custom::render(template, event, at)?.into_bytes(),
                query: None,
            }
        }
    })
}

/// How good the news is: the colour chat targets give the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    Good,
    Bad,
    Neutral,
}

/// An event said for people: a title, labelled fields, and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub title: String,
    pub fields: Vec<(&'static str, String)>,
    pub tone: Tone,
    pub event_id: String,
    pub event_type: &'static str,
    pub at: String,
}

impl Summary {
    pub fn of(event: &Event, at: Timestamp) -> Self {
        let (title, fields, tone) = match &event.data {
            EventData::Task(t) if t.status == TaskStatus::Stored => {
                let mut fields = vec![("Task", t.task_id.to_string())];
                if let Some(v) = &t.video {
                    fields.push(("Size", human_bytes(v.bytes)));
                    fields.push(("Object", format!("s3://{}/{}", v.bucket, v.key)));
                    fields.push(("SHA-256", v.sha256.clone()));
                    if let Some(url) = &v.url {
                        fields.push(("Download", url.clone()));
                    }
                }
                (format!("Video stored: {}", t.task_id), fields, Tone::Good)
            }
            EventData::Task(t) => {
                let reason = t.failure_reason.map_or("unknown", |r| r.as_str());
                (
                    format!("Task failed: {}", t.task_id),
                    vec![
                        ("Task", t.task_id.to_string()),
                        ("Reason", reason.to_owned()),
                        ("Upstream code", t.upstream_code.to_string()),
                    ],
                    Tone::Bad,
                )
            }
            EventData::Batch {
                count,
                task_ids,
                partial,
            } => {
                let ids: Vec<&str> = task_ids.iter().map(|t| t.as_str()).collect();
                (
                    format!("{count} tasks completed"),
                    vec![
                        ("Tasks", ids.join(", ")),
                        (
                            "Batch",
                            if *partial {
                                "partial (timed out)"
                            } else {
                                "full"
                            }
                            .into(),
                        ),
                    ],
                    Tone::Neutral,
                )
            }
            EventData::Drained {
                busy_since,
                completed,
            } => (
                "All tasks are done".to_owned(),
                vec![
                    ("Completed", completed.to_string()),
                    ("Busy since", busy_since.clone()),
                ],
                Tone::Good,
            ),
            EventData::Disabled {
                endpoint_id,
                reason,
                consecutive_failures,
                failing_since,
            } => {
                let mut fields = vec![
                    ("Endpoint", endpoint_id.clone()),
                    ("Reason", reason.clone()),
                    ("Consecutive failures", consecutive_failures.to_string()),
                ];
                if let Some(since) = failing_since {
                    fields.push(("Failing since", since.clone()));
                }
                (
                    format!("Endpoint disabled: {endpoint_id}"),
                    fields,
                    Tone::Bad,
                )
            }
            EventData::Test { message } => (
                "Test notification".to_owned(),
                vec![("Message", message.clone())],
                Tone::Neutral,
            ),
        };
        Self {
            title,
            fields,
            tone,
            event_id: event.id.to_string(),
            event_type: event.event_type.as_str(),
            at: at.to_rfc3339(),
        }
    }
}

/// `1234567` → `1.2 MiB (1 234 567 bytes)`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    let grouped = {
        let digits = bytes.to_string();
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(' ');
            }
            out.push(c);
        }
        out
    };
    if bytes < 1024 {
        return format!("{bytes} bytes");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {} ({grouped} bytes)", UNITS[unit])
}

#[cfg(test)]
pub(crate) mod golden {
    //! Golden files: each format's rendering of the same events, checked in. Set
    //! `UPDATE_GOLDEN=1` to rewrite them after a deliberate change (and read the diff).

    use std::path::PathBuf;

    use super::*;
    use crate::domain::notify::event::{TaskEvent, VideoRef};
    use crate::domain::task::FailureReason;
    use crate::domain::task_id::TaskId;

    pub const AT: Timestamp = Timestamp::from_millis(1_795_000_000_123);

    pub fn stored() -> Event {
        let task_id = TaskId::parse("mv-2026-11-18_a1").unwrap();
        Event {
            id: crate::domain::notify::EventId::for_task(&task_id, TaskStatus::Stored, 4),
            event_type: crate::domain::notify::EventType::TaskStored,
            data: EventData::Task(TaskEvent {
                task_id,
                status: TaskStatus::Stored,
                upstream_code: 200,
                failure_reason: None,
                video: Some(VideoRef {
                    bucket: "music-videos".into(),
                    key: "videos/mv-2026.mp4".into(),
                    bytes: 48_234_112,
                    sha256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
                        .into(),
                    url: None,
                    url_expires_at: None,
                }),
            }),
        }
    }

    pub fn failed() -> Event {
        let task_id = TaskId::parse("mv-2026-11-18_b2").unwrap();
        Event {
            id: crate::domain::notify::EventId::for_task(&task_id, TaskStatus::Failed, 2),
            event_type: crate::domain::notify::EventType::TaskFailed,
            data: EventData::Task(TaskEvent {
                task_id,
                status: TaskStatus::Failed,
                upstream_code: 451,
                failure_reason: Some(FailureReason::UpstreamFailed),
                video: None,
            }),
        }
    }

    /// A batch whose task list is far over every chat limit.
    pub fn huge_batch() -> Event {
        let task_ids: Vec<TaskId> = (0..400)
            .map(|i| TaskId::parse(&format!("music-video-task-{i:04}")).unwrap())
            .collect();
        Event {
            id: crate::domain::notify::EventId::derive(&["batch", "ep_1", "7"]),
            event_type: crate::domain::notify::EventType::BatchCompleted,
            data: EventData::Batch {
                count: task_ids.len(),
                task_ids,
                partial: false,
            },
        }
    }

    /// Text that means something to every markup (mentions, tags, quotes, markdown),
    /// in multi-byte characters, far over every limit.
    pub fn hostile_text() -> Event {
        let message = format!(
            "<!channel> @everyone @here <@123> & <b>\"引号\"</b> *粗体* `代码` [链接](https://evil.example) {}",
            "视频已保存😀".repeat(2_000)
        );
        Event {
            id: crate::domain::notify::EventId::derive(&["test", "ep_1", "1"]),
            event_type: crate::domain::notify::EventType::Test,
            data: EventData::Test { message },
        }
    }

    pub fn events() -> [(&'static str, Event); 4] {
        [
            ("stored", stored()),
            ("failed", failed()),
            ("huge_batch", huge_batch()),
            ("hostile_text", hostile_text()),
        ]
    }

    /// Compares `rendered` (pretty JSON) with `golden/<kind>/<name>.json`.
    pub fn check(kind: &str, name: &str, body: &[u8]) {
        let value: serde_json::Value = serde_json::from_slice(body).expect("renders JSON");
        let pretty = serde_json::to_string_pretty(&value).unwrap() + "\n";
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("src/domain/notify/format/golden")
            .join(kind)
            .join(format!("{name}.json"));
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &pretty).unwrap();
            return;
        }
        let want = std::fs::read_to_string(&path)
            .unwrap_or_else(|_| panic!("{} missing: run with UPDATE_GOLDEN=1", path.display()));
        assert_eq!(
            pretty,
            want,
            "{kind}/{name} differs from {}",
            path.display()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_and_know_their_secrets() {
        for k in TargetKind::ALL {
            assert_eq!(TargetKind::parse(k.as_str()), Some(k));
            assert_eq!(
                serde_json::to_value(k).unwrap(),
                serde_json::Value::String(k.as_str().into())
            );
        }
        assert!(TargetKind::Slack.url_is_secret() && !TargetKind::Webhook.url_is_secret());
        assert!(TargetKind::Webhook.is_signed() && !TargetKind::WeCom.is_signed());
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(human_bytes(0), "0 bytes");
        assert_eq!(human_bytes(1023), "1023 bytes");
        assert_eq!(human_bytes(1024), "1.0 KiB (1 024 bytes)");
        assert_eq!(human_bytes(48_234_112), "46.0 MiB (48 234 112 bytes)");
        assert_eq!(human_bytes(5 << 40), "5.0 TiB (5 497 558 138 880 bytes)");
    }

    #[test]
    fn the_generic_webhook_body_is_the_event_itself() {
        let event = golden::stored();
        let rendered = render(Target::of(TargetKind::Webhook), &event, golden::AT).unwrap();
        assert_eq!(rendered.body, event.body(golden::AT));
        assert_eq!(rendered.query, None);
        golden::check("webhook", "stored", &rendered.body);
        golden::check("webhook", "failed", &event_body(&golden::failed()));
    }

    fn event_body(event: &Event) -> Vec<u8> {
        render(Target::of(TargetKind::Webhook), event, golden::AT)
            .unwrap()
            .body
    }

    #[test]
    fn discord_waits_for_its_answer() {
        let r = render(
            Target::of(TargetKind::Discord),
            &golden::failed(),
            golden::AT,
        )
        .unwrap();
        assert_eq!(r.query, Some(("wait", "true")));
    }

    #[test]
    fn a_custom_endpoint_without_a_template_is_refused() {
        assert_eq!(
            render(
                Target::of(TargetKind::Custom),
                &golden::failed(),
                golden::AT
            ),
            Err(RenderError::MissingTemplate)
        );
    }
}
