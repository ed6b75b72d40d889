//! Plain data about fleets and devices as of one crawl, in base units, built from the
//! API's answers. No HTTP and no Prometheus types: renderers read it.

use std::collections::{BTreeMap, HashMap};
use std::time::UNIX_EPOCH;

use crate::balena::model;

/// `overall_status` values of API v7; fleet counts list each of them, also at zero.
/// Other values are counted under their own name.
pub const KNOWN_STATUSES: &[&str] = &[
    "configuring",
    "disconnected",
    "inactive",
    "operational",
    "post-provisioning",
    "reduced-functionality",
    "updating",
];

/// `api_heartbeat_state` values; a device without one counts as `unknown`.
pub const KNOWN_HEARTBEATS: &[&str] = &["offline", "online", "timeout", "unknown"];

const MIB: f64 = 1024.0 * 1024.0;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    /// Sorted by slug; each fleet's devices sorted by id.
    pub fleets: Vec<Fleet>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Fleet {
    pub id: u64,
    pub name: String,
    pub slug: String,
    pub organization: String,
    pub device_type: String,
    /// Commit of the fleet's target release; empty when there is none.
    pub target_release: String,
    pub devices: Vec<Device>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Device {
    pub id: u64,
    pub uuid: String,
    pub name: String,
    pub device_type: String,
    pub online: bool,
    pub status: String,
    pub heartbeat: String,
    pub os_version: String,
    pub os_variant: String,
    pub supervisor_version: String,
    /// Commit of the running release; empty when unknown.
    pub release: String,
    /// None when the device has no target release.
    pub on_target_release: Option<bool>,
    pub last_connectivity_seconds: Option<f64>,
    pub cpu_ratio: Option<f64>,
    pub temperature_celsius: Option<f64>,
    pub memory_used_bytes: Option<f64>,
    pub memory_total_bytes: Option<f64>,
    pub storage_used_bytes: Option<f64>,
    pub storage_total_bytes: Option<f64>,
    pub undervolted: Option<bool>,
    /// The public device URL is on.
    pub web_accessible: bool,
    /// Local IP addresses.
    pub addresses: Vec<String>,
}

impl Fleet {
    pub fn online(&self) -> usize {
        self.devices.iter().filter(|d| d.online).count()
    }

    pub fn on_target_release(&self) -> usize {
        self.devices
            .iter()
            .filter(|d| d.on_target_release == Some(true))
            .count()
    }

    /// Devices per `overall_status`: every known status (zero included) and any other seen.
    pub fn by_status(&self) -> BTreeMap<&str, usize> {
        count(
            KNOWN_STATUSES,
            self.devices.iter().map(|d| d.status.as_str()),
        )
    }

    /// Devices per heartbeat state: every known state (zero included) and any other seen.
    pub fn by_heartbeat(&self) -> BTreeMap<&str, usize> {
        count(
            KNOWN_HEARTBEATS,
            self.devices.iter().map(|d| d.heartbeat.as_str()),
        )
    }
}

fn count<'a>(known: &[&'a str], values: impl Iterator<Item = &'a str>) -> BTreeMap<&'a str, usize> {
    let mut counts: BTreeMap<&str, usize> = known.iter().map(|k| (*k, 0)).collect();
    for v in values {
        *counts.entry(v).or_default() += 1;
    }
    counts
}

/// Builds a snapshot page by page: the fleets first, then each page of devices converted as
/// it arrives, so no page's API records outlive it.
pub struct Builder {
    fleets: Vec<Fleet>,
    index: HashMap<u64, usize>,
    orphans: usize,
}

impl Builder {
    pub fn new(fleets: Vec<model::Fleet>) -> Builder {
        let fleets: Vec<Fleet> = fleets.into_iter().map(Fleet::from_api).collect();
        let index = fleets.iter().enumerate().map(|(i, f)| (f.id, i)).collect();
        Builder {
            fleets,
            index,
            orphans: 0,
        }
    }

    /// Ids of the fleets, in the order they were given.
    pub fn fleet_ids(&self) -> Vec<u64> {
        self.fleets.iter().map(|f| f.id).collect()
    }

    /// Adds devices to their fleets. Devices of fleets not given (filtered out, or created
    /// after the fleets were read) are left out and counted.
    pub fn add_devices(&mut self, page: Vec<model::Device>) {
        for device in page {
            match device.fleet.as_ref().and_then(|r| self.index.get(&r.__id)) {
                Some(&i) => self.fleets[i].devices.push(Device::from_api(device)),
                None => self.orphans += 1,
            }
        }
    }

    /// The snapshot (fleets by slug, devices by id) and the number of devices left out.
    pub fn finish(mut self) -> (Snapshot, usize) {
        self.fleets
            .sort_by(|a, b| a.slug.cmp(&b.slug).then(a.id.cmp(&b.id)));
        for fleet in &mut self.fleets {
            fleet.devices.sort_by_key(|d| d.id);
            fleet.devices.shrink_to_fit();
        }
        (
            Snapshot {
                fleets: self.fleets,
            },
            self.orphans,
        )
    }
}

impl Snapshot {
    /// Joins devices to their fleets in one go (see `Builder`); returns the devices left out.
    pub fn from_api(fleets: Vec<model::Fleet>, devices: Vec<model::Device>) -> (Snapshot, usize) {
        let mut builder = Builder::new(fleets);
        builder.add_devices(devices);
        builder.finish()
    }

    pub fn device_count(&self) -> usize {
        self.fleets.iter().map(|f| f.devices.len()).sum()
    }
}

impl Fleet {
    fn from_api(f: model::Fleet) -> Fleet {
        Fleet {
            id: f.id,
            name: f.app_name,
            slug: f.slug,
            organization: f.organization.map(|o| o.handle).unwrap_or_default(),
            device_type: f.device_type.map(|t| t.slug).unwrap_or_default(),
            target_release: f.target_release.map(|r| r.commit).unwrap_or_default(),
            devices: Vec::new(),
        }
    }
}

impl Device {
    fn from_api(d: model::Device) -> Device {
        let on_target_release = d.target_release.as_ref().map(|target| {
            d.running_release
                .as_ref()
                .is_some_and(|running| running.id == Some(target.__id))
        });
        Device {
            id: d.id,
            name: d.device_name.unwrap_or_else(|| d.uuid.clone()),
            uuid: d.uuid,
            device_type: d.device_type.map(|t| t.slug).unwrap_or_default(),
            online: d.is_online.unwrap_or(false),
            status: d.overall_status.unwrap_or_else(|| "unknown".into()),
            heartbeat: d.api_heartbeat_state.unwrap_or_else(|| "unknown".into()),
            os_version: d.os_version.unwrap_or_default(),
            os_variant: d.os_variant.unwrap_or_default(),
            supervisor_version: d.supervisor_version.unwrap_or_default(),
            release: d.running_release.map(|r| r.commit).unwrap_or_default(),
            on_target_release,
            last_connectivity_seconds: d.last_connectivity_event.as_deref().and_then(unix_seconds),
            cpu_ratio: d.cpu_usage.map(|p| p / 100.0),
            temperature_celsius: d.cpu_temp,
            memory_used_bytes: d.memory_usage.map(|m| m * MIB),
            memory_total_bytes: d.memory_total.map(|m| m * MIB),
            storage_used_bytes: d.storage_usage.map(|m| m * MIB),
            storage_total_bytes: d.storage_total.map(|m| m * MIB),
            undervolted: d.is_undervolted,
            web_accessible: d.is_web_accessible.unwrap_or(false),
            addresses: d
                .ip_address
                .as_deref()
                .unwrap_or("")
                .split_whitespace()
                .map(String::from)
                .collect(),
        }
    }
}

/// `2026-11-21T20:27:10.768Z` → seconds since the Unix epoch; None when unparseable.
fn unix_seconds(timestamp: &str) -> Option<f64> {
    let t = humantime::parse_rfc3339_weak(timestamp.trim_end_matches('Z')).ok()?;
    t.duration_since(UNIX_EPOCH).ok().map(|d| d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(json: &str) -> Device {
        Device::from_api(serde_json::from_str(json).unwrap())
    }

    #[test]
    fn units_are_converted_to_base_units() {
        let d = device(
            r#"{"id":1,"uuid":"u1","device_name":"pi","is_online":true,"cpu_usage":40,"cpu_temp":55,
            "memory_usage":100,"memory_total":1000,"storage_usage":2048,"storage_total":30000,
            "is_undervolted":true,"last_connectivity_event":"2026-11-21T20:27:10.768Z"}"#,
        );
        assert_eq!(d.cpu_ratio, Some(0.4));
        assert_eq!(d.temperature_celsius, Some(55.0));
        assert_eq!(d.memory_used_bytes, Some(104_857_600.0));
        assert_eq!(d.memory_total_bytes, Some(1_048_576_000.0));
        assert_eq!(d.storage_used_bytes, Some(2_147_483_648.0));
        assert_eq!(d.undervolted, Some(true));
        assert_eq!(d.last_connectivity_seconds, Some(1_795_292_830.768));
    }

    #[test]
    fn addresses_are_split_on_spaces() {
        let d = device(
            r#"{"id":1,"ip_address":"192.168.1.10  10.114.101.2 ","is_web_accessible":true}"#,
        );
        assert_eq!(d.addresses, ["192.168.1.10", "10.114.101.2"]);
        assert!(d.web_accessible);
        let none = device(r#"{"id":2,"ip_address":null}"#);
        assert!(none.addresses.is_empty() && !none.web_accessible);
    }

    #[test]
    fn nulls_stay_unknown() {
        let d = device(
            r#"{"id":1,"uuid":"u1","device_name":null,"is_online":null,"overall_status":null,
            "api_heartbeat_state":null,"cpu_usage":null,"last_connectivity_event":"garbage"}"#,
        );
        assert_eq!(d.name, "u1");
        assert!(!d.online);
        assert_eq!(d.status, "unknown");
        assert_eq!(d.heartbeat, "unknown");
        assert_eq!(d.cpu_ratio, None);
        assert_eq!(d.last_connectivity_seconds, None);
        assert_eq!(d.on_target_release, None);
    }

    #[test]
    fn on_target_release_compares_release_ids() {
        let on = device(
            r#"{"id":1,"is_running__release":[{"id":7,"commit":"abc"}],"should_be_running__release":{"__id":7}}"#,
        );
        let off = device(
            r#"{"id":2,"is_running__release":[{"id":6,"commit":"old"}],"should_be_running__release":{"__id":7}}"#,
        );
        let none =
            device(r#"{"id":3,"is_running__release":[],"should_be_running__release":{"__id":7}}"#);
        let no_target = device(
            r#"{"id":4,"is_running__release":[{"id":6,"commit":"old"}],"should_be_running__release":null}"#,
        );
        assert_eq!(on.on_target_release, Some(true));
        assert_eq!(on.release, "abc");
        assert_eq!(off.on_target_release, Some(false));
        assert_eq!(none.on_target_release, Some(false));
        assert_eq!(no_target.on_target_release, None);
    }

    #[test]
    fn devices_join_fleets_and_orphans_are_dropped() {
        let fleets: Vec<model::Fleet> = serde_json::from_str(
            r#"[{"id":2,"app_name":"b","slug":"org/b"},{"id":1,"app_name":"a","slug":"org/a"}]"#,
        )
        .unwrap();
        let devices: Vec<model::Device> = serde_json::from_str(
            r#"[{"id":5,"belongs_to__application":{"__id":1},"overall_status":"operational","is_online":true},
                {"id":3,"belongs_to__application":{"__id":1},"overall_status":"brand-new-status"},
                {"id":4,"belongs_to__application":{"__id":9}},
                {"id":6,"belongs_to__application":{"__id":2},"api_heartbeat_state":"online"}]"#,
        )
        .unwrap();
        let (s, orphans) = Snapshot::from_api(fleets, devices);
        assert_eq!(orphans, 1);
        assert_eq!(
            s.fleets.iter().map(|f| f.slug.as_str()).collect::<Vec<_>>(),
            ["org/a", "org/b"]
        );
        let a = &s.fleets[0];
        assert_eq!(a.devices.iter().map(|d| d.id).collect::<Vec<_>>(), [3, 5]);
        assert_eq!(a.online(), 1);
        let statuses = a.by_status();
        assert_eq!(statuses["operational"], 1);
        assert_eq!(statuses["brand-new-status"], 1);
        assert_eq!(statuses["updating"], 0);
        assert_eq!(statuses.len(), KNOWN_STATUSES.len() + 1);
        assert_eq!(s.fleets[1].by_heartbeat()["online"], 1);
        assert_eq!(s.device_count(), 3);
    }
}
