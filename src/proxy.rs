//! Forwards `/grafana/...` to `GRAFANA_URL`, so the device's one public URL serves both
//! `/metrics` and Grafana. Method, path, query, headers, status and bodies pass through
//! (bodies streamed both ways); redirects go back to the client untouched. Only that prefix
//! and only that upstream: the target is never taken from the request.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use warp::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use warp::hyper::body::Bytes;
use warp::{Buf, Filter, Rejection, Reply};

/// The path prefix that is forwarded, and that Grafana must serve from.
pub const PREFIX: &str = "grafana";

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
}

impl Upstream {
    /// `base` is the upstream root, such as `http://grafana:3000`.
    pub fn new(base: &str) -> reqwest::Result<Upstream> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(5))
            .read_timeout(Duration::from_secs(120))
            .build()?;
        Ok(Upstream {
            client,
            base: base.trim_end_matches('/').to_string(),
        })
    }
}

/// `/grafana` and everything below it, any method.
pub fn route(
    upstream: Arc<Upstream>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    warp::path(PREFIX)
        .and(warp::method())
        .and(warp::path::full())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and(warp::header::headers_cloned())
        .and(warp::addr::remote())
        .and(warp::body::stream())
        .then(
            move |method, path: warp::path::FullPath, query: String, headers, remote, body| {
                let upstream = upstream.clone();
                async move {
                    let target = if query.is_empty() {
                        format!("{}{}", upstream.base, path.as_str())
                    } else {
                        format!("{}{}?{}", upstream.base, path.as_str(), query)
                    };
                    forward(&upstream, method, target, headers, remote, body).await
                }
            },
        )
}

async fn forward<S, B>(
    upstream: &Upstream,
    method: Method,
    target: String,
    headers: HeaderMap,
    remote: Option<SocketAddr>,
    body: S,
) -> warp::reply::Response
where
    S: Stream<Item = Result<B, warp::Error>> + Send + 'static,
    B: Buf + Send + 'static,
{
    let mut outgoing = end_to_end(&headers);
    if let Some(host) = headers.get(header::HOST) {
        outgoing.insert(HeaderName::from_static("x-forwarded-host"), host.clone());
    }
    // Append the peer to the chain a proxy in front (balena's public URL) may have started.
    if let Some(peer) = remote.map(|a| a.ip().to_string()) {
        let chain = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
            Some(earlier) => format!("{earlier}, {peer}"),
            None => peer,
        };
        if let Ok(value) = HeaderValue::from_str(&chain) {
            outgoing.insert(HeaderName::from_static("x-forwarded-for"), value);
        }
    }
    let body = body.map(|chunk| chunk.map(|mut b| b.copy_to_bytes(b.remaining())));
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
            log::warn!(
                "grafana forward failed upstream={} error=\"{e}\"",
                upstream.base
            );
            let mut reply = "Bad gateway: Grafana is not reachable.\n".into_response();
            *reply.status_mut() = StatusCode::BAD_GATEWAY;
            return reply;
        }
    };
    let status = answer.status();
    let response_headers = end_to_end(answer.headers());
    // reqwest's stream is not Sync, which warp's body needs: pump it through a channel.
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
    *reply.status_mut() = status;
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
