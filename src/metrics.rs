//! Every metric name, help text and label lives here. Fleet and device families are built
//! from a `Snapshot` once per crawl; the exporter's own health is a long-lived registry.
//! `render` turns both into the text format that `/metrics` serves.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus::proto::{Gauge as GaugeValue, LabelPair, Metric, MetricFamily, MetricType};
use prometheus::{
    Encoder, Gauge, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

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
    let mut families = snapshot.map_or_else(Vec::new, |s| snapshot_families(s, device_metrics));
    families.extend(health.registry.gather());
    encode(&families)
}

/// Only the fleet and device families (the golden-file seam).
pub fn render_snapshot(snapshot: &Snapshot, device_metrics: bool) -> String {
    encode(&snapshot_families(snapshot, device_metrics))
}

fn encode(families: &[MetricFamily]) -> String {
    let mut out = Vec::new();
    // Empty families were dropped and every name is valid, so encoding cannot fail.
    if let Err(e) = TextEncoder::new().encode(families, &mut out) {
        log::error!("metrics encoding failed error=\"{e}\"");
    }
    String::from_utf8(out).unwrap_or_default()
}

/// Builds one gauge family; empty families are dropped when collected.
struct Family(MetricFamily);

impl Family {
    fn gauge(name: &str, help: &str) -> Family {
        let mut mf = MetricFamily::default();
        mf.set_name(name.to_string());
        mf.set_help(help.to_string());
        mf.set_field_type(MetricType::GAUGE);
        Family(mf)
    }

    fn add(&mut self, labels: &[(&str, &str)], value: f64) {
        let pairs = labels
            .iter()
            .map(|(name, value)| {
                let mut pair = LabelPair::default();
                pair.set_name(name.to_string());
                pair.set_value(value.to_string());
                pair
            })
            .collect();
        let mut gauge = GaugeValue::default();
        gauge.set_value(value);
        let mut metric = Metric::from_label(pairs);
        metric.set_gauge(gauge);
        self.0.mut_metric().push(metric);
    }
}

fn flag(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

fn snapshot_families(snapshot: &Snapshot, device_metrics: bool) -> Vec<MetricFamily> {
    let mut families = fleet_families(&snapshot.fleets);
    if device_metrics {
        families.extend(device_families(&snapshot.fleets));
    }
    families
        .into_iter()
        .map(|f| f.0)
        .filter(|mf| !mf.get_metric().is_empty())
        .collect()
}

fn fleet_families(fleets: &[Fleet]) -> Vec<Family> {
    let mut online = Family::gauge(
        "balena_devices_online",
        &format!("Devices of the fleet that are online (is_online), {CACHED}."),
    );
    let mut total = Family::gauge(
        "balena_fleet_devices",
        &format!("Devices in the fleet, {CACHED}."),
    );
    let mut by_status = Family::gauge(
        "balena_fleet_devices_by_status",
        &format!("Devices of the fleet by overall_status, {CACHED}."),
    );
    let mut by_heartbeat = Family::gauge(
        "balena_fleet_devices_by_heartbeat",
        &format!("Devices of the fleet by API heartbeat state, {CACHED}."),
    );
    let mut on_target = Family::gauge(
        "balena_fleet_devices_on_target_release",
        &format!("Devices of the fleet running their target release, {CACHED}."),
    );
    let mut info = Family::gauge(
        "balena_fleet_info",
        &format!("Fleet details as labels; the value is 1, {CACHED}."),
    );
    for f in fleets {
        let id: &[(&str, &str)] = &[("fleet_name", &f.name), ("fleet_slug", &f.slug)];
        online.add(id, f.online() as f64);
        total.add(id, f.devices.len() as f64);
        on_target.add(id, f.on_target_release() as f64);
        for (status, n) in f.by_status() {
            by_status.add(&[id[0], id[1], ("status", status)], n as f64);
        }
        for (state, n) in f.by_heartbeat() {
            by_heartbeat.add(&[id[0], id[1], ("state", state)], n as f64);
        }
        info.add(
            &[
                id[0],
                id[1],
                ("organization", &f.organization),
                ("device_type", &f.device_type),
                ("target_release", &f.target_release),
            ],
            1.0,
        );
    }
    vec![online, total, by_status, by_heartbeat, on_target, info]
}

fn device_families(fleets: &[Fleet]) -> Vec<Family> {
    let g = |name: &str, what: &str| Family::gauge(name, &format!("{what}, {CACHED}."));
    let mut online = g(
        "balena_device_online",
        "1 if the device is online (is_online), else 0",
    );
    let mut status = g(
        "balena_device_status",
        "The device's overall_status as a label; the value is 1",
    );
    let mut heartbeat = g(
        "balena_device_heartbeat_state",
        "The device's API heartbeat state as a label; the value is 1",
    );
    let mut last_seen = g(
        "balena_device_last_connectivity_timestamp_seconds",
        "Unix time of the device's last connectivity event",
    );
    let mut cpu = g(
        "balena_device_cpu_usage_ratio",
        "CPU usage reported by the device, 0 to 1",
    );
    let mut temperature = g(
        "balena_device_cpu_temperature_celsius",
        "CPU temperature reported by the device",
    );
    let mut memory_used = g(
        "balena_device_memory_used_bytes",
        "Memory in use reported by the device",
    );
    let mut memory_total = g(
        "balena_device_memory_total_bytes",
        "Memory size reported by the device",
    );
    let mut storage_used = g(
        "balena_device_storage_used_bytes",
        "Storage in use reported by the device",
    );
    let mut storage_total = g(
        "balena_device_storage_total_bytes",
        "Storage size reported by the device",
    );
    let mut undervolted = g(
        "balena_device_undervolted",
        "1 if the device reports undervoltage, else 0",
    );
    let mut on_target = g(
        "balena_device_on_target_release",
        "1 if the device runs its target release, else 0; absent without a target",
    );
    let mut info = g(
        "balena_device_info",
        "Device details as labels; the value is 1",
    );
    for f in fleets {
        for d in &f.devices {
            let id: &[(&str, &str)] = &[("uuid", &d.uuid), ("fleet_slug", &f.slug)];
            online.add(id, flag(d.online));
            status.add(&[id[0], id[1], ("status", &d.status)], 1.0);
            heartbeat.add(&[id[0], id[1], ("state", &d.heartbeat)], 1.0);
            let optional = [
                (&mut last_seen, d.last_connectivity_seconds),
                (&mut cpu, d.cpu_ratio),
                (&mut temperature, d.temperature_celsius),
                (&mut memory_used, d.memory_used_bytes),
                (&mut memory_total, d.memory_total_bytes),
                (&mut storage_used, d.storage_used_bytes),
                (&mut storage_total, d.storage_total_bytes),
                (&mut undervolted, d.undervolted.map(flag)),
                (&mut on_target, d.on_target_release.map(flag)),
            ];
            for (family, value) in optional {
                if let Some(v) = value {
                    family.add(id, v);
                }
            }
            info.add(&device_info_labels(f, d), 1.0);
        }
    }
    vec![
        online,
        status,
        heartbeat,
        last_seen,
        cpu,
        temperature,
        memory_used,
        memory_total,
        storage_used,
        storage_total,
        undervolted,
        on_target,
        info,
    ]
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
}
