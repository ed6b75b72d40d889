//! Label values survive the text format: any string (any Unicode, quotes, backslashes,
//! newlines, control characters, empty) as a fleet's or device's name, slug, OS version and
//! so on, sent in the API's pages and fed through the production render path, comes back
//! exactly from the rendered `/metrics` text, and `promtool check metrics` accepts that text.
//! Fleets and devices are generated as plain rows (with the values the API can carry), then
//! written as the API's JSON rows.

use crate::common;

use std::collections::BTreeMap;

use std::time::{Duration, UNIX_EPOCH};

use balena_exporter::config::Config;
use balena_exporter::definitions::{service_failing, Presence};
use balena_exporter::metrics::{self, Def};
use balena_exporter::render::{Pages, Settings};
use balena_exporter::snapshot::{
    Device, Fleet, Service, Text, KNOWN_HEARTBEATS, KNOWN_STATUSES, KNOWN_UPDATE_STATUSES,
};
use balena_exporter::tags;
use common::promtext::{self, Sample};
use common::{props, tools};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::sample::select;
use proptest::strategy::ValueTree;
use serde_json::{json, Value};

const CASES: u32 = 256;

/// Fleets in the one snapshot that promtool checks.
const PROMTOOL_FLEETS: usize = 1000;

/// What the text format escapes, what it does not but might trip a parser, and the
/// escapes' own letters.
const SPECIAL: &[char] = &[
    '"', '\\', '\n', 'n', '\r', '\t', '\0', '\u{1b}', '\u{7f}', '\u{85}', '\u{a0}', '\u{2028}',
    '\u{2029}', '\u{feff}', '\u{fffd}', '{', '}', ',', '=', ' ', '#', 'é', '☃', '😀',
];

fn label_char() -> impl Strategy<Value = char> {
    prop_oneof![
        3 => any::<char>(),
        3 => select(SPECIAL),
        2 => proptest::char::range('a', 'z'),
    ]
}

/// Any string, the empty one often.
fn label() -> impl Strategy<Value = Text> {
    prop_oneof![
        1 => Just(Text::from("")),
        6 => vec(label_char(), 1..16).prop_map(|chars| String::from_iter(chars).into()),
    ]
}

/// A number as the API sends it, short enough that its JSON reads back exactly: `n / 100`.
fn value() -> impl Strategy<Value = Option<f64>> {
    option::of(any::<i32>().prop_map(|n| f64::from(n) / 100.0))
}

/// A Unix time to the millisecond, 1970 to 9999 (what RFC 3339 text can say).
fn time() -> impl Strategy<Value = Option<f64>> {
    option::of((0u64..253_402_300_800_000).prop_map(|ms| Duration::from_millis(ms).as_secs_f64()))
}

/// A ratio from an integer percent, as `cpu_usage` and `overall_progress` are sent.
fn percent() -> impl Strategy<Value = Option<f64>> {
    option::of((0u8..=100).prop_map(|p| f64::from(p) / 100.0))
}

/// MiB on the wire, bytes in the metrics.
fn mib() -> impl Strategy<Value = Option<f64>> {
    option::of(any::<u32>().prop_map(|m| f64::from(m) * 1024.0 * 1024.0))
}

fn degrees(max: i32) -> impl Strategy<Value = Option<f64>> {
    option::of((-max * 10_000..=max * 10_000).prop_map(|n| f64::from(n) / 10_000.0))
}

/// Tags: keys as balena allows them (no whitespace), values any text.
fn tag_list() -> impl Strategy<Value = Vec<(Text, Text)>> {
    let key = "[^\\s]{1,12}".prop_map(Text::from);
    vec((key, label()), 0..4).prop_map(|mut tags| {
        tags.sort();
        tags.dedup_by(|a, b| a.0 == b.0);
        tags
    })
}

/// Services with any name and status (`Downloading` often, the one status that has a
/// download progress); whether one fails is worked out as the exporter does, once its
/// device's status is known (`with_failing`).
fn services() -> impl Strategy<Value = Vec<Service>> {
    let status = prop_oneof![2 => label(), 1 => Just(Text::from("Downloading"))];
    vec((label(), status, percent()), 0..3).prop_map(|services| {
        let mut services: Vec<Service> = services
            .into_iter()
            .map(|(name, status, progress)| Service {
                // A `Downloading` install without a progress is at 0.
                download_progress: (&*status == "Downloading").then(|| progress.unwrap_or(0.0)),
                name,
                status,
                failing: false,
            })
            .collect();
        // As the exporter lists them: by name (stable, in the order of their ids).
        services.sort_by(|a, b| a.name.cmp(&b.name));
        services
    })
}

fn with_failing(mut d: Device) -> Device {
    let presence = Presence::of(&d.status);
    for s in &mut d.services {
        s.failing = service_failing(presence, &s.status, None, false);
    }
    d
}

/// Update status; update progress and time, heartbeat change time, latitude, longitude;
/// services; tags.
type Extras = (
    Text,
    (
        Option<f64>,
        Option<f64>,
        Option<f64>,
        Option<f64>,
        Option<f64>,
    ),
    Vec<Service>,
    Vec<(Text, Text)>,
);

/// What the services issue added to a device: update state, times, coordinates, services, tags.
fn device_extras() -> impl Strategy<Value = Extras> {
    (
        label(),
        (percent(), time(), time(), degrees(90), degrees(180)),
        services(),
        tag_list(),
    )
}

fn device() -> impl Strategy<Value = Device> {
    let labels = (
        (label(), label(), label(), label(), label()),
        (label(), label(), label(), label()),
    );
    let values = (time(), percent(), value(), mib(), mib(), mib(), mib());
    let flags = (
        any::<bool>(),
        option::of(any::<bool>()),
        option::of(any::<bool>()),
    );
    (any::<u64>(), labels, values, flags, device_extras()).prop_map(
        |(
            id,
            (
                (uuid, name, device_type, status, heartbeat),
                (os_version, os_variant, supervisor_version, release),
            ),
            (last, cpu, temperature, memory_used, memory_total, storage_used, storage_total),
            (online, on_target_release, undervolted),
            (
                update_status,
                (update_progress, update_changed, heartbeat_changed, latitude, longitude),
                services,
                tags,
            ),
        )| {
            with_failing(Device {
                id,
                uuid,
                name,
                device_type,
                online,
                status,
                heartbeat,
                os_version,
                os_variant,
                supervisor_version,
                release,
                on_target_release,
                last_connectivity_seconds: last,
                cpu_ratio: cpu,
                temperature_celsius: temperature,
                memory_used_bytes: memory_used,
                memory_total_bytes: memory_total,
                storage_used_bytes: storage_used,
                storage_total_bytes: storage_total,
                undervolted,
                web_accessible: false,
                addresses: vec![],
                update_status,
                update_progress,
                update_status_changed_seconds: update_changed,
                heartbeat_changed_seconds: heartbeat_changed,
                latitude,
                longitude,
                services,
                tags,
            })
        },
    )
}

/// Fleets, each with its devices.
type Account = Vec<(Fleet, Vec<Device>)>;

fn fleet() -> impl Strategy<Value = (Fleet, Vec<Device>)> {
    (
        (label(), label(), label(), label(), label()),
        tag_list(),
        vec(device(), 0..4),
    )
        .prop_map(
            |((name, slug, organization, device_type, target_release), tags, devices)| {
                let fleet = Fleet {
                    id: 0,
                    name,
                    slug,
                    organization,
                    device_type,
                    target_release,
                    tags,
                };
                (fleet, devices)
            },
        )
}

fn snapshot() -> impl Strategy<Value = Account> {
    vec(fleet(), 1..4)
}

fn tag_rows(tags: &[(Text, Text)]) -> Vec<Value> {
    tags.iter()
        .map(|(k, v)| json!({"tag_key": &**k, "value": &**v}))
        .collect()
}

fn rfc3339(seconds: Option<f64>) -> Value {
    seconds.map_or(Value::Null, |s| {
        let t = UNIX_EPOCH + Duration::from_millis((s * 1e3).round() as u64);
        Value::from(humantime::format_rfc3339_millis(t).to_string())
    })
}

/// The API's rows for a device of the fleet `fleet`; each service gets an id of its own from
/// `services` (the service rows).
fn device_row(fleet: usize, d: &Device, services: &mut Vec<Value>) -> Value {
    let target = match d.on_target_release {
        Some(true) => json!({"__id": 1}),
        Some(false) => json!({"__id": 2}),
        None => Value::Null,
    };
    let percent = |ratio: Option<f64>| ratio.map(|r| (r * 100.0).round());
    let mib = |bytes: Option<f64>| bytes.map(|b| b / (1024.0 * 1024.0));
    let installs: Vec<Value> = d
        .services
        .iter()
        .map(|s| {
            let id = services.len() + 1;
            services.push(json!({"id": id, "service_name": &*s.name}));
            json!({
                "status": &*s.status, "download_progress": percent(s.download_progress),
                "is_provided_by__release": {"__id": 1},
                "installs__image": [{"is_a_build_of__service": {"__id": id}}],
            })
        })
        .collect();
    json!({
        "id": d.id, "uuid": &*d.uuid, "device_name": &*d.name,
        "belongs_to__application": {"__id": fleet},
        "is_of__device_type": [{"slug": &*d.device_type}],
        "is_online": d.online, "overall_status": &*d.status,
        "api_heartbeat_state": &*d.heartbeat, "os_version": &*d.os_version,
        "os_variant": &*d.os_variant, "supervisor_version": &*d.supervisor_version,
        "is_running__release": [{"id": 1, "commit": &*d.release}],
        "should_be_running__release": target,
        "last_connectivity_event": rfc3339(d.last_connectivity_seconds),
        "cpu_usage": percent(d.cpu_ratio), "cpu_temp": d.temperature_celsius,
        "memory_usage": mib(d.memory_used_bytes), "memory_total": mib(d.memory_total_bytes),
        "storage_usage": mib(d.storage_used_bytes), "storage_total": mib(d.storage_total_bytes),
        "is_undervolted": d.undervolted, "update_status": &*d.update_status,
        "last_update_status_event": rfc3339(d.update_status_changed_seconds),
        "overall_progress": percent(d.update_progress),
        "changed_api_heartbeat_state_on__date": rfc3339(d.heartbeat_changed_seconds),
        "latitude": d.latitude, "longitude": d.longitude,
        "image_install": installs, "device_tag": tag_rows(&d.tags),
    })
}

/// The API's pages for `account`: fleet ids are positions (from 1), devices in fleet order.
fn pages(account: &[(Fleet, Vec<Device>)]) -> Pages {
    let (mut fleets, mut devices, mut services) = (vec![], vec![], vec![]);
    for (i, (f, ds)) in account.iter().enumerate() {
        let target: Vec<Value> = if f.target_release.is_empty() {
            vec![]
        } else {
            vec![json!({"commit": &*f.target_release})]
        };
        fleets.push(json!({
            "id": i + 1, "app_name": &*f.name, "slug": &*f.slug,
            "organization": [{"handle": &*f.organization}],
            "is_for__device_type": [{"slug": &*f.device_type}],
            "should_be_running__release": target, "application_tag": tag_rows(&f.tags),
        }));
        for d in ds {
            devices.push(device_row(i + 1, d, &mut services));
        }
    }
    let page = |rows: Vec<Value>| json!({ "d": rows }).to_string().into_bytes();
    Pages {
        fleets: vec![page(fleets)],
        services: vec![page(services)],
        releases: vec![],
        devices: vec![page(devices)],
    }
}

/// The fleet and device families `/metrics` serves for `account`, through the render path.
fn render(account: &[(Fleet, Vec<Device>)]) -> String {
    render_pages(&pages(account))
}

/// The fleet and device families `/metrics` serves for `pages`.
fn render_pages(pages: &Pages) -> String {
    let config = Config::from_vars(
        [
            ("BALENA_TOKEN", "t"),
            ("SD_MODE", "lan"),
            ("BALENA_DASHBOARD_URL", "off"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string())),
    )
    .expect("a valid configuration");
    let (settings, crawl) = (Settings::new(&config), config.crawl);
    let rendered = pages
        .render(&settings, &crawl, UNIX_EPOCH)
        .expect("generated pages decode");
    String::from_utf8(rendered.metrics.text().expect("inflates")).expect("UTF-8")
}

/// Devices per value: every `known` value (zero included) and any other seen, in value order.
fn counted<'a>(
    known: &[&'a str],
    values: impl Iterator<Item = &'a str>,
) -> BTreeMap<&'a str, usize> {
    let mut counts: BTreeMap<&str, usize> = known.iter().map(|k| (*k, 0)).collect();
    for value in values {
        *counts.entry(value).or_default() += 1;
    }
    counts
}

/// One expected sample: labels in the order written, and the value.
type Expected = (Vec<(&'static str, String)>, f64);

/// What each family must hold, in order, worked out from the snapshot alone.
fn expected(s: &[(Fleet, Vec<Device>)]) -> BTreeMap<&'static str, Vec<Expected>> {
    // Fleet families list the fleets by slug (then id: position); device families list the
    // devices in the order the pages have them.
    let mut sorted: Vec<&(Fleet, Vec<Device>)> = s.iter().collect();
    sorted.sort_by(|a, b| a.0.slug.cmp(&b.0.slug));
    let mut out: BTreeMap<&'static str, Vec<Expected>> = BTreeMap::new();
    let mut add = |def: &Def, labels: Vec<(&'static str, &str)>, value: f64| {
        let labels = labels
            .into_iter()
            .map(|(k, v)| (k, v.to_string()))
            .collect();
        out.entry(def.name).or_default().push((labels, value));
    };
    let flag = |b: bool| if b { 1.0 } else { 0.0 };
    for (f, devices) in sorted.iter().copied() {
        let id = || vec![("fleet_name", &*f.name), ("fleet_slug", &f.slug)];
        let online = devices.iter().filter(|d| d.online).count();
        add(&metrics::DEVICES_ONLINE, id(), online as f64);
        add(&metrics::FLEET_DEVICES, id(), devices.len() as f64);
        for (status, n) in counted(KNOWN_STATUSES, devices.iter().map(|d| &*d.status)) {
            let labels = [id(), vec![("status", status)]].concat();
            add(&metrics::FLEET_BY_STATUS, labels, n as f64);
        }
        for (state, n) in counted(KNOWN_HEARTBEATS, devices.iter().map(|d| &*d.heartbeat)) {
            let labels = [id(), vec![("state", state)]].concat();
            add(&metrics::FLEET_BY_HEARTBEAT, labels, n as f64);
        }
        let on_target = devices.iter().filter(|d| d.on_target_release == Some(true));
        add(&metrics::FLEET_ON_TARGET, id(), on_target.count() as f64);
        let info = vec![
            ("organization", &*f.organization),
            ("device_type", &f.device_type),
            ("target_release", &f.target_release),
        ];
        add(&metrics::FLEET_INFO, [id(), info].concat(), 1.0);
        let count = |keep: fn(&Device) -> bool| devices.iter().filter(|d| keep(d)).count();
        let expected_online = count(|d| d.presence().expected_online());
        add(
            &metrics::FLEET_EXPECTED_ONLINE,
            id(),
            expected_online as f64,
        );
        add(&metrics::FLEET_OFFLINE, id(), count(Device::offline) as f64);
        add(
            &metrics::FLEET_UPDATING,
            id(),
            count(Device::updating) as f64,
        );
        let services = devices.iter().flat_map(|d| &d.services);
        let failing = services.filter(|s| s.failing).count();
        add(&metrics::FLEET_SERVICES_FAILING, id(), failing as f64);
    }
    for (f, devices) in sorted.iter().copied() {
        let id = || vec![("fleet_name", &*f.name), ("fleet_slug", &f.slug)];
        let statuses = devices.iter().map(|d| &*d.update_status);
        for (status, n) in counted(KNOWN_UPDATE_STATUSES, statuses) {
            let labels = [id(), vec![("status", status)]].concat();
            add(&metrics::FLEET_BY_UPDATE_STATUS, labels, n as f64);
        }
    }
    for (f, devices) in sorted.iter().copied() {
        let id = || vec![("fleet_name", &*f.name), ("fleet_slug", &f.slug)];
        let mut instances: BTreeMap<(&str, &str), usize> = BTreeMap::new();
        for service in devices.iter().flat_map(|d| &d.services) {
            *instances
                .entry((&service.name, &service.status))
                .or_default() += 1;
        }
        for ((service, status), n) in instances {
            let labels = [id(), vec![("service", service), ("status", status)]].concat();
            add(&metrics::FLEET_SERVICES, labels, n as f64);
        }
    }
    for (f, _) in sorted.iter().copied() {
        let names = tag_labels(&f.tags);
        let tagged: Vec<(&'static str, &str)> =
            names.iter().map(|(n, v)| (n.as_str(), *v)).collect();
        let labels = [
            vec![("fleet_name", &*f.name), ("fleet_slug", &f.slug)],
            tagged,
        ]
        .concat();
        add(&metrics::FLEET_TAGS, labels, 1.0);
    }
    for (f, devices) in s {
        for d in devices {
            let id = || vec![("uuid", &*d.uuid), ("fleet_slug", &f.slug)];
            add(&metrics::DEVICE_ONLINE, id(), flag(d.online));
            let status = [id(), vec![("status", &*d.status)]].concat();
            add(&metrics::DEVICE_STATUS, status, 1.0);
            let state = [id(), vec![("state", &*d.heartbeat)]].concat();
            add(&metrics::DEVICE_HEARTBEAT, state, 1.0);
            let values = [
                (
                    &metrics::DEVICE_LAST_CONNECTIVITY,
                    d.last_connectivity_seconds,
                ),
                (&metrics::DEVICE_CPU, d.cpu_ratio),
                (&metrics::DEVICE_TEMPERATURE, d.temperature_celsius),
                (&metrics::DEVICE_MEMORY_USED, d.memory_used_bytes),
                (&metrics::DEVICE_MEMORY_TOTAL, d.memory_total_bytes),
                (&metrics::DEVICE_STORAGE_USED, d.storage_used_bytes),
                (&metrics::DEVICE_STORAGE_TOTAL, d.storage_total_bytes),
                (&metrics::DEVICE_UNDERVOLTED, d.undervolted.map(flag)),
                (&metrics::DEVICE_ON_TARGET, d.on_target_release.map(flag)),
            ];
            for (def, value) in values {
                if let Some(v) = value {
                    add(def, id(), v);
                }
            }
            let info = vec![
                ("uuid", &*d.uuid),
                ("fleet_slug", &f.slug),
                ("fleet_name", &f.name),
                ("device_name", &d.name),
                ("device_type", &d.device_type),
                ("os_version", &d.os_version),
                ("os_variant", &d.os_variant),
                ("supervisor_version", &d.supervisor_version),
                ("release", &d.release),
            ];
            add(&metrics::DEVICE_INFO, info, 1.0);
        }
    }
    for (f, devices) in s {
        for d in devices {
            let id = || vec![("uuid", &*d.uuid), ("fleet_slug", &f.slug)];
            let status = [id(), vec![("status", &*d.update_status)]].concat();
            add(&metrics::DEVICE_UPDATE_STATUS, status, 1.0);
        }
    }
    for (f, devices) in s {
        for d in devices {
            let id = || vec![("uuid", &*d.uuid), ("fleet_slug", &f.slug)];
            add(
                &metrics::DEVICE_EXPECTED_ONLINE,
                id(),
                flag(d.presence().expected_online()),
            );
            add(&metrics::DEVICE_OFFLINE, id(), flag(d.offline()));
            if let Some(since) = d.offline_since() {
                add(&metrics::DEVICE_OFFLINE_SINCE, id(), since);
            }
            add(&metrics::DEVICE_UPDATING, id(), flag(d.updating()));
            for service in d.services.iter() {
                let labels = [id(), vec![("service", &*service.name)]].concat();
                add(&metrics::SERVICE_FAILING, labels, flag(service.failing));
            }
        }
    }
    let per_device = [
        (
            &metrics::DEVICE_UPDATE_PROGRESS,
            (|d: &Device| d.update_progress) as fn(&Device) -> Option<f64>,
        ),
        (&metrics::DEVICE_UPDATE_STATUS_TIME, |d: &Device| {
            d.update_status_changed_seconds
        }),
        (&metrics::DEVICE_HEARTBEAT_CHANGED, |d: &Device| {
            d.heartbeat_changed_seconds
        }),
        (&metrics::DEVICE_LATITUDE, |d: &Device| d.latitude),
        (&metrics::DEVICE_LONGITUDE, |d: &Device| d.longitude),
    ];
    for (def, value) in per_device {
        for (f, devices) in s {
            for d in devices {
                if let Some(v) = value(d) {
                    add(def, vec![("uuid", &*d.uuid), ("fleet_slug", &f.slug)], v);
                }
            }
        }
    }
    for (f, devices) in s {
        for d in devices {
            let names = tag_labels(&d.tags);
            let tagged: Vec<(&'static str, &str)> =
                names.iter().map(|(n, v)| (n.as_str(), *v)).collect();
            let labels = [vec![("uuid", &*d.uuid), ("fleet_slug", &f.slug)], tagged].concat();
            add(&metrics::DEVICE_TAGS, labels, 1.0);
        }
    }
    for (f, devices) in s {
        for d in devices {
            for service in &d.services {
                let labels = vec![
                    ("uuid", &*d.uuid),
                    ("fleet_slug", &f.slug),
                    ("service", &service.name),
                    ("status", &service.status),
                ];
                add(&metrics::SERVICE_STATUS, labels, 1.0);
            }
        }
    }
    for (f, devices) in s {
        for d in devices {
            for service in &d.services {
                if let Some(p) = service.download_progress {
                    let labels = vec![
                        ("uuid", &*d.uuid),
                        ("fleet_slug", &f.slug),
                        ("service", &service.name),
                    ];
                    add(&metrics::SERVICE_DOWNLOAD, labels, p);
                }
            }
        }
    }
    out
}

/// The `tag_<name>` labels of tags, leaked to `'static` names (a test's few hundred strings).
fn tag_labels(tags: &[(Text, Text)]) -> Vec<(&'static String, &str)> {
    tags::label_names(tags)
        .into_iter()
        .map(|(name, value)| (&*Box::leak(Box::new(format!("tag_{name}"))), value))
        .collect()
}

fn same_value(a: f64, b: f64) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

/// Renders `s`, parses the text back and compares every sample with what the snapshot says:
/// the same families, the same samples in the same order, every label value the same string.
fn round_trip(s: &[(Fleet, Vec<Device>)]) -> Result<(), String> {
    let text = render(s);
    let samples = std::panic::catch_unwind(|| promtext::parse(&text)).map_err(|panic| {
        let why = panic.downcast_ref::<String>().map_or("", String::as_str);
        format!("the rendered text does not parse: {why}")
    })?;
    let mut got: BTreeMap<&str, Vec<&Sample>> = BTreeMap::new();
    for sample in &samples {
        got.entry(&*sample.name).or_default().push(sample);
    }
    let expected = expected(s);
    let names = |m: Vec<&str>| m.join(", ");
    if !got.keys().eq(expected.keys()) {
        return Err(format!(
            "families {} instead of {}",
            names(got.keys().copied().collect()),
            names(expected.keys().copied().collect())
        ));
    }
    for (family, want) in &expected {
        let have = &got[family];
        if have.len() != want.len() {
            return Err(format!(
                "{family}: {} samples instead of {}",
                have.len(),
                want.len()
            ));
        }
        for (i, (sample, (labels, value))) in have.iter().zip(want).enumerate() {
            let labels: BTreeMap<String, String> = labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect();
            if sample.labels != labels {
                return Err(format!(
                    "{family} sample {i}: labels {:?} instead of {labels:?}",
                    sample.labels
                ));
            }
            if !same_value(sample.value, *value) {
                return Err(format!(
                    "{family} sample {i}: value {} instead of {value}",
                    sample.value
                ));
            }
        }
    }
    // Every line is a header or a sample: no value's newline split a line.
    let families = expected.len();
    let lines = text.lines().count();
    if lines != samples.len() + 2 * families {
        return Err(format!(
            "{lines} lines for {} samples in {families} families",
            samples.len()
        ));
    }
    Ok(())
}

#[test]
fn label_values_round_trip_through_the_text_format() {
    props::check(
        "label_values_round_trip_through_the_text_format",
        CASES,
        snapshot,
        |s| round_trip(&s).map_err(TestCaseError::fail),
    );
}

/// The same from the API's side: strings in a device list body, decoded and joined as the
/// crawl does, are the label values of `/metrics`.
#[test]
fn names_in_api_bodies_are_the_label_values() {
    props::check(
        "names_in_api_bodies_are_the_label_values",
        CASES,
        || vec(label(), 7),
        |v| {
            let v: Vec<&str> = v.iter().map(|s| &**s).collect();
            // Bodies as the server sends them (escaped), decoded as the crawl decodes them.
            let fleet_body = serde_json::json!([
                {"id": 1, "app_name": v[0], "slug": v[1],
                 "organization": [{"handle": v[2]}], "is_for__device_type": [{"slug": v[3]}]}
            ])
            .to_string();
            let device_body = serde_json::json!([
                {"id": 1, "uuid": v[4], "device_name": v[5], "os_version": v[6],
                 "belongs_to__application": {"__id": 1}}
            ])
            .to_string();
            let pages = Pages {
                fleets: vec![
                    json!({ "d": serde_json::from_str::<Value>(&fleet_body).unwrap() })
                        .to_string()
                        .into_bytes(),
                ],
                devices: vec![
                    json!({ "d": serde_json::from_str::<Value>(&device_body).unwrap() })
                        .to_string()
                        .into_bytes(),
                ],
                ..Pages::default()
            };
            let samples = promtext::parse(&render_pages(&pages));
            let fleet = promtext::family(&samples, "balena_fleet_info");
            prop_assert_eq!(fleet.len(), 1);
            for (label, want) in [
                ("fleet_name", &v[0]),
                ("fleet_slug", &v[1]),
                ("organization", &v[2]),
                ("device_type", &v[3]),
            ] {
                prop_assert_eq!(fleet[0].label(label), *want, "{}", label);
            }
            let device = promtext::family(&samples, "balena_device_info");
            prop_assert_eq!(device.len(), 1);
            for (label, want) in [
                ("fleet_name", &v[0]),
                ("fleet_slug", &v[1]),
                ("uuid", &v[4]),
                ("device_name", &v[5]),
                ("os_version", &v[6]),
            ] {
                prop_assert_eq!(device[0].label(label), *want, "{}", label);
            }
            Ok(())
        },
    );
}

/// Every special character in every label at once, ahead of the generated fleets.
fn hostile_fleet() -> (Fleet, Vec<Device>) {
    let all: String = SPECIAL.iter().collect();
    let hostile = |what: &str| Text::from(format!("{what} {all} \\n \\\" \\\\ \"\" \\"));
    let fleet = Fleet {
        id: 1,
        name: hostile("name"),
        slug: hostile("slug"),
        organization: hostile("organization"),
        device_type: hostile("device type"),
        target_release: hostile("release"),
        tags: vec![(
            format!("k.{all}").replace(char::is_whitespace, "").into(),
            hostile("tag"),
        )],
    };
    let device = with_failing(Device {
        id: 1,
        uuid: hostile("uuid"),
        name: hostile("device name"),
        device_type: hostile("device type"),
        status: hostile("status"),
        heartbeat: hostile("heartbeat"),
        os_version: hostile("os version"),
        os_variant: hostile("os variant"),
        supervisor_version: hostile("supervisor"),
        release: hostile("release"),
        cpu_ratio: Some(0.0),
        temperature_celsius: Some(-273.15),
        memory_used_bytes: Some(0.0),
        storage_total_bytes: Some(f64::from(u32::MAX) * 1024.0 * 1024.0),
        update_status: hostile("update status"),
        services: vec![Service {
            name: hostile("service"),
            status: "Downloading".into(),
            download_progress: Some(0.5),
            failing: false,
        }],
        tags: vec![("site".into(), hostile("site"))],
        ..Device::default()
    });
    (fleet, vec![device])
}

/// One account of `PROMTOOL_FLEETS` generated fleets (one promtool run for all of them: a
/// family's HELP and TYPE may not repeat, so they cannot be separate expositions).
fn many_fleets() -> Account {
    let mut runner = props::runner(1);
    let strategy = fleet();
    let mut fleets = vec![hostile_fleet()];
    for _ in 0..PROMTOOL_FLEETS {
        fleets.push(strategy.new_tree(&mut runner).expect("a fleet").current());
    }
    fleets
}

#[test]
fn promtool_accepts_the_rendered_label_values() {
    if !tools::require(&["promtool"]) {
        return;
    }
    let started = std::time::Instant::now();
    let snapshot = many_fleets();
    let text = render(&snapshot);
    if let Err(report) = tools::promtool_check_metrics(text.as_bytes()) {
        // Halve the fleets while a half still fails, to name a culprit.
        let fails = |fleets: &[(Fleet, Vec<Device>)]| {
            tools::promtool_check_metrics(render(fleets).as_bytes()).is_err()
        };
        let mut culprits = snapshot.as_slice();
        while culprits.len() > 1 {
            let (a, b) = culprits.split_at(culprits.len() / 2);
            culprits = if fails(a) {
                a
            } else if fails(b) {
                b
            } else {
                break;
            };
        }
        panic!(
            "promtool check metrics: {report}\nit rejects these fleets: {culprits:#?}\n{}",
            render(culprits)
        );
    }
    eprintln!(
        "promtool: {} fleets, {} devices, {} bytes checked in {:.2} s",
        snapshot.len(),
        snapshot.iter().map(|f| f.1.len()).sum::<usize>(),
        text.len(),
        started.elapsed().as_secs_f64()
    );
    // And the parser of these tests reads it all back.
    round_trip(&snapshot).unwrap();
}
