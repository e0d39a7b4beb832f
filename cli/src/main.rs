//! `mvcb`: the operator CLI of the music-video callback receiver. Talks to a deployed
//! stack (outputs from CloudFormation, IAM routes signed with SigV4) or to the local one
//! (`.local/stack.env`). Wiring only: the command line is [`cli`], the target
//! [`target`], requests [`http`], the commands [`commands`], printing [`output`], and
//! exit codes [`error`].

mod cli;
mod commands;
mod error;
mod http;
mod output;
mod target;

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let result = commands::run(cli).await;
    if let Err(e) = &result {
        eprintln!("mvcb: {e}");
    }
    error::exit_code(&result)
}
