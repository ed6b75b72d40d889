//! Runs the exporter in-process on 127.0.0.1:0 with given variables, and reads it over HTTP.

use std::future::Future;
use std::time::{Duration, Instant};

use balena_exporter::Config;
use tokio::sync::oneshot;

use super::fake::{Account, FakeBalena};
use super::promtext::{self, Sample};

/// Fast settings for tests: crawl twice a second, give up on a request after 300 ms.
pub const FAST: &[(&str, &str)] = &[
    ("CRAWL_INTERVAL", "0.5"),
    ("REQUEST_TIMEOUT", "0.3"),
    ("API_RETRIES", "0"),
];

/// A fake balena API serving `account`, and an exporter on it that is ready
/// (`Exporter::ready_on`).
pub async fn start_ready(account: Account, vars: &[(&str, &str)]) -> (FakeBalena, Exporter) {
    let fake = FakeBalena::start(account).await;
    let exporter = Exporter::ready_on(&fake, vars).await;
    (fake, exporter)
}

pub struct Exporter {
    /// The public listener.
    pub url: String,
    /// The internal listener, when the variables set `INTERNAL_PORT` (to any port: the test
    /// binds a free one).
    #[allow(dead_code)] // read by tests/http and tests/tools, not tests/api
    pub internal_url: Option<String>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    http: reqwest::Client,
}

impl Exporter {
    /// Starts with `FAST`, then `vars` (later entries win), pointed at `api_url` with `token`.
    /// The public port is open (`PUBLIC_METRICS=true`) unless `vars` set credentials or
    /// `PUBLIC_METRICS` themselves: most tests are about the data, not about access.
    pub async fn start(api_url: &str, token: &str, vars: &[(&str, &str)]) -> Exporter {
        let mut all = std::collections::BTreeMap::new();
        let base = [("BALENA_API_URL", api_url), ("BALENA_TOKEN", token)];
        let chooses_access = vars.iter().any(|(k, _)| {
            matches!(
                *k,
                "PUBLIC_METRICS" | "METRICS_TOKEN" | "METRICS_USERNAME" | "METRICS_PASSWORD"
            )
        });
        let open = [("PUBLIC_METRICS", "true")];
        let open = if chooses_access { &[][..] } else { &open[..] };
        for (k, v) in base.iter().chain(FAST).chain(open).chain(vars) {
            all.insert(k.to_string(), v.to_string());
        }
        let config = Config::from_vars(all).expect("valid test config");
        let public = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", public.local_addr().unwrap());
        let internal = match config.internal_listen {
            None => None,
            Some(_) => Some(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()),
        };
        let internal_url = internal
            .as_ref()
            .map(|l| format!("http://{}", l.local_addr().unwrap()));
        let listeners = balena_exporter::Listeners { public, internal };
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(balena_exporter::run(config, listeners, async {
            let _ = stopped.await;
        }));
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        Exporter {
            url,
            internal_url,
            stop: Some(stop),
            task,
            http,
        }
    }

    /// Starts on `fake` with the first token of its account and `vars` (as `start`), and waits
    /// until it has crawled once and answers ready.
    pub async fn ready_on(fake: &FakeBalena, vars: &[(&str, &str)]) -> Exporter {
        let account = fake.account();
        let token = account.tokens.first().expect("the account has a token");
        let exporter = Exporter::start(&fake.url(), token, vars).await;
        exporter.wait_ready().await;
        exporter
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        let r = self
            .http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    #[allow(dead_code)] // tests/api reads samples; tests/http and tests/tools read text
    pub async fn metrics(&self) -> Vec<Sample> {
        let (status, body) = self.get("/metrics").await;
        assert_eq!(status, 200);
        promtext::parse(&body)
    }

    pub async fn wait_ready(&self) {
        wait_for("/-/ready to answer 200", || async {
            self.get("/-/ready").await.0 == 200
        })
        .await;
    }

    /// Waits until `check` holds on a scrape of `/metrics`. (Used by tests/api only.)
    #[allow(dead_code)]
    pub async fn wait_metrics(&self, what: &str, check: impl Fn(&[Sample]) -> bool) -> Vec<Sample> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let samples = self.metrics().await;
            if check(&samples) {
                return samples;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until `path` answers a body that contains `text`.
    #[allow(dead_code)] // tests/api and tests/tools, not tests/http
    pub async fn wait_body(&self, path: &str, text: &str) {
        let what = format!("{path} saying {text:?}");
        wait_for(&what, || async { self.get(path).await.1.contains(text) }).await;
    }

    /// Stops the server gracefully and returns what `run` returned.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(5), &mut self.task)
            .await
            .expect("exporter stops within 5 s")
            .expect("exporter task did not panic")
    }
}

/// Waits until `url` answers 200 (a server that has just been started).
#[allow(dead_code)] // tests/http and tests/tools, not tests/api
pub async fn wait_200(http: &reqwest::Client, url: &str) {
    wait_for(&format!("{url} answering 200"), || async {
        http.get(url).send().await.is_ok_and(|r| r.status() == 200)
    })
    .await;
}

/// Polls `check` every 50 ms for up to 15 s.
pub async fn wait_for<F, Fut>(what: &str, check: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(15);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
