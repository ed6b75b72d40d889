//! Alerts that reach people, end to end with real parts: the fake API, the exporter, Debian's
//! `prometheus` started by the image's entrypoint with the shipped rules (their `for:` cut to
//! 1 s), Debian's `prometheus-alertmanager` started by its entrypoint with a webhook, and a
//! webhook receiver here. Devices of two fleets go offline: exactly one notification per
//! fleet, naming its devices; a deactivated device and one offline since before the monitor
//! started never page. Then the token is rejected: one monitor alert arrives, and a device
//! alert that fires at the same time is held back.

use crate::common;

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;
use warp::Filter;

use common::child::quiet;
use common::exporter::{start_ready, wait_200, wait_for};
use common::fake::{Account, Device, Fleet};
use common::net::free_port;
use common::prometheus::{test_addresses, Prometheus};

const TOKEN: &str = "alerting-token";
/// Long enough for the monitor alert to arrive before a device alert's group is sent.
const GROUP_WAIT: &str = "15s";

/// Two fleets: kiosks k1-k4, k-spare (deactivated later), k-old (offline since 2020),
/// k-quiet and k-unknown (offline since before the monitor started, their heartbeat change
/// time null: only the last connectivity event says when) and k-new (preregistered, never
/// connected); sensors s1-s3.
fn account() -> Account {
    let fleet = |id: u64, slug: &str| Fleet {
        id,
        app_name: slug.split('/').nth(1).unwrap().into(),
        slug: slug.into(),
        organization: slug.split('/').next().unwrap().into(),
        device_type: "raspberrypi4-64".into(),
        is_of__class: "fleet".into(),
        ..Fleet::default()
    };
    let device = |id: u64, name: &str, fleet_id: u64| Device {
        id,
        uuid: format!("{:032x}", 0xa1e7_0000 + id),
        device_name: name.into(),
        fleet_id,
        device_type: "raspberrypi4-64".into(),
        is_online: true,
        api_heartbeat_state: "online".into(),
        overall_status: "operational".into(),
        heartbeat_changed_at: Some("2026-11-01T00:00:00.000Z".into()),
        ..Device::default()
    };
    // Ids 1-12 in this order; kiosks (k...) in fleet 1, sensors (s...) in fleet 2.
    let names = "k1 k2 k3 k4 k-spare k-old s1 s2 s3 k-quiet k-unknown k-new".split(' ');
    let mut devices: Vec<Device> = (1..)
        .zip(names)
        .map(|(id, name)| device(id, name, if name.starts_with('s') { 2 } else { 1 }))
        .collect();
    for d in &mut devices[9..11] {
        d.is_online = false;
        d.overall_status = "disconnected".into();
        d.heartbeat_changed_at = None;
        d.last_connectivity_event = Some("2026-10-14T09:30:00.000Z".into());
    }
    devices[9].api_heartbeat_state = "offline".into();
    devices[10].api_heartbeat_state = "unknown".into();
    let new = &mut devices[11];
    new.is_online = false;
    new.api_heartbeat_state = "unknown".into();
    new.overall_status = "configuring".into();
    new.heartbeat_changed_at = None;
    let old = &mut devices[5];
    old.is_online = false;
    old.api_heartbeat_state = "offline".into();
    old.overall_status = "disconnected".into();
    old.heartbeat_changed_at = Some("2020-01-01T00:00:00.000Z".into());
    Account {
        tokens: vec![TOKEN.into()],
        fleets: vec![fleet(1, "acme/kiosks"), fleet(2, "globex/sensors")],
        devices,
        ..Account::default()
    }
}

fn go_offline(d: &mut Device, now: &str) {
    d.is_online = false;
    d.api_heartbeat_state = "offline".into();
    d.overall_status = "disconnected".into();
    d.heartbeat_changed_at = Some(now.into());
}

/// Notifications the webhook received, in order.
type Inbox = Arc<Mutex<Vec<Value>>>;

async fn receiver() -> (String, Inbox) {
    let inbox: Inbox = Arc::default();
    let keep = inbox.clone();
    let route = warp::post()
        .and(warp::body::json())
        .map(move |body: Value| {
            keep.lock().unwrap().push(body);
            warp::reply()
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(warp::serve(route).incoming(listener).run());
    (url, inbox)
}

/// Firing notifications of `alertname`: (fleet_slug of the group, device names listed).
fn notified(inbox: &Inbox, alertname: &str) -> Vec<(String, Vec<String>)> {
    inbox
        .lock()
        .unwrap()
        .iter()
        .filter(|n| n["status"] == "firing" && n["groupLabels"]["alertname"] == alertname)
        .map(|n| {
            let mut names: Vec<String> = n["alerts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| {
                    a["labels"]["device_name"]
                        .as_str()
                        .unwrap_or("")
                        .to_string()
                })
                .collect();
            names.sort();
            (
                n["groupLabels"]["fleet_slug"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
                names,
            )
        })
        .collect()
}

/// Every `for:` of the shipped rules cut to 1 s, so that the test takes seconds.
fn fast_rules(name: &str, text: String) -> String {
    if name == "prometheus.yml" {
        return text;
    }
    text.lines()
        .map(|line| match line.find("for: ") {
            Some(at) if line.trim_start().starts_with("for: ") => {
                let marker = if line.contains("# DEVICE_OFFLINE_FOR") {
                    " # DEVICE_OFFLINE_FOR"
                } else {
                    ""
                };
                format!("{}for: 1s{marker}", &line[..at])
            }
            _ => line.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_notification_per_fleet_and_none_while_the_monitor_is_blind() {
    if !common::tools::require(&["prometheus", "prometheus-alertmanager"]) {
        return;
    }
    let mut account = account();
    let (fake, exporter) = start_ready(account.clone(), &[("INTERNAL_PORT", "1")]).await;
    let internal = exporter.internal_url.clone().unwrap();
    let (webhook, inbox) = receiver().await;

    // Alertmanager, as its image starts it, with the webhook and test timings.
    let dir = tempfile::tempdir().unwrap();
    let am_port = free_port();
    let am = format!("127.0.0.1:{am_port}");
    let templates = std::fs::canonicalize("alertmanager/templates").unwrap();
    let _alertmanager = quiet(
        Command::new("sh")
            .arg("alertmanager/entrypoint.sh")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs([
                (
                    "ALERTMANAGER_CONFIG_DIR",
                    dir.path().join("am").to_str().unwrap(),
                ),
                (
                    "ALERTMANAGER_STORAGE_DIR",
                    dir.path().join("am-data").to_str().unwrap(),
                ),
                ("ALERTMANAGER_TEMPLATES_DIR", templates.to_str().unwrap()),
                ("ALERTMANAGER_LISTEN_ADDRESS", &am),
                ("ALERTMANAGER_BIN", "prometheus-alertmanager"),
                ("PUBLIC_URL", &format!("http://{am}")),
                ("ALERT_WEBHOOK_URL", &webhook),
                ("ALERT_GROUP_WAIT", GROUP_WAIT),
                ("ALERT_GROUP_INTERVAL", "1h"),
                ("ALERT_REPEAT_INTERVAL", "2h"),
            ]),
        "alertmanager/entrypoint.sh",
    );
    let http = reqwest::Client::new();
    wait_200(&http, &format!("http://{am}/alertmanager/-/ready")).await;

    // Prometheus, as its image starts it, scraping the exporter's internal port.
    let exporter_address = internal.trim_start_matches("http://").to_string();
    let prometheus = Prometheus::from_entrypoint(
        &[
            ("DEVICE_OFFLINE_FOR", "1s"),
            ("PUBLIC_URL", "https://monitor.example"),
        ],
        &[],
        |name, text, own| {
            let text = fast_rules(name, text);
            if name == "prometheus.yml" {
                test_addresses(text, &exporter_address, &am, own)
            } else {
                text
            }
        },
    );
    prometheus.wait_up("balena-exporter").await;
    prometheus.wait_up("prometheus").await;
    // History has started (the lowest stored timestamp is a real time): k-old went offline
    // before it, so it stays silent.
    wait_for("stored samples", || async {
        prometheus
            .query("prometheus_tsdb_lowest_timestamp_seconds < 1e12")
            .await
            .len()
            == 1
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        notified(&inbox, "DeviceOffline").is_empty(),
        "nothing is offline yet"
    );

    // Five devices of two fleets go offline together, and the spare is deactivated offline.
    let now = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
    for name in ["k1", "k2", "k3", "s1", "s2", "k-spare"] {
        let d = account
            .devices
            .iter_mut()
            .find(|d| d.device_name == name)
            .unwrap();
        go_offline(d, &now);
    }
    let spare = account
        .devices
        .iter_mut()
        .find(|d| d.device_name == "k-spare")
        .unwrap();
    spare.overall_status = "inactive".into();
    fake.set_account(account.clone());

    let deadline = Instant::now() + Duration::from_secs(60);
    while notified(&inbox, "DeviceOffline").len() < 2 {
        assert!(
            Instant::now() < deadline,
            "no notification per fleet; received: {:#?}",
            inbox.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let mut per_fleet = notified(&inbox, "DeviceOffline");
    per_fleet.sort();
    assert_eq!(
        per_fleet,
        [
            (
                "acme/kiosks".to_string(),
                vec!["k1".into(), "k2".into(), "k3".into()]
            ),
            ("globex/sensors".to_string(), vec!["s1".into(), "s2".into()]),
        ],
        "one notification per fleet, naming its devices (not k-spare, k-old, k-quiet, k-unknown or k-new)"
    );
    let first = inbox
        .lock()
        .unwrap()
        .iter()
        .find(|n| n["groupLabels"]["alertname"] == "DeviceOffline")
        .cloned()
        .unwrap();
    let alert = &first["alerts"][0];
    assert_eq!(alert["labels"]["scope"], "device");
    assert!(alert["annotations"]["summary"]
        .as_str()
        .unwrap()
        .contains("is offline"));
    assert!(alert["annotations"]["dashboard"]
        .as_str()
        .unwrap()
        .starts_with("https://monitor.example/grafana/d/balena-device?var-device="));

    // A device alert fires, and at once the token is rejected: the monitor's alert arrives,
    // the device alert is held back (inhibited) and never sent.
    let s3 = account
        .devices
        .iter_mut()
        .find(|d| d.device_name == "s3")
        .unwrap();
    s3.is_undervolted = true;
    fake.set_account(account.clone());
    wait_for("Undervoltage firing in prometheus", || async {
        !prometheus
            .query("ALERTS{alertname=\"Undervoltage\",alertstate=\"firing\"}")
            .await
            .is_empty()
    })
    .await;
    account.tokens = vec!["another-token".into()];
    fake.set_account(account);
    let deadline = Instant::now() + Duration::from_secs(60);
    while notified(&inbox, "ApiTokenRejected").is_empty() {
        assert!(
            Instant::now() < deadline,
            "no ApiTokenRejected notification; received: {:#?}",
            inbox.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let answer = http
        .get(format!(
            "http://{am}/alertmanager/api/v2/alerts?filter=alertname%3D%22Undervoltage%22"
        ))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let alerts: Value = serde_json::from_slice(&answer).unwrap();
    let inhibited_by = &alerts[0]["status"]["inhibitedBy"];
    assert!(
        inhibited_by.as_array().is_some_and(|a| !a.is_empty()),
        "Undervoltage is inhibited: {alerts:#}"
    );
    // The monitor alert fired after the device alert and waited as long for its group: the
    // device group's wait is over too, and it was not sent.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        notified(&inbox, "Undervoltage").is_empty(),
        "a device alert was sent while the monitor was blind: {:#?}",
        inbox.lock().unwrap()
    );
    exporter.stop().await.unwrap();
}
