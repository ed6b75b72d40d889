//! Incremental crawls against the fake API: after rounds of changes, deletes and fleet moves
//! between crawls, an exporter that has crawled all along publishes what a freshly started
//! one publishes (`/metrics`' fleet and device families, `/sd`, the status page's fleets),
//! having read only the changed devices after its first crawl; a server that cannot filter on
//! `modified_at` gets full crawls instead.

use crate::common;

use common::exporter::{start_ready, wait_for, Exporter};
use common::generate;
use common::promtext::Sample;

const FAST: [(&str, &str); 2] = [("CRAWL_INTERVAL", "1"), ("REQUEST_TIMEOUT", "0.5")];

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
    let (fake, long) = start_ready(account.clone(), &FAST).await;
    assert_eq!(device_rows(&long, "full").await, devices);
    for round in 1..=4 {
        let churn = generate::churn(&mut account, round, 0.1);
        fake.set_account(account.clone());
        crawled_since_now(&long).await;
        let fresh = Exporter::ready_on(&fake, &FAST).await;
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
    // After the first, no crawl read every device, and the incremental ones read a fraction.
    assert_eq!(device_rows(&long, "full").await, devices);
    let incremental = device_rows(&long, "incremental").await;
    assert!(incremental > 0.0, "no incremental crawl read a device");
    let crawls = value(&long.metrics().await, "balena_crawls_total", &[]);
    assert!(
        incremental < devices * (crawls - 1.0) / 2.0,
        "{incremental} device rows in {crawls} crawls of {devices} devices"
    );
    long.stop().await.unwrap();
}
