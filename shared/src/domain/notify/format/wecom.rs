//! WeCom (企业微信) group robots: a `markdown` message of at most 4 096 bytes of UTF-8,
//! cut on a character boundary. The robot answers every request with a 200 and puts
//! the outcome in `errcode` (read by `classify`). Its Markdown has no escape, so `<`,
//! `>`, `[` and `]` from an event are shown as their full-width forms: nothing in an
//! event can become a mention (`<@userid>`), a `<font>` tag or a link.

use serde_json::{Value, json};

use super::{Summary, Tone};

pub const CONTENT_MAX_BYTES: usize = 4_096;

pub fn message(summary: &Summary) -> Value {
    let colour = match summary.tone {
        Tone::Good => "info",
        Tone::Bad => "warning",
        Tone::Neutral => "comment",
    };
    let mut content = format!(
        "<font color=\"{colour}\">**{}**</font>\n",
        inert(&summary.title)
    );
    let footer = format!(
        "\n<font color=\"comment\">{} · {} · {}</font>",
        summary.event_type, summary.event_id, summary.at
    );
    let body: String = summary
        .fields
        .iter()
        .map(|(label, value)| format!("> {label}: {}\n", inert(value)))
        .collect();
    // The footer always fits; the fields get what is left.
    let room = CONTENT_MAX_BYTES
        .saturating_sub(content.len())
        .saturating_sub(footer.len());
    content.push_str(&crate::domain::text::shorten_bytes(&body, room));
    content.push_str(&footer);
    json!({"msgtype": "markdown", "markdown": {"content": content}})
}

fn inert(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '<' => '＜',
            '>' => '＞',
            '[' => '［',
            ']' => '］',
            c => c,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::golden;
    use super::super::{Summary, Target, TargetKind, render};
    use super::*;

    fn content(m: &Value) -> &str {
        m["markdown"]["content"].as_str().unwrap()
    }

    #[test]
    fn golden_files() {
        for (name, event) in golden::events() {
            let r = render(Target::of(TargetKind::WeCom), &event, golden::AT).unwrap();
            golden::check("wecom", name, &r.body);
        }
    }

    #[test]
    fn multi_byte_text_is_cut_on_a_character_boundary_within_4096_bytes() {
        for event in [golden::hostile_text(), golden::huge_batch()] {
            let m = message(&Summary::of(&event, golden::AT));
            let c = content(&m);
            assert!(c.len() <= CONTENT_MAX_BYTES, "{}", c.len());
            assert!(
                c.len() > CONTENT_MAX_BYTES - 8,
                "uses the room it has: {}",
                c.len()
            );
            assert!(c.contains('…'));
            assert!(c.ends_with("</font>"), "the footer survives the cut");
        }
    }

    #[test]
    fn nothing_becomes_a_mention_a_tag_or_a_link() {
        let m = message(&Summary::of(&golden::hostile_text(), golden::AT));
        let c = content(&m);
        assert!(
            !c.contains("<@123>") && !c.contains("<b>") && !c.contains("](https"),
            "{c}"
        );
        assert!(c.contains("＜@123＞"));
    }
}
