//! The publication: after each crawl, its renderings (`render::Rendered`) become what the
//! handlers serve (the metrics body, the status page, the `/sd` JSON) and `SD_FILE` is
//! written; after a failed crawl the last good renderings stay, under a status page that
//! says what failed. The file write runs on the blocking pool, off the async workers.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;

use crate::balena::ApiError;
use crate::metrics::Health;
use crate::render::{self, Rendered};
use crate::sd;
use crate::state::{Body, Published, Shared};
use crate::status::{self, CrawlReport};

/// How a crawl ended.
pub struct Outcome {
    pub result: Result<Rendered, ApiError>,
    /// When it ended, and how long it took.
    pub finished: SystemTime,
    pub duration: Duration,
    /// Requests it made, retries included.
    pub requests: u64,
}

/// What the publication needs to know.
#[derive(Clone, Debug)]
pub struct Settings {
    pub render: render::Settings,
    /// Shown on the status page.
    pub api_url: String,
    /// The crawl interval: the status page refreshes at it.
    pub interval: Duration,
    pub stale_after: Duration,
}

pub struct Publisher {
    shared: Arc<Shared>,
    health: Arc<Health>,
    settings: Arc<Settings>,
    success: Option<Instant>,
    report: CrawlReport,
    /// The last good renderings, kept for failed crawls (whose data is unchanged).
    metrics: Body,
    sd: Option<Body>,
    /// The status page's part from the last good crawl (`status::fleets_part`).
    fleets_html: Option<String>,
    /// Whether `sd::Writer::note` was logged already.
    sd_noted: bool,
}

impl Publisher {
    /// The first publication (health only, not ready).
    pub fn start(settings: Settings, health: Arc<Health>) -> Publisher {
        let settings = Arc::new(settings);
        let report = CrawlReport {
            api_url: settings.api_url.clone(),
            interval: settings.interval,
            ..CrawlReport::default()
        };
        let (status_html, status_rest) = status::page(&report, None);
        let initial = Published {
            metrics: Body::empty(),
            status_html: Bytes::from(status_html),
            status_rest: Bytes::from(status_rest),
            sd: None,
            last_success: None,
            stale_after: settings.stale_after,
        };
        Publisher {
            shared: Arc::new(Shared::new(initial, health.clone())),
            health,
            settings,
            success: None,
            report,
            metrics: Body::empty(),
            sd: None,
            fleets_html: None,
            sd_noted: false,
        }
    }

    /// The cell the HTTP handlers read.
    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// What a crawl renders.
    pub fn render_settings(&self) -> &render::Settings {
        &self.settings.render
    }

    /// Publishes what follows from a crawl, then records it in the health metrics (in that
    /// order, so a scrape never sees `balena_up 1` beside the previous crawl's data).
    pub async fn publish(&mut self, outcome: Outcome) {
        self.report.last_attempt = Some(outcome.finished);
        self.report.last_duration = Some(outcome.duration);
        let mut sd_file = None;
        let failed = match outcome.result {
            Ok(rendered) => {
                self.report.last_success = Some(outcome.finished);
                self.report.last_error = None;
                self.success = Some(Instant::now());
                self.metrics = rendered.metrics;
                self.fleets_html = Some(rendered.fleets_html);
                if let Some(path) = self.settings.render.sd.file.clone() {
                    let mut json = rendered.sd.reader();
                    let write = move || sd::write_file(&path, &mut json);
                    // A panic there is a bug; it counts as a failed write.
                    let written = tokio::task::spawn_blocking(write)
                        .await
                        .unwrap_or_else(|e| Err(std::io::Error::other(e)));
                    sd_file = Some(written);
                }
                self.sd = Some(rendered.sd);
                if let Some(note) = rendered.sd_note {
                    if !self.sd_noted {
                        self.sd_noted = true;
                        log::warn!("{note}");
                    }
                }
                None
            }
            Err(error) => {
                self.report.last_error = Some(error.to_string());
                Some(error.kind())
            }
        };
        let (status_html, status_rest) = status::page(&self.report, self.fleets_html.as_deref());
        self.shared.store(Published {
            metrics: self.metrics.clone(),
            status_html: Bytes::from(status_html),
            status_rest: Bytes::from(status_rest),
            sd: self.sd.clone(),
            last_success: self.success,
            stale_after: self.settings.stale_after,
        });
        match failed {
            None => {
                self.health
                    .crawl_succeeded(outcome.duration, outcome.requests, outcome.finished)
            }
            Some(kind) => self
                .health
                .crawl_failed(kind, outcome.duration, outcome.requests),
        }
        if let Some(Err(e)) = sd_file {
            self.health.sd_file_failed();
            log::warn!(
                "sd file write failed path={} error=\"{e}\"",
                self.settings
                    .render
                    .sd
                    .file
                    .as_deref()
                    .map_or(String::new(), |p| p.display().to_string()),
            );
        }
    }
}
