//! The alerts firing now, for the status page: a background task asks Alertmanager's API v2
//! (`GET /api/v2/alerts?active=true&silenced=false&inhibited=false`, under the app's
//! `/alertmanager/` route prefix) every poll interval, with a short timeout, and keeps the
//! last answer. Pages never call Alertmanager: a request costs nothing upstream, whoever
//! sends it. An Alertmanager that is down or answers garbage is a state the page shows
//! ("unreachable since ..."), logged once per change, never a panic.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Deserialize;

/// How long one poll may take.
pub const TIMEOUT: Duration = Duration::from_secs(5);
/// The longest time between polls (the crawl interval, when it is shorter).
pub const MAX_INTERVAL: Duration = Duration::from_secs(30);
/// The shortest time between polls.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);
/// Alerts kept at most (the most severe, the oldest first); `total` counts them all.
pub const KEPT: usize = 50;
/// The largest answer read: a few thousand alerts. More is not an Alertmanager we know.
const MAX_BODY: usize = 4 * 1024 * 1024;
/// The poller's `User-Agent`, which tells its requests from forwarded ones.
pub const USER_AGENT: &str = concat!("balena-exporter/", env!("CARGO_PKG_VERSION"), " (alerts)");
/// Characters kept of a label or annotation (the page clips further).
const TEXT_CHARS: usize = 300;

/// One firing alert, as the page shows it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Alert {
    /// `alertname`.
    pub name: String,
    /// `severity`: `critical`, `warning`, or anything else (or empty).
    pub severity: String,
    pub fleet_slug: String,
    /// `device_name`, else `device_uuid`.
    pub device: String,
    /// The `summary` annotation.
    pub summary: String,
    pub starts_at: Option<SystemTime>,
}

impl Alert {
    /// Sort rank of the severity: critical, warning, then the rest.
    pub fn rank(&self) -> u8 {
        match self.severity.as_str() {
            "critical" => 0,
            "warning" => 1,
            _ => 2,
        }
    }
}

/// What the status page says about alerts.
#[derive(Clone, Debug, PartialEq)]
pub enum Alerts {
    /// `ALERTMANAGER_URL` is not set.
    NotConfigured,
    /// Set, and not answered yet.
    Waiting,
    /// The last answer: the first `KEPT` alerts by severity and age, of `total`.
    Firing {
        alerts: Vec<Alert>,
        total: usize,
        at: SystemTime,
    },
    /// The polls have failed since `since`; `error` says how the last one did.
    Unreachable { since: SystemTime, error: String },
}

/// Where the API is: `base` is `ALERTMANAGER_URL`, an Alertmanager served under
/// `/alertmanager/` (its `--web.route-prefix`, which the forwarding of `/alertmanager/...`
/// needs too).
pub fn api_url(base: &str) -> String {
    format!(
        "{}/alertmanager/api/v2/alerts?active=true&silenced=false&inhibited=false",
        base.trim_end_matches('/')
    )
}

/// The poll interval for a crawl interval.
pub fn interval(crawl: Duration) -> Duration {
    crawl.clamp(MIN_INTERVAL, MAX_INTERVAL)
}

/// A `gettableAlert` of the API, the fields used.
#[derive(Deserialize)]
struct Gettable {
    #[serde(default)]
    labels: HashMap<String, String>,
    #[serde(default)]
    annotations: HashMap<String, String>,
    #[serde(rename = "startsAt", default)]
    starts_at: Option<String>,
}

/// Why a poll failed.
#[derive(Debug, thiserror::Error)]
pub enum PollError {
    #[error("{0}")]
    Request(#[from] reqwest::Error),
    #[error("HTTP {0}")]
    Status(u16),
    #[error("answer larger than {MAX_BODY} bytes")]
    TooLarge,
    #[error("not the API's alert list: {0}")]
    Decode(#[from] serde_json::Error),
}

/// The poller: one client, one URL.
pub struct Poller {
    client: reqwest::Client,
    url: String,
    /// Failed polls, for `balena_alertmanager_poll_errors_total`.
    errors: Arc<AtomicU64>,
}

impl Poller {
    /// A poller of the Alertmanager at `base` (`ALERTMANAGER_URL`).
    pub fn new(base: &str) -> reqwest::Result<Poller> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(TIMEOUT)
            .user_agent(USER_AGENT)
            .build()?;
        Ok(Poller {
            client,
            url: api_url(base),
            errors: Arc::default(),
        })
    }

    /// Counts failed polls in `errors` (the exporter's `balena_alertmanager_poll_errors_total`).
    pub fn counting(mut self, errors: Arc<AtomicU64>) -> Poller {
        self.errors = errors;
        self
    }

    /// Asks once: the alerts firing, the most severe and oldest first, at most `KEPT`, and
    /// how many there are.
    pub async fn poll(&self) -> Result<(Vec<Alert>, usize), PollError> {
        let mut response = self.client.get(&self.url).send().await?;
        if !response.status().is_success() {
            return Err(PollError::Status(response.status().as_u16()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(PollError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(decode(&body)?)
    }

    /// Polls every `every` until the task is dropped, handing each state that differs from the
    /// last to `publish` (the first one always). Logs one line per change of reachability.
    pub async fn run(self, every: Duration, mut publish: impl FnMut(&Alerts) + Send) {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last = Alerts::Waiting;
        publish(&last);
        loop {
            ticks.tick().await;
            let polled = self.poll().await;
            if polled.is_err() {
                self.errors.fetch_add(1, Ordering::Relaxed);
            }
            let next = match polled {
                Ok((alerts, total)) => {
                    if !matches!(last, Alerts::Firing { .. }) {
                        log::info!("alertmanager answered alerts={total}");
                    }
                    Alerts::Firing {
                        alerts,
                        total,
                        at: SystemTime::now(),
                    }
                }
                Err(e) => match last {
                    Alerts::Unreachable { since, .. } => Alerts::Unreachable {
                        since,
                        error: e.to_string(),
                    },
                    _ => {
                        log::warn!("alertmanager unreachable error=\"{e}\"");
                        Alerts::Unreachable {
                            since: SystemTime::now(),
                            error: e.to_string(),
                        }
                    }
                },
            };
            if !same(&last, &next) {
                publish(&next);
            }
            last = next;
        }
    }
}

/// Whether the page would say the same (the time of an answer aside).
fn same(a: &Alerts, b: &Alerts) -> bool {
    match (a, b) {
        (
            Alerts::Firing {
                alerts: a,
                total: n,
                ..
            },
            Alerts::Firing {
                alerts: b,
                total: m,
                ..
            },
        ) => a == b && n == m,
        (a, b) => a == b,
    }
}

/// The API's JSON → the alerts, sorted by severity, then the oldest first, then name;
/// at most `KEPT`, and how many there were.
fn decode(body: &[u8]) -> Result<(Vec<Alert>, usize), serde_json::Error> {
    let gettable: Vec<Gettable> = serde_json::from_slice(body)?;
    let total = gettable.len();
    let mut alerts: Vec<Alert> = gettable.into_iter().map(alert).collect();
    // An unknown start last.
    alerts.sort_by(|a, b| {
        let key = |x: &Alert| (x.rank(), x.starts_at.is_none(), x.starts_at);
        key(a).cmp(&key(b)).then_with(|| a.name.cmp(&b.name))
    });
    alerts.truncate(KEPT);
    Ok((alerts, total))
}

fn alert(mut g: Gettable) -> Alert {
    let take = |map: &mut HashMap<String, String>, key: &str| {
        let mut text = map.remove(key).unwrap_or_default();
        if let Some((cut, _)) = text.char_indices().nth(TEXT_CHARS) {
            text.truncate(cut);
        }
        text
    };
    let device = match take(&mut g.labels, "device_name") {
        name if name.is_empty() => take(&mut g.labels, "device_uuid"),
        name => name,
    };
    Alert {
        name: take(&mut g.labels, "alertname"),
        severity: take(&mut g.labels, "severity"),
        fleet_slug: take(&mut g.labels, "fleet_slug"),
        device,
        summary: take(&mut g.annotations, "summary"),
        starts_at: g
            .starts_at
            .as_deref()
            .and_then(|t| humantime::parse_rfc3339_weak(t).ok()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANSWER: &str = r#"[
      {"labels": {"alertname": "DeviceOffline", "severity": "warning", "fleet_slug": "acme/sensors",
                  "device_name": "sensor-02", "device_uuid": "abc"},
       "annotations": {"summary": "sensor-02 is offline"},
       "startsAt": "2026-11-30T09:00:00.123Z", "endsAt": "2026-11-30T11:00:00Z",
       "status": {"state": "active", "silencedBy": [], "inhibitedBy": []},
       "receivers": [{"name": "default"}], "fingerprint": "1", "updatedAt": "2026-11-30T10:00:00Z"},
      {"labels": {"alertname": "FleetDevicesOffline", "severity": "critical", "fleet_slug": "acme/sensors"},
       "annotations": {"summary": "50% of fleet sensors is offline"},
       "startsAt": "2026-11-30T09:30:00Z"},
      {"labels": {"alertname": "UpdateFailed", "severity": "warning", "device_uuid": "def"},
       "annotations": {}, "startsAt": "2026-11-30T08:00:00Z"},
      {"labels": {"alertname": "Watchdog"}, "annotations": {}, "startsAt": "not a time"}
    ]"#;

    #[test]
    fn answers_are_sorted_by_severity_then_age() {
        let (alerts, total) = decode(ANSWER.as_bytes()).unwrap();
        assert_eq!(total, 4);
        let names: Vec<_> = alerts.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "FleetDevicesOffline",
                "UpdateFailed",
                "DeviceOffline",
                "Watchdog"
            ]
        );
        assert_eq!(alerts[1].device, "def", "the uuid stands in for a name");
        assert_eq!(alerts[2].device, "sensor-02");
        assert_eq!(alerts[2].summary, "sensor-02 is offline");
        assert_eq!(alerts[2].fleet_slug, "acme/sensors");
        assert_eq!(
            alerts[2].starts_at,
            humantime::parse_rfc3339("2026-11-30T09:00:00.123Z").ok()
        );
        assert_eq!(alerts[3].starts_at, None);
        assert!(decode(b"{\"status\":\"success\"}").is_err());
        assert!(decode(b"<html>").is_err());
        let many = format!("[{}]", vec!["{}"; KEPT + 5].join(","));
        let (alerts, total) = decode(many.as_bytes()).unwrap();
        assert_eq!((alerts.len(), total), (KEPT, KEPT + 5));
    }

    #[test]
    fn the_api_is_under_the_route_prefix() {
        assert_eq!(
            api_url("http://alertmanager:9093/"),
            "http://alertmanager:9093/alertmanager/api/v2/alerts?active=true&silenced=false&inhibited=false"
        );
        assert_eq!(interval(Duration::from_secs(60)), MAX_INTERVAL);
        assert_eq!(interval(Duration::from_millis(500)), MIN_INTERVAL);
        assert_eq!(interval(Duration::from_secs(10)), Duration::from_secs(10));
    }

    /// A fake Alertmanager on loopback: `/alertmanager/api/v2/alerts` answers `body`.
    async fn fake(body: &'static str) -> String {
        use warp::Filter;
        let route = warp::path!("alertmanager" / "api" / "v2" / "alerts")
            .and(warp::query::raw())
            .map(move |query: String| {
                assert_eq!(query, "active=true&silenced=false&inhibited=false");
                warp::reply::with_header(body, "content-type", "application/json")
            });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(warp::serve(route).incoming(listener).run());
        url
    }

    #[tokio::test]
    async fn polls_a_fake_alertmanager() {
        let url = fake(ANSWER).await;
        let (alerts, total) = Poller::new(&url).unwrap().poll().await.unwrap();
        assert_eq!((alerts.len(), total), (4, 4));
        assert_eq!(alerts[0].name, "FleetDevicesOffline");
        // Garbage is an error, not a panic.
        let garbage = fake("<html>maintenance</html>").await;
        let error = Poller::new(&garbage).unwrap().poll().await.unwrap_err();
        assert!(matches!(error, PollError::Decode(_)), "{error}");
        // A path that is not Alertmanager's.
        let error = Poller::new(&format!("{url}/elsewhere"))
            .unwrap()
            .poll()
            .await
            .unwrap_err();
        assert!(matches!(error, PollError::Status(404)), "{error}");
    }

    #[tokio::test]
    async fn an_alertmanager_that_is_down_is_unreachable_once() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let errors = Arc::new(AtomicU64::new(0));
        let poller = Poller::new(&format!("http://127.0.0.1:{port}"))
            .unwrap()
            .counting(errors.clone());
        assert!(matches!(poller.poll().await, Err(PollError::Request(_))));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let task = tokio::spawn(poller.run(Duration::from_millis(20), move |a| {
            let _ = tx.send(a.clone());
        }));
        assert_eq!(rx.recv().await, Some(Alerts::Waiting));
        let Some(Alerts::Unreachable { since, error }) = rx.recv().await else {
            panic!("not unreachable");
        };
        assert!(since <= SystemTime::now() && !error.is_empty());
        // Later failed polls change nothing the page shows... except the error text, which
        // stays the same for a refused connection: nothing more is published.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(rx.try_recv().is_err(), "published again");
        // ... but every failed poll is counted.
        assert!(errors.load(Ordering::Relaxed) >= 3, "{errors:?}");
        task.abort();
    }
}
