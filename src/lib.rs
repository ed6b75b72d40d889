//! balena-exporter: Prometheus metrics about balenaCloud / openBalena fleets and devices.
//!
//! Module map:
//! - [`config`]: environment variables → one validated `Config`; errors name the variable.
//! - [`balena`]: the API client (literal OData queries, paging, retry, typed errors) and its serde models.
//! - [`crawler`]: the crawl loop: fetch → `Snapshot` → render → swap; error accounting.
//! - [`snapshot`]: plain data about fleets and devices as of one crawl.
//! - [`metrics`]: every metric name and help text; renders a snapshot and the exporter's health.
//! - [`status`]: the HTML status page.
//! - [`state`]: the rendered bodies the handlers serve, swapped atomically.
//! - [`http`]: warp routes and the server.
//! - [`demo`]: a simulated account on loopback for `--demo`.

pub mod balena;
pub mod config;
pub mod crawler;
pub mod demo;
pub mod http;
pub mod metrics;
pub mod snapshot;
pub mod state;
pub mod status;

use std::future::Future;
use std::sync::Arc;

pub use config::Config;

/// Runs the crawler and the HTTP server on `listener` until `shutdown` completes.
pub async fn run<F>(
    config: Config,
    listener: tokio::net::TcpListener,
    shutdown: F,
) -> anyhow::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    let health = Arc::new(metrics::Health::new());
    let client = balena::Client::new(&config, health.api_counters())?;
    let shared = Arc::new(state::Shared::new(crawler::Crawler::initial(
        &config, &health,
    )));
    let crawler = crawler::Crawler::new(&config, client, health, shared.clone());
    let crawling = tokio::spawn(crawler.run());
    http::serve(listener, shared, shutdown).await;
    crawling.abort();
    Ok(())
}
