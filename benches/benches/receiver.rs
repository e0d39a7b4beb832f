//! The receiver's hot path, piece by piece: the envelope parse and each verification
//! scheme on a genuine callback (target: ≤ 10 µs each), next to baselines measured in the
//! same run: `serde_json` parsing the same body into an untyped value (the floor of any
//! JSON parse), and one HMAC-SHA256 of the body (the floor of any signature check).
//! `infra/bench/bench_receiver.py` reads criterion's estimates and prints the ratios.

#![allow(clippy::unwrap_used, clippy::expect_used)] // fixed inputs: a failure is a broken benchmark

use std::hint::black_box;

use benches::{NOW, TOKEN, body, schemes};
use criterion::{Criterion, criterion_group, criterion_main};
use shared::domain::envelope::CallbackEnvelope;
use shared::domain::ssrf::UrlPolicy;
use shared::domain::verify::{CallbackRequest, standard_webhooks_signature};

fn envelope(c: &mut Criterion) {
    let body = body();
    let policy = UrlPolicy::default();
    let mut group = c.benchmark_group("parse");
    group.bench_function("baseline-serde_json-value", |b| {
        b.iter(|| serde_json::from_slice::<serde_json::Value>(black_box(&body)).unwrap())
    });
    group.bench_function("envelope", |b| {
        b.iter(|| CallbackEnvelope::parse(black_box(&body), &policy).unwrap())
    });
    group.finish();
}

fn verify(c: &mut Criterion) {
    let body = body();
    let mut group = c.benchmark_group("verify");
    group.bench_function("baseline-hmac-sha256", |b| {
        b.iter(|| {
            standard_webhooks_signature(
                b"0123456789abcdef0123456789abcdef",
                "id",
                1,
                black_box(&body),
            )
        })
    });
    let tokens = [TOKEN];
    for (name, verifier, headers) in schemes() {
        let request = CallbackRequest {
            tokens: if name == "token" { &tokens } else { &[] },
            headers: &headers,
            body: &body,
        };
        group.bench_function(name, |b| {
            b.iter(|| verifier.verify(black_box(&request), NOW).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, envelope, verify);
criterion_main!(benches);
