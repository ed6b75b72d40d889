//! A real `prometheus` server (Debian package `prometheus`) on loopback, scraping given targets.

use std::process::Command;

use super::child::{quiet, Killed};

/// A Prometheus server killed when dropped.
pub struct Prometheus {
    _child: Killed,
    pub url: String,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Scrapes `target` (host:port) every second as job `balena-exporter`.
    pub fn start(target: &str) -> Prometheus {
        let config = format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: balena-exporter\n    static_configs:\n      - targets: ['{target}']\n"
        );
        Prometheus::with_config(&config, &[])
    }

    /// Runs with `config` as prometheus.yml, beside `files` (relative path, content).
    pub fn with_config(config: &str, files: &[(&str, &str)]) -> Prometheus {
        Prometheus::with_args(config, files, &[])
    }

    /// `with_config`, with more command-line arguments.
    pub fn with_args(config: &str, files: &[(&str, &str)], args: &[&str]) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        for (path, content) in files {
            let path = dir.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, content).unwrap();
        }
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).unwrap();
        let port = super::net::free_port();
        let child = quiet(
            Command::new("prometheus")
                .arg(format!("--config.file={}", config_path.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.path().join("data").display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .args(args),
            "prometheus (Debian package prometheus; scripts/test installs it)",
        );
        Prometheus {
            _child: child,
            url: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        }
    }

    /// The JSON answer of an API path such as `/api/v1/rules`; Null on any error.
    pub async fn api(&self, path: &str) -> serde_json::Value {
        let Ok(response) = reqwest::get(format!("{}{path}", self.url)).await else {
            return serde_json::Value::Null;
        };
        serde_json::from_slice(&response.bytes().await.unwrap_or_default()).unwrap_or_default()
    }

    /// The instant vector of `query` as (labels, value) pairs; empty on any error.
    pub async fn query(&self, query: &str) -> Vec<(serde_json::Value, f64)> {
        let url = format!("{}/api/v1/query", self.url);
        let Ok(response) = reqwest::Client::new()
            .get(url)
            .query(&[("query", query)])
            .send()
            .await
        else {
            return vec![];
        };
        let body: serde_json::Value =
            serde_json::from_slice(&response.bytes().await.unwrap_or_default()).unwrap_or_default();
        body["data"]["result"]
            .as_array()
            .map(|rows| {
                rows.iter()
                    .map(|r| {
                        (
                            r["metric"].clone(),
                            r["value"][1]
                                .as_str()
                                .unwrap_or("")
                                .parse()
                                .unwrap_or(f64::NAN),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// prometheus.yml and its rules, as the image lays them out in /etc/prometheus, with the
/// compose address of the exporter's internal port replaced by `exporter` and 1 s intervals.
pub fn shipped_files(exporter: &str) -> (String, Vec<(String, String)>) {
    let mut config = std::fs::read_to_string("prometheus/prometheus.yml").unwrap();
    let replacements = [
        ("\"exporter:8001\"".to_string(), format!("\"{exporter}\"")),
        (
            "http://exporter:8001/sd".to_string(),
            format!("http://{exporter}/sd"),
        ),
        (
            "scrape_interval: 60s".to_string(),
            "scrape_interval: 1s".to_string(),
        ),
        (
            "evaluation_interval: 60s".to_string(),
            "evaluation_interval: 1s".to_string(),
        ),
        (
            "refresh_interval: 60s".to_string(),
            "refresh_interval: 1s".to_string(),
        ),
        (
            "scrape_timeout: 10s".to_string(),
            "scrape_timeout: 1s".to_string(),
        ),
    ];
    for (from, to) in replacements {
        assert!(
            config.contains(&from),
            "{from} moved in prometheus.yml; update this test"
        );
        config = config.replace(&from, &to);
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir("prometheus/rules").unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yml") {
            let name = path.file_name().unwrap().to_string_lossy();
            files.push((
                format!("rules/{name}"),
                std::fs::read_to_string(&path).unwrap(),
            ));
        }
    }
    (config, files)
}

impl Prometheus {
    /// The shipped configuration (see `shipped_files`) scraping the exporter at `exporter`
    /// (host:port of its internal listener, or of an open public one).
    pub fn shipped(exporter: &str) -> Prometheus {
        let (config, files) = shipped_files(exporter);
        let files: Vec<(&str, &str)> = files
            .iter()
            .map(|(p, c)| (p.as_str(), c.as_str()))
            .collect();
        Prometheus::with_config(&config, &files)
    }
}

impl Prometheus {
    /// Waits until a target of `job` has been scraped with `up` 1.
    pub async fn wait_up(&self, job: &str) {
        let query = format!("up{{job=\"{job}\"}}");
        super::exporter::wait_for(&format!("{job} scraped with up 1"), || async {
            self.query(&query).await.iter().any(|(_, v)| *v == 1.0)
        })
        .await;
    }
}

impl Prometheus {
    /// The image's way to start: `prometheus/entrypoint.sh` renders the configuration from a
    /// copy of `prometheus/` (each file first passed through `edit(name, text, own address)`,
    /// for test intervals and addresses) with `vars` as the service's variables, and starts
    /// Debian's `prometheus` on a free loopback port with `args` added.
    pub fn from_entrypoint(
        vars: &[(&str, &str)],
        args: &[&str],
        edit: impl Fn(&str, String, &str) -> String,
    ) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let port = super::net::free_port();
        let own = format!("127.0.0.1:{port}");
        let source = dir.path().join("source");
        std::fs::create_dir_all(source.join("rules")).unwrap();
        let config = std::fs::read_to_string("prometheus/prometheus.yml").unwrap();
        std::fs::write(
            source.join("prometheus.yml"),
            edit("prometheus.yml", config, &own),
        )
        .unwrap();
        for entry in std::fs::read_dir("prometheus/rules").unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "yml") {
                let name = path.file_name().unwrap().to_string_lossy().to_string();
                let text = std::fs::read_to_string(&path).unwrap();
                std::fs::write(source.join("rules").join(&name), edit(&name, text, &own)).unwrap();
            }
        }
        let child = quiet(
            Command::new("sh")
                .arg("prometheus/entrypoint.sh")
                .args([
                    format!("--storage.tsdb.path={}", dir.path().join("data").display()),
                    format!("--web.listen-address={own}"),
                ])
                .args(args)
                .env_clear()
                .env("PATH", std::env::var_os("PATH").unwrap_or_default())
                .env("PROMETHEUS_SOURCE_DIR", &source)
                .env("PROMETHEUS_CONFIG_DIR", dir.path().join("config"))
                .env("PROMETHEUS_BIN", "prometheus")
                .envs(vars.iter().copied()),
            "sh prometheus/entrypoint.sh",
        );
        Prometheus {
            _child: child,
            url: format!("http://{own}"),
            _dir: dir,
        }
    }
}

/// The shipped prometheus.yml with 1 s intervals and the compose addresses replaced: the
/// exporter's internal port, Alertmanager and Prometheus itself.
pub fn test_addresses(config: String, exporter: &str, alertmanager: &str, own: &str) -> String {
    let mut config = config;
    for (from, to) in [
        ("\"exporter:8001\"", format!("\"{exporter}\"")),
        ("http://exporter:8001/sd", format!("http://{exporter}/sd")),
        ("\"alertmanager:9093\"", format!("\"{alertmanager}\"")),
        ("\"localhost:9090\"", format!("\"{own}\"")),
        ("scrape_interval: 60s", "scrape_interval: 1s".to_string()),
        (
            "evaluation_interval: 60s",
            "evaluation_interval: 1s".to_string(),
        ),
        ("refresh_interval: 60s", "refresh_interval: 1s".to_string()),
        ("scrape_timeout: 10s", "scrape_timeout: 1s".to_string()),
    ] {
        assert!(
            config.contains(from),
            "{from} moved in prometheus.yml; update this test"
        );
        config = config.replace(from, &to);
    }
    config
}
