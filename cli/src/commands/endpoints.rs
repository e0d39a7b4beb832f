//! `mvcb endpoints add|list|test|recover|disable|enable`.

use serde_json::{Map, Value, json};
use shared::Timestamp;

use super::{Ctx, plain_id};
use crate::cli::EndpointsCommand;
use crate::error::CliError;
use crate::output::{Table, cell, emit, fields};

pub async fn run(ctx: &Ctx, command: EndpointsCommand) -> Result<(), CliError> {
    let api = &ctx.api;
    match command {
        EndpointsCommand::Add {
            kind,
            url,
            signing,
            description,
            task_id_prefixes,
        } => {
            let spec = spec(&kind, &url, signing, description, task_id_prefixes);
            let answer = api.post("/endpoints", Some(&spec), "endpoints").await?;
            emit(ctx.format, &answer, || {
                let secret = answer["secret"]
                    .as_str()
                    .map(|s| format!("{s}   (shown this once: keep it)"));
                endpoint_fields(&answer["endpoint"], secret)
            })
        }
        EndpointsCommand::List => {
            let answer = api.get("/endpoints", &[], "endpoints").await?;
            emit(ctx.format, &answer, || endpoints_table(&answer))
        }
        EndpointsCommand::Test { id } => {
            let id = plain_id(&id, "endpoint")?;
            let answer = api
                .post(
                    &format!("/endpoints/{id}/test"),
                    None,
                    &format!("endpoint {id}"),
                )
                .await?;
            emit(ctx.format, &answer, || {
                let attempt = answer["delivery"]["attempts"]
                    .as_array()
                    .and_then(|a| a.last())
                    .cloned()
                    .unwrap_or(Value::Null);
                format!(
                    "{id}: test {} (HTTP {}, {} ms), delivery {}\n",
                    cell(&answer["outcome"]),
                    cell(&attempt["status_code"]),
                    cell(&attempt["duration_ms"]),
                    cell(&answer["delivery"]["id"])
                )
            })?;
            match answer["outcome"].as_str() {
                Some("succeeded") => Ok(()),
                other => Err(CliError::Unexpected {
                    what: format!("the test of {id}"),
                    status: 200,
                    body: format!("outcome {}", other.unwrap_or("unknown")),
                }),
            }
        }
        EndpointsCommand::Recover { id, since } => {
            let id = plain_id(&id, "endpoint")?;
            let now = Timestamp::now();
            let window = json!({ "since": now.saturating_sub(since).to_rfc3339(), "until": now.to_rfc3339() });
            let answer = api
                .post(
                    &format!("/endpoints/{id}/recover"),
                    Some(&window),
                    &format!("endpoint {id}"),
                )
                .await?;
            emit(ctx.format, &answer, || {
                format!(
                    "{id}: {} deliveries looked at, {} sent again\n",
                    cell(&answer["scanned"]),
                    cell(&answer["replayed"])
                )
            })
        }
        EndpointsCommand::Disable { id } => switch(ctx, &id, "disable").await,
        EndpointsCommand::Enable { id } => switch(ctx, &id, "enable").await,
    }
}

async fn switch(ctx: &Ctx, id: &str, action: &str) -> Result<(), CliError> {
    let id = plain_id(id, "endpoint")?;
    let answer = ctx
        .api
        .post(
            &format!("/endpoints/{id}/{action}"),
            None,
            &format!("endpoint {id}"),
        )
        .await?;
    emit(ctx.format, &answer, || {
        endpoint_fields(&answer["endpoint"], None)
    })
}

/// The endpoint spec of `endpoints add` (the API checks it; unknown fields are refused).
pub fn spec(
    kind: &str,
    url: &str,
    signing: Option<String>,
    description: Option<String>,
    prefixes: Vec<String>,
) -> Value {
    let mut spec = Map::new();
    spec.insert("kind".into(), kind.into());
    spec.insert("url".into(), url.into());
    if let Some(signing) = signing {
        spec.insert("signing".into(), signing.into());
    }
    if let Some(description) = description {
        spec.insert("description".into(), description.into());
    }
    if !prefixes.is_empty() {
        spec.insert("filter".into(), json!({ "task_id_prefixes": prefixes }));
    }
    Value::Object(spec)
}

fn health(endpoint: &Value) -> String {
    match endpoint["health"]["consecutive_failures"].as_u64() {
        Some(0) | None => "ok".to_owned(),
        Some(n) => format!("{n} failures"),
    }
}

pub fn endpoints_table(answer: &Value) -> String {
    let mut table = Table::new(&["id", "kind", "url", "enabled", "health", "description"]);
    for e in answer["endpoints"].as_array().into_iter().flatten() {
        table.row(vec![
            cell(&e["id"]),
            cell(&e["kind"]),
            cell(&e["url"]),
            match e["enabled"].as_bool() {
                Some(true) => "yes".into(),
                _ => format!(
                    "no ({})",
                    e["disabled_reason"].as_str().unwrap_or("disabled")
                ),
            },
            health(e),
            cell(&e["description"]),
        ]);
    }
    match table.is_empty() {
        true => "no endpoints\n".into(),
        false => table.render(),
    }
}

fn endpoint_fields(e: &Value, secret: Option<String>) -> String {
    fields(&[
        ("id", cell(&e["id"])),
        ("kind", cell(&e["kind"])),
        ("url", cell(&e["url"])),
        ("signing", cell(&e["signing"])),
        ("enabled", cell(&e["enabled"])),
        ("health", health(e)),
        (
            "description",
            e["description"].as_str().unwrap_or("").to_owned(),
        ),
        ("secret", secret.unwrap_or_default()),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_carries_only_what_was_given() {
        assert_eq!(
            spec("webhook", "https://h.example/x", None, None, vec![]),
            json!({"kind": "webhook", "url": "https://h.example/x"})
        );
        assert_eq!(
            spec(
                "webhook",
                "https://h",
                Some("ed25519".into()),
                Some("ops".into()),
                vec!["proj-a-".into()]
            ),
            json!({"kind": "webhook", "url": "https://h", "signing": "ed25519", "description": "ops",
                   "filter": {"task_id_prefixes": ["proj-a-"]}})
        );
    }

    #[test]
    fn endpoints_list_as_a_table() {
        let answer = json!({"endpoints": [
            {"id": "ep_1", "kind": "webhook", "url": "https://h/x", "enabled": true,
             "health": {"consecutive_failures": 0}, "description": ""},
            {"id": "ep_2", "kind": "slack", "url": "hooks.slack.com…abcd", "enabled": false,
             "disabled_reason": "operator", "health": {"consecutive_failures": 3}, "description": "team"},
        ]});
        assert_eq!(
            endpoints_table(&answer),
            "ID    KIND     URL                   ENABLED        HEALTH      DESCRIPTION\n\
             ep_1  webhook  https://h/x           yes            ok\n\
             ep_2  slack    hooks.slack.com…abcd  no (operator)  3 failures  team\n"
        );
        assert_eq!(endpoints_table(&json!({"endpoints": []})), "no endpoints\n");
    }
}
