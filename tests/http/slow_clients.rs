//! Slow clients cannot lock scrapes out: the exporter runs with the open-files limit a container
//! commonly has (1024) while 1,100 clients each send a request line and then one more header
//! line every two seconds, never finishing. Scrapes must be answered again within 60 s, and
//! every slow client closed by the exporter, counted by reason.

use crate::common;

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use common::child::quiet;
use common::exporter::wait_200;
use common::fake::{Account, FakeBalena};
use common::net::free_port;
use common::promtext::{parse, value};

const CLIENTS: usize = 1_100;

/// Raises this process's soft open-files limit to hold the clients (the hard limit allows it
/// on any usual machine); panics, saying so, when it cannot.
fn raise_open_files(wanted: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed to them.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        if limit.rlim_cur < wanted {
            assert!(
                limit.rlim_max >= wanted,
                "the test needs {wanted} open files; the hard limit is {}",
                limit.rlim_max
            );
            limit.rlim_cur = wanted;
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_beyond_the_open_files_limit_cannot_lock_scrapes_out() {
    raise_open_files(4_096);
    let fake = FakeBalena::start(Account::sample()).await;
    let port = free_port();
    let address = format!("127.0.0.1:{port}");
    // The exporter's own limit is 1024, as in a container.
    let exporter = quiet(
        Command::new("sh")
            .args(["-c", "ulimit -n 1024 && exec \"$0\""])
            .arg(env!("CARGO_BIN_EXE_balena-exporter"))
            .env_clear()
            .envs([
                ("BALENA_API_URL", fake.url().as_str()),
                ("BALENA_TOKEN", "sample-token"),
                ("PUBLIC_METRICS", "true"),
                ("LISTEN_ADDRESS", "127.0.0.1"),
                ("PORT", &port.to_string()),
                ("CRAWL_INTERVAL", "5"),
                ("RUST_LOG", "warn"),
            ]),
        "the exporter",
    );
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(90))
        .build()
        .unwrap();
    let url = format!("http://{address}");
    wait_200(&http, &format!("{url}/-/ready")).await;

    let closed = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let closed = closed.clone();
        let address = address.clone();
        clients.push(tokio::spawn(async move {
            let Ok(mut stream) = tokio::net::TcpStream::connect(&address).await else {
                closed.fetch_add(1, Ordering::Relaxed);
                return;
            };
            let mut sent = stream
                .write_all(b"GET /metrics HTTP/1.1\r\nHost: device\r\n")
                .await;
            let mut buf = [0u8; 512];
            while sent.is_ok() {
                // Another header line every 2 s; the exporter closing shows as EOF or an error.
                match tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf)).await {
                    Ok(Ok(0)) | Ok(Err(_)) => break,
                    Ok(Ok(_)) => {} // a 408/431 answer before the close
                    Err(_) => sent = stream.write_all(b"X-Slow: 1\r\n").await,
                }
            }
            closed.fetch_add(1, Ordering::Relaxed);
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    // A scrape, and the health probe, get through within 60 s, each on a new connection
    // (queued behind the slow clients the exporter has not accepted yet).
    let fresh = || {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(0)
            .build()
            .unwrap()
    };
    let started = Instant::now();
    let scrape = fresh().get(format!("{url}/metrics")).send().await.unwrap();
    assert_eq!(scrape.status(), 200);
    let scraped_after = started.elapsed();
    let healthy = fresh()
        .get(format!("{url}/-/healthy"))
        .send()
        .await
        .unwrap();
    assert_eq!(healthy.status(), 200);
    println!("scrape answered after {scraped_after:?} with {CLIENTS} slow clients");
    assert!(
        scraped_after < Duration::from_secs(60),
        "the scrape took {scraped_after:?}"
    );

    // The exporter's own families, on a new connection.
    let metrics = || async {
        fresh()
            .get(format!("{url}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };

    // Every slow client is closed by the exporter, and counted.
    let deadline = Instant::now() + Duration::from_secs(90);
    while closed.load(Ordering::Relaxed) < CLIENTS {
        if Instant::now() >= deadline {
            let text = metrics().await;
            let exporter_side: Vec<&str> = text
                .lines()
                .filter(|l| l.starts_with("balena_http_connection"))
                .collect();
            panic!(
                "{} of {CLIENTS} slow clients still open after 90 s; the exporter says:\n{}",
                CLIENTS - closed.load(Ordering::Relaxed),
                exporter_side.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for client in clients {
        client.await.unwrap();
    }
    let text = metrics().await;
    let samples = parse(&text);
    let head_timeouts = value(
        &samples,
        "balena_http_connections_closed_total",
        &[("listener", "public"), ("reason", "head_timeout")],
    )
    .unwrap_or(0.0);
    assert!(
        head_timeouts >= CLIENTS as f64,
        "closed for their head: {head_timeouts}"
    );
    let waits = value(
        &samples,
        "balena_http_connection_limit_reached_total",
        &[("listener", "public")],
    )
    .unwrap_or(0.0);
    assert!(waits >= 1.0, "the connection cap was reached: {waits}");
    drop(exporter);
}
