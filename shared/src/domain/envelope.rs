//! The upstream's callback body, parsed into a [`CallbackEnvelope`] that cannot hold a
//! bad value: a valid [`TaskId`], and a [`VideoUrl`] exactly when the task succeeded.
//!
//! ```json
//! {"code":200,"msg":"MP4 generated successfully.","data":{"task_id":"...","video_url":"https://..."}}
//! ```
//! Unknown fields are tolerated (the upstream may add some); every rejection is an
//! [`EnvelopeError`] with a stable machine code.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use url::Url;

use crate::domain::ssrf::{Blocked, UrlPolicy};
use crate::domain::task_id::{TaskId, TaskIdError};

/// Longest accepted video URL (signed CDN URLs are long, but not this long).
pub const MAX_VIDEO_URL_LEN: usize = 2048;

/// The upstream's success code; any other accepted code is a failure.
pub const SUCCESS_CODE: u16 = 200;

/// What the callback says happened to the task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// `code == 200`: the video is ready at `video_url`.
    Succeeded { video_url: VideoUrl },
    /// A 4xx/5xx code (400 bad request, 451 source download failed, 500 server error, or
    /// a newer failure code): `video_url` was null or absent.
    Failed { code: u16 },
}

/// A parsed, validated callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackEnvelope {
    pub task_id: TaskId,
    pub msg: String,
    pub outcome: Outcome,
}

impl CallbackEnvelope {
    /// The upstream's code as sent.
    pub fn code(&self) -> u16 {
        match self.outcome {
            Outcome::Succeeded { .. } => SUCCESS_CODE,
            Outcome::Failed { code } => code,
        }
    }

    pub fn video_url(&self) -> Option<&VideoUrl> {
        match &self.outcome {
            Outcome::Succeeded { video_url } => Some(video_url),
            Outcome::Failed { .. } => None,
        }
    }

    /// Parses a raw body. `policy` decides whether plain-http video URLs are acceptable
    /// (only for local use); where a URL may lead is ingest's SSRF guard's business.
    pub fn parse(body: &[u8], policy: &UrlPolicy) -> Result<Self, EnvelopeError> {
        let root = strict_json(body).map_err(|e| EnvelopeError::InvalidJson(e.to_string()))?;
        let Value::Object(root) = root else {
            return Err(EnvelopeError::InvalidJson(
                "body is not a JSON object".into(),
            ));
        };

        let code = parse_code(root.get("code"))?;
        let msg = match root.get("msg") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(_) => return Err(EnvelopeError::InvalidMsg),
        };
        let data = match root.get("data") {
            None | Some(Value::Null) => return Err(EnvelopeError::MissingTaskId),
            Some(Value::Object(data)) => data,
            Some(_) => return Err(EnvelopeError::InvalidJson("data is not an object".into())),
        };
        let task_id = match data.get("task_id") {
            None | Some(Value::Null) => return Err(EnvelopeError::MissingTaskId),
            Some(Value::String(s)) => TaskId::parse(s).map_err(EnvelopeError::InvalidTaskId)?,
            Some(_) => return Err(EnvelopeError::InvalidTaskId(TaskIdError::InvalidCharacter)),
        };
        let raw_url = match data.get("video_url") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.as_str()),
            Some(_) => return Err(EnvelopeError::InvalidVideoUrl(VideoUrlError::NotAString)),
        };

        let outcome = match (code, raw_url) {
            (SUCCESS_CODE, Some(raw)) => Outcome::Succeeded {
                video_url: VideoUrl::parse(raw, policy).map_err(EnvelopeError::InvalidVideoUrl)?,
            },
            (SUCCESS_CODE, None) => return Err(EnvelopeError::MissingVideoUrl),
            (code, None) => Outcome::Failed { code },
            (_, Some(_)) => return Err(EnvelopeError::UnexpectedVideoUrl),
        };
        Ok(Self {
            task_id,
            msg,
            outcome,
        })
    }
}

fn parse_code(raw: Option<&Value>) -> Result<u16, EnvelopeError> {
    let Some(raw) = raw.filter(|v| !v.is_null()) else {
        return Err(EnvelopeError::MissingCode);
    };
    let Some(code) = raw.as_i64() else {
        return Err(EnvelopeError::InvalidCode);
    };
    match u16::try_from(code) {
        Ok(SUCCESS_CODE) => Ok(SUCCESS_CODE),
        // Failure codes: the documented 400/451/500 and any newer 4xx/5xx, recorded as sent
        // rather than refused, so a failure is never lost to an unknown code.
        Ok(c @ 400..=599) => Ok(c),
        _ => Err(EnvelopeError::UnsupportedCode(code)),
    }
}

/// JSON with no key twice in one object: with duplicates, two parsers (ours and the
/// signer's, or a proxy's) can read two different callbacks from the same bytes.
pub fn strict_json(body: &[u8]) -> Result<Value, serde_json::Error> {
    use serde::de::DeserializeSeed as _;
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let value = StrictValue.deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(value)
}

/// Deserialises a [`Value`], refusing duplicate object keys.
struct StrictValue;

impl<'de> serde::de::DeserializeSeed<'de> for StrictValue {
    type Value = Value;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for StrictValue {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(StrictValue)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(serde::de::Error::custom(format_args!(
                    "duplicate key {key:?}"
                )));
            }
            let value = map.next_value_seed(StrictValue)?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

/// Reads `data.task_id` as sent, without validating anything else: the upstream's
/// signature covers the raw id, so verification needs it before the body is trusted.
pub fn probe_task_id(body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Probe {
        data: ProbeData,
    }
    #[derive(Deserialize)]
    struct ProbeData {
        task_id: String,
    }
    serde_json::from_slice::<Probe>(body)
        .ok()
        .map(|p| p.data.task_id)
}

/// An absolute http(s) URL without credentials whose stored (normalised) form is at most
/// [`MAX_VIDEO_URL_LEN`] long. `Debug` and `Display` omit the query string (see
/// [`VideoUrl::redacted`]).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct VideoUrl(Url);

impl VideoUrl {
    /// Checks the URL's shape under `policy`: scheme (`allow_http`), host, no credentials,
    /// and the length of what will be stored: the parser percent-encodes spaces and
    /// non-ASCII, so the normalised form can be three times longer than the raw one.
    pub fn parse(raw: &str, policy: &UrlPolicy) -> Result<Self, VideoUrlError> {
        // Cheap pre-check before parsing; the binding limit is on the normalised form.
        if raw.len() > MAX_VIDEO_URL_LEN {
            return Err(VideoUrlError::TooLong);
        }
        let url = Url::parse(raw).map_err(|_| VideoUrlError::Malformed)?;
        if url.as_str().len() > MAX_VIDEO_URL_LEN {
            return Err(VideoUrlError::TooLong);
        }
        policy.check_shape(&url).map_err(|blocked| match blocked {
            Blocked::Scheme(_) => VideoUrlError::SchemeNotAllowed,
            Blocked::Userinfo => VideoUrlError::HasUserinfo,
            _ => VideoUrlError::Malformed,
        })?;
        Ok(Self(url))
    }

    pub fn as_url(&self) -> &Url {
        &self.0
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The URL without its query string, for logs: signed CDN URLs carry credentials there.
    pub fn redacted(&self) -> String {
        let mut u = self.0.clone();
        let had_query = u.query().is_some();
        u.set_query(None);
        u.set_fragment(None);
        let mut s = String::from(u);
        if had_query {
            s.push_str("?<redacted>");
        }
        s
    }
}

impl TryFrom<String> for VideoUrl {
    type Error = VideoUrlError;
    /// Re-reading a stored URL is never stricter than writing it: it was validated on the
    /// way in (possibly under a policy that allowed http, or an older limit), so only that
    /// it is a URL with a host is checked; the SSRF guard judges it again at fetch time.
    fn try_from(value: String) -> Result<Self, Self::Error> {
        let url = Url::parse(&value).map_err(|_| VideoUrlError::Malformed)?;
        if url.host().is_none() {
            return Err(VideoUrlError::Malformed);
        }
        Ok(Self(url))
    }
}

impl From<VideoUrl> for String {
    fn from(value: VideoUrl) -> Self {
        value.0.into()
    }
}

impl fmt::Debug for VideoUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VideoUrl({})", self.redacted())
    }
}

impl fmt::Display for VideoUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// Why a `video_url` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VideoUrlError {
    #[error("video_url is not a string")]
    NotAString,
    #[error("video_url is longer than {MAX_VIDEO_URL_LEN} characters")]
    TooLong,
    #[error("video_url is not an absolute URL with a host")]
    Malformed,
    #[error("video_url must use https")]
    SchemeNotAllowed,
    #[error("video_url must not carry a user name or password")]
    HasUserinfo,
}

/// Why a callback body was refused. [`EnvelopeError::code`] is the stable machine code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("body is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("code is missing")]
    MissingCode,
    #[error("code is not an integer")]
    InvalidCode,
    #[error("code {0} is not 200 or a 4xx/5xx failure code")]
    UnsupportedCode(i64),
    #[error("msg is not a string")]
    InvalidMsg,
    #[error("data.task_id is missing")]
    MissingTaskId,
    #[error("data.task_id is invalid: {0}")]
    InvalidTaskId(TaskIdError),
    #[error("data.video_url is required when code is 200")]
    MissingVideoUrl,
    #[error("data.video_url is invalid: {0}")]
    InvalidVideoUrl(VideoUrlError),
    #[error("data.video_url must be null when code is not 200")]
    UnexpectedVideoUrl,
}

impl EnvelopeError {
    /// Stable, machine-readable error code for API responses and logs.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidJson(_) => "invalid_json",
            Self::MissingCode => "missing_code",
            Self::InvalidCode => "invalid_code",
            Self::UnsupportedCode(_) => "unsupported_code",
            Self::InvalidMsg => "invalid_msg",
            Self::MissingTaskId => "missing_task_id",
            Self::InvalidTaskId(_) => "invalid_task_id",
            Self::MissingVideoUrl => "missing_video_url",
            Self::InvalidVideoUrl(_) => "invalid_video_url",
            Self::UnexpectedVideoUrl => "unexpected_video_url",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    pub(super) const STRICT: UrlPolicy = UrlPolicy {
        allow_http: false,
        allow_loopback: false,
        allowed_hosts: Vec::new(),
    };

    fn parse(v: Value) -> Result<CallbackEnvelope, EnvelopeError> {
        CallbackEnvelope::parse(v.to_string().as_bytes(), &STRICT)
    }

    fn code_of(v: Value) -> &'static str {
        parse(v).unwrap_err().code()
    }

    #[test]
    fn parses_the_upstream_success_example() {
        let env = parse(json!({
            "code": 200, "msg": "MP4 generated successfully.",
            "data": {"task_id": "taskId_774b9aa0422f",
                     "video_url": "https://example.com/videos/video_847715e66259.mp4"}
        }))
        .unwrap();
        assert_eq!(env.task_id.as_str(), "taskId_774b9aa0422f");
        assert_eq!(env.code(), 200);
        assert_eq!(env.msg, "MP4 generated successfully.");
        assert_eq!(
            env.video_url().unwrap().as_str(),
            "https://example.com/videos/video_847715e66259.mp4"
        );
    }

    #[test]
    fn parses_documented_failures_with_null_or_absent_url() {
        for code in [400, 451, 500] {
            let env = parse(json!({"code": code, "msg": "boom",
                                   "data": {"task_id": "t1", "video_url": null}}))
            .unwrap();
            assert_eq!(env.outcome, Outcome::Failed { code });
            let env =
                parse(json!({"code": code, "msg": "boom", "data": {"task_id": "t1"}})).unwrap();
            assert_eq!(env.video_url(), None);
        }
    }

    #[test]
    fn tolerates_unknown_fields_and_missing_msg() {
        let env = parse(json!({"code": 200, "extra": [1, 2],
            "data": {"task_id": "t", "video_url": "https://cdn.example/v.mp4", "duration": 31.5}}))
        .unwrap();
        assert_eq!(env.msg, "");
    }

    #[test]
    fn each_rejection_has_its_code() {
        let url = "https://cdn.example/v.mp4";
        assert_eq!(
            CallbackEnvelope::parse(b"{not json", &STRICT)
                .unwrap_err()
                .code(),
            "invalid_json"
        );
        assert_eq!(code_of(json!([1, 2])), "invalid_json");
        assert_eq!(code_of(json!({"code": 200, "data": "x"})), "invalid_json");
        assert_eq!(code_of(json!({"data": {"task_id": "t"}})), "missing_code");
        assert_eq!(
            code_of(json!({"code": "200", "data": {"task_id": "t"}})),
            "invalid_code"
        );
        assert_eq!(
            code_of(json!({"code": 200.5, "data": {"task_id": "t"}})),
            "invalid_code"
        );
        for c in [0, 100, 201, 302, 399, 600, -1, 70_000] {
            assert_eq!(
                code_of(json!({"code": c, "data": {"task_id": "t"}})),
                "unsupported_code"
            );
        }
        assert_eq!(
            code_of(json!({"code": 500, "msg": 3, "data": {"task_id": "t"}})),
            "invalid_msg"
        );
        assert_eq!(code_of(json!({"code": 200})), "missing_task_id");
        assert_eq!(
            code_of(json!({"code": 200, "data": {"video_url": url}})),
            "missing_task_id"
        );
        assert_eq!(
            code_of(json!({"code": 200, "data": {"task_id": null}})),
            "missing_task_id"
        );
        assert_eq!(
            code_of(json!({"code": 200, "data": {"task_id": "a/b", "video_url": url}})),
            "invalid_task_id"
        );
        assert_eq!(
            code_of(json!({"code": 200, "data": {"task_id": 7, "video_url": url}})),
            "invalid_task_id"
        );
        assert_eq!(
            code_of(json!({"code": 200, "data": {"task_id": "t"}})),
            "missing_video_url"
        );
        assert_eq!(
            code_of(json!({"code": 200, "data": {"task_id": "t", "video_url": null}})),
            "missing_video_url"
        );
        assert_eq!(
            code_of(json!({"code": 451, "data": {"task_id": "t", "video_url": url}})),
            "unexpected_video_url"
        );
    }

    #[test]
    fn video_url_rules() {
        let bad = |u: &str| {
            let v = json!({"code": 200, "data": {"task_id": "t", "video_url": u}});
            assert_eq!(code_of(v), "invalid_video_url", "{u}");
        };
        bad("http://cdn.example/v.mp4");
        bad("ftp://cdn.example/v.mp4");
        bad("file:///etc/passwd");
        bad("https://user:pw@cdn.example/v.mp4");
        bad("https://user@cdn.example/v.mp4");
        bad("/relative/v.mp4");
        bad("not a url");
        bad(&format!(
            "https://cdn.example/{}",
            "a".repeat(MAX_VIDEO_URL_LEN)
        ));
        assert_eq!(
            code_of(json!({"code": 200, "data": {"task_id": "t", "video_url": 5}})),
            "invalid_video_url"
        );

        let local = UrlPolicy {
            allow_http: true,
            ..UrlPolicy::default()
        };
        let body = json!({"code": 200, "data": {"task_id": "t", "video_url": "http://127.0.0.1:8090/v.mp4"}});
        assert!(CallbackEnvelope::parse(body.to_string().as_bytes(), &local).is_ok());
    }

    #[test]
    fn the_length_limit_applies_to_the_stored_form() {
        // 1 000 spaces are 1 000 raw characters but 3 000 stored ones ("%20").
        let spaced = format!("https://cdn.example/{}.mp4", " ".repeat(1000));
        assert!(spaced.len() < MAX_VIDEO_URL_LEN);
        assert_eq!(
            VideoUrl::parse(&spaced, &STRICT),
            Err(VideoUrlError::TooLong)
        );
        let accented = format!("https://cdn.example/{}.mp4", "é".repeat(500));
        assert_eq!(
            VideoUrl::parse(&accented, &STRICT),
            Err(VideoUrlError::TooLong)
        );
        // Whatever parse accepts is stored at most MAX_VIDEO_URL_LEN long.
        let ok = format!("https://cdn.example/{}.mp4", " ".repeat(600));
        let url = VideoUrl::parse(&ok, &STRICT).unwrap();
        assert!(url.as_str().len() <= MAX_VIDEO_URL_LEN);
    }

    #[test]
    fn reading_a_stored_url_is_never_stricter_than_writing_it() {
        // Longer than today's limit (an older, looser limit), or plain http from a local
        // stack: both read back.
        let long = format!(
            "https://cdn.example/{}.mp4",
            "a".repeat(3 * MAX_VIDEO_URL_LEN)
        );
        let read: VideoUrl = serde_json::from_value(serde_json::json!(long)).unwrap();
        assert_eq!(read.as_str(), long);
        let http: VideoUrl =
            serde_json::from_value(serde_json::json!("http://127.0.0.1:8090/v.mp4")).unwrap();
        assert_eq!(http.as_url().scheme(), "http");
        assert!(serde_json::from_value::<VideoUrl>(serde_json::json!("not a url")).is_err());
    }

    #[test]
    fn duplicate_keys_are_refused_at_any_depth() {
        for body in [
            r#"{"code":200,"code":451,"data":{"task_id":"t"}}"#,
            r#"{"code":451,"data":{"task_id":"a","task_id":"b"}}"#,
            r#"{"code":451,"data":{"task_id":"t","x":{"y":1,"y":2}}}"#,
        ] {
            assert_eq!(
                CallbackEnvelope::parse(body.as_bytes(), &STRICT)
                    .unwrap_err()
                    .code(),
                "invalid_json",
                "{body}"
            );
        }
        // The same keys in different objects are fine, and so is a trailing newline.
        let ok = b"{\"code\":451,\"data\":{\"task_id\":\"t\",\"code\":1}}\n";
        assert!(CallbackEnvelope::parse(ok, &STRICT).is_ok());
        assert!(
            CallbackEnvelope::parse(b"{\"code\":451,\"data\":{\"task_id\":\"t\"}} x", &STRICT)
                .is_err()
        );
    }

    #[test]
    fn redacts_query_strings_in_logs() {
        let u = VideoUrl::parse("https://cdn.example/v.mp4?X-Amz-Signature=abc", &STRICT).unwrap();
        assert_eq!(u.to_string(), "https://cdn.example/v.mp4?<redacted>");
        assert!(!format!("{u:?}").contains("abc"));
    }

    #[test]
    fn probe_reads_the_raw_task_id_only() {
        assert_eq!(
            probe_task_id(br#"{"data":{"task_id":"a/b"}}"#).as_deref(),
            Some("a/b")
        );
        assert_eq!(probe_task_id(br#"{"data":{}}"#), None);
        assert_eq!(probe_task_id(b"nope"), None);
    }
}

/// Properties of the parser over generated bodies (the fuzz target `envelope` runs the
/// same parser on raw bytes for longer: `make fuzz`).
#[cfg(test)]
mod properties {
    use proptest::prelude::*;
    use serde_json::{Map, Value, json};

    use super::*;

    use super::tests::STRICT;

    fn task_id() -> impl Strategy<Value = String> {
        "[A-Za-z0-9._:-]{1,128}".prop_filter("not dots only", |s| !s.bytes().all(|b| b == b'.'))
    }

    fn url() -> impl Strategy<Value = String> {
        (
            "[a-z0-9]{1,20}",
            "[a-z]{2,6}",
            "[A-Za-z0-9/_.-]{0,80}",
            "[A-Za-z0-9=&%-]{0,120}",
        )
            .prop_map(|(host, tld, path, query)| format!("https://{host}.{tld}/{path}?{query}"))
    }

    /// Any JSON value, biased towards the envelope's own keys.
    fn json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(|f| json!(f)),
            prop_oneof![
                Just(200i64),
                Just(400),
                Just(451),
                Just(500),
                Just(-1),
                Just(65_736)
            ]
            .prop_map(Value::from),
            ".{0,24}".prop_map(Value::String),
            url().prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            let key = prop_oneof![
                Just("code".to_owned()),
                Just("msg".to_owned()),
                Just("data".to_owned()),
                Just("task_id".to_owned()),
                Just("video_url".to_owned()),
                "[a-z_]{1,8}",
            ];
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(key, inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1024, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = CallbackEnvelope::parse(&body, &STRICT);
            let _ = probe_task_id(&body);
        }

        #[test]
        fn whatever_parses_holds_only_valid_values(value in json()) {
            let body = value.to_string();
            if let Ok(env) = CallbackEnvelope::parse(body.as_bytes(), &STRICT) {
                prop_assert!(TaskId::parse(env.task_id.as_str()).is_ok());
                let code = env.code();
                prop_assert!(code == SUCCESS_CODE || (400..=599).contains(&code), "code {}", code);
                prop_assert_eq!(env.video_url().is_some(), code == SUCCESS_CODE);
                if let Some(url) = env.video_url() {
                    prop_assert_eq!(url.as_url().scheme(), "https");
                    prop_assert!(url.as_str().len() <= MAX_VIDEO_URL_LEN);
                }
                // What was read is what was sent.
                prop_assert_eq!(&value["data"]["task_id"], &Value::from(env.task_id.as_str()));
                prop_assert_eq!(value["code"].as_i64(), Some(i64::from(code)));
            }
        }

        #[test]
        fn every_valid_envelope_parses_back_to_itself(
            id in task_id(),
            code in prop_oneof![Just(200u16), Just(400), Just(451), Just(500), 401u16..600],
            msg in ".{0,64}",
            video_url in url(),
            extra in prop::collection::btree_map("x_[a-z]{1,6}", json(), 0..3),
            reversed in any::<bool>(),
            spaced in any::<bool>(),
        ) {
            let url_value = if code == 200 { Value::from(video_url.clone()) } else { Value::Null };
            let mut data = [("task_id", Value::from(id.clone())), ("video_url", url_value)];
            let mut root = [
                ("code", Value::from(code)),
                ("msg", Value::from(msg.clone())),
            ];
            if reversed {
                data.reverse();
                root.reverse();
            }
            let mut body = String::from("{");
            let sep = if spaced { " ,\n\t" } else { "," };
            let data_json: Vec<String> =
                data.iter().map(|(k, v)| format!("{}:{v}", json!(k))).collect();
            let mut fields: Vec<String> =
                root.iter().map(|(k, v)| format!("{}:{v}", json!(k))).collect();
            fields.push(format!("\"data\":{{{}}}", data_json.join(sep)));
            fields.extend(extra.iter().map(|(k, v)| format!("{}:{v}", json!(k))));
            body.push_str(&fields.join(sep));
            body.push('}');

            let env = CallbackEnvelope::parse(body.as_bytes(), &STRICT)
                .map_err(|e| TestCaseError::fail(format!("{e}: {body}")))?;
            prop_assert_eq!(env.task_id.as_str(), id.as_str());
            prop_assert_eq!(&env.msg, &msg);
            prop_assert_eq!(env.code(), code);
            if code == 200 {
                let expected = Url::parse(&video_url).unwrap();
                prop_assert_eq!(env.video_url().map(VideoUrl::as_url), Some(&expected));
            }
            prop_assert_eq!(probe_task_id(body.as_bytes()), Some(id));
        }

        #[test]
        fn a_key_sent_twice_anywhere_is_invalid_json(
            id in task_id(),
            which in 0usize..5,
            second in json(),
        ) {
            let second = second.to_string();
            let body = match which {
                0 => format!(r#"{{"code":451,"code":{second},"msg":"m","data":{{"task_id":"{id}"}}}}"#),
                1 => format!(r#"{{"code":451,"msg":"m","msg":{second},"data":{{"task_id":"{id}"}}}}"#),
                2 => format!(r#"{{"code":451,"msg":"m","data":{{"task_id":"{id}","task_id":{second}}}}}"#),
                3 => format!(r#"{{"code":451,"msg":"m","data":{{"task_id":"{id}","video_url":null,"video_url":{second}}}}}"#),
                _ => format!(r#"{{"code":451,"msg":"m","data":{{"task_id":"{id}"}},"data":{second}}}"#),
            };
            let err = CallbackEnvelope::parse(body.as_bytes(), &STRICT).unwrap_err();
            prop_assert_eq!(err.code(), "invalid_json", "{}", body);
        }
    }
}
