//! Every metric name, help text and label lives here, in `FAMILIES`. Fleet and device families
//! are written from a `Snapshot` once per crawl (straight into a gzip stream); the exporter's
//! own families are written at scrape time from `Health`, so they are always current.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus::{
    Encoder, Gauge, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

use crate::balena::{ApiStats, ERROR_KINDS};
use crate::gzip;
use crate::server::ConnStats;
use crate::snapshot::{Device, Fleet, Snapshot, Tally, Text};
use crate::tags;

/// The `Content-Type` of the text exposition format 0.0.4.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

const CACHED: &str = "as of the last successful crawl of the balena API";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Gauge,
    Counter,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Gauge => "gauge",
            Kind::Counter => "counter",
        }
    }
}

/// One metric family: what the README's metrics table lists, row by row.
#[derive(Debug)]
pub struct Def {
    pub name: &'static str,
    pub kind: Kind,
    pub labels: &'static [&'static str],
    pub help: &'static str,
}

const fn gauge(name: &'static str, labels: &'static [&'static str], help: &'static str) -> Def {
    Def {
        name,
        kind: Kind::Gauge,
        labels,
        help,
    }
}

const fn counter(name: &'static str, labels: &'static [&'static str], help: &'static str) -> Def {
    Def {
        name,
        kind: Kind::Counter,
        labels,
        help,
    }
}

const FLEET: &[&str] = &["fleet_name", "fleet_slug"];
const DEVICE: &[&str] = &["uuid", "fleet_slug"];

pub const DEVICES_ONLINE: Def = gauge(
    "balena_devices_online",
    FLEET,
    "Devices of the fleet that are online (is_online)",
);
pub const FLEET_DEVICES: Def = gauge("balena_fleet_devices", FLEET, "Devices in the fleet");
pub const FLEET_EXPECTED_ONLINE: Def = gauge(
    "balena_fleet_devices_expected_online",
    FLEET,
    "Devices of the fleet expected online: neither inactive (deactivated) nor configuring (never connected)",
);
pub const FLEET_OFFLINE: Def = gauge(
    "balena_fleet_devices_offline",
    FLEET,
    "Devices of the fleet that are offline: disconnected, neither heartbeat nor VPN (never inactive or configuring ones)",
);
pub const FLEET_UPDATING: Def = gauge(
    "balena_fleet_devices_updating",
    FLEET,
    "Devices of the fleet that are updating: update status downloading, downloaded or applying changes",
);
pub const FLEET_SERVICES_FAILING: Def = gauge(
    "balena_fleet_services_failing",
    FLEET,
    "Failing service instances on the fleet's devices: exited, Dead or restarting, except services that end by design or are ignored",
);
pub const FLEET_BY_STATUS: Def = gauge(
    "balena_fleet_devices_by_status",
    &["fleet_name", "fleet_slug", "status"],
    "Devices of the fleet by overall_status",
);
pub const FLEET_BY_HEARTBEAT: Def = gauge(
    "balena_fleet_devices_by_heartbeat",
    &["fleet_name", "fleet_slug", "state"],
    "Devices of the fleet by API heartbeat state",
);
pub const FLEET_ON_TARGET: Def = gauge(
    "balena_fleet_devices_on_target_release",
    FLEET,
    "Devices of the fleet running their target release",
);
pub const FLEET_INFO: Def = gauge(
    "balena_fleet_info",
    &[
        "fleet_name",
        "fleet_slug",
        "organization",
        "device_type",
        "target_release",
    ],
    "Fleet details as labels; the value is 1",
);
pub const DEVICE_ONLINE: Def = gauge(
    "balena_device_online",
    DEVICE,
    "1 if the device is online (is_online), else 0",
);
pub const DEVICE_STATUS: Def = gauge(
    "balena_device_status",
    &["uuid", "fleet_slug", "status"],
    "The device's overall_status as a label; the value is 1",
);
pub const DEVICE_HEARTBEAT: Def = gauge(
    "balena_device_heartbeat_state",
    &["uuid", "fleet_slug", "state"],
    "The device's API heartbeat state as a label; the value is 1",
);
pub const DEVICE_LAST_CONNECTIVITY: Def = gauge(
    "balena_device_last_connectivity_timestamp_seconds",
    DEVICE,
    "Unix time of the device's last connectivity event",
);
pub const DEVICE_CPU: Def = gauge(
    "balena_device_cpu_usage_ratio",
    DEVICE,
    "CPU usage reported by the device, 0 to 1",
);
pub const DEVICE_TEMPERATURE: Def = gauge(
    "balena_device_cpu_temperature_celsius",
    DEVICE,
    "CPU temperature reported by the device",
);
pub const DEVICE_MEMORY_USED: Def = gauge(
    "balena_device_memory_used_bytes",
    DEVICE,
    "Memory in use reported by the device",
);
pub const DEVICE_MEMORY_TOTAL: Def = gauge(
    "balena_device_memory_total_bytes",
    DEVICE,
    "Memory size reported by the device",
);
pub const DEVICE_STORAGE_USED: Def = gauge(
    "balena_device_storage_used_bytes",
    DEVICE,
    "Storage in use reported by the device",
);
pub const DEVICE_STORAGE_TOTAL: Def = gauge(
    "balena_device_storage_total_bytes",
    DEVICE,
    "Storage size reported by the device",
);
pub const DEVICE_UNDERVOLTED: Def = gauge(
    "balena_device_undervolted",
    DEVICE,
    "1 if the device reports undervoltage, else 0",
);
pub const DEVICE_ON_TARGET: Def = gauge(
    "balena_device_on_target_release",
    DEVICE,
    "1 if the device runs its target release, else 0; absent without a target",
);
pub const DEVICE_INFO: Def = gauge(
    "balena_device_info",
    &[
        "uuid",
        "fleet_slug",
        "fleet_name",
        "device_name",
        "device_type",
        "os_version",
        "os_variant",
        "supervisor_version",
        "release",
    ],
    "Device details as labels; the value is 1",
);
pub const DEVICE_UPDATE_STATUS: Def = gauge(
    "balena_device_update_status",
    &["uuid", "fleet_slug", "status"],
    "The device's update_status as a label (none when it has none); the value is 1",
);
pub const DEVICE_UPDATE_PROGRESS: Def = gauge(
    "balena_device_update_progress_ratio",
    DEVICE,
    "Progress of the update the device downloads (overall_progress), 0 to 1; absent when none",
);
pub const DEVICE_UPDATE_STATUS_TIME: Def = gauge(
    "balena_device_update_status_timestamp_seconds",
    DEVICE,
    "Unix time of the device's last update status event",
);
pub const DEVICE_HEARTBEAT_CHANGED: Def = gauge(
    "balena_device_heartbeat_state_changed_timestamp_seconds",
    DEVICE,
    "Unix time the device's heartbeat state last changed (offline since, when offline)",
);
pub const DEVICE_LATITUDE: Def = gauge(
    "balena_device_latitude_degrees",
    DEVICE,
    "Latitude of the device (balenaCloud only)",
);
pub const DEVICE_LONGITUDE: Def = gauge(
    "balena_device_longitude_degrees",
    DEVICE,
    "Longitude of the device (balenaCloud only)",
);
pub const DEVICE_TAGS: Def = gauge(
    "balena_device_tags",
    &["uuid", "fleet_slug", "tag_<key>"],
    "The device's tags as labels tag_<key>; the value is 1",
);
pub const SERVICE_STATUS: Def = gauge(
    "balena_service_status",
    &["uuid", "fleet_slug", "service", "status"],
    "Status of a service's container on the device (image_install of the release it runs, else of its target) as a label; the value is 1",
);
pub const SERVICE_DOWNLOAD: Def = gauge(
    "balena_service_download_progress_ratio",
    &["uuid", "fleet_slug", "service"],
    "Download progress of a service's image on the device, 0 to 1; absent when not downloading",
);
pub const DEVICE_EXPECTED_ONLINE: Def = gauge(
    "balena_device_expected_online",
    DEVICE,
    "1 if the device is expected online (neither inactive nor configuring), else 0",
);
pub const DEVICE_OFFLINE: Def = gauge(
    "balena_device_offline",
    DEVICE,
    "1 if the device is offline (disconnected: neither heartbeat nor VPN), else 0; inactive and configuring devices are 0",
);
pub const DEVICE_OFFLINE_SINCE: Def = gauge(
    "balena_device_offline_since_timestamp_seconds",
    DEVICE,
    "Unix time an offline device went offline (its heartbeat change, else its last connectivity event); absent when not offline",
);
pub const DEVICE_UPDATING: Def = gauge(
    "balena_device_updating",
    DEVICE,
    "1 if the device is updating (update status downloading, downloaded or applying changes), else 0",
);
pub const SERVICE_FAILING: Def = gauge(
    "balena_service_failing",
    &["uuid", "fleet_slug", "service"],
    "1 if the service is failing (exited, Dead or restarting, unless it ended by design or is ignored), else 0",
);
pub const FLEET_BY_UPDATE_STATUS: Def = gauge(
    "balena_fleet_devices_by_update_status",
    &["fleet_name", "fleet_slug", "status"],
    "Devices of the fleet by update_status (none when a device has none)",
);
pub const FLEET_SERVICES: Def = gauge(
    "balena_fleet_service_instances",
    &["fleet_name", "fleet_slug", "service", "status"],
    "Service instances on the fleet's devices by service and status",
);
pub const FLEET_TAGS: Def = gauge(
    "balena_fleet_tags",
    &["fleet_name", "fleet_slug", "tag_<key>"],
    "The fleet's tags as labels tag_<key>; the value is 1",
);
pub const UP: Def = gauge(
    "balena_up",
    &[],
    "1 if the last crawl of the balena API succeeded, 0 if it failed or none has finished.",
);
pub const CRAWL_DURATION: Def = gauge(
    "balena_crawl_duration_seconds",
    &[],
    "Wall time of the last crawl of the balena API.",
);
pub const LAST_SUCCESS: Def = gauge(
    "balena_last_successful_crawl_timestamp_seconds",
    &[],
    "Unix time when the last successful crawl finished; 0 before the first.",
);
pub const CRAWL_REQUESTS: Def = gauge(
    "balena_crawl_api_requests",
    &[],
    "API requests made by the last crawl, retries included.",
);
pub const CRAWLS: Def = counter(
    "balena_crawls_total",
    &[],
    "Crawls of the balena API finished.",
);
pub const CRAWL_ERRORS: Def = counter(
    "balena_crawl_errors_total",
    &["kind"],
    "Crawls that failed, by the kind of error that ended them.",
);
pub const API_REQUESTS: Def = counter(
    "balena_api_requests_total",
    &["resource"],
    "Requests sent to the balena API, by resource, retries included.",
);
pub const API_ERRORS: Def = counter(
    "balena_api_errors_total",
    &["kind"],
    "Failed requests to the balena API, by kind of error.",
);
pub const SD_FILE_ERRORS: Def = counter(
    "balena_sd_file_write_errors_total",
    &[],
    "Failed writes of the service discovery file (SD_FILE).",
);
pub const HTTP_OPEN: Def = gauge(
    "balena_http_connections_open",
    &["listener"],
    "HTTP connections open now, by listener (public: PORT, internal: INTERNAL_PORT).",
);
pub const HTTP_ACCEPTED: Def = counter(
    "balena_http_connections_accepted_total",
    &["listener"],
    "HTTP connections accepted, by listener.",
);
pub const HTTP_LIMIT: Def = counter(
    "balena_http_connection_limit_reached_total",
    &["listener"],
    "Times a new connection had to wait because MAX_CONNECTIONS were open, by listener.",
);
pub const HTTP_CLOSED: Def = counter(
    "balena_http_connections_closed_total",
    &["listener", "reason"],
    "HTTP connections the exporter closed, by listener and reason (head_timeout: the request head did not arrive in time, also idle keep-alive; head_too_large; stalled: the client read nothing; max_age; error).",
);
pub const HTTP_AUTH_FAILURES: Def = counter(
    "balena_http_auth_failures_total",
    &[],
    "Requests whose credentials (METRICS_TOKEN, or METRICS_USERNAME and METRICS_PASSWORD) were wrong.",
);
pub const DASHBOARD_INFO: Def = gauge(
    "balena_dashboard_info",
    &["url"],
    "The balena dashboard that device links open (<url>/devices/<uuid>/summary); absent when none is set. The value is 1.",
);
pub const BUILD_INFO: Def = gauge(
    "balena_exporter_build_info",
    &["version"],
    "Version of the exporter; the value is 1.",
);

/// Every family the exporter serves but the prometheus crate's `process_*` ones. A label
/// `tag_<key>` stands for one label per tag key (see `tags`).
pub const FAMILIES: &[&Def] = &[
    &DEVICES_ONLINE,
    &FLEET_DEVICES,
    &FLEET_EXPECTED_ONLINE,
    &FLEET_OFFLINE,
    &FLEET_UPDATING,
    &FLEET_SERVICES_FAILING,
    &FLEET_BY_STATUS,
    &FLEET_BY_HEARTBEAT,
    &FLEET_ON_TARGET,
    &FLEET_INFO,
    &FLEET_BY_UPDATE_STATUS,
    &FLEET_SERVICES,
    &FLEET_TAGS,
    &DEVICE_ONLINE,
    &DEVICE_STATUS,
    &DEVICE_HEARTBEAT,
    &DEVICE_LAST_CONNECTIVITY,
    &DEVICE_CPU,
    &DEVICE_TEMPERATURE,
    &DEVICE_MEMORY_USED,
    &DEVICE_MEMORY_TOTAL,
    &DEVICE_STORAGE_USED,
    &DEVICE_STORAGE_TOTAL,
    &DEVICE_UNDERVOLTED,
    &DEVICE_ON_TARGET,
    &DEVICE_INFO,
    &DEVICE_UPDATE_STATUS,
    &DEVICE_UPDATE_PROGRESS,
    &DEVICE_UPDATE_STATUS_TIME,
    &DEVICE_HEARTBEAT_CHANGED,
    &DEVICE_LATITUDE,
    &DEVICE_LONGITUDE,
    &DEVICE_TAGS,
    &SERVICE_STATUS,
    &SERVICE_DOWNLOAD,
    &DEVICE_EXPECTED_ONLINE,
    &DEVICE_OFFLINE,
    &DEVICE_OFFLINE_SINCE,
    &DEVICE_UPDATING,
    &SERVICE_FAILING,
    &UP,
    &CRAWL_DURATION,
    &LAST_SUCCESS,
    &CRAWL_REQUESTS,
    &CRAWLS,
    &CRAWL_ERRORS,
    &API_REQUESTS,
    &API_ERRORS,
    &SD_FILE_ERRORS,
    &HTTP_OPEN,
    &HTTP_ACCEPTED,
    &HTTP_LIMIT,
    &HTTP_CLOSED,
    &HTTP_AUTH_FAILURES,
    &DASHBOARD_INFO,
    &BUILD_INFO,
];

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
        if let Some(url) = &self.dashboard {
            let help = DASHBOARD_INFO.help.to_string();
            Family::new(&mut out, &DASHBOARD_INFO, help).add(&[("url", url)], 1.0);
        }
        text(out)
    }
}

/// Room for the health families (about 3 KiB of text).
const HEALTH_SIZE: usize = 8 * 1024;

/// Text written as bytes (only ever from `str`s, so valid UTF-8).
fn text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into())
}

/// The whole `/metrics` text: fleet and device families from the snapshot (none before the
/// first successful crawl), then the exporter's health. What `/metrics` serves, in one piece.
pub fn render(snapshot: Option<&Snapshot>, device_metrics: bool, health: &Health) -> String {
    let mut text = snapshot.map_or_else(String::new, |s| render_snapshot(s, device_metrics));
    text.push_str(&health.render());
    text
}

/// A whole snapshot's fleet and device families, gzipped (see `Families`).
pub fn render_head(snapshot: Option<&Snapshot>, device_metrics: bool) -> gzip::Head {
    let Some(snapshot) = snapshot else {
        return gzip::Head::empty();
    };
    let (families, fleets) = feed(snapshot, Families::new(device_metrics, snapshot, true));
    let (streams, mut deflater) = families.finish(&fleets);
    gzip::Head::join(streams, &mut deflater)
}

/// Only a whole snapshot's fleet and device families, as text (the golden-file seam): the
/// same writer as `render_head`, with its text never deflated.
pub fn render_snapshot(snapshot: &Snapshot, device_metrics: bool) -> String {
    let (families, fleets) = feed(snapshot, Families::new(device_metrics, snapshot, false));
    families.finish_text(&fleets)
}

fn feed(snapshot: &Snapshot, mut families: Families) -> (Families, Vec<(&Fleet, Tally)>) {
    for f in &snapshot.fleets {
        for d in &f.devices {
            families.add_device(f, d);
        }
    }
    let fleets = snapshot.fleets.iter().map(|f| (f, f.tally())).collect();
    (families, fleets)
}

/// The fleet and device families of one crawl, written as the devices arrive. The text format
/// groups each family's samples, so each device family has a stream of its own that the
/// device's samples are appended to (deflated a segment at a time: `gzip::Stream`); the fleet
/// families, counted as the devices pass, are written at the end; the streams are joined in
/// `FAMILIES` order. Nothing holds the whole text, and no device is kept.
///
/// The text is written straight, without building the prometheus crate's metric model first:
/// at 10,000 devices that model is 130,000 metrics with their own label strings, which cost
/// more time and memory than the text itself. The output is byte for byte what `TextEncoder`
/// writes for the same families (tests/golden.rs).
pub struct Families {
    device_metrics: bool,
    reads: Reads,
    out: Streams,
    tag_names: tags::Names,
}

/// The device families' streams.
struct Streams {
    /// One per `DEVICE_FAMILIES` entry.
    streams: Vec<gzip::Stream>,
    /// The help texts of `DEVICE_FAMILIES`, with the note that values are cached.
    helps: Vec<String>,
    /// None: the text is kept as it is (`render_snapshot`).
    deflater: Option<gzip::Deflater>,
}

impl Streams {
    /// One sample of a device family.
    fn add(&mut self, slot: Slot, labels: &[(&str, &str)], value: f64) {
        let (def, help) = (DEVICE_FAMILIES[slot as usize], &self.helps[slot as usize]);
        let stream = &mut self.streams[slot as usize];
        let started = stream.text_len() > 0;
        write_sample(stream.text(), def, help, started, labels, value);
        if let Some(deflater) = &mut self.deflater {
            stream.spill(deflater);
        }
    }
}

/// Device families: the run of `FAMILIES` from `DEVICE_ONLINE` to `SERVICE_FAILING`, in
/// order; `Slot` names the positions.
const DEVICE_FAMILIES: &[&Def] = FAMILIES
    .split_at(FIRST_DEVICE_FAMILY)
    .1
    .split_at(Slot::ServiceFailing as usize + 1)
    .0;
/// Where `DEVICE_ONLINE` stands in `FAMILIES`.
const FIRST_DEVICE_FAMILY: usize = 13;

#[derive(Clone, Copy)]
enum Slot {
    Online,
    Status,
    Heartbeat,
    LastConnectivity,
    Cpu,
    Temperature,
    MemoryUsed,
    MemoryTotal,
    StorageUsed,
    StorageTotal,
    Undervolted,
    OnTarget,
    Info,
    UpdateStatus,
    UpdateProgress,
    UpdateStatusTime,
    HeartbeatChanged,
    Latitude,
    Longitude,
    Tags,
    ServiceStatus,
    ServiceDownload,
    ExpectedOnline,
    Offline,
    OfflineSince,
    Updating,
    ServiceFailing,
}

/// Which optional families the crawl read data for.
#[derive(Clone, Copy)]
struct Reads {
    services: bool,
    tags: bool,
}

impl Families {
    /// `reads`: a snapshot (or a crawl's converter) that says whether services and tags were
    /// read; `gzip`: whether to deflate the text as it is written.
    pub fn new(device_metrics: bool, reads: &impl ReadsOf, gzip: bool) -> Families {
        let (services, tags) = reads.reads();
        Families {
            device_metrics,
            reads: Reads { services, tags },
            out: Streams {
                streams: DEVICE_FAMILIES
                    .iter()
                    .map(|_| gzip::Stream::new())
                    .collect(),
                helps: DEVICE_FAMILIES.iter().map(|def| cached(def)).collect(),
                deflater: gzip.then(gzip::Deflater::new),
            },
            tag_names: tags::Names::new("tag_"),
        }
    }

    /// A device's samples, in every device family.
    pub fn add_device(&mut self, f: &Fleet, d: &Device) {
        if !self.device_metrics {
            return;
        }
        let out = &mut self.out;
        let (uuid, slug) = (("uuid", &*d.uuid), ("fleet_slug", &*f.slug));
        let id = [uuid, slug];
        out.add(Slot::Online, &id, flag(d.online));
        let presence = d.presence();
        out.add(Slot::ExpectedOnline, &id, flag(presence.expected_online()));
        out.add(Slot::Offline, &id, flag(d.offline()));
        if let Some(since) = d.offline_since() {
            out.add(Slot::OfflineSince, &id, since);
        }
        out.add(Slot::Updating, &id, flag(d.updating()));
        out.add(Slot::Status, &[uuid, slug, ("status", &d.status)], 1.0);
        out.add(Slot::Heartbeat, &[uuid, slug, ("state", &d.heartbeat)], 1.0);
        let values = [
            (Slot::LastConnectivity, d.last_connectivity_seconds),
            (Slot::Cpu, d.cpu_ratio),
            (Slot::Temperature, d.temperature_celsius),
            (Slot::MemoryUsed, d.memory_used_bytes),
            (Slot::MemoryTotal, d.memory_total_bytes),
            (Slot::StorageUsed, d.storage_used_bytes),
            (Slot::StorageTotal, d.storage_total_bytes),
            (Slot::Undervolted, d.undervolted.map(flag)),
            (Slot::OnTarget, d.on_target_release.map(flag)),
        ];
        for (slot, value) in values {
            if let Some(v) = value {
                out.add(slot, &id, v);
            }
        }
        out.add(Slot::Info, &device_info_labels(f, d), 1.0);
        let status = [uuid, slug, ("status", &*d.update_status)];
        out.add(Slot::UpdateStatus, &status, 1.0);
        let values = [
            (Slot::UpdateProgress, d.update_progress),
            (Slot::UpdateStatusTime, d.update_status_changed_seconds),
            (Slot::HeartbeatChanged, d.heartbeat_changed_seconds),
            (Slot::Latitude, d.latitude),
            (Slot::Longitude, d.longitude),
        ];
        for (slot, value) in values {
            if let Some(v) = value {
                out.add(slot, &id, v);
            }
        }
        if self.reads.tags {
            let names = self.tag_names.of(&d.tags);
            let mut labels = id.to_vec();
            labels.extend(
                names
                    .iter()
                    .map(String::as_str)
                    .zip(d.tags.iter().map(|t| &*t.1)),
            );
            out.add(Slot::Tags, &labels, 1.0);
        }
        if self.reads.services {
            for s in &d.services {
                let labels = [uuid, slug, ("service", &s.name), ("status", &s.status)];
                out.add(Slot::ServiceStatus, &labels, 1.0);
            }
            for s in &d.services {
                let labels = [uuid, slug, ("service", &s.name)];
                out.add(Slot::ServiceFailing, &labels, flag(s.failing));
            }
            for s in &d.services {
                if let Some(p) = s.download_progress {
                    out.add(
                        Slot::ServiceDownload,
                        &[uuid, slug, ("service", &s.name)],
                        p,
                    );
                }
            }
        }
    }

    /// The fleet families (from the fleets' tallies, in the order given) and then the device
    /// families, as streams to join, and the compressor they share.
    pub fn finish(self, fleets: &[(&Fleet, Tally)]) -> (Vec<gzip::Stream>, gzip::Deflater) {
        let mut head = gzip::Stream::new();
        write_fleet_families(head.text(), fleets, self.reads);
        let mut streams = vec![head];
        streams.extend(self.out.streams);
        (streams, self.out.deflater.unwrap_or_default())
    }

    /// As `finish`, as text; for families made with `gzip` false.
    fn finish_text(self, fleets: &[(&Fleet, Tally)]) -> String {
        let mut text_bytes = Vec::new();
        write_fleet_families(&mut text_bytes, fleets, self.reads);
        for mut stream in self.out.streams {
            text_bytes.append(stream.text());
        }
        text(text_bytes)
    }
}

/// Says which optional data a crawl read.
pub trait ReadsOf {
    /// (services, tags)
    fn reads(&self) -> (bool, bool);
}

impl ReadsOf for Snapshot {
    fn reads(&self) -> (bool, bool) {
        (self.services, self.tags)
    }
}

impl ReadsOf for crate::snapshot::Converter {
    fn reads(&self) -> (bool, bool) {
        crate::snapshot::Converter::reads(self)
    }
}

/// The help of a family written once per crawl: it says the values are cached.
fn cached(def: &Def) -> String {
    format!("{}, {CACHED}.", def.help)
}

/// One sample; the family's `# HELP`/`# TYPE` header first when it has not `started`, so a
/// family without samples leaves nothing (as the encoder drops empty families).
fn write_sample(
    out: &mut Vec<u8>,
    def: &Def,
    help: &str,
    started: bool,
    labels: &[(&str, &str)],
    value: f64,
) {
    debug_assert!(
        def.labels.last() == Some(&"tag_<key>")
            || labels
                .iter()
                .map(|(n, _)| *n)
                .eq(def.labels.iter().copied()),
        "labels of {}",
        def.name
    );
    let name = def.name.as_bytes();
    if !started {
        out.extend_from_slice(b"# HELP ");
        out.extend_from_slice(name);
        out.push(b' ');
        push_escaped(out, help, false);
        out.extend_from_slice(b"\n# TYPE ");
        out.extend_from_slice(name);
        out.push(b' ');
        out.extend_from_slice(def.kind.name().as_bytes());
        out.push(b'\n');
    }
    out.extend_from_slice(name);
    let mut separator = b'{';
    for (label, value) in labels {
        out.push(separator);
        out.extend_from_slice(label.as_bytes());
        out.extend_from_slice(b"=\"");
        push_escaped(out, value, true);
        out.push(b'"');
        separator = b',';
    }
    if !labels.is_empty() {
        out.push(b'}');
    }
    out.push(b' ');
    push_value(out, value);
    out.push(b'\n');
}

/// One family written in one go into a buffer.
struct Family<'o> {
    out: &'o mut Vec<u8>,
    def: &'static Def,
    help: String,
    started: bool,
}

impl<'o> Family<'o> {
    fn new(out: &'o mut Vec<u8>, def: &'static Def, help: String) -> Family<'o> {
        Family {
            out,
            def,
            help,
            started: false,
        }
    }

    /// A family written once per crawl (see `cached`).
    fn cached(out: &'o mut Vec<u8>, def: &'static Def) -> Family<'o> {
        Family::new(out, def, cached(def))
    }

    fn add(&mut self, labels: &[(&str, &str)], value: f64) {
        write_sample(self.out, self.def, &self.help, self.started, labels, value);
        self.started = true;
    }
}

/// A sample value as the encoder writes it (`f64`'s `Display`: `1`, `0.4`, `1795292830.768`).
fn push_value(out: &mut Vec<u8>, value: f64) {
    use std::io::Write;
    if value == 1.0 {
        out.push(b'1');
    } else if value == 0.0 && value.is_sign_positive() {
        out.push(b'0');
    } else if value.is_infinite() {
        out.extend_from_slice(if value > 0.0 { b"+Inf" } else { b"-Inf" });
    } else {
        let _ = write!(out, "{value}");
    }
}

/// Escapes `\` and newline (and `"` in label values), as the exposition format requires.
fn push_escaped(out: &mut Vec<u8>, text: &str, quote: bool) {
    let special = |b: u8| b == b'\\' || b == b'\n' || (quote && b == b'"');
    if !text.bytes().any(special) {
        out.extend_from_slice(text.as_bytes());
        return;
    }
    for b in text.bytes() {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'"' if quote => out.extend_from_slice(b"\\\""),
            b => out.push(b),
        }
    }
}

fn flag(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

fn id(f: &Fleet) -> [(&'static str, &str); 2] {
    [("fleet_name", &f.name), ("fleet_slug", &f.slug)]
}

/// `base` labels, then one `tag_<name>` label per tag.
fn with_tags<'a>(
    base: &[(&'a str, &'a str)],
    names: &'a [(String, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    let mut labels = base.to_vec();
    labels.extend(names.iter().map(|(n, v)| (n.as_str(), *v)));
    labels
}

/// `tag_<name>` for each tag's label name.
fn tag_labels(tags: &[(Text, Text)]) -> Vec<(String, &str)> {
    tags::label_names(tags)
        .into_iter()
        .map(|(name, value)| (format!("tag_{name}"), value))
        .collect()
}

fn write_fleet_families(out: &mut Vec<u8>, fleets: &[(&Fleet, Tally)], reads: Reads) {
    let mut per_fleet = |def: &'static Def, value: fn(&Tally) -> usize| {
        let mut family = Family::cached(out, def);
        for (f, t) in fleets {
            family.add(&id(f), value(t) as f64);
        }
    };
    per_fleet(&DEVICES_ONLINE, |t| t.online);
    per_fleet(&FLEET_DEVICES, |t| t.devices);
    per_fleet(&FLEET_EXPECTED_ONLINE, |t| t.expected_online);
    per_fleet(&FLEET_OFFLINE, |t| t.offline);
    per_fleet(&FLEET_UPDATING, |t| t.updating);
    if reads.services {
        per_fleet(&FLEET_SERVICES_FAILING, |t| t.services_failing);
    }
    let mut by_status = Family::cached(out, &FLEET_BY_STATUS);
    for (f, t) in fleets {
        let [name, slug] = id(f);
        for (status, n) in t.by_status() {
            by_status.add(&[name, slug, ("status", status)], n as f64);
        }
    }
    let mut by_heartbeat = Family::cached(out, &FLEET_BY_HEARTBEAT);
    for (f, t) in fleets {
        let [name, slug] = id(f);
        for (state, n) in t.by_heartbeat() {
            by_heartbeat.add(&[name, slug, ("state", state)], n as f64);
        }
    }
    let mut on_target = Family::cached(out, &FLEET_ON_TARGET);
    for (f, t) in fleets {
        on_target.add(&id(f), t.on_target_release as f64);
    }
    let mut info = Family::cached(out, &FLEET_INFO);
    for (f, _) in fleets {
        let [name, slug] = id(f);
        info.add(
            &[
                name,
                slug,
                ("organization", &f.organization),
                ("device_type", &f.device_type),
                ("target_release", &f.target_release),
            ],
            1.0,
        );
    }
    let mut by_update = Family::cached(out, &FLEET_BY_UPDATE_STATUS);
    for (f, t) in fleets {
        let [name, slug] = id(f);
        for (status, n) in t.by_update_status() {
            by_update.add(&[name, slug, ("status", status)], n as f64);
        }
    }
    if reads.services {
        let mut instances = Family::cached(out, &FLEET_SERVICES);
        for (f, t) in fleets {
            let [name, slug] = id(f);
            for ((service, status), n) in t.service_instances() {
                instances.add(
                    &[name, slug, ("service", service), ("status", status)],
                    n as f64,
                );
            }
        }
    }
    if reads.tags {
        let mut tagged = Family::cached(out, &FLEET_TAGS);
        for (f, _) in fleets {
            let names = tag_labels(&f.tags);
            tagged.add(&with_tags(&id(f), &names), 1.0);
        }
    }
}

fn device_info_labels<'a>(f: &'a Fleet, d: &'a Device) -> [(&'static str, &'a str); 9] {
    [
        ("uuid", &d.uuid),
        ("fleet_slug", &f.slug),
        ("fleet_name", &f.name),
        ("device_name", &d.name),
        ("device_type", &d.device_type),
        ("os_version", &d.os_version),
        ("os_variant", &d.os_variant),
        ("supervisor_version", &d.supervisor_version),
        ("release", &d.release),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health() -> Health {
        let public = Arc::new(ConnStats::default());
        Health::new(Arc::new(ApiStats::default()), vec![("public", public)])
    }

    #[test]
    fn health_before_any_crawl() {
        let text = render(None, true, &health());
        assert!(text.contains("\nbalena_up 0\n"), "{text}");
        assert!(text.contains("balena_api_errors_total{kind=\"timeout\"} 0\n"));
        assert!(text.contains("balena_api_requests_total{resource=\"device\"} 0\n"));
        assert!(text.contains(&format!(
            "balena_exporter_build_info{{version=\"{}\"}} 1\n",
            env!("CARGO_PKG_VERSION")
        )));
        assert!(!text.contains("balena_devices_online"));
    }

    #[test]
    fn crawl_outcomes_update_health() {
        let health = health();
        let at = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        health.crawl_succeeded(Duration::from_millis(1500), 4, at);
        health.crawl_failed("timeout", Duration::from_secs(2), 7);
        let text = health.render();
        for line in [
            "balena_up 0",
            "balena_crawl_duration_seconds 2",
            "balena_crawl_api_requests 7",
            "balena_crawls_total 2",
            "balena_crawl_errors_total{kind=\"timeout\"} 1",
            "balena_last_successful_crawl_timestamp_seconds 1800000000",
            "# TYPE balena_api_requests_total counter",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }

    #[test]
    fn device_families_are_the_run_of_families_that_slots_name() {
        assert_eq!(DEVICE_FAMILIES[0].name, DEVICE_ONLINE.name);
        assert_eq!(DEVICE_FAMILIES[Slot::Info as usize].name, DEVICE_INFO.name);
        assert_eq!(
            DEVICE_FAMILIES[Slot::ServiceDownload as usize].name,
            SERVICE_DOWNLOAD.name
        );
        assert_eq!(
            DEVICE_FAMILIES[Slot::ServiceFailing as usize].name,
            SERVICE_FAILING.name
        );
        assert_eq!(DEVICE_FAMILIES.len(), Slot::ServiceFailing as usize + 1);
        let after = FAMILIES[FIRST_DEVICE_FAMILY + DEVICE_FAMILIES.len()];
        assert!(
            !after.name.starts_with("balena_device_") && !after.name.starts_with("balena_service_")
        );
        assert!(!FAMILIES[FIRST_DEVICE_FAMILY - 1]
            .name
            .starts_with("balena_device_"));
    }

    #[test]
    fn every_family_is_defined_once_and_served() {
        let mut names: Vec<_> = FAMILIES.iter().map(|d| d.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), FAMILIES.len());
        let fleet = Fleet {
            name: "f".into(),
            slug: "o/f".into(),
            devices: vec![Device {
                uuid: "u".into(),
                status: "disconnected".into(),
                on_target_release: Some(true),
                last_connectivity_seconds: Some(1.0),
                cpu_ratio: Some(0.2),
                temperature_celsius: Some(40.0),
                memory_used_bytes: Some(1.0),
                memory_total_bytes: Some(2.0),
                storage_used_bytes: Some(1.0),
                storage_total_bytes: Some(2.0),
                undervolted: Some(false),
                update_progress: Some(0.5),
                update_status_changed_seconds: Some(2.0),
                heartbeat_changed_seconds: Some(3.0),
                latitude: Some(52.5),
                longitude: Some(13.4),
                services: vec![crate::snapshot::Service {
                    name: "main".into(),
                    status: "Downloading".into(),
                    download_progress: Some(0.25),
                    failing: false,
                }],
                tags: vec![("rack.position".into(), "A/3".into())],
                ..Device::default()
            }],
            tags: vec![("region".into(), "eu".into())],
            ..Fleet::default()
        };
        let s = Snapshot {
            fleets: vec![fleet],
            services: true,
            tags: true,
        };
        let health = health().with_dashboard(Some("https://dashboard.example.com".into()));
        let text = render(Some(&s), true, &health);
        assert!(text.contains(
            "balena_device_offline_since_timestamp_seconds{uuid=\"u\",fleet_slug=\"o/f\"} 3\n"
        ));
        assert!(text.contains("balena_dashboard_info{url=\"https://dashboard.example.com\"} 1\n"));
        assert!(text.contains(
            "balena_device_tags{uuid=\"u\",fleet_slug=\"o/f\",tag_rack_position=\"A/3\"} 1\n"
        ));
        assert!(text.contains(
            "balena_service_status{uuid=\"u\",fleet_slug=\"o/f\",service=\"main\",status=\"Downloading\"} 1\n"
        ));
        assert!(text.contains(
            "balena_fleet_service_instances{fleet_name=\"f\",fleet_slug=\"o/f\",service=\"main\",status=\"Downloading\"} 1\n"
        ));
        for def in FAMILIES {
            assert!(
                text.contains(&format!("# TYPE {} {}\n", def.name, def.kind.name())),
                "{} is not served",
                def.name
            );
        }
    }

    #[test]
    fn device_metrics_can_be_turned_off() {
        let fleet = Fleet {
            name: "f".into(),
            slug: "o/f".into(),
            devices: vec![Device {
                uuid: "u".into(),
                ..Device::default()
            }],
            ..Fleet::default()
        };
        let s = Snapshot {
            fleets: vec![fleet],
            ..Snapshot::default()
        };
        assert!(render_snapshot(&s, true)
            .contains("balena_device_online{uuid=\"u\",fleet_slug=\"o/f\"} 0"));
        let off = render_snapshot(&s, false);
        assert!(!off.contains("balena_device_"), "{off}");
        assert!(off.contains("balena_fleet_devices{fleet_name=\"f\",fleet_slug=\"o/f\"} 1"));
    }

    #[test]
    fn the_gzip_head_inflates_to_the_text() {
        // Several segments of text, so the compressor is fed many times.
        let devices = (0..3000)
            .map(|i| Device {
                uuid: format!("{i:032x}").into(),
                name: format!("device \"{i}\"\n").into(),
                ..Device::default()
            })
            .collect();
        let fleet = Fleet {
            name: "f".into(),
            slug: "o/f".into(),
            devices,
            ..Fleet::default()
        };
        let s = Snapshot {
            fleets: vec![fleet],
            ..Snapshot::default()
        };
        let text = render_snapshot(&s, true);
        assert!(text.len() > 4 * gzip::SEGMENT);
        assert_eq!(
            render_head(Some(&s), true).inflate().unwrap(),
            text.as_bytes()
        );
        assert!(render_head(None, true).inflate().unwrap().is_empty());
    }
}
