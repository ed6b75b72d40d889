//! Synthetic accounts for the fake API: F fleets × D devices with realistic, varied fields,
//! the same for the same arguments (a fixed hash of the device id, no random state).
//!
//! Shared by the tests and the benchmarks (`benches/` include this file by path), so both see
//! the same accounts. What varies, device by device, in roughly the proportions of a real
//! account: online or not (85 % online), heartbeat and `overall_status` consistent with it,
//! devices that never reported (no hardware values, no release), device types compatible
//! with the fleet's, OS and supervisor versions, the running release (mostly the target,
//! some behind, some pinned), one or two IP addresses, hardware values, undervoltage, the
//! public URL, and a few names that need escaping in the text format (`"`, `\`, newline,
//! non-ASCII). Each fleet has three services; each device that runs a release has an install
//! of each (a few failing, some downloading the target release), two tags, an update status
//! and coordinates (the account has balenaCloud's fields).
//!
//! `churn` then changes an account the way a live account changes between two crawls.

use std::collections::HashSet;

use super::fake::{timestamp, Account, Device, Fleet, Install, Release, Service};

/// The token a generated account accepts.
pub const TOKEN: &str = "generated-token";

/// Releases per fleet; the last one is the fleet's target.
const RELEASES: u64 = 4;

/// splitmix64: a well-mixed 64-bit hash of `x`.
pub fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Draws from one hash: successive calls give independent-looking values.
struct Draw(u64);

impl Draw {
    fn new(seed: u64) -> Draw {
        Draw(mix(seed))
    }
    fn next(&mut self) -> u64 {
        self.0 = mix(self.0);
        self.0
    }
    /// 0 ≤ n < bound.
    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound.max(1)
    }
    /// True with probability `percent` %.
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

/// Fleet device types, each with the device types a device of that fleet may be.
const DEVICE_TYPES: &[(&str, &[&str])] = &[
    ("raspberrypi4-64", &["raspberrypi4-64", "raspberrypi400-64"]),
    ("raspberrypi3", &["raspberrypi3", "raspberrypi3-64"]),
    ("intel-nuc", &["intel-nuc", "genericx86-64-ext"]),
    ("jetson-nano", &["jetson-nano", "jetson-nano-emmc"]),
    ("raspberrypi5", &["raspberrypi5"]),
    ("fincm3", &["fincm3"]),
];
const ORGS: &[&str] = &[
    "acme",
    "globex",
    "initech",
    "umbrella-corp",
    "stark-industries",
    "wayne-enterprises",
    "hooli",
    "vandelay",
];
const APPS: &[&str] = &[
    "kiosks", "sensors", "gateways", "signage", "cameras", "meters", "robots", "lockers",
];
const OS_VERSIONS: &[&str] = &[
    "balenaOS 6.0.13",
    "balenaOS 6.0.13",
    "balenaOS 5.3.21",
    "balenaOS 5.1.20+rev1",
    "balenaOS 2.113.18",
];
const SUPERVISORS: &[&str] = &["16.7.1", "16.7.1", "16.4.6", "15.0.4", "14.11.14"];
const ADJECTIVES: &[&str] = &[
    "frosty", "silent", "ancient", "bold", "crimson", "gentle", "lucky", "misty", "proud", "quiet",
];
const NOUNS: &[&str] = &[
    "meadow", "river", "forest", "falcon", "glacier", "harbor", "lantern", "pebble", "summit",
    "willow",
];
/// Names people type, some of which need escaping in the exposition format.
const ODD_NAMES: &[&str] = &[
    "Lobby \"north\" screen",
    "C:\\kiosk\\front",
    "two\nlines",
    "Küche-Gerät ☃",
    "café terrace",
];

/// A release of fleet `fleet_id`: ids `fleet_id * 10 + 1 ..= fleet_id * 10 + RELEASES`.
fn release(fleet_id: u64, n: u64) -> Release {
    let id = fleet_id * 10 + n;
    Release {
        id,
        commit: format!("{:016x}{:016x}", mix(id), mix(id ^ 0x5eed)),
    }
}

fn fleet(id: u64) -> Fleet {
    let mut d = Draw::new(id ^ 0xf1ee7);
    let i = (id - 1) as usize;
    let organization = ORGS[i % ORGS.len()].to_string();
    // Names repeat across organizations (as they do on balenaCloud); slugs do not.
    let app_name = format!("{}-{}", APPS[(i / ORGS.len()) % APPS.len()], i / ORGS.len());
    Fleet {
        id,
        slug: format!("{organization}/{app_name}"),
        app_name,
        organization,
        device_type: DEVICE_TYPES[i % DEVICE_TYPES.len()].0.to_string(),
        target_release: (!d.chance(10)).then(|| release(id, RELEASES)),
        is_of__class: "fleet".into(),
        tags: vec![
            ("region".into(), d.pick(REGIONS).into()),
            ("tier".into(), d.pick(&["gold", "silver", "bronze"]).into()),
        ],
    }
}

const REGIONS: &[&str] = &["eu-west", "eu-central", "us-east", "ap-south"];
const SITES: &[&str] = &[
    "Köln", "Lisboa", "Oslo", "Athína", "東京", "Zürich", "Porto", "Bergen",
];
const CUSTOMERS: &[&str] = &["acme", "O'Brien & Söhne \"GmbH\"", "globex", "initech"];
const SERVICE_NAMES: &[&str] = &["main", "sensor-reader", "mqtt"];

/// The three services of fleet `fleet_id`: ids `fleet_id * 10 + 1 ..= fleet_id * 10 + 3`.
fn services(fleet_id: u64) -> Vec<Service> {
    SERVICE_NAMES
        .iter()
        .zip(1..)
        .map(|(name, n)| Service {
            id: fleet_id * 10 + n,
            fleet_id,
            name: (*name).into(),
            restart: None,
        })
        .collect()
}

/// Device `id` of `fleet`, which is fleet number `fleet_index` (0-based).
fn device(id: u64, fleet: &Fleet, fleet_index: usize) -> Device {
    let mut d = Draw::new(id);
    let compatible = DEVICE_TYPES[fleet_index % DEVICE_TYPES.len()].1;
    let device_type = if d.chance(10) {
        d.pick(compatible)
    } else {
        compatible[0]
    };
    // Never came online: provisioned, nothing reported.
    let silent = d.chance(3);
    let online = !silent && d.chance(88);
    let (heartbeat, status) = if silent {
        (
            "unknown",
            d.pick(&["inactive", "inactive", "post-provisioning"]),
        )
    } else if online {
        let status = match d.below(100) {
            0..=89 => "operational",
            90..=94 => "updating",
            95..=97 => "reduced-functionality",
            _ => "configuring",
        };
        ("online", status)
    } else {
        (d.pick(&["offline", "offline", "timeout"]), "disconnected")
    };
    let device_name = if d.chance(1) {
        format!("{} {id}", d.pick(ODD_NAMES))
    } else if d.chance(30) {
        format!("{}-{id:05}", fleet.app_name)
    } else {
        format!("{}-{}", d.pick(ADJECTIVES), d.pick(NOUNS))
    };
    let mut device = Device {
        id,
        uuid: format!("{:016x}{:016x}", mix(id ^ 0xdead), mix(id ^ 0xbeef)),
        device_name,
        fleet_id: fleet.id,
        device_type: device_type.into(),
        is_online: online,
        api_heartbeat_state: heartbeat.into(),
        overall_status: status.into(),
        ..Device::default()
    };
    if silent {
        return device;
    }
    // Up to 30 days before 2026-11-21T20:27:10Z, to the millisecond.
    let at = 1_795_292_830 - d.below(30 * 86_400);
    device.last_connectivity_event = Some(rfc3339(at, d.below(1000)));
    device.os_version = Some(d.pick(OS_VERSIONS).into());
    device.os_variant = Some(if d.chance(5) { "dev" } else { "prod" }.into());
    device.supervisor_version = Some(d.pick(SUPERVISORS).into());
    device.running_release = match d.below(100) {
        0..=74 => Some(release(fleet.id, RELEASES)),
        75..=94 => Some(release(fleet.id, 1 + d.below(RELEASES - 1))),
        _ => None,
    };
    if d.chance(3) {
        device.pinned_release = Some(release(fleet.id, RELEASES - 1));
    }
    device.is_web_accessible = d.chance(10);
    let lan = format!("192.168.{}.{}", d.below(256), 2 + d.below(250));
    device.ip_address = Some(if d.chance(20) {
        format!(
            "{lan} 10.{}.{}.{}",
            d.below(256),
            d.below(256),
            2 + d.below(250)
        )
    } else {
        lan
    });
    if d.chance(95) {
        let memory_total = *[512i64, 966, 1_850, 3_840, 7_820]
            .get(d.below(5) as usize)
            .unwrap_or(&3_840);
        let storage_total = *[14_000i64, 28_400, 59_000, 119_000]
            .get(d.below(4) as usize)
            .unwrap_or(&28_400);
        device.cpu_usage = Some(d.below(101) as i64);
        device.cpu_temp = Some(35 + d.below(50) as i64);
        device.memory_total = Some(memory_total);
        device.memory_usage = Some(memory_total * (10 + d.below(85) as i64) / 100);
        device.storage_total = Some(storage_total);
        device.storage_usage = Some(storage_total * (5 + d.below(90) as i64) / 100);
    }
    device.is_undervolted = d.chance(2);
    device.heartbeat_changed_at = Some(rfc3339(at - d.below(3_600), d.below(1000)));
    device.latitude = Some(format!("{:.4}", 35.0 + d.below(3_000) as f64 / 100.0));
    device.longitude = Some(format!("{:.4}", -10.0 + d.below(4_000) as f64 / 100.0));
    device.tags = vec![
        ("site".into(), d.pick(SITES).into()),
        ("customer".into(), d.pick(CUSTOMERS).into()),
    ];
    let target = device
        .pinned_release
        .clone()
        .or_else(|| fleet.target_release.clone());
    let Some(running) = device.running_release.clone() else {
        return device;
    };
    let updating = target.as_ref().is_some_and(|t| t.id != running.id) && d.chance(30);
    device.update_status = Some(if updating { "downloading" } else { "done" }.into());
    device.last_update_status_event = Some(rfc3339(at - d.below(86_400), d.below(1000)));
    let mut n = 0;
    for service in services(fleet.id) {
        n += 1;
        let status = match d.below(100) {
            0..=1 => "exited",
            2 => "restarting",
            3 => "Dead",
            _ => "Running",
        };
        device.installs.push(Install {
            id: id * 10 + n,
            service_id: service.id,
            release_id: running.id,
            status: status.into(),
            download_progress: None,
        });
        if let (true, Some(target)) = (updating, &target) {
            n += 1;
            device.installs.push(Install {
                id: id * 10 + n,
                service_id: service.id,
                release_id: target.id,
                status: "Downloading".into(),
                download_progress: Some(d.below(100) as i64),
            });
        }
    }
    if updating {
        device.overall_progress = Some(d.below(100) as i64);
    }
    device
}

/// `seconds` since the Unix epoch and `millis` as `2026-11-21T20:27:10.768Z`.
fn rfc3339(seconds: u64, millis: u64) -> String {
    timestamp((seconds * 1000 + millis) as i64)
}

/// `fleets` fleets of `devices_per_fleet` devices each, token [`TOKEN`]. Fleet ids are
/// 1..=fleets; device ids 1..=fleets × devices_per_fleet, dealt to the fleets in turn (as
/// devices are provisioned over time), so every page of devices spans many fleets.
pub fn account(fleets: usize, devices_per_fleet: usize) -> Account {
    let fleet_list: Vec<Fleet> = (1..=fleets as u64).map(fleet).collect();
    let total = fleets * devices_per_fleet;
    let devices = (0..total)
        .map(|i| {
            let index = i % fleets.max(1);
            device(i as u64 + 1, &fleet_list[index], index)
        })
        .collect();
    Account {
        tokens: vec![TOKEN.into()],
        services: fleet_list.iter().flat_map(|f| services(f.id)).collect(),
        fleets: fleet_list,
        devices,
        cloud_fields: true,
        ..Account::default()
    }
}

/// The account the benchmarks use for `devices` devices: one fleet per 500 devices (at least
/// one, at most 200), so 10 → 1 × 10, 1,000 → 2 × 500, 10,000 → 20 × 500,
/// 100,000 → 200 × 500.
#[allow(dead_code)] // tests/api (plain_gzip.rs) and the benchmarks
pub fn sized(devices: usize) -> Account {
    let fleets = (devices / 500).clamp(1, 200);
    account(fleets, devices.div_ceil(fleets))
}

/// A healthy, realistic account that must page nobody: `fleets` fleets of `devices_per_fleet`
/// devices, most of them online on their target release with every service running, and in
/// every fleet also what real fleets have: deactivated devices, devices preregistered before
/// shipping (never connected), devices offline since long before any monitor started (their
/// heartbeat change time null, as the API leaves it until the state changes), a device with
/// its VPN off on purpose (heartbeat online), a device whose update is `done` while
/// `overall_status` still says updating, and a one-shot `migrate` service (`restart: "no"`)
/// that exited as designed on every device.
#[allow(dead_code)] // tests/tools (prometheus.rs) only
pub fn healthy(fleets: usize, devices_per_fleet: usize) -> Account {
    let mut account = account(fleets, 0);
    for f in &mut account.fleets {
        f.target_release = Some(release(f.id, RELEASES));
    }
    let migrate = |fleet_id: u64| Service {
        id: 1_000_000 + fleet_id,
        fleet_id,
        name: "migrate".into(),
        restart: Some("no".into()),
    };
    account
        .services
        .extend(account.fleets.iter().map(|f| migrate(f.id)));
    let mut id = 0;
    for n in 0..devices_per_fleet {
        for f in account.fleets.clone() {
            id += 1;
            let mut d = Draw::new(id ^ 0x4ea1);
            let target = release(f.id, RELEASES);
            let mut device = Device {
                id,
                uuid: format!("{:016x}{:016x}", mix(id ^ 0x4ea1), mix(id ^ 0x7ea1)),
                device_name: format!("{}-{n:03}", f.app_name),
                fleet_id: f.id,
                device_type: f.device_type.clone(),
                is_online: true,
                api_heartbeat_state: "online".into(),
                overall_status: "operational".into(),
                last_connectivity_event: Some(rfc3339(1_795_292_830 - d.below(600), 0)),
                heartbeat_changed_at: Some(rfc3339(1_795_000_000 - d.below(86_400), 0)),
                os_version: Some("balenaOS 6.0.13".into()),
                os_variant: Some("prod".into()),
                supervisor_version: Some("16.7.1".into()),
                running_release: Some(target.clone()),
                ip_address: Some(format!("192.168.{}.{}", f.id % 256, 2 + n % 250)),
                cpu_usage: Some(d.below(60) as i64),
                cpu_temp: Some(40 + d.below(30) as i64),
                memory_total: Some(3_840),
                memory_usage: Some(1_000 + d.below(1_500) as i64),
                storage_total: Some(28_400),
                storage_usage: Some(5_000 + d.below(15_000) as i64),
                update_status: Some("done".into()),
                last_update_status_event: Some(rfc3339(1_795_000_000, 0)),
                ..Device::default()
            };
            let services = account.services.iter().filter(|s| s.fleet_id == f.id);
            for (k, s) in services.enumerate() {
                let status = if s.name == "migrate" {
                    "exited"
                } else {
                    "Running"
                };
                device.installs.push(Install {
                    id: id * 100 + k as u64,
                    service_id: s.id,
                    release_id: target.id,
                    status: status.into(),
                    download_progress: None,
                });
            }
            match n % 12 {
                // Deactivated: offline for good, its last report stale (an exited service).
                0 => {
                    device.is_online = false;
                    device.api_heartbeat_state = "offline".into();
                    device.overall_status = "inactive".into();
                    if let Some(i) = device.installs.first_mut() {
                        i.status = "exited".into();
                    }
                }
                // Preregistered before shipping: never connected, nothing reported.
                1 => {
                    device = Device {
                        is_online: false,
                        api_heartbeat_state: "unknown".into(),
                        overall_status: "configuring".into(),
                        ..Device {
                            id,
                            uuid: device.uuid,
                            device_name: device.device_name,
                            fleet_id: f.id,
                            device_type: device.device_type,
                            ..Device::default()
                        }
                    };
                }
                // Offline since October, before any monitor; the heartbeat change time null.
                2 => {
                    device.is_online = false;
                    device.api_heartbeat_state =
                        if id % 2 == 0 { "offline" } else { "unknown" }.into();
                    device.overall_status = "disconnected".into();
                    device.heartbeat_changed_at = None;
                    device.last_connectivity_event = Some(rfc3339(1_792_000_000, 0));
                }
                // VPN off on purpose, heartbeat online: reduced functionality, not offline.
                3 => {
                    device.is_online = false;
                    device.overall_status = "reduced-functionality".into();
                }
                // Updated: done, while overall_status has not caught up.
                4 => device.overall_status = "updating".into(),
                _ => {}
            }
            account.devices.push(device);
        }
    }
    account
}

/// What one round of [`churn`] changed: how many devices, by kind (each device counts once).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Churn {
    /// New `cpu_usage`, `cpu_temp` and `memory_usage`: the device row changes.
    pub metrics: usize,
    /// Went offline (`is_online` false, heartbeat `offline`, `disconnected`) or came back
    /// online, with `heartbeat_changed_at` set: the device row changes.
    pub connectivity: usize,
    /// Only an image install changed (its status, or its download progress): the device row
    /// does not.
    pub installs: usize,
    /// Only a device tag's value changed: the device row does not.
    pub tags: usize,
    /// Deleted, with their installs and tags (the server keeps no trace of them).
    pub deleted: usize,
    /// Moved to another fleet: the device row changes; its pin is cleared and its installs are
    /// marked `deleted`, as the server does.
    pub moved: usize,
    /// New devices (ids above any yet), with this round's `modified_at`.
    pub added: usize,
}

#[allow(dead_code)] // for the tests that use `churn`
impl Churn {
    /// Devices whose own row is new or changed: what `modified_at gt <before>` finds.
    pub fn rows(&self) -> usize {
        self.metrics + self.connectivity + self.moved + self.added
    }
    /// Devices an incremental read must return: their row, an install or a tag changed.
    pub fn changed(&self) -> usize {
        self.rows() + self.installs + self.tags
    }
}

/// Changes `account` the way a live account changes between two crawls, the same for the same
/// `round`: about `share` (0.0–1.0) of the devices change (7 in 10 of them report new metrics,
/// 1 in 10 goes offline or comes back, 1 in 10 only an image install changes, 1 in 10 only a
/// tag), and every round 1–2 devices are deleted, 1–2 move to another fleet (one with the same
/// device type where there is one) and 1 is added. A device that cannot change as drawn (no
/// installs, no tags, never reported) reports new metrics instead, or nothing.
#[allow(dead_code)] // tests/api (fake_api.rs) and the tests of incremental crawls
pub fn churn(account: &mut Account, round: u64, share: f64) -> Churn {
    let mut out = Churn::default();
    let mut draw = Draw::new(round ^ 0xc4a2_0000_0000);
    // The devices' own clock: a minute per round after the generated accounts' "now".
    let now = rfc3339(1_795_292_830 + round * 60, draw.below(1000));
    let max_id = account.devices.iter().map(|d| d.id).max().unwrap_or(0);
    let mut touched = HashSet::new();
    for _ in 0..1 + draw.below(2) {
        if account.devices.len() > 1 {
            account
                .devices
                .remove(draw.below(account.devices.len() as u64) as usize);
            out.deleted += 1;
        }
    }
    for _ in 0..1 + draw.below(2) {
        let at = draw.below(account.devices.len() as u64) as usize;
        let Some(device) = account.devices.get_mut(at) else {
            break;
        };
        let fleet_type = |id: u64| {
            let fleet = account.fleets.iter().find(|f| f.id == id);
            fleet.map(|f| f.device_type.clone())
        };
        let old_type = fleet_type(device.fleet_id);
        let others: Vec<&Fleet> = account
            .fleets
            .iter()
            .filter(|f| f.id != device.fleet_id)
            .collect();
        let alike: Vec<&Fleet> = others
            .iter()
            .copied()
            .filter(|f| Some(&f.device_type) == old_type.as_ref())
            .collect();
        let choice = if alike.is_empty() { &others } else { &alike };
        let Some(fleet) = choice.get(draw.below(choice.len() as u64) as usize) else {
            break; // one fleet only
        };
        if !touched.insert(device.id) {
            continue;
        }
        device.fleet_id = fleet.id;
        device.pinned_release = None;
        for install in &mut device.installs {
            install.status = "deleted".into();
            install.download_progress = None;
        }
        out.moved += 1;
    }
    if !account.fleets.is_empty() {
        let index = draw.below(account.fleets.len() as u64) as usize;
        let id = max_id + 1;
        let mut device = device(id, &account.fleets[index], index);
        // Keep the account consistent: installs of its services only, ids above any yet.
        let services: HashSet<u64> = account.services.iter().map(|s| s.id).collect();
        device.installs.retain(|i| services.contains(&i.service_id));
        let last_install = account
            .devices
            .iter()
            .flat_map(|d| &d.installs)
            .map(|i| i.id)
            .max()
            .unwrap_or(0);
        for (install, n) in device.installs.iter_mut().zip(1..) {
            install.id = last_install + n;
        }
        account.devices.push(device);
        touched.insert(id);
        out.added += 1;
    }
    let chosen = (share.clamp(0.0, 1.0) * 1_000_000.0) as u64;
    for device in &mut account.devices {
        if touched.contains(&device.id) {
            continue;
        }
        let mut d = Draw::new(mix(round) ^ device.id);
        if d.below(1_000_000) >= chosen {
            continue;
        }
        let live: Vec<usize> = (0..device.installs.len())
            .filter(|&i| device.installs[i].status != "deleted")
            .collect();
        let kind = match d.below(10) {
            7 if device.last_connectivity_event.is_some() => 1,
            8 if !live.is_empty() => 2,
            9 if !device.tags.is_empty() => 3,
            _ => 0,
        };
        match kind {
            1 => {
                if device.api_heartbeat_state == "online" {
                    device.is_online = false;
                    device.api_heartbeat_state = "offline".into();
                    device.overall_status = "disconnected".into();
                } else {
                    device.is_online = true;
                    device.api_heartbeat_state = "online".into();
                    device.overall_status = "operational".into();
                    device.last_connectivity_event = Some(now.clone());
                }
                device.heartbeat_changed_at = Some(now.clone());
                out.connectivity += 1;
            }
            2 => {
                let at = live[d.below(live.len() as u64) as usize];
                let install = &mut device.installs[at];
                let (status, progress) = match (install.status.as_str(), install.download_progress)
                {
                    ("Downloading", Some(p)) if p + 20 < 100 => ("Downloading", Some(p + 20)),
                    ("Downloading", _) => ("Downloaded", Some(100)),
                    ("Running", _) => (d.pick(&["exited", "restarting"]), None),
                    _ => ("Running", None),
                };
                install.status = status.into();
                install.download_progress = progress;
                out.installs += 1;
            }
            3 => {
                let at = d.below(device.tags.len() as u64) as usize;
                let (key, value) = &mut device.tags[at];
                let choices = match key.as_str() {
                    "site" => SITES,
                    "customer" => CUSTOMERS,
                    _ => &[][..],
                };
                let mut new = match choices {
                    [] => format!("round-{round}"),
                    _ => d.pick(choices).to_owned(),
                };
                if new == *value {
                    new = format!("{value} ({round})");
                }
                *value = new;
                out.tags += 1;
            }
            _ => {
                let (Some(cpu), Some(total)) = (device.cpu_usage, device.memory_total) else {
                    continue; // never reported
                };
                device.cpu_usage = Some((cpu + 1 + d.below(100) as i64) % 101);
                device.cpu_temp = Some(35 + d.below(50) as i64);
                device.memory_usage = Some(total * (10 + d.below(85) as i64) / 100);
                out.metrics += 1;
            }
        }
    }
    out
}
