//! balena-exporter: Prometheus metrics about balenaCloud / openBalena fleets and devices.
//!
//! Data flows one way: config → crawl → snapshot rows → renderings → publication → HTTP.
//! Module map:
//! - [`config`]: the table of environment variables → one validated `Config`; errors name the variable.
//! - [`balena`]: the API client (literal OData queries, keyset paging, retry, typed errors,
//!   request counts) and its serde models.
//! - [`crawl`]: the crawl loop: API pages → the render path, one log line per outcome, backoff;
//!   which devices each crawl reads (every one, or those changed since the last) and keeps.
//! - [`definitions`]: what the words mean (inactive, configuring, offline, updating, failing
//!   service, offline since), once, for every surface.
//! - [`snapshot`]: plain rows about fleets and devices, converted from the API's rows, and
//!   per-fleet counts.
//! - [`render`]: the one render path: a crawl's API pages (fleets, services, releases, then
//!   devices page by page) → `/metrics` families, `/sd`, the status page; the crawler, the
//!   tests and the benches all feed it. Devices are rendered as their pages arrive (a full
//!   crawl) or from the `store` an incremental crawl updated.
//! - [`store`]: the devices the last crawl read, compact, and the newest `modified_at` among
//!   them: what an incremental crawl updates.
//! - [`publish`]: a crawl's renderings → what the handlers serve, and `SD_FILE`; records each
//!   crawl in the health metrics.
//! - [`metrics`]: the only place metric names live: the families table, the exporter's own
//!   health (rendered at scrape time) and the text writer of the fleet and device families.
//! - [`gzip`]: a gzip body compressed once per crawl (in segments, family by family) and
//!   completed per request.
//! - [`sd`]: Prometheus HTTP service discovery of fleet devices, and its file_sd copy.
//! - [`tags`]: balena tag keys as valid, unique Prometheus label names.
//! - [`status`]: the HTML status page: the survey of the devices, and the HTML.
//! - [`alerts`]: the alerts firing now, polled from Alertmanager in the background for the
//!   status page.
//! - [`state`]: what the handlers serve: the last publication (swapped atomically, its bodies
//!   gzipped, small ones plain too) and health.
//! - [`http`]: the warp routes, for the public and the internal listener.
//! - [`server`]: the listeners: connection cap, head and write deadlines, bounded heads.
//! - [`auth`]: optional bearer or basic credentials on `/metrics`, compared in constant time.
//! - [`proxy`]: `/grafana/...` and `/alertmanager/...` forwarded, so one public URL serves
//!   them all.
//! - [`demo`]: a simulated account on loopback for `--demo`.

pub mod alerts;
pub mod auth;
pub mod balena;
pub mod config;
pub mod crawl;
pub mod definitions;
pub mod demo;
pub mod gzip;
pub mod http;
pub mod metrics;
pub mod proxy;
pub mod publish;
pub mod render;
pub mod sd;
pub mod server;
pub mod snapshot;
pub mod state;
pub mod status;
pub mod store;
pub mod tags;

use std::future::Future;
use std::sync::Arc;

pub use config::Config;

/// Where the exporter listens: the public port, and the internal one if configured.
pub struct Listeners {
    pub public: tokio::net::TcpListener,
    pub internal: Option<tokio::net::TcpListener>,
}

/// Runs the crawler and the HTTP servers until `shutdown` completes.
pub async fn run<F>(config: Config, listeners: Listeners, shutdown: F) -> anyhow::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    let stale_after = config.stale_after();
    let client = balena::Client::new(&config.api, config.crawl.interval)?;
    let public_stats = Arc::new(server::ConnStats::default());
    let internal_stats = Arc::new(server::ConnStats::default());
    let mut counted = vec![("public", public_stats.clone())];
    if listeners.internal.is_some() {
        counted.push(("internal", internal_stats.clone()));
    }
    let health = metrics::Health::new(client.stats(), counted)
        .with_dashboard(config.balena_dashboard_url.clone());
    let auth_failures = health.auth_failures();
    let poll_errors = health.alertmanager_poll_errors();
    let health = Arc::new(health);
    let publisher = publish::Publisher::start(
        publish::Settings {
            render: render::Settings::new(&config),
            api_url: config.api.url.clone(),
            interval: config.crawl.interval,
            stale_after,
        },
        health,
    );
    let shared = publisher.shared();
    let polling = poll_alerts(
        config.alertmanager_url.as_deref(),
        config.crawl.interval,
        &shared,
        poll_errors,
    )?;
    let upstream = |url: Option<String>, prefix| {
        url.as_deref()
            .map(|u| proxy::Upstream::new(u, prefix))
            .transpose()
    };
    let public = http::routes(
        shared.clone(),
        http::Options {
            access: config.access,
            grafana: upstream(config.grafana_url, "grafana")?,
            alertmanager: upstream(config.alertmanager_url, "alertmanager")?,
            auth_failures: auth_failures.clone(),
        },
    );
    let internal = http::routes(
        shared,
        http::Options {
            access: config::Access::Open,
            grafana: None,
            alertmanager: None,
            auth_failures,
        },
    );
    let limits = server::Limits::new(config.max_connections);
    if limits.max_connections < config.max_connections {
        log::info!(
            "max_connections={} (MAX_CONNECTIONS {} does not fit the open-files limit)",
            limits.max_connections,
            config.max_connections
        );
    }
    let crawling = tokio::spawn(crawl::Crawler::new(client, config.crawl).run(publisher));
    let stats = [public_stats, internal_stats];
    serve(listeners, [public, internal], limits, stats, shutdown).await;
    crawling.abort();
    if let Some(polling) = polling {
        polling.abort();
    }
    Ok(())
}

/// Serves the public listener, and the internal one if there is one, each with its routes
/// and connection counts, until `shutdown` completes; then lets both finish gracefully.
async fn serve<R>(
    listeners: Listeners,
    [public, internal]: [R; 2],
    limits: server::Limits,
    [public_stats, internal_stats]: [Arc<server::ConnStats>; 2],
    shutdown: impl Future<Output = ()> + Send + 'static,
) where
    R: warp::Filter + Clone + Send + Sync + 'static,
    R::Extract: warp::Reply,
{
    // One shutdown signal, heard by both servers.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop.send(true);
    });
    let until_stopped = |mut stopped: tokio::sync::watch::Receiver<bool>| async move {
        let _ = stopped.wait_for(|s| *s).await;
    };
    let internal = listeners.internal.map(|listener| {
        let stopped = until_stopped(stopped.clone());
        let serving = server::serve(
            listener,
            internal,
            limits,
            internal_stats,
            "internal",
            stopped,
        );
        tokio::spawn(serving)
    });
    let stopped = until_stopped(stopped);
    server::serve(
        listeners.public,
        public,
        limits,
        public_stats,
        "public",
        stopped,
    )
    .await;
    if let Some(internal) = internal {
        let _ = internal.await;
    }
}

/// Starts the alerts poller of the Alertmanager at `url`, which renders the status page's
/// alerts section into `shared` whenever it changes; without one, the section says so.
fn poll_alerts(
    url: Option<&str>,
    crawl_interval: std::time::Duration,
    shared: &Arc<state::Shared>,
    errors: Arc<std::sync::atomic::AtomicU64>,
) -> anyhow::Result<Option<tokio::task::JoinHandle<()>>> {
    let set = |shared: &state::Shared, alerts: &alerts::Alerts| {
        shared.set_alerts(bytes::Bytes::from(status::alerts_part(alerts)));
    };
    let Some(url) = url else {
        set(shared, &alerts::Alerts::NotConfigured);
        return Ok(None);
    };
    let poller = alerts::Poller::new(url)?.counting(errors);
    let shared = shared.clone();
    let publish = move |a: &alerts::Alerts| set(&shared, a);
    Ok(Some(tokio::spawn(
        poller.run(alerts::interval(crawl_interval), publish),
    )))
}
