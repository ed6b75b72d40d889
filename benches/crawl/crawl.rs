//! The crawl part: the binary crawls the replay, every crawl a full one; wall time and CPU of
//! the first crawl, CPU, requests and bytes of the steady ones, and RSS.

use std::time::Duration;

use crate::child::status_bytes;
use crate::replay::{Replay, LIMIT};
use crate::support::Recorded;
use crate::CrawlFigures;

/// Crawl interval and steady-state crawls measured: small accounts crawl often so that the
/// 10 ms CPU ticks average out; big ones get room for a whole crawl.
fn crawl_plan(devices: usize) -> (f64, usize) {
    match devices {
        0..=100 => (0.1, 40),
        101..=2_000 => (0.25, 16),
        2_001..=20_000 => (2.0, 4),
        _ => (20.0, 2),
    }
}

pub(crate) async fn crawl(recorded: &Recorded, vars: &[(&str, &str)]) -> CrawlFigures {
    let replay = Replay::start(recorded, None).await;
    let (interval, crawls) = crawl_plan(recorded.devices);
    // Every crawl full, as every crawl was before incremental ones (the `churn` part measures
    // those); the binary of an earlier commit ignores the variable.
    let mut all = vec![("FULL_CRAWL_INTERVAL", "0")];
    all.extend_from_slice(vars);
    let first = replay.first_crawl(interval, &all).await;
    let exporter = first.exporter;
    // Crawls 2 ..= crawls + 1 run back to back; each costs the CPU between two starts.
    let starts = replay.wait_starts(crawls + 2, LIMIT).await;
    let (a, b) = (starts[1], starts[crawls + 1]);
    let n = crawls as f64;
    let figures = CrawlFigures {
        devices: recorded.devices,
        vars: vars.iter().map(|(k, v)| format!(" {k}={v}")).collect(),
        fleets: recorded.fleets,
        first_wall: first.wall,
        first_cpu: first.cpu,
        steady_cpu: (b.cpu - a.cpu) / n,
        steady_crawls: crawls,
        requests: (b.requests - a.requests) / crawls as u64,
        bytes: (b.bytes - a.bytes) / crawls as u64,
        peak_rss: status_bytes(exporter.pid(), "VmHWM"),
        rss_after: status_bytes(exporter.pid(), "VmRSS"),
    };
    let warning = if starts[2].at - starts[1].at > Duration::from_secs_f64(interval * 1.5) {
        " (crawls took longer than the interval)"
    } else {
        ""
    };
    eprintln!(
        "crawl {} devices: first {:.3} s wall {:.3} s CPU, steady {:.3} s CPU over {crawls} crawls{warning}",
        recorded.devices, figures.first_wall, figures.first_cpu, figures.steady_cpu
    );
    figures
}
