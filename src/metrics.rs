//! Every metric name, help text and label lives here. Fleet and device families are built
//! from a `Snapshot` once per crawl; the exporter's own health is a long-lived registry.
//! `render` turns both into the text format that `/metrics` serves.

use std::io::Write as _;
use std::ops::{Deref, DerefMut};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use flate2::write::GzEncoder;
use flate2::Compression;
use prometheus::{Gauge, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};

use crate::balena::ERROR_KINDS;
use crate::snapshot::{Device, Fleet, Snapshot};

/// The `Content-Type` of the text exposition format 0.0.4.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

const CACHED: &str = "as of the last successful crawl of the balena API";

/// API counters handed to the balena client.
#[derive(Clone)]
pub struct ApiCounters {
    requests: IntCounterVec,
    errors: IntCounterVec,
}

impl ApiCounters {
    pub fn request(&self, resource: &str) {
        self.requests.with_label_values(&[resource]).inc();
    }

    pub fn error(&self, kind: &str) {
        self.errors.with_label_values(&[kind]).inc();
    }
}

/// The exporter's own health metrics.
pub struct Health {
    registry: Registry,
    up: IntGauge,
    crawl_duration: Gauge,
    last_success: Gauge,
    crawl_requests: IntGauge,
    crawls: IntCounter,
    crawl_errors: IntCounterVec,
    sd_file_errors: IntCounter,
    api: ApiCounters,
}

impl Health {
    pub fn new() -> Health {
        let registry = Registry::new();
        let up = IntGauge::new(
            "balena_up",
            "1 if the last crawl of the balena API succeeded, 0 if it failed or none has finished.",
        )
        .expect("valid metric");
        let crawl_duration = Gauge::new(
            "balena_crawl_duration_seconds",
            "Wall time of the last crawl of the balena API.",
        )
        .expect("valid metric");
        let last_success = Gauge::new(
            "balena_last_successful_crawl_timestamp_seconds",
            "Unix time when the last successful crawl finished; 0 before the first.",
        )
        .expect("valid metric");
        let crawl_requests = IntGauge::new(
            "balena_crawl_api_requests",
            "API requests made by the last crawl, retries included.",
        )
        .expect("valid metric");
        let crawls = IntCounter::new("balena_crawls_total", "Crawls of the balena API finished.")
            .expect("valid metric");
        let sd_file_errors = IntCounter::new(
            "balena_sd_file_write_errors_total",
            "Failed writes of the service discovery file (SD_FILE).",
        )
        .expect("valid metric");
        let crawl_errors = IntCounterVec::new(
            Opts::new(
                "balena_crawl_errors_total",
                "Crawls that failed, by the kind of error that ended them.",
            ),
            &["kind"],
        )
        .expect("valid metric");
        let requests = IntCounterVec::new(
            Opts::new(
                "balena_api_requests_total",
                "Requests sent to the balena API, by resource, retries included.",
            ),
            &["resource"],
        )
        .expect("valid metric");
        let errors = IntCounterVec::new(
            Opts::new(
                "balena_api_errors_total",
                "Failed requests to the balena API, by kind of error.",
            ),
            &["kind"],
        )
        .expect("valid metric");
        let build_info = IntGauge::with_opts(
            Opts::new(
                "balena_exporter_build_info",
                "Version of the exporter; the value is 1.",
            )
            .const_label("version", env!("CARGO_PKG_VERSION")),
        )
        .expect("valid metric");
        build_info.set(1);
        for kind in ERROR_KINDS {
            crawl_errors.with_label_values(&[kind]);
            errors.with_label_values(&[kind]);
        }
        for resource in ["whoami", "application", "device"] {
            requests.with_label_values(&[resource]);
        }
        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(up.clone()),
            Box::new(crawl_duration.clone()),
            Box::new(last_success.clone()),
            Box::new(crawl_requests.clone()),
            Box::new(crawls.clone()),
            Box::new(sd_file_errors.clone()),
            Box::new(crawl_errors.clone()),
            Box::new(requests.clone()),
            Box::new(errors.clone()),
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
            api: ApiCounters { requests, errors },
        }
    }

    pub fn api_counters(&self) -> ApiCounters {
        self.api.clone()
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
}

impl Default for Health {
    fn default() -> Self {
        Health::new()
    }
}

/// The whole `/metrics` body: fleet and device families from the snapshot (none before the
/// first successful crawl), then the exporter's health.
pub fn render(snapshot: Option<&Snapshot>, device_metrics: bool, health: &Health) -> String {
    let mut out =
        Out::text(snapshot.map_or(0, |s| estimated_size(s, device_metrics)) + HEALTH_SIZE);
    write_all(&mut out, snapshot, device_metrics, health);
    out.text
}

/// The same body as `render`, gzipped at level 1 (`Compression::fast()`) while it is written:
/// the text goes through a small buffer into the encoder, so no plain copy of the whole body
/// is ever held (at 10,000 devices the text is about 15 MiB, the gzip about 3 MiB).
pub fn render_gzip(snapshot: Option<&Snapshot>, device_metrics: bool, health: &Health) -> Vec<u8> {
    // Room for a 4:1 ratio, so the body seldom grows (growing copies it).
    let text_size = snapshot.map_or(0, |s| estimated_size(s, device_metrics)) + HEALTH_SIZE;
    let encoder = GzEncoder::new(Vec::with_capacity(text_size / 4), Compression::fast());
    let mut out = Out {
        text: String::with_capacity(CHUNK + HEALTH_SIZE),
        gzip: Some(encoder),
    };
    write_all(&mut out, snapshot, device_metrics, health);
    let mut encoder = out.gzip.take().expect("gzip sink");
    // Writing to a Vec cannot fail.
    let _ = encoder.write_all(out.text.as_bytes());
    let mut body = encoder.finish().unwrap_or_default();
    body.shrink_to_fit();
    body
}

fn write_all(out: &mut Out, snapshot: Option<&Snapshot>, device_metrics: bool, health: &Health) {
    if let Some(s) = snapshot {
        write_snapshot(out, s, device_metrics);
    }
    // Empty families were dropped and every name is valid, so encoding cannot fail.
    if let Err(e) = TextEncoder::new().encode_utf8(&health.registry.gather(), &mut out.text) {
        log::error!("metrics encoding failed error=\"{e}\"");
    }
}

/// Text handed to the encoder at a time: large enough that the encoder's per-call cost does
/// not count, small enough to stay in cache.
const CHUNK: usize = 64 * 1024;

/// Where the text is written: a `String` that is either the whole body (`render`,
/// `render_snapshot`) or a buffer fed to a gzip encoder whenever it holds `CHUNK` bytes.
struct Out {
    text: String,
    gzip: Option<GzEncoder<Vec<u8>>>,
}

impl Out {
    fn text(capacity: usize) -> Out {
        Out {
            text: String::with_capacity(capacity),
            gzip: None,
        }
    }

    /// Hands the buffered text to the encoder once there is `CHUNK` of it (after a whole
    /// sample, so the text splits between lines; any split would do).
    fn spill(&mut self) {
        if let Some(encoder) = &mut self.gzip {
            if self.text.len() >= CHUNK {
                // Writing to a Vec cannot fail.
                let _ = encoder.write_all(self.text.as_bytes());
                self.text.clear();
            }
        }
    }
}

impl Deref for Out {
    type Target = String;
    fn deref(&self) -> &String {
        &self.text
    }
}

impl DerefMut for Out {
    fn deref_mut(&mut self) -> &mut String {
        &mut self.text
    }
}

/// Only the fleet and device families (the golden-file seam).
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
    write_fleet_families(out, &snapshot.fleets);
    if device_metrics {
        write_device_families(out, &snapshot.fleets);
    }
}

/// One gauge family being written. The `# HELP`/`# TYPE` header goes out with the first
/// sample, so a family without samples leaves nothing (as the encoder drops empty families).
struct Family<'o> {
    out: &'o mut Out,
    name: &'static str,
    help: String,
    started: bool,
}

impl<'o> Family<'o> {
    fn gauge(out: &'o mut Out, name: &'static str, help: String) -> Family<'o> {
        Family {
            out,
            name,
            help,
            started: false,
        }
    }

    fn add(&mut self, labels: &[(&str, &str)], value: f64) {
        let out = &mut *self.out;
        if !self.started {
            self.started = true;
            out.push_str("# HELP ");
            out.push_str(self.name);
            out.push(' ');
            push_escaped(out, &self.help, false);
            out.push_str("\n# TYPE ");
            out.push_str(self.name);
            out.push_str(" gauge\n");
        }
        out.push_str(self.name);
        let mut separator = '{';
        for (name, value) in labels {
            out.push(separator);
            out.push_str(name);
            out.push_str("=\"");
            push_escaped(out, value, true);
            out.push('"');
            separator = ',';
        }
        if !labels.is_empty() {
            out.push('}');
        }
        out.push(' ');
        push_value(out, value);
        out.push('\n');
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

fn cached(what: &str) -> String {
    format!("{what}, {CACHED}.")
}

fn id(f: &Fleet) -> [(&'static str, &str); 2] {
    [("fleet_name", &f.name), ("fleet_slug", &f.slug)]
}

fn write_fleet_families(out: &mut Out, fleets: &[Fleet]) {
    let per_fleet = |out: &mut Out, name, what: &str, value: fn(&Fleet) -> usize| {
        let mut family = Family::gauge(out, name, cached(what));
        for f in fleets {
            family.add(&id(f), value(f) as f64);
        }
    };
    per_fleet(
        out,
        "balena_devices_online",
        "Devices of the fleet that are online (is_online)",
        Fleet::online,
    );
    per_fleet(out, "balena_fleet_devices", "Devices in the fleet", |f| {
        f.devices.len()
    });
    let mut by_status = Family::gauge(
        out,
        "balena_fleet_devices_by_status",
        cached("Devices of the fleet by overall_status"),
    );
    for f in fleets {
        let [name, slug] = id(f);
        for (status, n) in f.by_status() {
            by_status.add(&[name, slug, ("status", status)], n as f64);
        }
    }
    let mut by_heartbeat = Family::gauge(
        out,
        "balena_fleet_devices_by_heartbeat",
        cached("Devices of the fleet by API heartbeat state"),
    );
    for f in fleets {
        let [name, slug] = id(f);
        for (state, n) in f.by_heartbeat() {
            by_heartbeat.add(&[name, slug, ("state", state)], n as f64);
        }
    }
    per_fleet(
        out,
        "balena_fleet_devices_on_target_release",
        "Devices of the fleet running their target release",
        Fleet::on_target_release,
    );
    let mut info = Family::gauge(
        out,
        "balena_fleet_info",
        cached("Fleet details as labels; the value is 1"),
    );
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
}

/// Device families, each written in one pass over every device (fleets by slug, devices by id).
fn write_device_families(out: &mut Out, fleets: &[Fleet]) {
    let devices = || {
        fleets
            .iter()
            .flat_map(|f| f.devices.iter().map(move |d| (f, d)))
    };
    let per_device = |out: &mut Out, name, what: &str, value: fn(&Device) -> Option<f64>| {
        let mut family = Family::gauge(out, name, cached(what));
        for (f, d) in devices() {
            if let Some(v) = value(d) {
                family.add(&[("uuid", &d.uuid), ("fleet_slug", &f.slug)], v);
            }
        }
    };
    let labelled = |out: &mut Out, name, what: &str, label, value: fn(&Device) -> &str| {
        let mut family = Family::gauge(out, name, cached(what));
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
    per_device(
        out,
        "balena_device_online",
        "1 if the device is online (is_online), else 0",
        |d| Some(flag(d.online)),
    );
    labelled(
        out,
        "balena_device_status",
        "The device's overall_status as a label; the value is 1",
        "status",
        |d| &d.status,
    );
    labelled(
        out,
        "balena_device_heartbeat_state",
        "The device's API heartbeat state as a label; the value is 1",
        "state",
        |d| &d.heartbeat,
    );
    per_device(
        out,
        "balena_device_last_connectivity_timestamp_seconds",
        "Unix time of the device's last connectivity event",
        |d| d.last_connectivity_seconds,
    );
    per_device(
        out,
        "balena_device_cpu_usage_ratio",
        "CPU usage reported by the device, 0 to 1",
        |d| d.cpu_ratio,
    );
    per_device(
        out,
        "balena_device_cpu_temperature_celsius",
        "CPU temperature reported by the device",
        |d| d.temperature_celsius,
    );
    per_device(
        out,
        "balena_device_memory_used_bytes",
        "Memory in use reported by the device",
        |d| d.memory_used_bytes,
    );
    per_device(
        out,
        "balena_device_memory_total_bytes",
        "Memory size reported by the device",
        |d| d.memory_total_bytes,
    );
    per_device(
        out,
        "balena_device_storage_used_bytes",
        "Storage in use reported by the device",
        |d| d.storage_used_bytes,
    );
    per_device(
        out,
        "balena_device_storage_total_bytes",
        "Storage size reported by the device",
        |d| d.storage_total_bytes,
    );
    per_device(
        out,
        "balena_device_undervolted",
        "1 if the device reports undervoltage, else 0",
        |d| d.undervolted.map(flag),
    );
    per_device(
        out,
        "balena_device_on_target_release",
        "1 if the device runs its target release, else 0; absent without a target",
        |d| d.on_target_release.map(flag),
    );
    let mut info = Family::gauge(
        out,
        "balena_device_info",
        cached("Device details as labels; the value is 1"),
    );
    for (f, d) in devices() {
        info.add(&device_info_labels(f, d), 1.0);
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

    #[test]
    fn health_before_any_crawl() {
        let text = render(None, true, &Health::new());
        assert!(text.contains("\nbalena_up 0\n"), "{text}");
        assert!(text.contains("balena_api_errors_total{kind=\"timeout\"} 0\n"));
        assert!(text.contains(&format!(
            "balena_exporter_build_info{{version=\"{}\"}} 1\n",
            env!("CARGO_PKG_VERSION")
        )));
        assert!(!text.contains("balena_devices_online"));
    }

    #[test]
    fn crawl_outcomes_update_health() {
        let health = Health::new();
        let at = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        health.crawl_succeeded(Duration::from_millis(1500), 4, at);
        health.crawl_failed("timeout", Duration::from_secs(2), 7);
        let text = render(None, true, &health);
        for line in [
            "balena_up 0",
            "balena_crawl_duration_seconds 2",
            "balena_crawl_api_requests 7",
            "balena_crawls_total 2",
            "balena_crawl_errors_total{kind=\"timeout\"} 1",
            "balena_last_successful_crawl_timestamp_seconds 1800000000",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
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
        };
        assert!(render_snapshot(&s, true)
            .contains("balena_device_online{uuid=\"u\",fleet_slug=\"o/f\"} 0"));
        let off = render_snapshot(&s, false);
        assert!(!off.contains("balena_device_"), "{off}");
        assert!(off.contains("balena_fleet_devices{fleet_name=\"f\",fleet_slug=\"o/f\"} 1"));
    }

    #[test]
    fn gzip_rendering_inflates_to_the_text() {
        use std::io::Read;
        // Several times `CHUNK` of text, so the encoder is fed many times.
        let devices = (0..3000)
            .map(|i| Device {
                uuid: format!("{i:032x}"),
                name: format!("device \"{i}\"\n"),
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
        };
        let health = Health::new();
        for snapshot in [None, Some(&s)] {
            let text = render(snapshot, true, &health);
            let mut inflated = String::new();
            flate2::read::GzDecoder::new(&render_gzip(snapshot, true, &health)[..])
                .read_to_string(&mut inflated)
                .unwrap();
            // The process collector's figures may move between the two renderings.
            let stable = |t: &str| {
                t.lines()
                    .filter(|l| !l.contains("process_"))
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            assert_eq!(stable(&inflated), stable(&text));
        }
        assert!(render(Some(&s), true, &health).len() > 4 * CHUNK);
    }
}
