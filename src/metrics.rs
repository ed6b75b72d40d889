//! Every metric name, help text and label lives here, in `FAMILIES`. Fleet and device families
//! are written from a `Snapshot` once per crawl (straight into a gzip stream); the exporter's
//! own families are written at scrape time from `Health`, so they are always current.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus::{Gauge, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};

use crate::balena::{ApiStats, ERROR_KINDS};
use crate::gzip;
use crate::server::ConnStats;
use crate::snapshot::{Device, Fleet, Snapshot, Text};
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
        }
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
        let mut out = Out::text(HEALTH_SIZE);
        // Every name is valid, so encoding cannot fail.
        if let Err(e) = TextEncoder::new().encode_utf8(&self.registry.gather(), &mut out.text) {
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
        let per_listener = |out: &mut Out, def: &'static Def, value: fn(&ConnStats) -> u64| {
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
        out.text
    }
}

/// The whole `/metrics` text: fleet and device families from the snapshot (none before the
/// first successful crawl), then the exporter's health. What `/metrics` serves, in one piece.
pub fn render(snapshot: Option<&Snapshot>, device_metrics: bool, health: &Health) -> String {
    let mut text = snapshot.map_or_else(String::new, |s| render_snapshot(s, device_metrics));
    text.push_str(&health.render());
    text
}

/// The fleet and device families, gzipped at level 1 while they are written: the text goes
/// through a small buffer into the compressor, so no plain copy of the whole body is ever
/// held (at 10,000 devices the text is about 15 MiB, the gzip about 3 MiB). The head is
/// completed per request with the health families (`gzip::Head::tail`).
pub fn render_head(snapshot: Option<&Snapshot>, device_metrics: bool) -> gzip::Head {
    let Some(snapshot) = snapshot else {
        return gzip::Head::empty();
    };
    // Room for a 4:1 ratio, so the body seldom grows (growing copies it).
    let mut out = Out {
        text: String::with_capacity(CHUNK + 4096),
        gzip: Some(gzip::Writer::new(
            estimated_size(snapshot, device_metrics) / 4,
        )),
    };
    write_snapshot(&mut out, snapshot, device_metrics);
    let mut writer = out.gzip.take().unwrap_or_else(|| gzip::Writer::new(0));
    writer.write(out.text.as_bytes());
    writer.finish()
}

/// Text handed to the compressor at a time: large enough that the compressor's per-call cost
/// does not count, small enough to stay in cache.
const CHUNK: usize = 64 * 1024;

/// Where the text is written: a `String` that is either the whole body (`render_snapshot`,
/// `Health::render`) or a buffer fed to the compressor whenever it holds `CHUNK` bytes.
struct Out {
    text: String,
    gzip: Option<gzip::Writer>,
}

impl Out {
    fn text(capacity: usize) -> Out {
        Out {
            text: String::with_capacity(capacity),
            gzip: None,
        }
    }

    /// Hands the buffered text to the compressor once there is `CHUNK` of it (after a whole
    /// sample, so the text splits between lines; any split would do).
    fn spill(&mut self) {
        if let Some(writer) = &mut self.gzip {
            if self.text.len() >= CHUNK {
                writer.write(self.text.as_bytes());
                self.text.clear();
            }
        }
    }
}

/// Only the fleet and device families, as text (the golden-file seam).
pub fn render_snapshot(snapshot: &Snapshot, device_metrics: bool) -> String {
    let mut out = Out::text(estimated_size(snapshot, device_metrics));
    write_snapshot(&mut out, snapshot, device_metrics);
    out.text
}

/// Room for the health families (about 3 KiB of text).
const HEALTH_SIZE: usize = 8 * 1024;

/// About the size of the snapshot's text, so that the body is allocated once: at 100,000
/// devices it is over 150 MB, and growing it by doubling would hold two copies at once.
fn estimated_size(snapshot: &Snapshot, device_metrics: bool) -> usize {
    // Per sample: the family name, label names, punctuation and the value (all but the
    // uuid and slug values, counted apart), a little over their average at 10,000 devices.
    const SAMPLE: usize = 80;
    let mut size = 32 * 1024;
    for f in &snapshot.fleets {
        size += 20 * (SAMPLE + 2 * (f.name.len() + f.slug.len()))
            + f.organization.len()
            + f.device_type.len()
            + f.target_release.len();
        if device_metrics {
            for d in &f.devices {
                size += 13 * (SAMPLE + d.uuid.len() + f.slug.len())
                    + f.name.len()
                    + d.status.len()
                    + d.heartbeat.len()
                    + d.name.len()
                    + d.device_type.len()
                    + d.os_version.len()
                    + d.os_variant.len()
                    + d.supervisor_version.len()
                    + d.release.len()
                    + 100;
            }
        }
    }
    size
}

/// Writes the text format (0.0.4) straight into the body, without building the prometheus
/// crate's metric model first: at 10,000 devices that model is 130,000 metrics with their
/// own label strings, which cost more time and memory than the text itself. The output is
/// byte for byte what `TextEncoder` writes for the same families (tests/golden.rs).
fn write_snapshot(out: &mut Out, snapshot: &Snapshot, device_metrics: bool) {
    let reads = Reads {
        services: snapshot.services,
        tags: snapshot.tags,
    };
    write_fleet_families(out, &snapshot.fleets, reads);
    if device_metrics {
        write_device_families(out, &snapshot.fleets, reads);
    }
}

/// Which optional families the snapshot has data for (what the crawl read).
#[derive(Clone, Copy)]
struct Reads {
    services: bool,
    tags: bool,
}

/// One family being written. The `# HELP`/`# TYPE` header goes out with the first sample,
/// so a family without samples leaves nothing (as the encoder drops empty families).
struct Family<'o> {
    out: &'o mut Out,
    def: &'static Def,
    help: String,
    started: bool,
}

impl<'o> Family<'o> {
    fn new(out: &'o mut Out, def: &'static Def, help: String) -> Family<'o> {
        Family {
            out,
            def,
            help,
            started: false,
        }
    }

    /// A snapshot family: its help says the values are cached between crawls.
    fn cached(out: &'o mut Out, def: &'static Def) -> Family<'o> {
        Family::new(out, def, format!("{}, {CACHED}.", def.help))
    }

    fn add(&mut self, labels: &[(&str, &str)], value: f64) {
        debug_assert!(
            self.def.labels.last() == Some(&"tag_<key>")
                || labels
                    .iter()
                    .map(|(n, _)| *n)
                    .eq(self.def.labels.iter().copied()),
            "labels of {}",
            self.def.name
        );
        let out = &mut *self.out;
        let name = self.def.name;
        if !self.started {
            self.started = true;
            out.text.push_str("# HELP ");
            out.text.push_str(name);
            out.text.push(' ');
            push_escaped(&mut out.text, &self.help, false);
            out.text.push_str("\n# TYPE ");
            out.text.push_str(name);
            out.text.push(' ');
            out.text.push_str(self.def.kind.name());
            out.text.push('\n');
        }
        out.text.push_str(name);
        let mut separator = '{';
        for (label, value) in labels {
            out.text.push(separator);
            out.text.push_str(label);
            out.text.push_str("=\"");
            push_escaped(&mut out.text, value, true);
            out.text.push('"');
            separator = ',';
        }
        if !labels.is_empty() {
            out.text.push('}');
        }
        out.text.push(' ');
        push_value(&mut out.text, value);
        out.text.push('\n');
        out.spill();
    }
}

/// A sample value as the encoder writes it (`f64`'s `Display`: `1`, `0.4`, `1795292830.768`).
fn push_value(out: &mut String, value: f64) {
    use std::fmt::Write;
    if value == 1.0 {
        out.push('1');
    } else if value == 0.0 && value.is_sign_positive() {
        out.push('0');
    } else if value.is_infinite() {
        out.push_str(if value > 0.0 { "+Inf" } else { "-Inf" });
    } else {
        let _ = write!(out, "{value}");
    }
}

/// Escapes `\` and newline (and `"` in label values), as the exposition format requires.
fn push_escaped(out: &mut String, text: &str, quote: bool) {
    let special = |b: u8| b == b'\\' || b == b'\n' || (quote && b == b'"');
    if !text.bytes().any(special) {
        out.push_str(text);
        return;
    }
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quote => out.push_str("\\\""),
            c => out.push(c),
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

fn write_fleet_families(out: &mut Out, fleets: &[Fleet], reads: Reads) {
    let per_fleet = |out: &mut Out, def: &'static Def, value: fn(&Fleet) -> usize| {
        let mut family = Family::cached(out, def);
        for f in fleets {
            family.add(&id(f), value(f) as f64);
        }
    };
    per_fleet(out, &DEVICES_ONLINE, Fleet::online);
    per_fleet(out, &FLEET_DEVICES, |f| f.devices.len());
    let mut by_status = Family::cached(out, &FLEET_BY_STATUS);
    for f in fleets {
        let [name, slug] = id(f);
        for (status, n) in f.by_status() {
            by_status.add(&[name, slug, ("status", status)], n as f64);
        }
    }
    let mut by_heartbeat = Family::cached(out, &FLEET_BY_HEARTBEAT);
    for f in fleets {
        let [name, slug] = id(f);
        for (state, n) in f.by_heartbeat() {
            by_heartbeat.add(&[name, slug, ("state", state)], n as f64);
        }
    }
    per_fleet(out, &FLEET_ON_TARGET, Fleet::on_target_release);
    let mut info = Family::cached(out, &FLEET_INFO);
    for f in fleets {
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
    for f in fleets {
        let [name, slug] = id(f);
        for (status, n) in f.by_update_status() {
            by_update.add(&[name, slug, ("status", status)], n as f64);
        }
    }
    if reads.services {
        let mut instances = Family::cached(out, &FLEET_SERVICES);
        for f in fleets {
            let [name, slug] = id(f);
            for ((service, status), n) in f.service_instances() {
                instances.add(
                    &[name, slug, ("service", service), ("status", status)],
                    n as f64,
                );
            }
        }
    }
    if reads.tags {
        let mut tagged = Family::cached(out, &FLEET_TAGS);
        for f in fleets {
            let names = tag_labels(&f.tags);
            tagged.add(&with_tags(&id(f), &names), 1.0);
        }
    }
}

/// Device families, each written in one pass over every device (fleets by slug, devices by id).
fn write_device_families(out: &mut Out, fleets: &[Fleet], reads: Reads) {
    let devices = || {
        fleets
            .iter()
            .flat_map(|f| f.devices.iter().map(move |d| (f, d)))
    };
    let per_device = |out: &mut Out, def: &'static Def, value: fn(&Device) -> Option<f64>| {
        let mut family = Family::cached(out, def);
        for (f, d) in devices() {
            if let Some(v) = value(d) {
                family.add(&[("uuid", &d.uuid), ("fleet_slug", &f.slug)], v);
            }
        }
    };
    let labelled = |out: &mut Out, def: &'static Def, label, value: fn(&Device) -> &str| {
        let mut family = Family::cached(out, def);
        for (f, d) in devices() {
            family.add(
                &[
                    ("uuid", &d.uuid),
                    ("fleet_slug", &f.slug),
                    (label, value(d)),
                ],
                1.0,
            );
        }
    };
    per_device(out, &DEVICE_ONLINE, |d| Some(flag(d.online)));
    labelled(out, &DEVICE_STATUS, "status", |d| &d.status);
    labelled(out, &DEVICE_HEARTBEAT, "state", |d| &d.heartbeat);
    per_device(out, &DEVICE_LAST_CONNECTIVITY, |d| {
        d.last_connectivity_seconds
    });
    per_device(out, &DEVICE_CPU, |d| d.cpu_ratio);
    per_device(out, &DEVICE_TEMPERATURE, |d| d.temperature_celsius);
    per_device(out, &DEVICE_MEMORY_USED, |d| d.memory_used_bytes);
    per_device(out, &DEVICE_MEMORY_TOTAL, |d| d.memory_total_bytes);
    per_device(out, &DEVICE_STORAGE_USED, |d| d.storage_used_bytes);
    per_device(out, &DEVICE_STORAGE_TOTAL, |d| d.storage_total_bytes);
    per_device(out, &DEVICE_UNDERVOLTED, |d| d.undervolted.map(flag));
    per_device(out, &DEVICE_ON_TARGET, |d| d.on_target_release.map(flag));
    let mut info = Family::cached(out, &DEVICE_INFO);
    for (f, d) in devices() {
        info.add(&device_info_labels(f, d), 1.0);
    }
    labelled(out, &DEVICE_UPDATE_STATUS, "status", |d| &d.update_status);
    per_device(out, &DEVICE_UPDATE_PROGRESS, |d| d.update_progress);
    per_device(out, &DEVICE_UPDATE_STATUS_TIME, |d| {
        d.update_status_changed_seconds
    });
    per_device(out, &DEVICE_HEARTBEAT_CHANGED, |d| {
        d.heartbeat_changed_seconds
    });
    per_device(out, &DEVICE_LATITUDE, |d| d.latitude);
    per_device(out, &DEVICE_LONGITUDE, |d| d.longitude);
    if reads.tags {
        let mut tagged = Family::cached(out, &DEVICE_TAGS);
        for (f, d) in devices() {
            let names = tag_labels(&d.tags);
            tagged.add(
                &with_tags(&[("uuid", &d.uuid), ("fleet_slug", &f.slug)], &names),
                1.0,
            );
        }
    }
    if reads.services {
        let mut status = Family::cached(out, &SERVICE_STATUS);
        for (f, d) in devices() {
            for s in &d.services {
                status.add(
                    &[
                        ("uuid", &d.uuid),
                        ("fleet_slug", &f.slug),
                        ("service", &s.name),
                        ("status", &s.status),
                    ],
                    1.0,
                );
            }
        }
        let mut progress = Family::cached(out, &SERVICE_DOWNLOAD);
        for (f, d) in devices() {
            for s in &d.services {
                if let Some(p) = s.download_progress {
                    progress.add(
                        &[
                            ("uuid", &d.uuid),
                            ("fleet_slug", &f.slug),
                            ("service", &s.name),
                        ],
                        p,
                    );
                }
            }
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
        let text = render(Some(&s), true, &health());
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
        // Several times `CHUNK` of text, so the compressor is fed many times.
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
        assert!(text.len() > 4 * CHUNK);
        assert_eq!(
            render_head(Some(&s), true).inflate().unwrap(),
            text.as_bytes()
        );
        assert!(render_head(None, true).inflate().unwrap().is_empty());
    }
}
