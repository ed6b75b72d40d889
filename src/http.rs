//! The warp server: `/metrics`, `/sd`, `/-/healthy`, `/-/ready` and the status page, all served
//! from the last publication, plus `/grafana/` forwarding when configured; anything else is
//! 404. Never calls the balena API.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{Semaphore, SemaphorePermit};
use warp::http::{header, HeaderValue, Response, StatusCode};
use warp::hyper::body::Bytes;
use warp::{Filter, Rejection, Reply};

use crate::auth;
use crate::config::MetricsAuth;
use crate::metrics::CONTENT_TYPE;
use crate::proxy::{self, Upstream};
use crate::state::Shared;

/// What the routes need besides the published state.
#[derive(Default)]
pub struct Options {
    /// Credentials `/metrics` requires; None leaves it open.
    pub auth: Option<MetricsAuth>,
    /// Where `/grafana/...` goes; None answers 404 there.
    pub grafana: Option<Upstream>,
}

/// Plain `/metrics` bodies alive at once. Each is the whole text (about 15 MiB at 10,000
/// devices), inflated from the gzip body for a client that does not accept gzip; more
/// requests wait for a body to be sent.
static PLAIN_BODIES: Semaphore = Semaphore::const_new(2);

/// An inflated `/metrics` body, which holds its place in `PLAIN_BODIES` until it is dropped.
struct Plain {
    text: Vec<u8>,
    _permit: SemaphorePermit<'static>,
}

impl AsRef<[u8]> for Plain {
    fn as_ref(&self) -> &[u8] {
        &self.text
    }
}

/// A rejection for a request without the credentials `/metrics` needs.
#[derive(Debug)]
struct Unauthorized(&'static str);

impl warp::reject::Reject for Unauthorized {}

/// Passes requests whose `Authorization` header `auth` accepts (all when `auth` is None).
fn authorized(auth: Option<MetricsAuth>) -> impl Filter<Extract = (), Error = Rejection> + Clone {
    let auth = Arc::new(auth);
    warp::header::optional::<String>("authorization")
        .and_then(move |header: Option<String>| {
            let auth = auth.clone();
            async move {
                match auth.as_ref() {
                    Some(a) if !auth::allows(a, header.as_deref()) => {
                        Err(warp::reject::custom(Unauthorized(auth::challenge(a))))
                    }
                    _ => Ok(()),
                }
            }
        })
        .untuple_one()
}

/// Every route of the exporter.
pub fn routes(
    shared: Arc<Shared>,
    options: Options,
) -> impl Filter<Extract = (impl Reply,), Error = Infallible> + Clone {
    let state = warp::any().map(move || shared.clone());
    let guarded = authorized(options.auth);

    let metrics = warp::path!("metrics")
        .and(warp::get())
        .and(guarded.clone())
        .and(warp::header::optional::<String>("accept-encoding"))
        .and(state.clone())
        .then(|encoding: Option<String>, shared: Arc<Shared>| async move {
            if accepts_gzip(encoding.as_deref()) {
                let [head, tail] = shared.metrics_gzip();
                let length = head.len() + tail.len();
                let parts = futures_util::stream::iter([Ok::<_, Infallible>(head), Ok(tail)]);
                let mut response = warp::reply::stream(parts).into_response();
                let headers = response.headers_mut();
                headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
                headers.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
                headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
                headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
                return response;
            }
            // Only the gzip body is kept: inflate it, off the async workers (milliseconds
            // of CPU on a large account), and only a few at a time, since each plain body is
            // the whole text until it has been sent.
            let Ok(permit) = PLAIN_BODIES.acquire().await else {
                return text(StatusCode::SERVICE_UNAVAILABLE, "Unavailable.\n").into_response();
            };
            let inflated = tokio::task::spawn_blocking(move || shared.metrics_plain())
                .await
                .map_err(std::io::Error::other)
                .and_then(|r| r);
            match inflated {
                Ok(text) => Response::builder()
                    .header(header::CONTENT_TYPE, CONTENT_TYPE)
                    .header(header::VARY, "Accept-Encoding")
                    .body(Bytes::from_owner(Plain {
                        text,
                        _permit: permit,
                    }))
                    .into_response(),
                Err(e) => {
                    log::error!("inflating the metrics body failed error=\"{e}\"");
                    text(StatusCode::INTERNAL_SERVER_ERROR, "Internal error.\n").into_response()
                }
            }
        });

    let sd = warp::path!("sd")
        .and(warp::get())
        .and(guarded.clone())
        .and(state.clone())
        .map(|shared: Arc<Shared>| match &shared.load().sd_json {
            Some(json) => Response::builder()
                .header(header::CONTENT_TYPE, "application/json")
                .body(json.clone())
                .unwrap_or_default(),
            // Prometheus keeps its last target list on an error answer.
            None => text(
                StatusCode::SERVICE_UNAVAILABLE,
                "No successful crawl of the balena API yet.\n",
            ),
        });

    let healthy = warp::path!("-" / "healthy")
        .and(warp::get())
        .map(|| text(StatusCode::OK, "Healthy.\n"));

    let ready = warp::path!("-" / "ready")
        .and(warp::get())
        .and(state.clone())
        .map(
            |shared: Arc<Shared>| match shared.load().readiness(Instant::now()) {
                Ok(()) => text(StatusCode::OK, "Ready.\n"),
                Err(why) => text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("Not ready: {why}.\n"),
                ),
            },
        );

    let index = warp::path::end()
        .and(warp::get())
        .and(guarded)
        .and(state)
        .map(|shared: Arc<Shared>| {
            Response::builder()
                .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
                .body(shared.load().status_html.clone())
        });

    let grafana = match options.grafana {
        Some(upstream) => proxy::route(Arc::new(upstream)).boxed(),
        None => warp::any()
            .and_then(|| async { Err::<warp::reply::Response, _>(warp::reject::not_found()) })
            .boxed(),
    };

    metrics
        .or(sd)
        .or(healthy)
        .or(ready)
        .or(index)
        .or(grafana)
        .recover(rejected)
}

/// Serves the routes on `listener` until `shutdown` completes, then lets open requests finish.
pub async fn serve<F>(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    options: Options,
    shutdown: F,
) where
    F: Future<Output = ()> + Send + 'static,
{
    warp::serve(routes(shared, options))
        .incoming(listener)
        .graceful(shutdown)
        .run()
        .await;
}

/// 401 with a challenge for missing credentials; 404 for everything else.
async fn rejected(rejection: Rejection) -> Result<Response<Bytes>, Infallible> {
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
