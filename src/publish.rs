//! The publication: after each crawl, the last good snapshot becomes what the handlers serve
//! (the metrics head, the status page, the `/sd` JSON) and `SD_FILE` is written. Rendering,
//! gzip and the file write run on the blocking pool, off the async workers; the crawl loop
//! waits for them, so there is never more than one rendering at a time.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;

use crate::balena::ApiError;
use crate::config::SdConfig;
use crate::gzip;
use crate::metrics::{self, Health};
use crate::sd;
use crate::snapshot::Snapshot;
use crate::state::{Published, Shared};
use crate::status::{self, CrawlReport};

/// How a crawl ended.
pub struct Outcome {
    pub result: Result<Snapshot, ApiError>,
    /// When it ended, and how long it took.
    pub finished: SystemTime,
    pub duration: Duration,
    /// Requests it made, retries included.
    pub requests: u64,
}

/// What the publication needs to know besides the snapshot.
#[derive(Clone, Debug)]
pub struct Settings {
    pub device_metrics: bool,
    pub sd: SdConfig,
    /// Shown on the status page.
    pub api_url: String,
    pub stale_after: Duration,
}

pub struct Publisher {
    shared: Arc<Shared>,
    health: Arc<Health>,
    settings: Arc<Settings>,
    snapshot: Option<Arc<Snapshot>>,
    success: Option<Instant>,
    report: CrawlReport,
    /// The last rendering of the snapshot, kept for failed crawls (whose data is unchanged).
    metrics: gzip::Head,
    sd_json: Option<Bytes>,
    /// Whether `sd::public_url_note` was logged already.
    sd_noted: bool,
}

impl Publisher {
    /// The first publication (health only, not ready), rendered like every other one.
    pub async fn start(settings: Settings, health: Arc<Health>) -> Publisher {
        let settings = Arc::new(settings);
        let report = CrawlReport {
            api_url: settings.api_url.clone(),
            ..CrawlReport::default()
        };
        let job = report.clone();
        let status = blocking(move || status::render(None, &job)).await;
        let initial = Published {
            metrics: gzip::Head::empty(),
            status_html: Bytes::from(status),
            sd_json: None,
            last_success: None,
            stale_after: settings.stale_after,
        };
        Publisher {
            shared: Arc::new(Shared::new(initial, health.clone())),
            health,
            settings,
            snapshot: None,
            success: None,
            report,
            metrics: gzip::Head::empty(),
            sd_json: None,
            sd_noted: false,
        }
    }

    /// The cell the HTTP handlers read.
    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// Publishes what follows from a crawl, then records it in the health metrics (in that
    /// order, so a scrape never sees `balena_up 1` beside the previous crawl's data).
    pub async fn publish(&mut self, outcome: Outcome) {
        self.report.last_attempt = Some(outcome.finished);
        self.report.last_duration = Some(outcome.duration);
        let (fresh, failed) = match outcome.result {
            Ok(snapshot) => {
                self.report.last_success = Some(outcome.finished);
                self.report.last_error = None;
                self.success = Some(Instant::now());
                let snapshot = Arc::new(snapshot);
                self.snapshot = Some(snapshot.clone());
                (Some(snapshot), None)
            }
            Err(error) => {
                self.report.last_error = Some(error.to_string());
                (None, Some(error.kind()))
            }
        };
        let settings = self.settings.clone();
        let report = self.report.clone();
        let current = self.snapshot.clone();
        let rendered =
            blocking(move || render(&settings, fresh.as_deref(), current.as_deref(), &report))
                .await;
        if let Some((metrics, sd_json)) = rendered.fresh {
            self.metrics = metrics;
            self.sd_json = Some(sd_json);
        }
        self.shared.store(Published {
            metrics: self.metrics.clone(),
            status_html: Bytes::from(rendered.status),
            sd_json: self.sd_json.clone(),
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
        if let Some(Err(e)) = &rendered.sd_file {
            self.health.sd_file_failed();
            log::warn!(
                "sd file write failed path={} error=\"{e}\"",
                self.settings
                    .sd
                    .file
                    .as_deref()
                    .map_or(String::new(), |p| p.display().to_string())
            );
        }
        if let Some(note) = rendered.sd_note {
            if !self.sd_noted {
                self.sd_noted = true;
                log::warn!("{note}");
            }
        }
    }
}

/// What the blocking part made.
#[derive(Default)]
struct Rendered {
    /// For a new snapshot: the metrics head and the `/sd` JSON.
    fresh: Option<(gzip::Head, Bytes)>,
    status: String,
    /// The `SD_FILE` write, when one was due.
    sd_file: Option<std::io::Result<()>>,
    sd_note: Option<String>,
}

/// Renders a new snapshot (`fresh`) in full, and the status page from the current one.
fn render(
    settings: &Settings,
    fresh: Option<&Snapshot>,
    current: Option<&Snapshot>,
    report: &CrawlReport,
) -> Rendered {
    let mut rendered = Rendered {
        fresh: None,
        status: status::render(current, report),
        sd_file: None,
        sd_note: None,
    };
    if let Some(snapshot) = fresh {
        let json = sd::render(snapshot, &settings.sd);
        if let Some(path) = &settings.sd.file {
            rendered.sd_file = Some(sd::write_file(path, &json));
        }
        rendered.sd_note = sd::public_url_note(snapshot, &settings.sd);
        rendered.fresh = Some((
            metrics::render_head(Some(snapshot), settings.device_metrics),
            Bytes::from(json),
        ));
    }
    rendered
}

/// Runs `work` on the blocking pool. A panic there is a bug; it is logged and the previous
/// publication stays (the default value stands in).
async fn blocking<T: Default + Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(work).await {
        Ok(value) => value,
        Err(e) => {
            log::error!("publication failed error=\"{e}\"");
            T::default()
        }
    }
}
