//! Which stack the commands talk to, and how: a deployed stack (its outputs read from
//! CloudFormation by name, its IAM routes signed with SigV4 with the AWS configuration's
//! credentials) or the local stack (`.local/stack.env`, written by
//! `infra/local/stack.py`: the status function under `cargo lambda watch`, which has no
//! IAM in front of it, so local requests go unsigned).

use std::collections::BTreeMap;
use std::path::Path;

use aws_credential_types::provider::SharedCredentialsProvider;

use crate::cli::TargetArgs;
use crate::error::CliError;

/// The stack outputs the CLI needs (a deployment missing one fails `doctor`).
pub const REQUIRED_OUTPUTS: [&str; 4] = ["CallbackUrl", "StatusUrl", "TasksUrl", "EndpointsUrl"];
/// The `.local/stack.env` keys the CLI needs.
pub const REQUIRED_LOCAL: [&str; 5] = [
    "STATUS_URL",
    "CALLBACK_URL_UNSIGNED",
    "CALLBACK_TOKEN",
    "UPSTREAM_HMAC_SECRET",
    "STANDARD_WEBHOOKS_SECRET",
];

/// The secrets a test callback can be signed with (each scheme's, when known).
#[derive(Clone, Default)]
pub struct CallbackSecrets {
    pub token: Option<String>,
    pub upstream_hmac: Option<String>,
    pub standard_webhooks: Option<String>,
}

impl std::fmt::Debug for CallbackSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = |s: &Option<String>| if s.is_some() { "set" } else { "unset" };
        f.debug_struct("CallbackSecrets")
            .field("token", &set(&self.token))
            .field("upstream_hmac", &set(&self.upstream_hmac))
            .field("standard_webhooks", &set(&self.standard_webhooks))
            .finish()
    }
}

/// SigV4 for the IAM-authorised routes: credentials from the AWS configuration.
#[derive(Debug, Clone)]
pub struct Sigv4 {
    pub credentials: SharedCredentialsProvider,
    pub region: String,
}

/// A deployed stack's own handles (for `doctor`).
#[derive(Debug, Clone)]
pub struct Deployed {
    pub stack: String,
    pub cloudformation: aws_sdk_cloudformation::Client,
    /// Its parameters (NoEcho ones as CloudFormation masks them).
    pub parameters: BTreeMap<String, String>,
}

/// Where the commands go.
#[derive(Debug, Clone)]
pub struct Target {
    /// The status function's base: routes are `{api_base}/tasks…`, `/endpoints…`.
    pub api_base: String,
    /// The receiver's URL, without a token.
    pub callback_url: String,
    pub secrets: CallbackSecrets,
    /// A video a test callback may name (the local stack's sample).
    pub sample_video: Option<String>,
    /// `None` locally: nothing signs (or checks) there.
    pub sigv4: Option<Sigv4>,
    /// The stack outputs (deployed) or the settings (local) the target came from.
    pub outputs: BTreeMap<String, String>,
    pub deployed: Option<Deployed>,
}

impl Target {
    /// A human name for the target.
    pub fn name(&self) -> String {
        match &self.deployed {
            Some(d) => format!("stack {}", d.stack),
            None => "local stack".to_owned(),
        }
    }

    /// The target the arguments name.
    pub async fn resolve(args: &TargetArgs) -> Result<Self, CliError> {
        match (&args.stack, args.local) {
            (_, true) => local(&args.stack_env),
            (Some(stack), false) => deployed(stack, args.region.clone()).await,
            (None, false) => Err(CliError::Target(
                "say which stack: --stack NAME (or MVCB_STACK) for a deployment, --local for `make run`'s".into(),
            )),
        }
    }
}

/// `KEY=VALUE` lines as `infra/local/stack.py` writes them (values single-quoted the
/// shell's way when they need it; `#` comments and blank lines skipped).
pub fn parse_env_file(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .filter_map(|line| line.split_once('='))
        .map(|(key, value)| {
            let value = value.trim();
            let value = match value.len() >= 2 && value.starts_with('\'') && value.ends_with('\'') {
                true => value[1..value.len() - 1].replace("'\"'\"'", "'"),
                false => match value.len() >= 2 && value.starts_with('"') && value.ends_with('"') {
                    true => value[1..value.len() - 1].to_owned(),
                    false => value.to_owned(),
                },
            };
            (key.trim().to_owned(), value)
        })
        .collect()
}

/// The routes' base from the status URL (`…/tasks`).
fn api_base(status_url: &str) -> Result<String, CliError> {
    status_url
        .trim_end_matches('/')
        .strip_suffix("/tasks")
        .map(str::to_owned)
        .ok_or_else(|| {
            CliError::Target(format!(
                "the status URL {status_url:?} does not end in /tasks"
            ))
        })
}

fn local(path: &Path) -> Result<Target, CliError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        CliError::Target(format!(
            "{}: {e}. Start the local stack (`make run`, or `python3 infra/local/stack.py start`), or pass --stack-env",
            path.display()
        ))
    })?;
    local_from(parse_env_file(&text), &path.display().to_string())
}

/// The local target from the settings of `.local/stack.env`.
pub fn local_from(vars: BTreeMap<String, String>, origin: &str) -> Result<Target, CliError> {
    let missing: Vec<&str> = REQUIRED_LOCAL
        .into_iter()
        .filter(|k| !vars.contains_key(*k))
        .collect();
    if !missing.is_empty() {
        return Err(CliError::Target(format!(
            "{origin} lacks {}",
            missing.join(", ")
        )));
    }
    let get = |k: &str| vars.get(k).cloned().unwrap_or_default();
    Ok(Target {
        api_base: api_base(&get("STATUS_URL"))?,
        callback_url: get("CALLBACK_URL_UNSIGNED"),
        secrets: CallbackSecrets {
            token: Some(get("CALLBACK_TOKEN")),
            upstream_hmac: Some(get("UPSTREAM_HMAC_SECRET")),
            standard_webhooks: Some(get("STANDARD_WEBHOOKS_SECRET")),
        },
        sample_video: vars
            .get("FILES_URL")
            .map(|f| format!("{}/sample.mp4", f.trim_end_matches('/'))),
        sigv4: None,
        outputs: vars,
        deployed: None,
    })
}

async fn deployed(stack: &str, region: Option<String>) -> Result<Target, CliError> {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(region) = region {
        loader = loader.region(aws_config::Region::new(region));
    }
    let sdk = loader.load().await;
    let region = sdk
        .region()
        .map(|r| r.to_string())
        .ok_or_else(|| CliError::Target("no AWS region: pass --region or set AWS_REGION".into()))?;
    let credentials = sdk
        .credentials_provider()
        .ok_or_else(|| CliError::Target("no AWS credentials configured".into()))?;
    let cloudformation = aws_sdk_cloudformation::Client::new(&sdk);
    let described = cloudformation
        .describe_stacks()
        .stack_name(stack)
        .send()
        .await
        .map_err(|e| {
            let text = aws_sdk_cloudformation::error::DisplayErrorContext(&e).to_string();
            match text.contains("does not exist") {
                true => CliError::NotFound(format!("stack {stack} in {region}")),
                false => CliError::Target(format!("CloudFormation DescribeStacks {stack}: {text}")),
            }
        })?;
    let found = described
        .stacks()
        .first()
        .ok_or_else(|| CliError::NotFound(format!("stack {stack} in {region}")))?;
    let outputs: BTreeMap<String, String> = found
        .outputs()
        .iter()
        .filter_map(|o| Some((o.output_key()?.to_owned(), o.output_value()?.to_owned())))
        .collect();
    let parameters = found
        .parameters()
        .iter()
        .filter_map(|p| {
            Some((
                p.parameter_key()?.to_owned(),
                p.parameter_value().unwrap_or_default().to_owned(),
            ))
        })
        .collect();
    let output = |k: &str| {
        outputs.get(k).cloned().ok_or_else(|| {
            CliError::Target(format!(
                "stack {stack} has no {k} output (is it this project's?)"
            ))
        })
    };
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    Ok(Target {
        api_base: api_base(&output("StatusUrl")?)?,
        callback_url: output("CallbackUrl")?,
        secrets: CallbackSecrets {
            token: env("MVCB_CALLBACK_TOKEN"),
            upstream_hmac: env("MVCB_UPSTREAM_HMAC_SECRET"),
            standard_webhooks: env("MVCB_STANDARD_WEBHOOKS_SECRET"),
        },
        sample_video: None,
        sigv4: Some(Sigv4 {
            credentials,
            region,
        }),
        outputs,
        deployed: Some(Deployed {
            stack: stack.to_owned(),
            cloudformation,
            parameters,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const STACK_ENV: &str = "\
CALLBACK_URL=http://127.0.0.1:9000/lambda-url/receiver/callbacks/music-video?token=tok-1
STATUS_URL=http://127.0.0.1:9000/lambda-url/status/tasks
# a comment
CALLBACK_TOKEN=tok-1
CALLBACK_URL_UNSIGNED=http://127.0.0.1:9000/lambda-url/receiver/callbacks/music-video
UPSTREAM_HMAC_SECRET='an odd secret with '\"'\"'quotes'\"'\"''
STANDARD_WEBHOOKS_SECRET=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw
FILES_URL=http://127.0.0.1:8090

EMPTY=
";

    #[test]
    fn stack_env_is_read_as_stack_py_writes_it() {
        let vars = parse_env_file(STACK_ENV);
        assert_eq!(vars["CALLBACK_TOKEN"], "tok-1");
        assert_eq!(vars["UPSTREAM_HMAC_SECRET"], "an odd secret with 'quotes'");
        assert_eq!(vars["EMPTY"], "");
        assert!(vars.keys().all(|k| !k.starts_with('#')));
        let target = local_from(vars, "stack.env").unwrap();
        assert_eq!(target.api_base, "http://127.0.0.1:9000/lambda-url/status");
        assert_eq!(
            target.callback_url,
            "http://127.0.0.1:9000/lambda-url/receiver/callbacks/music-video"
        );
        assert_eq!(
            target.sample_video.as_deref(),
            Some("http://127.0.0.1:8090/sample.mp4")
        );
        assert!(target.sigv4.is_none() && target.deployed.is_none());
        assert_eq!(target.secrets.token.as_deref(), Some("tok-1"));
        assert!(
            !format!("{:?}", target.secrets).contains("tok-1"),
            "secrets never printed"
        );
    }

    #[test]
    fn an_incomplete_stack_env_names_what_it_lacks() {
        let err = local_from(parse_env_file("STATUS_URL=http://x/tasks\n"), "f").unwrap_err();
        assert_eq!(err.exit_code(), 6);
        assert!(err.to_string().contains("CALLBACK_TOKEN"), "{err}");
        assert!(api_base("http://x/other").is_err());
        assert_eq!(
            api_base("https://a.execute-api.eu-west-1.amazonaws.com/tasks/").unwrap(),
            "https://a.execute-api.eu-west-1.amazonaws.com"
        );
    }
}
