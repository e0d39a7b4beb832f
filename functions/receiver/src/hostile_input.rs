//! The hostile-input table: real-shaped API Gateway v2 events carrying every malformed,
//! ambiguous or oversized callback we could think of. Each row gives the exact status and
//! error code; a refusal writes nothing, an acceptance writes exactly one record.

use base64::Engine as _;
use lambda_http::{Body, Request, Response};
use serde_json::{Value, json};
use shared::lambda::config::Env;
use shared::test_support::MemoryTaskStore;
use shared::test_support::fixtures::APIGW_V2_CALLBACK;

use crate::config::ReceiverConfig;
use crate::handler::Receiver;

const TOKEN: &str = "test-token-0123456789abcdef";

/// What a row sends.
enum Send {
    /// This raw body (bytes), with the fixture's headers.
    Body(Vec<u8>),
    /// This JSON value as the body.
    Json(Value),
    /// The fixture, edited.
    Edit(Box<dyn Fn(&mut Value)>),
}

struct Row {
    name: &'static str,
    send: Send,
    status: u16,
    /// The error code, or `received` for an acceptance.
    code: &'static str,
}

fn row(name: &'static str, send: Send, status: u16, code: &'static str) -> Row {
    Row {
        name,
        send,
        status,
        code,
    }
}

fn ok(task: &str, url: &str) -> Value {
    json!({"code": 200, "msg": "ok", "data": {"task_id": task, "video_url": url}})
}

fn with_url(url: &str) -> Send {
    Send::Json(ok("t-url", url))
}

fn with_task_id(task_id: Value) -> Send {
    Send::Json(json!({"code": 451, "msg": "m", "data": {"task_id": task_id}}))
}

fn with_code(code: Value) -> Send {
    Send::Json(json!({"code": code, "msg": "m", "data": {"task_id": "t-code"}}))
}

fn raw(body: &str) -> Send {
    Send::Body(body.as_bytes().to_vec())
}

fn edit(f: impl Fn(&mut Value) + 'static) -> Send {
    Send::Edit(Box::new(f))
}

fn content_type(ct: &'static str) -> Send {
    edit(move |v| v["headers"]["content-type"] = ct.into())
}

fn nested(depth: usize) -> String {
    let inner = "[".repeat(depth) + &"]".repeat(depth);
    format!(r#"{{"code":451,"msg":"m","data":{{"task_id":"t-deep","x":{inner}}}}}"#)
}

fn rows() -> Vec<Row> {
    let long_id = "x".repeat(129);
    let long_url = format!("https://cdn.example/{}.mp4", "a".repeat(2100));
    let spaced_url = format!("https://cdn.example/{}.mp4", " ".repeat(700));
    let accented_url = format!("https://cdn.example/{}.mp4", "é".repeat(400));
    vec![
        // --- not JSON, or not the envelope ---
        row("empty body", raw(""), 400, "invalid_json"),
        row("whitespace body", raw("   \n"), 400, "invalid_json"),
        row(
            "truncated object",
            raw(r#"{"code":200,"msg":"#),
            400,
            "invalid_json",
        ),
        row(
            "truncated string",
            raw(r#"{"code":451,"data":{"task_id":"t"#),
            400,
            "invalid_json",
        ),
        row(
            "trailing garbage",
            raw(r#"{"code":451,"data":{"task_id":"t"}} x"#),
            400,
            "invalid_json",
        ),
        row(
            "two objects",
            raw(r#"{"code":451,"data":{"task_id":"t"}}{"code":451}"#),
            400,
            "invalid_json",
        ),
        row("single quotes", raw("{'code':451}"), 400, "invalid_json"),
        row(
            "trailing comma",
            raw(r#"{"code":451,"data":{"task_id":"t"},}"#),
            400,
            "invalid_json",
        ),
        row(
            "comment",
            raw(r#"{"code":451 /* x */,"data":{"task_id":"t"}}"#),
            400,
            "invalid_json",
        ),
        row(
            "NaN",
            raw(r#"{"code":NaN,"data":{"task_id":"t"}}"#),
            400,
            "invalid_json",
        ),
        row(
            "an array",
            Send::Json(json!([1, 2, 3])),
            400,
            "invalid_json",
        ),
        row(
            "a string",
            Send::Json(json!("callback")),
            400,
            "invalid_json",
        ),
        row("a number", raw("200"), 400, "invalid_json"),
        row("null", raw("null"), 400, "invalid_json"),
        row(
            "BOM first",
            Send::Body(
                [
                    b"\xEF\xBB\xBF".as_slice(),
                    br#"{"code":451,"data":{"task_id":"t"}}"#,
                ]
                .concat(),
            ),
            400,
            "invalid_json",
        ),
        row(
            "raw NUL byte",
            Send::Body(b"{\"code\":451,\0\"data\":{\"task_id\":\"t\"}}".to_vec()),
            400,
            "invalid_json",
        ),
        row(
            "invalid UTF-8",
            Send::Body(
                b"{\"code\":451,\"msg\":\"\xff\xfe\",\"data\":{\"task_id\":\"t\"}}".to_vec(),
            ),
            400,
            "invalid_json",
        ),
        row(
            "lone surrogate escape",
            raw(r#"{"code":451,"msg":"\ud800","data":{"task_id":"t"}}"#),
            400,
            "invalid_json",
        ),
        row(
            "duplicate top-level key",
            raw(r#"{"code":200,"code":451,"data":{"task_id":"t"}}"#),
            400,
            "invalid_json",
        ),
        row(
            "duplicate task_id",
            raw(r#"{"code":451,"data":{"task_id":"a","task_id":"b"}}"#),
            400,
            "invalid_json",
        ),
        row(
            "duplicate nested key",
            raw(r#"{"code":451,"data":{"task_id":"t","v":{"k":1,"k":2}}}"#),
            400,
            "invalid_json",
        ),
        row(
            "nesting 200 deep",
            Send::Body(nested(200).into_bytes()),
            400,
            "invalid_json",
        ),
        row(
            "nesting 50 deep is fine",
            Send::Body(nested(50).into_bytes()),
            200,
            "received",
        ),
        row(
            "data is a string",
            Send::Json(json!({"code": 451, "data": "t"})),
            400,
            "invalid_json",
        ),
        row(
            "data is an array",
            Send::Json(json!({"code": 451, "data": ["t"]})),
            400,
            "invalid_json",
        ),
        // --- code ---
        row(
            "code missing",
            Send::Json(json!({"data": {"task_id": "t"}})),
            400,
            "missing_code",
        ),
        row("code null", with_code(Value::Null), 400, "missing_code"),
        row(
            "code as string",
            with_code(json!("200")),
            400,
            "invalid_code",
        ),
        row(
            "code as float",
            with_code(json!(200.5)),
            400,
            "invalid_code",
        ),
        row(
            "code 200.0",
            raw(r#"{"code":200.0,"data":{"task_id":"t","video_url":"https://cdn.example/v.mp4"}}"#),
            400,
            "invalid_code",
        ),
        row("code as bool", with_code(json!(true)), 400, "invalid_code"),
        row(
            "code as object",
            with_code(json!({"value": 200})),
            400,
            "invalid_code",
        ),
        row(
            "code exponent",
            raw(r#"{"code":2e2,"data":{"task_id":"t"}}"#),
            400,
            "invalid_code",
        ),
        row(
            "code huge",
            raw(r#"{"code":1e308,"data":{"task_id":"t"}}"#),
            400,
            "invalid_code",
        ),
        row(
            "code over i64",
            raw(r#"{"code":99999999999999999999,"data":{"task_id":"t"}}"#),
            400,
            "invalid_code",
        ),
        row(
            "code negative",
            with_code(json!(-500)),
            400,
            "unsupported_code",
        ),
        row("code zero", with_code(json!(0)), 400, "unsupported_code"),
        row("code 100", with_code(json!(100)), 400, "unsupported_code"),
        row("code 201", with_code(json!(201)), 400, "unsupported_code"),
        row("code 302", with_code(json!(302)), 400, "unsupported_code"),
        row("code 600", with_code(json!(600)), 400, "unsupported_code"),
        row(
            "code 65736 (u16 wrap)",
            with_code(json!(65_736)),
            400,
            "unsupported_code",
        ),
        row(
            "unknown failure code 418 is recorded",
            with_code(json!(418)),
            200,
            "received",
        ),
        row(
            "failure code 599 is recorded",
            with_code(json!(599)),
            200,
            "received",
        ),
        // --- msg ---
        row(
            "msg as number",
            Send::Json(json!({"code": 451, "msg": 3, "data": {"task_id": "t"}})),
            400,
            "invalid_msg",
        ),
        row(
            "msg as object",
            Send::Json(json!({"code": 451, "msg": {}, "data": {"task_id": "t"}})),
            400,
            "invalid_msg",
        ),
        row(
            "msg with NUL escape is stored",
            Send::Json(json!({"code": 451, "msg": "a\u{0}b", "data": {"task_id": "t-msg"}})),
            200,
            "received",
        ),
        // --- task_id ---
        row(
            "data missing",
            Send::Json(json!({"code": 451})),
            400,
            "missing_task_id",
        ),
        row(
            "data null",
            Send::Json(json!({"code": 451, "data": null})),
            400,
            "missing_task_id",
        ),
        row(
            "task_id missing",
            Send::Json(json!({"code": 451, "data": {}})),
            400,
            "missing_task_id",
        ),
        row(
            "task_id null",
            with_task_id(Value::Null),
            400,
            "missing_task_id",
        ),
        row(
            "task_id empty",
            with_task_id(json!("")),
            400,
            "invalid_task_id",
        ),
        row(
            "task_id 129 long",
            with_task_id(json!(long_id)),
            400,
            "invalid_task_id",
        ),
        row(
            "task_id number",
            with_task_id(json!(7)),
            400,
            "invalid_task_id",
        ),
        row(
            "task_id array",
            with_task_id(json!(["t"])),
            400,
            "invalid_task_id",
        ),
        row(
            "task_id unicode",
            with_task_id(json!("tâche-1")),
            400,
            "invalid_task_id",
        ),
        row(
            "task_id emoji",
            with_task_id(json!("t-🎬")),
            400,
            "invalid_task_id",
        ),
        row(
            "task_id path traversal",
            with_task_id(json!("../../etc/passwd")),
            400,
            "invalid_task_id",
        ),
        row(
            "task_id dot dot",
            with_task_id(json!("..")),
            400,
            "invalid_task_id",
        ),
        row(
            "task_id slash",
            with_task_id(json!("a/b")),
            400,
            "invalid_task_id",
        ),
        row(
            "task_id backslash",
            with_task_id(json!("a\\b")),
            400,
            "invalid_task_id",
        ),
        row(
            "task_id %2F",
            with_task_id(json!("a%2Fb")),
            400,
            "invalid_task_id",
        ),
        row(
            "task_id space",
            with_task_id(json!("a b")),
            400,
            "invalid_task_id",
        ),
        row(
            "task_id newline",
            with_task_id(json!("a\nb")),
            400,
            "invalid_task_id",
        ),
        row(
            "task_id NUL",
            with_task_id(json!("a\u{0}b")),
            400,
            "invalid_task_id",
        ),
        row(
            "task_id query",
            with_task_id(json!("a?b=c")),
            400,
            "invalid_task_id",
        ),
        row(
            "task_id 128 long is fine",
            with_task_id(json!("y".repeat(128))),
            200,
            "received",
        ),
        // --- video_url ---
        row(
            "success without video_url",
            Send::Json(json!({"code": 200, "data": {"task_id": "t"}})),
            400,
            "missing_video_url",
        ),
        row(
            "success with null video_url",
            Send::Json(json!({"code": 200, "data": {"task_id": "t", "video_url": null}})),
            400,
            "missing_video_url",
        ),
        row(
            "video_url number",
            Send::Json(json!({"code": 200, "data": {"task_id": "t", "video_url": 5}})),
            400,
            "invalid_video_url",
        ),
        row(
            "video_url http",
            with_url("http://cdn.example/v.mp4"),
            400,
            "invalid_video_url",
        ),
        row(
            "video_url ftp",
            with_url("ftp://cdn.example/v.mp4"),
            400,
            "invalid_video_url",
        ),
        row(
            "video_url file",
            with_url("file:///etc/passwd"),
            400,
            "invalid_video_url",
        ),
        row(
            "video_url javascript",
            with_url("javascript:alert(1)"),
            400,
            "invalid_video_url",
        ),
        row(
            "video_url data",
            with_url("data:video/mp4;base64,AAAA"),
            400,
            "invalid_video_url",
        ),
        row(
            "video_url gopher",
            with_url("gopher://cdn.example/"),
            400,
            "invalid_video_url",
        ),
        row(
            "video_url relative",
            with_url("/videos/v.mp4"),
            400,
            "invalid_video_url",
        ),
        row(
            "video_url no host",
            with_url("https://"),
            400,
            "invalid_video_url",
        ),
        row("video_url empty", with_url(""), 400, "invalid_video_url"),
        row(
            "video_url user",
            with_url("https://user@cdn.example/v.mp4"),
            400,
            "invalid_video_url",
        ),
        row(
            "video_url user and password",
            with_url("https://user:pw@cdn.example/v.mp4"),
            400,
            "invalid_video_url",
        ),
        row(
            "video_url overlong",
            with_url(&long_url),
            400,
            "invalid_video_url",
        ),
        row(
            "video_url overlong once encoded (spaces)",
            with_url(&spaced_url),
            400,
            "invalid_video_url",
        ),
        row(
            "video_url overlong once encoded (accents)",
            with_url(&accented_url),
            400,
            "invalid_video_url",
        ),
        row(
            "video_url private IP literal (fetch-time guard)",
            with_url("https://10.0.0.1/v.mp4"),
            200,
            "received",
        ),
        row(
            "video_url decimal IP literal (fetch-time guard)",
            with_url("https://2130706433/v.mp4"),
            200,
            "received",
        ),
        row(
            "video_url IDN is punycoded",
            with_url("https://bücher.example/v.mp4"),
            200,
            "received",
        ),
        row(
            "video_url with fragment",
            with_url("https://cdn.example/v.mp4#t=1"),
            200,
            "received",
        ),
        row(
            "video_url on code 451",
            Send::Json(
                json!({"code": 451, "data": {"task_id": "t", "video_url": "https://cdn.example/v.mp4"}}),
            ),
            400,
            "unexpected_video_url",
        ),
        row(
            "video_url on code 500",
            Send::Json(json!({"code": 500, "data": {"task_id": "t", "video_url": "x"}})),
            400,
            "unexpected_video_url",
        ),
        row(
            "null video_url on code 400 is fine",
            Send::Json(
                json!({"code": 400, "msg": "bad", "data": {"task_id": "t-400", "video_url": null}}),
            ),
            200,
            "received",
        ),
        // --- size, type, method, transport ---
        row(
            "1 MB body",
            Send::Json(json!({"code": 451, "msg": "x".repeat(1 << 20), "data": {"task_id": "t"}})),
            413,
            "payload_too_large",
        ),
        row(
            "64 KiB + 1 body",
            Send::Body(vec![b' '; 64 * 1024 + 1]),
            413,
            "payload_too_large",
        ),
        row(
            "content type text/plain",
            content_type("text/plain"),
            415,
            "unsupported_media_type",
        ),
        row(
            "content type form",
            content_type("application/x-www-form-urlencoded"),
            415,
            "unsupported_media_type",
        ),
        row(
            "content type json-ish",
            content_type("application/jsonx"),
            415,
            "unsupported_media_type",
        ),
        row(
            "content type problem+json",
            content_type("application/problem+json"),
            415,
            "unsupported_media_type",
        ),
        row(
            "content type empty",
            content_type(""),
            415,
            "unsupported_media_type",
        ),
        row(
            "content type utf-16",
            content_type("application/json; charset=utf-16"),
            415,
            "unsupported_media_type",
        ),
        row(
            "content type latin-1",
            content_type("application/json; charset=ISO-8859-1"),
            415,
            "unsupported_media_type",
        ),
        row(
            "content type missing",
            edit(|v| {
                v["headers"].as_object_mut().unwrap().remove("content-type");
            }),
            415,
            "unsupported_media_type",
        ),
        row(
            "content type upper case, quoted UTF-8",
            content_type("APPLICATION/JSON; charset=\"UTF-8\""),
            200,
            "received",
        ),
        row(
            "content type with another parameter",
            content_type("application/json; foo=bar"),
            200,
            "received",
        ),
        row(
            "method GET",
            edit(|v| v["requestContext"]["http"]["method"] = "GET".into()),
            405,
            "method_not_allowed",
        ),
        row(
            "method PUT",
            edit(|v| v["requestContext"]["http"]["method"] = "PUT".into()),
            405,
            "method_not_allowed",
        ),
        row(
            "method DELETE",
            edit(|v| v["requestContext"]["http"]["method"] = "DELETE".into()),
            405,
            "method_not_allowed",
        ),
        row(
            "base64-flagged body",
            edit(|v| {
                let body = ok("t-b64", "https://cdn.example/v.mp4").to_string();
                v["body"] = base64::engine::general_purpose::STANDARD
                    .encode(body)
                    .into();
                v["isBase64Encoded"] = true.into();
            }),
            200,
            "received",
        ),
        row(
            "base64-flagged garbage",
            edit(|v| {
                v["body"] = base64::engine::general_purpose::STANDARD
                    .encode([0xffu8, 0x00, 0x12])
                    .into();
                v["isBase64Encoded"] = true.into();
            }),
            400,
            "invalid_json",
        ),
        // (A flagged body that is not base64 at all cannot come through API Gateway, which
        // encodes binary bodies itself; aws_lambda_events panics on one while decoding.)
        row(
            "unknown fields are ignored",
            Send::Json(
                json!({"code": 451, "msg": "m", "extra": [1], "data": {"task_id": "t-extra", "duration": 3.5}}),
            ),
            200,
            "received",
        ),
    ]
}

fn event(send: &Send) -> Request {
    let mut v: Value = serde_json::from_str(APIGW_V2_CALLBACK).unwrap();
    v["rawQueryString"] = format!("token={TOKEN}").into();
    v["queryStringParameters"] = json!({ "token": TOKEN });
    match send {
        Send::Body(bytes) => {
            v["body"] = base64::engine::general_purpose::STANDARD
                .encode(bytes)
                .into();
            v["isBase64Encoded"] = true.into();
        }
        Send::Json(value) => v["body"] = value.to_string().into(),
        Send::Edit(f) => f(&mut v),
    }
    lambda_http::request::from_str(&v.to_string()).unwrap()
}

fn read(response: &Response<Body>) -> Value {
    serde_json::from_slice(response.body().as_ref()).unwrap_or(Value::Null)
}

#[tokio::test]
async fn every_hostile_row_gets_its_status_and_code_and_refusals_write_nothing() {
    let config = ReceiverConfig::from_env(&Env::from_pairs([
        ("TABLE_NAME", "t"),
        ("CALLBACK_TOKENS", TOKEN),
    ]))
    .unwrap();
    let rows = rows();
    assert!(rows.len() >= 80, "{} rows", rows.len());
    let (mut refused_as_expected, mut written_on_refusal) = (0, 0);
    let mut wrong = Vec::new();
    for row in &rows {
        let receiver = Receiver::new(MemoryTaskStore::default(), config.clone());
        let response = receiver.handle(event(&row.send)).await;
        let body = read(&response);
        let code = if response.status() == 200 {
            body["status"].as_str().unwrap_or("?").to_owned()
        } else {
            body["error"].as_str().unwrap_or("?").to_owned()
        };
        let stored = !receiver.store_is_empty();
        let as_expected = (response.status().as_u16(), code.as_str()) == (row.status, row.code)
            && stored == (row.status == 200);
        if !as_expected {
            wrong.push(format!(
                "{}: got {} {code} (written: {stored}), expected {} {}",
                row.name,
                response.status(),
                row.status,
                row.code
            ));
        }
        if row.status != 200 {
            refused_as_expected += usize::from(as_expected);
            written_on_refusal += usize::from(stored);
        }
    }
    let expected_refusals = rows.iter().filter(|r| r.status != 200).count();
    println!(
        "HOSTILE rows {} refusals expected {expected_refusals} refused as expected {refused_as_expected} written on refusal {written_on_refusal}",
        rows.len()
    );
    // A row that wrote on refusal, or answered anything but its status and code, is here.
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
