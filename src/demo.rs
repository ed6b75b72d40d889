//! `--demo`: a simulated balena account served on loopback, so the exporter runs through
//! its real client, crawler and renderers without a balena token. Devices come and go
//! online as time passes. It answers only the queries the exporter sends, in keyset pages.

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use warp::Filter;

/// The token the demo server accepts; it is not a secret.
pub const TOKEN: &str = "demo-token";

const FLEETS: &[(u64, &str, &str, &str)] = &[
    (1, "kiosks", "acme", "raspberrypi4-64"),
    (2, "sensors", "acme", "raspberrypi3"),
    (3, "kiosks", "globex", "intel-nuc"),
];
const DEVICES_PER_FLEET: u64 = 8;
/// Services by fleet: (service id, name).
const SERVICES: &[(u64, u64, &str)] = &[
    (1, 1, "browser"),
    (1, 2, "kiosk-agent"),
    (2, 3, "sensor-reader"),
    (2, 4, "mqtt"),
    (3, 5, "browser"),
];
/// Cities the devices are spread over: (site, latitude, longitude).
const SITES: &[(&str, f64, f64)] = &[
    ("berlin", 52.52, 13.405),
    ("lisbon", 38.7223, -9.1393),
    ("oslo", 59.9139, 10.7522),
    ("athens", 37.9838, 23.7275),
];
const STATUSES: &[&str] = &[
    "operational",
    "operational",
    "operational",
    "updating",
    "disconnected",
    "reduced-functionality",
];

/// Starts the simulated API on 127.0.0.1 and returns its address.
pub async fn start() -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let authorized = warp::header::exact("authorization", "Bearer demo-token");
    let whoami = warp::path!("actor" / "v1" / "whoami")
        .and(authorized)
        .map(|| warp::reply::json(&json!({"id": 1, "actorType": "user", "username": "demo"})));
    let resource = |name: &'static str, rows: fn() -> Vec<(u64, Value)>| {
        warp::path("v7")
            .and(warp::path(name))
            .and(warp::path::end())
            .and(authorized)
            .and(warp::query::raw())
            .map(move |query: String| {
                let (top, after) = page(&query);
                let page: Vec<Value> = rows()
                    .into_iter()
                    .filter(|(id, _)| *id > after)
                    .take(top)
                    .map(|(_, row)| row)
                    .collect();
                warp::reply::json(&json!({ "d": page }))
            })
    };
    let routes = whoami
        .or(resource("application", fleets))
        .or(resource("device", devices))
        .or(resource("service", services))
        .or(resource("release", releases));
    tokio::spawn(warp::serve(routes).incoming(listener).run());
    Ok(addr)
}

/// Every row of a resource with its id, in id order (the demo's account is small).
fn fleets() -> Vec<(u64, Value)> {
    FLEETS.iter().map(|f| (f.0, fleet(f))).collect()
}

fn devices() -> Vec<(u64, Value)> {
    let minute = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
        / 60;
    FLEETS
        .iter()
        .flat_map(|f| (0..DEVICES_PER_FLEET).map(move |n| (f, n)))
        .map(|(f, n)| (f.0 * 100 + n, device(f, n, minute)))
        .collect()
}

fn services() -> Vec<(u64, Value)> {
    SERVICES
        .iter()
        .map(|&(_, id, name)| (id, json!({"id": id, "service_name": name})))
        .collect()
}

/// Each fleet's target (fleet × 10) and the release before it; the kiosk agent is a one-shot
/// job (restart: "no"), so its exits are not failures.
fn releases() -> Vec<(u64, Value)> {
    FLEETS
        .iter()
        .flat_map(|f| [f.0 * 10 - 1, f.0 * 10])
        .map(|id| (id, release(id)))
        .collect()
}

/// `$top` and the `id gt N` of the exporter's keyset query (no top: all; no id: from the start).
fn page(query: &str) -> (usize, u64) {
    let top = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("$top="))
        .and_then(|v| v.parse().ok())
        .unwrap_or(usize::MAX);
    let after = query
        .split("id%20gt%20")
        .nth(1)
        .map(|rest| {
            rest.split(|c: char| !c.is_ascii_digit())
                .next()
                .unwrap_or("")
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    (top, after)
}

fn fleet(&(id, name, org, device_type): &(u64, &str, &str, &str)) -> Value {
    json!({
        "organization": [{"handle": org}],
        "is_for__device_type": [{"slug": device_type}],
        "should_be_running__release": [{"commit": commit(id * 10)}],
        "application_tag": [{"tag_key": "region", "value": if id == 3 { "us-east" } else { "eu-central" }}],
        "id": id, "app_name": name, "slug": format!("{org}/{name}"),
    })
}

fn device(&(fleet, _, _, device_type): &(u64, &str, &str, &str), n: u64, minute: u64) -> Value {
    let id = fleet * 100 + n;
    // A cheap deterministic hash of (device, minute) drives the changing values.
    let roll =
        (id.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ minute.wrapping_mul(0xBF58_476D_1CE4_E5B9)) >> 33;
    let online = !roll.is_multiple_of(5);
    let status = if online {
        STATUSES[(roll % 4) as usize]
    } else {
        "disconnected"
    };
    let release = if roll.is_multiple_of(7) {
        fleet * 10 - 1
    } else {
        fleet * 10
    };
    let reported = n != 0; // device 0 of each fleet has not reported hardware values yet
    let hw = |v: u64| if reported { json!(v) } else { Value::Null };
    let target = fleet * 10;
    let updating = release != target && roll.is_multiple_of(2);
    // One install per service of the release it runs; a failing one now and then; while
    // updating, the target's images downloading.
    let mut installs = Vec::new();
    for &(_, service, _) in SERVICES.iter().filter(|s| s.0 == fleet) {
        let status = match (roll + service) % 13 {
            0 => "exited",
            1 => "restarting",
            _ => "Running",
        };
        installs.push(install(service, release, status, None));
        if updating {
            installs.push(install(service, target, "Downloading", Some(roll % 100)));
        }
    }
    let (site, latitude, longitude) = SITES[(n % SITES.len() as u64) as usize];
    json!({
        "is_of__device_type": [{"slug": device_type}],
        "is_running__release": [{"id": release, "commit": commit(release)}],
        "id": id,
        "uuid": format!("{id:032x}"),
        "device_name": format!("demo-{fleet}-{n}"),
        "belongs_to__application": {"__id": fleet},
        "is_online": online,
        "last_connectivity_event": humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        "api_heartbeat_state": if online { "online" } else { "offline" },
        "overall_status": status,
        "os_version": "balenaOS 6.0.13",
        "os_variant": "prod",
        "supervisor_version": "16.7.4",
        "should_be_running__release": {"__id": fleet * 10},
        "cpu_usage": hw(roll % 5 * 20), "cpu_temp": hw(40 + roll % 6 * 5),
        "memory_usage": hw(300 + roll % 50 * 10), "memory_total": hw(3800),
        "storage_usage": hw(4000 + roll % 100 * 10), "storage_total": hw(29000),
        "is_undervolted": roll.is_multiple_of(11),
        "update_status": if updating { "downloading" } else { "done" },
        "last_update_status_event": humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        "overall_progress": if updating { json!(roll % 100) } else { Value::Null },
        "changed_api_heartbeat_state_on__date": humantime::format_rfc3339_seconds(
            SystemTime::now() - std::time::Duration::from_secs(roll % 7200)
        ).to_string(),
        "latitude": format!("{latitude}"), "longitude": format!("{longitude}"),
        "image_install": installs,
        "device_tag": [{"tag_key": "site", "value": site}, {"tag_key": "rack.position", "value": format!("R{n}")}],
    })
}

fn release(id: u64) -> Value {
    let fleet = (id + 1) / 10;
    let services: serde_json::Map<String, Value> = SERVICES
        .iter()
        .filter(|s| s.0 == fleet)
        .map(|&(_, _, name)| {
            let restart = if name == "kiosk-agent" {
                "no"
            } else {
                "always"
            };
            (name.to_string(), json!({"restart": restart}))
        })
        .collect();
    json!({"id": id, "composition": {"version": "2.1", "services": services}})
}

fn install(service: u64, release: u64, status: &str, progress: Option<u64>) -> Value {
    json!({
        "installs__image": [{"is_a_build_of__service": {"__id": service}}],
        "status": status,
        "download_progress": progress,
        "is_provided_by__release": {"__id": release},
    })
}

fn commit(release: u64) -> String {
    format!("{:032x}", release.wrapping_mul(0x2545_F491_4F6C_DD1D))
}
