//! The shipped on-device Prometheus configuration (`prometheus/`), run by a real
//! `prometheus` with the compose service address replaced by the exporter's loopback one.

mod common;

use common::exporter::{wait_for, Exporter};
use common::fake::{Account, FakeBalena};
use common::prometheus::Prometheus;

#[tokio::test]
async fn shipped_config_scrapes_a_protected_exporter_and_loads_every_rule() {
    if !common::tools::require(&["prometheus"]) {
        return;
    }
    let fake = FakeBalena::start(Account::sample()).await;
    let exporter = Exporter::start(
        &fake.url(),
        "sample-token",
        &[("METRICS_TOKEN", "on-device-t0ken")],
    )
    .await;
    exporter.wait_ready().await;
    let prometheus = Prometheus::shipped(
        exporter.url.trim_start_matches("http://"),
        "on-device-t0ken",
    );

    prometheus.wait_up("balena-exporter").await;
    assert_eq!(prometheus.query("balena_devices_online").await.len(), 3);

    // Every shipped rule loads and evaluates without error.
    let (_, files) = common::prometheus::shipped_files("unused:1", "");
    let expected: usize = files
        .iter()
        .filter(|(p, _)| p.starts_with("rules/"))
        .map(|(_, c)| c.matches("- alert:").count())
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

/// A node exporter killed when dropped.
struct NodeExporter(std::process::Child);

impl Drop for NodeExporter {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
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
    let _node = NodeExporter(
        std::process::Command::new("prometheus-node-exporter")
            .arg(format!("--web.listen-address=127.0.0.2:{port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("prometheus-node-exporter (Debian package; scripts/test installs it)"),
    );
    let mut account = Account::sample();
    for d in &mut account.devices {
        d.ip_address = None;
    }
    account.devices[0].ip_address = Some("127.0.0.2".into());
    let device = account.devices[0].clone();
    let fake = FakeBalena::start(account).await;
    let exporter = Exporter::start(
        &fake.url(),
        "sample-token",
        &[("SD_MODE", "lan"), ("SD_LAN_PORT", &port.to_string())],
    )
    .await;
    exporter.wait_ready().await;
    let prometheus = Prometheus::shipped(exporter.url.trim_start_matches("http://"), "");

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
