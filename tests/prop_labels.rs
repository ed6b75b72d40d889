//! Label values survive the text format: any string (any Unicode, quotes, backslashes,
//! newlines, control characters, empty) as a fleet's or device's name, slug, OS version and
//! so on comes back exactly from the rendered `/metrics` text, and `promtool check metrics`
//! accepts that text.

mod common;

use std::collections::BTreeMap;

use balena_exporter::balena::model;
use balena_exporter::metrics::{self, Def};
use balena_exporter::snapshot::{
    Device, Fleet, Service, Snapshot, Text, KNOWN_HEARTBEATS, KNOWN_STATUSES, KNOWN_UPDATE_STATUSES,
};
use balena_exporter::tags;
use common::promtext::{self, Sample};
use common::{prometheus, props, tools};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::sample::select;
use proptest::strategy::ValueTree;

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

/// Any f64: NaN, infinities, -0, subnormals.
fn value() -> impl Strategy<Value = Option<f64>> {
    option::of(any::<f64>())
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

fn services() -> impl Strategy<Value = Vec<Service>> {
    vec((label(), label(), value(), any::<bool>()), 0..3).prop_map(|services| {
        services
            .into_iter()
            .map(|(name, status, download_progress, failing)| Service {
                name,
                status,
                download_progress,
                failing,
            })
            .collect()
    })
}

/// Update status; update progress and time, heartbeat change time, latitude, longitude;
/// services; tags.
type Extras = (Text, [Option<f64>; 5], Vec<Service>, Vec<(Text, Text)>);

/// What the services issue added to a device: update state, times, coordinates, services, tags.
fn device_extras() -> impl Strategy<Value = Extras> {
    (
        label(),
        [value(), value(), value(), value(), value()],
        services(),
        tag_list(),
    )
}

fn device() -> impl Strategy<Value = Device> {
    let labels = (
        (label(), label(), label(), label(), label()),
        (label(), label(), label(), label()),
    );
    let values = (
        value(),
        value(),
        value(),
        value(),
        value(),
        value(),
        value(),
    );
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
                [update_progress, update_changed, heartbeat_changed, latitude, longitude],
                services,
                tags,
            ),
        )| Device {
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
        },
    )
}

fn fleet() -> impl Strategy<Value = Fleet> {
    (
        any::<u64>(),
        (label(), label(), label(), label(), label()),
        tag_list(),
        vec(device(), 0..4),
    )
        .prop_map(
            |(id, (name, slug, organization, device_type, target_release), tags, devices)| Fleet {
                id,
                name,
                slug,
                organization,
                device_type,
                target_release,
                tags,
                devices,
            },
        )
}

fn snapshot() -> impl Strategy<Value = Snapshot> {
    vec(fleet(), 1..4).prop_map(|fleets| Snapshot {
        fleets,
        services: true,
        tags: true,
    })
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
fn expected(s: &Snapshot) -> BTreeMap<&'static str, Vec<Expected>> {
    let mut out: BTreeMap<&'static str, Vec<Expected>> = BTreeMap::new();
    let mut add = |def: &Def, labels: Vec<(&'static str, &str)>, value: f64| {
        let labels = labels
            .into_iter()
            .map(|(k, v)| (k, v.to_string()))
            .collect();
        out.entry(def.name).or_default().push((labels, value));
    };
    let flag = |b: bool| if b { 1.0 } else { 0.0 };
    for f in &s.fleets {
        let id = || vec![("fleet_name", &*f.name), ("fleet_slug", &f.slug)];
        let online = f.devices.iter().filter(|d| d.online).count();
        add(&metrics::DEVICES_ONLINE, id(), online as f64);
        add(&metrics::FLEET_DEVICES, id(), f.devices.len() as f64);
        for (status, n) in counted(KNOWN_STATUSES, f.devices.iter().map(|d| &*d.status)) {
            let labels = [id(), vec![("status", status)]].concat();
            add(&metrics::FLEET_BY_STATUS, labels, n as f64);
        }
        for (state, n) in counted(KNOWN_HEARTBEATS, f.devices.iter().map(|d| &*d.heartbeat)) {
            let labels = [id(), vec![("state", state)]].concat();
            add(&metrics::FLEET_BY_HEARTBEAT, labels, n as f64);
        }
        let on_target = f
            .devices
            .iter()
            .filter(|d| d.on_target_release == Some(true));
        add(&metrics::FLEET_ON_TARGET, id(), on_target.count() as f64);
        let info = vec![
            ("organization", &*f.organization),
            ("device_type", &f.device_type),
            ("target_release", &f.target_release),
        ];
        add(&metrics::FLEET_INFO, [id(), info].concat(), 1.0);
        let count = |keep: fn(&Device) -> bool| f.devices.iter().filter(|d| keep(d)).count();
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
        if s.services {
            let services = f.devices.iter().flat_map(|d| &d.services);
            let failing = services.filter(|s| s.failing).count();
            add(&metrics::FLEET_SERVICES_FAILING, id(), failing as f64);
        }
    }
    for f in &s.fleets {
        let id = || vec![("fleet_name", &*f.name), ("fleet_slug", &f.slug)];
        let statuses = f.devices.iter().map(|d| &*d.update_status);
        for (status, n) in counted(KNOWN_UPDATE_STATUSES, statuses) {
            let labels = [id(), vec![("status", status)]].concat();
            add(&metrics::FLEET_BY_UPDATE_STATUS, labels, n as f64);
        }
    }
    for f in &s.fleets {
        let id = || vec![("fleet_name", &*f.name), ("fleet_slug", &f.slug)];
        let mut instances: BTreeMap<(&str, &str), usize> = BTreeMap::new();
        for service in f.devices.iter().flat_map(|d| &d.services) {
            *instances
                .entry((&service.name, &service.status))
                .or_default() += 1;
        }
        for ((service, status), n) in instances {
            let labels = [id(), vec![("service", service), ("status", status)]].concat();
            add(&metrics::FLEET_SERVICES, labels, n as f64);
        }
    }
    for f in &s.fleets {
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
    for f in &s.fleets {
        for d in &f.devices {
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
    for f in &s.fleets {
        for d in &f.devices {
            let id = || vec![("uuid", &*d.uuid), ("fleet_slug", &f.slug)];
            let status = [id(), vec![("status", &*d.update_status)]].concat();
            add(&metrics::DEVICE_UPDATE_STATUS, status, 1.0);
        }
    }
    for f in &s.fleets {
        for d in &f.devices {
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
            for service in d.services.iter().filter(|_| s.services) {
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
        for f in &s.fleets {
            for d in &f.devices {
                if let Some(v) = value(d) {
                    add(def, vec![("uuid", &*d.uuid), ("fleet_slug", &f.slug)], v);
                }
            }
        }
    }
    for f in &s.fleets {
        for d in &f.devices {
            let names = tag_labels(&d.tags);
            let tagged: Vec<(&'static str, &str)> =
                names.iter().map(|(n, v)| (n.as_str(), *v)).collect();
            let labels = [vec![("uuid", &*d.uuid), ("fleet_slug", &f.slug)], tagged].concat();
            add(&metrics::DEVICE_TAGS, labels, 1.0);
        }
    }
    for f in &s.fleets {
        for d in &f.devices {
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
    for f in &s.fleets {
        for d in &f.devices {
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
fn round_trip(s: &Snapshot) -> Result<(), String> {
    let text = metrics::render_snapshot(s, true);
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
            let fleets: Vec<model::Fleet> = serde_json::from_str(&fleet_body)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            let devices: Vec<model::Device> = serde_json::from_str(&device_body)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            let (snapshot, orphans) = Snapshot::from_api(fleets, devices);
            prop_assert_eq!(orphans, 0);
            let samples = promtext::parse(&metrics::render_snapshot(&snapshot, true));
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
fn hostile_fleet() -> Fleet {
    let all: String = SPECIAL.iter().collect();
    let hostile = |what: &str| Text::from(format!("{what} {all} \\n \\\" \\\\ \"\" \\"));
    Fleet {
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
        devices: vec![Device {
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
            cpu_ratio: Some(f64::NAN),
            temperature_celsius: Some(f64::NEG_INFINITY),
            memory_used_bytes: Some(f64::MIN_POSITIVE / 4.0),
            memory_total_bytes: Some(-0.0),
            storage_total_bytes: Some(f64::MAX),
            update_status: hostile("update status"),
            services: vec![Service {
                name: hostile("service"),
                status: hostile("service status"),
                download_progress: Some(0.5),
                failing: true,
            }],
            tags: vec![("site".into(), hostile("site"))],
            ..Device::default()
        }],
    }
}

/// One snapshot of `PROMTOOL_FLEETS` generated fleets (one promtool run for all of them: a
/// family's HELP and TYPE may not repeat, so they cannot be separate expositions).
fn many_fleets() -> Snapshot {
    let mut runner = props::runner(1);
    let strategy = fleet();
    let mut fleets = vec![hostile_fleet()];
    for _ in 0..PROMTOOL_FLEETS {
        fleets.push(strategy.new_tree(&mut runner).expect("a fleet").current());
    }
    Snapshot {
        fleets,
        services: true,
        tags: true,
    }
}

#[test]
fn promtool_accepts_the_rendered_label_values() {
    if !tools::require(&["promtool"]) {
        return;
    }
    let started = std::time::Instant::now();
    let snapshot = many_fleets();
    let render = |fleets: &[Fleet]| {
        let fleets = fleets.to_vec();
        let snapshot = Snapshot {
            fleets,
            services: true,
            tags: true,
        };
        metrics::render_snapshot(&snapshot, true)
    };
    let text = render(&snapshot.fleets);
    if let Err(report) = prometheus::promtool_check_metrics(text.as_bytes()) {
        // Halve the fleets while a half still fails, to name a culprit.
        let fails = |fleets: &[Fleet]| {
            prometheus::promtool_check_metrics(render(fleets).as_bytes()).is_err()
        };
        let mut culprits = snapshot.fleets.as_slice();
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
        snapshot.fleets.len(),
        snapshot.device_count(),
        text.len(),
        started.elapsed().as_secs_f64()
    );
    // And the parser of these tests reads it all back.
    round_trip(&snapshot).unwrap();
}
