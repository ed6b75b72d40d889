//! The idle part: RSS and CPU of an exporter with a small account between two crawls.

use std::time::{Duration, Instant};

use crate::child::{cpu_seconds, status_bytes, Exporter};
use crate::replay::Replay;
use crate::support::Recorded;
use crate::IdleFigures;

pub(crate) async fn idle(recorded: &Recorded, seconds: u64) -> IdleFigures {
    let replay = Replay::start(recorded, None).await;
    let exporter = Exporter::start(&replay.url, 60.0, &[]);
    exporter.wait_ready(Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (t0, c0) = (Instant::now(), cpu_seconds(exporter.pid()));
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let wall = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds(exporter.pid()) - c0;
    assert_eq!(replay.starts().len(), 1, "no crawl during the idle window");
    IdleFigures {
        devices: recorded.devices,
        seconds: wall,
        rss: status_bytes(exporter.pid(), "VmRSS"),
        peak_rss: status_bytes(exporter.pid(), "VmHWM"),
        cpu,
    }
}
