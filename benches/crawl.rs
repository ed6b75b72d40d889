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

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use support::{Recorded, Row, PAGE_SIZE, SIZES};
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

/// How a replayed account changes between two crawls (at the start of every crawl but the
/// first): `share` of its devices report a new `cpu_usage`, `deletes` devices are deleted
/// and `moves` move to another fleet. The server's clock (`Table::clock`) advances by
/// `SERVER_INTERVAL` per round, and the round's writes are spread evenly over it.
#[derive(Clone, Copy, Debug)]
struct Churn {
    share: f64,
    deletes: usize,
    moves: usize,
}

/// The server's time between two rounds of changes: the exporter's default `CRAWL_INTERVAL`.
/// The bench crawls every 2 s at 10,000 devices, but the server's clock says a minute went by,
/// so the overlap of an incremental read (the last crawl's duration and 10 s, on the server's
/// clock) holds what it would in production: about a sixth of the previous round's writes.
const SERVER_INTERVAL: u64 = 60_000;

/// One device as the replay serves it.
struct Device {
    row: support::Row,
    /// When it was last written, by the server's clock (Unix ms): its `modified_at`.
    changed_at: u64,
}

/// A request's shape, for the counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    Whoami,
    /// A fleet, service or release page (200).
    Listing,
    /// A fleet, service or release page that had not changed (304, no body).
    NotModified,
    Probe,
    /// A page of every device (`query::devices`).
    Devices,
    /// A page of devices changed since a time (`query::changed_devices`).
    Changed,
    /// `/v7/device/$count`.
    Count,
    /// A page of device ids (`query::device_ids`).
    Ids,
    Unknown,
}

const SHAPES: usize = 9;

impl Shape {
    fn index(self) -> usize {
        self as usize
    }
}

/// What a request asks for, read from its query: `$select`, `$top`, the keyset's `id gt N`
/// and a changed read's `modified_at gt '<time>'`.
#[derive(Debug, Default)]
struct Ask {
    select: String,
    top: Option<usize>,
    after: Option<u64>,
    since: Option<u64>,
}

impl Ask {
    fn parse(query: &str) -> Ask {
        let query = query.replace("%20", " ").replace("%27", "'");
        let mut ask = Ask::default();
        for option in query.split('&') {
            let (key, value) = option.split_once('=').unwrap_or((option, ""));
            match key {
                "$select" => ask.select = value.to_owned(),
                "$top" => ask.top = value.parse().ok(),
                "$filter" => {
                    ask.after = value.rsplit_once("id gt ").and_then(|(_, rest)| {
                        let digits: String =
                            rest.chars().take_while(char::is_ascii_digit).collect();
                        digits.parse().ok()
                    });
                    ask.since = value
                        .split_once("modified_at gt '")
                        .and_then(|(_, rest)| rest.split_once('\''))
                        .and_then(|(time, _)| humantime::parse_rfc3339(time).ok())
                        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                        .and_then(|d| u64::try_from(d.as_millis()).ok());
                }
                _ => {}
            }
        }
        ask
    }

    /// Whether the rows' `modified_at` is asked for (the binary of an earlier commit does not).
    fn modified(&self) -> bool {
        self.select.split(',').any(|f| f == "modified_at")
    }
}

/// The account as the replay serves it: fixed answers for whoami, the probe and the fleet,
/// service and release lists, and a table of devices from which device pages are assembled
/// at each request. Full pages are kept once assembled, until the devices change.
struct Table {
    whoami: Bytes,
    probe: Bytes,
    fleet_list: Bytes,
    service_list: Bytes,
    release_list: Bytes,
    fleets: Vec<u64>,
    /// In id order.
    devices: Vec<Device>,
    /// The server's clock (Unix ms): the newest `changed_at`.
    clock: u64,
    rounds: u64,
    /// Full device pages by (after, top, modified_at asked for, gzip).
    pages: HashMap<(u64, usize, bool, bool), Bytes>,
}

const EMPTY: &[u8] = br#"{"d":[]}"#;

/// `body` gzipped as the recorded server does: default level.
fn gzip(body: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(body).expect("gzip in memory");
    encoder.finish().expect("gzip in memory")
}

/// A weak ETag of a body, as the fake writes them (`W/"<length hex>-<hash>"`).
fn etag(body: &[u8]) -> String {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    body.hash(&mut hasher);
    format!("W/\"{:x}-{:016x}\"", body.len(), hasher.finish())
}

/// Whether an `If-None-Match` names `tag` (weakly) or is `*`.
fn matches_etag(if_none_match: &str, tag: &str) -> bool {
    if_none_match
        .split(',')
        .map(str::trim)
        .any(|t| t == "*" || t.trim_start_matches("W/") == tag.trim_start_matches("W/"))
}

/// An answer before it is encoded.
struct Answer {
    shape: Shape,
    status: StatusCode,
    body: Bytes,
    /// For fleet, service and release pages.
    etag: Option<String>,
    /// Device rows in the body.
    rows: usize,
    /// Full pages are kept gzipped too (by `Table::full_page`).
    gzipped: Option<Bytes>,
}

impl Answer {
    fn ok(shape: Shape, body: Bytes) -> Answer {
        Answer {
            shape,
            status: StatusCode::OK,
            body,
            etag: None,
            rows: 0,
            gzipped: None,
        }
    }
}

impl Table {
    fn new(recorded: &Recorded) -> Table {
        let fleets = serde_json::from_slice::<serde_json::Value>(&recorded.fleet_list)
            .ok()
            .and_then(|v| {
                let list = v.get("d")?.as_array()?.iter();
                Some(list.filter_map(|f| f.get("id")?.as_u64()).collect())
            })
            .unwrap_or_default();
        let devices: Vec<Device> = recorded
            .rows
            .iter()
            .map(|row| Device {
                row: row.clone(),
                changed_at: support::initial_changed_at(row.id),
            })
            .collect();
        let clock = devices.iter().map(|d| d.changed_at).max().unwrap_or(0);
        Table {
            whoami: recorded.whoami.clone(),
            probe: recorded.probe.clone(),
            fleet_list: recorded.fleet_list.clone(),
            service_list: recorded.service_list.clone(),
            release_list: recorded.release_list.clone(),
            fleets,
            devices,
            clock: clock.max(support::SERVER_EPOCH),
            rounds: 0,
            pages: HashMap::new(),
        }
    }

    /// Assembles and keeps every full page of a first crawl with `modified` and `gzip` as
    /// the binary asks, so that the first crawl's wall time is not the replay's.
    fn warm(&mut self, page_size: usize, modified: bool, gzip: bool) {
        let mut after = 0;
        loop {
            let (answer, last) = self.full_page(after, page_size, modified, gzip);
            match last {
                Some(last) if answer.rows > 0 => after = last,
                _ => return,
            }
        }
    }

    /// The page of up to `top` devices with an id above `after`, and the last id in it.
    fn full_page(
        &mut self,
        after: u64,
        top: usize,
        modified: bool,
        gzipped: bool,
    ) -> (Answer, Option<u64>) {
        let start = self.devices.partition_point(|d| d.row.id <= after);
        let end = (start + top).min(self.devices.len());
        let last = end.checked_sub(1).filter(|&e| e >= start);
        let last = last.map(|e| self.devices[e].row.id);
        let key = (after, top, modified, false);
        let plain = match self.pages.get(&key) {
            Some(body) => body.clone(),
            None => {
                let body = Bytes::from(self.assemble(&self.devices[start..end], modified));
                self.pages.insert(key, body.clone());
                body
            }
        };
        let mut answer = Answer::ok(Shape::Devices, plain.clone());
        answer.rows = end - start;
        if gzipped && plain.len() >= 1024 {
            let key = (after, top, modified, true);
            let body = self
                .pages
                .entry(key)
                .or_insert_with(|| Bytes::from(gzip(&plain)))
                .clone();
            answer.gzipped = Some(body);
        }
        (answer, last)
    }

    fn assemble(&self, devices: &[Device], modified: bool) -> Vec<u8> {
        let at: HashMap<u64, u64> = if modified {
            devices.iter().map(|d| (d.row.id, d.changed_at)).collect()
        } else {
            HashMap::new()
        };
        support::envelope(devices.iter().map(|d| &d.row), |r| at.get(&r.id).copied())
    }

    /// The answer to `path?query`.
    fn answer(&mut self, path: &str, query: &str, gzip: bool) -> Answer {
        let ask = Ask::parse(query);
        let listing = |body: &Bytes| {
            let body = if ask.after.unwrap_or(0) == 0 {
                body.clone()
            } else {
                Bytes::from_static(EMPTY)
            };
            let mut answer = Answer::ok(Shape::Listing, body);
            answer.etag = Some(etag(&answer.body));
            answer
        };
        match path {
            balena_exporter::balena::query::WHOAMI => {
                Answer::ok(Shape::Whoami, self.whoami.clone())
            }
            "/v7/application" => listing(&self.fleet_list),
            "/v7/service" => listing(&self.service_list),
            "/v7/release" => listing(&self.release_list),
            "/v7/device/$count" => {
                // Every device, or (`query::changed_count`) those changed since a time.
                let since = ask.since.unwrap_or(0);
                let n = self.devices.iter().filter(|d| d.changed_at > since).count();
                let n = if ask.since.is_some() {
                    n
                } else {
                    self.devices.len()
                };
                Answer::ok(Shape::Count, Bytes::from(format!("{{\"d\":{n}}}")))
            }
            "/v7/device" => {
                let top = ask.top.unwrap_or(usize::MAX);
                match (ask.after, ask.since) {
                    (None, _) => Answer::ok(Shape::Probe, self.probe.clone()),
                    (Some(after), _) if ask.select == "id" => {
                        let start = self.devices.partition_point(|d| d.row.id <= after);
                        let ids: Vec<String> = self.devices[start..]
                            .iter()
                            .take(top)
                            .map(|d| format!("{{\"id\":{}}}", d.row.id))
                            .collect();
                        let body = format!("{{\"d\":[{}]}}", ids.join(","));
                        Answer::ok(Shape::Ids, Bytes::from(body))
                    }
                    (Some(after), Some(since)) => {
                        let start = self.devices.partition_point(|d| d.row.id <= after);
                        let changed: Vec<&Device> = self.devices[start..]
                            .iter()
                            .filter(|d| d.changed_at > since)
                            .take(top)
                            .collect();
                        let modified = ask.modified();
                        // A changed read selects its installs' and tags' `modified_at` too.
                        let stamps =
                            query.contains(",modified_at;") || query.contains(",modified_at)");
                        let rows: Vec<Row> = changed
                            .iter()
                            .map(|d| {
                                if stamps {
                                    d.row.stamped(d.changed_at)
                                } else {
                                    d.row.clone()
                                }
                            })
                            .collect();
                        let body = support::envelope(&rows, |r| {
                            let d = changed.iter().find(|d| d.row.id == r.id);
                            d.filter(|_| modified).map(|d| d.changed_at)
                        });
                        let mut answer = Answer::ok(Shape::Changed, Bytes::from(body));
                        answer.rows = changed.len();
                        answer
                    }
                    (Some(after), None) => self.full_page(after, top, ask.modified(), gzip).0,
                }
            }
            _ => Answer {
                status: StatusCode::NOT_FOUND,
                ..Answer::ok(Shape::Unknown, Bytes::new())
            },
        }
    }

    /// One round of changes (see `Churn`).
    fn churn(&mut self, churn: Churn) {
        self.rounds += 1;
        self.pages.clear();
        let round = self.rounds;
        let n = self.devices.len();
        if n == 0 {
            return;
        }
        let mut draw = (0u64..).map(|i| support::mix(round << 32 | i));
        let changed = ((n as f64 * churn.share).round() as usize).min(n);
        let mut picked: Vec<usize> = if changed == n {
            (0..n).collect()
        } else {
            let mut set = std::collections::HashSet::new();
            while set.len() < changed {
                set.insert(draw.next().unwrap_or(0) as usize % n);
            }
            set.into_iter().collect()
        };
        picked.sort_unstable();
        let moved: Vec<usize> = (0..churn.moves)
            .map(|_| draw.next().unwrap_or(0) as usize % n)
            .collect();
        // The writes of the round, spread over the server's interval in a drawn order.
        let mut writes: Vec<usize> = picked.iter().chain(&moved).copied().collect();
        writes.sort_by_key(|&i| support::mix(round ^ (i as u64) << 20));
        writes.dedup();
        let step = (SERVER_INTERVAL / (writes.len() as u64 + 1)).max(1);
        let start = self.clock;
        for (k, &i) in writes.iter().enumerate() {
            self.devices[i].changed_at = start + (k as u64 + 1) * step;
        }
        self.clock = (start + SERVER_INTERVAL).max(start + (writes.len() as u64 + 1) * step);
        for &i in &picked {
            let d = &mut self.devices[i];
            let usage = support::mix(round ^ d.row.id) % 100;
            d.row.text = patch(&d.row.text, "\"cpu_usage\":", &usage.to_string());
        }
        for &i in &moved {
            let d = &mut self.devices[i];
            let at = self
                .fleets
                .iter()
                .position(|&f| f == d.row.fleet)
                .unwrap_or(0);
            let to = self.fleets[(at + 1) % self.fleets.len().max(1)];
            let key = "\"belongs_to__application\":{\"__id\":";
            d.row.text = patch(&d.row.text, key, &to.to_string());
            d.row.fleet = to;
        }
        for _ in 0..churn.deletes.min(self.devices.len()) {
            let i = draw.next().unwrap_or(0) as usize % self.devices.len();
            self.devices.remove(i);
        }
    }
}

/// `text` with the value after `key` (a number or null) replaced by `value`.
fn patch(text: &str, key: &str, value: &str) -> String {
    let Some(at) = text.find(key) else {
        panic!("no {key} in a device row");
    };
    let from = at + key.len();
    let len = text[from..]
        .find([',', '}'])
        .expect("a value ends the field");
    format!("{}{value}{}", &text[..from], &text[from + len..])
}

/// Counters at the moment a crawl started (its `whoami` arrived).
#[derive(Clone, Copy, Debug)]
struct Mark {
    at: Instant,
    cpu: f64,
    requests: u64,
    bytes: u64,
    rows: u64,
    shapes: [u64; SHAPES],
    shape_bytes: [u64; SHAPES],
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    /// Bytes of bodies as sent: gzipped when they were.
    bytes: AtomicU64,
    /// Device rows served in device pages.
    rows: AtomicU64,
    shapes: [AtomicU64; SHAPES],
    /// Bytes sent by shape.
    shape_bytes: [AtomicU64; SHAPES],
    /// The exporter's pid once it runs (0 before).
    pid: AtomicU32,
    crawl_starts: Mutex<Vec<Mark>>,
}

/// The account served from memory on a free loopback port: gzip when the client asks for it
/// and the body is at least 1 KiB, ETags and 304s for fleet, service and release pages, device
/// pages assembled from the table, and a round of `churn` at the start of every crawl but the
/// first. Answers are given whatever the `$select` and `$expand` (so that the binary of an
/// earlier commit, whose queries differ in detail, crawls the same account: the "before"
/// rows), but `modified_at` is in the rows only when the query selects it.
struct Replay {
    url: String,
    counters: Arc<Counters>,
    server: tokio::task::JoinHandle<()>,
}

impl Replay {
    async fn start(recorded: &Recorded, churn: Option<Churn>) -> Replay {
        let mut table = Table::new(recorded);
        let page_size = recorded.page_size as usize;
        table.warm(page_size, true, true);
        table.warm(page_size, false, false);
        let table = Arc::new(Mutex::new(table));
        let counters = Arc::new(Counters::default());
        let seen = counters.clone();
        let filter = warp::path::full()
            .and(warp::query::raw().or(warp::any().map(String::new)).unify())
            .and(warp::header::optional::<String>("accept-encoding"))
            .and(warp::header::optional::<String>("if-none-match"))
            .map(
                move |path: warp::path::FullPath,
                      query: String,
                      encoding: Option<String>,
                      if_none_match: Option<String>| {
                    let path = path.as_str();
                    let mut table = table.lock().unwrap_or_else(|p| p.into_inner());
                    if path == balena_exporter::balena::query::WHOAMI {
                        let pid = seen.pid.load(Ordering::Relaxed);
                        let mark = Mark {
                            at: Instant::now(),
                            cpu: if pid == 0 { 0.0 } else { cpu_seconds(pid) },
                            requests: seen.requests.load(Ordering::Relaxed),
                            bytes: seen.bytes.load(Ordering::Relaxed),
                            rows: seen.rows.load(Ordering::Relaxed),
                            shapes: std::array::from_fn(|i| seen.shapes[i].load(Ordering::Relaxed)),
                            shape_bytes: std::array::from_fn(|i| {
                                seen.shape_bytes[i].load(Ordering::Relaxed)
                            }),
                        };
                        let mut starts =
                            seen.crawl_starts.lock().unwrap_or_else(|p| p.into_inner());
                        starts.push(mark);
                        if let Some(churn) = churn.filter(|_| starts.len() > 1) {
                            table.churn(churn);
                        }
                    }
                    let accepts_gzip = encoding
                        .is_some_and(|v| v.split(',').any(|e| e.trim().starts_with("gzip")));
                    let mut answer = table.answer(path, &query, accepts_gzip);
                    drop(table);
                    let not_modified = answer.etag.as_deref().is_some_and(|tag| {
                        if_none_match
                            .as_deref()
                            .is_some_and(|v| matches_etag(v, tag))
                    });
                    if not_modified {
                        answer.shape = Shape::NotModified;
                        answer.status = StatusCode::NOT_MODIFIED;
                        answer.body = Bytes::new();
                        answer.rows = 0;
                    }
                    let gzipped = accepts_gzip && !not_modified && answer.body.len() >= 1024;
                    let body = match (gzipped, answer.gzipped.take()) {
                        (true, Some(body)) => body,
                        (true, None) => Bytes::from(gzip(&answer.body)),
                        (false, _) => answer.body,
                    };
                    seen.requests.fetch_add(1, Ordering::Relaxed);
                    seen.shapes[answer.shape.index()].fetch_add(1, Ordering::Relaxed);
                    seen.bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
                    seen.shape_bytes[answer.shape.index()]
                        .fetch_add(body.len() as u64, Ordering::Relaxed);
                    seen.rows.fetch_add(answer.rows as u64, Ordering::Relaxed);
                    if answer.shape == Shape::Unknown {
                        eprintln!("replay: no answer for {path}?{query}");
                    }
                    let mut response = Response::builder()
                        .status(answer.status)
                        .header("content-type", "application/json; charset=utf-8");
                    if gzipped {
                        response = response.header("content-encoding", "gzip");
                    }
                    if let Some(tag) = answer.etag {
                        response = response.header("etag", tag);
                    }
                    response.body(body).unwrap_or_default()
                },
            );
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
    let replay = Replay::start(recorded, None).await;
    let (interval, crawls) = crawl_plan(recorded.devices);
    // Every crawl full, as every crawl was before incremental ones (the `churn` part measures
    // those); the binary of an earlier commit ignores the variable.
    let mut all = vec![("FULL_CRAWL_INTERVAL", "0")];
    all.extend_from_slice(vars);
    let exporter = Exporter::start(&replay.url, interval, &all);
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

// ------------------------------------------------------------------------- churn

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

struct ChurnFigures {
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
async fn churn(recorded: &Recorded, churn: Churn, full_interval: &str) -> ChurnFigures {
    let replay = Replay::start(recorded, Some(churn)).await;
    let (interval, crawls) = churn_plan(recorded.devices);
    let vars = [("FULL_CRAWL_INTERVAL", full_interval)];
    let exporter = Exporter::start(&replay.url, interval, &vars);
    replay.counters.pid.store(exporter.pid(), Ordering::Relaxed);
    let limit = Duration::from_secs(300);
    let first = replay.wait_starts(1, limit).await[0];
    let ready = exporter.wait_ready(limit).await;
    let first_cpu = cpu_seconds(exporter.pid()) - first.cpu;
    let first_peak_rss = status_bytes(exporter.pid(), "VmHWM");
    let starts = replay.wait_starts(crawls + 2, limit).await;
    let (a, b) = (starts[1], starts[crawls + 1]);
    let figures = ChurnFigures {
        first_peak_rss,
        devices: recorded.devices,
        churn,
        vars: vars.iter().map(|(k, v)| format!(" {k}={v}")).collect(),
        first: Window::between(&starts[0], &starts[1], 1),
        first_cpu,
        first_wall: (ready - first.at).as_secs_f64(),
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

fn churn_table(runs: &[ChurnFigures]) -> String {
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

/// The gzipped device pages of a full crawl as the exporter reads them, for
/// `benches/inflate` (how long inflating them takes): each as its length (4 bytes, little
/// endian) and its bytes, in `target/bench/inflate-<devices>.bin`.
fn write_inflate_input(recorded: &Recorded) -> PathBuf {
    let mut table = Table::new(recorded);
    let mut out = Vec::new();
    let (mut after, mut plain, mut gzipped, mut pages) = (0, 0, 0, 0);
    loop {
        let (answer, last) = table.full_page(after, recorded.page_size as usize, true, true);
        // The empty page that ends the crawl is under 1 KiB: sent plain, not inflated.
        if let Some(body) = &answer.gzipped {
            plain += answer.body.len();
            gzipped += body.len();
            pages += 1;
            out.extend_from_slice(&u32::try_from(body.len()).unwrap_or(u32::MAX).to_le_bytes());
            out.extend_from_slice(body);
        }
        match last {
            Some(last) if answer.rows > 0 => after = last,
            _ => break,
        }
    }
    let file = support::results_dir().join(format!("inflate-{}.bin", recorded.devices));
    std::fs::write(&file, out).expect("write the inflate input");
    eprintln!(
        "inflate input: {pages} gzip device pages of {} devices, {} gzipped, {} plain: {}",
        recorded.devices,
        support::size(gzipped as u64),
        support::size(plain as u64),
        file.display()
    );
    file
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
    let replay = Replay::start(recorded, None).await;
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
                let steady = Churn {
                    share: 0.02,
                    deletes: 2,
                    moves: 2,
                };
                churns.push(churn(&recorded, steady, "3600").await);
            }
            // The same with full crawls only: what gzip and ETags alone read (and hold).
            if part("churn-full") {
                let steady = Churn {
                    share: 0.02,
                    deletes: 2,
                    moves: 2,
                };
                churns.push(churn(&recorded, steady, "0").await);
            }
            // Every device changed before every crawl: incremental reads at their worst.
            if part("churn-all") && n == 10_000 {
                let all = Churn {
                    share: 1.0,
                    deletes: 2,
                    moves: 2,
                };
                churns.push(churn(&recorded, all, "3600").await);
            }
            if part("churn-all-full") && n == 10_000 {
                let all = Churn {
                    share: 1.0,
                    deletes: 2,
                    moves: 2,
                };
                churns.push(churn(&recorded, all, "0").await);
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
