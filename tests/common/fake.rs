//! A small fake of the balena API (open-balena-api on pinejs, OData `/v7`) for integration tests.
//!
//! It mirrors the facts in `shared/balena-api/` (README.md and recorded/) and the query grammar of
//! `@balena/odata-parser`, for the subset the exporter uses, and it rejects what the real server
//! rejects. Where the real server would accept something this fake does not implement, the fake
//! answers an error (400 for syntax it cannot parse, 500 for fields and navigations it does not
//! know), so a test fails loudly instead of passing against behaviour that was never checked.
//!
//! Routes: `GET /ping` (no auth), `GET /actor/v1/whoami` and `/user/v1/whoami`,
//! `GET /v7/application`, `/v7/device`, `/v7/<resource>(<id>)`, `/v7/<resource>/$count`.
//! Another `/v7/<name>` answers 401 (unknown resource, as recorded); paths outside `/v7` (also
//! `/v6`, which the fake does not speak) answer 404, as the server does for `/v5`. Every method
//! but GET answers 405.
//!
//! Query syntax follows odata-parser's grammar: `$` may be sent as `%24` only where it starts an
//! option name (`%24select=...`, `x(%24select=...)`); spaces may be ` `, `%20` or `+`; `'` may
//! be `%27`; inside a quoted string every `%XX` is decoded and `''` is a quote. Any other
//! percent-encoding outside quoted strings (`%28 %29 %2C %2F %3A %3B %3D`, `%24` elsewhere) is a
//! 400. In `$filter`, `and` and `or` have the SAME precedence and group left to right, as in
//! pinejs: `a or b and c` means `(a or b) and c`. Only `eq`/`ne` comparisons are implemented.

use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{json, Value};
use warp::http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode};
use warp::path::FullPath;
use warp::Filter;

// ----------------------------------------------------------------------------- data

#[derive(Clone, Debug, Default)]
pub struct Account {
    /// Tokens that authenticate as the (single) user `admin`; any other token runs as a guest.
    pub tokens: Vec<String>,
    pub fleets: Vec<Fleet>,
    pub devices: Vec<Device>,
}

#[derive(Clone, Debug, Default)]
pub struct Release {
    pub id: u64,
    pub commit: String,
}

#[allow(non_snake_case)]
#[derive(Clone, Debug, Default)]
pub struct Fleet {
    pub id: u64,
    pub app_name: String,
    /// `org/app`, unique.
    pub slug: String,
    /// Organization handle; the organization's id is derived (handles sorted, 1-based).
    pub organization: String,
    /// Device type slug; its id is derived (all slugs sorted, 1-based).
    pub device_type: String,
    pub target_release: Option<Release>,
    /// `fleet|block|app`; an empty string is served as `"fleet"`.
    pub is_of__class: String,
}

#[derive(Clone, Debug, Default)]
pub struct Device {
    pub id: u64,
    pub uuid: String,
    pub device_name: String,
    pub fleet_id: u64,
    pub device_type: String,
    pub is_online: bool,
    pub api_heartbeat_state: String,
    pub overall_status: String,
    pub last_connectivity_event: Option<String>,
    pub os_version: Option<String>,
    pub os_variant: Option<String>,
    pub supervisor_version: Option<String>,
    pub running_release: Option<Release>,
    pub pinned_release: Option<Release>,
    pub is_web_accessible: bool,
    pub ip_address: Option<String>,
    pub cpu_usage: Option<i64>,
    pub cpu_temp: Option<i64>,
    pub memory_usage: Option<i64>,
    pub memory_total: Option<i64>,
    pub storage_usage: Option<i64>,
    pub storage_total: Option<i64>,
    pub is_undervolted: bool,
}

/// A failure injected in front of every request but `/ping`, until cleared.
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
}

static DEVICE_FIELDS: LazyLock<Vec<&str>> = LazyLock::new(|| {
    "id api_heartbeat_state uuid device_name is_of__device_type belongs_to__application is_online \
     last_connectivity_event ip_address is_web_accessible memory_usage memory_total storage_usage \
     storage_total cpu_usage cpu_temp is_undervolted is_running__release os_version os_variant \
     overall_status supervisor_version is_pinned_on__release should_be_running__release"
        .split_whitespace()
        .collect()
});
static FLEET_FIELDS: LazyLock<Vec<&str>> = LazyLock::new(|| {
    "id should_track_latest_release is_of__class organization app_name slug is_for__device_type \
     should_be_running__release is_host is_archived uuid"
        .split_whitespace()
        .collect()
});

/// Device fields the fake serves, in the real server's order (the order used without `$select`).
pub fn device_fields() -> &'static [&'static str] {
    &DEVICE_FIELDS
}
/// Application (fleet) fields the fake serves, in the real server's order.
pub fn fleet_fields() -> &'static [&'static str] {
    &FLEET_FIELDS
}

impl Account {
    /// Token `sample-token`; organizations `acme` and `globex`; fleets 1 `acme/sensors`,
    /// 2 `globex/sensors` (same app_name as 1) and 3 `acme/gateways` (no target release);
    /// devices 1-8 with varied statuses; device 4 is pinned; device 8 never reported anything.
    pub fn sample() -> Account {
        let rel = |id: u64| Release {
            id,
            commit: format!("{:032x}", id * 0x1234_5678_9abc),
        };
        let fleet = |id: u64, app: &str, org: &str, dt: &str, target: Option<Release>| Fleet {
            id,
            app_name: app.into(),
            slug: format!("{org}/{app}"),
            organization: org.into(),
            device_type: dt.into(),
            target_release: target,
            is_of__class: "fleet".into(),
        };
        let dev = |id: u64, name: &str, fleet_id: u64, dt: &str, running: u64| Device {
            id,
            uuid: format!("{:032x}", 0xba1e_0000 + id),
            device_name: name.into(),
            fleet_id,
            device_type: dt.into(),
            is_online: true,
            api_heartbeat_state: "online".into(),
            overall_status: "operational".into(),
            last_connectivity_event: Some(format!("2026-11-21T20:27:1{id}.768Z")),
            os_version: Some("balenaOS 6.0.13".into()),
            os_variant: Some("prod".into()),
            supervisor_version: Some("16.7.1".into()),
            running_release: Some(rel(running)),
            ip_address: Some(format!("192.168.1.{id}")),
            cpu_usage: Some(20),
            cpu_temp: Some(45),
            memory_usage: Some(410),
            memory_total: Some(3840),
            storage_usage: Some(2150),
            storage_total: Some(28400),
            ..Default::default()
        };
        let (pi4, pi3, nuc) = ("raspberrypi4-64", "raspberrypi3", "intel-nuc");
        let mut d = vec![
            dev(1, "sensor-01", 1, pi4, 11),
            dev(2, "sensor-02", 1, pi4, 10),
            dev(3, "sensor-03", 1, pi4, 10),
            dev(4, "sensor-04", 1, pi4, 10),
            dev(5, "probe-01", 2, pi3, 21),
            dev(6, "probe-02", 2, pi3, 20),
            dev(7, "gw-01", 3, nuc, 0),
        ];
        // 1: web accessible, two addresses, runs its fleet's target.
        d[0].is_web_accessible = true;
        d[0].ip_address = Some("192.168.1.10 10.114.101.2".into());
        // 2: offline, on an old release.
        d[1].is_online = false;
        d[1].api_heartbeat_state = "offline".into();
        d[1].overall_status = "disconnected".into();
        // 3: heartbeat timed out, hot and undervolted.
        d[2].api_heartbeat_state = "timeout".into();
        d[2].overall_status = "reduced-functionality".into();
        d[2].cpu_temp = Some(80);
        d[2].is_undervolted = true;
        // 4: pinned on release 10, so its target is 10, not the fleet's 11.
        d[3].pinned_release = Some(rel(10));
        // 6: updating from release 20 to its fleet's 21.
        d[5].overall_status = "updating".into();
        d[5].cpu_usage = Some(80);
        // 7: a dev image still configuring, running nothing yet.
        d[6].api_heartbeat_state = "unknown".into();
        d[6].overall_status = "configuring".into();
        d[6].os_variant = Some("dev".into());
        d[6].running_release = None;
        // Device 8 was provisioned but never came online: every reported value is null.
        d.push(Device {
            id: 8,
            uuid: format!("{:032x}", 0xba1e_0008u64),
            device_name: "gw-02".into(),
            fleet_id: 3,
            device_type: nuc.into(),
            api_heartbeat_state: "unknown".into(),
            overall_status: "inactive".into(),
            ..Default::default()
        });
        Account {
            tokens: vec!["sample-token".into()],
            fleets: vec![
                fleet(1, "sensors", "acme", pi4, Some(rel(11))),
                fleet(2, "sensors", "globex", pi3, Some(rel(21))),
                fleet(3, "gateways", "acme", nuc, None),
            ],
            devices: d,
        }
    }
}

// ----------------------------------------------------------------------------- server

struct State {
    account: Account,
    fault: Option<Fault>,
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
        let state = Arc::new(Mutex::new(State {
            account,
            fault: None,
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
    pub fn set_account(&self, account: Account) {
        lock(&self.state).account = account;
    }
    pub fn set_fault(&self, fault: Option<Fault>) {
        lock(&self.state).fault = fault;
    }
    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.state).requests.clone()
    }
    pub fn clear_requests(&self) {
        lock(&self.state).requests.clear();
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
    retry_after: Option<u64>,
}

impl Reply {
    fn empty(status: u16) -> Reply {
        Reply {
            status,
            json: false,
            body: Vec::new(),
            retry_after: None,
        }
    }
    fn json(status: u16, body: impl Into<Vec<u8>>) -> Reply {
        Reply {
            status,
            json: true,
            body: body.into(),
            retry_after: None,
        }
    }
    fn into_response(self) -> Response<Vec<u8>> {
        let mut resp = Response::new(self.body);
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

async fn handle(
    state: Arc<Mutex<State>>,
    method: Method,
    path: FullPath,
    query: String,
    headers: HeaderMap,
) -> Response<Vec<u8>> {
    let path = path.as_str().to_owned();
    let (reply, hang) = {
        let mut s = lock(&state);
        let authorized = bearer(&headers).is_some_and(|t| s.account.tokens.iter().any(|k| k == t));
        let normal = if method != Method::GET {
            Reply::empty(405)
        } else {
            route(&s.account, authorized, &path, &query)
        };
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
        };
        let status = if hang { 0 } else { reply.status };
        s.requests.push(Recorded {
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
        (reply, hang)
    };
    if hang {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    reply.into_response()
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

fn route(account: &Account, authorized: bool, path: &str, query: &str) -> Reply {
    match path {
        "/ping" => Reply {
            json: false,
            ..Reply::json(200, "OK")
        },
        "/actor/v1/whoami" | "/user/v1/whoami" if authorized => Reply::json(200, WHOAMI),
        "/actor/v1/whoami" | "/user/v1/whoami" => Reply::empty(401),
        _ => match path.strip_prefix("/v7/") {
            None => Reply::empty(404),
            Some(rest) => match odata(account, authorized, rest, query) {
                Ok(body) => Reply::json(200, body),
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
            },
        },
    }
}

// ----------------------------------------------------------------------------- resources

enum ApiError {
    /// 400 `"Malformed url: '...'"`: the URL does not parse (or uses syntax the fake lacks).
    BadUrl,
    /// 401, empty body: unknown resource, or a guest reading devices.
    Unauthorized,
    /// 500, empty body: unknown field or navigation, or a type mismatch in `$filter`.
    ServerError,
}
use ApiError::{BadUrl, ServerError, Unauthorized};
type R<T> = Result<T, ApiError>;

#[derive(Clone, Copy, PartialEq)]
enum Res {
    Fleet,
    Device,
}

#[derive(Clone, Copy)]
enum Row<'a> {
    Fleet(&'a Fleet),
    Device(&'a Device),
}

type Record = Vec<(&'static str, Value)>;

fn fields(res: Res) -> &'static [&'static str] {
    match res {
        Res::Fleet => &FLEET_FIELDS,
        Res::Device => &DEVICE_FIELDS,
    }
}

/// The fields of the record at the end of a navigation, or None for an unknown navigation.
fn nav_fields(res: Res, nav: &str) -> Option<&'static [&'static str]> {
    match (res, nav) {
        (Res::Device, "belongs_to__application") => Some(&["id", "app_name", "slug"]),
        (Res::Device, "is_of__device_type") | (Res::Fleet, "is_for__device_type") => {
            Some(&["id", "slug"])
        }
        (
            Res::Device,
            "is_running__release" | "should_be_running__release" | "is_pinned_on__release",
        )
        | (Res::Fleet, "should_be_running__release") => Some(&["id", "commit"]),
        (Res::Fleet, "organization") => Some(&["id", "handle"]),
        _ => None,
    }
}

struct Ctx<'a> {
    account: &'a Account,
}

fn link(id: Option<u64>) -> Value {
    id.map_or(Value::Null, |id| json!({ "__id": id }))
}

fn release(r: &Release) -> Record {
    vec![("id", json!(r.id)), ("commit", json!(r.commit))]
}

/// The derived id of a device type slug or an organization handle: its 1-based rank among all.
fn rank<'s>(all: impl Iterator<Item = &'s str>, x: &str) -> u64 {
    all.collect::<BTreeSet<_>>().range(..x).count() as u64 + 1
}

impl<'a> Ctx<'a> {
    fn device_type_id(&self, slug: &str) -> u64 {
        let fleets = self.account.fleets.iter().map(|f| f.device_type.as_str());
        rank(
            fleets.chain(self.account.devices.iter().map(|d| d.device_type.as_str())),
            slug,
        )
    }
    fn org_id(&self, handle: &str) -> u64 {
        rank(
            self.account.fleets.iter().map(|f| f.organization.as_str()),
            handle,
        )
    }
    fn fleet(&self, id: u64) -> Option<&'a Fleet> {
        self.account.fleets.iter().find(|f| f.id == id)
    }
    /// v7 `should_be_running__release` of a device: its pin, else its fleet's target.
    fn target(&self, d: &'a Device) -> Option<&'a Release> {
        d.pinned_release
            .as_ref()
            .or_else(|| self.fleet(d.fleet_id)?.target_release.as_ref())
    }

    fn record(&self, row: Row<'a>) -> Record {
        let rel = |r: Option<&Release>| link(r.map(|r| r.id));
        let class = |f: &'a Fleet| f.is_of__class.as_str();
        let (names, obj) = match row {
            Row::Device(d) => (
                &DEVICE_FIELDS,
                json!({
                    "id": d.id, "api_heartbeat_state": d.api_heartbeat_state, "uuid": d.uuid,
                    "device_name": d.device_name, "is_online": d.is_online,
                    "is_of__device_type": link(Some(self.device_type_id(&d.device_type))),
                    "belongs_to__application": link(Some(d.fleet_id)),
                    "last_connectivity_event": d.last_connectivity_event,
                    "ip_address": d.ip_address,
                    "is_web_accessible": d.is_web_accessible, "is_undervolted": d.is_undervolted,
                    "memory_usage": d.memory_usage, "memory_total": d.memory_total,
                    "storage_usage": d.storage_usage, "storage_total": d.storage_total,
                    "cpu_usage": d.cpu_usage, "cpu_temp": d.cpu_temp,
                    "os_version": d.os_version, "os_variant": d.os_variant,
                    "overall_status": d.overall_status, "supervisor_version": d.supervisor_version,
                    "is_running__release": rel(d.running_release.as_ref()),
                    "is_pinned_on__release": rel(d.pinned_release.as_ref()),
                    "should_be_running__release": rel(self.target(d)),
                }),
            ),
            Row::Fleet(f) => (
                &FLEET_FIELDS,
                json!({
                    "id": f.id, "app_name": f.app_name, "slug": f.slug,
                    "uuid": format!("f1ee7{:027x}", f.id),
                    "organization": link(Some(self.org_id(&f.organization))),
                    "is_for__device_type": link(Some(self.device_type_id(&f.device_type))),
                    "should_be_running__release": rel(f.target_release.as_ref()),
                    "is_of__class": if f.is_of__class.is_empty() { "fleet" } else { class(f) },
                    "should_track_latest_release": true, "is_host": false, "is_archived": false,
                }),
            ),
        };
        names.iter().map(|&n| (n, obj[n].clone())).collect()
    }

    /// The record a to-one navigation points at (None for a null link).
    fn linked(&self, row: Row<'a>, nav: &str) -> Option<Record> {
        let device_type = |slug: &str| {
            vec![
                ("id", json!(self.device_type_id(slug))),
                ("slug", json!(slug)),
            ]
        };
        match (row, nav) {
            (Row::Device(d), "belongs_to__application") => self.fleet(d.fleet_id).map(|f| {
                vec![
                    ("id", json!(f.id)),
                    ("app_name", json!(f.app_name)),
                    ("slug", json!(f.slug)),
                ]
            }),
            (Row::Device(d), "is_of__device_type") => Some(device_type(&d.device_type)),
            (Row::Device(d), "is_running__release") => d.running_release.as_ref().map(release),
            (Row::Device(d), "is_pinned_on__release") => d.pinned_release.as_ref().map(release),
            (Row::Device(d), "should_be_running__release") => self.target(d).map(release),
            (Row::Fleet(f), "organization") => Some(vec![
                ("id", json!(self.org_id(&f.organization))),
                ("handle", json!(f.organization)),
            ]),
            (Row::Fleet(f), "is_for__device_type") => Some(device_type(&f.device_type)),
            (Row::Fleet(f), "should_be_running__release") => f.target_release.as_ref().map(release),
            _ => None,
        }
    }
}

fn odata(account: &Account, authorized: bool, rest: &str, query: &str) -> R<String> {
    // pinejs parses the whole URL first: syntax errors win over everything else.
    let q = parse_query(query)?;
    let (name, count) = match rest.strip_suffix("/$count") {
        Some(name) => (name, true),
        None => (rest, false),
    };
    let (name, key) = match name.split_once('(') {
        None => (name, None),
        Some((name, key)) => {
            let key = key
                .strip_suffix(')')
                .filter(|k| !count && is_digits(k))
                .ok_or(BadUrl)?;
            (name, Some(key.parse::<u64>().map_err(|_| BadUrl)?))
        }
    };
    if name.is_empty() || name.bytes().any(|b| RESERVED.contains(&b) || b == b'%') {
        return Err(BadUrl);
    }
    let res = match name {
        "application" => Res::Fleet,
        "device" => Res::Device,
        _ => return Err(Unauthorized),
    };
    if res == Res::Device && !authorized {
        return Err(Unauthorized);
    }
    check(&q, res)?;

    let ctx = Ctx { account };
    let rows: Vec<Row> = match res {
        // A guest sees public fleets only, and there are none.
        Res::Fleet if !authorized => Vec::new(),
        Res::Fleet => account.fleets.iter().map(Row::Fleet).collect(),
        Res::Device => account.devices.iter().map(Row::Device).collect(),
    };
    let mut rows: Vec<(Row, Record)> = rows.into_iter().map(|r| (r, ctx.record(r))).collect();
    rows.sort_by_key(|(_, rec)| get(rec, "id").as_u64());
    rows.retain(|(_, rec)| key.is_none_or(|k| get(rec, "id").as_u64() == Some(k)));
    if let Some(filter) = &q.filter {
        rows.retain(|(_, rec)| eval(filter, rec));
    }
    if count {
        // OData: /$count is not affected by $top, $skip, $orderby or $expand.
        return Ok(format!(r#"{{"d":{}}}"#, rows.len()));
    }
    rows.sort_by(|(_, a), (_, b)| {
        q.orderby
            .iter()
            .fold(Ordering::Equal, |acc, (field, desc)| {
                acc.then_with(|| {
                    let o = compare(get(a, field), get(b, field));
                    if *desc {
                        o.reverse()
                    } else {
                        o
                    }
                })
            })
    });
    let rows = rows
        .into_iter()
        .skip(q.skip.unwrap_or(0))
        .take(q.top.unwrap_or(usize::MAX));
    let objects: Vec<String> = rows.map(|(row, rec)| render(&ctx, &q, row, &rec)).collect();
    Ok(format!(r#"{{"d":[{}]}}"#, objects.join(",")))
}

/// One output object: expanded navigations first (in `$expand` order), then the selected fields.
fn render(ctx: &Ctx, q: &Query, row: Row, rec: &Record) -> String {
    let mut parts: Vec<(String, String)> = Vec::new();
    for e in &q.expand {
        let text = match row {
            Row::Fleet(f) if e.count => {
                let devices = ctx.account.devices.iter().filter(|d| d.fleet_id == f.id);
                let n = devices
                    .filter(|d| {
                        e.filter
                            .as_ref()
                            .is_none_or(|x| eval(x, &ctx.record(Row::Device(d))))
                    })
                    .count();
                n.to_string()
            }
            _ => match ctx.linked(row, &e.nav) {
                Some(target) => format!("[{}]", object(&pick(&target, e.select.as_deref()))),
                None => "[]".to_owned(),
            },
        };
        parts.push((e.nav.clone(), text));
    }
    for (k, v) in pick(rec, q.select.as_deref()) {
        if !parts.iter().any(|(p, _)| p == k) {
            parts.push((k.to_owned(), v.to_string()));
        }
    }
    object(&parts)
}

fn pick<'r>(rec: &'r Record, select: Option<&[String]>) -> Vec<(&'r str, String)> {
    let all = rec.iter().map(|(k, v)| (*k, v.to_string()));
    match select {
        None => all.collect(),
        Some(names) => names
            .iter()
            .filter_map(|n| rec.iter().find(|(k, _)| k == n))
            .map(|(k, v)| (*k, v.to_string()))
            .collect(),
    }
}

fn object<K: AsRef<str>>(pairs: &[(K, String)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{}:{v}", Value::from(k.as_ref())))
        .collect();
    format!("{{{}}}", parts.join(","))
}

fn get<'r>(rec: &'r Record, field: &str) -> &'r Value {
    let v = rec
        .iter()
        .find(|(k, _)| *k == field)
        .map_or(&Value::Null, |(_, v)| v);
    v.get("__id").unwrap_or(v)
}

/// Postgres order: NULLs last ascending (so first descending).
fn compare(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Null, Value::Null) => Ordering::Equal,
        (Value::Null, _) => Ordering::Greater,
        (_, Value::Null) => Ordering::Less,
        (Value::Number(x), Value::Number(y)) => x
            .as_f64()
            .partial_cmp(&y.as_f64())
            .unwrap_or(Ordering::Equal),
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        _ => Ordering::Equal,
    }
}

// ----------------------------------------------------------------------------- semantic checks

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Int,
    Bool,
    Text,
    Link,
}

fn kind(res: Res, field: &str) -> Kind {
    match field {
        _ if nav_fields(res, field).is_some() => Kind::Link,
        "id" | "cpu_usage" | "cpu_temp" | "memory_usage" | "memory_total" | "storage_usage"
        | "storage_total" => Kind::Int,
        "is_online"
        | "is_web_accessible"
        | "is_undervolted"
        | "is_archived"
        | "is_host"
        | "should_track_latest_release" => Kind::Bool,
        _ => Kind::Text,
    }
}

/// Unknown fields and navigations are a 500 with an empty body on v7 (as recorded).
fn check(q: &Query, res: Res) -> R<()> {
    let known = |f: &String| fields(res).contains(&f.as_str());
    if !q.select.iter().flatten().all(known) || !q.orderby.iter().all(|(f, _)| known(f)) {
        return Err(ServerError);
    }
    if let Some(filter) = &q.filter {
        check_filter(filter, res)?;
    }
    for e in &q.expand {
        match (res, e.nav.as_str(), e.count) {
            (Res::Fleet, "owns__device", true) => {
                if let Some(filter) = &e.filter {
                    check_filter(filter, Res::Device)?;
                }
            }
            (_, nav, false) => {
                let target = nav_fields(res, nav).ok_or(ServerError)?;
                if !e
                    .select
                    .iter()
                    .flatten()
                    .all(|f| target.contains(&f.as_str()))
                {
                    return Err(ServerError);
                }
            }
            _ => return Err(ServerError),
        }
    }
    Ok(())
}

fn check_filter(e: &Expr, res: Res) -> R<()> {
    let ok = match e {
        Expr::And(a, b) | Expr::Or(a, b) => return check_filter(a, res).and(check_filter(b, res)),
        Expr::UserAccess => res == Res::Fleet,
        Expr::FleetAccess => res == Res::Device,
        Expr::Cmp { field, lit, .. } => {
            fields(res).contains(&field.as_str())
                && matches!(
                    (kind(res, field), lit),
                    (_, Value::Null)
                        | (Kind::Bool, Value::Bool(_))
                        | (Kind::Text, Value::String(_))
                        | (Kind::Int | Kind::Link, Value::Number(_))
                )
        }
    };
    ok.then_some(()).ok_or(ServerError)
}

fn eval(e: &Expr, rec: &Record) -> bool {
    match e {
        Expr::And(a, b) => eval(a, rec) && eval(b, rec),
        Expr::Or(a, b) => eval(a, rec) || eval(b, rec),
        // Every fleet and device of the account is the authorized caller's.
        Expr::UserAccess | Expr::FleetAccess => true,
        Expr::Cmp { field, ne, lit } => (get(rec, field) == lit) != *ne,
    }
}

// ----------------------------------------------------------------------------- query parsing

#[derive(Default)]
struct Query {
    select: Option<Vec<String>>,
    expand: Vec<Expand>,
    filter: Option<Expr>,
    orderby: Vec<(String, bool)>,
    top: Option<usize>,
    skip: Option<usize>,
}

struct Expand {
    nav: String,
    count: bool,
    select: Option<Vec<String>>,
    filter: Option<Expr>,
}

enum Expr {
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Cmp {
        field: String,
        ne: bool,
        lit: Value,
    },
    /// `is_directly_accessible_by__user/any(v:1 eq 1)` on application.
    UserAccess,
    /// `belongs_to__application/any(a:a/is_directly_accessible_by__user/any(v:1 eq 1))` on device.
    FleetAccess,
}

/// Characters reserved by odata-parser's `ResourceName`.
const RESERVED: &[u8] = b":/?#[]@!$*&()+,;= '";

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

fn parse_query(raw: &str) -> R<Query> {
    let mut q = Query::default();
    if raw.is_empty() {
        return Ok(q);
    }
    for part in raw.split('&') {
        let (key, value) = part.split_once('=').ok_or(BadUrl)?;
        let Some(option) = key.strip_prefix('$').or_else(|| key.strip_prefix("%24")) else {
            // A custom option `name=value` (odata-parser's OperationParam): accepted, ignored.
            if part
                .bytes()
                .filter(|b| b":/?#[]@!$*()+,;=".contains(b))
                .count()
                > 1
            {
                return Err(BadUrl);
            }
            continue;
        };
        match option {
            "top" | "skip" => {
                let n = Some(value)
                    .filter(|v| is_digits(v))
                    .and_then(|v| v.parse().ok())
                    .ok_or(BadUrl)?;
                if option == "top" {
                    q.top = Some(n)
                } else {
                    q.skip = Some(n)
                }
                continue;
            }
            "select" | "expand" | "filter" | "orderby" => {}
            _ => return Err(BadUrl),
        }
        let mut p = Parser {
            toks: lex(value)?,
            at: 0,
        };
        match option {
            "select" => q.select = p.select()?,
            "expand" => q.expand = p.expand()?,
            "filter" => q.filter = Some(p.filter()?),
            _ => q.orderby = p.orderby()?,
        }
        if p.at != p.toks.len() {
            return Err(BadUrl);
        }
    }
    Ok(q)
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Name(String),
    Str(String),
    Sym(u8),
    Space,
    /// `%24`, which odata-parser accepts for `$` only where an option name starts.
    EncodedDollar,
}

/// The byte that `%XX` at `b[i]` encodes (None if there is no well-formed escape there).
fn hex_at(b: &[u8], i: usize) -> Option<u8> {
    let digit = |at: usize| b.get(at).and_then(|c| (*c as char).to_digit(16));
    (b.get(i) == Some(&b'%')).then_some(())?;
    Some((digit(i + 1)? * 16 + digit(i + 2)?) as u8)
}

/// Splits a raw option value into tokens, decoding what odata-parser decodes and nothing else.
fn lex(raw: &str) -> R<Vec<Tok>> {
    let b = raw.as_bytes();
    let mut toks = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let (tok, len) = match (b[i], hex_at(b, i)) {
            (b' ' | b'+', _) => (Tok::Space, 1),
            (b'%', Some(0x20)) => (Tok::Space, 3),
            (b'%', Some(0x24)) => (Tok::EncodedDollar, 3),
            (b'\'', _) | (b'%', Some(0x27)) => {
                // Quoted text: up to the next lone apostrophe (`'` or `%27`); `''` is a quote.
                let mut text = Vec::new();
                let mut j = if b[i] == b'\'' { i + 1 } else { i + 3 };
                let quote = |j: usize| {
                    if b.get(j) == Some(&b'\'') {
                        Some(1)
                    } else {
                        (hex_at(b, j) == Some(0x27)).then_some(3)
                    }
                };
                loop {
                    let Some(&c) = b.get(j) else {
                        return Err(BadUrl);
                    };
                    match quote(j) {
                        Some(n) => match quote(j + n) {
                            Some(m) => {
                                text.push(b'\'');
                                j += n + m;
                            }
                            None => {
                                j += n;
                                break;
                            }
                        },
                        None if c == b'%' => {
                            text.push(hex_at(b, j).ok_or(BadUrl)?);
                            j += 3;
                        }
                        None => {
                            text.push(c);
                            j += 1;
                        }
                    }
                }
                (
                    Tok::Str(String::from_utf8(text).map_err(|_| BadUrl)?),
                    j - i,
                )
            }
            (b'%', _) => return Err(BadUrl),
            (c, _) if RESERVED.contains(&c) => (Tok::Sym(c), 1),
            _ => {
                let len = b[i..]
                    .iter()
                    .take_while(|c| !RESERVED.contains(c) && **c != b'%')
                    .count();
                (Tok::Name(raw[i..i + len].to_owned()), len)
            }
        };
        if !(tok == Tok::Space && toks.last() == Some(&Tok::Space)) {
            toks.push(tok);
        }
        i += len;
    }
    Ok(toks)
}

struct Parser {
    toks: Vec<Tok>,
    at: usize,
}

impl Parser {
    fn eat(&mut self, tok: Tok) -> bool {
        let hit = self.toks.get(self.at) == Some(&tok);
        self.at += hit as usize;
        hit
    }
    fn expect(&mut self, tok: Tok) -> R<()> {
        if self.eat(tok) {
            Ok(())
        } else {
            Err(BadUrl)
        }
    }
    fn skip_space(&mut self) {
        self.eat(Tok::Space);
    }
    fn name(&mut self) -> R<String> {
        match self.toks.get(self.at) {
            Some(Tok::Name(n)) => {
                self.at += 1;
                Ok(n.clone())
            }
            _ => Err(BadUrl),
        }
    }
    fn word(&mut self, word: &str) -> R<()> {
        if self.name()? == word {
            Ok(())
        } else {
            Err(BadUrl)
        }
    }
    /// `name` or `name/name/...` (a path is never a known field, so it ends as a 500).
    fn path(&mut self) -> R<String> {
        let mut path = self.name()?;
        while self.toks.get(self.at) == Some(&Tok::Sym(b'/'))
            && matches!(self.toks.get(self.at + 1), Some(Tok::Name(_)))
        {
            self.at += 1;
            path = format!("{path}/{}", self.name()?);
        }
        Ok(path)
    }
    /// `$select=a,b,c` or `$select=*` (None: all fields).
    fn select(&mut self) -> R<Option<Vec<String>>> {
        if self.eat(Tok::Sym(b'*')) {
            return Ok(None);
        }
        let mut names = vec![self.path()?];
        while self.eat(Tok::Sym(b',')) {
            names.push(self.path()?);
        }
        Ok(Some(names))
    }
    /// `$orderby=a asc,b desc,c` — no direction means DESCENDING in pinejs.
    fn orderby(&mut self) -> R<Vec<(String, bool)>> {
        let mut keys = Vec::new();
        loop {
            let field = self.path()?;
            let desc = match self.eat(Tok::Space) {
                false => true,
                true => match self.name()?.as_str() {
                    "asc" => false,
                    "desc" => true,
                    _ => return Err(BadUrl),
                },
            };
            keys.push((field, desc));
            if !self.eat(Tok::Sym(b',')) {
                return Ok(keys);
            }
        }
    }
    /// `$expand=nav($select=a,b),other,owns__device/$count($filter=...)`; options split by `;`.
    fn expand(&mut self) -> R<Vec<Expand>> {
        let mut out = Vec::new();
        loop {
            let nav = self.name()?;
            let count = self.eat(Tok::Sym(b'/'));
            if count {
                self.expect(Tok::Sym(b'$'))?;
                self.word("count")?;
            }
            let mut e = Expand {
                nav,
                count,
                select: None,
                filter: None,
            };
            if self.eat(Tok::Sym(b'(')) {
                loop {
                    if !(self.eat(Tok::Sym(b'$')) || self.eat(Tok::EncodedDollar)) {
                        return Err(BadUrl);
                    }
                    let option = self.name()?;
                    self.expect(Tok::Sym(b'='))?;
                    // Other nested options are valid OData that this fake does not implement.
                    match (option.as_str(), count) {
                        ("select", false) => e.select = self.select()?,
                        ("filter", true) => e.filter = Some(self.filter()?),
                        _ => return Err(BadUrl),
                    }
                    if !self.eat(Tok::Sym(b';')) {
                        break;
                    }
                }
                self.expect(Tok::Sym(b')'))?;
            }
            out.push(e);
            if !self.eat(Tok::Sym(b',')) {
                return Ok(out);
            }
        }
    }
    /// Terms joined by `and`/`or`, equal precedence, left to right (pinejs' operatorPrecedence).
    fn filter(&mut self) -> R<Expr> {
        let mut lhs = self.term()?;
        loop {
            let before = self.at;
            self.skip_space();
            let and = match self.toks.get(self.at) {
                Some(Tok::Name(op)) if op == "and" || op == "or" => op == "and",
                _ => {
                    self.at = before; // trailing spaces are a syntax error, as in odata-parser
                    return Ok(lhs);
                }
            };
            self.at += 1;
            self.skip_space();
            let rhs = Box::new(self.term()?);
            lhs = if and {
                Expr::And(Box::new(lhs), rhs)
            } else {
                Expr::Or(Box::new(lhs), rhs)
            };
        }
    }
    fn term(&mut self) -> R<Expr> {
        if self.eat(Tok::Sym(b'(')) {
            self.skip_space();
            let e = self.filter()?;
            self.skip_space();
            self.expect(Tok::Sym(b')'))?;
            return Ok(e);
        }
        let field = self.name()?;
        if self.eat(Tok::Sym(b'/')) {
            return self.lambda(&field);
        }
        self.skip_space();
        let ne = match self.name()?.as_str() {
            "eq" => false,
            "ne" => true,
            _ => return Err(BadUrl), // gt/ge/lt/le/functions: valid OData, not implemented here
        };
        self.skip_space();
        let lit = match self.toks.get(self.at) {
            Some(Tok::Str(s)) => Value::from(s.as_str()),
            Some(Tok::Name(n)) => match n.as_str() {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                "null" => Value::Null,
                n => json!(n.parse::<i64>().map_err(|_| BadUrl)?),
            },
            _ => return Err(BadUrl),
        };
        self.at += 1;
        Ok(Expr::Cmp { field, ne, lit })
    }
    /// After `nav/`: only the two access lambdas the exporter needs (any other lambda → 400).
    fn lambda(&mut self, nav: &str) -> R<Expr> {
        self.word("any")?;
        self.expect(Tok::Sym(b'('))?;
        self.skip_space();
        let var = self.name()?;
        self.expect(Tok::Sym(b':'))?;
        let e = match nav {
            "is_directly_accessible_by__user" => {
                self.word("1")?;
                self.skip_space();
                self.word("eq")?;
                self.skip_space();
                self.word("1")?;
                Expr::UserAccess
            }
            "belongs_to__application" => {
                self.word(&var)?;
                self.expect(Tok::Sym(b'/'))?;
                let inner = self.name()?;
                self.expect(Tok::Sym(b'/'))?;
                match self.lambda(&inner)? {
                    Expr::UserAccess => Expr::FleetAccess,
                    _ => return Err(BadUrl),
                }
            }
            _ => return Err(BadUrl),
        };
        self.skip_space();
        self.expect(Tok::Sym(b')'))?;
        Ok(e)
    }
}
