//! The shipped on-device Prometheus configuration (`prometheus/`), run by a real
//! `prometheus` with the compose service address replaced by the exporter's loopback one.

mod common;

use common::exporter::{wait_for, Exporter};
use common::fake::{Account, FakeBalena};
use common::prometheus::Prometheus;

/// prometheus.yml, its rules and secrets, as the image lays them out in /etc/prometheus,
/// with the compose address of the exporter replaced by `exporter` and 1 s intervals.
fn shipped(exporter: &str, token: &str) -> (String, Vec<(String, String)>) {
    let mut config = std::fs::read_to_string("prometheus/prometheus.yml").unwrap();
    let replacements = [
        ("\"exporter:8000\"".to_string(), format!("\"{exporter}\"")),
        (
            "http://exporter:8000/sd".to_string(),
            format!("http://{exporter}/sd"),
        ),
        (
            "scrape_interval: 60s".to_string(),
            "scrape_interval: 1s".to_string(),
        ),
        (
            "evaluation_interval: 60s".to_string(),
            "evaluation_interval: 1s".to_string(),
        ),
        (
            "refresh_interval: 60s".to_string(),
            "refresh_interval: 1s".to_string(),
        ),
        (
            "scrape_timeout: 10s".to_string(),
            "scrape_timeout: 1s".to_string(),
        ),
    ];
    for (from, to) in replacements {
        assert!(
            config.contains(&from),
            "{from} moved in prometheus.yml; update this test"
        );
        config = config.replace(&from, &to);
    }
    let mut files = vec![("secrets/metrics_token".to_string(), token.to_string())];
    for entry in std::fs::read_dir("prometheus/rules").unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yml") {
            let name = path.file_name().unwrap().to_string_lossy();
            files.push((
                format!("rules/{name}"),
                std::fs::read_to_string(&path).unwrap(),
            ));
        }
    }
    (config, files)
}

#[tokio::test]
async fn shipped_config_scrapes_a_protected_exporter_and_loads_every_rule() {
    let fake = FakeBalena::start(Account::sample()).await;
    let exporter = Exporter::start(
        &fake.url(),
        "sample-token",
        &[("METRICS_TOKEN", "on-device-t0ken")],
    )
    .await;
    exporter.wait_ready().await;
    let (config, files) = shipped(
        exporter.url.trim_start_matches("http://"),
        "on-device-t0ken",
    );
    let files: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .collect();
    let prometheus = Prometheus::with_config(&config, &files);

    wait_for("the exporter scraped with its token (up 1)", || async {
        prometheus
            .query("up{job=\"balena-exporter\"}")
            .await
            .iter()
            .any(|(_, v)| *v == 1.0)
    })
    .await;
    assert_eq!(prometheus.query("balena_devices_online").await.len(), 3);

    // Every shipped rule loads and evaluates without error.
    let expected = files
        .iter()
        .filter(|(p, _)| p.starts_with("rules/"))
        .map(|(_, c)| c.matches("- alert:").count())
        .sum::<usize>();
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
    let (config, files) = shipped(exporter.url.trim_start_matches("http://"), "");
    let files: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .collect();
    let prometheus = Prometheus::with_config(&config, &files);

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
    assert_eq!(labels["instance"], device.device_name.as_str());
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
