//! Golden file: the fleet and device families rendered for a fixed snapshot, byte for byte,
//! and `promtool check metrics` on them. `UPDATE_GOLDEN=1 cargo test --test golden` rewrites
//! the file; review the diff before committing it.

mod common;

use balena_exporter::metrics;
use balena_exporter::snapshot::{Device, Fleet, Service, Snapshot};
use common::promtext;

const GOLDEN: &str = "tests/golden/snapshot.prom";

/// Two fleets of the same name in two organizations, hostile names, an unknown status, a
/// device that has reported nothing, and a fleet without devices.
fn snapshot() -> Snapshot {
    let reported = Device {
        id: 1,
        uuid: "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa01".into(),
        name: "pi \"kitchen\" \\ 1\nsecond line".into(),
        device_type: "raspberrypi4-64".into(),
        online: true,
        status: "operational".into(),
        heartbeat: "online".into(),
        os_version: "balenaOS 6.0.13".into(),
        os_variant: "prod".into(),
        supervisor_version: "16.7.4".into(),
        release: "0123456789abcdef0123456789abcdef".into(),
        on_target_release: Some(true),
        last_connectivity_seconds: Some(1_795_292_830.768),
        cpu_ratio: Some(0.4),
        temperature_celsius: Some(55.0),
        memory_used_bytes: Some(104_857_600.0),
        memory_total_bytes: Some(3_984_588_800.0),
        storage_used_bytes: Some(4_194_304_000.0),
        storage_total_bytes: Some(30_408_704_000.0),
        undervolted: Some(false),
        web_accessible: true,
        addresses: vec!["192.168.1.10".into()],
        update_status: "downloading".into(),
        update_progress: Some(0.8),
        update_status_changed_seconds: Some(1_795_292_000.5),
        heartbeat_changed_seconds: Some(1_795_200_000.0),
        latitude: Some(48.1372),
        longitude: Some(11.5756),
        services: vec![
            Service {
                name: "main".into(),
                status: "Running".into(),
                download_progress: Some(0.6),
                failing: false,
            },
            Service {
                name: "sensor \"reader\"".into(),
                status: "Handing over".into(),
                download_progress: None,
                failing: false,
            },
        ],
        tags: vec![
            ("Env".into(), "prod".into()),
            ("customer".into(), "O'Brien & Söhne \"GmbH\"".into()),
            ("env".into(), "staging\nline".into()),
            ("rack.position".into(), "A/3".into()),
        ],
    };
    let silent = Device {
        id: 2,
        uuid: "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa02".into(),
        name: "Küche-Gerät ☃".into(),
        device_type: "raspberrypi4-64".into(),
        status: "a-status-from-the-future".into(),
        heartbeat: "unknown".into(),
        on_target_release: Some(false),
        update_status: "none".into(),
        services: vec![Service {
            name: "main".into(),
            status: "exited".into(),
            download_progress: None,
            failing: true,
        }],
        ..Device::default()
    };
    let other = Device {
        id: 3,
        uuid: "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbb01".into(),
        name: "other".into(),
        device_type: "intel-nuc".into(),
        status: "disconnected".into(),
        heartbeat: "offline".into(),
        undervolted: Some(true),
        update_status: "done".into(),
        heartbeat_changed_seconds: Some(1_795_100_000.0),
        ..Device::default()
    };
    Snapshot {
        fleets: vec![
            Fleet {
                id: 1,
                name: "kiosks".into(),
                slug: "acme/kiosks".into(),
                organization: "acme".into(),
                device_type: "raspberrypi4-64".into(),
                target_release: "0123456789abcdef0123456789abcdef".into(),
                tags: vec![("region".into(), "eu-west".into())],
                devices: vec![reported, silent],
            },
            Fleet {
                id: 7,
                name: "empty \"fleet\"".into(),
                slug: "acme/empty".into(),
                organization: "acme".into(),
                device_type: "raspberrypi3".into(),
                target_release: "".into(),
                tags: vec![],
                devices: vec![],
            },
            Fleet {
                id: 3,
                name: "kiosks".into(),
                slug: "globex/kiosks".into(),
                organization: "globex".into(),
                device_type: "intel-nuc".into(),
                target_release: "".into(),
                tags: vec![
                    ("Region".into(), "ap".into()),
                    ("region".into(), "東京".into()),
                ],
                devices: vec![other],
            },
        ],
        services: true,
        tags: true,
    }
}

#[test]
fn rendering_matches_the_golden_file() {
    let text = metrics::render_snapshot(&snapshot(), true);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(GOLDEN, &text).unwrap();
    }
    let golden = std::fs::read_to_string(GOLDEN).unwrap();
    assert_eq!(
        text, golden,
        "rendering differs from {GOLDEN}; UPDATE_GOLDEN=1 rewrites it"
    );
}

#[test]
fn golden_file_passes_promtool_check_metrics() {
    if !common::tools::require(&["promtool"]) {
        return;
    }
    let golden = std::fs::read(GOLDEN).unwrap();
    if let Err(report) = common::prometheus::promtool_check_metrics(&golden) {
        panic!("promtool: {report}");
    }
}

#[test]
fn labels_round_trip_and_same_named_fleets_stay_apart() {
    let samples = promtext::parse(&metrics::render_snapshot(&snapshot(), true));
    let online = promtext::family(&samples, "balena_devices_online");
    assert_eq!(online.len(), 3);
    assert_eq!(
        promtext::value(
            &samples,
            "balena_devices_online",
            &[("fleet_slug", "acme/kiosks")]
        ),
        Some(1.0)
    );
    assert_eq!(
        promtext::value(
            &samples,
            "balena_devices_online",
            &[("fleet_slug", "globex/kiosks")]
        ),
        Some(0.0)
    );
    assert_eq!(
        promtext::value(
            &samples,
            "balena_fleet_devices",
            &[("fleet_slug", "acme/empty")]
        ),
        Some(0.0)
    );
    let info = promtext::family(&samples, "balena_device_info");
    let names: Vec<_> = info.iter().map(|s| s.label("device_name")).collect();
    assert_eq!(
        names,
        ["pi \"kitchen\" \\ 1\nsecond line", "Küche-Gerät ☃", "other"]
    );
    assert_eq!(
        promtext::value(
            &samples,
            "balena_fleet_devices_by_status",
            &[
                ("fleet_slug", "acme/kiosks"),
                ("status", "a-status-from-the-future")
            ]
        ),
        Some(1.0)
    );
    // A device that has reported nothing has no hardware series at all.
    for family in [
        "balena_device_cpu_usage_ratio",
        "balena_device_memory_total_bytes",
    ] {
        assert_eq!(promtext::family(&samples, family).len(), 1, "{family}");
    }
}
