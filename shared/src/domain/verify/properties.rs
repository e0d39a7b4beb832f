//! Properties of the three schemes over generated secrets, ids, bodies and times: what
//! a signer who knows a secret produces always passes (also during a rotation, with
//! both secrets configured), and changing any signed byte, the time past the window, or
//! the secret makes it fail. Garbage never passes and never panics (the fuzz targets
//! `token`, `upstream_hmac` and `standard_webhooks` push the same code further).

use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};
use proptest::prelude::*;

use super::fixtures::req;
use super::*;

const TOLERANCE: i64 = 300;
const NOW: i64 = 1_795_000_000;

fn now() -> Timestamp {
    Timestamp::from_secs(NOW)
}

fn secret() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 1..64)
}

fn task_id() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_-]{1,40}"
}

fn body_for(task_id: &str) -> Vec<u8> {
    format!(r#"{{"code":200,"msg":"ok","data":{{"task_id":"{task_id}","video_url":"https://cdn.example/v.mp4"}}}}"#)
        .into_bytes()
}

fn headers(pairs: &[(&str, String)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

/// Flips one bit of a base64 signature's decoded bytes and re-encodes it.
fn flip(b64: &str, bit: usize) -> String {
    let mut bytes = BASE64.decode(b64).unwrap();
    let i = bit % (bytes.len() * 8);
    bytes[i / 8] ^= 1 << (i % 8);
    BASE64.encode(bytes)
}

fn verifier_upstream(secrets: &[Vec<u8>]) -> Verifier {
    Verifier::default()
        .with_upstream_hmac(secrets.iter().cloned().map(Secret::new).collect())
        .with_tolerance(Duration::from_secs(TOLERANCE as u64))
}

fn verifier_standard(keys: &[Vec<u8>]) -> Verifier {
    Verifier::default()
        .with_standard_webhooks(keys.iter().cloned().map(Secret::new).collect())
        .with_tolerance(Duration::from_secs(TOLERANCE as u64))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn a_token_passes_exactly_when_it_is_configured(
        tokens in prop::collection::vec("[!-~]{1,40}", 1..4),
        candidate in "[!-~]{0,40}",
        pick in prop::option::of(0usize..4),
    ) {
        let v = Verifier::default().with_tokens(tokens.iter().map(|t| Secret::new(t.as_str())).collect());
        let provided = match pick {
            Some(i) => tokens[i % tokens.len()].clone(),
            None => candidate,
        };
        let h = HeaderMap::new();
        let got = v.verify(&req(Some(&provided), &h, b"{}"), now());
        prop_assert_eq!(got.is_ok(), tokens.contains(&provided), "{:?}", got);
        // The same token twice is ambiguous, never accepted.
        let twice = [provided.as_str(), provided.as_str()];
        let r = CallbackRequest { tokens: &twice, headers: &h, body: b"{}" };
        prop_assert!(v.verify(&r, now()).is_err());
    }

    #[test]
    fn upstream_hmac_signs_the_task_id_and_time_and_nothing_else_passes(
        current in secret(),
        previous in secret(),
        signer_is_previous in any::<bool>(),
        id in task_id(),
        other_id in task_id(),
        skew in -TOLERANCE..=TOLERANCE,
        beyond in 1i64..100_000,
        bit in any::<usize>(),
    ) {
        let v = verifier_upstream(&[previous.clone(), current.clone()]);
        let key = if signer_is_previous { &previous } else { &current };
        let ts = NOW + skew;
        let body = body_for(&id);
        let sig = upstream_signature(key, &id, ts);
        let signed = |ts: i64, sig: &str| headers(&[
            (UPSTREAM_TIMESTAMP_HEADER, ts.to_string()),
            (UPSTREAM_SIGNATURE_HEADER, sig.to_owned()),
        ]);
        let h = signed(ts, &sig);
        prop_assert_eq!(v.verify(&req(None, &h, &body), now()), Ok(Verified::By(Scheme::UpstreamHmac)));

        // Another task id in the body, a flipped bit, another time, outside the window.
        if other_id != id {
            prop_assert!(v.verify(&req(None, &h, &body_for(&other_id)), now()).is_err());
        }
        let h = signed(ts, &flip(&sig, bit));
        prop_assert!(v.verify(&req(None, &h, &body), now()).is_err());
        let h = signed(ts + 1, &sig);
        prop_assert!(v.verify(&req(None, &h, &body), now()).is_err());
        let stale = NOW - TOLERANCE - beyond;
        let h = signed(stale, &upstream_signature(key, &id, stale));
        prop_assert_eq!(
            reasons(v.verify(&req(None, &h, &body), now())),
            vec![(Scheme::UpstreamHmac, Rejection::StaleTimestamp)]
        );
        let future = NOW + TOLERANCE + beyond;
        let h = signed(future, &upstream_signature(key, &id, future));
        prop_assert_eq!(
            reasons(v.verify(&req(None, &h, &body), now())),
            vec![(Scheme::UpstreamHmac, Rejection::FutureTimestamp)]
        );
        // A secret that is not configured.
        let mut stranger = key.clone();
        stranger.push(0x5a);
        let h = signed(ts, &upstream_signature(&stranger, &id, ts));
        prop_assert!(v.verify(&req(None, &h, &body), now()).is_err());
    }

    #[test]
    fn standard_webhooks_signs_id_time_and_body_and_nothing_else_passes(
        current in secret(),
        previous in secret(),
        signer_is_previous in any::<bool>(),
        id in "[A-Za-z0-9_]{1,64}",
        body in prop::collection::vec(any::<u8>(), 0..256),
        skew in -TOLERANCE..=TOLERANCE,
        junk in prop::collection::vec("[!-~]{0,20}", 0..3),
        byte in any::<usize>(),
        bit in any::<usize>(),
    ) {
        let v = verifier_standard(&[previous.clone(), current.clone()]);
        let key = if signer_is_previous { &previous } else { &current };
        let ts = NOW + skew;
        let good = standard_webhooks_signature(key, &id, ts, &body);
        // Unknown or malformed entries around the good one do not void it.
        let mut entries = junk.clone();
        entries.insert(junk.len() / 2, good.clone());
        let list = entries.join(" ");
        let signed = |id: &str, ts: i64, sigs: &str| headers(&[
            (WEBHOOK_ID_HEADER, id.to_owned()),
            (WEBHOOK_TIMESTAMP_HEADER, ts.to_string()),
            (WEBHOOK_SIGNATURE_HEADER, sigs.to_owned()),
        ]);
        let h = signed(&id, ts, list.trim());
        prop_assert_eq!(v.verify(&req(None, &h, &body), now()), Ok(Verified::By(Scheme::StandardWebhooks)));

        // Any changed body byte, another id, a flipped signature bit, `v1,` alone.
        if !body.is_empty() {
            let mut changed = body.clone();
            let i = byte % changed.len();
            changed[i] ^= 0x01;
            prop_assert!(v.verify(&req(None, &h, &changed), now()).is_err());
        }
        let h2 = signed(&format!("{id}x"), ts, &good);
        prop_assert!(v.verify(&req(None, &h2, &body), now()).is_err());
        let flipped = format!("v1,{}", flip(good.trim_start_matches("v1,"), bit));
        let h3 = signed(&id, ts, &flipped);
        prop_assert!(v.verify(&req(None, &h3, &body), now()).is_err());
        let h4 = signed(&id, ts, "v1,");
        prop_assert_eq!(
            reasons(v.verify(&req(None, &h4, &body), now())),
            vec![(Scheme::StandardWebhooks, Rejection::MalformedSignature)]
        );
        // The signature header twice: ambiguous.
        let mut h5 = signed(&id, ts, &good);
        h5.append(WEBHOOK_SIGNATURE_HEADER, HeaderValue::from_str(&good).unwrap());
        prop_assert!(v.verify(&req(None, &h5, &body), now()).is_err());
    }

    #[test]
    fn garbage_never_passes_and_never_panics(
        names in prop::collection::vec(prop_oneof![
            Just(UPSTREAM_TIMESTAMP_HEADER), Just(UPSTREAM_SIGNATURE_HEADER),
            Just(WEBHOOK_ID_HEADER), Just(WEBHOOK_TIMESTAMP_HEADER), Just(WEBHOOK_SIGNATURE_HEADER),
            Just("content-type"),
        ], 0..8),
        values in prop::collection::vec("[ -~]{0,60}", 8),
        body in prop::collection::vec(any::<u8>(), 0..200),
        token in prop::option::of("[ -~]{0,30}"),
    ) {
        let v = Verifier::default()
            .with_tokens(vec![Secret::new("a-token-nobody-guesses-0123456789")])
            .with_upstream_hmac(vec![Secret::new(b"an-hmac-secret-nobody-guesses".to_vec())])
            .with_standard_webhooks(vec![Secret::new(b"a-whsec-key-nobody-guesses".to_vec())]);
        let pairs: Vec<(&str, String)> = names.iter().zip(&values).map(|(n, v)| (*n, v.trim().to_owned())).collect();
        let h = headers(&pairs);
        let r = v.verify(&req(token.as_deref(), &h, &body), now());
        prop_assert!(r.is_err(), "accepted garbage: {:?}", pairs);
        prop_assert_eq!(r.unwrap_err().reasons.len(), 3);
    }
}

/// Why every scheme refused (an acceptance is reported as no reasons at all).
fn reasons(r: Result<Verified, Rejected>) -> Vec<(Scheme, Rejection)> {
    r.map_or_else(|e| e.reasons, |_| Vec::new())
}
