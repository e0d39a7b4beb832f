//! What the operator routes show of an endpoint. Chat URLs carry their credential and
//! signing secrets are secrets: after creation they are shown as host and last 4
//! characters (or last 4 only), never whole, so a listing can be pasted into a ticket.

use serde::Serialize;

use super::Endpoint;
use crate::domain::clock::Timestamp;
use crate::domain::notify::endpoint::{
    EndpointId, Filter, RateLimit, Threshold, mask_secret, mask_url,
};
use crate::domain::notify::format::TargetKind;
use crate::domain::notify::health::Health;

#[derive(Debug, Serialize)]
pub struct EndpointView<'a> {
    pub id: &'a EndpointId,
    pub kind: TargetKind,
    /// Whole for generic webhooks and custom endpoints, masked for chat kinds.
    pub url: String,
    pub description: &'a str,
    pub filter: &'a Filter,
    pub threshold: &'a Threshold,
    pub rate_limit: Option<RateLimit>,
    pub retry_schedule_secs: Vec<u64>,
    pub include_video_url: bool,
    pub enabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled_at: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled_reason: Option<&'a str>,
    pub health: Health,
    /// The signing secret's last 4 characters (and the rotated-out one's, while it signs).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub signing_secrets: Vec<String>,
    /// Ed25519 endpoints: the `whpk_` public keys receivers verify `v1a` with (public:
    /// shown whole; the rotated-out one too while it signs).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub public_keys: Vec<String>,
    pub signing: crate::domain::notify::signing::SigningScheme,
    pub feishu_secret_set: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl<'a> EndpointView<'a> {
    pub fn of(endpoint: &'a Endpoint, now: Timestamp) -> Self {
        let s = &endpoint.settings;
        let url = if s.kind.url_is_secret() {
            mask_url(&s.url)
        } else {
            without_query(&s.url)
        };
        use crate::domain::notify::signing::{SigningScheme, whsec};
        let signing_secrets = match endpoint.signing.as_ref() {
            Some(keys) if keys.scheme == SigningScheme::HmacSha256 => keys
                .signing_at(now)
                .map(|k| mask_secret(&whsec(k)))
                .collect(),
            _ => Vec::new(),
        };
        let public_keys = endpoint
            .signing
            .as_ref()
            .map(|keys| keys.public_keys_at(now))
            .unwrap_or_default();
        Self {
            id: &endpoint.id,
            kind: s.kind,
            url,
            description: &s.description,
            filter: &s.filter,
            threshold: &s.threshold,
            rate_limit: s.rate_limit,
            retry_schedule_secs: s.retry_schedule().as_secs(),
            include_video_url: s.include_video_url,
            enabled: endpoint.enabled,
            disabled_at: endpoint.disabled.as_ref().map(|(at, _)| *at),
            disabled_reason: endpoint.disabled.as_ref().map(|(_, r)| r.as_str()),
            health: endpoint.health,
            signing_secrets,
            public_keys,
            signing: s.signing,
            feishu_secret_set: endpoint.feishu_secret.is_some(),
            created_at: endpoint.created_at,
            updated_at: endpoint.updated_at,
        }
    }
}

/// A generic endpoint's URL whole, but its query masked: a query may carry a token (as our
/// own receiver's `?token=` does).
fn without_query(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.query().is_some() => {
            parsed.set_query(None);
            format!("{parsed}?…")
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::domain::notify::endpoint::{EndpointSpec, EndpointUrlPolicy};
    use crate::domain::notify::signing::{DEFAULT_ROTATION_OVERLAP, SigningKeys, whsec};
    use crate::domain::secret::Secret;

    const T0: Timestamp = Timestamp::from_secs(1_795_000_000);

    fn endpoint(kind: &str, url: &str) -> Endpoint {
        let spec: EndpointSpec =
            serde_json::from_value(serde_json::json!({"kind": kind, "url": url})).unwrap();
        let settings = spec.validate(&EndpointUrlPolicy::default()).unwrap();
        Endpoint::new(EndpointId::generate(7), settings, None, None, T0)
    }

    #[test]
    fn chat_urls_and_secrets_never_show_whole() {
        let slack_url = "https://hooks.slack.com/services/T0000/B0000/XXXXXXXXXXXXabcd";
        let mut slack = endpoint("slack", slack_url);
        slack.feishu_secret = None;
        let shown = serde_json::to_string(&EndpointView::of(&slack, T0)).unwrap();
        assert!(!shown.contains("XXXXXXXXXXXX"), "{shown}");
        assert!(
            shown.contains(r#""url":"hooks.slack.com/…abcd""#),
            "{shown}"
        );

        let mut hook = endpoint("webhook", "https://hooks.example.com/mv");
        let old = Secret::new(b"old-key-0123456789abcdef-0123456789".to_vec());
        let new = Secret::new(b"new-key-0123456789abcdef-0123456789".to_vec());
        hook.signing =
            Some(SigningKeys::new(old.clone()).rotated(new.clone(), T0, DEFAULT_ROTATION_OVERLAP));
        let view = EndpointView::of(&hook, T0);
        let shown = serde_json::to_string(&view).unwrap();
        assert_eq!(
            view.url, "https://hooks.example.com/mv",
            "a generic URL is not a secret"
        );
        let tokened = endpoint(
            "webhook",
            "https://hooks.example.com/mv?token=SECRETtoken123",
        );
        let masked = serde_json::to_string(&EndpointView::of(&tokened, T0)).unwrap();
        assert!(!masked.contains("SECRETtoken123"), "{masked}");
        assert!(
            masked.contains(r#""url":"https://hooks.example.com/mv?…""#),
            "{masked}"
        );
        for key in [&old, &new] {
            let full = whsec(key);
            assert!(!shown.contains(&full[6..]), "{shown}");
            assert!(shown.contains(&full[full.len() - 4..]));
        }
        assert_eq!(
            view.signing_secrets.len(),
            2,
            "both sign during the rotation"
        );
        let later = EndpointView::of(
            &hook,
            T0.saturating_add(DEFAULT_ROTATION_OVERLAP + Duration::from_secs(1)),
        );
        assert_eq!(later.signing_secrets.len(), 1);
    }
}
