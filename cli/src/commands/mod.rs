//! One module per command group; each takes the resolved [`Ctx`] and prints through
//! [`crate::output`].

pub mod callback;
pub mod deliveries;
pub mod doctor;
pub mod endpoints;
pub mod tasks;

use serde_json::Value;
use shared::{TaskId, Timestamp};

use crate::cli::{Cli, Command};
use crate::error::CliError;
use crate::http::Api;
use crate::output::Format;
use crate::target::Target;

/// What every command needs: where, how to call it, how to print.
#[derive(Debug)]
pub struct Ctx {
    pub target: Target,
    pub api: Api,
    pub format: Format,
}

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    if let Command::Completions { shell } = cli.command {
        let mut command = <Cli as clap::CommandFactory>::command();
        clap_complete::generate(shell, &mut command, "mvcb", &mut std::io::stdout());
        return Ok(());
    }
    let target = Target::resolve(&cli.target).await?;
    let api = Api::new(&target)?;
    let format = match cli.json {
        true => Format::Json,
        false => Format::Human,
    };
    let ctx = Ctx {
        target,
        api,
        format,
    };
    match cli.command {
        Command::Tasks(command) => tasks::run(&ctx, command).await,
        Command::Callback(command) => callback::run(&ctx, command).await,
        Command::Endpoints(command) => endpoints::run(&ctx, command).await,
        Command::Deliveries(command) => deliveries::run(&ctx, command).await,
        Command::Doctor(args) => doctor::run(&ctx, &args).await,
        Command::Completions { .. } => Ok(()),
    }
}

/// A task id as the API accepts it (checked here, so a typo is a usage error).
pub fn task_id(raw: &str) -> Result<TaskId, CliError> {
    TaskId::parse(raw).map_err(|e| CliError::Usage(format!("task id {raw:?}: {e}")))
}

/// An endpoint or delivery id as a path segment (`ep_…`, `dl_…`: letters, digits, `_`).
pub fn plain_id(raw: &str, what: &str) -> Result<String, CliError> {
    match !raw.is_empty()
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        true => Ok(raw.to_owned()),
        false => Err(CliError::Usage(format!("{what} id {raw:?} is not one"))),
    }
}

/// How long ago an RFC 3339 timestamp of the API was (`3m 12s`), or `-`.
pub fn age(value: &Value, now: Timestamp) -> String {
    value
        .as_str()
        .and_then(Timestamp::parse_rfc3339)
        .map(|at| {
            let secs = now.saturating_duration_since(at).as_secs();
            humantime::format_duration(std::time::Duration::from_secs(secs)).to_string()
        })
        .unwrap_or_else(|| "-".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ids_are_checked_before_any_request() {
        assert!(task_id("demo-1").is_ok());
        assert_eq!(task_id("a/b").unwrap_err().exit_code(), 2);
        assert!(plain_id("ep_abc123", "endpoint").is_ok());
        assert_eq!(plain_id("../x", "endpoint").unwrap_err().exit_code(), 2);
    }

    #[test]
    fn ages_read_as_durations() {
        let now = Timestamp::parse_rfc3339("2026-12-01T10:05:30.000Z").unwrap();
        assert_eq!(age(&json!("2026-12-01T10:00:00.000Z"), now), "5m 30s");
        assert_eq!(age(&json!(null), now), "-");
    }
}
