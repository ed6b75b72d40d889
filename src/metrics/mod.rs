//! Every metric name, help text and label lives in this module: the table of families
//! (`families`), the exporter's own health (`health`) and the text writer (`text`). Fleet and
//! device families are written once per crawl, device by device as `render::Rendering` feeds
//! them, straight into gzip streams; the exporter's own families are written at scrape time
//! from `Health`, so they are always current.

mod families;
mod health;
mod text;

pub use families::*;
pub use health::Health;
pub use text::Families;

/// The `Content-Type` of the text exposition format 0.0.4.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, UNIX_EPOCH};

    use super::families::{Slot, DEVICE_FAMILIES, FIRST_DEVICE_FAMILY};
    use super::*;
    use crate::balena::ApiStats;
    use crate::config::SdMode;
    use crate::gzip;
    use crate::render::{testing, Settings};
    use crate::server::ConnStats;
    use crate::snapshot::{Device, Fleet, Service};

    fn health() -> Health {
        let public = Arc::new(ConnStats::default());
        Health::new(Arc::new(ApiStats::default()), vec![("public", public)])
    }

    fn settings(device_metrics: bool) -> Settings {
        Settings {
            device_metrics,
            ..testing::settings(testing::sd_config(SdMode::Lan { port: 80 }))
        }
    }

    /// The fleet and device families of `account`, as the render path writes them.
    fn families(account: &[(Fleet, Vec<Device>)], device_metrics: bool) -> String {
        let rendered = testing::render(&settings(device_metrics), account, 0);
        String::from_utf8(rendered.metrics.text().unwrap()).unwrap()
    }

    #[test]
    fn health_before_any_crawl() {
        let text = health().render();
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
        let names: std::collections::HashSet<_> = FAMILIES.iter().map(|d| d.name).collect();
        assert_eq!(names.len(), FAMILIES.len(), "a family defined twice");
        let fleet = Fleet {
            name: "f".into(),
            slug: "o/f".into(),
            tags: vec![("region".into(), "eu".into())],
            ..Fleet::default()
        };
        let device = Device {
            uuid: "u".into(),
            status: "disconnected".into(),
            on_target_release: Some(true),
            last_connectivity_seconds: Some(1.0),
            cpu_ratio: Some(0.2),
            temperature_celsius: Some(40.0),
            memory_used_bytes: Some(1_048_576.0),
            memory_total_bytes: Some(2_097_152.0),
            storage_used_bytes: Some(1_048_576.0),
            storage_total_bytes: Some(2_097_152.0),
            undervolted: Some(false),
            update_progress: Some(0.5),
            update_status_changed_seconds: Some(2.0),
            heartbeat_changed_seconds: Some(3.0),
            latitude: Some(52.5),
            longitude: Some(13.4),
            services: vec![Service {
                name: "main".into(),
                status: "Downloading".into(),
                download_progress: Some(0.25),
                failing: false,
            }],
            tags: vec![("rack.position".into(), "A/3".into())],
            ..Device::default()
        };
        let health = health().with_dashboard(Some("https://dashboard.example.com".into()));
        let text = families(&[(fleet, vec![device])], true) + &health.render();
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
            ..Fleet::default()
        };
        let device = Device {
            uuid: "u".into(),
            ..Device::default()
        };
        let account = [(fleet, vec![device])];
        assert!(families(&account, true)
            .contains("balena_device_online{uuid=\"u\",fleet_slug=\"o/f\"} 0"));
        let off = families(&account, false);
        assert!(!off.contains("balena_device_"), "{off}");
        assert!(off.contains("balena_fleet_devices{fleet_name=\"f\",fleet_slug=\"o/f\"} 1"));
    }

    #[test]
    fn the_gzip_body_inflates_to_the_text() {
        // Several segments of text, so the compressor is fed many times.
        let devices = (0..3000)
            .map(|i| Device {
                id: i,
                uuid: format!("{i:032x}").into(),
                name: format!("device \"{i}\"\n").into(),
                ..Device::default()
            })
            .collect();
        let fleet = Fleet {
            name: "f".into(),
            slug: "o/f".into(),
            ..Fleet::default()
        };
        let rendered = testing::render(&settings(true), &[(fleet, devices)], 0);
        let gzip = rendered.metrics.gzip().expect("a large body is gzipped");
        let text = gzip.inflate().unwrap();
        assert!(text.len() > 4 * gzip::SEGMENT);
        assert_eq!(rendered.metrics.text().unwrap(), text);
        assert!(std::str::from_utf8(&text)
            .unwrap()
            .contains("device_name=\"device \\\"2999\\\"\\n\""));
    }
}
