//! `/grafana/...` and `/alertmanager/...` forwarding against a local upstream that records what
//! reaches it: what passes through, what is refused (paths leaving the prefix, big bodies),
//! and the credentials in front of Alertmanager.

use crate::common;

use std::sync::{Arc, Mutex};

use base64::Engine;
use common::exporter::{start_ready, Exporter};
use common::fake::{Account, FakeBalena};
use warp::http::{HeaderMap, Method, Response, StatusCode};
use warp::Filter;

const TOKEN: &str = "sample-token";

/// What the upstream received.
#[derive(Clone, Debug)]
struct Seen {
    method: Method,
    path: String,
    query: String,
    headers: HeaderMap,
    body: Vec<u8>,
}

/// A stand-in for Grafana: `/grafana/` redirects to the login page, `/grafana/big` sends
/// 5 MiB, everything else answers 201 with a header of its own and echoes the body.
async fn upstream() -> (String, Arc<Mutex<Vec<Seen>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let routes = warp::method()
        .and(warp::path::full())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and(warp::header::headers_cloned())
        .and(warp::body::bytes())
        .map(
            move |method, path: warp::path::FullPath, query, headers, body: bytes::Bytes| {
                let path = path.as_str().to_string();
                record.lock().unwrap().push(Seen {
                    method,
                    path: path.clone(),
                    query,
                    headers,
                    body: body.to_vec(),
                });
                let builder = Response::builder().header("x-upstream", "grafana-stand-in");
                match path.as_str() {
                    "/grafana/" => builder
                        .status(StatusCode::FOUND)
                        .header("location", "/grafana/login")
                        .body(Vec::new()),
                    "/grafana/big" => builder.body(vec![b'g'; 5 << 20]),
                    _ => builder
                        .status(StatusCode::CREATED)
                        .header("content-type", "application/json")
                        .body(body.to_vec()),
                }
            },
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(warp::serve(routes).incoming(listener).run());
    (url, seen)
}

/// The status of `GET <path>` sent byte for byte as written.
async fn raw_status(url: &str, path: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(url.trim_start_matches("http://"))
        .await
        .unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: device\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let line = String::from_utf8_lossy(&answer);
    line.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn grafana_requests_reach_the_upstream_unchanged() {
    let fake = FakeBalena::start(Account::sample()).await;
    let (grafana, seen) = upstream().await;
    let exporter = Exporter::ready_on(&fake, &[("GRAFANA_URL", &grafana)]).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    // GET with a query and headers.
    let r = http
        .get(format!(
            "{}/grafana/api/health?verbose=1&x=a%20b",
            exporter.url
        ))
        .header("cookie", "grafana_session=abc")
        .header("connection", "x-private")
        .header("x-private", "must not pass")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["x-upstream"], "grafana-stand-in");
    let got = seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(
        (got.method, got.path.as_str(), got.query.as_str()),
        (Method::GET, "/grafana/api/health", "verbose=1&x=a%20b")
    );
    assert_eq!(got.headers["cookie"], "grafana_session=abc");
    assert!(
        got.headers.get("x-private").is_none(),
        "a header named by Connection is hop-by-hop"
    );
    assert!(got.headers["x-forwarded-host"]
        .to_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
    assert_eq!(got.headers["x-forwarded-for"], "127.0.0.1");

    // A chain the client sent is not trusted: Grafana sees the TCP peer only.
    http.get(format!("{}/grafana/api/health", exporter.url))
        .header("x-forwarded-for", "203.0.113.7")
        .send()
        .await
        .unwrap();
    let got = seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(got.headers["x-forwarded-for"], "127.0.0.1");

    // Paths that leave /grafana/ once dot segments are resolved never reach the upstream.
    // (Sent raw: an HTTP client resolves them before sending.)
    let before = seen.lock().unwrap().len();
    for path in ["/grafana/../metrics", "/grafana/%2e%2e/x", "/grafana/a/./b"] {
        assert_eq!(raw_status(&exporter.url, path).await, 400, "{path}");
    }
    assert_eq!(seen.lock().unwrap().len(), before);

    // A body over the limit is refused before anything is sent upstream.
    let r = http
        .post(format!("{}/grafana/api/dashboards/db", exporter.url))
        .body(vec![b'x'; 17 << 20])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(seen.lock().unwrap().len(), before);

    // POST with a body: method, body and content type arrive; the status comes back.
    let query = br#"{"queries":[{"expr":"balena_up"}]}"#;
    let r = http
        .post(format!("{}/grafana/api/ds/query", exporter.url))
        .header("content-type", "application/json")
        .body(query.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.bytes().await.unwrap().as_ref(), query);
    let got = seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(
        (got.method, got.body.as_slice()),
        (Method::POST, query.as_slice())
    );
    assert_eq!(got.headers["content-type"], "application/json");

    // Redirects go back to the client, not followed.
    let r = http
        .get(format!("{}/grafana/", exporter.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    assert_eq!(r.headers()["location"], "/grafana/login");

    // A large body streams through whole.
    let r = http
        .get(format!("{}/grafana/big", exporter.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap().len(), 5 << 20);

    // Only the prefix is forwarded; /metrics is still the exporter's.
    let before = seen.lock().unwrap().len();
    assert_eq!(exporter.get("/grafanax/api").await.0, 404);
    assert_eq!(exporter.get("/api/health").await.0, 404);
    assert_eq!(seen.lock().unwrap().len(), before);
    let (status, body) = exporter.get("/metrics").await;
    assert_eq!(status, 200);
    assert!(body.contains("balena_devices_online{"));
    exporter.stop().await.unwrap();
}

#[tokio::test]
async fn an_unreachable_grafana_is_a_502_and_without_grafana_url_a_page_says_so() {
    let fake = FakeBalena::start(Account::sample()).await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let exporter = Exporter::start(
        &fake.url(),
        TOKEN,
        &[("GRAFANA_URL", &format!("http://{closed}"))],
    )
    .await;
    assert_eq!(
        exporter.get("/grafana/api/health").await,
        (
            502,
            "Bad gateway: the upstream service is not reachable.\n".into()
        )
    );
    exporter.stop().await.unwrap();

    // Without GRAFANA_URL (as in --demo): a page that says what would be there, and what
    // to set; the same for Alertmanager, behind the credentials like its forward.
    let exporter = Exporter::start(
        &fake.url(),
        TOKEN,
        &[
            ("METRICS_USERNAME", "ops"),
            ("METRICS_PASSWORD", "s3cret-pass-0123456789"),
        ],
    )
    .await;
    for path in ["/grafana", "/grafana/", "/grafana/api/health"] {
        let (status, page) = exporter.get(path).await;
        assert_eq!(status, 404, "{path}");
        assert!(
            page.contains("<h1>Grafana is not configured</h1>"),
            "{page}"
        );
        assert!(page.contains("<code>GRAFANA_URL</code>"), "{page}");
        assert!(page.contains("<code>http://grafana:3000</code>"), "{page}");
    }
    assert_eq!(exporter.get("/alertmanager/").await.0, 401);
    let http = reqwest::Client::new();
    let answer = http
        .get(format!("{}/alertmanager/", exporter.url))
        .basic_auth("ops", Some("s3cret-pass-0123456789"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 404);
    assert!(answer.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let page = answer.text().await.unwrap();
    assert!(
        page.contains("<h1>Alertmanager is not configured</h1>"),
        "{page}"
    );
    assert!(page.contains("<code>ALERTMANAGER_URL</code>"), "{page}");
    assert_eq!(exporter.get("/grafanax").await.0, 404);
    exporter.stop().await.unwrap();
}

#[tokio::test]
async fn metrics_credentials_when_configured() {
    let (_fake, exporter) = start_ready(
        Account::sample(),
        &[
            ("METRICS_TOKEN", "scrape-t0ken-0123456789"),
            ("METRICS_USERNAME", "prom"),
            ("METRICS_PASSWORD", "pa55-0123456789abcdef"),
        ],
    )
    .await;
    let http = reqwest::Client::new();
    let status = |auth: Option<String>| {
        let mut request = http.get(format!("{}/metrics", exporter.url));
        if let Some(a) = auth {
            request = request.header("authorization", a);
        }
        async move { request.send().await.unwrap() }
    };
    let basic = |s: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(s)
        )
    };

    let denied = status(None).await;
    assert_eq!(denied.status(), 401);
    assert_eq!(
        denied.headers()["www-authenticate"],
        "Basic realm=\"balena-exporter\", charset=\"UTF-8\""
    );
    assert_eq!(status(Some("Bearer wrong".into())).await.status(), 401);
    assert_eq!(status(Some(basic("prom:wrong"))).await.status(), 401);
    assert_eq!(
        status(Some("Bearer scrape-t0ken-0123456789".into()))
            .await
            .status(),
        200
    );
    assert_eq!(
        status(Some(basic("prom:pa55-0123456789abcdef")))
            .await
            .status(),
        200
    );
    // The status page names fleets, so it is guarded too; the probes stay open.
    assert_eq!(exporter.get("/").await.0, 401);
    assert_eq!(exporter.get("/-/healthy").await.0, 200);
    assert_eq!(exporter.get("/-/ready").await.0, 200);
    exporter.stop().await.unwrap();
}

#[tokio::test]
async fn alertmanager_is_forwarded_behind_the_credentials() {
    let fake = FakeBalena::start(Account::sample()).await;
    let (alertmanager, seen) = upstream().await;
    let vars = [
        ("ALERTMANAGER_URL", alertmanager.as_str()),
        ("METRICS_USERNAME", "ops"),
        ("METRICS_PASSWORD", "s3cret-pass-0123456789"),
    ];
    let exporter = Exporter::start(&fake.url(), TOKEN, &vars).await;
    let url = format!("{}/alertmanager/api/v2/alerts", exporter.url);
    let http = reqwest::Client::new();
    // What reached Alertmanager through the forward (the status page's poller asks it too).
    let forwarded = || -> Vec<String> {
        seen.lock()
            .unwrap()
            .iter()
            .filter(|s| {
                s.headers.get("user-agent").map(|v| v.as_bytes())
                    != Some(balena_exporter::alerts::USER_AGENT.as_bytes())
            })
            .map(|s| s.path.clone())
            .collect()
    };
    let denied = http.get(&url).send().await.unwrap();
    assert_eq!(denied.status(), 401);
    assert!(forwarded().is_empty(), "nothing reached Alertmanager");
    let allowed = http
        .get(&url)
        .basic_auth("ops", Some("s3cret-pass-0123456789"))
        .send()
        .await
        .unwrap();
    assert_eq!(allowed.status(), 201);
    assert_eq!(forwarded(), ["/alertmanager/api/v2/alerts"]);
    // Other paths are not turned into 401s by the credentials in front of Alertmanager.
    assert_eq!(exporter.get("/nope").await.0, 404);
    exporter.stop().await.unwrap();

    // Without credentials configured, Alertmanager is closed like the metrics.
    let closed = Exporter::start(
        &fake.url(),
        TOKEN,
        &[
            ("ALERTMANAGER_URL", &alertmanager),
            ("PUBLIC_METRICS", "false"),
        ],
    )
    .await;
    assert_eq!(closed.get("/alertmanager/").await.0, 403);
    closed.stop().await.unwrap();
}
