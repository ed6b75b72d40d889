//! `/metrics` keeps only a gzip body and inflates it for clients that do not accept gzip: a
//! plain scrape and a gzip scrape of the same publication must decode to the same text, but
//! for the exporter's own process and connection figures, which are read anew for each scrape.

mod common;

use std::io::Read;

use common::exporter::Exporter;
use common::fake::FakeBalena;
use common::generate::{self, TOKEN};

/// About 600 KiB of text: the body spans many of the renderer's 64 KiB chunks.
const DEVICES: usize = 400;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_and_gzip_scrapes_decode_to_the_same_text() {
    let fake = FakeBalena::start(generate::sized(DEVICES)).await;
    // One crawl only: no other publication can land between the scrapes.
    let exporter = Exporter::start(
        &fake.url(),
        TOKEN,
        &[("CRAWL_INTERVAL", "3600"), ("REQUEST_TIMEOUT", "30")],
    )
    .await;
    exporter.wait_ready().await;
    let http = reqwest::Client::new();
    let url = format!("{}/metrics", exporter.url);

    let plain = http.get(&url).send().await.unwrap();
    assert_eq!(plain.status(), 200);
    assert_eq!(
        plain.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    assert!(plain.headers().get("content-encoding").is_none());
    let plain = plain.bytes().await.unwrap();

    let zipped = http
        .get(&url)
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(zipped.status(), 200);
    assert_eq!(
        zipped.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    assert_eq!(zipped.headers()["content-encoding"], "gzip");
    let zipped = zipped.bytes().await.unwrap();
    let mut unzipped = Vec::new();
    flate2::read::GzDecoder::new(&zipped[..])
        .read_to_end(&mut unzipped)
        .unwrap();

    let text = std::str::from_utf8(&plain).unwrap();
    let steady = |body: &[u8]| -> Vec<String> {
        String::from_utf8_lossy(body)
            .lines()
            .filter(|l| !l.starts_with("process_") && !l.starts_with("balena_http_"))
            .map(String::from)
            .collect()
    };
    assert!(
        steady(&unzipped) == steady(&plain),
        "the plain and gzip bodies differ"
    );
    assert!(unzipped.len().abs_diff(plain.len()) < 100);
    assert!(zipped.len() < plain.len() / 3);
    // Every device is in it, and so is the health of the one crawl.
    assert_eq!(text.matches("\nbalena_device_info{").count(), DEVICES);
    assert!(text.contains("\nbalena_crawls_total 1\n"), "one crawl only");
    assert!(text.ends_with('\n'));

    // A second plain scrape inflates the same body again.
    let again = http.get(&url).send().await.unwrap().bytes().await.unwrap();
    assert!(steady(&again) == steady(&plain), "two plain scrapes differ");
    exporter.stop().await.unwrap();
}
