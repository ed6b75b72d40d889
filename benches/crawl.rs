//! What a crawl, a scrape and an idle exporter cost, measured on the release binary run as a
//! child process on loopback, at 10, 1,000, 10,000 and 100,000 devices.
//!
//! - crawl: the binary crawls a replay of the fake API's answers for a generated account
//!   (`support::Recorded`: bodies recorded once from `tests/common/fake/`, served from
//!   memory, so the fake's own cost is not in the figures). Wall time of the first crawl
//!   (first request → `/-/ready`), CPU per crawl from `/proc/<pid>/stat` between the starts of
//!   later crawls (steady state: the previous crawl's data is still held), requests and
//!   response body bytes per crawl counted by the replay, peak RSS (`VmHWM`).
//! - scrape: `wrk` on `/metrics` at 1, 16 and 64 connections, plain and gzip: p50, p99,
//!   requests/s, and the exporter's CPU per request.
//! - idle: RSS and CPU of an exporter with the 10-device account between crawls.
//!
//! `cargo build --release && cargo bench --bench crawl`; `scripts/bench` runs everything.
//! Settings: `BENCH_SIZES=10,1000` (default all four), `BENCH_PARTS=crawl,scrape,idle` (the
//! default), `BENCH_LOAD_SECONDS` (5 per point), `BENCH_IDLE_SECONDS` (20),
//! `BALENA_EXPORTER_BIN` (default `target/release/balena-exporter`), `BENCH_WRAPPER` (a program
//! that runs the binary, such as `qemu-aarch64-static`: the figures are then the emulator's),
//! `BENCH_LABEL` (the tables go to `target/bench/crawl-<label>.md`, default `crawl.md`). At the largest size (10,000 or
//! more) the crawl runs a second time with `DEVICE_METRICS=false`.
//! Prints figures only: nothing here passes or fails on time.

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use support::{Recorded, PAGE_SIZE, SIZES};
use warp::http::{Response, StatusCode};
use warp::Filter;

/// Clock ticks per second of `/proc/<pid>/stat` (`getconf CLK_TCK`; 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

// ------------------------------------------------------------------------- the child process

/// CPU seconds (user + system) the process has used so far, 10 ms resolution.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the `(comm)`, which may hold spaces: state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (ticks(11) + ticks(12)) as f64 / TICKS_PER_SECOND
}

/// A `/proc/<pid>/status` figure in bytes (`VmHWM`, `VmRSS`).
fn status_bytes(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

fn exporter_bin() -> PathBuf {
    std::env::var_os("BALENA_EXPORTER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| support::target_dir().join("release/balena-exporter"))
}

/// The exporters' logs (warnings and errors only) go to `target/bench/exporter.log`.
fn log_file() -> Stdio {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(support::results_dir().join("exporter.log"))
        .map_or_else(|_| Stdio::null(), Stdio::from)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// The release binary, pointed at `api`, serving on a free loopback port.
struct Exporter {
    child: Child,
    url: String,
    http: reqwest::Client,
}

impl Exporter {
    fn start(api: &str, interval: f64, vars: &[(&str, &str)]) -> Exporter {
        let bin = exporter_bin();
        assert!(
            bin.exists(),
            "{} is missing: run `cargo build --release` first",
            bin.display()
        );
        let port = free_port();
        let timeout = (interval / 2.0).min(10.0);
        let mut command = match std::env::var_os("BENCH_WRAPPER").filter(|w| !w.is_empty()) {
            Some(wrapper) => {
                let mut command = Command::new(wrapper);
                command.arg(&bin);
                command
            }
            None => Command::new(&bin),
        };
        let child = command
            .env_clear()
            .env("BALENA_API_URL", api)
            .env("BALENA_TOKEN", support::generate::TOKEN)
            .env("CRAWL_INTERVAL", interval.to_string())
            .env("REQUEST_TIMEOUT", timeout.to_string())
            .env("PAGE_SIZE", PAGE_SIZE.to_string())
            .env("LISTEN_ADDRESS", "127.0.0.1")
            .env("PORT", port.to_string())
            .env("RUST_LOG", "warn")
            .env("PUBLIC_METRICS", "true")
            .envs(vars.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        Exporter {
            child,
            url: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("http client"),
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    async fn ready(&self) -> bool {
        let url = format!("{}/-/ready", self.url);
        matches!(self.http.get(url).send().await, Ok(r) if r.status() == 200)
    }

    /// Polls `/-/ready` (every 2 ms at first, then every 20 ms so that polling costs the
    /// exporter next to nothing) and returns when it first answers 200.
    async fn wait_ready(&self, limit: Duration) -> Instant {
        let start = Instant::now();
        let mut polls = 0u32;
        loop {
            if self.ready().await {
                return Instant::now();
            }
            assert!(
                start.elapsed() < limit,
                "exporter not ready after {limit:?}"
            );
            polls += 1;
            let pause = if polls < 50 { 2 } else { 20 };
            tokio::time::sleep(Duration::from_millis(pause)).await;
        }
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ------------------------------------------------------------------------- the replay

/// Counters at the moment a crawl started (its `whoami` arrived).
#[derive(Clone, Copy, Debug)]
struct Mark {
    at: Instant,
    cpu: f64,
    requests: u64,
    bytes: u64,
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    bytes: AtomicU64,
    /// The exporter's pid once it runs (0 before).
    pid: AtomicU32,
    crawl_starts: Mutex<Vec<Mark>>,
}

/// The recorded answers served from memory on a free loopback port.
struct Replay {
    url: String,
    counters: Arc<Counters>,
    server: tokio::task::JoinHandle<()>,
}

/// A request's key in the replay: a keyset page by its resource and the id it reads after,
/// whatever its `$select` and `$expand` say (so that the binary of an earlier commit, whose
/// queries differ in detail, crawls the same answers: the "before" rows); anything else by
/// its whole path and query.
fn route_key(path_and_query: &str) -> String {
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let query = query.replace("%20", " ");
    match query.rsplit_once("id gt ") {
        Some((_, rest)) => {
            let after: String = rest.chars().take_while(char::is_ascii_digit).collect();
            format!("{path} after {after}")
        }
        None => path_and_query.to_owned(),
    }
}

impl Replay {
    async fn start(routes: HashMap<String, Bytes>) -> Replay {
        let routes: HashMap<String, Bytes> = routes
            .into_iter()
            .map(|(k, v)| (route_key(&k), v))
            .collect();
        let routes = Arc::new(routes);
        let counters = Arc::new(Counters::default());
        let seen = counters.clone();
        let filter = warp::path::full()
            .and(warp::query::raw().or(warp::any().map(String::new)).unify())
            .map(move |path: warp::path::FullPath, query: String| {
                let key = if query.is_empty() {
                    path.as_str().to_owned()
                } else {
                    format!("{}?{query}", path.as_str())
                };
                if key == balena_exporter::balena::query::WHOAMI {
                    let pid = seen.pid.load(Ordering::Relaxed);
                    let mark = Mark {
                        at: Instant::now(),
                        cpu: if pid == 0 { 0.0 } else { cpu_seconds(pid) },
                        requests: seen.requests.load(Ordering::Relaxed),
                        bytes: seen.bytes.load(Ordering::Relaxed),
                    };
                    seen.crawl_starts
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(mark);
                }
                seen.requests.fetch_add(1, Ordering::Relaxed);
                match routes.get(&route_key(&key)) {
                    Some(body) => {
                        seen.bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
                        Response::builder()
                            .header("content-type", "application/json; charset=utf-8")
                            .body(body.clone())
                            .unwrap_or_default()
                    }
                    None => {
                        eprintln!("replay: no answer recorded for {key}");
                        let mut r = Response::new(Bytes::new());
                        *r.status_mut() = StatusCode::NOT_FOUND;
                        r
                    }
                }
            });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind replay");
        let addr: SocketAddr = listener.local_addr().expect("replay address");
        let server = tokio::spawn(warp::serve(filter).incoming(listener).run());
        Replay {
            url: format!("http://{addr}"),
            counters,
            server,
        }
    }

    fn starts(&self) -> Vec<Mark> {
        self.counters
            .crawl_starts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    async fn wait_starts(&self, n: usize, limit: Duration) -> Vec<Mark> {
        let deadline = Instant::now() + limit;
        loop {
            let starts = self.starts();
            if starts.len() >= n {
                return starts;
            }
            assert!(Instant::now() < deadline, "crawl {n} did not start");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

impl Drop for Replay {
    fn drop(&mut self) {
        self.server.abort();
    }
}

// ------------------------------------------------------------------------- crawl

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

async fn crawl(recorded: &Recorded, vars: &[(&str, &str)]) -> CrawlFigures {
    let replay = Replay::start(recorded.routes()).await;
    let (interval, crawls) = crawl_plan(recorded.devices);
    let exporter = Exporter::start(&replay.url, interval, vars);
    replay.counters.pid.store(exporter.pid(), Ordering::Relaxed);
    let limit = Duration::from_secs(300);
    let first = replay.wait_starts(1, limit).await[0];
    let ready = exporter.wait_ready(limit).await;
    let first_cpu = cpu_seconds(exporter.pid()) - first.cpu;
    // Crawls 2 ..= crawls + 1 run back to back; each costs the CPU between two starts.
    let starts = replay.wait_starts(crawls + 2, limit).await;
    let (a, b) = (starts[1], starts[crawls + 1]);
    let n = crawls as f64;
    let figures = CrawlFigures {
        devices: recorded.devices,
        vars: vars.iter().map(|(k, v)| format!(" {k}={v}")).collect(),
        fleets: recorded.fleets,
        first_wall: (ready - first.at).as_secs_f64(),
        first_cpu,
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

// ------------------------------------------------------------------------- scrape

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

async fn scrape(recorded: &Recorded, seconds: u64) -> Vec<ScrapeFigures> {
    let replay = Replay::start(recorded.routes()).await;
    let exporter = Exporter::start(&replay.url, 3600.0, &[]);
    exporter.wait_ready(Duration::from_secs(300)).await;
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

// ------------------------------------------------------------------------- idle

struct IdleFigures {
    devices: usize,
    seconds: f64,
    rss: u64,
    peak_rss: u64,
    cpu: f64,
}

async fn idle(recorded: &Recorded, seconds: u64) -> IdleFigures {
    let replay = Replay::start(recorded.routes()).await;
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

// ------------------------------------------------------------------------- report

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
    let (crawls, scrapes, idle) = runtime.block_on(async {
        let mut crawls = Vec::new();
        let mut scrapes = Vec::new();
        let sizes = sizes();
        for &n in &sizes {
            let recorded = Recorded::sized(n, PAGE_SIZE).await;
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
        (crawls, scrapes, idle)
    });

    let mut out = String::new();
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
