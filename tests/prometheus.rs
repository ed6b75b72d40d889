//! Real Prometheus tools against the exporter: `promtool check metrics` on a live scrape, and
//! a `prometheus` server (Debian package `prometheus`, which scripts/test installs) scraping
//! the exporter on loopback, whose query API must report `up` 1 and the API's values.

mod common;

use common::exporter::{wait_for, Exporter};
use common::fake::{Account, FakeBalena};
use common::prometheus::Prometheus;

const TOKEN: &str = "sample-token";

#[tokio::test]
async fn promtool_accepts_a_live_scrape() {
    if !common::tools::require(&["promtool"]) {
        return;
    }
    let fake = FakeBalena::start(Account::sample()).await;
    let exporter = Exporter::start(&fake.url(), TOKEN, &[]).await;
    exporter.wait_ready().await;
    let (_, body) = exporter.get("/metrics").await;
    if let Err(report) = common::prometheus::promtool_check_metrics(body.as_bytes()) {
        panic!("promtool check metrics: {report}");
    }
    assert!(
        body.contains("process_resident_memory_bytes"),
        "process metrics are exported"
    );
    exporter.stop().await.unwrap();
}

#[tokio::test]
async fn a_real_prometheus_scrapes_the_api_values() {
    if !common::tools::require(&["prometheus"]) {
        return;
    }
    let account = Account::sample();
    let fake = FakeBalena::start(account.clone()).await;
    let exporter = Exporter::start(&fake.url(), TOKEN, &[]).await;
    exporter.wait_ready().await;
    let prometheus = Prometheus::start(exporter.url.trim_start_matches("http://"));

    prometheus.wait_up("balena-exporter").await;
    wait_for("balena_devices_online in prometheus", || async {
        prometheus.query("balena_devices_online").await.len() == account.fleets.len()
    })
    .await;
    for (labels, value) in prometheus.query("balena_devices_online").await {
        let slug = labels["fleet_slug"].as_str().unwrap();
        let fleet = account.fleets.iter().find(|f| f.slug == slug).unwrap();
        let online = account
            .devices
            .iter()
            .filter(|d| d.fleet_id == fleet.id && d.is_online)
            .count();
        assert_eq!(value, online as f64, "{slug}");
        assert_eq!(labels["fleet_name"], fleet.app_name.as_str());
    }
    // The device join that dashboards and alerts use works on the scraped series.
    let joined = prometheus
        .query(
            "balena_device_cpu_usage_ratio * on(uuid) group_left(device_name) balena_device_info",
        )
        .await;
    assert_eq!(
        joined.len(),
        account
            .devices
            .iter()
            .filter(|d| d.cpu_usage.is_some())
            .count()
    );
    assert!(joined
        .iter()
        .all(|(labels, _)| labels["device_name"].is_string()));
    exporter.stop().await.unwrap();
}
