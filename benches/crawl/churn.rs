//! The churn parts: the binary crawls an account that changes before every crawl, and the
//! table of what its first and steady crawls read.

use std::time::Duration;

use crate::child::status_bytes;
use crate::cpu;
use crate::replay::{Mark, Replay, LIMIT};
use crate::support::{self, Recorded};
use crate::table::{Churn, Shape, SHAPES};

/// Bytes, requests and rows between two marks.
#[derive(Clone, Copy, Debug, Default)]
struct Window {
    requests: f64,
    bytes: f64,
    rows: f64,
    shapes: [f64; SHAPES],
    shape_bytes: [f64; SHAPES],
}

impl Window {
    /// What crawls `a` to `b` (marks of their starts) asked for, per crawl.
    fn between(a: &Mark, b: &Mark, crawls: usize) -> Window {
        let n = crawls as f64;
        Window {
            requests: (b.requests - a.requests) as f64 / n,
            bytes: (b.bytes - a.bytes) as f64 / n,
            rows: (b.rows - a.rows) as f64 / n,
            shapes: std::array::from_fn(|i| (b.shapes[i] - a.shapes[i]) as f64 / n),
            shape_bytes: std::array::from_fn(|i| (b.shape_bytes[i] - a.shape_bytes[i]) as f64 / n),
        }
    }

    /// `whoami 1, 304 6, changed 2, count 1, ids 11`: the requests of a crawl by shape.
    fn shapes(&self) -> String {
        let names = [
            (Shape::Whoami, "whoami"),
            (Shape::Probe, "probe"),
            (Shape::Listing, "lists 200"),
            (Shape::NotModified, "lists 304"),
            (Shape::Devices, "device pages"),
            (Shape::Changed, "changed pages"),
            (Shape::Count, "count"),
            (Shape::Ids, "id pages"),
            (Shape::Unknown, "unknown"),
        ];
        names
            .iter()
            .filter(|(s, _)| self.shapes[s.index()] > 0.0)
            .map(|(s, name)| {
                let bytes = self.shape_bytes[s.index()].round() as u64;
                let n = trim(self.shapes[s.index()]);
                format!("{name} {n} ({} B)", support::thousands(bytes))
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// `2`, `2.5`: a count per crawl without needless decimals.
fn trim(x: f64) -> String {
    if (x - x.round()).abs() < 1e-9 {
        format!("{x:.0}")
    } else {
        format!("{x:.1}")
    }
}

pub(crate) struct ChurnFigures {
    devices: usize,
    churn: Churn,
    /// Variables set besides the defaults.
    vars: String,
    first: Window,
    first_cpu: f64,
    first_wall: f64,
    /// `VmHWM` when the first crawl was published.
    first_peak_rss: u64,
    steady: Window,
    steady_cpu: f64,
    steady_crawls: usize,
    peak_rss: u64,
    rss_after: u64,
}

/// Crawl interval and steady crawls measured with churn: at least 8 crawls at 10,000 devices
/// (CPU is counted in 10 ms ticks), room for a whole full crawl of the earlier binary at
/// 100,000.
fn churn_plan(devices: usize) -> (f64, usize) {
    match devices {
        0..=20_000 => (2.0, 8),
        _ => (20.0, 3),
    }
}

/// The binary crawls an account that changes before every crawl but the first (`Churn`),
/// with `FULL_CRAWL_INTERVAL` of `full_interval` seconds: with 3600, a full crawl, then
/// incremental ones; with 0, full crawls only (the binary of an earlier commit reads every
/// device every time whatever it says).
pub(crate) async fn churn(recorded: &Recorded, churn: Churn, full_interval: &str) -> ChurnFigures {
    let replay = Replay::start(recorded, Some(churn)).await;
    let (interval, crawls) = churn_plan(recorded.devices);
    let vars = [("FULL_CRAWL_INTERVAL", full_interval)];
    let first = replay.first_crawl(interval, &vars).await;
    let exporter = first.exporter;
    let first_peak_rss = status_bytes(exporter.pid(), "VmHWM");
    let starts = replay.wait_starts(crawls + 2, LIMIT).await;
    let (a, b) = (starts[1], starts[crawls + 1]);
    let figures = ChurnFigures {
        first_peak_rss,
        devices: recorded.devices,
        churn,
        vars: vars.iter().map(|(k, v)| format!(" {k}={v}")).collect(),
        first: Window::between(&starts[0], &starts[1], 1),
        first_cpu: first.cpu,
        first_wall: first.wall,
        steady: Window::between(&a, &b, crawls),
        steady_cpu: (b.cpu - a.cpu) / crawls as f64,
        steady_crawls: crawls,
        peak_rss: status_bytes(exporter.pid(), "VmHWM"),
        rss_after: status_bytes(exporter.pid(), "VmRSS"),
    };
    let slow = starts
        .windows(2)
        .skip(1)
        .any(|w| w[1].at - w[0].at > Duration::from_secs_f64(interval * 1.5));
    let warning = if slow {
        " (crawls took longer than the interval)"
    } else {
        ""
    };
    eprintln!(
        "churn {} devices, {} % a crawl: first {} in {} requests, steady {} in {} requests ({}), {:.3} s CPU per crawl over {crawls}{warning}",
        recorded.devices,
        churn.share * 100.0,
        support::size(figures.first.bytes as u64),
        figures.first.requests,
        support::size(figures.steady.bytes as u64),
        figures.steady.requests,
        figures.steady.shapes(),
        figures.steady_cpu,
    );
    figures
}

/// `1,468,123 B (1.4 MiB)`: exact, for comparing with a target in bytes.
fn bytes(n: f64) -> String {
    let n = n.round() as u64;
    format!("{} B ({})", support::thousands(n), support::size(n))
}

pub(crate) fn churn_table(runs: &[ChurnFigures]) -> String {
    let mut out = String::from(
        "| devices | changed per crawl | first crawl: requests | bytes | CPU | wall | peak RSS | steady crawls | requests per crawl | device rows per crawl | bytes per crawl | CPU per crawl | peak RSS | RSS after |\n\
         |---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for c in runs {
        out.push_str(&format!(
            "| {}{} | {} % and {} deleted, {} moved | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            support::thousands(c.devices as u64),
            c.vars,
            trim(c.churn.share * 100.0),
            c.churn.deletes,
            c.churn.moves,
            trim(c.first.requests),
            bytes(c.first.bytes),
            cpu(c.first_cpu, 1),
            support::duration(c.first_wall),
            support::size(c.first_peak_rss),
            c.steady_crawls,
            trim(c.steady.requests),
            support::thousands(c.steady.rows.round() as u64),
            bytes(c.steady.bytes),
            cpu(c.steady_cpu, c.steady_crawls),
            support::size(c.peak_rss),
            support::size(c.rss_after),
        ));
    }
    out.push_str("\nRequests of a steady crawl, by shape:\n\n");
    for c in runs {
        out.push_str(&format!(
            "- {} devices, {} %: first crawl: {}; steady: {}\n",
            support::thousands(c.devices as u64),
            trim(c.churn.share * 100.0),
            c.first.shapes(),
            c.steady.shapes()
        ));
    }
    out
}
