//! `mvcb deliveries list|retry`.

use serde_json::Value;

use super::{Ctx, plain_id};
use crate::cli::DeliveriesCommand;
use crate::error::CliError;
use crate::output::{Table, cell, emit};

pub async fn run(ctx: &Ctx, command: DeliveriesCommand) -> Result<(), CliError> {
    match command {
        DeliveriesCommand::List {
            endpoint,
            limit,
            cursor,
        } => {
            let id = plain_id(&endpoint, "endpoint")?;
            let mut query = vec![("limit", limit.to_string())];
            if let Some(cursor) = cursor {
                query.push(("cursor", cursor));
            }
            let answer = ctx
                .api
                .get(
                    &format!("/endpoints/{id}/deliveries"),
                    &query,
                    &format!("endpoint {id}"),
                )
                .await?;
            emit(ctx.format, &answer, || deliveries_table(&answer))
        }
        DeliveriesCommand::Retry { id } => {
            let id = plain_id(&id, "delivery")?;
            let answer = ctx
                .api
                .post(
                    &format!("/deliveries/{id}/retry"),
                    None,
                    &format!("delivery {id}"),
                )
                .await?;
            emit(ctx.format, &answer, || {
                format!(
                    "{id}: {} (queued again, same event id)\n",
                    cell(&answer["delivery"]["status"])
                )
            })
        }
    }
}

pub fn deliveries_table(answer: &Value) -> String {
    let mut table = Table::new(&[
        "id",
        "event",
        "task_id",
        "status",
        "attempts",
        "last",
        "created_at",
    ]);
    for d in answer["deliveries"].as_array().into_iter().flatten() {
        let last = d["attempts"].as_array().and_then(|a| a.last());
        table.row(vec![
            cell(&d["id"]),
            cell(&d["event"]["type"]),
            d["event"]["data"]["task_id"]
                .as_str()
                .unwrap_or("-")
                .to_owned(),
            cell(&d["status"]),
            cell(&d["attempt_count"]),
            last.map(|a| format!("HTTP {}", cell(&a["status_code"])))
                .unwrap_or_else(|| "-".into()),
            cell(&d["created_at"]),
        ]);
    }
    let mut text = match table.is_empty() {
        true => "no deliveries\n".to_owned(),
        false => table.render(),
    };
    if let Some(cursor) = answer["next_cursor"].as_str() {
        text.push_str(&format!("more: --cursor {cursor}\n"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn deliveries_list_as_a_table() {
        let answer = json!({"deliveries": [
            {"id": "dl_1", "event": {"type": "task.stored", "data": {"task_id": "demo-1"}},
             "status": "succeeded", "attempt_count": 1, "attempts": [{"status_code": 204}],
             "created_at": "2026-12-01T10:00:00.000Z"},
            {"id": "dl_2", "event": {"type": "test", "data": {}}, "status": "pending",
             "attempt_count": 0, "attempts": [], "created_at": "2026-12-01T10:01:00.000Z"},
        ], "next_cursor": "c1"});
        assert_eq!(
            deliveries_table(&answer),
            "ID    EVENT        TASK_ID  STATUS     ATTEMPTS  LAST      CREATED_AT\n\
             dl_1  task.stored  demo-1   succeeded  1         HTTP 204  2026-12-01T10:00:00.000Z\n\
             dl_2  test         -        pending    0         -         2026-12-01T10:01:00.000Z\n\
             more: --cursor c1\n"
        );
    }
}
