//! The shipped on-device Prometheus configuration (`prometheus/`), run by a real
//! `prometheus` with the compose service address replaced by the exporter's loopback one.

use crate::common;

use common::child::quiet;
use common::exporter::{start_ready, wait_for, Exporter};
use common::fake::{Account, FakeBalena};
use common::prometheus::Prometheus;

/// The exporter's `environment:` in docker-compose.yml, as (name, value).
fn compose_exporter_environment() -> Vec<(String, String)> {
    let compose = std::fs::read_to_string("docker-compose.yml").unwrap();
    let mut lines = compose
        .lines()
        .skip_while(|l| *l != "  exporter:")
        .skip(1)
        .take_while(|l| !l.starts_with("  ") || l.starts_with("    ") || l.trim().is_empty())
        .skip_while(|l| l.trim() != "environment:")
        .skip(1);
    let mut vars = Vec::new();
    while let Some(line) = lines.next().filter(|l| l.starts_with("      ")) {
        if let Some((name, value)) = line.trim().split_once(": ") {
            vars.push((name.to_string(), value.trim_matches('"').to_string()));
        }
    }
    assert!(
        !vars.is_empty(),
        "no environment for the exporter in docker-compose.yml"
    );
    vars
}

/// A fresh deploy with only BALENA_TOKEN set (as the README says): the public port serves no
/// fleet data, and the on-device Prometheus still scrapes everything through the internal port,
/// with every shipped rule loaded. (Grafana's side, no admin/admin, is scripts/check-grafana.)
#[tokio::test]
async fn a_deploy_with_only_the_token_is_closed_outside_and_scraped_inside() {
    if !common::tools::require(&["prometheus"]) {
        return;
    }
    let account = Account::sample();
    let fake = FakeBalena::start(account.clone()).await;
    let environment = compose_exporter_environment();
    assert!(
        environment.iter().any(|(k, _)| k == "INTERNAL_PORT"),
        "the compose file gives the on-device Prometheus an internal port"
    );
    let mut vars: Vec<(&str, &str)> = environment
        .iter()
        .filter(|(k, _)| k != "GRAFANA_URL" && k != "ALERTMANAGER_URL")
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    // Nothing else: the harness would open the port for other tests.
    vars.push(("PUBLIC_METRICS", "false"));
    let exporter = Exporter::ready_on(&fake, &vars).await;
    for path in ["/metrics", "/sd"] {
        assert_eq!(exporter.get(path).await.0, 403, "{path} from outside");
    }
    let (_, page) = exporter.get("/").await;
    assert!(!page.contains("acme/sensors"), "{page}");

    let internal = exporter.internal_url.clone().unwrap();
    let prometheus = Prometheus::shipped(internal.trim_start_matches("http://"));
    prometheus.wait_up("balena-exporter").await;
    wait_for("the API's values in prometheus", || async {
        prometheus.query("balena_devices_online").await.len() == account.fleets.len()
    })
    .await;

    // Every shipped rule, alerting and recording, loads and evaluates without error.
    let (_, files) = common::prometheus::shipped_files("unused:1");
    let expected: usize = files
        .iter()
        .filter(|(p, _)| p.starts_with("rules/"))
        .map(|(_, c)| c.matches("- alert:").count() + c.matches("- record:").count())
        .sum();
    wait_for("every rule evaluated", || async {
        let rules = prometheus.api("/api/v1/rules").await;
        let all: Vec<_> = rules["data"]["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_array().unwrap().clone())
            .collect();
        all.len() == expected && all.iter().all(|r| r["health"] == "ok")
    })
    .await;
}

#[tokio::test]
async fn shipped_config_discovers_and_scrapes_a_device_through_sd() {
    if !common::tools::require(&["prometheus", "prometheus-node-exporter"]) {
        return;
    }
    // The stand-in device: Debian's node exporter on 127.0.0.2, as a device on the LAN.
    let port = std::net::TcpListener::bind("127.0.0.2:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _node = quiet(
        std::process::Command::new("prometheus-node-exporter")
            .arg(format!("--web.listen-address=127.0.0.2:{port}")),
        "prometheus-node-exporter (Debian package; scripts/test installs it)",
    );
    let mut account = Account::sample();
    for d in &mut account.devices {
        d.ip_address = None;
    }
    account.devices[0].ip_address = Some("127.0.0.2".into());
    let device = account.devices[0].clone();
    let (_fake, exporter) = start_ready(
        account,
        &[("SD_MODE", "lan"), ("SD_LAN_PORT", &port.to_string())],
    )
    .await;
    let prometheus = Prometheus::shipped(exporter.url.trim_start_matches("http://"));

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !prometheus
        .query("up{job=\"balena-devices\"}")
        .await
        .iter()
        .any(|(_, v)| *v == 1.0)
    {
        if std::time::Instant::now() > deadline {
            let targets = prometheus.api("/api/v1/targets").await;
            panic!("no device scraped with up 1; targets: {targets:#}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let targets = prometheus.api("/api/v1/targets").await;
    let devices: Vec<_> = targets["data"]["activeTargets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["labels"]["job"] == "balena-devices")
        .cloned()
        .collect();
    assert_eq!(devices.len(), 1, "{devices:?}");
    let labels = &devices[0]["labels"];
    assert_eq!(labels["uuid"], device.uuid.as_str());
    assert_eq!(labels["instance"], format!("127.0.0.2:{port}").as_str());
    assert_eq!(labels["device_name"], device.device_name.as_str());
    assert_eq!(labels["fleet_slug"], "acme/sensors");
    assert_eq!(labels["fleet_name"], "sensors");
    assert_eq!(labels["device_type"], device.device_type.as_str());
    assert_eq!(
        devices[0]["scrapeUrl"],
        format!("http://127.0.0.2:{port}/metrics").as_str()
    );
    // node_exporter's own series carry the device labels.
    let node = prometheus
        .query(&format!(
            "node_exporter_build_info{{uuid=\"{}\"}}",
            device.uuid
        ))
        .await;
    assert_eq!(node.len(), 1);
}
