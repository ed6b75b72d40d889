//! The exporter under test, run as a child process on loopback, and the `/proc` readers that
//! measure its CPU and memory.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{self, PAGE_SIZE};

/// Clock ticks per second of `/proc/<pid>/stat` (`getconf CLK_TCK`; 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

/// CPU seconds (user + system) the process has used so far, 10 ms resolution.
pub(crate) fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the `(comm)`, which may hold spaces: state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (ticks(11) + ticks(12)) as f64 / TICKS_PER_SECOND
}

/// A `/proc/<pid>/status` figure in bytes (`VmHWM`, `VmRSS`).
pub(crate) fn status_bytes(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

fn exporter_bin() -> PathBuf {
    std::env::var_os("BALENA_EXPORTER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| support::target_dir().join("release/balena-exporter"))
}

/// The exporters' logs (warnings and errors only) go to `target/bench/exporter.log`.
fn log_file() -> Stdio {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(support::results_dir().join("exporter.log"))
        .map_or_else(|_| Stdio::null(), Stdio::from)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// The release binary, pointed at `api`, serving on a free loopback port.
pub(crate) struct Exporter {
    child: Child,
    pub(crate) url: String,
    http: reqwest::Client,
}

impl Exporter {
    pub(crate) fn start(api: &str, interval: f64, vars: &[(&str, &str)]) -> Exporter {
        let bin = exporter_bin();
        assert!(
            bin.exists(),
            "{} is missing: run `cargo build --release` first",
            bin.display()
        );
        let port = free_port();
        let timeout = (interval / 2.0).min(10.0);
        let mut command = match std::env::var_os("BENCH_WRAPPER").filter(|w| !w.is_empty()) {
            Some(wrapper) => {
                let mut command = Command::new(wrapper);
                command.arg(&bin);
                command
            }
            None => Command::new(&bin),
        };
        let child = command
            .env_clear()
            .env("BALENA_API_URL", api)
            .env("BALENA_TOKEN", support::generate::TOKEN)
            .env("CRAWL_INTERVAL", interval.to_string())
            .env("REQUEST_TIMEOUT", timeout.to_string())
            .env("PAGE_SIZE", PAGE_SIZE.to_string())
            .env("LISTEN_ADDRESS", "127.0.0.1")
            .env("PORT", port.to_string())
            .env("RUST_LOG", "warn")
            .env("PUBLIC_METRICS", "true")
            .envs(vars.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        Exporter {
            child,
            url: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("http client"),
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    async fn ready(&self) -> bool {
        let url = format!("{}/-/ready", self.url);
        matches!(self.http.get(url).send().await, Ok(r) if r.status() == 200)
    }

    /// Polls `/-/ready` (every 2 ms at first, then every 20 ms so that polling costs the
    /// exporter next to nothing) and returns when it first answers 200.
    pub(crate) async fn wait_ready(&self, limit: Duration) -> Instant {
        let start = Instant::now();
        let mut polls = 0u32;
        loop {
            if self.ready().await {
                return Instant::now();
            }
            assert!(
                start.elapsed() < limit,
                "exporter not ready after {limit:?}"
            );
            polls += 1;
            let pause = if polls < 50 { 2 } else { 20 };
            tokio::time::sleep(Duration::from_millis(pause)).await;
        }
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
