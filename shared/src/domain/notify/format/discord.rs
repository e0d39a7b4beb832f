//! Discord webhooks: one embed (title, colour, fields, footer, timestamp), sent with
//! `?wait=true` so a refusal comes back as an answer instead of vanishing. Mentions are
//! switched off (`allowed_mentions: {parse: []}`), Markdown in values is escaped, and
//! the embed keeps Discord's limits: title 256, field value 1 024, at most 25 fields,
//! 6 000 characters in all.

use serde_json::{Value, json};

use super::{Summary, Tone};

const TITLE_MAX: usize = 256;
const FIELD_VALUE_MAX: usize = 1_024;
const FIELDS_MAX: usize = 25;
const FOOTER_MAX: usize = 2_048;
const EMBED_TOTAL_MAX: usize = 6_000;

pub fn message(summary: &Summary) -> Value {
    let colour = match summary.tone {
        Tone::Good => 0x2E_B6_7D,
        Tone::Bad => 0xE0_1E_5A,
        Tone::Neutral => 0x58_65_F2,
    };
    let title = crate::domain::text::shorten_chars(&summary.title, TITLE_MAX);
    let footer = crate::domain::text::shorten_chars(
        &format!("{} · {}", summary.event_type, summary.event_id),
        FOOTER_MAX,
    );
    let mut left = EMBED_TOTAL_MAX
        .saturating_sub(title.chars().count())
        .saturating_sub(footer.chars().count());
    let mut fields = Vec::new();
    for (label, value) in summary.fields.iter().take(FIELDS_MAX) {
        let name_len = label.chars().count();
        if left <= name_len + 1 {
            break;
        }
        let budget = FIELD_VALUE_MAX.min(left - name_len);
        let value = escape_within(value, budget);
        left -= name_len + value.chars().count();
        fields.push(json!({"name": label, "value": value, "inline": value.chars().count() <= 40}));
    }
    json!({
        "allowed_mentions": {"parse": []},
        "embeds": [{
            "title": title,
            "color": colour,
            "fields": fields,
            "footer": {"text": footer},
            "timestamp": summary.at,
        }],
    })
}

/// `text` with Discord Markdown escaped, within `max` characters (an escape is never
/// split from its character).
pub fn escape_within(text: &str, max: usize) -> String {
    const SPECIAL: &[char] = &[
        '\\', '*', '_', '`', '~', '|', '>', '[', ']', '(', ')', '#', '-', '@', '<',
    ];
    let cost = |c: char| if SPECIAL.contains(&c) { 2 } else { 1 };
    let total: usize = text.chars().map(cost).sum();
    let budget = if total <= max {
        max
    } else {
        max.saturating_sub(1)
    };
    let mut out = String::new();
    let mut used = 0;
    for c in text.chars() {
        if used + cost(c) > budget {
            out.push('…');
            return out;
        }
        if cost(c) == 2 {
            out.push('\\');
        }
        out.push(c);
        used += cost(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::golden;
    use super::super::{Summary, Target, TargetKind, render};
    use super::*;

    fn total(m: &Value) -> usize {
        let e = &m["embeds"][0];
        let s = |v: &Value| v.as_str().map_or(0, |s| s.chars().count());
        s(&e["title"])
            + s(&e["footer"]["text"])
            + e["fields"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| s(&f["name"]) + s(&f["value"]))
                .sum::<usize>()
    }

    #[test]
    fn golden_files() {
        for (name, event) in golden::events() {
            let r = render(Target::of(TargetKind::Discord), &event, golden::AT).unwrap();
            golden::check("discord", name, &r.body);
        }
    }

    #[test]
    fn limits_hold_for_text_far_over_them() {
        for event in [golden::hostile_text(), golden::huge_batch()] {
            let m = message(&Summary::of(&event, golden::AT));
            assert!(total(&m) <= EMBED_TOTAL_MAX, "{}", total(&m));
            for f in m["embeds"][0]["fields"].as_array().unwrap() {
                assert!(f["value"].as_str().unwrap().chars().count() <= FIELD_VALUE_MAX);
            }
        }
    }

    #[test]
    fn mentions_are_off_and_markdown_is_inert() {
        let m = message(&Summary::of(&golden::hostile_text(), golden::AT));
        assert_eq!(m["allowed_mentions"], json!({"parse": []}));
        let value = m["embeds"][0]["fields"][0]["value"].as_str().unwrap();
        assert!(value.starts_with("\\<!channel\\> \\@everyone"), "{value}");
        assert_eq!(escape_within("a*b", 4), "a\\*b");
        assert_eq!(escape_within("a*b", 3), "a…");
    }
}
