//! `upstream-api`: the simulated upstream API as a standalone process, for `make run`.
//!
//! ```text
//! upstream-api <port> <key>
//! ```
//! Prints `ready <addr>` and serves until killed (see `integration_tests::upstream_api`).

use integration_tests::upstream_api::UpstreamApi;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let port: u16 = args
        .next()
        .ok_or("usage: upstream-api <port> <key>")?
        .parse()?;
    let key = args.next().ok_or("usage: upstream-api <port> <key>")?;
    let api = UpstreamApi::start(port, &key).await?;
    println!("ready {}", api.base_url());
    tokio::signal::ctrl_c().await?;
    Ok(())
}
