//! The exporter's own health: crawl outcomes recorded by the publisher, the API client's
//! request counts and the listeners' connection counts, rendered at scrape time so that they
//! are always current.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus::{
    Encoder, Gauge, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

use super::families::*;
use super::text::{text, Family};
use crate::balena::{ApiStats, ERROR_KINDS};
use crate::server::ConnStats;

fn opts(def: &Def) -> Opts {
    Opts::new(def.name, def.help)
}

/// The exporter's own health: what the publisher records after each crawl, and the API
/// client's counts, read when `/metrics` is served.
pub struct Health {
    registry: Registry,
    up: IntGauge,
    crawl_duration: Gauge,
    last_success: Gauge,
    crawl_requests: IntGauge,
    crawls: IntCounter,
    crawl_errors: IntCounterVec,
    sd_file_errors: IntCounter,
    api: Arc<ApiStats>,
    /// Each listener's name and connection counts.
    listeners: Vec<(&'static str, Arc<ConnStats>)>,
    /// Requests refused for wrong credentials (counted by the routes).
    auth_failures: Arc<AtomicU64>,
    /// Failed polls of Alertmanager (counted by the alerts poller).
    poll_errors: Arc<AtomicU64>,
    /// The balena dashboard device links open, if any.
    dashboard: Option<String>,
}

impl Health {
    pub fn new(api: Arc<ApiStats>, listeners: Vec<(&'static str, Arc<ConnStats>)>) -> Health {
        let registry = Registry::new();
        // The names and labels are constants of this file, valid and unique (a unit test
        // renders them all), so these cannot fail at runtime.
        let up = IntGauge::with_opts(opts(&UP)).expect("valid metric");
        let crawl_duration = Gauge::with_opts(opts(&CRAWL_DURATION)).expect("valid metric");
        let last_success = Gauge::with_opts(opts(&LAST_SUCCESS)).expect("valid metric");
        let crawl_requests = IntGauge::with_opts(opts(&CRAWL_REQUESTS)).expect("valid metric");
        let crawls = IntCounter::with_opts(opts(&CRAWLS)).expect("valid metric");
        let sd_file_errors = IntCounter::with_opts(opts(&SD_FILE_ERRORS)).expect("valid metric");
        let crawl_errors =
            IntCounterVec::new(opts(&CRAWL_ERRORS), CRAWL_ERRORS.labels).expect("valid metric");
        let build_info = IntGauge::with_opts(
            opts(&BUILD_INFO).const_label("version", env!("CARGO_PKG_VERSION")),
        )
        .expect("valid metric");
        build_info.set(1);
        for kind in ERROR_KINDS {
            crawl_errors.with_label_values(&[kind]);
        }
        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(up.clone()),
            Box::new(crawl_duration.clone()),
            Box::new(last_success.clone()),
            Box::new(crawl_requests.clone()),
            Box::new(crawls.clone()),
            Box::new(sd_file_errors.clone()),
            Box::new(crawl_errors.clone()),
            Box::new(build_info),
            Box::new(prometheus::process_collector::ProcessCollector::for_self()),
        ];
        for c in collectors {
            registry.register(c).expect("metric names are unique");
        }
        Health {
            registry,
            up,
            crawl_duration,
            last_success,
            crawl_requests,
            crawls,
            crawl_errors,
            sd_file_errors,
            api,
            listeners,
            auth_failures: Arc::default(),
            poll_errors: Arc::default(),
            dashboard: None,
        }
    }

    /// Names the balena dashboard that device links open (`DASHBOARD_INFO`).
    pub fn with_dashboard(mut self, url: Option<String>) -> Health {
        self.dashboard = url;
        self
    }

    /// The count of requests refused for wrong credentials, for the routes to add to.
    pub fn auth_failures(&self) -> Arc<AtomicU64> {
        self.auth_failures.clone()
    }

    /// The count of failed polls of Alertmanager, for the alerts poller to add to.
    pub fn alertmanager_poll_errors(&self) -> Arc<AtomicU64> {
        self.poll_errors.clone()
    }

    pub fn crawl_succeeded(&self, duration: Duration, requests: u64, finished: SystemTime) {
        self.crawl_finished(duration, requests);
        self.up.set(1);
        let at = finished.duration_since(UNIX_EPOCH).unwrap_or_default();
        self.last_success.set(at.as_secs_f64());
    }

    pub fn crawl_failed(&self, kind: &str, duration: Duration, requests: u64) {
        self.crawl_finished(duration, requests);
        self.up.set(0);
        self.crawl_errors.with_label_values(&[kind]).inc();
    }

    pub fn sd_file_failed(&self) {
        self.sd_file_errors.inc();
    }

    fn crawl_finished(&self, duration: Duration, requests: u64) {
        self.crawls.inc();
        self.crawl_duration.set(duration.as_secs_f64());
        self.crawl_requests
            .set(i64::try_from(requests).unwrap_or(i64::MAX));
    }

    /// The exporter's own families as they are now (a few KiB of text).
    pub fn render(&self) -> String {
        let mut out = Vec::with_capacity(HEALTH_SIZE);
        // Every name is valid, so encoding cannot fail.
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            log::error!("metrics encoding failed error=\"{e}\"");
        }
        let mut requests = Family::new(&mut out, &API_REQUESTS, API_REQUESTS.help.to_string());
        for (resource, n) in self.api.requests() {
            requests.add(&[("resource", resource)], n as f64);
        }
        let mut errors = Family::new(&mut out, &API_ERRORS, API_ERRORS.help.to_string());
        for (kind, n) in self.api.errors() {
            errors.add(&[("kind", kind)], n as f64);
        }
        let help = API_RESPONSE_BYTES.help.to_string();
        let mut received = Family::new(&mut out, &API_RESPONSE_BYTES, help);
        for (resource, n) in self.api.received() {
            received.add(&[("resource", resource)], n as f64);
        }
        let mut rows = Family::new(&mut out, &API_ROWS, API_ROWS.help.to_string());
        for (resource, kind, n) in self.api.rows() {
            rows.add(&[("resource", resource), ("crawl", kind)], n as f64);
        }
        let per_listener = |out: &mut Vec<u8>, def: &'static Def, value: fn(&ConnStats) -> u64| {
            let mut family = Family::new(out, def, def.help.to_string());
            for (name, stats) in &self.listeners {
                family.add(&[("listener", name)], value(stats) as f64);
            }
        };
        per_listener(&mut out, &HTTP_OPEN, ConnStats::open);
        per_listener(&mut out, &HTTP_ACCEPTED, ConnStats::accepted);
        per_listener(&mut out, &HTTP_LIMIT, ConnStats::limit_reached);
        let mut closed = Family::new(&mut out, &HTTP_CLOSED, HTTP_CLOSED.help.to_string());
        for (name, stats) in &self.listeners {
            for (reason, n) in stats.closed() {
                closed.add(&[("listener", name), ("reason", reason)], n as f64);
            }
        }
        let failures = self.auth_failures.load(Ordering::Relaxed);
        let help = HTTP_AUTH_FAILURES.help.to_string();
        Family::new(&mut out, &HTTP_AUTH_FAILURES, help).add(&[], failures as f64);
        let errors = self.poll_errors.load(Ordering::Relaxed);
        let help = ALERTMANAGER_POLL_ERRORS.help.to_string();
        Family::new(&mut out, &ALERTMANAGER_POLL_ERRORS, help).add(&[], errors as f64);
        if let Some(url) = &self.dashboard {
            let help = DASHBOARD_INFO.help.to_string();
            Family::new(&mut out, &DASHBOARD_INFO, help).add(&[("url", url)], 1.0);
        }
        text(out)
    }
}

/// Room for the health families (about 3 KiB of text).
const HEALTH_SIZE: usize = 8 * 1024;
