//! `mvcb doctor`: checks a deployment (or the local stack) end to end and says what is
//! wrong: outputs present, callback secrets set, alarms wired, the operator API
//! answering (signed), an unsigned callback refused, and a signed round trip (a
//! synthetic `mvcb-doctor-…` task answered by the receiver and recorded).

use serde_json::{Value, json};

use super::Ctx;
use super::callback::{scheme_name, send};
use super::tasks::show;
use crate::cli::{DoctorArgs, SendArgs};
use crate::error::CliError;
use crate::output::{Table, emit};
use crate::target::{Deployed, REQUIRED_LOCAL, REQUIRED_OUTPUTS};

/// The callback-secret parameters of the template (`NoEcho`: CloudFormation shows a set
/// one as `****`).
const SECRET_PARAMETERS: [&str; 3] = [
    "CallbackTokens",
    "UpstreamHmacSecrets",
    "StandardWebhooksSecrets",
];

/// How one check went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    Fail,
    Skip,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Self::Pass => "ok",
            Self::Fail => "FAIL",
            Self::Skip => "skip",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: &'static str,
    pub outcome: Outcome,
    pub detail: String,
}

fn check(name: &'static str, ok: bool, detail: impl Into<String>) -> Check {
    let outcome = match ok {
        true => Outcome::Pass,
        false => Outcome::Fail,
    };
    Check {
        name,
        outcome,
        detail: detail.into(),
    }
}

pub async fn run(ctx: &Ctx, args: &DoctorArgs) -> Result<(), CliError> {
    let mut checks = Vec::new();
    let target = &ctx.target;
    match &target.deployed {
        Some(deployed) => {
            let missing: Vec<&str> = REQUIRED_OUTPUTS
                .into_iter()
                .filter(|k| !target.outputs.contains_key(*k))
                .collect();
            checks.push(check(
                "outputs",
                missing.is_empty(),
                match missing.is_empty() {
                    true => format!("{} present", REQUIRED_OUTPUTS.join(", ")),
                    false => format!("missing {}", missing.join(", ")),
                },
            ));
            match stack_resources(deployed).await {
                Ok(resources) => {
                    checks.push(secrets(deployed, &resources));
                    checks.push(alarms(&resources));
                }
                Err(e) => {
                    checks.push(secrets(deployed, &[]));
                    checks.push(check("alarms", false, e));
                }
            }
        }
        None => {
            checks.push(check(
                "settings",
                true,
                format!("{} present", REQUIRED_LOCAL.join(", ")),
            ));
            let secrets = &target.secrets;
            let set = [
                &secrets.token,
                &secrets.upstream_hmac,
                &secrets.standard_webhooks,
            ]
            .iter()
            .filter(|s| s.as_deref().is_some_and(|s| !s.is_empty()))
            .count();
            checks.push(check(
                "secrets",
                set == 3,
                format!("{set} of 3 schemes have a secret"),
            ));
            checks.push(Check {
                name: "alarms",
                outcome: Outcome::Skip,
                detail: "the local stack has no CloudWatch".into(),
            });
        }
    }
    checks.push(operator_api(ctx).await);
    checks.push(unsigned_refused(ctx).await);
    match args.no_round_trip {
        true => checks.push(Check {
            name: "round trip",
            outcome: Outcome::Skip,
            detail: "--no-round-trip".into(),
        }),
        false => checks.push(round_trip(ctx, args).await),
    }
    let failed = checks.iter().filter(|c| c.outcome == Outcome::Fail).count();
    let report = json!({
        "target": target.name(),
        "ok": failed == 0,
        "checks": checks.iter().map(|c| json!({"check": c.name, "result": c.outcome.as_str(), "detail": c.detail})).collect::<Vec<_>>(),
    });
    emit(ctx.format, &report, || render(&target.name(), &checks))?;
    match failed {
        0 => Ok(()),
        failed => Err(CliError::Doctor {
            failed,
            total: checks.len(),
        }),
    }
}

pub fn render(name: &str, checks: &[Check]) -> String {
    let mut table = Table::new(&["check", "result", "detail"]);
    for c in checks {
        table.row(vec![
            c.name.to_owned(),
            c.outcome.as_str().to_owned(),
            c.detail.clone(),
        ]);
    }
    let failed = checks.iter().filter(|c| c.outcome == Outcome::Fail).count();
    format!(
        "{name}\n{}{}\n",
        table.render(),
        match failed {
            0 => "all checks passed".to_owned(),
            n => format!("{n} check(s) failed"),
        }
    )
}

/// One resource of the stack: logical id, type, status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    pub id: String,
    pub kind: String,
    pub status: String,
}

impl Resource {
    fn ready(&self) -> bool {
        self.status.ends_with("_COMPLETE") && !self.status.starts_with("DELETE")
    }
}

/// Every resource of the stack (CloudFormation `ListStackResources`, all pages).
async fn stack_resources(deployed: &Deployed) -> Result<Vec<Resource>, String> {
    let mut resources = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let page = deployed
            .cloudformation
            .list_stack_resources()
            .stack_name(&deployed.stack)
            .set_next_token(next.take())
            .send()
            .await
            .map_err(|e| {
                let text = aws_sdk_cloudformation::error::DisplayErrorContext(&e).to_string();
                format!("ListStackResources: {text}")
            })?;
        for r in page.stack_resource_summaries() {
            resources.push(Resource {
                id: r.logical_resource_id().unwrap_or_default().to_owned(),
                kind: r.resource_type().unwrap_or_default().to_owned(),
                status: r
                    .resource_status()
                    .map(|s| s.as_str().to_owned())
                    .unwrap_or_default(),
            });
        }
        match page.next_token() {
            Some(token) => next = Some(token.to_owned()),
            None => return Ok(resources),
        }
    }
}

/// The callback secrets: seeded by the `NoEcho` parameters, kept in Secrets Manager
/// (the values are never read here: the round trip proves one works).
fn secrets(deployed: &Deployed, resources: &[Resource]) -> Check {
    let set: Vec<&str> = SECRET_PARAMETERS
        .into_iter()
        .filter(|p| deployed.parameters.get(*p).is_some_and(|v| !v.is_empty()))
        .collect();
    let stored: Vec<&Resource> = resources
        .iter()
        .filter(|r| r.kind == "AWS::SecretsManager::Secret")
        .collect();
    let broken: Vec<String> = stored
        .iter()
        .filter(|r| !r.ready())
        .map(|r| format!("{} {}", r.id, r.status))
        .collect();
    let mut detail = match set.is_empty() {
        true => format!("none of {} is set", SECRET_PARAMETERS.join(", ")),
        false => format!("set: {}", set.join(", ")),
    };
    if !stored.is_empty() {
        detail.push_str(&format!("; {} Secrets Manager secrets", stored.len()));
    }
    if !broken.is_empty() {
        detail.push_str(&format!(", not ready: {}", broken.join(", ")));
    }
    check("secrets", !set.is_empty() && broken.is_empty(), detail)
}

/// The stack's `AWS::CloudWatch::Alarm` resources: at least one, all created.
pub fn alarms(resources: &[Resource]) -> Check {
    let alarms: Vec<&Resource> = resources
        .iter()
        .filter(|r| r.kind == "AWS::CloudWatch::Alarm")
        .collect();
    let broken: Vec<String> = alarms
        .iter()
        .filter(|r| !r.ready())
        .map(|r| format!("{} {}", r.id, r.status))
        .collect();
    match (alarms.is_empty(), broken.is_empty()) {
        (true, _) => check("alarms", false, "the stack has no CloudWatch alarms"),
        (false, true) => check(
            "alarms",
            true,
            format!("{} alarms in the stack", alarms.len()),
        ),
        (false, false) => check("alarms", false, format!("not ready: {}", broken.join(", "))),
    }
}

/// A signed read of a task that does not exist: 404 means the route, the signature and
/// the function all work.
async fn operator_api(ctx: &Ctx) -> Check {
    let probe = format!("mvcb-doctor-probe-{:08x}", fastrand::u32(..));
    match show(ctx, &probe).await {
        Err(CliError::NotFound(_)) => check(
            "operator api",
            true,
            "GET /tasks/{id} answers (404 for an unknown task)",
        ),
        Ok(_) => check("operator api", false, format!("a task {probe} exists?")),
        Err(e) => check("operator api", false, e.to_string()),
    }
}

/// The receiver must refuse a callback nobody signed.
async fn unsigned_refused(ctx: &Ctx) -> Check {
    let body = super::callback::envelope("mvcb-doctor-unsigned", 500, "unsigned", None);
    let response = ctx
        .api
        .client()
        .post(&ctx.target.callback_url)
        .json(&body)
        .send()
        .await;
    match response.map(|r| r.status().as_u16()) {
        Ok(401) => check(
            "verification",
            true,
            "an unsigned callback is refused (401)",
        ),
        Ok(status) => check(
            "verification",
            false,
            format!("an unsigned callback answered {status}, not 401"),
        ),
        Err(e) => check("verification", false, format!("the callback URL: {e}")),
    }
}

/// A signed failure callback for a synthetic task (no download anywhere), answered 200
/// and then readable as `failed` with the code sent.
async fn round_trip(ctx: &Ctx, args: &DoctorArgs) -> Check {
    let task = format!("mvcb-doctor-{:012x}", fastrand::u64(..) >> 16);
    let send_args = SendArgs {
        scheme: args.scheme,
        task_id: Some(task.clone()),
        code: 500,
        video_url: None,
        msg: "mvcb doctor round trip".into(),
        secret: args.secret.clone(),
    };
    let scheme = scheme_name(args.scheme);
    let answer = match send(ctx, &send_args).await {
        Ok((_, answer)) => answer,
        Err(e) => return check("round trip", false, e.to_string()),
    };
    if answer.status != 200 || answer.body["status"] != "received" {
        return check(
            "round trip",
            false,
            format!(
                "{scheme} callback answered {} {}",
                answer.status, answer.body
            ),
        );
    }
    match show(ctx, &task).await {
        Ok(recorded) if recorded_as_sent(&recorded) => check(
            "round trip",
            true,
            format!("{task}: {scheme} callback answered 200 and recorded"),
        ),
        Ok(recorded) => check(
            "round trip",
            false,
            format!("{task} recorded as {recorded}"),
        ),
        Err(e) => check("round trip", false, format!("{task} answered 200 but: {e}")),
    }
}

fn recorded_as_sent(task: &Value) -> bool {
    task["status"] == "failed" && task["upstream_code"] == 500 && task["callback_count"] == 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_says_what_failed() {
        let checks = vec![
            check("outputs", true, "present"),
            check("alarms", false, "the stack has no CloudWatch alarms"),
            Check {
                name: "round trip",
                outcome: Outcome::Skip,
                detail: "--no-round-trip".into(),
            },
        ];
        assert_eq!(
            render("stack prod", &checks),
            "stack prod\n\
             CHECK       RESULT  DETAIL\n\
             outputs     ok      present\n\
             alarms      FAIL    the stack has no CloudWatch alarms\n\
             round trip  skip    --no-round-trip\n\
             1 check(s) failed\n"
        );
    }

    fn resource(id: &str, kind: &str, status: &str) -> Resource {
        Resource {
            id: id.into(),
            kind: kind.into(),
            status: status.into(),
        }
    }

    #[test]
    fn alarms_must_exist_and_be_created() {
        let alarm = "AWS::CloudWatch::Alarm";
        let ok = [
            resource("DlqAlarm", alarm, "CREATE_COMPLETE"),
            resource("T", "AWS::DynamoDB::Table", "UPDATE_COMPLETE"),
        ];
        assert_eq!(alarms(&ok).outcome, Outcome::Pass);
        assert_eq!(alarms(&ok).detail, "1 alarms in the stack");
        assert_eq!(alarms(&ok[1..]).outcome, Outcome::Fail);
        let failing = [
            resource("DlqAlarm", alarm, "CREATE_FAILED"),
            resource("B", alarm, "DELETE_COMPLETE"),
        ];
        let c = alarms(&failing);
        assert_eq!(
            (c.outcome, c.detail.as_str()),
            (
                Outcome::Fail,
                "not ready: DlqAlarm CREATE_FAILED, B DELETE_COMPLETE"
            )
        );
    }

    #[test]
    fn a_round_trip_is_recorded_as_sent() {
        assert!(recorded_as_sent(
            &json!({"status": "failed", "upstream_code": 500, "callback_count": 1})
        ));
        assert!(!recorded_as_sent(
            &json!({"status": "received", "upstream_code": 200, "callback_count": 1})
        ));
    }
}
