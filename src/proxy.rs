//! Forwards `/grafana/...` to `GRAFANA_URL` (and `/alertmanager/...` to `ALERTMANAGER_URL`), so
//! the device's one public URL serves the metrics, Grafana and Alertmanager. Method, path,
//! query, headers, status and bodies pass through (bodies streamed both ways, through bounded
//! buffers; request bodies at most `MAX_BODY`); redirects go back to the client untouched.
//! Only that prefix and only that upstream: the target is never taken from the request, and
//! a path that would leave the prefix once `.` and `..` are resolved is refused.
//! `X-Forwarded-For` is the TCP peer: a value the client sent is not passed on.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use warp::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use warp::hyper::body::Bytes;
use warp::{Buf, Filter, Rejection, Reply};

use crate::server::Peer;

/// The largest request body forwarded (Grafana's dashboard saves are well below it).
pub const MAX_BODY: u64 = 16 * 1024 * 1024;

/// Headers that describe one connection, not the message (RFC 9110 7.6.1), and `Host`.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
];

pub struct Upstream {
    client: reqwest::Client,
    base: String,
    /// The first path segment that is forwarded, such as `grafana`; the upstream serves from it.
    prefix: &'static str,
}

impl Upstream {
    /// `base` is the upstream root, such as `http://grafana:3000`; requests under `/<prefix>/`
    /// go there with their path unchanged.
    pub fn new(base: &str, prefix: &'static str) -> reqwest::Result<Upstream> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(5))
            .read_timeout(Duration::from_secs(120))
            .build()?;
        Ok(Upstream {
            client,
            base: base.trim_end_matches('/').to_string(),
            prefix,
        })
    }
}

/// `/<prefix>` and everything below it, any method, for requests `guard` lets through.
pub fn route<G>(
    upstream: Arc<Upstream>,
    guard: G,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone
where
    G: Filter<Extract = (), Error = Rejection> + Clone + Send + Sync + 'static,
{
    warp::path(upstream.prefix)
        .and(guard)
        .and(warp::method())
        .and(warp::path::full())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and(warp::header::headers_cloned())
        .and(warp::ext::optional::<Peer>())
        .and(warp::body::stream())
        .then(
            move |method, path: warp::path::FullPath, query: String, headers, peer, body| {
                let upstream = upstream.clone();
                async move {
                    if leaves_root(path.as_str()) {
                        return status(
                            StatusCode::BAD_REQUEST,
                            "Bad request: a path segment is . or ..\n",
                        );
                    }
                    let target = if query.is_empty() {
                        format!("{}{}", upstream.base, path.as_str())
                    } else {
                        format!("{}{}?{}", upstream.base, path.as_str(), query)
                    };
                    forward(&upstream, method, target, headers, peer, body).await
                }
            },
        )
}

/// Whether a segment of `path` is `.` or `..`, also percent-encoded (`%2e`): a URL parser
/// resolves them, so `/grafana/../x` would reach `/x` upstream.
fn leaves_root(path: &str) -> bool {
    path.split('/').any(|segment| {
        let decoded = segment.replace("%2e", ".").replace("%2E", ".");
        decoded == "." || decoded == ".."
    })
}

fn status(code: StatusCode, text: &'static str) -> warp::reply::Response {
    let mut reply = text.into_response();
    *reply.status_mut() = code;
    reply
}

async fn forward<S, B>(
    upstream: &Upstream,
    method: Method,
    target: String,
    headers: HeaderMap,
    peer: Option<Peer>,
    body: S,
) -> warp::reply::Response
where
    S: Stream<Item = Result<B, warp::Error>> + Send + 'static,
    B: Buf + Send + 'static,
{
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY) {
        return status(StatusCode::PAYLOAD_TOO_LARGE, "Payload too large.\n");
    }
    let mut outgoing = end_to_end(&headers);
    outgoing.remove("x-forwarded-for");
    if let Some(host) = headers.get(header::HOST) {
        outgoing.insert(HeaderName::from_static("x-forwarded-host"), host.clone());
    }
    if let Some(Peer(addr)) = peer {
        if let Ok(value) = HeaderValue::from_str(&addr.ip().to_string()) {
            outgoing.insert(HeaderName::from_static("x-forwarded-for"), value);
        }
    }
    // The body is streamed, and cut off (the upstream sees an error) past MAX_BODY.
    let mut sent = 0u64;
    let body = body.map(move |chunk| {
        let mut chunk = chunk.map_err(std::io::Error::other)?;
        let bytes = chunk.copy_to_bytes(chunk.remaining());
        sent += bytes.len() as u64;
        if sent > MAX_BODY {
            return Err(std::io::Error::other("request body too large"));
        }
        Ok(bytes)
    });
    let sent = upstream
        .client
        .request(method, &target)
        .headers(outgoing)
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await;
    let answer = match sent {
        Ok(answer) => answer,
        Err(e) => {
            log::warn!("forward failed upstream={} error=\"{e}\"", upstream.base);
            return status(
                StatusCode::BAD_GATEWAY,
                "Bad gateway: the upstream service is not reachable.\n",
            );
        }
    };
    let code = answer.status();
    let response_headers = end_to_end(answer.headers());
    // reqwest's stream is not Sync, which warp's body needs: pump it through a small channel,
    // which also bounds what is held for a slow client.
    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Bytes, reqwest::Error>>(8);
    tokio::spawn(async move {
        let mut chunks = answer.bytes_stream();
        while let Some(chunk) = chunks.next().await {
            if sender.send(chunk).await.is_err() {
                break; // the client went away
            }
        }
    });
    let stream =
        futures_util::stream::unfold(
            receiver,
            |mut r| async move { r.recv().await.map(|c| (c, r)) },
        );
    let mut reply = warp::reply::stream(stream).into_response();
    *reply.status_mut() = code;
    *reply.headers_mut() = response_headers;
    reply
}

/// The headers of `headers` that belong to the message, without hop-by-hop ones and those
/// the `Connection` header names.
fn end_to_end(headers: &HeaderMap) -> HeaderMap {
    let named: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|n| n.trim().to_ascii_lowercase())
        .collect();
    let mut out = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        let n = name.as_str();
        if !HOP_BY_HOP.contains(&n) && !named.iter().any(|c| c == n) {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_segments_are_refused_in_any_spelling() {
        for path in [
            "/grafana/..",
            "/grafana/../x",
            "/grafana/./x",
            "/grafana/%2e%2e/x",
            "/grafana/%2E./x",
            "/grafana/a/.%2e",
        ] {
            assert!(leaves_root(path), "{path}");
        }
        for path in [
            "/grafana/",
            "/grafana/a..b",
            "/grafana/.well-known/x",
            "/grafana/public/build/app.js",
        ] {
            assert!(!leaves_root(path), "{path}");
        }
    }

    #[test]
    fn hop_by_hop_headers_are_dropped() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            HeaderValue::from_static("keep-alive, X-Private"),
        );
        h.insert("x-private", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("host", HeaderValue::from_static("device.example"));
        h.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        h.insert("cookie", HeaderValue::from_static("grafana_session=abc"));
        h.append("accept", HeaderValue::from_static("text/html"));
        h.append("accept", HeaderValue::from_static("application/json"));
        let out = end_to_end(&h);
        let names: Vec<_> = out.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["cookie", "accept"]);
        assert_eq!(out.get_all("accept").iter().count(), 2);
    }
}
