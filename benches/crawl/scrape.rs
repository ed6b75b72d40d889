//! The scrape part: `wrk` on the exporter's `/metrics`, plain and gzip, at 1, 16 and 64
//! connections.

use std::process::Command;

use crate::child::{cpu_seconds, Exporter};
use crate::replay::Replay;
use crate::support::{self, Recorded};
use crate::ScrapeFigures;

/// `212.00us`, `1.02ms`, `1.50s`, `2.00m` → seconds.
fn wrk_duration(text: &str) -> Option<f64> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().ok()?;
    let scale = match unit {
        "us" => 1e-6,
        "ms" => 1e-3,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return None,
    };
    Some(value * scale)
}

fn scrape_point(url: &str, pid: u32, connections: u32, gzip: bool, seconds: u64) -> ScrapeFigures {
    let threads = connections.min(2);
    let mut wrk = Command::new("wrk");
    wrk.args([
        &format!("-t{threads}"),
        &format!("-c{connections}"),
        &format!("-d{seconds}s"),
        "--latency",
        "--timeout",
        "60s",
    ]);
    if gzip {
        wrk.args(["-H", "Accept-Encoding: gzip"]);
    }
    wrk.arg(format!("{url}/metrics"));
    let cpu_before = cpu_seconds(pid);
    let output = wrk
        .output()
        .expect("wrk runs (Debian: apt-get install wrk)");
    let cpu = cpu_seconds(pid) - cpu_before;
    let text = String::from_utf8_lossy(&output.stdout);
    let percentile = |p: &str| {
        text.lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix(p))
            .and_then(|rest| wrk_duration(rest.trim()))
            .unwrap_or(f64::NAN)
    };
    let number_after = |key: &str| {
        text.lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix(key))
            .and_then(|rest| rest.split_whitespace().next()?.parse::<f64>().ok())
    };
    let requests = text
        .lines()
        .find_map(|l| {
            let (n, rest) = l.trim().split_once(' ')?;
            rest.starts_with("requests in")
                .then(|| n.parse::<u64>().ok())?
        })
        .unwrap_or(0);
    let errors = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Non-2xx or 3xx responses:"))
        .filter_map(|n| n.trim().parse::<u64>().ok())
        .sum::<u64>()
        + text
            .lines()
            .filter_map(|l| l.trim().strip_prefix("Socket errors:"))
            .flat_map(|rest| {
                rest.split(',')
                    .filter_map(|part| part.split_whitespace().nth(1)?.parse::<u64>().ok())
                    .collect::<Vec<_>>()
            })
            .sum::<u64>();
    if !output.status.success() || requests == 0 {
        eprintln!(
            "wrk failed: {text}{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    ScrapeFigures {
        devices: 0,
        connections,
        gzip,
        p50: percentile("50%"),
        p99: percentile("99%"),
        rps: number_after("Requests/sec:").unwrap_or(0.0),
        errors,
        cpu_per_request: if requests > 0 {
            cpu / requests as f64
        } else {
            f64::NAN
        },
    }
}

pub(crate) async fn scrape(recorded: &Recorded, seconds: u64) -> Vec<ScrapeFigures> {
    let replay = Replay::start(recorded, None).await;
    let exporter = Exporter::start(&replay.url, 3600.0, &[]);
    exporter.wait_ready(crate::replay::LIMIT).await;
    let (url, pid) = (exporter.url.clone(), exporter.pid());
    let mut points = Vec::new();
    for gzip in [false, true] {
        for connections in [1, 16, 64] {
            let (url, devices) = (url.clone(), recorded.devices);
            let mut point = tokio::task::spawn_blocking(move || {
                scrape_point(&url, pid, connections, gzip, seconds)
            })
            .await
            .expect("wrk thread");
            point.devices = devices;
            eprintln!(
                "scrape {devices} devices, {connections} connections, gzip {gzip}: p50 {} p99 {} {:.0}/s",
                support::duration(point.p50),
                support::duration(point.p99),
                point.rps
            );
            points.push(point);
        }
    }
    points
}
