//! Slack incoming webhooks: a `text` fallback (what notifications and old clients show)
//! and Block Kit `blocks`. Text is escaped (`&`, `<`, `>`), so nothing in an event can
//! become a mention (`<!channel>`) or a link, and cut to Slack's limits: a header of
//! 150 characters, section fields of 2 000, at most 10 fields.

use serde_json::{Value, json};

use super::{Summary, Tone};

const HEADER_MAX: usize = 150;
const FIELD_MAX: usize = 2_000;
const FIELDS_MAX: usize = 10;
const TEXT_MAX: usize = 3_000;

/// The message for `summary`.
pub fn message(summary: &Summary) -> Value {
    let icon = match summary.tone {
        Tone::Good => "✅",
        Tone::Bad => "❌",
        Tone::Neutral => "ℹ️",
    };
    let title = format!("{icon} {}", summary.title);
    let fields: Vec<Value> = summary
        .fields
        .iter()
        .take(FIELDS_MAX)
        .map(|(label, value)| {
            let head = format!("*{label}*\n");
            let budget = FIELD_MAX.saturating_sub(head.chars().count());
            json!({"type": "mrkdwn", "text": head + &escape_within(value, budget)})
        })
        .collect();
    json!({
        "text": escape_within(&title, TEXT_MAX),
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": plain_within(&title, HEADER_MAX), "emoji": true}},
            {"type": "section", "fields": fields},
            {"type": "context", "elements": [{
                "type": "mrkdwn",
                "text": escape_within(&format!("{} · {} · {}", summary.event_type, summary.event_id, summary.at), TEXT_MAX),
            }]},
        ],
    })
}

/// `text` escaped for mrkdwn, within `max` characters of output (an entity is never cut).
pub fn escape_within(text: &str, max: usize) -> String {
    let mut out = String::new();
    let mut used = 0;
    let total: usize = text.chars().map(|c| escaped(c).chars().count()).sum();
    let budget = if total <= max {
        max
    } else {
        max.saturating_sub(1)
    };
    for c in text.chars() {
        let piece = escaped(c);
        let n = piece.chars().count();
        if used + n > budget {
            out.push('…');
            return out;
        }
        out.push_str(&piece);
        used += n;
    }
    out
}

fn escaped(c: char) -> String {
    match c {
        '&' => "&amp;".into(),
        '<' => "&lt;".into(),
        '>' => "&gt;".into(),
        c => c.to_string(),
    }
}

/// Plain text (no escaping: Slack shows it as it is) within `max` characters.
fn plain_within(text: &str, max: usize) -> String {
    crate::domain::text::shorten_chars(text, max)
}

#[cfg(test)]
mod tests {
    use super::super::golden;
    use super::super::{Summary, Target, TargetKind, render};
    use super::*;

    #[test]
    fn golden_files() {
        for (name, event) in golden::events() {
            let r = render(Target::of(TargetKind::Slack), &event, golden::AT).unwrap();
            golden::check("slack", name, &r.body);
        }
    }

    #[test]
    fn nothing_in_an_event_becomes_a_mention_or_a_link() {
        let m = message(&Summary::of(&golden::hostile_text(), golden::AT));
        let text = m.to_string();
        assert!(
            !text.contains("<!channel>") && !text.contains("<@123>"),
            "{text}"
        );
        assert!(text.contains("&lt;!channel&gt;"));
    }

    #[test]
    fn every_limit_holds_at_its_edge() {
        let m = message(&Summary::of(&golden::hostile_text(), golden::AT));
        let header = m["blocks"][0]["text"]["text"].as_str().unwrap();
        assert!(header.chars().count() <= HEADER_MAX);
        for f in m["blocks"][1]["fields"].as_array().unwrap() {
            let t = f["text"].as_str().unwrap();
            assert!(t.chars().count() <= FIELD_MAX, "{}", t.chars().count());
        }
        let batch = message(&Summary::of(&golden::huge_batch(), golden::AT));
        let tasks = batch["blocks"][1]["fields"][0]["text"].as_str().unwrap();
        assert_eq!(tasks.chars().count(), FIELD_MAX);
        assert!(tasks.ends_with('…'));
    }

    #[test]
    fn escaping_never_cuts_an_entity() {
        assert_eq!(escape_within("a&b", 10), "a&amp;b");
        assert_eq!(escape_within("a&b", 7), "a&amp;b");
        assert_eq!(escape_within("a&b", 6), "a…");
        assert_eq!(escape_within("<<<", 8), "&lt;…");
        assert_eq!(escape_within("", 3), "");
    }
}
