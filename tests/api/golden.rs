//! Golden files: what `/metrics` (its fleet and device families), `/sd` and the status page
//! (its crawl part) serve for fixed API pages (tests/golden/*.json: fleets, services,
//! releases, devices, as the server answers them), fed through the production render path,
//! byte for byte; and `promtool check metrics` on the metrics. `UPDATE_GOLDEN=1 cargo test
//! --test api golden::` rewrites the files; review the diff before committing it.
//!
//! The pages hold two fleets of the same name in two organizations, hostile names, tag keys
//! that differ only by case, services, an unknown status, a device that has reported nothing,
//! a device of a fleet not watched and a fleet without devices.

use crate::common;

use std::time::{Duration, UNIX_EPOCH};

use balena_exporter::config::Config;
use balena_exporter::render::{Pages, Rendered, Settings};
use common::promtext;

const GOLDEN: &str = "tests/golden/metrics.prom";
const GOLDEN_SD: &str = "tests/golden/sd.json";
const GOLDEN_STATUS: &str = "tests/golden/status.html";

fn page(name: &str) -> Vec<u8> {
    std::fs::read(format!("tests/golden/{name}.json")).unwrap()
}

/// The pages rendered as a crawl of every fleet, with services and tags, renders them.
fn rendered() -> Rendered {
    let pages = Pages {
        fleets: vec![page("fleets")],
        services: vec![page("services")],
        releases: vec![page("releases")],
        devices: vec![page("devices")],
    };
    // As the exporter is configured: every fleet, services and tags, `lan` discovery with
    // offline devices too, balenaCloud's dashboard.
    let config = Config::from_vars(
        [
            ("BALENA_TOKEN", "t"),
            ("SD_MODE", "lan"),
            ("SD_INCLUDE_OFFLINE", "true"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string())),
    )
    .unwrap();
    let (settings, crawl) = (Settings::new(&config), config.crawl);
    let now = UNIX_EPOCH + Duration::from_secs(1_795_300_000);
    let rendered = pages.render(&settings, &crawl, now).unwrap();
    // An incremental crawl renders the devices it keeps between crawls: the same bytes.
    let kept = pages.render_kept(&settings, &crawl, now).unwrap();
    for (full, kept) in [(&rendered.metrics, &kept.metrics), (&rendered.sd, &kept.sd)] {
        assert_eq!(full.text().unwrap(), kept.text().unwrap());
    }
    assert_eq!(rendered.fleets_html, kept.fleets_html);
    assert_eq!(
        (rendered.devices, rendered.orphans),
        (kept.devices, kept.orphans)
    );
    rendered
}

/// What `/metrics` serves before the exporter's own families.
fn text() -> String {
    String::from_utf8(rendered().metrics.text().unwrap()).unwrap()
}

/// `text` is `file`'s content (or, with `UPDATE_GOLDEN`, becomes it).
fn matches_golden(file: &str, text: &str) {
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(file, text).unwrap();
    }
    let golden = std::fs::read_to_string(file).unwrap();
    assert_eq!(
        text, golden,
        "production rendering differs from {file}; UPDATE_GOLDEN=1 rewrites it"
    );
}

#[test]
fn rendering_matches_the_golden_file() {
    matches_golden(GOLDEN, &text());
}

#[test]
fn sd_and_status_page_match_their_golden_files() {
    let rendered = rendered();
    let sd = String::from_utf8(rendered.sd.text().unwrap()).unwrap();
    matches_golden(GOLDEN_SD, &sd);
    matches_golden(GOLDEN_STATUS, &rendered.fleets_html);
}

#[test]
fn golden_file_passes_promtool_check_metrics() {
    if !common::tools::require(&["promtool"]) {
        return;
    }
    let golden = std::fs::read(GOLDEN).unwrap();
    if let Err(report) = common::tools::promtool_check_metrics(&golden) {
        panic!("promtool: {report}");
    }
}

#[test]
fn labels_round_trip_and_same_named_fleets_stay_apart() {
    let rendered = rendered();
    assert_eq!(
        (rendered.fleets, rendered.devices, rendered.orphans),
        (3, 3, 1)
    );
    let samples = promtext::parse(&text());
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
