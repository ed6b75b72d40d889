//! The balena API client: authenticated GETs with a timeout, retry with backoff on
//! transport errors and 5xx, `Retry-After` on 429, keyset paging that cannot lose rows, and
//! typed errors with a fixed `kind()`. It counts what it sends in `ApiStats`, which others read.

pub mod model;
pub mod query;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use reqwest::header::{
    HeaderMap, HeaderValue, ACCEPT_ENCODING, AUTHORIZATION, CONTENT_ENCODING, DATE, ETAG,
    IF_NONE_MATCH, RETRY_AFTER,
};
use reqwest::StatusCode;
use serde::de::DeserializeOwned;

use crate::config::ApiConfig;

/// Sent with every request, so API operators can tell who is calling.
pub const USER_AGENT: &str = concat!("balena-exporter/", env!("CARGO_PKG_VERSION"));

/// What a request reads; `name()` is the label of the request counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resource {
    Whoami,
    Application,
    Device,
    Service,
    Release,
}

impl Resource {
    /// Every resource, in the order of `ApiStats::requests`.
    pub const ALL: &'static [Resource] = &[
        Resource::Whoami,
        Resource::Application,
        Resource::Device,
        Resource::Service,
        Resource::Release,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Resource::Whoami => "whoami",
            Resource::Application => "application",
            Resource::Device => "device",
            Resource::Service => "service",
            Resource::Release => "release",
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    /// Fleets, service names and releases change rarely: their pages are asked for with
    /// `If-None-Match`. Devices change every minute, and whoami must be asked every time.
    fn rarely_changes(self) -> bool {
        matches!(
            self,
            Resource::Application | Resource::Service | Resource::Release
        )
    }
}

/// What a crawl reads of the devices: every one, or only those changed since the last crawl.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrawlKind {
    Full,
    Incremental,
}

impl CrawlKind {
    /// Both kinds, in the order of `ApiStats::rows`.
    pub const ALL: [CrawlKind; 2] = [CrawlKind::Full, CrawlKind::Incremental];

    pub fn name(self) -> &'static str {
        match self {
            CrawlKind::Full => "full",
            CrawlKind::Incremental => "incremental",
        }
    }
}

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
    #[error("BALENA_TOKEN is a device API key (whoami answered actor type \"device\"): a device key can read only its own device and fleet, so it cannot list the fleets; set BALENA_TOKEN to a user or named API key (dashboard: Preferences > Access tokens)")]
    DeviceKey,
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
    #[error("{resource} paging went back to id {id} after id {after}: the server ignored the id filter or the order, so rows could be lost")]
    Paging {
        resource: &'static str,
        after: u64,
        id: u64,
    },
}

impl ApiError {
    /// A fixed label for metrics; one of `ERROR_KINDS`.
    pub fn kind(&self) -> &'static str {
        match self {
            ApiError::Unauthorized { .. } | ApiError::DeviceKey => "unauthorized",
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

/// Requests sent and failed since start, by resource and by error kind: the only count of
/// requests there is. The metrics read it at scrape time; the crawl reads its total.
#[derive(Debug, Default)]
pub struct ApiStats {
    requests: [AtomicU64; Resource::ALL.len()],
    errors: [AtomicU64; ERROR_KINDS.len()],
    /// Bytes of answer bodies as they came over the wire (gzipped where the server did).
    received: [AtomicU64; Resource::ALL.len()],
    /// Rows of pages read, by resource and crawl kind.
    rows: [[AtomicU64; CrawlKind::ALL.len()]; Resource::ALL.len()],
}

impl ApiStats {
    /// (resource, requests) for every resource, retries included.
    pub fn requests(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        Resource::ALL
            .iter()
            .map(|r| (r.name(), self.requests[r.index()].load(Ordering::Relaxed)))
    }

    /// (kind, failed requests) for every error kind, retried ones included.
    pub fn errors(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        ERROR_KINDS
            .iter()
            .zip(&self.errors)
            .map(|(k, n)| (*k, n.load(Ordering::Relaxed)))
    }

    /// (resource, bytes of answer bodies received as sent) for every resource.
    pub fn received(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        Resource::ALL
            .iter()
            .map(|r| (r.name(), self.received[r.index()].load(Ordering::Relaxed)))
    }

    /// (resource, crawl kind, rows read) for every resource and kind.
    pub fn rows(&self) -> impl Iterator<Item = (&'static str, &'static str, u64)> + '_ {
        let read = Resource::ALL.iter().filter(|r| **r != Resource::Whoami);
        read.flat_map(move |r| {
            CrawlKind::ALL.iter().map(move |k| {
                let n = self.rows[r.index()][*k as usize].load(Ordering::Relaxed);
                (r.name(), k.name(), n)
            })
        })
    }

    /// Counts `n` rows of `resource` read by a crawl of kind `kind`.
    pub fn read_rows(&self, resource: Resource, kind: CrawlKind, n: usize) {
        self.rows[resource.index()][kind as usize].fetch_add(n as u64, Ordering::Relaxed);
    }

    pub fn total_requests(&self) -> u64 {
        self.requests().map(|(_, n)| n).sum()
    }

    fn request(&self, resource: Resource) {
        self.requests[resource.index()].fetch_add(1, Ordering::Relaxed);
    }

    fn receive(&self, resource: Resource, bytes: usize) {
        self.received[resource.index()].fetch_add(bytes as u64, Ordering::Relaxed);
    }

    fn error(&self, kind: &str) {
        if let Some(i) = ERROR_KINDS.iter().position(|k| *k == kind) {
            self.errors[i].fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A row read in keyset pages (`$filter=... and id gt <last id>&$orderby=id asc`).
pub trait Keyed {
    fn id(&self) -> u64;
}

/// Decodes one page of `T`, borrowing text from `body`, hands the rows to `each`, and returns
/// their ids in order (for `Client::read_pages`).
pub fn page<'a, T>(body: &'a [u8], each: impl FnOnce(Vec<T>)) -> Result<Vec<u64>, serde_json::Error>
where
    T: serde::Deserialize<'a> + Keyed,
{
    let rows = serde_json::from_slice::<model::Envelope<T>>(body)?.d;
    let ids = rows.iter().map(Keyed::id).collect();
    each(rows);
    Ok(ids)
}

/// Keyset pages of one resource (`Client::pages`): `next` reads a page, `advance` takes the
/// ids of its rows, and the next page starts after the last of them.
pub struct Pages<'c, Q> {
    client: &'c Client,
    resource: Resource,
    page_size: u32,
    query: Q,
    after: u64,
    done: bool,
}

impl<Q: Fn(u32, u64) -> String> Pages<'_, Q> {
    /// The next page's body; None once a page was empty.
    pub async fn next(&mut self) -> Result<Option<Bytes>, ApiError> {
        if self.done {
            return Ok(None);
        }
        let path = (self.query)(self.page_size, self.after);
        self.client.get_bytes(self.resource, &path).await.map(Some)
    }

    /// The ids of the rows of the page `next` returned, in order, as `page` decoded them.
    pub fn advance(&mut self, ids: Result<Vec<u64>, serde_json::Error>) -> Result<(), ApiError> {
        let resource = self.resource.name();
        let ids = ids.map_err(|e| {
            let error = ApiError::Decode {
                resource,
                message: e.to_string(),
            };
            self.client.stats.error(error.kind());
            error
        })?;
        if ids.is_empty() {
            self.done = true;
        }
        for id in ids {
            if id <= self.after {
                return Err(ApiError::Paging {
                    resource,
                    after: self.after,
                    id,
                });
            }
            self.after = id;
        }
        Ok(())
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
    stats: Arc<ApiStats>,
    /// The last answer to each page of a resource that rarely changes, with its ETag: asked
    /// again with `If-None-Match`, a 304 gives it back without the body crossing the link.
    kept: Mutex<HashMap<String, (HeaderValue, Bytes)>>,
    /// The server's clock: the `Date` of its last answer, in Unix seconds (0: none yet).
    server_time: AtomicU64,
}

/// Pages kept for conditional requests at most: fleets, services and releases take a few
/// each; more means a very large account, which starts over rather than grow the map.
const KEPT_PAGES: usize = 256;

impl Client {
    /// `max_retry_after`: the longest 429 wait a crawl sits through (the crawl interval).
    pub fn new(api: &ApiConfig, max_retry_after: Duration) -> Result<Client, ApiError> {
        let mut auth =
            HeaderValue::try_from(format!("Bearer {}", api.token.expose())).map_err(|_| {
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
            .timeout(api.request_timeout)
            .connect_timeout(api.request_timeout)
            .redirect(reqwest::redirect::Policy::none());
        if let Some(pem) = &api.ca_cert_pem {
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
            base: api.url.clone(),
            timeout: api.request_timeout,
            retries: api.retries,
            max_retry_after,
            stats: Arc::new(ApiStats::default()),
            kept: Mutex::default(),
            server_time: AtomicU64::new(0),
        })
    }

    /// The server's clock as of its last answer (its `Date`, to the second); None before any.
    pub fn server_time(&self) -> Option<SystemTime> {
        match self.server_time.load(Ordering::Relaxed) {
            0 => None,
            s => Some(UNIX_EPOCH + Duration::from_secs(s)),
        }
    }

    /// The request and error counts, shared.
    pub fn stats(&self) -> Arc<ApiStats> {
        self.stats.clone()
    }

    /// Confirms the token: fleet reads answer an unknown token with an empty list. A device
    /// key passes whoami but cannot read fleets: it is refused here, by name.
    pub async fn whoami(&self) -> Result<model::Actor, ApiError> {
        let actor: model::Actor = self.get(Resource::Whoami, query::WHOAMI).await?;
        if actor.actor_type.as_deref() == Some("device") {
            return Err(ApiError::DeviceKey);
        }
        Ok(actor)
    }

    /// Whether the server has balenaCloud's device coordinates. openBalena answers 500 with an
    /// empty body when they are selected: that is a "no", not an error. Anything else that
    /// fails is an error, and the question is asked again at the next crawl. One request, no
    /// retries: it is asked only until it has an answer.
    pub async fn has_location(&self) -> Result<bool, ApiError> {
        match self
            .get_once(Resource::Device, query::LOCATION_PROBE)
            .await
            .and_then(|body| {
                serde_json::from_slice::<model::Envelope<serde::de::IgnoredAny>>(&body).map_err(
                    |e| ApiError::Decode {
                        resource: "device",
                        message: e.to_string(),
                    },
                )
            }) {
            Ok(_) => Ok(true),
            Err(ApiError::Server { status: 500, .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// A `$count` of devices: `{"d":N}`.
    pub async fn count(&self, path: &str) -> Result<u64, ApiError> {
        let count: model::Count = self.get(Resource::Device, path).await?;
        Ok(count.d)
    }

    /// Reads every row of `resource` in pages of `page_size`, in id order, handing each page's
    /// body to `each` as it arrives; `each` decodes it (borrowing from it: see `page`) and
    /// returns the ids of its rows in order. See `pages`.
    pub async fn read_pages<Q, F>(
        &self,
        resource: Resource,
        page_size: u32,
        query: Q,
        mut each: F,
    ) -> Result<(), ApiError>
    where
        Q: Fn(u32, u64) -> String,
        F: FnMut(&[u8]) -> Result<Vec<u64>, serde_json::Error>,
    {
        let mut pages = self.pages(resource, page_size, query);
        while let Some(body) = pages.next().await? {
            pages.advance(each(&body))?;
        }
        Ok(())
    }

    /// The rows of `resource` in pages of `page_size`, in id order, one page at a time.
    /// `query(top, after)` writes the request of the page after id `after`. Paging is by key,
    /// not by offset, and ends only on an empty page: a server that caps `$top` (a short page
    /// is not the last) or rows deleted between two pages (which shift an offset) cannot make
    /// rows vanish.
    pub fn pages<Q: Fn(u32, u64) -> String>(
        &self,
        resource: Resource,
        page_size: u32,
        query: Q,
    ) -> Pages<'_, Q> {
        Pages {
            client: self,
            resource,
            page_size,
            query,
            after: 0,
            done: false,
        }
    }

    /// GET with retries, decoded.
    async fn get<T: DeserializeOwned>(
        &self,
        resource: Resource,
        path: &str,
    ) -> Result<T, ApiError> {
        let body = self.get_bytes(resource, path).await?;
        serde_json::from_slice(&body).map_err(|e| {
            let error = ApiError::Decode {
                resource: resource.name(),
                message: e.to_string(),
            };
            self.stats.error(error.kind());
            error
        })
    }

    /// GET with retries: transport errors, timeouts and 5xx back off exponentially; a 429
    /// waits for its `Retry-After` unless that is longer than a crawl interval.
    async fn get_bytes(&self, resource: Resource, path: &str) -> Result<Bytes, ApiError> {
        let mut attempt = 0;
        loop {
            let error = match self.get_once(resource, path).await {
                Ok(value) => return Ok(value),
                Err(e) => e,
            };
            self.stats.error(error.kind());
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
                "api retry resource={} attempt={} kind={} wait_ms={} error=\"{error}\"",
                resource.name(),
                attempt + 1,
                error.kind(),
                wait.as_millis()
            );
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    /// The kept answer to `path` and its ETag, for a resource that rarely changes.
    fn kept(&self, which: Resource, path: &str) -> Option<(HeaderValue, Bytes)> {
        if !which.rarely_changes() {
            return None;
        }
        let kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        kept.get(path).cloned()
    }

    fn keep(&self, which: Resource, path: &str, etag: Option<HeaderValue>, body: &Bytes) {
        let Some(etag) = etag.filter(|_| which.rarely_changes()) else {
            return;
        };
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        if kept.len() >= KEPT_PAGES && !kept.contains_key(path) {
            kept.clear();
        }
        kept.insert(path.to_string(), (etag, body.clone()));
    }

    async fn get_once(&self, which: Resource, path: &str) -> Result<Bytes, ApiError> {
        self.stats.request(which);
        let resource = which.name();
        let kept = self.kept(which, path);
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
        let mut request = self
            .http
            .get(format!("{}{}", self.base, path))
            // The server compresses pages about elevenfold: a monitor on a metered link reads
            // a tenth of the bytes. The body is inflated here, so that its size on the wire
            // can be counted (balena_api_response_bytes_total).
            .header(ACCEPT_ENCODING, "gzip");
        // A page asked for before is asked for again only if it changed (ETag, 304).
        if let Some((etag, _)) = &kept {
            request = request.header(IF_NONE_MATCH, etag.clone());
        }
        let response = request.send().await.map_err(transport)?;
        let date = response.headers().get(DATE).and_then(|d| d.to_str().ok());
        if let Some(t) = date.and_then(|d| httpdate::parse_http_date(d).ok()) {
            let seconds = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
            self.server_time.store(seconds, Ordering::Relaxed);
        }
        let status = response.status();
        if status == StatusCode::NOT_MODIFIED {
            if let Some((_, body)) = kept {
                return Ok(body);
            }
        }
        if status == StatusCode::TOO_MANY_REQUESTS {
            return Err(ApiError::RateLimited {
                resource,
                retry_after: retry_after(response.headers().get(RETRY_AFTER)),
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
        let gzipped = response
            .headers()
            .get(CONTENT_ENCODING)
            .is_some_and(|e| e.as_bytes().eq_ignore_ascii_case(b"gzip"));
        let etag = response.headers().get(ETAG).cloned();
        let body = response.bytes().await.map_err(transport)?;
        self.stats.receive(which, body.len());
        let body = if gzipped {
            inflate(&body).map_err(|message| ApiError::Decode { resource, message })?
        } else {
            body
        };
        self.keep(which, path, etag, &body);
        Ok(body)
    }
}

/// The most a page may inflate to: a thousand devices with services and tags are about 1.5 MB.
const MAX_PAGE_BYTES: u64 = 256 * 1024 * 1024;

/// A gzipped body inflated, refusing one that is not gzip or inflates beyond `MAX_PAGE_BYTES`.
fn inflate(body: &[u8]) -> Result<Bytes, String> {
    use std::io::Read;
    let mut text = Vec::with_capacity(body.len() * 8);
    flate2::read::GzDecoder::new(body)
        .take(MAX_PAGE_BYTES + 1)
        .read_to_end(&mut text)
        .map_err(|e| format!("the gzip body does not inflate: {e}"))?;
    if text.len() as u64 > MAX_PAGE_BYTES {
        return Err(format!("the body inflates beyond {MAX_PAGE_BYTES} bytes"));
    }
    Ok(Bytes::from(text))
}

/// `Retry-After` in seconds (decimals allowed), at most a day; 1 s when absent or not a
/// number (an HTTP date, say). How long a crawl really waits is capped by the crawler.
fn retry_after(header: Option<&HeaderValue>) -> Duration {
    header
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map_or(Duration::from_secs(1), |s| {
            Duration::from_secs_f64(s.min(86_400.0))
        })
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
            ApiError::DeviceKey,
            ApiError::Paging {
                resource: "r",
                after: 0,
                id: 0,
            },
        ];
        let mut kinds: Vec<_> = errors.iter().map(ApiError::kind).collect();
        assert_eq!(
            kinds.remove(7),
            "unauthorized",
            "a device key is a rejected token"
        );
        assert_eq!(kinds, ERROR_KINDS);
        // Every kind and resource has its counter.
        let stats = ApiStats::default();
        assert_eq!(stats.errors().count(), ERROR_KINDS.len());
        assert_eq!(stats.requests().count(), Resource::ALL.len());
        for (i, r) in Resource::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
        // Release is the last variant: ALL has them all.
        assert_eq!(Resource::ALL.len(), Resource::Release.index() + 1);
    }

    #[test]
    fn gzip_bodies_inflate_and_garbage_is_a_decode_error() {
        use std::io::Write;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(br#"{"d":[]}"#).unwrap();
        let gzipped = encoder.finish().unwrap();
        assert_eq!(&inflate(&gzipped).unwrap()[..], br#"{"d":[]}"#);
        assert!(inflate(b"{\"d\":[]}")
            .unwrap_err()
            .contains("does not inflate"));
        assert!(
            inflate(&gzipped[..gzipped.len() / 2]).is_err(),
            "a truncated body"
        );
    }

    #[test]
    fn retry_after_is_seconds_within_a_day() {
        let parse = |v: &str| retry_after(Some(&HeaderValue::from_str(v).unwrap()));
        assert_eq!(parse("3"), Duration::from_secs(3));
        assert_eq!(parse(" 1.5 "), Duration::from_millis(1500));
        assert_eq!(parse("999999999"), Duration::from_secs(86_400));
        assert_eq!(
            parse("Wed, 21 Oct 2026 07:28:00 GMT"),
            Duration::from_secs(1)
        );
        assert_eq!(parse("-1"), Duration::from_secs(1));
        assert_eq!(parse("NaN"), Duration::from_secs(1));
        assert_eq!(retry_after(None), Duration::from_secs(1));
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
