//! `video-server`: the test suite's video server as a standalone process, for the
//! ingest benchmark (curl, rclone and ingest all read from it in the same run).
//!
//! ```text
//! video-server <port> <path>=<bytes>[:<seed>] ...
//! video-server 8099 /100m.mp4=104857600 /1g.mp4=1073741824
//! ```
//! Prints `ready <addr>` and then, per path, `<path> <bytes> <sha256>`; serves until killed.

use integration_tests::video_server::{Video, VideoServer};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let port: u16 = args
        .next()
        .ok_or("usage: video-server <port> <path>=<bytes>[:<seed>] ...")?
        .parse()?;
    let server = VideoServer::start(port).await;
    let mut videos = Vec::new();
    for spec in args {
        let (path, size) = spec.split_once('=').ok_or("expected <path>=<bytes>")?;
        let (bytes, seed) = size.split_once(':').unwrap_or((size, "1"));
        let video = Video::new(bytes.parse()?, seed.parse()?);
        server.serve(path, video);
        videos.push((path.to_owned(), video));
    }
    println!("ready {}", server.addr());
    for (path, video) in &videos {
        println!("{path} {} {}", video.len, video.sha256());
    }
    tokio::signal::ctrl_c().await?;
    Ok(())
}
