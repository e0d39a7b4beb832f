//! The HTTP side: the operator API's requests (SigV4-signed for a deployed stack,
//! service `execute-api`; unsigned locally) and raw callbacks to the receiver. Answers
//! come back as JSON; an answer a command did not expect becomes a [`CliError`].

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::ProvideCredentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use http::Method;
use serde_json::Value;

use crate::error::CliError;
use crate::target::{Sigv4, Target};

/// API Gateway waits at most 30 s for the function; a little more for the network.
const TIMEOUT: Duration = Duration::from_secs(35);

/// An answer: its status and its JSON body (`Null` when empty or not JSON).
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

/// The operator API of one target.
#[derive(Debug, Clone)]
pub struct Api {
    client: reqwest::Client,
    base: String,
    sigv4: Option<Sigv4>,
}

impl Api {
    pub fn new(target: &Target) -> Result<Self, CliError> {
        let client = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .user_agent(concat!("mvcb/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| CliError::Target(format!("no HTTP client: {e}")))?;
        Ok(Self {
            client,
            base: target.api_base.clone(),
            sigv4: target.sigv4.clone(),
        })
    }

    /// The underlying client (raw callbacks share it).
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// `method path?query` with an optional JSON body; any answer (the caller decides).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Answer, CliError> {
        let mut url = url::Url::parse(&format!("{}{path}", self.base))
            .map_err(|e| CliError::Usage(format!("bad URL {}{path}: {e}", self.base)))?;
        if !query.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let mut headers = vec![("accept".to_owned(), "application/json".to_owned())];
        if body.is_some() {
            headers.push(("content-type".to_owned(), "application/json".to_owned()));
        }
        if let Some(sigv4) = &self.sigv4 {
            let credentials = sigv4
                .credentials
                .provide_credentials()
                .await
                .map_err(|e| CliError::Target(format!("no AWS credentials: {e}")))?;
            let signed = sign_request(
                method.as_str(),
                url.as_str(),
                &headers,
                &bytes,
                &credentials,
                &sigv4.region,
                SystemTime::now(),
            )?;
            headers.extend(signed);
        }
        let mut request = self.client.request(method.clone(), url.clone());
        for (name, value) in &headers {
            request = request.header(name, value);
        }
        let what = format!("{method} {path}");
        let response = request
            .body(bytes)
            .send()
            .await
            .map_err(|source| CliError::Http {
                what: what.clone(),
                source,
            })?;
        answer(response, &what).await
    }

    /// A call that must answer one of `ok`; any other answer is the error it stands for.
    pub async fn expect(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
        what: &str,
        ok: &[u16],
    ) -> Result<Value, CliError> {
        let answer = self.call(method, path, query, body).await?;
        match ok.contains(&answer.status) {
            true => Ok(answer.body),
            false => Err(CliError::from_answer(what, answer.status, &answer.body)),
        }
    }

    pub async fn get(
        &self,
        path: &str,
        query: &[(&str, String)],
        what: &str,
    ) -> Result<Value, CliError> {
        self.expect(Method::GET, path, query, None, what, &[200])
            .await
    }

    pub async fn post(
        &self,
        path: &str,
        body: Option<&Value>,
        what: &str,
    ) -> Result<Value, CliError> {
        self.expect(Method::POST, path, &[], body, what, &[200, 201, 202])
            .await
    }
}

/// The status and JSON body of a response.
pub async fn answer(response: reqwest::Response, what: &str) -> Result<Answer, CliError> {
    let status = response.status().as_u16();
    let text = response.text().await.map_err(|source| CliError::Http {
        what: what.to_owned(),
        source,
    })?;
    let body = match text.is_empty() {
        true => Value::Null,
        false => serde_json::from_str(&text).unwrap_or(Value::String(text)),
    };
    Ok(Answer { status, body })
}

/// The SigV4 headers (`authorization`, `x-amz-date`, `x-amz-security-token` with
/// temporary credentials) for one request to API Gateway (`execute-api`) at `time`.
pub fn sign_request(
    method: &str,
    url: &str,
    headers: &[(String, String)],
    body: &[u8],
    credentials: &Credentials,
    region: &str,
    time: SystemTime,
) -> Result<Vec<(String, String)>, CliError> {
    let failed = |e: &dyn std::fmt::Display| CliError::Signing(e.to_string());
    let identity = credentials.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("execute-api")
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| failed(&e))?
        .into();
    let signable = SignableRequest::new(
        method,
        url,
        headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        SignableBody::Bytes(body),
    )
    .map_err(|e| failed(&e))?;
    let (instructions, _signature) = sign(signable, &params)
        .map_err(|e| failed(&e))?
        .into_parts();
    Ok(instructions
        .headers()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hmac::{Hmac, Mac};
    use sha2::{Digest, Sha256};

    /// The AWS documentation's example credentials.
    fn credentials(token: Option<&str>) -> Credentials {
        Credentials::new(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            token.map(str::to_owned),
            None,
            "test",
        )
    }

    fn hmac(key: &[u8], data: &str) -> Vec<u8> {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
        mac.update(data.as_bytes());
        mac.finalize().into_bytes().to_vec()
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The signature computed by hand from the SigV4 specification (canonical request,
    /// string to sign, derived key), independently of the crate.
    #[test]
    fn signatures_follow_the_sigv4_specification_at_a_fixed_time() {
        let time = SystemTime::UNIX_EPOCH + Duration::from_secs(1_440_938_160); // 2015-08-30T12:36:00Z
        let body = br#"{"task_ids":["t-1"]}"#;
        let headers = vec![("content-type".to_owned(), "application/json".to_owned())];
        let url = "https://abc123.execute-api.us-east-1.amazonaws.com/tasks?status=stored&limit=2";
        let sign_now = || {
            sign_request(
                "POST",
                url,
                &headers,
                body,
                &credentials(None),
                "us-east-1",
                time,
            )
            .unwrap()
        };
        let signed = sign_now();
        let get = |name: &str| {
            signed
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(get("x-amz-date").as_deref(), Some("20150830T123600Z"));
        assert_eq!(get("x-amz-security-token"), None);

        let payload = hex(&Sha256::digest(body));
        let canonical = format!(
            "POST\n/tasks\nlimit=2&status=stored\ncontent-type:application/json\n\
             host:abc123.execute-api.us-east-1.amazonaws.com\nx-amz-date:20150830T123600Z\n\n\
             content-type;host;x-amz-date\n{payload}"
        );
        let to_sign = format!(
            "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/execute-api/aws4_request\n{}",
            hex(&Sha256::digest(canonical.as_bytes()))
        );
        let key = ["20150830", "us-east-1", "execute-api", "aws4_request"]
            .iter()
            .fold(
                b"AWS4wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".to_vec(),
                |k, part| hmac(&k, part),
            );
        let signature = hex(&hmac(&key, &to_sign));
        assert_eq!(
            get("authorization").unwrap(),
            format!(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/execute-api/aws4_request, \
                 SignedHeaders=content-type;host;x-amz-date, Signature={signature}"
            )
        );
        // Deterministic: the same request at the same time signs the same.
        assert_eq!(signed, sign_now());
    }

    #[test]
    fn temporary_credentials_add_their_session_token() {
        let signed = sign_request(
            "GET",
            "https://abc123.execute-api.eu-west-1.amazonaws.com/tasks/t-1",
            &[],
            b"",
            &credentials(Some("session-token")),
            "eu-west-1",
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_000),
        )
        .unwrap();
        assert!(
            signed
                .iter()
                .any(|(k, v)| k == "x-amz-security-token" && v == "session-token")
        );
        let auth = &signed.iter().find(|(k, _)| k == "authorization").unwrap().1;
        assert!(
            auth.contains("/eu-west-1/execute-api/aws4_request"),
            "{auth}"
        );
        assert!(
            auth.contains("x-amz-security-token"),
            "the token is signed too: {auth}"
        );
    }
}
