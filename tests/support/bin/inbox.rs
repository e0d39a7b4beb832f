//! `inbox`: the local notification inbox as a standalone process, for `make run`.
//!
//! ```text
//! inbox <port> [log.jsonl]
//! ```
//! Prints `ready <url>` and serves until killed (see `integration_tests::inbox`).

use integration_tests::inbox::Inbox;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let port: u16 = args
        .next()
        .ok_or("usage: inbox <port> [log.jsonl]")?
        .parse()?;
    let log = args.next().map(std::path::PathBuf::from);
    let inbox = Inbox::start(port, log).await?;
    println!("ready {}", inbox.url());
    tokio::signal::ctrl_c().await?;
    Ok(())
}
