//! The crawl loop: confirm the token, read fleets and device pages, build a `Snapshot`,
//! render it once and swap it in. A failed crawl keeps the last good snapshot, marks
//! `balena_up 0`, counts the error, logs one line and retries with backoff.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::balena::{ApiError, Client};
use crate::config::{Config, FleetFilter, SdConfig};
use crate::metrics::{self, Health};
use crate::sd;
use crate::snapshot::Snapshot;
use crate::state::{Published, Shared};
use crate::status::{self, CrawlReport};

pub struct Crawler {
    client: Client,
    health: Arc<Health>,
    shared: Arc<Shared>,
    fleets: FleetFilter,
    page_size: u32,
    interval: Duration,
    stale_after: Duration,
    device_metrics: bool,
    api_url: String,
    sd: SdConfig,
    last: Last,
}

/// What the crawler remembers between crawls.
#[derive(Default)]
struct Last {
    snapshot: Option<Snapshot>,
    success: Option<(Instant, SystemTime)>,
    attempt: Option<(SystemTime, Duration)>,
    error: Option<String>,
    failures: u32,
    actor: Option<String>,
}

impl Crawler {
    pub fn new(
        config: &Config,
        client: Client,
        health: Arc<Health>,
        shared: Arc<Shared>,
    ) -> Crawler {
        Crawler {
            client,
            health,
            shared,
            fleets: config.fleets.clone(),
            page_size: config.page_size,
            interval: config.crawl_interval,
            stale_after: config.stale_after(),
            device_metrics: config.device_metrics,
            api_url: config.api_url.clone(),
            sd: config.sd.clone(),
            last: Last::default(),
        }
    }

    /// The first publication, before any crawl: health only, not ready.
    pub fn initial(config: &Config, health: &Health) -> Published {
        let report = CrawlReport {
            last_attempt: None,
            last_duration: None,
            last_success: None,
            last_error: None,
            api_url: &config.api_url,
        };
        Published::new(
            metrics::render(None, config.device_metrics, health),
            status::render(None, &report),
            None,
            None,
            config.stale_after(),
        )
    }

    /// Crawls now, then every interval (sooner after a failure), forever.
    pub async fn run(mut self) {
        loop {
            let wait = self.crawl_and_publish().await;
            tokio::time::sleep(wait).await;
        }
    }

    /// One crawl and its publication; returns how long to wait before the next.
    pub async fn crawl_and_publish(&mut self) -> Duration {
        let started = Instant::now();
        let sent_before = self.client.requests_sent();
        let result = self.crawl().await;
        let duration = started.elapsed();
        let requests = self.client.requests_sent() - sent_before;
        let finished = SystemTime::now();
        self.last.attempt = Some((finished, duration));

        let wait = match result {
            Ok((snapshot, orphans)) => {
                self.health.crawl_succeeded(duration, requests, finished);
                let level = if self.last.failures > 0 || self.last.success.is_none() {
                    log::Level::Info
                } else {
                    log::Level::Debug
                };
                log::log!(
                    level,
                    "crawl ok fleets={} devices={} requests={requests} duration_ms={}{}",
                    snapshot.fleets.len(),
                    snapshot.device_count(),
                    duration.as_millis(),
                    if orphans > 0 {
                        format!(" skipped_devices={orphans}")
                    } else {
                        String::new()
                    },
                );
                if let Some(path) = &self.sd.file {
                    if let Err(e) = sd::write_file(path, &sd::render(&snapshot, &self.sd)) {
                        self.health.sd_file_failed();
                        log::warn!("sd file write failed path={} error=\"{e}\"", path.display());
                    }
                }
                self.last.snapshot = Some(snapshot);
                self.last.success = Some((Instant::now(), finished));
                self.last.error = None;
                self.last.failures = 0;
                self.interval.saturating_sub(duration)
            }
            Err(error) => {
                self.health.crawl_failed(error.kind(), duration, requests);
                self.last.failures += 1;
                let wait = retry_wait(&error, self.last.failures, self.interval);
                let level = match error {
                    ApiError::Unauthorized { .. } => log::Level::Error,
                    _ => log::Level::Warn,
                };
                log::log!(
                    level,
                    "crawl failed kind={} requests={requests} duration_ms={} retry_in_s={:.1} keeping_last_good={} error=\"{error}\"",
                    error.kind(),
                    duration.as_millis(),
                    wait.as_secs_f64(),
                    self.last.snapshot.is_some(),
                );
                self.last.error = Some(error.to_string());
                wait
            }
        };
        self.publish();
        wait
    }

    fn publish(&self) {
        let snapshot = self.last.snapshot.as_ref();
        let report = CrawlReport {
            last_attempt: self.last.attempt.map(|(t, _)| t),
            last_duration: self.last.attempt.map(|(_, d)| d),
            last_success: self.last.success.map(|(_, t)| t),
            last_error: self.last.error.as_deref(),
            api_url: &self.api_url,
        };
        self.shared.store(Published::from_gzip(
            metrics::render_gzip(snapshot, self.device_metrics, &self.health),
            status::render(snapshot, &report),
            snapshot.map(|s| sd::render(s, &self.sd)),
            self.last.success.map(|(t, _)| t),
            self.stale_after,
        ));
    }

    /// whoami, fleets, then device pages: 2 + ⌈devices / page size⌉ requests (+1 when the
    /// last page is full), whatever the number of fleets.
    async fn crawl(&mut self) -> Result<(Snapshot, usize), ApiError> {
        let actor = self.client.whoami().await?;
        let who = format!(
            "actor_type={} username={}",
            actor.actor_type.as_deref().unwrap_or("?"),
            actor.username.as_deref().unwrap_or("?")
        );
        if self.last.actor.as_deref() != Some(who.as_str()) {
            log::info!("authenticated {who}");
            self.last.actor = Some(who);
        }

        let all = self.client.fleets().await?;
        let visible = all.len();
        let fleets: Vec<_> = all
            .into_iter()
            .filter(|f| self.fleets.matches(&f.slug, &f.app_name))
            .collect();
        if fleets.is_empty() && visible > 0 {
            log::warn!("no fleet matches FLEETS visible_fleets={visible}");
        }
        let ids: Vec<u64> = fleets.iter().map(|f| f.id).collect();
        let filter = (!self.fleets.is_all()).then_some(ids.as_slice());

        let mut devices = Vec::new();
        let mut seen = HashSet::new();
        let mut skip = 0u64;
        while !fleets.is_empty() {
            let page = self
                .client
                .device_page(filter, self.page_size, skip)
                .await?;
            let received = page.len();
            let before = devices.len();
            // Devices added during paging can shift a page: keep each id once.
            devices.extend(page.into_iter().filter(|d| seen.insert(d.id)));
            if received != self.page_size as usize {
                break;
            }
            if devices.len() == before {
                return Err(ApiError::Paging { skip });
            }
            skip += received as u64;
        }
        Ok(Snapshot::from_api(fleets, devices))
    }
}

/// After a failure: a rejected token waits a whole interval, a 429 its `Retry-After`, and
/// anything else backs off 1 s, 2 s, 4 s, ... up to the interval.
fn retry_wait(error: &ApiError, failures: u32, interval: Duration) -> Duration {
    match error {
        ApiError::Unauthorized { .. } => interval,
        ApiError::RateLimited { retry_after, .. } => *retry_after,
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
        let limited = ApiError::RateLimited {
            resource: "device",
            retry_after: Duration::from_secs(120),
        };
        assert_eq!(retry_wait(&limited, 1, minute), Duration::from_secs(120));
    }
}
