//! History that leaves the device: the image's entrypoint turns `REMOTE_WRITE_URL` (with its
//! credentials and `EXTERNAL_LABELS`) into `remote_write`, and a second real `prometheus` with
//! its remote-write receiver on gets the exporter's series with the device Prometheus' values.
//! Secrets go into files the configuration names, never into the configuration or the log.

use crate::common;

use std::process::Command;

use common::exporter::{start_ready, wait_for};
use common::fake::Account;
use common::prometheus::{test_addresses, Prometheus};

#[tokio::test]
async fn the_device_series_reach_a_central_prometheus() {
    if !common::tools::require(&["prometheus"]) {
        return;
    }
    let account = Account::sample();
    let (_fake, exporter) = start_ready(account.clone(), &[("INTERNAL_PORT", "1")]).await;
    let central = Prometheus::with_args(
        "global:\n  scrape_interval: 1s\n",
        &[],
        &["--web.enable-remote-write-receiver"],
    );
    let exporter_address = exporter.internal_url.clone().unwrap();
    let exporter_address = exporter_address.trim_start_matches("http://").to_string();
    let remote = format!("{}/api/v1/write", central.url);
    let device = Prometheus::from_entrypoint(
        &[
            ("REMOTE_WRITE_URL", &remote),
            ("REMOTE_WRITE_USERNAME", "monitor"),
            ("REMOTE_WRITE_PASSWORD", "rw-s3cret"),
            ("EXTERNAL_LABELS", "site=lab"),
            ("BALENA_DEVICE_NAME_AT_INIT", "fleet-monitor-1"),
        ],
        &[],
        |name, text, own| {
            if name == "prometheus.yml" {
                test_addresses(text, &exporter_address, "127.0.0.1:9", own)
            } else {
                text
            }
        },
    );
    device.wait_up("balena-exporter").await;
    let query = "balena_devices_online";
    wait_for("the series in the central prometheus", || async {
        central.query(query).await.len() == account.fleets.len()
    })
    .await;
    let mut on_device = device.query(query).await;
    let mut received = central.query(query).await;
    let key = |(labels, _): &(serde_json::Value, f64)| labels["fleet_slug"].to_string();
    on_device.sort_by_key(key);
    received.sort_by_key(key);
    for ((here, a), (there, b)) in on_device.iter().zip(&received) {
        assert_eq!(here["fleet_slug"], there["fleet_slug"]);
        assert_eq!(a, b, "{}", here["fleet_slug"]);
        // The external labels travel with the series.
        assert_eq!(there["monitor"], "fleet-monitor-1");
        assert_eq!(there["site"], "lab");
    }
    exporter.stop().await.unwrap();
}

/// The Prometheus image's entrypoint, rendering its configuration into `dir` from `vars` only
/// (no other environment), without starting Prometheus.
fn render_config(dir: &std::path::Path, vars: &[(&str, &str)]) -> std::process::Output {
    Command::new("sh")
        .arg("prometheus/entrypoint.sh")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("PROMETHEUS_SOURCE_DIR", "prometheus")
        .env("PROMETHEUS_CONFIG_DIR", dir)
        .env("PROMETHEUS_RENDER_ONLY", "1")
        .envs(vars.iter().copied())
        .output()
        .unwrap()
}

#[test]
fn secrets_go_to_files_and_nowhere_else() {
    let dir = tempfile::tempdir().unwrap();
    let out = render_config(
        dir.path(),
        &[
            ("REMOTE_WRITE_URL", "https://mimir.example/api/v1/push"),
            ("REMOTE_WRITE_BEARER_TOKEN", "t0ken-s3cret"),
            ("BALENA_DEVICE_UUID", "0123456789abcdef0123456789abcdef"),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = [out.stdout, out.stderr].concat();
    assert!(!String::from_utf8_lossy(&log).contains("t0ken-s3cret"));
    let config = std::fs::read_to_string(dir.path().join("prometheus.yml")).unwrap();
    assert!(!config.contains("t0ken-s3cret"));
    assert!(config.contains("credentials_file:"), "{config}");
    let token = dir.path().join("secrets/remote_write_token");
    assert_eq!(std::fs::read_to_string(&token).unwrap(), "t0ken-s3cret");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&token).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // The alert links point at the device's public URL.
    assert!(String::from_utf8_lossy(&log).contains(
        "--web.external-url=https://0123456789abcdef0123456789abcdef.balena-devices.com"
    ));
    if common::tools::require(&["promtool"]) {
        let check = Command::new("promtool")
            .args(["check", "config"])
            .arg(dir.path().join("prometheus.yml"))
            .output()
            .unwrap();
        assert!(
            check.status.success(),
            "{}",
            String::from_utf8_lossy(&check.stdout)
        );
    }
    // A bad value stops it with one line naming the variable.
    let bad = render_config(
        dir.path(),
        &[("REMOTE_WRITE_URL", "https://user:pw@mimir.example/push")],
    );
    let err = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(1));
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("REMOTE_WRITE_URL") && !err.contains("pw@"),
        "{err}"
    );
}
