//! `mvcb callback send`: a test callback signed the way the receiver verifies it, with
//! the signing code the receiver itself is tested against (`shared::domain::verify`):
//! `?token=`, the upstream's `X-Webhook-Signature`, or Standard Webhooks.

use serde_json::{Value, json};
use shared::Timestamp;
use shared::domain::verify::standard_webhooks::decode_whsec;
use shared::domain::verify::{
    UPSTREAM_SIGNATURE_HEADER, UPSTREAM_TIMESTAMP_HEADER, WEBHOOK_ID_HEADER,
    WEBHOOK_SIGNATURE_HEADER, WEBHOOK_TIMESTAMP_HEADER, standard_webhooks_signature,
    upstream_signature,
};

use super::{Ctx, task_id};
use crate::cli::{CallbackCommand, Scheme, SendArgs};
use crate::error::CliError;
use crate::http::{Answer, answer};
use crate::output::{cell, emit};
use crate::target::Target;

pub async fn run(ctx: &Ctx, command: CallbackCommand) -> Result<(), CliError> {
    let CallbackCommand::Send(args) = command;
    let (task, answer) = send(ctx, &args).await?;
    let shown = json!({ "task_id": task, "scheme": scheme_name(args.scheme),
                        "status": answer.status, "answer": answer.body });
    emit(ctx.format, &shown, || {
        format!(
            "{task}: HTTP {} {} ({})\n",
            answer.status,
            cell(&answer.body["status"]),
            scheme_name(args.scheme)
        )
    })?;
    match answer.status {
        200 => Ok(()),
        status => Err(CliError::from_answer("the receiver", status, &answer.body)),
    }
}

pub fn scheme_name(scheme: Scheme) -> &'static str {
    match scheme {
        Scheme::Token => "token",
        Scheme::UpstreamHmac => "upstream-hmac",
        Scheme::StandardWebhooks => "standard-webhooks",
    }
}

/// A callback ready to POST: URL, headers, body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCallback {
    pub url: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

/// The callback body the upstream sends.
pub fn envelope(task_id: &str, code: u16, msg: &str, video_url: Option<&str>) -> Value {
    json!({ "code": code, "msg": msg, "data": { "task_id": task_id, "video_url": video_url } })
}

/// Signs `body` for `scheme` with `secret` at `now` (`webhook_id` for Standard Webhooks).
pub fn sign(
    callback_url: &str,
    scheme: Scheme,
    secret: &str,
    task_id: &str,
    body: Vec<u8>,
    now: Timestamp,
    webhook_id: &str,
) -> Result<SignedCallback, CliError> {
    let ts = now.as_secs();
    let mut headers = vec![("content-type", "application/json".to_owned())];
    let mut url = url::Url::parse(callback_url)
        .map_err(|e| CliError::Target(format!("callback URL {callback_url:?}: {e}")))?;
    match scheme {
        Scheme::Token => {
            url.query_pairs_mut().append_pair("token", secret);
        }
        Scheme::UpstreamHmac => {
            headers.push((UPSTREAM_TIMESTAMP_HEADER, ts.to_string()));
            headers.push((
                UPSTREAM_SIGNATURE_HEADER,
                upstream_signature(secret.as_bytes(), task_id, ts),
            ));
        }
        Scheme::StandardWebhooks => {
            let key = decode_whsec(secret)
                .map_err(|e| CliError::Usage(format!("the Standard Webhooks secret: {e}")))?;
            headers.push((WEBHOOK_ID_HEADER, webhook_id.to_owned()));
            headers.push((WEBHOOK_TIMESTAMP_HEADER, ts.to_string()));
            headers.push((
                WEBHOOK_SIGNATURE_HEADER,
                standard_webhooks_signature(&key, webhook_id, ts, &body),
            ));
        }
    }
    Ok(SignedCallback {
        url: url.into(),
        headers,
        body,
    })
}

/// The target's secret for `scheme` (or the one given).
fn secret(target: &Target, scheme: Scheme, given: Option<&str>) -> Result<String, CliError> {
    let known = match scheme {
        Scheme::Token => &target.secrets.token,
        Scheme::UpstreamHmac => &target.secrets.upstream_hmac,
        Scheme::StandardWebhooks => &target.secrets.standard_webhooks,
    };
    let variable = match scheme {
        Scheme::Token => "MVCB_CALLBACK_TOKEN",
        Scheme::UpstreamHmac => "MVCB_UPSTREAM_HMAC_SECRET",
        Scheme::StandardWebhooks => "MVCB_STANDARD_WEBHOOKS_SECRET",
    };
    given
        .map(str::to_owned)
        .or_else(|| known.clone())
        .ok_or_else(|| {
            CliError::Usage(format!(
                "no {} secret for {}: pass --secret, or set {variable} (or MVCB_CALLBACK_SECRET)",
                scheme_name(scheme),
                target.name()
            ))
        })
}

/// Sends the callback `args` describe; the task id and the receiver's answer.
pub async fn send(ctx: &Ctx, args: &SendArgs) -> Result<(String, Answer), CliError> {
    let task = match &args.task_id {
        Some(raw) => task_id(raw)?.to_string(),
        None => format!("mvcb-{:012x}", fastrand::u64(..) >> 16),
    };
    let video_url = match (args.code, &args.video_url) {
        (200, Some(url)) => Some(url.clone()),
        (200, None) => Some(ctx.target.sample_video.clone().ok_or_else(|| {
            CliError::Usage(
                "a success callback needs --video-url (an https URL the stack may fetch)".into(),
            )
        })?),
        (_, given) => given.clone(),
    };
    let body = envelope(&task, args.code, &args.msg, video_url.as_deref())
        .to_string()
        .into_bytes();
    let secret = secret(&ctx.target, args.scheme, args.secret.as_deref())?;
    let webhook_id = format!("msg_mvcb{:016x}", fastrand::u64(..));
    let signed = sign(
        &ctx.target.callback_url,
        args.scheme,
        &secret,
        &task,
        body,
        Timestamp::now(),
        &webhook_id,
    )?;
    let mut request = ctx.api.client().post(&signed.url);
    for (name, value) in &signed.headers {
        request = request.header(*name, value);
    }
    let what = "POST the callback URL";
    let response = request
        .body(signed.body)
        .send()
        .await
        .map_err(|source| CliError::Http {
            what: what.into(),
            source,
        })?;
    Ok((task, answer(response, what).await?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderMap, HeaderName, HeaderValue};
    use shared::domain::secret::Secret;
    use shared::domain::verify::{CallbackRequest, Verifier};

    const URL: &str = "https://api.example/callbacks/music-video";
    const TOKEN: &str = "tok-0123456789abcdef";
    const HMAC: &str = "upstream-secret-0123456789";
    const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn verifier() -> Verifier {
        Verifier::default()
            .with_tokens(vec![Secret::new(TOKEN.as_bytes().to_vec())])
            .with_upstream_hmac(vec![Secret::new(HMAC.as_bytes().to_vec())])
            .with_standard_webhooks(vec![Secret::new(decode_whsec(WHSEC).unwrap())])
    }

    /// What the receiver sees of a signed callback: accepted by the shared verifier?
    fn verifies(signed: &SignedCallback, verifier: &Verifier, now: Timestamp) -> bool {
        let url = url::Url::parse(&signed.url).unwrap();
        let tokens: Vec<String> = url
            .query_pairs()
            .filter(|(k, _)| k == "token")
            .map(|(_, v)| v.into_owned())
            .collect();
        let tokens: Vec<&str> = tokens.iter().map(String::as_str).collect();
        let mut headers = HeaderMap::new();
        for (name, value) in &signed.headers {
            headers.insert(
                HeaderName::from_static(name),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        verifier
            .verify(
                &CallbackRequest {
                    tokens: &tokens,
                    headers: &headers,
                    body: &signed.body,
                },
                now,
            )
            .is_ok()
    }

    #[test]
    fn each_scheme_signs_what_the_receivers_verifier_accepts() {
        let now = Timestamp::from_secs(1_795_000_000);
        let body = envelope("t-1", 200, "ok", Some("https://cdn.example/v.mp4"))
            .to_string()
            .into_bytes();
        for (scheme, secret) in [
            (Scheme::Token, TOKEN),
            (Scheme::UpstreamHmac, HMAC),
            (Scheme::StandardWebhooks, WHSEC),
        ] {
            let signed = sign(URL, scheme, secret, "t-1", body.clone(), now, "msg_1").unwrap();
            assert!(verifies(&signed, &verifier(), now), "{scheme:?}");
            let wrong = sign(
                URL,
                scheme,
                "wrong-secret-0123456789",
                "t-1",
                body.clone(),
                now,
                "msg_1",
            );
            if let Ok(wrong) = wrong {
                assert!(
                    !verifies(&wrong, &verifier(), now),
                    "{scheme:?} with a wrong secret"
                );
            }
        }
        let token = sign(URL, Scheme::Token, TOKEN, "t-1", body.clone(), now, "m").unwrap();
        assert_eq!(token.url, format!("{URL}?token={TOKEN}"));
        let sw = sign(
            URL,
            Scheme::StandardWebhooks,
            WHSEC,
            "t-1",
            body.clone(),
            now,
            "msg_1",
        )
        .unwrap();
        assert!(
            sw.headers
                .iter()
                .any(|(k, v)| *k == "webhook-signature" && v.starts_with("v1,"))
        );
        assert_eq!(
            sign(
                URL,
                Scheme::StandardWebhooks,
                "not-whsec",
                "t",
                body,
                now,
                "m"
            )
            .unwrap_err()
            .exit_code(),
            2
        );
    }

    #[test]
    fn the_envelope_is_the_upstreams() {
        assert_eq!(
            envelope("t-1", 451, "download failed", None),
            json!({"code": 451, "msg": "download failed", "data": {"task_id": "t-1", "video_url": null}})
        );
    }
}
