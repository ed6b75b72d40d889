//! Incremental crawls against the fake API: after rounds of changes, deletes and fleet moves
//! between crawls, an exporter that has crawled all along publishes what a freshly started
//! one publishes (`/metrics`' fleet and device families, `/sd`, the status page's fleets),
//! having read only the changed devices after its first crawl; a server that cannot filter on
//! `modified_at` gets full crawls instead.

use crate::common;

use common::exporter::{start_ready, wait_for, Exporter};
use common::generate;
use common::promtext::Sample;

fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .sum()
}

/// Device rows read so far by crawls of `kind`.
async fn device_rows(exporter: &Exporter, kind: &str) -> f64 {
    let samples = exporter.metrics().await;
    value(
        &samples,
        "balena_api_rows_read_total",
        &[("resource", "device"), ("crawl", kind)],
    )
}

/// Waits until `exporter` has finished a crawl that started after now.
async fn crawled_since_now(exporter: &Exporter) {
    let crawls = || async { value(&exporter.metrics().await, "balena_crawls_total", &[]) };
    let now = crawls().await;
    wait_for("two more crawls", || async { crawls().await >= now + 2.0 }).await;
}

/// What a user compares: the fleet and device lines of `/metrics` (the exporter's own
/// families left out), `/sd`, and the status page's fleet tables.
async fn published(exporter: &Exporter) -> (Vec<String>, String, String) {
    let metrics = exporter.get("/metrics").await.1;
    // The exporter's own families follow `balena_up` in the table of families.
    let families = balena_exporter::metrics::FAMILIES;
    let up = families.iter().position(|d| d.name == "balena_up").unwrap();
    let own: Vec<&str> = families[up..].iter().map(|d| d.name).collect();
    let lines = metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            let name = l.split(['{', ' ']).next().unwrap_or("");
            !own.contains(&name) && !name.starts_with("process_")
        })
        .map(String::from)
        .collect();
    let sd = exporter.get("/sd").await.1;
    let page = exporter.get("/").await.1;
    (lines, sd, fleets_part(&page))
}

/// The status page's fleet tables and device lists, from the first table on, without the
/// "offline for" spans (`3 min`, `2 h 5 min`): those count from the crawl's end, and the two
/// exporters crawl seconds apart.
fn fleets_part(page: &str) -> String {
    let start = page.find("<table").unwrap_or(0);
    let pieces: Vec<&str> = page[start..].split("<br><small>").collect();
    let mut out = String::new();
    for (i, piece) in pieces.iter().enumerate() {
        let last = i + 1 == pieces.len();
        let cut = piece.rfind('>').map_or(0, |p| p + 1);
        let tail = &piece[cut..];
        let is_span = tail == "under a minute" || tail.ends_with(" min") || tail.ends_with(" h");
        out.push_str(if !last && is_span {
            &piece[..cut]
        } else {
            piece
        });
        if !last {
            out.push_str("<br><small>");
        }
    }
    out
}

#[tokio::test]
async fn after_rounds_of_churn_an_incremental_exporter_publishes_what_a_fresh_one_does() {
    let mut account = generate::account(4, 40);
    let devices = account.devices.len() as f64;
    let (fake, long) = start_ready(account.clone(), &[]).await;
    assert_eq!(device_rows(&long, "full").await, devices);
    for round in 1..=4 {
        let churn = generate::churn(&mut account, round, 0.1);
        fake.set_account(account.clone());
        crawled_since_now(&long).await;
        let fresh = Exporter::ready_on(&fake, &[]).await;
        let (lines, sd, page) = published(&long).await;
        let (fresh_lines, fresh_sd, fresh_page) = published(&fresh).await;
        let missing: Vec<&String> = fresh_lines.iter().filter(|l| !lines.contains(l)).collect();
        let extra: Vec<&String> = lines.iter().filter(|l| !fresh_lines.contains(l)).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "round {round} ({churn:?}): the incremental exporter lacks {missing:#?}\nand has {extra:#?}"
        );
        assert_eq!(
            lines, fresh_lines,
            "round {round}: the same lines, in order"
        );
        assert_eq!(sd, fresh_sd, "round {round}: /sd");
        assert_eq!(page, fresh_page, "round {round}: the status page");
        fresh.stop().await.unwrap();
    }
    // After the first, no crawl read every device; the incremental ones read the devices
    // changed within the overlap (the last crawl's duration and 10 s: here, several rounds).
    assert_eq!(device_rows(&long, "full").await, devices);
    assert!(device_rows(&long, "incremental").await > 0.0);
    // Once the overlap has passed with nothing changed, a crawl reads no device row.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(40);
    loop {
        let before = device_rows(&long, "incremental").await;
        crawled_since_now(&long).await;
        if device_rows(&long, "incremental").await == before {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "incremental crawls still read devices 40 s after the last change"
        );
    }
    assert_eq!(device_rows(&long, "full").await, devices);
    long.stop().await.unwrap();
}

#[tokio::test]
async fn a_server_that_cannot_filter_on_modified_at_gets_full_crawls_asked_once() {
    let mut account = generate::account(2, 10);
    account.no_modified_at_filter = true;
    // (API_RETRIES=0, as in every test: the refused read is not asked again.)
    let (fake, exporter) = start_ready(account.clone(), &[]).await;
    crawled_since_now(&exporter).await;
    generate::churn(&mut account, 1, 0.3);
    fake.set_account(account.clone());
    crawled_since_now(&exporter).await;
    // Every crawl read every device, and published the change.
    assert_eq!(device_rows(&exporter, "incremental").await, 0.0);
    let crawls = value(&exporter.metrics().await, "balena_crawls_total", &[]);
    let full = device_rows(&exporter, "full").await;
    assert!(
        full >= 20.0 * (crawls - 1.0),
        "{full} device rows in {crawls} crawls"
    );
    let fresh = Exporter::ready_on(&fake, &[]).await;
    assert_eq!(published(&exporter).await, published(&fresh).await);
    fresh.stop().await.unwrap();
    // The refused incremental read was asked once: not again until the next full crawl.
    let refused: Vec<u16> = fake
        .requests()
        .iter()
        .filter(|r| r.path.starts_with("/v7/device") && r.raw_query.contains("modified_at%20gt"))
        .map(|r| r.status)
        .collect();
    assert_eq!(refused, [500]);
    exporter.stop().await.unwrap();
}

#[tokio::test]
async fn when_most_devices_changed_a_crawl_reads_them_all_as_a_full_one() {
    let mut account = generate::account(2, 30);
    let (fake, exporter) = start_ready(account.clone(), &[]).await;
    let full = device_rows(&exporter, "full").await;
    generate::churn(&mut account, 1, 1.0);
    fake.set_account(account.clone());
    crawled_since_now(&exporter).await;
    // The changed devices were counted, found to be most, and read as a full crawl reads them.
    assert_eq!(device_rows(&exporter, "incremental").await, 0.0);
    let now = account.devices.len() as f64;
    assert!(device_rows(&exporter, "full").await >= full + now);
    let fresh = Exporter::ready_on(&fake, &[]).await;
    assert_eq!(published(&exporter).await, published(&fresh).await);
    fresh.stop().await.unwrap();
    exporter.stop().await.unwrap();
}

#[tokio::test]
async fn a_server_that_caps_pages_loses_no_change_and_no_deletion() {
    let mut account = generate::account(2, 150);
    let fake = common::fake::FakeBalena::start(account.clone()).await;
    // Shorter pages than asked for, ids included (asked for ten times PAGE_SIZE).
    fake.set_max_top(Some(40));
    let vars = [("PAGE_SIZE", "100")];
    let exporter = Exporter::ready_on(&fake, &vars).await;
    for round in 1..=2 {
        generate::churn(&mut account, round, 0.2);
        fake.set_account(account.clone());
        crawled_since_now(&exporter).await;
        let fresh = Exporter::ready_on(&fake, &vars).await;
        assert_eq!(
            published(&exporter).await,
            published(&fresh).await,
            "round {round}"
        );
        fresh.stop().await.unwrap();
    }
    assert!(device_rows(&exporter, "incremental").await > 0.0);
    let ids: Vec<String> = fake
        .requests()
        .iter()
        .filter(|r| r.raw_query.starts_with("$select=id&"))
        .map(|r| r.raw_query.clone())
        .collect();
    assert!(
        ids.iter().any(|q| q.ends_with("&$top=1000")),
        "id pages ask for ten times PAGE_SIZE: {ids:?}"
    );
    exporter.stop().await.unwrap();
}
