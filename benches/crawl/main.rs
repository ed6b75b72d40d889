//! What a crawl, a scrape and an idle exporter cost, measured on the release binary run as a
//! child process on loopback, at 10, 1,000, 10,000 and 100,000 devices.
//!
//! - crawl: the binary crawls a replay of the fake API's answers for a generated account
//!   (`Replay`: device rows recorded once from `tests/common/fake/` by `support::Recorded`,
//!   pages assembled from them in memory, so the fake's own cost is not in the figures), every
//!   crawl a full one (`FULL_CRAWL_INTERVAL=0`). Wall time of the first crawl (first request →
//!   `/-/ready`), CPU per crawl from `/proc/<pid>/stat` between the starts of later crawls
//!   (steady state: the previous crawl's data is still held), requests and response body
//!   bytes per crawl counted by the replay (as sent: gzipped when the binary asks for gzip),
//!   peak RSS (`VmHWM`).
//! - scrape: `wrk` on `/metrics` at 1, 16 and 64 connections, plain and gzip: p50, p99,
//!   requests/s, and the exporter's CPU per request.
//! - idle: RSS and CPU of an exporter with the 10-device account between crawls.
//! - churn (issue 20): the binary crawls an account that changes before every crawl but the
//!   first (2 % of the devices, 2 deleted, 2 moved to another fleet: `Churn`), with
//!   `FULL_CRAWL_INTERVAL=3600`: the first crawl's requests, bytes, CPU and wall, then per
//!   steady crawl requests (by shape), device rows, bytes, CPU, and peak RSS.
//!   `churn-full`: the same with full crawls only (`FULL_CRAWL_INTERVAL=0`:
//!   gzip and ETags without incremental reads); `churn-all`: every device changed before
//!   every crawl, at 10,000 (`churn-all-full`: the same with full crawls only). Tables in `target/bench/churn-<label>.md`.
//! - inflate: writes the gzip device pages of a full crawl (`target/bench/inflate-<n>.bin`)
//!   for `benches/inflate`, which times inflating them.
//!
//! `cargo build --release && cargo bench --bench crawl`; `scripts/bench` runs everything.
//! Settings: `BENCH_SIZES=10,1000` (default all four), `BENCH_PARTS=crawl,scrape,idle` (the
//! default; also `churn`, `churn-full`, `churn-all`, `churn-all-full`, `inflate`), `BENCH_LOAD_SECONDS` (5 per
//! point), `BENCH_IDLE_SECONDS` (20), `BALENA_EXPORTER_BIN` (default
//! `target/release/balena-exporter`), `BENCH_WRAPPER` (a program that runs the binary, such as
//! `qemu-aarch64-static`: the figures are then the emulator's), `BENCH_LABEL` (the tables go
//! to `target/bench/crawl-<label>.md`, default `crawl.md`). At the largest size (10,000 or
//! more) the crawl runs a second time with `DEVICE_METRICS=false`.
//! Prints figures only: nothing here passes or fails on time.

#[path = "../support/mod.rs"]
mod support;

mod child;
mod churn;
mod crawl;
mod idle;
mod inflate;
mod replay;
mod scrape;
mod table;

use churn::{churn, churn_table};
use crawl::crawl;
use idle::idle;
use inflate::write_inflate_input;
use scrape::scrape;
use support::{Recorded, PAGE_SIZE, SIZES};
use table::Churn;

// The figures of the crawl, scrape and idle parts, as `main` prints them in its tables.

struct CrawlFigures {
    devices: usize,
    /// Variables set besides the defaults.
    vars: String,
    fleets: usize,
    first_wall: f64,
    first_cpu: f64,
    steady_cpu: f64,
    steady_crawls: usize,
    requests: u64,
    bytes: u64,
    peak_rss: u64,
    rss_after: u64,
}

struct ScrapeFigures {
    devices: usize,
    connections: u32,
    gzip: bool,
    p50: f64,
    p99: f64,
    rps: f64,
    errors: u64,
    cpu_per_request: f64,
}

struct IdleFigures {
    devices: usize,
    seconds: f64,
    rss: u64,
    peak_rss: u64,
    cpu: f64,
}

/// CPU seconds measured over `n` crawls in 10 ms ticks: "< x" when no tick fell in them.
fn cpu(seconds: f64, n: usize) -> String {
    if seconds > 0.0 {
        support::duration(seconds)
    } else {
        format!("< {}", support::duration(0.01 / n as f64))
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn sizes() -> Vec<usize> {
    std::env::var("BENCH_SIZES")
        .ok()
        .map(|v| v.split(',').filter_map(|s| s.trim().parse().ok()).collect())
        .unwrap_or_else(|| SIZES.to_vec())
}

fn main() {
    // `cargo bench` passes `--bench` and maybe a filter; this harness takes its settings from
    // the environment and ignores arguments.
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let load_seconds = env_u64("BENCH_LOAD_SECONDS", 5);
    let idle_seconds = env_u64("BENCH_IDLE_SECONDS", 20);
    let parts = std::env::var("BENCH_PARTS").unwrap_or_else(|_| "crawl,scrape,idle".into());
    let part = |name: &str| parts.split(',').any(|p| p.trim() == name);
    let (crawls, scrapes, idle, churns) = runtime.block_on(async {
        let mut crawls = Vec::new();
        let mut scrapes = Vec::new();
        let mut churns = Vec::new();
        let sizes = sizes();
        for &n in &sizes {
            let recorded = Recorded::sized(n, PAGE_SIZE).await;
            if part("inflate") {
                write_inflate_input(&recorded);
            }
            if part("churn") {
                churns.push(churn(&recorded, Churn::STEADY, "3600").await);
            }
            // The same with full crawls only: what gzip and ETags alone read (and hold).
            if part("churn-full") {
                churns.push(churn(&recorded, Churn::STEADY, "0").await);
            }
            // Every device changed before every crawl, incremental and full crawls only.
            if part("churn-all") && n == 10_000 {
                churns.push(churn(&recorded, Churn::ALL, "3600").await);
            }
            if part("churn-all-full") && n == 10_000 {
                churns.push(churn(&recorded, Churn::ALL, "0").await);
            }
            if part("crawl") {
                crawls.push(crawl(&recorded, &[]).await);
                // The largest account again with only the fleet and exporter families.
                if Some(&n) == sizes.iter().max() && n >= 10_000 {
                    crawls.push(crawl(&recorded, &[("DEVICE_METRICS", "false")]).await);
                }
            }
            if part("scrape") {
                scrapes.extend(scrape(&recorded, load_seconds).await);
            }
        }
        let idle = if part("idle") {
            Some(idle(&Recorded::sized(10, PAGE_SIZE).await, idle_seconds).await)
        } else {
            None
        };
        (crawls, scrapes, idle, churns)
    });

    let mut out = String::new();
    if !churns.is_empty() {
        let table = churn_table(&churns);
        let label = std::env::var("BENCH_LABEL").map_or("churn".into(), |l| format!("churn-{l}"));
        println!("\n{table}");
        let _ = std::fs::write(support::results_dir().join(format!("{label}.md")), table);
    }
    if crawls.is_empty() && scrapes.is_empty() && idle.is_none() {
        return;
    }
    out.push_str(
        "| devices | fleets | wall (first crawl) | CPU (first crawl) | CPU per crawl (steady) | requests | bytes received | peak RSS | RSS after |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for c in crawls.iter() {
        out.push_str(&format!(
            "| {}{} | {} | {} | {} | {} (avg of {}) | {} | {} | {} | {} |\n",
            support::thousands(c.devices as u64),
            c.vars,
            c.fleets,
            support::duration(c.first_wall),
            cpu(c.first_cpu, 1),
            cpu(c.steady_cpu, c.steady_crawls),
            c.steady_crawls,
            c.requests,
            support::size(c.bytes),
            support::size(c.peak_rss),
            support::size(c.rss_after),
        ));
    }
    if !scrapes.is_empty() {
        out.push_str(
            "\n| devices | connections | encoding | p50 | p99 | requests/s | exporter CPU per request | errors |\n\
             |---:|---:|---|---:|---:|---:|---:|---:|\n",
        );
    }
    for s in &scrapes {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {:.0} | {} | {} |\n",
            support::thousands(s.devices as u64),
            s.connections,
            if s.gzip { "gzip" } else { "plain" },
            support::duration(s.p50),
            support::duration(s.p99),
            s.rps,
            support::duration(s.cpu_per_request),
            s.errors,
        ));
    }
    if let Some(idle) = idle {
        out.push_str(&format!(
            "\n| account | window | RSS | peak RSS | CPU | CPU share |\n|---|---:|---:|---:|---:|---:|\n\
             | {} devices, crawl every 60 s | {:.0} s between crawls | {} | {} | {} | {} |\n",
            idle.devices,
            idle.seconds,
            support::size(idle.rss),
            support::size(idle.peak_rss),
            cpu(idle.cpu, 1),
            // No 10 ms tick in the window: below one tick's share.
            if idle.cpu > 0.0 {
                format!("{:.2} %", idle.cpu / idle.seconds * 100.0)
            } else {
                format!("< {:.2} %", 0.01 / idle.seconds * 100.0)
            },
        ));
    }
    let label = std::env::var("BENCH_LABEL").map_or("crawl".into(), |l| format!("crawl-{l}"));
    println!("\n{out}");
    let _ = std::fs::write(support::results_dir().join(format!("{label}.md")), out);
}
