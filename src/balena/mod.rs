//! The balena API client: authenticated GETs with a timeout, retry with backoff on
//! transport errors and 5xx, `Retry-After` on 429, and typed errors with a fixed `kind()`.

pub mod model;
pub mod query;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, RETRY_AFTER};
use reqwest::StatusCode;
use serde::de::DeserializeOwned;

use crate::config::Config;
use crate::metrics::ApiCounters;

/// Sent with every request, so API operators can tell who is calling.
pub const USER_AGENT: &str = concat!("balena-exporter/", env!("CARGO_PKG_VERSION"));

/// Every value `ApiError::kind()` can return, for metric labels.
pub const ERROR_KINDS: &[&str] = &[
    "unauthorized",
    "rate_limited",
    "server_error",
    "client_error",
    "timeout",
    "transport",
    "decode",
    "paging",
];

/// Why a request (or a crawl) failed. Messages are one line and never hold the token.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("the balena API rejected the token (HTTP {status} on {resource}): set BALENA_TOKEN to a valid user or named API key")]
    Unauthorized { status: u16, resource: &'static str },
    #[error("rate limited by the balena API (HTTP 429 on {resource}), retry after {}s", retry_after.as_secs_f64())]
    RateLimited {
        resource: &'static str,
        retry_after: Duration,
    },
    #[error("the balena API answered HTTP {status} on {resource}")]
    Server { status: u16, resource: &'static str },
    #[error("the balena API answered HTTP {status} on {resource}: {body}")]
    Client {
        status: u16,
        resource: &'static str,
        body: String,
    },
    #[error("request to {resource} timed out after {}s", after.as_secs_f64())]
    Timeout {
        resource: &'static str,
        after: Duration,
    },
    #[error("cannot reach the balena API ({resource}): {message}")]
    Transport {
        resource: &'static str,
        message: String,
    },
    #[error("cannot parse the answer to {resource}: {message}")]
    Decode {
        resource: &'static str,
        message: String,
    },
    #[error("device paging made no progress at offset {skip}: the server ignored $skip")]
    Paging { skip: u64 },
}

impl ApiError {
    /// A fixed label for metrics; one of `ERROR_KINDS`.
    pub fn kind(&self) -> &'static str {
        match self {
            ApiError::Unauthorized { .. } => "unauthorized",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::Server { .. } => "server_error",
            ApiError::Client { .. } => "client_error",
            ApiError::Timeout { .. } => "timeout",
            ApiError::Transport { .. } => "transport",
            ApiError::Decode { .. } => "decode",
            ApiError::Paging { .. } => "paging",
        }
    }

    fn is_retryable(&self) -> bool {
        matches!(
            self,
            ApiError::RateLimited { .. }
                | ApiError::Server { .. }
                | ApiError::Timeout { .. }
                | ApiError::Transport { .. }
        )
    }
}

/// An authenticated client for one balena API root.
pub struct Client {
    http: reqwest::Client,
    base: String,
    timeout: Duration,
    retries: u32,
    /// The longest `Retry-After` waited for inside a crawl; longer ones end the crawl.
    max_retry_after: Duration,
    counters: ApiCounters,
    sent: AtomicU64,
}

impl Client {
    pub fn new(config: &Config, counters: ApiCounters) -> Result<Client, ApiError> {
        let mut auth =
            HeaderValue::try_from(format!("Bearer {}", config.token.expose())).map_err(|_| {
                ApiError::Transport {
                    resource: "config",
                    message: "the token is not a valid HTTP header value".into(),
                }
            })?;
        // Marked sensitive so that the HTTP stack never prints it in debug output.
        auth.set_sensitive(true);
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, auth);

        let mut builder = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .default_headers(headers)
            .timeout(config.request_timeout)
            .connect_timeout(config.request_timeout)
            .redirect(reqwest::redirect::Policy::none());
        if let Some(pem) = &config.ca_cert_pem {
            let certs =
                reqwest::Certificate::from_pem_bundle(pem).map_err(|e| ApiError::Transport {
                    resource: "config",
                    message: format!("BALENA_CA_CERT: {e}"),
                })?;
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder.build().map_err(|e| ApiError::Transport {
            resource: "config",
            message: describe(&e),
        })?;
        Ok(Client {
            http,
            base: config.api_url.clone(),
            timeout: config.request_timeout,
            retries: config.api_retries,
            max_retry_after: config.crawl_interval,
            counters,
            sent: AtomicU64::new(0),
        })
    }

    /// Requests sent so far, retries included.
    pub fn requests_sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Confirms the token: fleet reads answer an unknown token with an empty list.
    pub async fn whoami(&self) -> Result<model::Actor, ApiError> {
        self.get("whoami", query::WHOAMI).await
    }

    pub async fn fleets(&self) -> Result<Vec<model::Fleet>, ApiError> {
        let envelope: model::Envelope<model::Fleet> =
            self.get("application", &query::fleets()).await?;
        Ok(envelope.d)
    }

    pub async fn device_page(
        &self,
        fleet_ids: Option<&[u64]>,
        top: u32,
        skip: u64,
    ) -> Result<Vec<model::Device>, ApiError> {
        let path = query::devices(fleet_ids, top, skip);
        let envelope: model::Envelope<model::Device> = self.get("device", &path).await?;
        Ok(envelope.d)
    }

    /// GET with retries: transport errors, timeouts and 5xx back off exponentially; a 429
    /// waits for its `Retry-After` unless that is longer than a crawl interval.
    async fn get<T: DeserializeOwned>(
        &self,
        resource: &'static str,
        path: &str,
    ) -> Result<T, ApiError> {
        let mut attempt = 0;
        loop {
            let error = match self.get_once(resource, path).await {
                Ok(value) => return Ok(value),
                Err(e) => e,
            };
            self.counters.error(error.kind());
            if attempt >= self.retries || !error.is_retryable() {
                return Err(error);
            }
            let wait = match &error {
                ApiError::RateLimited { retry_after, .. }
                    if *retry_after > self.max_retry_after =>
                {
                    return Err(error)
                }
                ApiError::RateLimited { retry_after, .. } => *retry_after,
                _ => backoff(attempt),
            };
            log::debug!(
                "api retry resource={resource} attempt={} kind={} wait_ms={} error=\"{error}\"",
                attempt + 1,
                error.kind(),
                wait.as_millis()
            );
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    async fn get_once<T: DeserializeOwned>(
        &self,
        resource: &'static str,
        path: &str,
    ) -> Result<T, ApiError> {
        self.sent.fetch_add(1, Ordering::Relaxed);
        self.counters.request(resource);
        let transport = |e: reqwest::Error| {
            if e.is_timeout() {
                ApiError::Timeout {
                    resource,
                    after: self.timeout,
                }
            } else if e.is_decode() || e.is_body() {
                ApiError::Decode {
                    resource,
                    message: describe(&e),
                }
            } else {
                ApiError::Transport {
                    resource,
                    message: describe(&e),
                }
            }
        };
        let response = self
            .http
            .get(format!("{}{}", self.base, path))
            .send()
            .await
            .map_err(transport)?;
        let status = response.status();
        if status == StatusCode::TOO_MANY_REQUESTS {
            let retry_after = response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<f64>().ok())
                .filter(|s| s.is_finite() && *s >= 0.0)
                .map_or(Duration::from_secs(1), |s| {
                    Duration::from_secs_f64(s.min(86_400.0))
                });
            return Err(ApiError::RateLimited {
                resource,
                retry_after,
            });
        }
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(ApiError::Unauthorized {
                status: status.as_u16(),
                resource,
            });
        }
        if status.is_server_error() {
            return Err(ApiError::Server {
                status: status.as_u16(),
                resource,
            });
        }
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            return Err(ApiError::Client {
                status: status.as_u16(),
                resource,
                body: one_line(&body, 200),
            });
        }
        let body = response.bytes().await.map_err(transport)?;
        serde_json::from_slice(&body).map_err(|e| ApiError::Decode {
            resource,
            message: e.to_string(),
        })
    }
}

/// 0.5 s, 1 s, 2 s, ... capped at 8 s.
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(500 * 2u64.pow(attempt.min(4)))
}

/// A reqwest error with its causes on one line, without the URL.
fn describe(error: &reqwest::Error) -> String {
    let mut message = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    one_line(&message, 300)
}

/// Control characters become spaces and long text is cut, so a log line stays one line.
fn one_line(text: &str, max_chars: usize) -> String {
    let mut out: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(max_chars)
        .collect();
    if text.chars().count() > max_chars {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_listed() {
        let d = Duration::from_secs(1);
        let errors = [
            ApiError::Unauthorized {
                status: 401,
                resource: "r",
            },
            ApiError::RateLimited {
                resource: "r",
                retry_after: d,
            },
            ApiError::Server {
                status: 503,
                resource: "r",
            },
            ApiError::Client {
                status: 400,
                resource: "r",
                body: String::new(),
            },
            ApiError::Timeout {
                resource: "r",
                after: d,
            },
            ApiError::Transport {
                resource: "r",
                message: String::new(),
            },
            ApiError::Decode {
                resource: "r",
                message: String::new(),
            },
            ApiError::Paging { skip: 0 },
        ];
        let kinds: Vec<_> = errors.iter().map(ApiError::kind).collect();
        assert_eq!(kinds, ERROR_KINDS);
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let waits: Vec<_> = (0..7).map(|a| backoff(a).as_millis()).collect();
        assert_eq!(waits, [500, 1000, 2000, 4000, 8000, 8000, 8000]);
    }

    #[test]
    fn one_line_strips_newlines_and_cuts() {
        assert_eq!(one_line("a\nb\r\tc", 10), "a b  c");
        assert_eq!(one_line("abcdef", 3), "abc…");
    }
}
