//! `/metrics` and `/sd` are kept gzipped when they are large (over `state::PLAIN_MAX`) and
//! inflated for clients that do not accept gzip; small ones are kept plain too. A client that
//! asks for gzip gets gzip either way (from 64 KiB of text on), and a plain and a gzip request
//! of the same publication decode to the same text, but for the exporter's own process and
//! connection figures, which are read anew for each request.

use crate::common;

use std::io::Read;

use balena_exporter::state::PLAIN_MAX;
use common::exporter::Exporter;
use common::fake::FakeBalena;
use common::generate;

/// The body of `path` without and with gzip asked for: (plain, the gzipped one decoded, its
/// size as sent).
async fn both(exporter: &Exporter, path: &str, content_type: &str) -> (Vec<u8>, Vec<u8>, usize) {
    let http = reqwest::Client::new();
    let url = format!("{}{path}", exporter.url);
    let plain = http.get(&url).send().await.unwrap();
    assert_eq!(plain.status(), 200);
    assert_eq!(plain.headers()["content-type"], content_type);
    assert!(plain.headers().get("content-encoding").is_none());
    let plain = plain.bytes().await.unwrap().to_vec();

    let zipped = http
        .get(&url)
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(zipped.status(), 200);
    assert_eq!(zipped.headers()["content-type"], content_type);
    let encoding = zipped.headers().get("content-encoding").cloned();
    let zipped = zipped.bytes().await.unwrap();
    assert_eq!(encoding.expect("gzip asked for and sent"), "gzip");
    let mut unzipped = Vec::new();
    flate2::read::GzDecoder::new(&zipped[..])
        .read_to_end(&mut unzipped)
        .unwrap();
    (plain, unzipped, zipped.len())
}

fn steady(body: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(body)
        .lines()
        .filter(|l| !l.starts_with("process_") && !l.starts_with("balena_http_"))
        .map(String::from)
        .collect()
}

/// `devices` devices; whether their `/metrics` text is over `PLAIN_MAX` (inflated per
/// plain request) or not (kept plain too).
async fn plain_and_gzip_decode_to_the_same_text(devices: usize, large: bool) {
    let fake = FakeBalena::start(generate::sized(devices)).await;
    // One crawl only: no other publication can land between the requests.
    let vars = [
        ("CRAWL_INTERVAL", "3600"),
        ("REQUEST_TIMEOUT", "30"),
        ("SD_MODE", "lan"),
    ];
    let exporter = Exporter::ready_on(&fake, &vars).await;

    let content_type = "text/plain; version=0.0.4; charset=utf-8";
    let (plain, unzipped, zipped) = both(&exporter, "/metrics", content_type).await;
    assert_eq!(
        plain.len() as u64 > PLAIN_MAX,
        large,
        "{} bytes",
        plain.len()
    );
    assert!(
        steady(&unzipped) == steady(&plain),
        "the plain and gzip bodies differ"
    );
    assert!(unzipped.len().abs_diff(plain.len()) < 100);
    assert!(zipped < plain.len() / 3, "{zipped} bytes gzipped");
    // Every device is in it, and so is the health of the one crawl.
    let text = std::str::from_utf8(&plain).unwrap();
    assert_eq!(text.matches("\nbalena_device_info{").count(), devices);
    assert!(text.contains("\nbalena_crawls_total 1\n"), "one crawl only");
    assert!(text.ends_with('\n'));
    // A second plain request serves the same body again.
    let (again, _, _) = both(&exporter, "/metrics", content_type).await;
    assert!(steady(&again) == steady(&plain), "two plain scrapes differ");

    let (plain, unzipped, _) = both(&exporter, "/sd", "application/json").await;
    assert_eq!(plain, unzipped);
    let groups: Vec<serde_json::Value> = serde_json::from_slice(&plain).expect("JSON");
    assert!(!groups.is_empty() && groups.len() <= devices);
    exporter.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_account_is_served_plain_and_gzipped() {
    plain_and_gzip_decode_to_the_same_text(300, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_account_is_inflated_per_plain_request() {
    plain_and_gzip_decode_to_the_same_text(1500, true).await;
}
