//! Requests a client may send, whatever their path, method and headers: the routes never panic,
//! answer only statuses a user expects, open fleet data only as the listener's access says, and
//! forward to an upstream only paths under its prefix, with no `.` or `..` segment.

use crate::common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use proptest::prelude::*;
use proptest::sample::select;
use warp::Filter;

use balena_exporter::balena::ApiStats;
use balena_exporter::config::{Access, MetricsAuth, Secret};
use balena_exporter::gzip;
use balena_exporter::http::{self, Options};
use balena_exporter::metrics::Health;
use balena_exporter::proxy::Upstream;
use balena_exporter::state::{Body, Published, Shared};
use common::props;

const CASES: u32 = 512;

/// Path segments a client might send: routes, dots in every spelling, escapes, odd bytes.
const SEGMENTS: &[&str] = &[
    "",
    "grafana",
    "alertmanager",
    "metrics",
    "sd",
    "-",
    "healthy",
    "ready",
    "api",
    "login",
    ".",
    "..",
    "%2e",
    "%2E%2e",
    ".%2e",
    "...",
    "a..b",
    "%00",
    "%2f",
    "%5c",
    "x%20y",
    "%ff",
    "é",
    "%C3%A9",
    "*",
    "~user",
    "index.html",
    "?",
    "#frag",
];

#[derive(Debug, Clone)]
struct Request {
    method: &'static str,
    path: String,
    authorization: Option<String>,
    accept_encoding: Option<&'static str>,
    access: usize,
}

fn request() -> impl Strategy<Value = Request> {
    let path =
        prop::collection::vec(select(SEGMENTS), 0..6).prop_map(|s| format!("/{}", s.join("/")));
    let basic = any::<Vec<u8>>().prop_map(|b| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(b)
        )
    });
    let authorization = prop_oneof![
        Just(None),
        Just(Some("Bearer t0ken".to_string())),
        Just(Some("Basic b3BzOnBhNTV3b3Jk".to_string())), // ops:pa55word
        basic.prop_map(Some),
        "[ -~]{0,40}".prop_map(Some),
    ];
    (
        select(&["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"][..]),
        path,
        authorization,
        select(
            &[
                None,
                Some("gzip"),
                Some("identity"),
                Some("gzip;q=0"),
                Some("*"),
                Some("br, gzip;q=0.5"),
            ][..],
        ),
        0..3usize,
    )
        .prop_map(
            |(method, path, authorization, accept_encoding, access)| Request {
                method,
                path,
                authorization,
                accept_encoding,
                access,
            },
        )
}

fn access(which: usize) -> Access {
    match which {
        0 => Access::Open,
        1 => Access::Credentials(MetricsAuth {
            token: Some(Secret::new("t0ken")),
            basic: Some(("ops".into(), Secret::new("pa55word"))),
        }),
        _ => Access::Closed,
    }
}

fn sd_json(json: &[u8]) -> gzip::Head {
    let mut writer = gzip::Writer::new();
    writer.write(json);
    writer.finish()
}

fn shared() -> Arc<Shared> {
    let published = Published {
        metrics: Body::empty(),
        status_html: Bytes::from_static(b"<p>fleets</p>"),
        status_rest: Bytes::new(),
        sd: Some(Body::new(sd_json(b"[]"))),
        last_success: None,
        stale_after: Duration::from_secs(60),
    };
    let health = Health::new(Arc::new(ApiStats::default()), Vec::new());
    Arc::new(Shared::new(published, Arc::new(health)))
}

#[test]
fn any_request_gets_an_expected_answer_and_forwarding_stays_under_its_prefix() {
    let runtime = Arc::new(tokio::runtime::Runtime::new().unwrap());
    // An upstream that records every path it is sent.
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let record = seen.clone();
    let upstream = runtime.block_on(async move {
        let routes = warp::path::full().map(move |path: warp::path::FullPath| {
            record.lock().unwrap().push(path.as_str().to_string());
            "upstream"
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(warp::serve(routes).incoming(listener).run());
        url
    });
    let checked_seen = seen.clone();
    props::check(
        "any_request_gets_an_expected_answer_and_forwarding_stays_under_its_prefix",
        CASES,
        request,
        move |r: Request| {
            let routes = http::routes(
                shared(),
                Options {
                    access: access(r.access),
                    grafana: Some(Upstream::new(&upstream, "grafana").unwrap()),
                    alertmanager: Some(Upstream::new(&upstream, "alertmanager").unwrap()),
                    auth_failures: Default::default(),
                },
            );
            let Ok(uri) = r.path.parse::<warp::http::Uri>() else {
                return Ok(()); // not a request a client can send
            };
            let mut request = warp::test::request()
                .method(r.method)
                .path(&uri.to_string());
            if let Some(a) = &r.authorization {
                request = request.header("authorization", a.as_str());
            }
            if let Some(e) = r.accept_encoding {
                request = request.header("accept-encoding", e);
            }
            let response = runtime.block_on(request.reply(&routes));
            let status = response.status().as_u16();
            let expected: BTreeSet<u16> = [200, 400, 401, 403, 404, 405, 413, 500, 502, 503].into();
            prop_assert!(expected.contains(&status), "{status} for {r:?}");
            let first = r
                .path
                .trim_start_matches('/')
                .split('/')
                .next()
                .unwrap_or("");
            if matches!(first, "metrics" | "sd") && r.path.len() == first.len() + 1 {
                let fleet_data = status == 200 || status == 503;
                match r.access {
                    0 => prop_assert!(fleet_data || status == 404, "{status} for {r:?}"),
                    1 => prop_assert!(fleet_data || status == 401 || status == 404, "{status}"),
                    _ => prop_assert!(status == 403 || status == 404, "{status} for {r:?}"),
                }
            }
            Ok(())
        },
    );
    // Whatever was forwarded stayed under its prefix, with no dot segment.
    for path in checked_seen.lock().unwrap().iter() {
        let first = path.trim_start_matches('/').split('/').next().unwrap_or("");
        assert!(
            first == "grafana" || first == "alertmanager",
            "forwarded outside the prefixes: {path}"
        );
        for segment in path.split('/') {
            let decoded = segment.to_ascii_lowercase().replace("%2e", ".");
            assert!(decoded != "." && decoded != "..", "forwarded {path}");
        }
    }
    assert!(
        !seen.lock().unwrap().is_empty(),
        "some requests were forwarded"
    );
}
