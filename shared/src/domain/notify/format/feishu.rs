//! Feishu / Lark custom bots: an `interactive` card (a coloured header, one field per
//! line, a note with the event id), all `plain_text` so nothing in an event is read as
//! `lark_md` (no `<at id=all>`). With a signing secret the body also carries
//! `timestamp` and `sign`: base64 of HMAC-SHA256 keyed with `"{timestamp}\n{secret}"`
//! over nothing, as Feishu specifies. The bot answers `{"code": 0}` on success.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use super::{Summary, Tone};
use crate::domain::clock::Timestamp;
use crate::domain::secret::Secret;

const TITLE_MAX: usize = 200;
const FIELD_MAX_BYTES: usize = 4_000;
/// Feishu refuses request bodies over 20 KB; the card's text stays well inside.
const CARD_TEXT_MAX_BYTES: usize = 16_000;
#[cfg(test)]
const BODY_MAX_BYTES: usize = 20_000;

pub fn message(summary: &Summary, secret: Option<&Secret>, at: Timestamp) -> Value {
    let template = match summary.tone {
        Tone::Good => "green",
        Tone::Bad => "red",
        Tone::Neutral => "blue",
    };
    let mut left = CARD_TEXT_MAX_BYTES;
    let mut fields = Vec::new();
    for (label, value) in &summary.fields {
        let line = crate::domain::text::shorten_bytes(
            &format!("{label}: {value}"),
            FIELD_MAX_BYTES.min(left),
        );
        if line.len() <= '…'.len_utf8() {
            break;
        }
        left = left.saturating_sub(line.len());
        fields.push(json!({"is_short": false, "text": {"tag": "plain_text", "content": line}}));
    }
    let mut body = json!({
        "msg_type": "interactive",
        "card": {
            "config": {"wide_screen_mode": true},
            "header": {
                "template": template,
                "title": {"tag": "plain_text", "content": crate::domain::text::shorten_chars(&summary.title, TITLE_MAX)},
            },
            "elements": [
                {"tag": "div", "fields": fields},
                {"tag": "note", "elements": [{"tag": "plain_text", "content": format!("{} · {} · {}", summary.event_type, summary.event_id, summary.at)}]},
            ],
        },
    });
    if let Some(secret) = secret {
        let ts = at.as_secs().to_string();
        body["timestamp"] = Value::String(ts.clone());
        body["sign"] = Value::String(sign(secret, &ts));
    }
    body
}

/// Feishu's signature for `timestamp` (Unix seconds, as a string).
pub fn sign(secret: &Secret, timestamp: &str) -> String {
    let mut key = timestamp.as_bytes().to_vec();
    key.push(b'\n');
    key.extend_from_slice(secret.expose());
    // HMAC accepts keys of any length.
    let mac = Hmac::<Sha256>::new_from_slice(&key)
        .map(Mac::finalize)
        .map(|out| out.into_bytes().to_vec())
        .unwrap_or_default();
    BASE64.encode(mac)
}

#[cfg(test)]
mod tests {
    use super::super::golden;
    use super::super::{Summary, Target, TargetKind, render};
    use super::*;

    #[test]
    fn golden_files() {
        for (name, event) in golden::events() {
            let r = render(Target::of(TargetKind::Feishu), &event, golden::AT).unwrap();
            golden::check("feishu", name, &r.body);
        }
        let secret = Secret::new(b"demo-secret".to_vec());
        let target = Target {
            feishu_secret: Some(&secret),
            ..Target::of(TargetKind::Feishu)
        };
        let r = render(target, &golden::failed(), golden::AT).unwrap();
        golden::check("feishu", "failed_signed", &r.body);
    }

    #[test]
    fn the_signature_is_feishus() {
        // Computed independently: printf '' | openssl dgst -sha256 -hmac $'1599360473\ndemo' -binary | base64
        let secret = Secret::new(b"demo".to_vec());
        assert_eq!(sign(&secret, "1599360473"), independent("1599360473\ndemo"));
        let m = message(
            &Summary::of(&golden::failed(), golden::AT),
            Some(&secret),
            Timestamp::from_secs(1_599_360_473),
        );
        assert_eq!(m["timestamp"], "1599360473");
        assert_eq!(m["sign"], Value::String(sign(&secret, "1599360473")));
        assert!(
            message(
                &Summary::of(&golden::failed(), golden::AT),
                None,
                golden::AT
            )
            .get("sign")
            .is_none()
        );
    }

    /// HMAC-SHA256 written out from its definition (RFC 2104), to check `sign` against.
    fn independent(key: &str) -> String {
        use sha2::Digest;
        let mut k = key.as_bytes().to_vec();
        if k.len() > 64 {
            k = Sha256::digest(&k).to_vec();
        }
        k.resize(64, 0);
        let ipad: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
        let opad: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
        let inner = Sha256::digest(&ipad);
        let outer = Sha256::digest([opad, inner.to_vec()].concat());
        BASE64.encode(outer)
    }

    #[test]
    fn text_stays_plain_and_within_limits() {
        let m = message(
            &Summary::of(&golden::hostile_text(), golden::AT),
            None,
            golden::AT,
        );
        let text = m.to_string();
        assert!(!text.contains("lark_md"));
        for event in [golden::hostile_text(), golden::huge_batch()] {
            let m = message(&Summary::of(&event, golden::AT), None, golden::AT);
            let body = serde_json::to_vec(&m).unwrap();
            assert!(body.len() < BODY_MAX_BYTES, "{}", body.len());
            let fields = m["card"]["elements"][0]["fields"].as_array().unwrap();
            let bytes: usize = fields
                .iter()
                .map(|f| f["text"]["content"].as_str().unwrap().len())
                .sum();
            assert!(bytes <= CARD_TEXT_MAX_BYTES);
        }
    }
}
