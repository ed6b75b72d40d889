//! The shipped on-device Prometheus configuration (`prometheus/`), run by a real
//! `prometheus` with the compose service address replaced by the exporter's loopback one.

mod common;

use common::exporter::{wait_for, Exporter};
use common::fake::{Account, FakeBalena};
use common::prometheus::Prometheus;

/// prometheus.yml, its rules and secrets, as the image lays them out in /etc/prometheus.
fn shipped(exporter: &str, token: &str) -> (String, Vec<(String, String)>) {
    let config = std::fs::read_to_string("prometheus/prometheus.yml").unwrap();
    assert!(
        config.contains("\"exporter:8000\""),
        "the exporter target moved; update this test"
    );
    let config = config.replace("\"exporter:8000\"", &format!("\"{exporter}\""));
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
    // The shipped 60 s interval would make this test slow; the rest stays as shipped.
    let config = config
        .replace("scrape_interval: 60s", "scrape_interval: 1s")
        .replace("evaluation_interval: 60s", "evaluation_interval: 1s")
        .replace("scrape_timeout: 10s", "scrape_timeout: 1s");
    for set in ["scrape_interval: 1s", "evaluation_interval: 1s", "scrape_timeout: 1s"] {
        assert!(config.contains(set), "{set}: the shipped intervals moved; update this test");
    }
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
