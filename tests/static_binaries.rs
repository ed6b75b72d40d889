//! The static release binaries in `dist/`, as the devices run them: x86_64 directly (on an
//! x86_64 host), aarch64 under `qemu-aarch64-static` and armv7 under `qemu-arm-static` (Debian's
//! qemu-user-static, called by name: binfmt_misc need not be set up). Each is checked to be a
//! stripped, fully static ELF of its architecture within the 4 MiB budget, to crawl the fake
//! balena API and serve the right `/metrics`, and to speak HTTPS with Mozilla's roots built in
//! plus a private CA given by `BALENA_CA_CERT` (the openBalena case).
//!
//! Every test is `#[ignore]`d because it needs the binaries: build them first, then run
//!
//! ```sh
//! scripts/build-static
//! cargo test --test static_binaries -- --ignored --show-output
//! ```
//!
//! `DIST_DIR` (default `dist`, relative to the crate root) says where the binaries are. Startup
//! times are printed (see `--show-output`), never asserted: qemu and a busy machine vary a lot.

#[path = "common"]
mod common {
    pub mod fake;
    pub mod net;
    pub mod promtext;
}

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::fake::{Account, FakeBalena};
use common::promtext::{self, value, Sample};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The size budget of one stripped binary.
const MAX_BYTES: u64 = 4 * 1024 * 1024;

struct Target {
    triple: &'static str,
    /// `std::env::consts::ARCH` of a host that runs the binary without emulation.
    native_arch: &'static str,
    /// The qemu user-mode emulator for other hosts.
    qemu: &'static str,
    /// What `file` says about the machine.
    file_machine: &'static str,
    /// What `readelf -h` says about the machine.
    readelf_machine: &'static str,
}

const X86_64: Target = Target {
    triple: "x86_64-unknown-linux-musl",
    native_arch: "x86_64",
    qemu: "qemu-x86_64-static",
    file_machine: "ELF 64-bit LSB executable, x86-64",
    readelf_machine: "Advanced Micro Devices X86-64",
};
const AARCH64: Target = Target {
    triple: "aarch64-unknown-linux-musl",
    native_arch: "aarch64",
    qemu: "qemu-aarch64-static",
    file_machine: "ELF 64-bit LSB executable, ARM aarch64",
    readelf_machine: "AArch64",
};
const ARMV7: Target = Target {
    triple: "armv7-unknown-linux-musleabihf",
    native_arch: "arm",
    qemu: "qemu-arm-static",
    file_machine: "ELF 32-bit LSB executable, ARM, EABI5",
    readelf_machine: "ARM",
};
const TARGETS: [&Target; 3] = [&X86_64, &AARCH64, &ARMV7];

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn tls_fixture(name: &str) -> PathBuf {
    crate_dir().join("tests/fixtures/tls").join(name)
}

impl Target {
    fn binary(&self) -> PathBuf {
        let dist = std::env::var_os("DIST_DIR").map_or_else(|| "dist".into(), PathBuf::from);
        let path = crate_dir()
            .join(dist)
            .join(format!("balena-exporter-{}", self.triple));
        assert!(
            path.is_file(),
            "{} is missing: build the static binaries first with scripts/build-static \
             (or point DIST_DIR at them)",
            path.display()
        );
        path
    }

    fn native(&self) -> bool {
        std::env::consts::ARCH == self.native_arch
    }

    /// How the binary runs on this host: directly, or under its qemu user-mode emulator.
    fn runner(&self) -> String {
        if self.native() {
            "natively".into()
        } else {
            format!("under {}", self.qemu)
        }
    }

    /// A command that runs the binary with `qemu_args` passed to qemu (ignored when native).
    fn command(&self, qemu_args: &[&str]) -> Command {
        let binary = self.binary();
        if self.native() {
            return Command::new(binary);
        }
        assert!(
            tool_exists(self.qemu),
            "{} is not installed: apt-get install qemu-user-static",
            self.qemu
        );
        let mut command = Command::new(self.qemu);
        command.args(qemu_args).arg(binary);
        command
    }
}

fn tool_exists(name: &str) -> bool {
    Command::new(name)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// Runs a tool to completion and returns its stdout; panics with its stderr on failure.
fn output_of(tool: &str, args: &[&str], path: &Path) -> String {
    let out = Command::new(tool)
        .args(args)
        .arg(path)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {tool} (apt-get install binutils file): {e}");
        });
    assert!(
        out.status.success(),
        "{tool} {args:?} {} failed: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

// ----------------------------------------------------------------------------- the files

#[test]
#[ignore = "needs dist/ from scripts/build-static"]
fn binaries_are_static_stripped_and_within_budget() {
    for target in TARGETS {
        let path = target.binary();
        let file = output_of("file", &["-b"], &path);
        let header = output_of("readelf", &["-hW"], &path);
        let segments = output_of("readelf", &["-lW"], &path);
        let dynamic = output_of("readelf", &["-dW"], &path);
        let size = std::fs::metadata(&path).unwrap().len();
        println!(
            "{}: {size} bytes ({:.2} MiB); file: {}",
            target.triple,
            size as f64 / 1024.0 / 1024.0,
            file.trim()
        );

        let t = target.triple;
        assert!(file.starts_with(target.file_machine), "{t}: {file}");
        assert!(file.contains("statically linked"), "{t}: {file}");
        assert!(
            file.contains(", stripped") && !file.contains("not stripped"),
            "{t}: {file}"
        );
        let field = |name: &str| {
            header
                .lines()
                .find_map(|l| l.trim().strip_prefix(name))
                .map(str::trim)
        };
        assert_eq!(field("Machine:"), Some(target.readelf_machine), "{t}");
        assert_eq!(field("Type:"), Some("EXEC (Executable file)"), "{t}");
        assert!(
            !segments.contains("INTERP") && !segments.contains("program interpreter"),
            "{t} asks for a program interpreter:\n{segments}"
        );
        assert!(
            !segments.contains("DYNAMIC"),
            "{t} has a dynamic segment:\n{segments}"
        );
        assert!(
            dynamic.contains("There is no dynamic section in this file."),
            "{t} has a dynamic section:\n{dynamic}"
        );
        assert!(
            size <= MAX_BYTES,
            "{t} is {size} bytes, over the {MAX_BYTES}-byte budget"
        );
    }
}

#[test]
#[ignore = "needs dist/ from scripts/build-static"]
fn mozilla_roots_and_no_openssl_are_built_in() {
    // webpki-roots compiles Mozilla's root store into the binary as DER: the subject names of
    // well-known roots are there as plain bytes. No OpenSSL means no libssl version string.
    for target in TARGETS {
        let bytes = std::fs::read(target.binary()).unwrap();
        let has = |needle: &str| bytes.windows(needle.len()).any(|w| w == needle.as_bytes());
        for root in ["ISRG Root X1", "DigiCert Global Root G2", "USERTrust RSA"] {
            assert!(
                has(root),
                "{}: no {root:?} in the binary: the built-in trust store is missing",
                target.triple
            );
        }
        assert!(!has("OpenSSL 3."), "{}: links OpenSSL", target.triple);
    }
}

// ----------------------------------------------------------------------------- running

/// One binary running on a free loopback port, stderr to a file, killed on drop.
struct Running {
    child: Child,
    url: String,
    log: PathBuf,
    started: Instant,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

/// Settings for a slow emulated CPU: 5 s per request, no retries. The first crawl starts at
/// once; the tests are over before a second one. The metrics are open: these tests are
/// about the binaries, not about access.
const SETTINGS: &[(&str, &str)] = &[
    ("PUBLIC_METRICS", "true"),
    ("CRAWL_INTERVAL", "30"),
    ("REQUEST_TIMEOUT", "5"),
    ("API_RETRIES", "0"),
    ("RUST_LOG", "info"),
];

impl Running {
    fn start(target: &Target, qemu_args: &[&str], vars: &[(&str, &str)]) -> Running {
        let port = common::net::free_port();
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("stderr.log");
        let started = Instant::now();
        let child = target
            .command(qemu_args)
            .env_clear()
            .envs([("LISTEN_ADDRESS", "127.0.0.1"), ("PORT", &port.to_string())])
            .envs(SETTINGS.iter().copied())
            .envs(vars.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", target.triple));
        Running {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log,
            started,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap(),
            _dir: dir,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn get(&self, path: &str) -> Option<(u16, String)> {
        let r = self
            .http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .ok()?;
        let status = r.status().as_u16();
        Some((status, r.text().await.ok()?))
    }

    /// Polls `path` every 10 ms until it answers 200; returns the body and the time since
    /// the process was started. Panics with the log after 30 s or if the process exits.
    async fn wait_for_200(&mut self, path: &str) -> (String, Duration) {
        let deadline = self.started + Duration::from_secs(30);
        loop {
            if let Some((200, body)) = self.get(path).await {
                return (body, self.started.elapsed());
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "exited ({status}) before {path} answered 200; log:\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "no 200 on {path} within 30 s; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn metrics(&self) -> Vec<Sample> {
        let (status, body) = self.get("/metrics").await.expect("/metrics answers");
        assert_eq!(status, 200);
        promtext::parse(&body)
    }

    /// Scrapes until `check` holds (30 s at most).
    async fn wait_metrics(&self, what: &str, check: impl Fn(&[Sample]) -> bool) -> Vec<Sample> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let samples = self.metrics().await;
            if check(&samples) {
                return samples;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM (qemu passes it on to the program); returns the exit code.
    async fn terminate(mut self) -> Option<i32> {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        for _ in 0..200 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no exit within 10 s of SIGTERM; log:\n{}", self.log());
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Per fleet slug of the sample account: (devices online, devices).
fn expected_fleets(account: &Account) -> Vec<(String, f64, f64)> {
    account
        .fleets
        .iter()
        .map(|f| {
            let devices = account.devices_of(f.id);
            let online = devices.iter().filter(|d| d.is_online).count();
            (f.slug.clone(), online as f64, devices.len() as f64)
        })
        .collect()
}

fn assert_sample_account(target: &Target, samples: &[Sample]) {
    let account = Account::sample();
    let fleets = expected_fleets(&account);
    assert_eq!(
        promtext::family(samples, "balena_devices_online").len(),
        fleets.len(),
        "{}: one balena_devices_online per fleet",
        target.triple
    );
    for (slug, online, total) in fleets {
        let labels = [("fleet_slug", slug.as_str())];
        assert_eq!(
            value(samples, "balena_devices_online", &labels),
            Some(online),
            "{}: balena_devices_online of {slug}",
            target.triple
        );
        assert_eq!(
            value(samples, "balena_fleet_devices", &labels),
            Some(total),
            "{}: balena_fleet_devices of {slug}",
            target.triple
        );
    }
    assert_eq!(value(samples, "balena_up", &[]), Some(1.0));
    assert_eq!(
        value(
            samples,
            "balena_exporter_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        Some(1.0)
    );
}

async fn serves_the_fake_accounts_metrics(target: &Target) {
    let fake = FakeBalena::start(Account::sample()).await;
    let url = fake.url();
    let mut running = Running::start(
        target,
        &[],
        &[("BALENA_TOKEN", "sample-token"), ("BALENA_API_URL", &url)],
    );
    let (_, first_metrics) = running.wait_for_200("/metrics").await;
    let (_, ready) = running.wait_for_200("/-/ready").await;
    let samples = running.metrics().await;
    assert_sample_account(target, &samples);
    println!(
        "{} {}: startup to first /metrics {} ms, to /-/ready (first crawl done) {} ms",
        target.triple,
        target.runner(),
        first_metrics.as_millis(),
        ready.as_millis()
    );
    let log = running.log();
    assert_eq!(running.terminate().await, Some(0), "exit code; log:\n{log}");
}

#[tokio::test]
#[ignore = "needs dist/ from scripts/build-static"]
async fn x86_64_serves_the_fake_accounts_metrics() {
    serves_the_fake_accounts_metrics(&X86_64).await;
}

#[tokio::test]
#[ignore = "needs dist/ from scripts/build-static and qemu-user-static"]
async fn aarch64_serves_the_fake_accounts_metrics() {
    serves_the_fake_accounts_metrics(&AARCH64).await;
}

#[tokio::test]
#[ignore = "needs dist/ from scripts/build-static and qemu-user-static"]
async fn armv7_serves_the_fake_accounts_metrics() {
    serves_the_fake_accounts_metrics(&ARMV7).await;
}

// ----------------------------------------------------------------------------- TLS

/// An HTTPS front for the fake balena API on 127.0.0.1, with the test CA's server certificate
/// (tests/fixtures/tls): it terminates TLS (ALPN h2 and http/1.1, as the real API offers) and
/// passes the bytes on to the plain-HTTP fake. It records every failed handshake.
struct TlsFront {
    addr: SocketAddr,
    handshakes: Arc<Mutex<Vec<Result<(), String>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl TlsFront {
    async fn start(backend: SocketAddr) -> TlsFront {
        let certs = CertificateDer::pem_file_iter(tls_fixture("server.pem"))
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_file(tls_fixture("server.key")).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let handshakes = Arc::new(Mutex::new(Vec::new()));
        let record = handshakes.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                let record = record.clone();
                tokio::spawn(async move {
                    match acceptor.accept(tcp).await {
                        Ok(mut tls) => {
                            record.lock().unwrap().push(Ok(()));
                            if let Ok(mut plain) = TcpStream::connect(backend).await {
                                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                            }
                        }
                        Err(e) => record.lock().unwrap().push(Err(e.to_string())),
                    }
                });
            }
        });
        TlsFront {
            addr,
            handshakes,
            task,
        }
    }

    /// The API root as the exporter is given it: by IP address, which the certificate names.
    fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.addr.port())
    }

    fn handshakes(&self) -> (usize, Vec<String>) {
        let all = self.handshakes.lock().unwrap();
        let ok = all.iter().filter(|h| h.is_ok()).count();
        let failed = all.iter().filter_map(|h| h.clone().err()).collect();
        (ok, failed)
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn backend_addr(fake: &FakeBalena) -> SocketAddr {
    fake.url().strip_prefix("http://").unwrap().parse().unwrap()
}

/// With `BALENA_CA_CERT` naming the private CA, the binary crawls over HTTPS.
async fn crawls_over_https_with_the_private_ca(target: &Target, qemu_args: &[&str]) -> String {
    let fake = FakeBalena::start(Account::sample()).await;
    let front = TlsFront::start(backend_addr(&fake)).await;
    let ca = tls_fixture("ca.pem");
    let mut running = Running::start(
        target,
        qemu_args,
        &[
            ("BALENA_TOKEN", "sample-token"),
            ("BALENA_API_URL", &front.url()),
            ("BALENA_CA_CERT", ca.to_str().unwrap()),
        ],
    );
    let (_, ready) = running.wait_for_200("/-/ready").await;
    let samples = running.metrics().await;
    assert_sample_account(target, &samples);
    let (ok, failed) = front.handshakes();
    assert!(
        ok >= 1 && failed.is_empty(),
        "handshakes: {ok} ok, failed: {failed:?}"
    );
    assert!(
        fake.requests().iter().all(|r| r.authorized),
        "every request reached the fake through TLS with the token"
    );
    println!(
        "{} {}: HTTPS with BALENA_CA_CERT, first crawl done after {} ms",
        target.triple,
        target.runner(),
        ready.as_millis()
    );
    let log = running.log();
    assert_eq!(running.terminate().await, Some(0), "exit code; log:\n{log}");
    log
}

/// Without `BALENA_CA_CERT` the private CA is unknown: the crawl fails as a transport error
/// (a certificate error, seen by the server as a failed handshake), and nothing reaches the API.
async fn refuses_an_unknown_ca(target: &Target) {
    let fake = FakeBalena::start(Account::sample()).await;
    let front = TlsFront::start(backend_addr(&fake)).await;
    let mut running = Running::start(
        target,
        &[],
        &[
            ("BALENA_TOKEN", "sample-token"),
            ("BALENA_API_URL", &front.url()),
        ],
    );
    running.wait_for_200("/metrics").await;
    let samples = running
        .wait_metrics("a transport error from the first crawl", |s| {
            value(s, "balena_crawl_errors_total", &[("kind", "transport")]).unwrap_or(0.0) >= 1.0
        })
        .await;
    assert_eq!(value(&samples, "balena_up", &[]), Some(0.0));
    assert!(promtext::family(&samples, "balena_devices_online").is_empty());
    assert_eq!(running.get("/-/ready").await.map(|r| r.0), Some(503));
    let (ok, failed) = front.handshakes();
    assert_eq!(ok, 0, "no handshake may succeed without the CA");
    assert!(!failed.is_empty(), "the server saw the failed handshake");
    assert!(fake.requests().is_empty(), "nothing reached the API");
    let log = running.log();
    assert!(
        log.contains("certificate") || log.contains("UnknownIssuer"),
        "the log names the certificate problem:\n{log}"
    );
    println!(
        "{} {}: without BALENA_CA_CERT: server saw {:?}",
        target.triple,
        target.runner(),
        failed[0]
    );
}

/// One test per binary: it crawls over HTTPS with the private CA, and refuses an unknown one.
macro_rules! speaks_https_with_a_private_ca {
    ($($name:ident: $binary:expr, $needs:literal;)*) => {$(
        #[tokio::test]
        #[ignore = $needs]
        async fn $name() {
            crawls_over_https_with_the_private_ca(&$binary, &[]).await;
            refuses_an_unknown_ca(&$binary).await;
        }
    )*};
}

speaks_https_with_a_private_ca! {
    x86_64_speaks_https_with_a_private_ca: X86_64, "needs dist/ from scripts/build-static";
    aarch64_speaks_https_with_a_private_ca: AARCH64, "needs dist/ from scripts/build-static and qemu-user-static";
    armv7_speaks_https_with_a_private_ca: ARMV7, "needs dist/ from scripts/build-static and qemu-user-static";
}

/// The armv7 binary under `qemu-arm-static -strace` (which logs every system call of the
/// program to stderr): an HTTPS crawl opens the BALENA_CA_CERT file and nothing under the
/// system's trust store locations, so a scratch image without /etc/ssl works.
#[tokio::test]
#[ignore = "needs dist/ from scripts/build-static and qemu-user-static"]
async fn armv7_reads_no_system_trust_store() {
    if ARMV7.native() {
        // -strace is a qemu option; on a native armv7 host the other tests cover TLS.
        return;
    }
    let log = crawls_over_https_with_the_private_ca(&ARMV7, &["-strace"]).await;
    let opens: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("open(") || l.contains("openat("))
        .collect();
    assert!(
        opens
            .iter()
            .any(|l| l.contains("tests/fixtures/tls/ca.pem")),
        "BALENA_CA_CERT is read; opens:\n{}",
        opens.join("\n")
    );
    for store in [
        "/etc/ssl",
        "/etc/pki",
        "/usr/share/ca-certificates",
        "/usr/lib/ssl",
    ] {
        assert!(
            !log.contains(store),
            "the binary looked at {store}:\n{}",
            opens.join("\n")
        );
    }
}
