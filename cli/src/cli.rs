//! The command line, as clap derives it: global options (which stack, `--json`) and one
//! subcommand per operator action. Parsing only; what each command does is in
//! [`crate::commands`].

use std::path::PathBuf;
use std::time::Duration;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, Parser, Subcommand, ValueEnum};
use shared::TaskStatus;

/// Operator CLI of the music-video callback receiver.
#[derive(Debug, Parser)]
#[command(name = "mvcb", version, about, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Print JSON (one document per command) instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

/// Which stack the commands talk to.
#[derive(Debug, Clone, Args)]
pub struct TargetArgs {
    /// The deployed stack's name (its outputs are read from CloudFormation).
    #[arg(long, global = true, env = "MVCB_STACK")]
    pub stack: Option<String>,
    /// The local stack (`make run`), found through `.local/stack.env` (wins over
    /// `--stack` and `MVCB_STACK`).
    #[arg(long, global = true)]
    pub local: bool,
    /// The local stack's settings file.
    #[arg(
        long,
        global = true,
        env = "MVCB_STACK_ENV",
        default_value = ".local/stack.env"
    )]
    pub stack_env: PathBuf,
    /// AWS region of the deployed stack (default: the AWS configuration's).
    #[arg(long, global = true, env = "AWS_REGION")]
    pub region: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Tasks: list by status and age, show, watch, expect, re-drive.
    #[command(subcommand)]
    Tasks(TasksCommand),
    /// Send a correctly signed test callback to the receiver.
    #[command(subcommand)]
    Callback(CallbackCommand),
    /// Notification endpoints.
    #[command(subcommand)]
    Endpoints(EndpointsCommand),
    /// Notification deliveries.
    #[command(subcommand)]
    Deliveries(DeliveriesCommand),
    /// Check a deployment: outputs, secrets, alarms, a signed round trip.
    Doctor(DoctorArgs),
    /// Print a shell completion script.
    Completions { shell: clap_complete::Shell },
}

/// `--status`: one of the API's status names ([`TaskStatus::ALL`]), listed in `--help`.
fn task_status() -> impl TypedValueParser<Value = TaskStatus> {
    PossibleValuesParser::new(TaskStatus::ALL.map(TaskStatus::as_str))
        .try_map(|name| name.parse::<TaskStatus>())
}

#[derive(Debug, Subcommand)]
pub enum TasksCommand {
    /// Tasks in one status, newest change first (an index query, never a scan).
    List {
        #[arg(long, value_parser = task_status())]
        status: TaskStatus,
        /// Only tasks changed within this long (e.g. `30m`, `2h`, `7d`).
        #[arg(long, value_parser = duration)]
        since: Option<Duration>,
        /// Only tasks unchanged for at least this long (stuck ones, e.g. `10m`).
        #[arg(long, value_parser = duration)]
        older_than: Option<Duration>,
        /// Tasks per page (1-100).
        #[arg(long, default_value_t = 25, value_parser = clap::value_parser!(u16).range(1..=100))]
        limit: u16,
        /// Start after this page (the `next_cursor` a previous page printed).
        #[arg(long)]
        cursor: Option<String>,
        /// Follow every page.
        #[arg(long, conflicts_with = "cursor")]
        all: bool,
    },
    /// One task: its state, and a presigned URL once stored.
    Show { task_id: String },
    /// Follow a task until it is stored or failed, with a progress bar while downloading.
    Watch {
        task_id: String,
        /// Give up after this long.
        #[arg(long, value_parser = duration, default_value = "15m")]
        timeout: Duration,
        /// Time between two reads.
        #[arg(long, value_parser = duration, default_value = "1s")]
        interval: Duration,
    },
    /// Register tasks whose callback is expected (polled upstream if it never comes).
    Expect {
        #[arg(required = true, num_args = 1..=100)]
        task_ids: Vec<String>,
    },
    /// Hand a received task (or one whose lease ran out) to ingest again now.
    Redrive { task_id: String },
}

/// A callback verification scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scheme {
    /// `?token=` on the callback URL.
    Token,
    /// The upstream's `X-Webhook-Signature` over `{task_id}.{timestamp}`.
    UpstreamHmac,
    /// Standard Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature`).
    StandardWebhooks,
}

#[derive(Debug, Subcommand)]
pub enum CallbackCommand {
    /// POST a signed callback to the stack's callback URL.
    Send(SendArgs),
}

#[derive(Debug, Clone, Args)]
pub struct SendArgs {
    #[arg(long, value_enum, default_value = "token")]
    pub scheme: Scheme,
    /// The task id (default: a new `mvcb-…` id).
    #[arg(long)]
    pub task_id: Option<String>,
    /// The upstream code: 200 (success, needs a video URL), or 400, 451, 500.
    #[arg(long, default_value_t = 200)]
    pub code: u16,
    /// The video URL of a success (locally: the stack's sample video by default).
    #[arg(long)]
    pub video_url: Option<String>,
    #[arg(long, default_value = "sent by mvcb")]
    pub msg: String,
    /// The scheme's secret: a callback token, an upstream HMAC secret, or a `whsec_`
    /// secret (locally: read from the stack's settings).
    #[arg(long, env = "MVCB_CALLBACK_SECRET", hide_env_values = true)]
    pub secret: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum EndpointsCommand {
    /// Add an endpoint; its signing secret is shown this once.
    Add {
        /// webhook, slack, discord, wecom, feishu or custom.
        #[arg(long, default_value = "webhook")]
        kind: String,
        #[arg(long)]
        url: String,
        /// hmac-sha256 or ed25519 (webhook and custom kinds).
        #[arg(long)]
        signing: Option<String>,
        #[arg(long)]
        description: Option<String>,
        /// Only tasks whose id starts with one of these.
        #[arg(long = "task-id-prefix")]
        task_id_prefixes: Vec<String>,
    },
    /// Every endpoint, with its health.
    List,
    /// Send a `test` event now.
    Test { id: String },
    /// Send again the dead and skipped deliveries of a window (at most 14 days).
    Recover {
        id: String,
        /// The window's start, this long ago.
        #[arg(long, value_parser = duration, default_value = "1d")]
        since: Duration,
    },
    /// Disable an endpoint (its deliveries are skipped).
    Disable { id: String },
    /// Enable an endpoint (its health is reset).
    Enable { id: String },
}

#[derive(Debug, Subcommand)]
pub enum DeliveriesCommand {
    /// An endpoint's deliveries, newest first.
    List {
        #[arg(long)]
        endpoint: String,
        #[arg(long, default_value_t = 25, value_parser = clap::value_parser!(u16).range(1..=100))]
        limit: u16,
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Send a delivery again (the event id kept, a new signature).
    Retry { id: String },
}

#[derive(Debug, Clone, Args)]
pub struct DoctorArgs {
    /// Skip the signed round trip (it records a failed `mvcb-doctor-…` task, which
    /// endpoints without a task-id filter are notified of).
    #[arg(long)]
    pub no_round_trip: bool,
    /// The scheme of the round trip's callback.
    #[arg(long, value_enum, default_value = "token")]
    pub scheme: Scheme,
    /// Its secret (locally: read from the stack's settings).
    #[arg(long, env = "MVCB_CALLBACK_SECRET", hide_env_values = true)]
    pub secret: Option<String>,
}

/// `30s`, `10m`, `2h`, `7d` (humantime).
fn duration(raw: &str) -> Result<Duration, String> {
    humantime::parse_duration(raw)
        .map_err(|e| format!("{raw:?} is not a duration ({e}); e.g. 90s, 10m, 2h, 7d"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("mvcb").chain(args.iter().copied()))
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn tasks_list_takes_a_status_and_ages() {
        let cli = parse(&[
            "--local", "tasks", "list", "--status", "stored", "--since", "2h", "--json",
        ])
        .unwrap();
        assert!(cli.target.local && cli.json);
        let Command::Tasks(TasksCommand::List {
            status,
            since,
            older_than,
            limit,
            all,
            ..
        }) = cli.command
        else {
            panic!("{:?}", cli.command)
        };
        assert_eq!(
            (status, since, older_than, limit, all),
            (
                TaskStatus::Stored,
                Some(Duration::from_secs(7200)),
                None,
                25,
                false
            )
        );
        for bad in [
            &["tasks", "list"][..],
            &["tasks", "list", "--status", "lost"],
            &["tasks", "list", "--status", "stored", "--since", "soon"],
            &["tasks", "list", "--status", "stored", "--limit", "101"],
            &[
                "tasks", "list", "--status", "stored", "--all", "--cursor", "x",
            ],
            &["tasks", "expect"],
        ] {
            let err = parse(bad).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{bad:?}: {err}");
        }
    }

    #[test]
    fn callback_send_defaults_to_a_token_success() {
        let cli = parse(&[
            "--stack",
            "prod",
            "callback",
            "send",
            "--scheme",
            "standard-webhooks",
            "--code",
            "451",
        ])
        .unwrap();
        assert_eq!(cli.target.stack.as_deref(), Some("prod"));
        let Command::Callback(CallbackCommand::Send(send)) = cli.command else {
            panic!()
        };
        assert_eq!(
            (send.scheme, send.code, send.task_id),
            (Scheme::StandardWebhooks, 451, None)
        );
        let Command::Callback(CallbackCommand::Send(send)) =
            parse(&["callback", "send"]).unwrap().command
        else {
            panic!()
        };
        assert_eq!((send.scheme, send.code), (Scheme::Token, 200));
    }

    #[test]
    fn completions_know_the_shells() {
        assert!(matches!(
            parse(&["completions", "bash"]).unwrap().command,
            Command::Completions { .. }
        ));
        assert!(parse(&["completions", "tcsh"]).is_err());
    }
}
