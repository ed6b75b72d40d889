//! The warp routes: `/metrics`, `/sd`, `/-/healthy`, `/-/ready` and the status page, all served
//! from the last publication (GET and HEAD), plus `/grafana/` and `/alertmanager/` forwarding
//! when configured (else a page that says which variable turns it on); anything else is 404. Never calls the balena API. Fleet data follows the
//! listener's `Access`: open, behind credentials, or closed with a 403 that says what to set.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{Semaphore, SemaphorePermit};
use warp::filters::BoxedFilter;
use warp::http::{header, HeaderValue, Response, StatusCode};
use warp::hyper::body::Bytes;
use warp::{Filter, Rejection, Reply};

use crate::auth;
use crate::config::Access;
use crate::metrics::CONTENT_TYPE;
use crate::proxy::{self, Upstream};
use crate::state::Shared;

/// What the routes of one listener need besides the published state.
pub struct Options {
    /// Who may read fleet data here.
    pub access: Access,
    /// Where `/grafana/...` goes; None answers `NO_GRAFANA` there.
    pub grafana: Option<Upstream>,
    /// Where `/alertmanager/...` goes (behind `access`); None answers `NO_ALERTMANAGER` there.
    pub alertmanager: Option<Upstream>,
    /// Counts requests whose credentials were wrong (not those without any).
    pub auth_failures: Arc<AtomicU64>,
}

/// Who may read fleet data, and the count of wrong credentials presented.
struct Guard {
    access: Access,
    failures: Arc<AtomicU64>,
}

/// The status page for a visitor who may not read fleet data: what this is and what to set.
const CLOSED_PAGE: &str = "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>balena fleet monitor</title><style>body{font-family:sans-serif;margin:1em;max-width:40em}</style>\
</head><body>\n<h1>balena fleet monitor</h1>\n<p>This is a balena fleet monitor. Its fleet data \
(this page in full, <code>/metrics</code> and <code>/sd</code>) needs credentials: set \
<code>METRICS_USERNAME</code> and <code>METRICS_PASSWORD</code> (your browser then asks for \
them) or <code>METRICS_TOKEN</code> (for a scraper) on the exporter service, or \
<code>PUBLIC_METRICS=true</code> to open it to anyone.</p>\n<p><a href=\"grafana/\">Grafana</a> \
has its own login.</p>\n</body></html>\n";

/// What a closed port answers for fleet data.
const CLOSED: &str = "Forbidden: fleet data on this port needs credentials. Set METRICS_TOKEN \
(bearer) or METRICS_USERNAME and METRICS_PASSWORD (basic auth) on the exporter, or \
PUBLIC_METRICS=true to open it to anyone.\n";

/// `/grafana/...` without `GRAFANA_URL` (the demo, a bare exporter, the internal port).
const NO_GRAFANA: &str = "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>Grafana is not configured</title><style>body{font-family:sans-serif;margin:1em;max-width:40em}\
</style></head><body>\n<h1>Grafana is not configured</h1>\n<p><code>/grafana/</code> forwards \
to Grafana when <code>GRAFANA_URL</code> is set on the exporter (the balena app sets \
<code>http://grafana:3000</code>), on its public port. It is not set here.</p>\n\
<p><a href=\"../\">Back to the status page</a></p>\n</body></html>\n";

/// `/alertmanager/...` without `ALERTMANAGER_URL`.
const NO_ALERTMANAGER: &str = "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>Alertmanager is not configured</title><style>body{font-family:sans-serif;margin:1em;\
max-width:40em}</style></head><body>\n<h1>Alertmanager is not configured</h1>\n\
<p><code>/alertmanager/</code> forwards to Alertmanager when <code>ALERTMANAGER_URL</code> is \
set on the exporter (the balena app sets <code>http://alertmanager:9093</code>), on its public \
port, behind the same credentials as the fleet data. It is not set here.</p>\n\
<p><a href=\"../\">Back to the status page</a></p>\n</body></html>\n";

const SD_CONTENT_TYPE: &str = "application/json";
const HTML: &str = "text/html; charset=utf-8";

/// Inflated bodies alive at once. Each is a whole text (about 27 MiB of `/metrics` at 10,000
/// devices), inflated from the gzip body for a client that does not accept gzip; more
/// requests wait for a body to be sent.
static PLAIN_BODIES: Semaphore = Semaphore::const_new(2);

/// An inflated body, which holds its place in `PLAIN_BODIES` until it is dropped.
struct Plain {
    text: Vec<u8>,
    _permit: SemaphorePermit<'static>,
}

impl AsRef<[u8]> for Plain {
    fn as_ref(&self) -> &[u8] {
        &self.text
    }
}

/// A rejection for a request without the credentials fleet data needs.
#[derive(Debug)]
struct Unauthorized(&'static str);

impl warp::reject::Reject for Unauthorized {}

/// A rejection for fleet data on a closed port.
#[derive(Debug)]
struct Closed;

impl warp::reject::Reject for Closed {}

/// Why a request may not read fleet data, if it may not. Wrong credentials are counted; a
/// request without any (a browser's first) is not.
fn refusal(guard: &Guard, header: Option<&str>) -> Option<Rejection> {
    match &guard.access {
        Access::Open => None,
        Access::Credentials(auth) if auth::allows(auth, header) => None,
        Access::Credentials(auth) => {
            if header.is_some() {
                guard.failures.fetch_add(1, Ordering::Relaxed);
            }
            Some(warp::reject::custom(Unauthorized(auth::challenge(auth))))
        }
        Access::Closed => Some(warp::reject::custom(Closed)),
    }
}

/// Passes requests that `guard` lets read fleet data.
fn guarded_by(guard: Arc<Guard>) -> impl Filter<Extract = (), Error = Rejection> + Clone {
    warp::header::optional::<String>("authorization")
        .and_then(move |header: Option<String>| {
            let guard = guard.clone();
            async move {
                match refusal(&guard, header.as_deref()) {
                    Some(rejection) => Err(rejection),
                    None => Ok(()),
                }
            }
        })
        .untuple_one()
}

/// GET, and HEAD (which hyper answers without the body): uptime checkers and `curl -I`.
fn get_or_head() -> impl Filter<Extract = (), Error = Rejection> + Copy {
    warp::get().or(warp::head()).unify()
}

/// Every route of the exporter.
pub fn routes(
    shared: Arc<Shared>,
    options: Options,
) -> impl Filter<Extract = (impl Reply,), Error = Infallible> + Clone {
    let state = warp::any().map(move || shared.clone());
    let guard = Arc::new(Guard {
        access: options.access,
        failures: options.auth_failures.clone(),
    });
    let guarded = guarded_by(guard.clone());
    let encoding = warp::header::optional::<String>("accept-encoding");
    let fleet_data = |path: BoxedFilter<()>| {
        path.and(get_or_head())
            .and(guarded.clone())
            .and(encoding)
            .and(state.clone())
    };
    let metrics = fleet_data(warp::path!("metrics").boxed()).then(metrics);
    let sd = fleet_data(warp::path!("sd").boxed()).then(sd);
    let healthy = warp::path!("-" / "healthy")
        .and(get_or_head())
        .map(|| text(StatusCode::OK, "Healthy.\n"));
    let ready = warp::path!("-" / "ready")
        .and(get_or_head())
        .and(state.clone())
        .map(ready);
    let index = warp::path::end()
        .and(get_or_head())
        .and(warp::any().map(move || guard.clone()))
        .and(warp::header::optional::<String>("authorization"))
        .and(state)
        .map(index);
    // Grafana has its own login; Alertmanager has none, so it is behind the credentials.
    let open = Guard {
        access: Access::Open,
        failures: options.auth_failures,
    };
    let open = guarded_by(Arc::new(open));
    let grafana = forwarded(options.grafana, "grafana", NO_GRAFANA, open);
    let alertmanager = forwarded(
        options.alertmanager,
        "alertmanager",
        NO_ALERTMANAGER,
        guarded,
    );
    metrics
        .or(sd)
        .or(healthy)
        .or(ready)
        .or(index)
        .or(grafana)
        .or(alertmanager)
        .recover(rejected)
}

/// `/metrics`: the last crawl's families and the exporter's own, in the form the client takes.
async fn metrics(encoding: Option<String>, shared: Arc<Shared>) -> warp::reply::Response {
    let gzip = accepts_gzip(encoding.as_deref()).then(|| shared.metrics_gzip());
    let plain = shared.metrics_kept_plain().map(|p| p.to_vec());
    body(gzip.flatten(), plain, CONTENT_TYPE, move || {
        shared.metrics_plain()
    })
    .await
}

/// `/sd`: the target groups; 503 before the first successful crawl, since Prometheus keeps its
/// last target list on an error answer. (Its HTTP service discovery does not ask for gzip.)
async fn sd(encoding: Option<String>, shared: Arc<Shared>) -> warp::reply::Response {
    let published = shared.load();
    let Some(sd) = published.sd.clone() else {
        let why = "No successful crawl of the balena API yet.\n";
        return text(StatusCode::SERVICE_UNAVAILABLE, why).into_response();
    };
    let gzip = sd
        .gzip()
        .filter(|_| accepts_gzip(encoding.as_deref()))
        .map(|gzip| {
            let mut chunks = gzip.chunks().to_vec();
            chunks.push(gzip.tail(b""));
            chunks
        });
    let plain = sd.plain().map(|plain| vec![plain.clone()]);
    body(gzip, plain, SD_CONTENT_TYPE, move || sd.text()).await
}

/// The one ladder for a kept body: gzip when the client takes it and there is one, else the
/// plain text when it is kept, else the gzip inflated for this request.
async fn body<F>(
    gzip: Option<Vec<Bytes>>,
    plain: Option<Vec<Bytes>>,
    content_type: &'static str,
    inflate: F,
) -> warp::reply::Response
where
    F: FnOnce() -> std::io::Result<Vec<u8>> + Send + 'static,
{
    match (gzip, plain) {
        (Some(gzip), _) => parts(gzip, content_type, true),
        (None, Some(plain)) => parts(plain, content_type, false),
        (None, None) => inflated(inflate, content_type).await,
    }
}

/// `/-/ready`: 200 once a crawl succeeded and its data is fresh; 503 with the reason.
fn ready(shared: Arc<Shared>) -> warp::reply::Response {
    match shared.load().readiness(Instant::now()) {
        Ok(()) => text(StatusCode::OK, "Ready.\n").into_response(),
        Err(why) => text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("Not ready: {why}.\n"),
        )
        .into_response(),
    }
}

/// The status page: in full for whoever may read fleet data; on a closed port, a page that
/// says only what to set; behind credentials, a 401 that makes a browser ask.
fn index(
    guard: Arc<Guard>,
    authorization: Option<String>,
    shared: Arc<Shared>,
) -> warp::reply::Response {
    let Some(rejection) = refusal(&guard, authorization.as_deref()) else {
        return parts(shared.status_page(), HTML, false);
    };
    let mut response = Response::new(Bytes::from_static(CLOSED_PAGE.as_bytes()));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(HTML));
    if let Some(Unauthorized(challenge)) = rejection.find::<Unauthorized>() {
        headers.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(challenge),
        );
        *response.status_mut() = StatusCode::UNAUTHORIZED;
    }
    response.into_response()
}

/// A body sent in `chunks` (shared, not copied), gzipped or not.
fn parts(chunks: Vec<Bytes>, content_type: &'static str, gzip: bool) -> warp::reply::Response {
    let length: usize = chunks.iter().map(Bytes::len).sum();
    let stream = futures_util::stream::iter(chunks.into_iter().map(Ok::<_, Infallible>));
    let mut response = warp::reply::stream(stream).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    if gzip {
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    response
}

/// A body that is kept only gzipped, for a client that does not accept gzip: inflated off the
/// async workers (milliseconds of CPU on a large account), and only a few at a time, since
/// each is the whole text until it has been sent.
async fn inflated<F>(inflate: F, content_type: &'static str) -> warp::reply::Response
where
    F: FnOnce() -> std::io::Result<Vec<u8>> + Send + 'static,
{
    let Ok(permit) = PLAIN_BODIES.acquire().await else {
        return text(StatusCode::SERVICE_UNAVAILABLE, "Unavailable.\n").into_response();
    };
    let inflated = tokio::task::spawn_blocking(inflate)
        .await
        .map_err(std::io::Error::other)
        .and_then(|r| r);
    match inflated {
        Ok(text) => Response::builder()
            .header(header::CONTENT_TYPE, content_type)
            .header(header::VARY, "Accept-Encoding")
            .body(Bytes::from_owner(Plain {
                text,
                _permit: permit,
            }))
            .into_response(),
        Err(e) => {
            log::error!("inflating a body failed error=\"{e}\"");
            text(StatusCode::INTERNAL_SERVER_ERROR, "Internal error.\n").into_response()
        }
    }
}

/// The forwarding route to `upstream` behind `guard`. Without an upstream, `/<prefix>` and
/// below answer `page`, which says what the path is and which variable turns it on, with
/// status 404: nothing is served there, and an uptime check or link checker must not take it
/// for the real thing; a browser shows the page all the same.
fn forwarded<G>(
    upstream: Option<Upstream>,
    prefix: &'static str,
    page: &'static str,
    guard: G,
) -> BoxedFilter<(warp::reply::Response,)>
where
    G: Filter<Extract = (), Error = Rejection> + Clone + Send + Sync + 'static,
{
    match upstream {
        Some(upstream) => proxy::route(Arc::new(upstream), guard).boxed(),
        None => warp::path(prefix)
            .and(guard)
            .map(move || {
                let mut response = Response::new(Bytes::from_static(page.as_bytes()));
                *response.status_mut() = StatusCode::NOT_FOUND;
                response
                    .headers_mut()
                    .insert(header::CONTENT_TYPE, HeaderValue::from_static(HTML));
                response.into_response()
            })
            .boxed(),
    }
}
/// 401 with a challenge for missing credentials, 403 on a closed port, 404 for everything else.
async fn rejected(rejection: Rejection) -> Result<Response<Bytes>, Infallible> {
    if rejection.find::<Closed>().is_some() {
        return Ok(text(StatusCode::FORBIDDEN, CLOSED));
    }
    if let Some(Unauthorized(challenge)) = rejection.find::<Unauthorized>() {
        let mut response = text(StatusCode::UNAUTHORIZED, "Unauthorized.\n");
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(challenge),
        );
        return Ok(response);
    }
    Ok(text(StatusCode::NOT_FOUND, "Not found.\n"))
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Bytes> {
    let mut response = Response::new(body.into());
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// True when `Accept-Encoding` lists gzip (or `*`) without `q=0`.
fn accepts_gzip(header: Option<&str>) -> bool {
    header.is_some_and(|h| {
        h.split(',').any(|item| {
            let mut parts = item.split(';').map(str::trim);
            let coding = parts.next().unwrap_or("");
            let refused = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !refused
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrong_credentials_are_counted_and_missing_ones_are_not() {
        use crate::config::{MetricsAuth, Secret};
        let guard = Guard {
            access: Access::Credentials(MetricsAuth {
                token: Some(Secret::new("0123456789abcdef")),
                basic: None,
            }),
            failures: Arc::default(),
        };
        let count = || guard.failures.load(Ordering::Relaxed);
        assert!(refusal(&guard, None).is_some());
        assert_eq!(
            count(),
            0,
            "a request without credentials (a browser's first) is no guess"
        );
        assert!(refusal(&guard, Some("Bearer 0123456789abcdef")).is_none());
        assert_eq!(count(), 0);
        assert!(refusal(&guard, Some("Bearer 0123456789abcdeX")).is_some());
        assert!(refusal(&guard, Some("Basic b3BzOnBhNTV3b3Jk")).is_some());
        assert_eq!(count(), 2);
        let open = Guard {
            access: Access::Open,
            failures: Arc::default(),
        };
        assert!(refusal(&open, Some("Bearer nonsense")).is_none());
        assert_eq!(open.failures.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn gzip_negotiation() {
        for (header, want) in [
            (None, false),
            (Some(""), false),
            (Some("gzip"), true),
            (Some("deflate, GZIP;q=0.5"), true),
            (Some("gzip;q=0"), false),
            (Some("gzip; q=0.0, identity"), false),
            (Some("*"), true),
            (Some("br, identity"), false),
        ] {
            assert_eq!(accepts_gzip(header), want, "{header:?}");
        }
    }
}
