//! Custom endpoints: the operator's own JSON, as a minijinja template. Every value is
//! JSON-escaped on output (`{{ event.data.task_id }}` renders `"mv-1"`, quotes
//! included), so no event text can break out of the JSON around it; the result must
//! parse as JSON, and a template gets bounded work (fuel), so a loop cannot hang a
//! delivery. Templates are checked when the endpoint is saved ([`validate`]) against
//! every kind of event, and rendered by `/test`.
//!
//! Variables (strict: reading one that is not there is an error; optional ones are read
//! with `is defined` or `| default(...)`): `event` (`id`, `type`, `timestamp`, `data`: the generic webhook body's
//! fields plus the id) and `summary` (`title`, `tone`, `fields`: a list of
//! `{label, value}`), the same text the chat formats show.

use minijinja::value::{Serde, Value};
use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use serde::Serialize;

use super::{RenderError, Summary, Tone};
use crate::domain::clock::Timestamp;
use crate::domain::notify::event::{Event, EventData, EventType};

/// Longest template accepted, and longest output.
pub const TEMPLATE_MAX_BYTES: usize = 16 * 1024;
pub const OUTPUT_MAX_BYTES: usize = 64 * 1024;
/// Instructions a template may execute: generous for any real message, fatal to a loop.
const FUEL: u64 = 50_000;

#[derive(Serialize)]
struct EventVars<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    event_type: EventType,
    timestamp: String,
    data: &'a EventData,
}

#[derive(Serialize)]
struct Field<'a> {
    label: &'a str,
    value: &'a str,
}

#[derive(Serialize)]
struct SummaryVars<'a> {
    title: &'a str,
    tone: &'static str,
    fields: Vec<Field<'a>>,
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_auto_escape_callback(|_| AutoEscape::Json);
    // A misspelt variable is an error when the endpoint is saved, not a silent `null`
    // in every notification; optional fields are read with `is defined` or `default`.
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(FUEL));
    env
}

/// `template` rendered for `event` sent at `at`: JSON text, or why not.
pub fn render(template: &str, event: &Event, at: Timestamp) -> Result<String, RenderError> {
    if template.len() > TEMPLATE_MAX_BYTES {
        return Err(RenderError::Template(format!(
            "the template is {} bytes, over the {TEMPLATE_MAX_BYTES}-byte limit",
            template.len()
        )));
    }
    let summary = Summary::of(event, at);
    let vars = (
        EventVars {
            id: event.id.as_str(),
            event_type: event.event_type,
            timestamp: at.to_rfc3339(),
            data: &event.data,
        },
        SummaryVars {
            title: &summary.title,
            tone: match summary.tone {
                Tone::Good => "good",
                Tone::Bad => "bad",
                Tone::Neutral => "neutral",
            },
            fields: summary
                .fields
                .iter()
                .map(|(label, value)| Field { label, value })
                .collect(),
        },
    );
    let env = environment();
    let out = env
        .render_str(
            template,
            minijinja::context! {
                event => Value::from(Serde(&vars.0)),
                summary => Value::from(Serde(&vars.1)),
            },
        )
        .map_err(|e| RenderError::Template(e.to_string()))?;
    if out.len() > OUTPUT_MAX_BYTES {
        return Err(RenderError::Template(format!(
            "the output is {} bytes, over the {OUTPUT_MAX_BYTES}-byte limit",
            out.len()
        )));
    }
    serde_json::from_str::<serde_json::Value>(&out)
        .map_err(|e| RenderError::NotJson(e.to_string()))?;
    Ok(out)
}

/// Checks `template` as an endpoint is saved: it must render valid JSON for every kind
/// of event it may be sent.
pub fn validate(template: &str) -> Result<(), RenderError> {
    let at = Timestamp::from_millis(1_795_000_000_000);
    for event in super::samples::all() {
        render(template, &event, at)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::golden;
    use super::super::{Target, TargetKind};
    use super::*;

    const TEAMS_LIKE: &str = r#"{
  "title": {{ summary.title }},
  "event": {{ event.id }},
  "kind": {{ event.type }},
  "task": {{ event.data.task_id | default(none) }},
  "bytes": {% if event.data.video is defined %}{{ event.data.video.bytes }}{% else %}0{% endif %},
  "facts": [{% for f in summary.fields %}{"name": {{ f.label }}, "value": {{ f.value }}}{% if not loop.last %}, {% endif %}{% endfor %}]
}"#;

    #[test]
    fn golden_files() {
        for (name, event) in golden::events() {
            let target = Target {
                template: Some(TEAMS_LIKE),
                ..Target::of(TargetKind::Custom)
            };
            let r = super::super::render(target, &event, golden::AT).unwrap();
            golden::check("custom", name, &r.body);
        }
    }

    #[test]
    fn values_cannot_break_out_of_the_json() {
        let out = render(
            r#"{"text": {{ event.data.message }}}"#,
            &golden::hostile_text(),
            golden::AT,
        )
        .unwrap();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert!(
            v["text"]
                .as_str()
                .unwrap()
                .starts_with("<!channel> @everyone")
        );
        // Even where the operator forgot the value is a string.
        let out = render(
            r#"{"text": "{{ event.type }}"}"#,
            &golden::failed(),
            golden::AT,
        );
        assert!(matches!(out, Err(RenderError::NotJson(_))), "{out:?}");
    }

    #[test]
    fn bad_templates_are_refused_when_saved() {
        assert!(validate(TEAMS_LIKE).is_ok());
        for (template, want) in [
            ("{{ event.id ", "template"),
            ("not json {{ event.id }}", "json"),
            ("{\"id\": {{ event.data.task_id }}}", "template"), // absent on batch events
            (
                "{\"id\": {{ event.data.taks_id | default(none) }}, \"t\": {{ evnt.type }}}",
                "template",
            ), // a typo
            ("{% for i in range(100000) %}{% endfor %}{}", "template"), // out of fuel
            (&"x".repeat(TEMPLATE_MAX_BYTES + 1), "template"),
        ] {
            let err = validate(template).expect_err(&template[..template.len().min(40)]);
            let kind = match err {
                RenderError::Template(_) => "template",
                RenderError::NotJson(_) => "json",
                RenderError::MissingTemplate => "missing",
            };
            assert_eq!(kind, want, "{template:.40}: {err}");
        }
    }
}
