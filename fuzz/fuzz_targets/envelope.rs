//! The callback body parser on raw bytes: never panics; whatever it accepts holds only
//! valid values and is what the bytes say; the strict JSON reader accepts a subset of
//! what serde_json accepts (it only adds the duplicate-key refusal).
#![no_main]

use libfuzzer_sys::fuzz_target;
use shared::domain::envelope::{MAX_VIDEO_URL_LEN, probe_task_id, strict_json};
use shared::domain::ssrf::UrlPolicy;
use shared::{CallbackEnvelope, TaskId};

fuzz_target!(|data: &[u8]| {
    let _ = probe_task_id(data);
    if strict_json(data).is_ok() {
        assert!(serde_json::from_slice::<serde_json::Value>(data).is_ok());
    }
    for policy in [
        UrlPolicy::default(),
        UrlPolicy {
            allow_http: true,
            allow_loopback: true,
            allowed_hosts: Vec::new(),
        },
    ] {
        let Ok(env) = CallbackEnvelope::parse(data, &policy) else {
            continue;
        };
        assert!(TaskId::parse(env.task_id.as_str()).is_ok());
        let code = env.code();
        assert!(code == 200 || (400..=599).contains(&code));
        assert_eq!(env.video_url().is_some(), code == 200);
        if let Some(url) = env.video_url() {
            assert!(url.as_str().len() <= MAX_VIDEO_URL_LEN);
            assert!(matches!(url.as_url().scheme(), "https" | "http"));
            assert!(policy.allow_http || url.as_url().scheme() == "https");
            assert!(url.as_url().username().is_empty() && url.as_url().password().is_none());
        }
        let value: serde_json::Value = serde_json::from_slice(data).unwrap();
        assert_eq!(
            value["data"]["task_id"].as_str(),
            Some(env.task_id.as_str())
        );
        assert_eq!(value["code"].as_i64(), Some(i64::from(code)));
        assert_eq!(probe_task_id(data).as_deref(), Some(env.task_id.as_str()));
    }
});
