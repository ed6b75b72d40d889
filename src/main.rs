//! The `balena-exporter` binary: arguments, logging, configuration, signals, then `run`.

use std::process::ExitCode;

use anyhow::Context;
use balena_exporter::{config, demo, server, Config};

const USAGE: &str = "\
usage: balena-exporter [--demo | --healthcheck | --version | --help]

Serves Prometheus metrics about the balena fleets a token can see.

  --demo          crawl a simulated account instead of balenaCloud (no token needed)
  --healthcheck   ask the exporter on 127.0.0.1:$PORT for /-/healthy; exit 0 if it
                  answers 200 (for container health checks on an image without curl)
  --version       print the version
  --help          print this help

Configuration comes from these environment variables (README.md has the details):
";

fn main() -> ExitCode {
    let mut demo = false;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--demo" => demo = true,
            "--healthcheck" => return healthcheck(),
            "-h" | "--help" => {
                print!("{USAGE}{}", config::variables_help());
                return ExitCode::SUCCESS;
            }
            "-V" | "--version" => {
                println!("balena-exporter {}", env!("CARGO_PKG_VERSION"));
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("balena-exporter: unknown argument {other:?} (try --help)");
                return ExitCode::from(2);
            }
        }
    }
    env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or(config::DEFAULT_LOG_FILTER),
    )
    .init();

    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("balena-exporter: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(start(demo)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("balena-exporter: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A dependency-free HTTP/1.0 probe of the local `/-/healthy`.
fn healthcheck() -> ExitCode {
    use std::io::{Read, Write};
    use std::time::Duration;
    let port = std::env::var("PORT")
        .ok()
        .filter(|p| !p.trim().is_empty())
        .or_else(|| config::Variable::default_value("PORT").map(String::from))
        .unwrap_or_default();
    let probe = || -> std::io::Result<bool> {
        let addr = format!("127.0.0.1:{port}")
            .parse()
            .map_err(|_| std::io::Error::other("PORT is not a port number"))?;
        let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(3))?;
        stream.set_read_timeout(Some(Duration::from_secs(3)))?;
        stream.write_all(b"GET /-/healthy HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head)?;
        Ok(head.starts_with(b"HTTP/1.") && &head[8..12] == b" 200")
    };
    match probe() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("balena-exporter: /-/healthy did not answer 200");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("balena-exporter: cannot reach 127.0.0.1:{port}/-/healthy: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn start(demo: bool) -> anyhow::Result<()> {
    let mut vars: Vec<(String, String)> = std::env::vars().collect();
    if demo {
        let addr = demo::start().await.context("cannot start the demo API")?;
        vars.retain(|(k, _)| !matches!(k.as_str(), "BALENA_TOKEN" | "API_KEY" | "BALENA_API_URL"));
        vars.push(("BALENA_TOKEN".into(), demo::TOKEN.into()));
        vars.push(("BALENA_API_URL".into(), format!("http://{addr}")));
        // The simulated account changes with the clock and has no `modified_at` to read
        // changes by: every crawl reads it whole.
        vars.retain(|(k, _)| k != "FULL_CRAWL_INTERVAL");
        vars.push(("FULL_CRAWL_INTERVAL".into(), "0".into()));
        // A simulated account reveals nothing: open unless credentials or a choice are set.
        let chosen = |name: &str| vars.iter().any(|(k, v)| k == name && !v.trim().is_empty());
        if !["PUBLIC_METRICS", "METRICS_TOKEN", "METRICS_USERNAME"]
            .iter()
            .any(|n| chosen(n))
        {
            vars.push(("PUBLIC_METRICS".into(), "true".into()));
        }
    }
    let config = Config::from_vars(vars)?;
    let public = server::bind(config.listen)
        .with_context(|| format!("LISTEN_ADDRESS/PORT: cannot listen on {}", config.listen))?;
    let internal =
        match config.internal_listen {
            None => None,
            Some(addr) => Some(server::bind(addr).with_context(|| {
                format!("LISTEN_ADDRESS/INTERNAL_PORT: cannot listen on {addr}")
            })?),
        };
    log::info!(
        "listening address={} internal_address={} access={} api_url={} crawl_interval_s={} fleets={} device_metrics={}{}",
        config.listen,
        config
            .internal_listen
            .map_or("none".to_string(), |a| a.to_string()),
        match config.access {
            config::Access::Open => "open",
            config::Access::Credentials(_) => "credentials",
            config::Access::Closed => "closed",
        },
        config.api.url,
        config.crawl.interval.as_secs_f64(),
        config.crawl.fleets,
        config.device_metrics,
        if demo { " demo=true" } else { "" },
    );
    let listeners = balena_exporter::Listeners { public, internal };
    balena_exporter::run(config, listeners, shutdown_signal()).await?;
    log::info!("stopped");
    Ok(())
}

/// Completes on SIGINT or SIGTERM (balena sends SIGTERM when it updates a service).
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
    log::info!("shutting down");
}
