//! `/sd` and its file copy, black-box: what each mode and filter selects, 503 before the
//! first crawl, and a failed crawl never emptying the target list.

use crate::common;

use std::collections::BTreeSet;

use common::exporter::{start_ready, wait_for, Exporter};
use common::fake::{Account, FakeBalena, Fault};
use serde_json::Value;

const TOKEN: &str = "sample-token";

async fn sd(exporter: &Exporter) -> (u16, Value) {
    let (status, body) = exporter.get("/sd").await;
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

/// Checks the HTTP SD shape and returns uuid → targets.
fn groups(json: &Value) -> Vec<(String, Vec<String>)> {
    let groups = json.as_array().expect("a JSON list of target groups");
    groups
        .iter()
        .map(|g| {
            let labels = g["labels"].as_object().expect("labels object");
            assert!(
                labels.values().all(Value::is_string),
                "label values are strings: {g}"
            );
            let targets = g["targets"].as_array().expect("targets list");
            (
                labels["uuid"].as_str().unwrap().to_string(),
                targets
                    .iter()
                    .map(|t| t.as_str().unwrap().to_string())
                    .collect(),
            )
        })
        .collect()
}

#[tokio::test]
async fn public_mode_lists_exactly_the_online_devices_with_a_public_url() {
    let account = Account::sample();
    let (_fake, exporter) = start_ready(account.clone(), &[]).await;
    let (status, json) = sd(&exporter).await;
    assert_eq!(status, 200);
    let expected: Vec<_> = account
        .devices
        .iter()
        .filter(|d| d.is_online && d.is_web_accessible)
        .map(|d| {
            (
                d.uuid.clone(),
                vec![format!("{}.balena-devices.com:443", d.uuid)],
            )
        })
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(groups(&json), expected);
    let d = &account.devices[0];
    let labels = &json[0]["labels"];
    assert_eq!(labels["__scheme__"], "https");
    assert_eq!(labels["device_name"], d.device_name.as_str());
    assert_eq!(labels["fleet_slug"], "acme/sensors");
    assert_eq!(
        labels["release"],
        d.running_release.as_ref().unwrap().commit.as_str()
    );
    exporter.stop().await.unwrap();
}

#[tokio::test]
async fn lan_mode_with_filters_and_offline_devices() {
    let account = Account::sample();
    let (_fake, exporter) = start_ready(
        account.clone(),
        &[
            ("SD_MODE", "lan"),
            ("SD_LAN_PORT", "9100"),
            ("SD_FLEETS", "acme/sensors"),
            ("SD_INCLUDE_OFFLINE", "true"),
        ],
    )
    .await;
    let (_, json) = sd(&exporter).await;
    let expected: Vec<_> = account
        .devices
        .iter()
        .filter(|d| d.fleet_id == 1 && d.ip_address.is_some())
        .map(|d| {
            let targets = d
                .ip_address
                .as_deref()
                .unwrap()
                .split_whitespace()
                .map(|a| format!("{a}:9100"))
                .collect();
            (d.uuid.clone(), targets)
        })
        .collect();
    assert_eq!(groups(&json), expected);
    assert!(
        expected.iter().any(|(_, t)| t.len() == 2),
        "a device with two addresses is one group of two"
    );
    assert!(
        account
            .devices
            .iter()
            .any(|d| d.fleet_id == 1 && !d.is_online),
        "an offline device is included"
    );
    assert_eq!(json[0]["labels"]["__scheme__"], "http");
    exporter.stop().await.unwrap();
}

#[tokio::test]
async fn before_the_first_crawl_503_and_nothing_to_discover_is_an_empty_list() {
    let fake = FakeBalena::start(Account::sample()).await;
    let rejected = Exporter::start(&fake.url(), "wrong-token", &[]).await;
    rejected.wait_body("/-/ready", "no successful crawl").await;
    assert_eq!(rejected.get("/sd").await.0, 503);
    rejected.stop().await.unwrap();

    let none = Exporter::start(&fake.url(), TOKEN, &[("SD_FLEETS", "nobody/nothing")]).await;
    none.wait_ready().await;
    let (status, body) = none.get("/sd").await;
    assert_eq!(status, 200);
    let groups: Vec<serde_json::Value> = serde_json::from_str(&body).expect("a JSON list");
    assert!(groups.is_empty(), "{body}");
    none.stop().await.unwrap();
}

#[tokio::test]
async fn a_failed_crawl_never_empties_the_list_or_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("targets.json");
    let (fake, exporter) = start_ready(
        Account::sample(),
        &[("SD_MODE", "lan"), ("SD_FILE", file.to_str().unwrap())],
    )
    .await;
    let (_, good) = exporter.get("/sd").await;
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        good,
        "the file holds what /sd serves"
    );
    let before: BTreeSet<_> = groups(&serde_json::from_str(&good).unwrap())
        .into_iter()
        .collect();
    assert!(before.len() >= 5);

    for fault in [Fault::Unavailable, Fault::Malformed, Fault::Truncated] {
        fake.set_fault(Some(fault.clone()));
        exporter
            .wait_metrics("a failed crawl", |s| {
                common::promtext::value(s, "balena_up", &[]) == Some(0.0)
            })
            .await;
        assert_eq!(exporter.get("/sd").await, (200, good.clone()), "{fault:?}");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), good, "{fault:?}");
        fake.set_fault(None);
        exporter
            .wait_metrics("recovery", |s| {
                common::promtext::value(s, "balena_up", &[]) == Some(1.0)
            })
            .await;
    }

    // A device that leaves the fleet leaves the list and the file.
    let mut smaller = Account::sample();
    smaller.devices.remove(0);
    fake.set_account(smaller);
    wait_for("the device to leave /sd", || async {
        exporter.get("/sd").await.1 != good
    })
    .await;
    let (_, now) = exporter.get("/sd").await;
    assert_eq!(
        groups(&serde_json::from_str(&now).unwrap()).len(),
        before.len() - 1
    );
    wait_for("the file to follow", || async {
        std::fs::read_to_string(&file).unwrap() == exporter.get("/sd").await.1
    })
    .await;
    exporter.stop().await.unwrap();
}

#[tokio::test]
async fn sd_is_protected_like_metrics() {
    let (_fake, exporter) = start_ready(
        Account::sample(),
        &[("METRICS_TOKEN", "t0k-0123456789abcdef")],
    )
    .await;
    assert_eq!(exporter.get("/sd").await.0, 401);
    let r = reqwest::Client::new()
        .get(format!("{}/sd", exporter.url))
        .bearer_auth("t0k-0123456789abcdef")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    exporter.stop().await.unwrap();
}
