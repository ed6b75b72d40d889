//! Real Prometheus tools against the exporter: `promtool check metrics` on a live scrape, a
//! `prometheus` server (Debian package `prometheus`, which scripts/test installs) scraping
//! the exporter on loopback, whose query API must report `up` 1 and the API's values, and the
//! shipped rules on a healthy, realistic account, where no alert may even be pending.

use crate::common;

use common::exporter::{start_ready, wait_for};
use common::fake::Account;
use common::generate;
use common::prometheus::{test_addresses, Prometheus};

#[tokio::test]
async fn promtool_accepts_a_live_scrape() {
    if !common::tools::require(&["promtool"]) {
        return;
    }
    let (_fake, exporter) = start_ready(Account::sample(), &[]).await;
    let (_, body) = exporter.get("/metrics").await;
    if let Err(report) = common::tools::promtool_check_metrics(body.as_bytes()) {
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
    let (_fake, exporter) = start_ready(account.clone(), &[]).await;
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
            .devices_of(fleet.id)
            .iter()
            .filter(|d| d.is_online)
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

/// The false pages issue 18 found, end to end: a generated account with deactivated and
/// preregistered devices, devices offline since before the monitor (heartbeat change null), a
/// VPN off on purpose, a `done` update under an `updating` status and an exited one-shot
/// service, scraped by a real Prometheus that runs the shipped configuration and rules as its
/// entrypoint renders them. Every alerting rule must stay inactive: its expression returns no
/// series (pending would mean it does). The account's realism is checked on the way, from
/// the recording rules, so the test cannot pass on an empty scrape.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_realistic_account_pages_nobody() {
    if !common::tools::require(&["prometheus"]) {
        return;
    }
    let account = generate::healthy(3, 24);
    let (_fake, exporter) = start_ready(account.clone(), &[]).await;
    let address = exporter.url.trim_start_matches("http://").to_string();
    let prometheus = Prometheus::from_entrypoint(&[], &[], |name, text, own| {
        if name == "prometheus.yml" {
            test_addresses(text, &address, "127.0.0.1:9", own)
        } else {
            text
        }
    });
    prometheus.wait_up("balena-exporter").await;
    prometheus.wait_up("prometheus").await;
    let count = |rule: &'static str| {
        let prometheus = &prometheus;
        async move {
            let rows = prometheus.query(&format!("sum({rule})")).await;
            rows.first().map(|(_, v)| *v)
        }
    };
    wait_for("the recording rules and the history's start", || async {
        count("fleet:balena_devices_expected_online:count")
            .await
            .is_some()
            && !prometheus
                .query("prometheus_tsdb_lowest_timestamp_seconds < 1e12")
                .await
                .is_empty()
    })
    .await;
    // 72 devices: per fleet 2 deactivated and 2 preregistered, 2 offline since October.
    let devices = account.devices.len() as f64;
    assert_eq!(count("balena_fleet_devices").await, Some(devices));
    assert_eq!(
        count("fleet:balena_devices_expected_online:count").await,
        Some(devices - 12.0)
    );
    assert_eq!(count("fleet:balena_devices_offline:count").await, Some(6.0));
    assert_eq!(
        count("fleet:balena_devices_updating:count").await,
        Some(0.0)
    );
    assert_eq!(
        count("fleet:balena_services_failing:count").await,
        Some(0.0)
    );
    let exited = prometheus
        .query("count(balena_service_status{status=\"exited\"} == 1)")
        .await;
    assert!(
        exited.first().is_some_and(|(_, n)| *n >= 60.0),
        "the one-shot service exited on the devices that report: {exited:?}"
    );
    // A few evaluations of every rule (1 s apart) on these samples.
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    let rules = prometheus.api("/api/v1/rules?type=alert").await;
    let alerting: Vec<&serde_json::Value> = rules["data"]["groups"]
        .as_array()
        .expect("rule groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().into_iter().flatten())
        .collect();
    assert!(alerting.len() >= 14, "every alert rule loaded: {rules}");
    let paging: Vec<String> = alerting
        .iter()
        .filter(|r| r["state"] != "inactive" || r["health"] != "ok")
        .map(|r| {
            format!(
                "{} ({}, {}): {}",
                r["name"], r["state"], r["health"], r["alerts"]
            )
        })
        .collect();
    assert!(
        paging.is_empty(),
        "alerts on a healthy account: {paging:#?}"
    );
    exporter.stop().await.unwrap();
}
