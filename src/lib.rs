//! balena-exporter: Prometheus metrics about balenaCloud / openBalena fleets and devices.
//!
//! Module map:
//! - [`config`]: environment variables → one validated `Config`; errors name the variable.
//! - [`balena`]: the API client (literal OData queries, paging, retry, typed errors) and its serde models.
//! - [`crawler`]: the crawl loop: fetch → `Snapshot` → render → swap; error accounting.
//! - [`snapshot`]: plain data about fleets and devices as of one crawl.
//! - [`metrics`]: every metric name and help text; renders a snapshot and the exporter's health.
//! - [`sd`]: Prometheus HTTP service discovery of fleet devices, and its file_sd copy.
//! - [`status`]: the HTML status page.
//! - [`state`]: the rendered bodies the handlers serve, swapped atomically.
//! - [`http`]: warp routes and the server.
//! - [`auth`]: optional bearer or basic credentials on `/metrics`, compared in constant time.
//! - [`proxy`]: `/grafana/...` forwarded to Grafana, so one public URL serves both.
//! - [`demo`]: a simulated account on loopback for `--demo`.

pub mod auth;
pub mod balena;
pub mod config;
pub mod crawler;
pub mod demo;
pub mod http;
pub mod metrics;
pub mod proxy;
pub mod sd;
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
    let options = http::Options {
        auth: config.metrics_auth.clone(),
        grafana: config
            .grafana_url
            .as_deref()
            .map(proxy::Upstream::new)
            .transpose()?,
    };
    let crawling = tokio::spawn(crawler.run());
    http::serve(listener, shared, options, shutdown).await;
    crawling.abort();
    Ok(())
}
