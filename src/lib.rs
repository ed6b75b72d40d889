//! balena-exporter: Prometheus metrics about balenaCloud / openBalena fleets and devices.
//!
//! Data flows one way: config → crawl → snapshot → publication → HTTP. Module map:
//! - [`config`]: the table of environment variables → one validated `Config`; errors name the variable.
//! - [`balena`]: the API client (literal OData queries, keyset paging, retry, typed errors,
//!   request counts) and its serde models.
//! - [`crawl`]: the crawl loop: API → `Snapshot`, one log line per outcome, backoff.
//! - [`snapshot`]: plain data about fleets and devices as of one crawl, built page by page.
//! - [`publish`]: `Snapshot` → metrics head, status page, `/sd` JSON and `SD_FILE`, on the
//!   blocking pool; records each crawl in the health metrics.
//! - [`metrics`]: every metric family (`FAMILIES`); renders a snapshot, and the exporter's own
//!   health at scrape time.
//! - [`gzip`]: a gzip body compressed once per crawl and completed per request.
//! - [`sd`]: Prometheus HTTP service discovery of fleet devices, and its file_sd copy.
//! - [`tags`]: balena tag keys as valid, unique Prometheus label names.
//! - [`status`]: the HTML status page.
//! - [`state`]: what the handlers serve: the last publication (swapped atomically) and health.
//! - [`http`]: warp routes and the server.
//! - [`auth`]: optional bearer or basic credentials on `/metrics`, compared in constant time.
//! - [`proxy`]: `/grafana/...` forwarded to Grafana, so one public URL serves both.
//! - [`demo`]: a simulated account on loopback for `--demo`.

pub mod auth;
pub mod balena;
pub mod config;
pub mod crawl;
pub mod demo;
pub mod gzip;
pub mod http;
pub mod metrics;
pub mod proxy;
pub mod publish;
pub mod sd;
pub mod snapshot;
pub mod state;
pub mod status;
pub mod tags;

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
    let stale_after = config.stale_after();
    let client = balena::Client::new(&config.api, config.crawl.interval)?;
    let health = Arc::new(metrics::Health::new(client.stats()));
    let publisher = publish::Publisher::start(
        publish::Settings {
            device_metrics: config.device_metrics,
            sd: config.sd,
            api_url: config.api.url.clone(),
            stale_after,
        },
        health,
    )
    .await;
    let shared = publisher.shared();
    let options = http::Options {
        auth: config.metrics_auth,
        grafana: config
            .grafana_url
            .as_deref()
            .map(proxy::Upstream::new)
            .transpose()?,
    };
    let crawling = tokio::spawn(crawl::Crawler::new(client, config.crawl).run(publisher));
    http::serve(listener, shared, options, shutdown).await;
    crawling.abort();
    Ok(())
}
