//! The crawl loop: confirm the token, read the fleets, the service names, the restart policies
//! of the releases in use and the devices (every one, or those changed: `devices`) in keyset
//! pages, feed each page to the render path (`render::Reading`, then `render::Rendering`;
//! device pages on the blocking pool: decoding and rendering are the crawl's CPU), and hand the
//! outcome to the publisher. A crawl costs the same number of requests whatever the number of
//! fleets. A failed crawl is logged in one line and retried with backoff; the publisher keeps
//! the last good data meanwhile.

mod devices;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::balena::{query, ApiError, ApiStats, Client, CrawlKind, Resource};
use crate::config::CrawlConfig;
use crate::publish::{Outcome, Publisher};
use crate::render::{self, Reading, Rendered};
use devices::{Devices, Fingerprint, Read};

/// The longest wait after a 429, in crawl intervals: a `Retry-After` longer than this (a bad
/// header, say) would stop crawling for that long, so it is cut to this and the cut logged.
const MAX_RETRY_AFTER_INTERVALS: u32 = 5;

pub struct Crawler {
    client: Client,
    stats: Arc<ApiStats>,
    config: CrawlConfig,
    /// Who the token belongs to, as last logged.
    actor: Option<String>,
    /// Whether the server has device coordinates; None until it has answered.
    location: Option<bool>,
    failures: u32,
    succeeded_once: bool,
    /// What the last crawl kept of the devices, for the next.
    devices: Devices,
    /// The kind of the last crawl, for its log line.
    kind: CrawlKind,
}

impl Crawler {
    pub fn new(client: Client, config: CrawlConfig) -> Crawler {
        Crawler {
            stats: client.stats(),
            client,
            config,
            actor: None,
            location: None,
            failures: 0,
            succeeded_once: false,
            devices: Devices::default(),
            kind: CrawlKind::Full,
        }
    }

    /// Crawls now, then every interval (sooner after a failure), publishing each outcome.
    pub async fn run(mut self, mut publisher: Publisher) {
        loop {
            let started = Instant::now();
            let sent_before = self.stats.total_requests();
            let settings = publisher.render_settings().clone();
            let result = self.crawl(&settings).await;
            let outcome = Outcome {
                duration: started.elapsed(),
                finished: SystemTime::now(),
                requests: self.stats.total_requests() - sent_before,
                result,
            };
            let wait = self.after(&outcome);
            publisher.publish(outcome).await;
            tokio::time::sleep(wait).await;
        }
    }

    /// Logs the outcome and says how long to wait before the next crawl.
    fn after(&mut self, outcome: &Outcome) -> Duration {
        let (requests, duration) = (outcome.requests, outcome.duration);
        match &outcome.result {
            Ok(rendered) => {
                let level = if self.failures > 0 || !self.succeeded_once {
                    log::Level::Info
                } else {
                    log::Level::Debug
                };
                log::log!(
                    level,
                    "crawl ok kind={} fleets={} devices={} requests={requests} duration_ms={}",
                    self.kind.name(),
                    rendered.fleets,
                    rendered.devices,
                    duration.as_millis(),
                );
                self.failures = 0;
                self.succeeded_once = true;
                self.config.interval.saturating_sub(duration)
            }
            Err(error) => {
                self.failures += 1;
                let wait = retry_wait(error, self.failures, self.config.interval);
                let level = match error {
                    ApiError::Unauthorized { .. } | ApiError::DeviceKey => log::Level::Error,
                    _ => log::Level::Warn,
                };
                log::log!(
                    level,
                    "crawl failed kind={} requests={requests} duration_ms={} retry_in_s={:.1} keeping_last_good={} error=\"{error}\"",
                    error.kind(),
                    duration.as_millis(),
                    wait.as_secs_f64(),
                    self.succeeded_once,
                );
                if let ApiError::RateLimited { retry_after, .. } = error {
                    if *retry_after > wait {
                        log::warn!(
                            "retry-after capped asked_s={} waiting_s={} cap=\"{MAX_RETRY_AFTER_INTERVALS} crawl intervals\"",
                            retry_after.as_secs_f64(),
                            wait.as_secs_f64()
                        );
                    }
                }
                wait
            }
        }
    }

    /// whoami, then fleet pages, service and release pages and device pages, each ending on
    /// an empty page: a constant number of requests in the number of fleets. The first crawl
    /// also asks once whether the server has device coordinates.
    async fn crawl(&mut self, settings: &render::Settings) -> Result<Rendered, ApiError> {
        let started = Instant::now();
        self.whoami().await?;
        let server_start = self.client.server_time().and_then(devices::epoch_millis);
        let location = self.config.location && self.detect_location().await;
        let mut pages = Fingerprint::default();
        let mut rows = Vec::new();
        let reading = self.read_fleets(settings, &mut pages, &mut rows).await?;
        let ids = reading.fleet_ids();
        let read = Read {
            client: &self.client,
            config: &self.config,
            only: (!self.config.fleets.is_all()).then_some(&ids),
            reads: query::DeviceReads {
                services: self.config.services,
                tags: &self.config.tags,
                location,
            },
            started,
            server_start,
            fingerprint: pages.value(location),
        };
        let rendering = reading.devices();
        let (rendered, kind) = if ids.is_empty() {
            let rendered = on_blocking(move || rendering.finish(SystemTime::now())).await;
            (rendered, CrawlKind::Full)
        } else {
            self.devices.read(read, rendering).await?
        };
        for (resource, n) in rows {
            self.stats.read_rows(resource, kind, n);
        }
        self.kind = kind;
        if rendered.orphans > 0 {
            log::info!(
                "devices of fleets not watched or created during the crawl skipped_devices={}",
                rendered.orphans
            );
        }
        Ok(rendered)
    }

    /// Confirms the token, logging who it belongs to when that changes.
    async fn whoami(&mut self) -> Result<(), ApiError> {
        let actor = self.client.whoami().await?;
        let who = format!(
            "actor_type={} username={}",
            actor.actor_type.as_deref().unwrap_or("?"),
            actor.username.as_deref().unwrap_or("?")
        );
        if self.actor.as_deref() != Some(who.as_str()) {
            log::info!("authenticated {who}");
            self.actor = Some(who);
        }
        Ok(())
    }

    /// The fleet pages, then (when services are read and a fleet is watched) the service and
    /// release pages; each page's body goes into `pages` and its row count into `rows`.
    async fn read_fleets(
        &self,
        settings: &render::Settings,
        pages: &mut Fingerprint,
        rows: &mut Vec<(Resource, usize)>,
    ) -> Result<Reading, ApiError> {
        let config = &self.config;
        let mut reading = Reading::new(settings, config);
        let mut read = |resource, body: &[u8], ids: Result<Vec<u64>, serde_json::Error>| {
            pages.add(body);
            if let Ok(ids) = &ids {
                rows.push((resource, ids.len()));
            }
            ids
        };
        self.client
            .read_pages(
                Resource::Application,
                config.page_size,
                |top, after| query::fleets(&config.tags, top, after),
                |body| read(Resource::Application, body, reading.fleet_page(body)),
            )
            .await?;
        let watched = !reading.fleet_ids().is_empty();
        if !watched && reading.visible_fleets() > 0 {
            log::warn!(
                "no fleet matches FLEETS visible_fleets={}",
                reading.visible_fleets()
            );
        }
        if !(config.services && watched) {
            return Ok(reading);
        }
        // The service names and the releases' restart policies, before any device.
        let before_devices: [(Resource, Query, PageOf); 2] = [
            (Resource::Service, query::services, Reading::service_page),
            (Resource::Release, query::releases, Reading::release_page),
        ];
        for (resource, query, page) in before_devices {
            let size = config.page_size;
            self.client
                .read_pages(resource, size, query, |body| {
                    read(resource, body, page(&mut reading, body))
                })
                .await?;
        }
        Ok(reading)
    }

    /// Whether to read coordinates: asked of the server once (never failing a crawl); until
    /// it answers, no.
    async fn detect_location(&mut self) -> bool {
        if let Some(known) = self.location {
            return known;
        }
        match self.client.has_location().await {
            Ok(has) => {
                self.location = Some(has);
                if has {
                    log::info!("the API has device coordinates: exporting locations");
                } else {
                    log::info!(
                        "the API has no device coordinates (openBalena): the location families are left out"
                    );
                }
                has
            }
            Err(e) => {
                log::debug!("location probe failed, asking again next crawl error=\"{e}\"");
                false
            }
        }
    }
}

/// A keyset page's query (`top`, after `id`).
type Query = fn(u32, u64) -> String;
/// How a page of one resource is read into the rendering (the ids of its rows).
type PageOf = fn(&mut Reading, &[u8]) -> Result<Vec<u64>, serde_json::Error>;

/// Runs CPU work on the blocking pool, off the async workers that serve scrapes. A panic
/// there is a bug: it goes on as if the work had run here.
async fn on_blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(work).await {
        Ok(value) => value,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        // Cancelled: the runtime is shutting down, and this task with it.
        Err(_) => std::future::pending().await,
    }
}

/// After a failure: a rejected token waits a whole interval, a 429 its `Retry-After` (at most
/// `MAX_RETRY_AFTER_INTERVALS` intervals), anything else backs off 1 s, 2 s, 4 s, ... up to
/// the interval.
fn retry_wait(error: &ApiError, failures: u32, interval: Duration) -> Duration {
    match error {
        ApiError::Unauthorized { .. } | ApiError::DeviceKey => interval,
        ApiError::RateLimited { retry_after, .. } => {
            (*retry_after).min(interval * MAX_RETRY_AFTER_INTERVALS)
        }
        _ => Duration::from_secs(1 << failures.saturating_sub(1).min(16)).min(interval),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_waits() {
        let minute = Duration::from_secs(60);
        let timeout = ApiError::Timeout {
            resource: "device",
            after: minute,
        };
        let waits: Vec<_> = (1..=8)
            .map(|n| retry_wait(&timeout, n, minute).as_secs())
            .collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60]);
        let unauthorized = ApiError::Unauthorized {
            status: 401,
            resource: "whoami",
        };
        assert_eq!(retry_wait(&unauthorized, 1, minute), minute);
        assert_eq!(retry_wait(&ApiError::DeviceKey, 3, minute), minute);
        let limited = |secs| ApiError::RateLimited {
            resource: "device",
            retry_after: Duration::from_secs(secs),
        };
        assert_eq!(
            retry_wait(&limited(120), 1, minute),
            Duration::from_secs(120)
        );
        // A day-long Retry-After is cut to five intervals.
        assert_eq!(
            retry_wait(&limited(86_400), 1, minute),
            Duration::from_secs(300)
        );
    }
}
