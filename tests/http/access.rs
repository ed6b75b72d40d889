//! Who may read what: the public port is closed by default (fleet data answers 403 saying what
//! to set, the status page says only that), credentials open it, `PUBLIC_METRICS=true` opens
//! it on purpose, and the internal port serves the on-device Prometheus without credentials.
//! Every GET route answers HEAD too.

use crate::common;

use common::exporter::start_ready;
use common::fake::Account;

async fn head(url: &str) -> (u16, Option<u64>, usize) {
    let r = reqwest::Client::new().head(url).send().await.unwrap();
    let status = r.status().as_u16();
    let length = r.content_length();
    let body = r.bytes().await.unwrap().len();
    (status, length, body)
}

#[tokio::test]
async fn a_fresh_deploy_serves_no_fleet_data_on_the_public_port() {
    let account = Account::sample();
    let (_fake, exporter) = start_ready(
        account.clone(),
        &[("PUBLIC_METRICS", "false"), ("INTERNAL_PORT", "8001")],
    )
    .await;
    let fleet_names = |text: &str| {
        account.fleets.iter().any(|f| text.contains(&f.slug))
            || account.devices.iter().any(|d| text.contains(&d.uuid))
    };
    for path in ["/metrics", "/sd"] {
        let (status, body) = exporter.get(path).await;
        assert_eq!(status, 403, "{path}");
        assert!(
            body.contains("METRICS_TOKEN") && body.contains("PUBLIC_METRICS=true"),
            "{path}: {body}"
        );
        assert!(!fleet_names(&body));
    }
    let (status, page) = exporter.get("/").await;
    assert_eq!(status, 200);
    assert!(page.contains("METRICS_USERNAME"), "{page}");
    assert!(
        !fleet_names(&page),
        "the closed page names no fleet: {page}"
    );
    assert_eq!(exporter.get("/-/healthy").await.0, 200);
    assert_eq!(exporter.get("/-/ready").await.0, 200);

    // The internal port serves the on-device Prometheus without credentials.
    let internal = exporter.internal_url.clone().unwrap();
    let metrics = reqwest::get(format!("{internal}/metrics")).await.unwrap();
    assert_eq!(metrics.status(), 200);
    assert!(fleet_names(&metrics.text().await.unwrap()));
    let sd = reqwest::get(format!("{internal}/sd")).await.unwrap();
    assert_eq!(sd.status(), 200);
    // It forwards nothing: Grafana and Alertmanager are reached through the public port.
    let grafana = reqwest::get(format!("{internal}/grafana/")).await.unwrap();
    assert_eq!(grafana.status(), 404);
    exporter.stop().await.unwrap();
}

#[tokio::test]
async fn credentials_open_the_public_port_and_a_browser_is_asked_for_them() {
    let (_fake, exporter) = start_ready(
        Account::sample(),
        &[
            ("METRICS_USERNAME", "ops"),
            ("METRICS_PASSWORD", "pa55word-0123456789"),
        ],
    )
    .await;
    let http = reqwest::Client::new();
    let page = http.get(format!("{}/", exporter.url)).send().await.unwrap();
    assert_eq!(page.status(), 401);
    assert!(page.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Basic "));
    let page = http
        .get(format!("{}/", exporter.url))
        .basic_auth("ops", Some("pa55word-0123456789"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("acme/sensors"));
    exporter.stop().await.unwrap();
}

#[tokio::test]
async fn head_answers_every_get_route_without_a_body() {
    let (_fake, exporter) = start_ready(Account::sample(), &[]).await;
    for path in ["/metrics", "/-/healthy", "/-/ready", "/", "/sd"] {
        let (status, _, body) = head(&format!("{}{path}", exporter.url)).await;
        assert_eq!((status, body), (200, 0), "HEAD {path}");
    }
    let (status, _, _) = head(&format!("{}/nope", exporter.url)).await;
    assert_eq!(status, 404);
    exporter.stop().await.unwrap();
}
