//! The replay server: the table served over HTTP on loopback, with the counters a crawl's
//! figures are read from.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use warp::http::{Response, StatusCode};
use warp::Filter;

use crate::child::{cpu_seconds, Exporter};
use crate::support::Recorded;
use crate::table::{gzip, Churn, Shape, Table, SHAPES};

/// Whether an `If-None-Match` names `tag` (weakly) or is `*`.
fn matches_etag(if_none_match: &str, tag: &str) -> bool {
    if_none_match
        .split(',')
        .map(str::trim)
        .any(|t| t == "*" || t.trim_start_matches("W/") == tag.trim_start_matches("W/"))
}
/// The longest wait for a crawl of the bench.
pub(crate) const LIMIT: Duration = Duration::from_secs(300);

/// An exporter started on the replay, after its first crawl.
pub(crate) struct FirstCrawl {
    pub(crate) exporter: Exporter,
    /// Seconds from the crawl's first request to `/-/ready`.
    pub(crate) wall: f64,
    /// CPU seconds of the crawl.
    pub(crate) cpu: f64,
}

/// Counters at the moment a crawl started (its `whoami` arrived).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Mark {
    pub(crate) at: Instant,
    pub(crate) cpu: f64,
    pub(crate) requests: u64,
    pub(crate) bytes: u64,
    pub(crate) rows: u64,
    pub(crate) shapes: [u64; SHAPES],
    pub(crate) shape_bytes: [u64; SHAPES],
}

#[derive(Default)]
pub(crate) struct Counters {
    requests: AtomicU64,
    /// Bytes of bodies as sent: gzipped when they were.
    bytes: AtomicU64,
    /// Device rows served in device pages.
    rows: AtomicU64,
    shapes: [AtomicU64; SHAPES],
    /// Bytes sent by shape.
    shape_bytes: [AtomicU64; SHAPES],
    /// The exporter's pid once it runs (0 before).
    pub(crate) pid: AtomicU32,
    crawl_starts: Mutex<Vec<Mark>>,
}

/// The account served from memory on a free loopback port: gzip when the client asks for it
/// and the body is at least 1 KiB, ETags and 304s for fleet, service and release pages, device
/// pages assembled from the table, and a round of `churn` at the start of every crawl but the
/// first. Answers are given whatever the `$select` and `$expand` (so that the binary of an
/// earlier commit, whose queries differ in detail, crawls the same account: the "before"
/// rows), but `modified_at` is in the rows only when the query selects it.
pub(crate) struct Replay {
    pub(crate) url: String,
    pub(crate) counters: Arc<Counters>,
    server: tokio::task::JoinHandle<()>,
}

impl Replay {
    pub(crate) async fn start(recorded: &Recorded, churn: Option<Churn>) -> Replay {
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

    pub(crate) fn starts(&self) -> Vec<Mark> {
        self.counters
            .crawl_starts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Starts the exporter (`interval`, `vars`) on this replay and waits for its first crawl:
    /// the exporter, with the first crawl's wall time (first request to ready) and CPU.
    pub(crate) async fn first_crawl(&self, interval: f64, vars: &[(&str, &str)]) -> FirstCrawl {
        let exporter = Exporter::start(&self.url, interval, vars);
        self.counters.pid.store(exporter.pid(), Ordering::Relaxed);
        let first = self.wait_starts(1, LIMIT).await[0];
        let ready = exporter.wait_ready(LIMIT).await;
        FirstCrawl {
            wall: (ready - first.at).as_secs_f64(),
            cpu: cpu_seconds(exporter.pid()) - first.cpu,
            exporter,
        }
    }

    pub(crate) async fn wait_starts(&self, n: usize, limit: Duration) -> Vec<Mark> {
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
