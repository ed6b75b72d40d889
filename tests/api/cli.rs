//! The binary as a user runs it: startup errors, logs, signals.

use crate::common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::exporter::wait_for;
use common::fake::{Account, FakeBalena, Fault};

const BIN: &str = env!("CARGO_BIN_EXE_balena-exporter");

/// Runs the binary with only `vars` in its environment and returns (exit code, stderr).
fn run_to_exit(vars: &[(&str, &str)]) -> (Option<i32>, String) {
    let out = Command::new(BIN)
        .env_clear()
        .envs(vars.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn startup_errors_are_one_line_naming_the_variable() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[], "BALENA_TOKEN is not set: set BALENA_TOKEN (or API_KEY)"),
        (&[("BALENA_API_KEY", "device-key")], "BALENA_API_KEY is the device key balena injects, which can read only its own device and cannot list fleets"),
        (&[("BALENA_TOKEN", "t"), ("CRAWL_INTERVAL", "soon")], "CRAWL_INTERVAL: expected a number of seconds"),
        (&[("BALENA_TOKEN", "t"), ("CRAWL_INTERVAL", "10"), ("REQUEST_TIMEOUT", "20")], "REQUEST_TIMEOUT (20s) must be below CRAWL_INTERVAL (10s)"),
        (&[("BALENA_TOKEN", "t"), ("PORT", "eighty")], "PORT: expected a whole number from 1 to 65535"),
    ];
    for (vars, expected) in cases {
        let (code, stderr) = run_to_exit(vars);
        assert_eq!(code, Some(1), "{vars:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "one line for {vars:?}: {stderr}");
        assert!(
            stderr.starts_with("balena-exporter: ") && stderr.contains(expected),
            "{vars:?}: {stderr}"
        );
    }
}

#[test]
fn port_in_use_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let (code, stderr) = run_to_exit(&[
        ("BALENA_TOKEN", "t"),
        ("LISTEN_ADDRESS", "127.0.0.1"),
        ("PORT", &port),
    ]);
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains(&format!(
            "LISTEN_ADDRESS/PORT: cannot listen on 127.0.0.1:{port}"
        )),
        "{stderr}"
    );
}

#[test]
fn unknown_arguments_are_refused() {
    let out = Command::new(BIN).arg("--bogus").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown argument \"--bogus\""));
}

#[test]
fn help_lists_every_variable() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    for v in balena_exporter::config::VARIABLES {
        assert!(
            help.contains(&format!("  {} ", v.name)),
            "{} missing:\n{help}",
            v.name
        );
    }
}

/// The binary on a free loopback port with its stderr going to a file.
struct Running {
    child: Child,
    url: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Running {
    /// With fast crawls (0.5 s), then `vars`.
    fn start(args: &[&str], vars: &[(&str, &str)]) -> Running {
        let fast = [
            ("CRAWL_INTERVAL", "0.5"),
            ("REQUEST_TIMEOUT", "0.3"),
            ("API_RETRIES", "1"),
            ("PUBLIC_METRICS", "true"),
        ];
        Running::bare(args, &[&fast[..], vars].concat())
    }

    /// With only `vars` (and the loopback address).
    fn bare(args: &[&str], vars: &[(&str, &str)]) -> Running {
        let port = common::net::free_port();
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("stderr.log");
        let child = Command::new(BIN)
            .args(args)
            .env_clear()
            .envs([("LISTEN_ADDRESS", "127.0.0.1"), ("PORT", &port.to_string())])
            .envs(vars.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Running {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log,
            _dir: dir,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn status(&self, path: &str) -> Option<u16> {
        let r = reqwest::get(format!("{}{path}", self.url)).await.ok()?;
        Some(r.status().as_u16())
    }

    /// SIGTERM, as balena sends on an update; returns the exit code.
    async fn terminate(mut self) -> (Option<i32>, String) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        for _ in 0..100 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status.code(), self.log());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = self.child.kill();
        panic!("no exit within 5 s of SIGTERM; log:\n{}", self.log());
    }
}

#[tokio::test]
async fn the_token_never_reaches_the_log_even_at_trace_level() {
    const SECRET: &str = "s3cr3t-T0KEN-7f3a9c";
    let mut account = Account::sample();
    account.tokens.push(SECRET.into());
    let fake = FakeBalena::start(account).await;
    let running = Running::start(
        &[],
        &[
            ("BALENA_TOKEN", SECRET),
            ("BALENA_API_URL", &fake.url()),
            ("RUST_LOG", "trace"),
        ],
    );
    wait_for("ready", || async {
        running.status("/-/ready").await == Some(200)
    })
    .await;
    // Error paths log too: a failing crawl, then a recovery.
    fake.set_fault(Some(Fault::Unavailable));
    wait_for("a failed crawl in the log", || async {
        running.log().contains("crawl failed kind=server_error")
    })
    .await;
    fake.set_fault(None);
    wait_for("recovery", || async {
        running.log().matches("crawl ok").count() >= 2
    })
    .await;
    let (code, log) = running.terminate().await;
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("TRACE"), "trace logging was on");
    assert!(log.lines().count() > 20, "{log}");
    assert!(!log.contains(SECRET), "the token is in the log");
    assert!(!log.contains("s3cr3t"), "part of the token is in the log");
    assert!(
        log.contains("shutting down") && log.contains("stopped"),
        "{log}"
    );
}

/// Runs the binary on `fake` with `token` until the log has said `refusal` twice; returns it
/// running. The first line that says `refusal` is an error of kind `unauthorized` that also
/// says `advice`, and the token is nowhere in the log.
async fn refused_twice(fake: &FakeBalena, token: &str, refusal: &str, advice: &str) -> Running {
    let url = fake.url();
    let vars = [
        ("BALENA_TOKEN", token),
        ("BALENA_API_URL", &url),
        ("CRAWL_INTERVAL", "0.4"),
    ];
    let running = Running::start(&[], &vars);
    wait_for(
        &format!("two lines saying {refusal:?} in the log"),
        || async { running.log().matches(refusal).count() >= 2 },
    )
    .await;
    let log = running.log();
    let line = log.lines().find(|l| l.contains(refusal)).unwrap();
    assert!(
        line.contains("ERROR") && line.contains("kind=unauthorized") && line.contains(advice),
        "{line}"
    );
    assert!(!log.contains(token), "the token itself is never logged");
    running
}

#[tokio::test]
async fn a_rejected_token_is_logged_and_the_process_stays_up() {
    let fake = FakeBalena::start(Account::sample()).await;
    let advice = "set BALENA_TOKEN to a valid user or named API key";
    let running = refused_twice(&fake, "revoked-key", "rejected the token", advice).await;
    assert_eq!(running.status("/-/healthy").await, Some(200));
    assert_eq!(running.status("/-/ready").await, Some(503));
    let (code, _) = running.terminate().await;
    assert_eq!(code, Some(0));
}

#[tokio::test]
async fn a_device_key_is_named_as_such_and_retried() {
    let mut account = Account::sample();
    account.device_keys = vec![("the-device-key".into(), 5)];
    let fake = FakeBalena::start(account).await;
    let advice = "can read only its own device and fleet, so it cannot list the fleets";
    let running = refused_twice(&fake, "the-device-key", "is a device API key", advice).await;
    // The key passed whoami; nothing else was asked with it.
    assert!(fake.requests().iter().all(|r| r.path == "/actor/v1/whoami"));
    assert_eq!(running.status("/-/ready").await, Some(503));
    let (code, _) = running.terminate().await;
    assert_eq!(code, Some(0));
}

/// `CRAWL_INTERVAL` is the one variable the seed documents: setting it alone must work.
#[tokio::test]
async fn a_short_interval_alone_starts_and_becomes_ready() {
    let fake = FakeBalena::start(Account::sample()).await;
    for interval in ["10", "5"] {
        let running = Running::bare(
            &[],
            &[
                ("BALENA_TOKEN", "sample-token"),
                ("BALENA_API_URL", &fake.url()),
                ("CRAWL_INTERVAL", interval),
            ],
        );
        wait_for("ready", || async {
            running.status("/-/ready").await == Some(200)
        })
        .await;
        let (code, log) = running.terminate().await;
        assert_eq!(code, Some(0), "CRAWL_INTERVAL={interval}: {log}");
    }
}

/// openBalena has no public device URLs: `/sd` in public mode is empty, and the log says why
/// and what to do, once.
#[tokio::test]
async fn no_public_urls_is_explained_once_in_the_log() {
    let mut account = Account::sample();
    for d in &mut account.devices {
        d.is_web_accessible = false;
    }
    let fake = FakeBalena::start(account).await;
    let running = Running::start(
        &[],
        &[
            ("BALENA_TOKEN", "sample-token"),
            ("BALENA_API_URL", &fake.url()),
            ("CRAWL_INTERVAL", "0.2"),
            ("REQUEST_TIMEOUT", "0.1"),
        ],
    );
    wait_for("several crawls", || async {
        fake.requests()
            .iter()
            .filter(|r| r.path == "/actor/v1/whoami")
            .count()
            >= 4
    })
    .await;
    let (_, log) = running.terminate().await;
    let notes: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("sd lists no targets"))
        .collect();
    assert_eq!(notes.len(), 1, "{log}");
    assert!(notes[0].contains("SD_MODE=lan"), "{}", notes[0]);
}

#[tokio::test]
async fn healthcheck_flag_probes_the_running_exporter() {
    let running = Running::start(&["--demo"], &[]);
    let port = running.url.rsplit(':').next().unwrap().to_string();
    wait_for("healthy", || async {
        running.status("/-/healthy").await == Some(200)
    })
    .await;
    let mut healthcheck = Command::new(BIN);
    healthcheck
        .arg("--healthcheck")
        .env_clear()
        .env("PORT", &port);
    let ok = healthcheck.output().unwrap();
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let (code, _) = running.terminate().await;
    assert_eq!(code, Some(0));
    let down = healthcheck.output().unwrap();
    assert_eq!(down.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&down.stderr)
        .contains(&format!("cannot reach 127.0.0.1:{port}/-/healthy")));
}

#[tokio::test]
async fn demo_mode_serves_a_simulated_account_without_a_token() {
    let running = Running::start(&["--demo"], &[]);
    wait_for("demo ready", || async {
        running.status("/-/ready").await == Some(200)
    })
    .await;
    let body = reqwest::get(format!("{}/metrics", running.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let samples = common::promtext::parse(&body);
    assert_eq!(
        common::promtext::family(&samples, "balena_devices_online").len(),
        3
    );
    assert_eq!(
        common::promtext::family(&samples, "balena_device_info").len(),
        24
    );
    let (code, log) = running.terminate().await;
    assert_eq!(code, Some(0), "{log}");
}
