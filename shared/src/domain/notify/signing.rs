//! Signing what we send, as Standard Webhooks (the scheme our own receiver verifies):
//! `webhook-id`, `webhook-timestamp` and `webhook-signature`, the last a space-separated
//! list of `v1,<base64>` HMAC-SHA256 tags over `"{id}.{timestamp}.{body}"`, one per key.
//! During a rotation the previous key keeps signing for an overlap (24 h by default), so a
//! receiver that has not switched yet still finds a signature it can check. An endpoint
//! may instead be signed `v1a,` (ed25519), for receivers that should hold no shared
//! secret: they verify with the `whpk_` public key.

use std::time::Duration;

use crate::domain::clock::Timestamp;
use crate::domain::secret::Secret;
use crate::domain::verify::{
    WEBHOOK_ID_HEADER, WEBHOOK_SIGNATURE_HEADER, WEBHOOK_TIMESTAMP_HEADER,
    standard_webhooks_asymmetric_signature, standard_webhooks_signature,
};

/// How long a rotated-out key keeps signing unless the endpoint says otherwise.
pub const DEFAULT_ROTATION_OVERLAP: Duration = Duration::from_secs(24 * 3600);

/// `key` in its `whsec_<base64>` form: what the operator is given once, at creation,
/// to configure the receiver with.
pub fn whsec(key: &Secret) -> String {
    use base64::Engine as _;
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(key.expose())
    )
}

/// How an endpoint's deliveries are signed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SigningScheme {
    /// `v1,`: HMAC-SHA256 with a shared `whsec_` secret.
    #[default]
    HmacSha256,
    /// `v1a,`: ed25519; the receiver holds only the `whpk_` public key.
    Ed25519,
}

/// An endpoint's signing keys: HMAC keys (decoded from their `whsec_` form), or ed25519
/// seeds (32 bytes) for [`SigningScheme::Ed25519`].
#[derive(Debug, Clone)]
pub struct SigningKeys {
    pub scheme: SigningScheme,
    pub current: Secret,
    /// The key rotated out, and until when it still signs.
    pub previous: Option<(Secret, Timestamp)>,
}

/// The ed25519 key a 32-byte seed stands for (`None` for any other length).
fn ed25519_key(seed: &Secret) -> Option<ed25519_dalek::SigningKey> {
    let seed: [u8; 32] = seed.expose().try_into().ok()?;
    Some(ed25519_dalek::SigningKey::from_bytes(&seed))
}

impl SigningKeys {
    /// HMAC-SHA256 keys.
    pub fn new(current: Secret) -> Self {
        Self::with_scheme(SigningScheme::HmacSha256, current)
    }

    pub fn with_scheme(scheme: SigningScheme, current: Secret) -> Self {
        Self {
            scheme,
            current,
            previous: None,
        }
    }

    /// What the operator is given for the current key: the `whsec_` secret (HMAC, shown
    /// once), or the `whpk_` public key (ed25519; the seed never leaves).
    pub fn shareable(&self) -> String {
        match self.scheme {
            SigningScheme::HmacSha256 => whsec(&self.current),
            SigningScheme::Ed25519 => ed25519_key(&self.current)
                .map(|k| crate::domain::verify::whpk(&k))
                .unwrap_or_default(),
        }
    }

    /// The `whpk_` public keys that verify at `now` (ed25519 only: public, so always
    /// shown whole).
    pub fn public_keys_at(&self, now: Timestamp) -> Vec<String> {
        match self.scheme {
            SigningScheme::HmacSha256 => Vec::new(),
            SigningScheme::Ed25519 => self
                .signing_at(now)
                .filter_map(ed25519_key)
                .map(|k| crate::domain::verify::whpk(&k))
                .collect(),
        }
    }

    /// The keys after rotating to `next` at `now`: the current one signs on for `overlap`.
    pub fn rotated(self, next: Secret, now: Timestamp, overlap: Duration) -> Self {
        Self {
            scheme: self.scheme,
            current: next,
            previous: Some((self.current, now.saturating_add(overlap))),
        }
    }

    /// The keys that sign at `now`: the current one, then the previous one in its overlap.
    pub fn signing_at(&self, now: Timestamp) -> impl Iterator<Item = &Secret> {
        std::iter::once(&self.current).chain(
            self.previous
                .as_ref()
                .filter(|(_, until)| now < *until)
                .map(|(key, _)| key),
        )
    }

    /// The three headers for `body`, sent as event `id` at `now`.
    pub fn headers(&self, id: &str, now: Timestamp, body: &[u8]) -> [(&'static str, String); 3] {
        let ts = now.as_secs();
        let signature = self
            .signing_at(now)
            .filter_map(|key| match self.scheme {
                SigningScheme::HmacSha256 => {
                    Some(standard_webhooks_signature(key.expose(), id, ts, body))
                }
                SigningScheme::Ed25519 => ed25519_key(key)
                    .map(|k| standard_webhooks_asymmetric_signature(&k, id, ts, body)),
            })
            .collect::<Vec<_>>()
            .join(" ");
        [
            (WEBHOOK_ID_HEADER, id.to_owned()),
            (WEBHOOK_TIMESTAMP_HEADER, ts.to_string()),
            (WEBHOOK_SIGNATURE_HEADER, signature),
        ]
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderMap;

    use super::*;
    use crate::domain::verify::standard_webhooks::decode_whsec;
    use crate::domain::verify::{CallbackRequest, Scheme, Verified, Verifier};

    /// The Standard Webhooks specification's test vector.
    const SPEC_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const SPEC_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const SPEC_TS: i64 = 1_614_265_330;
    const SPEC_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SPEC_SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn key(raw: &str) -> Secret {
        Secret::new(decode_whsec(raw).unwrap())
    }

    use crate::test_support::header_map;

    fn verify(keys: Vec<Secret>, headers: &HeaderMap, body: &[u8], now: Timestamp) -> bool {
        passes(
            &Verifier::default().with_standard_webhooks(keys),
            headers,
            body,
            now,
        )
    }

    fn passes(verifier: &Verifier, headers: &HeaderMap, body: &[u8], now: Timestamp) -> bool {
        let req = CallbackRequest {
            tokens: &[],
            headers,
            body,
        };
        matches!(
            verifier.verify(&req, now),
            Ok(Verified::By(Scheme::StandardWebhooks))
        )
    }

    #[test]
    fn whsec_round_trips() {
        assert_eq!(whsec(&key(SPEC_SECRET)), SPEC_SECRET);
    }

    #[test]
    fn the_reference_vector_is_what_we_send() {
        let keys = SigningKeys::new(key(SPEC_SECRET));
        let headers = keys.headers(SPEC_ID, Timestamp::from_secs(SPEC_TS), SPEC_BODY);
        assert_eq!(
            headers,
            [
                ("webhook-id", SPEC_ID.to_owned()),
                ("webhook-timestamp", SPEC_TS.to_string()),
                ("webhook-signature", SPEC_SIG.to_owned()),
            ]
        );
    }

    #[test]
    fn our_verifier_accepts_what_we_sign_and_nothing_else() {
        let now = Timestamp::from_secs(1_795_000_000);
        let k = key(SPEC_SECRET);
        let keys = SigningKeys::new(k.clone());
        let body = br#"{"type":"test"}"#;
        let headers = header_map(&keys.headers("evt_1", now, body));
        assert!(verify(vec![k.clone()], &headers, body, now));
        assert!(!verify(
            vec![k.clone()],
            &headers,
            b"{\"type\":\"tampered\"}",
            now
        ));
        assert!(!verify(
            vec![key("whsec_dGhlIG90aGVyIGtleSwgMzIgYnl0ZXMgbG9uZyEhIQ==")],
            &headers,
            body,
            now
        ));
        // Outside the receiver's tolerance: a captured delivery cannot be replayed later.
        assert!(!verify(
            vec![k],
            &headers,
            body,
            now.saturating_add(Duration::from_secs(3600))
        ));
    }

    #[test]
    fn a_rotation_signs_with_both_keys_until_the_overlap_ends() {
        let now = Timestamp::from_secs(1_795_000_000);
        let old = key(SPEC_SECRET);
        let new = key("whsec_dGhlIG90aGVyIGtleSwgMzIgYnl0ZXMgbG9uZyEhIQ==");
        let keys =
            SigningKeys::new(old.clone()).rotated(new.clone(), now, DEFAULT_ROTATION_OVERLAP);
        let body = b"{}";

        let during = now.saturating_add(Duration::from_secs(3600));
        let headers = keys.headers("evt_2", during, body);
        assert_eq!(headers[2].1.split(' ').count(), 2, "{headers:?}");
        let map = header_map(&headers);
        assert!(
            verify(vec![old.clone()], &map, body, during),
            "a receiver still on the old key"
        );
        assert!(
            verify(vec![new.clone()], &map, body, during),
            "a receiver on the new key"
        );

        let after = now.saturating_add(DEFAULT_ROTATION_OVERLAP);
        let headers = keys.headers("evt_2", after, body);
        assert_eq!(headers[2].1.split(' ').count(), 1);
        let map = header_map(&headers);
        assert!(
            !verify(vec![old], &map, body, after),
            "the old key no longer signs"
        );
        assert!(verify(vec![new], &map, body, after));
    }

    fn verify_public(keys: &[String], headers: &HeaderMap, body: &[u8], now: Timestamp) -> bool {
        let keys = keys
            .iter()
            .map(|k| crate::domain::verify::decode_whpk(k).unwrap())
            .collect();
        let verifier = Verifier::default().with_standard_webhooks_public_keys(keys);
        passes(&verifier, headers, body, now)
    }

    #[test]
    fn ed25519_endpoints_sign_v1a_that_only_their_public_key_verifies() {
        let now = Timestamp::from_secs(1_795_000_000);
        let seed = Secret::new([7u8; 32].to_vec());
        let keys = SigningKeys::with_scheme(SigningScheme::Ed25519, seed);
        let public = keys.public_keys_at(now);
        assert_eq!(public.len(), 1);
        assert!(public[0].starts_with("whpk_"));
        assert_eq!(
            keys.shareable(),
            public[0],
            "the public key is what is shared"
        );
        let body = br#"{"type":"test"}"#;
        let headers = keys.headers("evt_1", now, body);
        assert!(headers[2].1.starts_with("v1a,"), "{:?}", headers[2]);
        let map = header_map(&headers);
        assert!(verify_public(&public, &map, body, now));
        assert!(!verify_public(&public, &map, b"tampered", now));
        let other =
            SigningKeys::with_scheme(SigningScheme::Ed25519, Secret::new([8u8; 32].to_vec()));
        assert!(!verify_public(&other.public_keys_at(now), &map, body, now));
        // A shared-secret verifier finds no v1 entry it could check.
        assert!(!verify(
            vec![Secret::new([7u8; 32].to_vec())],
            &map,
            body,
            now
        ));

        // Rotation: both keys sign during the overlap; a receiver with either key passes.
        let rotated = keys.rotated(
            Secret::new([9u8; 32].to_vec()),
            now,
            DEFAULT_ROTATION_OVERLAP,
        );
        let both = header_map(&rotated.headers("evt_2", now, body));
        assert_eq!(
            both[WEBHOOK_SIGNATURE_HEADER]
                .to_str()
                .unwrap()
                .matches("v1a,")
                .count(),
            2
        );
        assert!(
            verify_public(&public, &both, body, now),
            "the old key still verifies"
        );
        let new = rotated.public_keys_at(now);
        assert_eq!(new.len(), 2);
        assert!(verify_public(&new[..1], &both, body, now));
        let later = now.saturating_add(DEFAULT_ROTATION_OVERLAP);
        let after = header_map(&rotated.headers("evt_3", later, body));
        assert!(
            !verify_public(&public, &after, body, later),
            "the old key stopped signing"
        );
    }
}
