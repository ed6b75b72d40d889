//! A small fake of the balena API (open-balena-api on pinejs, OData `/v7`) for integration
//! tests: the server (routes, auth, injected faults, a page cap, rows changing between pages,
//! the request log). The data is in `account`, the query grammar in `odata`, the resources
//! and the query evaluation in `resources`, what rows keep from one account to the next in
//! `stamps`, timestamps and the clock in `time`.
//!
//! It mirrors the facts in `shared/balena-api/` (README.md and recorded/) and the query grammar of
//! `@balena/odata-parser`, for the subset the exporter uses, and it rejects what the real server
//! rejects. Where the real server would accept something this fake does not implement, the fake
//! answers an error (400 for syntax it cannot parse, 500 for fields and navigations it does not
//! know), so a test fails loudly instead of passing against behaviour that was never checked.
//!
//! Routes: `GET /ping` (no auth), `GET /actor/v1/whoami` and `/user/v1/whoami`,
//! `GET /v7/<resource>`, `/v7/<resource>(<id>)`, `/v7/<resource>/$count` for application,
//! device, organization, device_type, release, service, image, image_install, device_tag and
//! application_tag. Another `/v7/<name>` answers 401 (unknown resource, as recorded); paths
//! outside `/v7` (also `/v6`, which the fake does not speak) answer 404, as the server does for
//! `/v5`. Every method but GET answers 405. A device API key passes whoami as actor type
//! `device` and reads like a guest elsewhere.
//!
//! Query syntax follows odata-parser's grammar: `$` may be sent as `%24` only where it starts an
//! option name (`%24select=...`, `x(%24select=...)`); spaces may be ` `, `%20` or `+`; `'` may
//! be `%27`; inside a quoted string every `%XX` is decoded and `''` is a quote. Any other
//! percent-encoding outside quoted strings (`%28 %29 %2C %2F %3A %3B %3D`, `%24` elsewhere) is a
//! 400. In `$filter`, `and` and `or` have the SAME precedence and group left to right, as in
//! pinejs: `a or b and c` means `(a or b) and c`. Comparisons: `eq ne gt ge lt le`; lambdas
//! `nav/any(v:v/field eq ...)`; `mod` parses and answers 500, as recorded.
//!
//! Every row has `modified_at` (`2026-12-07T17:42:44.154Z`), which the fake sets as the server
//! does: when the account is replaced (`set_account`, or `set_churn` between pages), each row
//! that is new or whose stored content differs gets the time of that write, from a millisecond
//! clock that starts at the real time and moves forward at every write. Rows are matched by
//! id (devices, image installs, fleets, releases, services), device tags by device and key,
//! fleet tags by fleet and key, images by service and release. As recorded, a change of a tag
//! or an image install leaves its device's modified_at alone, and so does a change of a
//! computed field (v7's `should_be_running__release`); but `overall_status` and
//! `overall_progress` are stored with the fake's devices, so a change of either is a device
//! change. In `$filter`, modified_at compares as an instant with a quoted timestamp (date,
//! optional time and fraction, optional zone), exactly (stored values are whole milliseconds);
//! a literal that is no timestamp answers 500, an unquoted one 400.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::Value;
use warp::http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode};
use warp::path::FullPath;
use warp::Filter;

mod account;
mod odata;
mod resources;
mod stamps;
mod time;

pub use account::*;
#[allow(unused_imports)]
pub use resources::{device_fields, fleet_fields, CLOUD_DEVICE_FIELDS};
use resources::{ApiError, Db};
use stamps::Rows;
#[allow(unused_imports)] // tests/api, tests/tools and the benchmarks (through generate.rs)
pub use time::timestamp;

/// A failure injected in front of every request but `/ping`, until cleared. Only tests/api
/// injects failures; the other binaries build this module for a fake that serves.
#[allow(dead_code)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// 503 with an empty body.
    Unavailable,
    /// 429 with `Retry-After: <secs>` and an empty body.
    RateLimited { retry_after_secs: u64 },
    /// Never answers (sleeps an hour); recorded with status 0.
    Hang,
    /// 200 with JSON content type; the body is the normal answer's first half.
    Truncated,
    /// 200 with JSON content type; the body is `<html>oops`.
    Malformed,
    /// The normal answer as if `$filter` were not there (a server that ignores it).
    IgnoreFilter,
}

/// One request as received. `status` is what was answered (0 for a request left hanging).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub raw_query: String,
    pub authorized: bool,
    pub status: u16,
    /// The `User-Agent` header, empty when there was none.
    pub user_agent: String,
    /// Bytes of the body as sent: gzipped when the client asked for gzip (as
    /// open-balena-api answers `Accept-Encoding: gzip`), else as they are.
    pub body_bytes: usize,
}

struct State {
    account: Account,
    /// The account as rows, rebuilt whenever the account changes.
    db: Db,
    /// What outlives an account: ids the fake gives rows, and each row's modified_at.
    rows: Rows,
    fault: Option<Fault>,
    /// At most this many rows per read, whatever `$top` says (a hosted API may cap pages).
    max_top: Option<usize>,
    /// Pages of devices still to churn (see `set_churn`).
    churn: usize,
    requests: Vec<Recorded>,
}

pub struct FakeBalena {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    server: tokio::task::JoinHandle<()>,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl FakeBalena {
    /// Binds 127.0.0.1 on a free port and serves until dropped.
    pub async fn start(account: Account) -> FakeBalena {
        let mut rows = Rows::new();
        let state = Arc::new(Mutex::new(State {
            db: Db::new(&account, &mut rows),
            rows,
            account,
            fault: None,
            max_top: None,
            churn: 0,
            requests: Vec::new(),
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("fake balena: bind");
        let addr = listener.local_addr().expect("fake balena: local address");
        let shared = state.clone();
        let routes = warp::method()
            .and(warp::path::full())
            .and(warp::query::raw().or(warp::any().map(String::new)).unify())
            .and(warp::header::headers_cloned())
            .then(move |method, path, query, headers| {
                handle(shared.clone(), method, path, query, headers)
            });
        let server = tokio::spawn(warp::serve(routes).incoming(listener).run());
        FakeBalena {
            addr,
            state,
            server,
        }
    }
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// Reading and steering the fake during a test. tests/api uses all of these, tests/tools some;
/// tests/http and static_binaries serve the account they start with.
#[allow(dead_code)]
impl FakeBalena {
    pub fn account(&self) -> Account {
        lock(&self.state).account.clone()
    }
    /// Replaces the data. Every row that is new or whose content differs from before (a
    /// device by id, a device tag by device and key, ...: see `resources::Db::new`) gets a
    /// `modified_at` later than any before.
    pub fn set_account(&self, account: Account) {
        let mut s = lock(&self.state);
        s.account = account;
        s.write();
    }
    pub fn set_fault(&self, fault: Option<Fault>) {
        lock(&self.state).fault = fault;
    }
    /// Caps every read at `max_top` rows (None: `$top` is obeyed, however large).
    pub fn set_max_top(&self, max_top: Option<usize>) {
        lock(&self.state).max_top = max_top;
    }
    /// Rows that change while a client pages through devices: after each of the next `pages`
    /// pages of devices, the first device of that page is deleted and a new device (the
    /// highest id yet, with a new modified_at) is added to the same fleet. A client paging by
    /// offset then skips a device per page.
    pub fn set_churn(&self, pages: usize) {
        lock(&self.state).churn = pages;
    }
    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.state).requests.clone()
    }
    pub fn clear_requests(&self) {
        lock(&self.state).requests.clear();
    }
}

impl State {
    /// After the account changed: its rows anew, and the changed ones stamped.
    fn write(&mut self) {
        self.db = Db::new(&self.account, &mut self.rows);
    }
}

impl Drop for FakeBalena {
    fn drop(&mut self) {
        self.server.abort();
    }
}

struct Reply {
    status: u16,
    json: bool,
    body: Vec<u8>,
    /// A weak ETag of the uncompressed body, as the recorded server sends on every 200.
    etag: Option<String>,
    retry_after: Option<u64>,
    /// Ids of the rows served (for `set_churn`).
    devices_served: Vec<u64>,
}

impl Reply {
    fn empty(status: u16) -> Reply {
        Reply {
            status,
            json: false,
            body: Vec::new(),
            etag: None,
            retry_after: None,
            devices_served: Vec::new(),
        }
    }
    fn json(status: u16, body: impl Into<Vec<u8>>) -> Reply {
        Reply {
            json: true,
            body: body.into(),
            ..Reply::empty(status)
        }
    }
    /// A 200 with a weak ETag of its body (`W/"<length hex>-<hash>"`), or a 304 without a body
    /// when `if_none_match` names that tag (or is `*`), as the recorded server answers.
    fn conditional(mut self, if_none_match: Option<&str>) -> Reply {
        if self.status != 200 {
            return self;
        }
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.body.hash(&mut hasher);
        let tag = format!("W/\"{:x}-{:016x}\"", self.body.len(), hasher.finish());
        let matches = if_none_match.is_some_and(|v| {
            v.split(',')
                .map(str::trim)
                .any(|t| t == "*" || t.trim_start_matches("W/") == tag.trim_start_matches("W/"))
        });
        if matches {
            self = Reply::empty(304);
        }
        self.etag = Some(tag);
        self
    }

    /// The body gzipped when `gzip` (the client asked for it) and it is at least 1 KiB: the
    /// recorded server sends smaller bodies as they are.
    fn compressed(mut self, gzip: bool) -> (Reply, bool) {
        let gzip = gzip && self.body.len() >= 1024;
        if gzip {
            use std::io::Write;
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            let written = encoder.write_all(&self.body);
            self.body = written
                .and_then(|()| encoder.finish())
                .expect("gzip in memory");
        }
        (self, gzip)
    }

    fn into_response(self, gzip: bool) -> Response<Vec<u8>> {
        let mut resp = Response::new(self.body);
        if gzip {
            resp.headers_mut()
                .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        if let Some(tag) = self
            .etag
            .as_deref()
            .and_then(|t| HeaderValue::from_str(t).ok())
        {
            resp.headers_mut().insert(header::ETAG, tag);
        }
        *resp.status_mut() =
            StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let headers = resp.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        if self.json {
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json; charset=utf-8"),
            );
        }
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

/// Who the bearer token belongs to.
enum Caller {
    User,
    Device(u64),
    Guest,
}

async fn handle(
    state: Arc<Mutex<State>>,
    method: Method,
    path: FullPath,
    query: String,
    headers: HeaderMap,
) -> Response<Vec<u8>> {
    let path = path.as_str().to_owned();
    let (reply, hang, gzip) = {
        let mut s = lock(&state);
        let token = bearer(&headers);
        let caller = match token {
            Some(t) if s.account.tokens.iter().any(|k| k == t) => Caller::User,
            Some(t) => match s.account.device_keys.iter().find(|(k, _)| k == t) {
                Some((_, id)) => Caller::Device(*id),
                None => Caller::Guest,
            },
            None => Caller::Guest,
        };
        let authorized = matches!(caller, Caller::User);
        let normal = if method != Method::GET {
            Reply::empty(405)
        } else {
            route(&s, &caller, &path, &query)
        };
        if s.churn > 0 && path == "/v7/device" && !normal.devices_served.is_empty() {
            s.churn -= 1;
            churn(&mut s.account, &normal.devices_served);
            s.write();
        }
        let fault = if path == "/ping" {
            None
        } else {
            s.fault.clone()
        };
        let hang = fault == Some(Fault::Hang);
        let reply = match fault {
            None => normal,
            Some(Fault::Unavailable) => Reply::empty(503),
            Some(Fault::RateLimited { retry_after_secs }) => Reply {
                retry_after: Some(retry_after_secs),
                ..Reply::empty(429)
            },
            Some(Fault::Hang) => Reply::empty(504),
            Some(Fault::Truncated) => Reply::json(200, &normal.body[..normal.body.len() / 2]),
            Some(Fault::Malformed) => Reply::json(200, "<html>oops"),
            Some(Fault::IgnoreFilter) => normal,
        };
        let accepts_gzip = headers
            .get(header::ACCEPT_ENCODING)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|e| e.trim().starts_with("gzip")));
        let header_text = |name| {
            headers
                .get(name)
                .and_then(|v: &HeaderValue| v.to_str().ok())
        };
        let no_cache = header_text(header::CACHE_CONTROL).is_some_and(|v| v.contains("no-cache"));
        let if_none_match = header_text(header::IF_NONE_MATCH).filter(|_| !no_cache);
        let reply = reply.conditional(if_none_match);
        let (reply, gzip) = reply.compressed(accepts_gzip);
        let status = if hang { 0 } else { reply.status };
        s.requests.push(Recorded {
            body_bytes: reply.body.len(),
            method: method.as_str().to_owned(),
            path,
            raw_query: query,
            authorized,
            status,
            user_agent: headers
                .get("user-agent")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned(),
        });
        (reply, hang, gzip)
    };
    if hang {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    reply.into_response(gzip)
}

/// After a page of devices: the page's first device goes, a new one arrives.
fn churn(account: &mut Account, served: &[u64]) {
    let Some(&first) = served.first() else {
        return;
    };
    let Some(at) = account.devices.iter().position(|d| d.id == first) else {
        return;
    };
    let gone = account.devices.remove(at);
    let id = account
        .devices
        .iter()
        .map(|d| d.id)
        .max()
        .unwrap_or(0)
        .max(gone.id)
        + 1;
    account.devices.push(Device {
        id,
        uuid: format!("{id:032x}"),
        device_name: format!("new-{id}"),
        ..gone
    });
}

/// `Authorization: <scheme> <token>` with scheme `Bearer`, compared case-insensitively.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

const WHOAMI: &str =
    r#"{"id":1,"actorType":"user","actorTypeId":1,"username":"admin","email":"admin@example.com"}"#;

fn route(s: &State, caller: &Caller, path: &str, query: &str) -> Reply {
    match (path, caller) {
        ("/ping", _) => Reply {
            json: false,
            ..Reply::json(200, "OK")
        },
        ("/actor/v1/whoami", Caller::User) | ("/user/v1/whoami", Caller::User) => {
            Reply::json(200, WHOAMI)
        }
        ("/actor/v1/whoami", Caller::Device(id)) => {
            let uuid = s
                .account
                .devices
                .iter()
                .find(|d| d.id == *id)
                .map_or(String::new(), |d| d.uuid.clone());
            Reply::json(
                200,
                serde_json::json!({"id": 100 + id, "actorType": "device", "actorTypeId": id, "uuid": uuid})
                    .to_string(),
            )
        }
        ("/actor/v1/whoami" | "/user/v1/whoami", _) => Reply::empty(401),
        _ => match path.strip_prefix("/v7/") {
            None => Reply::empty(404),
            Some(rest) => {
                let authorized = matches!(caller, Caller::User);
                match read(s, authorized, rest, query) {
                    Ok((body, ids)) => Reply {
                        devices_served: ids,
                        ..Reply::json(200, body)
                    },
                    Err(ApiError::BadUrl) => {
                        let url = if query.is_empty() {
                            path.to_owned()
                        } else {
                            format!("{path}?{query}")
                        };
                        Reply::json(
                            400,
                            Value::from(format!("Malformed url: '{url}'")).to_string(),
                        )
                    }
                    Err(ApiError::Unauthorized) => Reply::empty(401),
                    Err(ApiError::ServerError) => Reply::empty(500),
                }
            }
        },
    }
}

/// `/v7/<resource>[(<id>)][/$count]?<query>`.
fn read(
    s: &State,
    authorized: bool,
    rest: &str,
    query: &str,
) -> Result<(String, Vec<u64>), ApiError> {
    // pinejs parses the whole URL first: syntax errors win over everything else.
    let mut q = odata::parse_query(query)?;
    if s.fault == Some(Fault::IgnoreFilter) {
        q.filter = None;
    }
    let (name, count) = match rest.strip_suffix("/$count") {
        Some(name) => (name, true),
        None => (rest, false),
    };
    let (name, key) = match name.split_once('(') {
        None => (name, None),
        Some((name, key)) => {
            let key = key
                .strip_suffix(')')
                .filter(|k| !count && odata::is_digits(k))
                .ok_or(ApiError::BadUrl)?;
            (
                name,
                Some(key.parse::<u64>().map_err(|_| ApiError::BadUrl)?),
            )
        }
    };
    if name.is_empty()
        || name
            .bytes()
            .any(|b| odata::RESERVED.contains(&b) || b == b'%')
    {
        return Err(ApiError::BadUrl);
    }
    resources::answer(&s.db, authorized, name, key, count, &q, s.max_top)
}
