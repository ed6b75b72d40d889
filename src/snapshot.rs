//! Plain data about fleets and devices as of one crawl, in base units, converted from the
//! API's answers row by row (`Converter`), and the per-fleet counts (`Tally`). No HTTP and no
//! Prometheus types: renderers read it. The crawl hands each device on to the renderings as it
//! is converted, and keeps none (`render::Rendering`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use crate::balena::model;
use crate::definitions::{self, Presence};

/// Text of the snapshot. Values that repeat across devices (statuses, versions, releases,
/// device types, service names, tag keys and values) are interned: one allocation for all.
pub type Text = Arc<str>;

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

/// `update_status` values; fleet counts list each of them, also at zero. A device without one
/// (it never updated, or the server does not say) counts as `none`.
pub const KNOWN_UPDATE_STATUSES: &[&str] = &[
    "aborted",
    "applying changes",
    "done",
    "downloaded",
    "downloading",
    "none",
    "rejected",
];

const MIB: f64 = 1024.0 * 1024.0;

/// Which optional data a crawl reads: when services (image installs) or tags are not read,
/// their families are left out rather than shown empty.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reads {
    pub services: bool,
    pub tags: bool,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Fleet {
    pub id: u64,
    pub name: Text,
    pub slug: Text,
    pub organization: Text,
    pub device_type: Text,
    /// Commit of the fleet's target release; empty when there is none.
    pub target_release: Text,
    /// Fleet tags (key, value), sorted by key.
    pub tags: Vec<(Text, Text)>,
}

/// The state of one service of a device, from its image installs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Service {
    pub name: Text,
    /// As balena stores it: `Running`, `Downloading`, `exited`, ...
    pub status: Text,
    /// 0 to 1 while the target release's image downloads.
    pub download_progress: Option<f64>,
    /// Failing, as `definitions::service_failing` says.
    pub failing: bool,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Device {
    pub id: u64,
    pub uuid: Text,
    pub name: Text,
    pub device_type: Text,
    pub online: bool,
    pub status: Text,
    pub heartbeat: Text,
    pub os_version: Text,
    pub os_variant: Text,
    pub supervisor_version: Text,
    /// Commit of the running release; empty when unknown.
    pub release: Text,
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
    pub addresses: Vec<Text>,
    /// `update_status`; `none` when the device has none.
    pub update_status: Text,
    /// 0 to 1 while an update downloads (`overall_progress`).
    pub update_progress: Option<f64>,
    /// Unix time of the last change of `update_status`.
    pub update_status_changed_seconds: Option<f64>,
    /// Unix time of the last change of the heartbeat state (v7; null until it changes).
    pub heartbeat_changed_seconds: Option<f64>,
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
    /// One entry per service, sorted by name.
    pub services: Vec<Service>,
    /// Device tags (key, value), sorted by key.
    pub tags: Vec<(Text, Text)>,
}

impl Device {
    pub fn presence(&self) -> Presence {
        Presence::of(&self.status)
    }

    pub fn offline(&self) -> bool {
        self.presence() == Presence::Offline
    }

    pub fn updating(&self) -> bool {
        definitions::updating(self.presence(), &self.update_status, &self.status)
    }

    /// When the device went offline; None when it is not offline or nothing says.
    pub fn offline_since(&self) -> Option<f64> {
        definitions::offline_since(
            self.presence(),
            self.heartbeat_changed_seconds,
            self.last_connectivity_seconds,
        )
    }
}

/// Counts of one fleet's devices, added to device by device.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Tally {
    pub devices: usize,
    pub online: usize,
    /// Neither inactive nor configuring.
    pub expected_online: usize,
    pub offline: usize,
    pub updating: usize,
    /// Failing service instances.
    pub services_failing: usize,
    pub on_target_release: usize,
    by_status: BTreeMap<Text, usize>,
    by_heartbeat: BTreeMap<Text, usize>,
    by_update_status: BTreeMap<Text, usize>,
    service_instances: BTreeMap<(Text, Text), usize>,
}

impl Tally {
    pub fn add(&mut self, d: &Device) {
        self.devices += 1;
        self.online += usize::from(d.online);
        let presence = d.presence();
        self.expected_online += usize::from(presence.expected_online());
        self.offline += usize::from(presence == Presence::Offline);
        self.updating += usize::from(d.updating());
        self.services_failing += d.services.iter().filter(|s| s.failing).count();
        self.on_target_release += usize::from(d.on_target_release == Some(true));
        for (counts, key) in [
            (&mut self.by_status, &d.status),
            (&mut self.by_heartbeat, &d.heartbeat),
            (&mut self.by_update_status, &d.update_status),
        ] {
            match counts.get_mut(key) {
                Some(n) => *n += 1,
                None => {
                    counts.insert(key.clone(), 1);
                }
            }
        }
        for s in &d.services {
            *self
                .service_instances
                .entry((s.name.clone(), s.status.clone()))
                .or_default() += 1;
        }
    }

    /// Devices per `overall_status`: every known status (zero included) and any other seen.
    pub fn by_status(&self) -> BTreeMap<&str, usize> {
        with_known(KNOWN_STATUSES, &self.by_status)
    }

    /// Devices per heartbeat state: every known state (zero included) and any other seen.
    pub fn by_heartbeat(&self) -> BTreeMap<&str, usize> {
        with_known(KNOWN_HEARTBEATS, &self.by_heartbeat)
    }

    /// Devices per update status: every known one (zero included) and any other seen.
    pub fn by_update_status(&self) -> BTreeMap<&str, usize> {
        with_known(KNOWN_UPDATE_STATUSES, &self.by_update_status)
    }

    /// Service instances per (service, status), as seen on the fleet's devices.
    pub fn service_instances(&self) -> BTreeMap<(&str, &str), usize> {
        self.service_instances
            .iter()
            .map(|((service, status), n)| ((&**service, &**status), *n))
            .collect()
    }
}

fn with_known<'a>(known: &[&'a str], seen: &'a BTreeMap<Text, usize>) -> BTreeMap<&'a str, usize> {
    let mut counts: BTreeMap<&str, usize> = known.iter().map(|k| (*k, 0)).collect();
    for (value, n) in seen {
        *counts.entry(value).or_default() += n;
    }
    counts
}

/// One allocation per distinct text: statuses, versions, releases, device types, service
/// names, tag keys and values repeat across thousands of devices.
#[derive(Default)]
struct Interner(HashSet<Text>);

impl Interner {
    fn get(&mut self, text: &str) -> Text {
        if let Some(known) = self.0.get(text) {
            return known.clone();
        }
        let text: Text = Arc::from(text);
        self.0.insert(text.clone());
        text
    }
}

/// Converts the API's rows into snapshot rows: text borrowed from the page is interned here,
/// and services are named from the service rows read before the devices.
pub struct Converter {
    strings: Interner,
    /// Service names by id; None: services are not read.
    services: Option<HashMap<u64, Text>>,
    tags: bool,
    /// Restart policies by release id, then service name (from the release pages).
    restart: HashMap<u64, HashMap<String, String>>,
    /// Services never counted as failing (`IGNORE_SERVICES`).
    excluded: Vec<String>,
}

impl Converter {
    /// `services`: whether services are read (named by `add_services`); `tags`: whether tags are.
    pub fn new(services: bool, tags: bool) -> Converter {
        Converter {
            strings: Interner::default(),
            services: services.then(HashMap::new),
            tags,
            restart: HashMap::new(),
            excluded: Vec::new(),
        }
    }

    /// Services, by name, that are never counted as failing.
    pub fn excluding(mut self, services: &[String]) -> Converter {
        self.excluded = services.to_vec();
        self
    }

    /// Adds the restart policies of releases' services.
    pub fn add_releases(&mut self, page: Vec<model::ReleasePolicies>) {
        for release in page {
            self.restart
                .insert(release.id, release.composition.into_iter().collect());
        }
    }

    /// Whether services were read, and tags.
    pub fn reads(&self) -> Reads {
        Reads {
            services: self.services.is_some(),
            tags: self.tags,
        }
    }

    pub fn fleet(&mut self, fleet: model::Fleet) -> Fleet {
        Fleet::from_api(fleet, &mut self.strings)
    }

    /// Adds service names.
    pub fn add_services(&mut self, page: Vec<model::Service>) {
        if let Some(names) = &mut self.services {
            for service in page {
                names.insert(service.id, self.strings.get(&service.service_name));
            }
        }
    }

    pub fn device(&mut self, device: model::Device) -> Device {
        static NO_NAMES: std::sync::OnceLock<HashMap<u64, Text>> = std::sync::OnceLock::new();
        let names = match &self.services {
            Some(names) => names,
            None => NO_NAMES.get_or_init(HashMap::new),
        };
        let policies = Policies {
            restart: &self.restart,
            excluded: &self.excluded,
        };
        Device::from_api(device, names, &policies, &mut self.strings)
    }
}

/// What says whether a service is failing besides its status: restart policies by release and
/// service name, and the services excluded by name.
struct Policies<'a> {
    restart: &'a HashMap<u64, HashMap<String, String>>,
    excluded: &'a [String],
}

/// The order fleets are shown in: by slug, then id.
pub fn by_slug(a: &Fleet, b: &Fleet) -> std::cmp::Ordering {
    a.slug.cmp(&b.slug).then(a.id.cmp(&b.id))
}

impl Fleet {
    fn from_api(f: model::Fleet, strings: &mut Interner) -> Fleet {
        Fleet {
            id: f.id,
            name: strings.get(&f.app_name),
            slug: strings.get(&f.slug),
            organization: strings.get(f.organization.as_ref().map_or("", |o| &o.handle)),
            device_type: strings.get(f.device_type.as_ref().map_or("", |t| &t.slug)),
            target_release: strings.get(f.target_release.as_ref().map_or("", |r| &r.commit)),
            tags: tags(f.tags, strings),
        }
    }
}

impl Device {
    fn from_api(
        d: model::Device,
        names: &HashMap<u64, Text>,
        policies: &Policies,
        strings: &mut Interner,
    ) -> Device {
        let running = d.running_release.as_ref().and_then(|r| r.id);
        let target = d.target_release.as_ref().map(|r| r.__id);
        let on_target_release = target.map(|target| running == Some(target));
        let mut text =
            |t: Option<&model::Text>, default: &str| strings.get(t.map_or(default, |t| t));
        let uuid: Text = Arc::from(&*d.uuid);
        let presence = Presence::of(d.overall_status.as_deref().unwrap_or("unknown"));
        let installs = Installs {
            running,
            target,
            names,
            policies,
            presence,
        };
        Device {
            id: d.id,
            name: d
                .device_name
                .as_deref()
                .map_or_else(|| uuid.clone(), Arc::from),
            device_type: text(d.device_type.as_ref().map(|t| &t.slug), ""),
            online: d.is_online.unwrap_or(false),
            status: text(d.overall_status.as_ref(), "unknown"),
            heartbeat: text(d.api_heartbeat_state.as_ref(), "unknown"),
            os_version: text(d.os_version.as_ref(), ""),
            os_variant: text(d.os_variant.as_ref(), ""),
            supervisor_version: text(d.supervisor_version.as_ref(), ""),
            release: text(d.running_release.as_ref().map(|r| &r.commit), ""),
            update_status: text(d.update_status.as_ref(), "none"),
            uuid,
            on_target_release,
            last_connectivity_seconds: d.last_connectivity_event.as_deref().and_then(unix_seconds),
            cpu_ratio: d.cpu_usage.map(|p| p / 100.0),
            temperature_celsius: d.cpu_temp,
            memory_used_bytes: bytes(d.memory_usage),
            memory_total_bytes: bytes(d.memory_total),
            storage_used_bytes: bytes(d.storage_usage),
            storage_total_bytes: bytes(d.storage_total),
            undervolted: d.is_undervolted,
            web_accessible: d.is_web_accessible.unwrap_or(false),
            addresses: d
                .ip_address
                .as_deref()
                .unwrap_or("")
                .split_whitespace()
                .map(Arc::from)
                .collect(),
            update_progress: d.overall_progress.map(|p| (p / 100.0).clamp(0.0, 1.0)),
            update_status_changed_seconds: d
                .last_update_status_event
                .as_deref()
                .and_then(unix_seconds),
            heartbeat_changed_seconds: d.heartbeat_changed.as_deref().and_then(unix_seconds),
            latitude: d.latitude.filter(|l| (-90.0..=90.0).contains(l)),
            longitude: d.longitude.filter(|l| (-180.0..=180.0).contains(l)),
            services: installs.services(d.installs, strings),
            tags: tags(d.tags, strings),
        }
    }
}

/// MiB as bytes; None for a value so large the product is not finite (no device has one).
fn bytes(mib: Option<f64>) -> Option<f64> {
    mib.map(|m| m * MIB).filter(|b| b.is_finite())
}

/// One status per service from a device's installs (deleted ones are not read): the install
/// of the release the device runs, else the one of its target; installs of other releases
/// that linger are not the current release's state. The download progress is that of the
/// install that is `Downloading` (the target's, during an update). Services whose name is not
/// known are named by their id.
struct Installs<'a> {
    running: Option<u64>,
    target: Option<u64>,
    names: &'a HashMap<u64, Text>,
    policies: &'a Policies<'a>,
    presence: Presence,
}

impl Installs<'_> {
    fn services(&self, installs: Vec<model::Install>, strings: &mut Interner) -> Vec<Service> {
        let (running, target, names) = (self.running, self.target, self.names);
        let mut by_service: BTreeMap<u64, (Option<model::Install>, Option<model::Install>)> =
            BTreeMap::new();
        for install in installs {
            let Some(service) = install.image.as_ref().and_then(|i| i.service.as_ref()) else {
                continue;
            };
            let release = install.release.as_ref().map(|r| r.__id);
            let slot = by_service.entry(service.__id).or_default();
            if release.is_some() && release == running {
                slot.0 = Some(install);
            } else if release.is_some() && release == target {
                slot.1 = Some(install);
            }
        }
        let mut out: Vec<Service> = by_service
            .into_iter()
            .filter_map(|(id, (on_running, on_target))| {
                let downloading = [&on_running, &on_target]
                    .into_iter()
                    .flatten()
                    .find(|i| i.status.as_deref() == Some("Downloading"))
                    .map(|i| (i.download_progress.unwrap_or(0.0) / 100.0).clamp(0.0, 1.0));
                let install = on_running.or(on_target)?;
                let status = strings.get(install.status.as_deref()?);
                let name = match names.get(&id) {
                    Some(name) => name.clone(),
                    None => strings.get(&id.to_string()),
                };
                let release = install.release.as_ref().map(|r| r.__id);
                let failing = self.failing(&name, &status, release);
                Some(Service {
                    name,
                    status,
                    download_progress: downloading,
                    failing,
                })
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Whether a service in `status`, of `release`, is failing (`definitions::service_failing`).
    fn failing(&self, name: &str, status: &str, release: Option<u64>) -> bool {
        let restart = release
            .and_then(|r| self.policies.restart.get(&r))
            .and_then(|services| services.get(name))
            .map(String::as_str);
        let excluded = self.policies.excluded.iter().any(|s| s == name);
        definitions::service_failing(self.presence, status, restart, excluded)
    }
}

/// Tags as (key, value) sorted by key; a null value is empty.
fn tags(tags: Vec<model::Tag>, strings: &mut Interner) -> Vec<(Text, Text)> {
    let mut out: Vec<(Text, Text)> = tags
        .into_iter()
        .map(|t| {
            (
                strings.get(&t.tag_key),
                strings.get(t.value.as_deref().unwrap_or("")),
            )
        })
        .collect();
    out.sort();
    out
}

/// `2026-11-21T20:27:10.768Z` → seconds since the Unix epoch; None when unparseable.
fn unix_seconds(timestamp: &str) -> Option<f64> {
    unix_time(timestamp).map(|d| d.as_secs_f64())
}

/// An API timestamp (`2026-12-07T17:42:44.154Z`) in Unix milliseconds.
pub fn unix_millis(timestamp: &str) -> Option<u64> {
    unix_time(timestamp).and_then(|d| u64::try_from(d.as_millis()).ok())
}

fn unix_time(timestamp: &str) -> Option<std::time::Duration> {
    let t = humantime::parse_rfc3339_weak(timestamp.trim_end_matches('Z')).ok()?;
    t.duration_since(UNIX_EPOCH).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(json: &str) -> Device {
        convert(json, &HashMap::new())
    }

    fn convert(json: &str, names: &HashMap<u64, Text>) -> Device {
        let restart = HashMap::new();
        let policies = Policies {
            restart: &restart,
            excluded: &[],
        };
        Device::from_api(
            serde_json::from_str(json).unwrap(),
            names,
            &policies,
            &mut Interner::default(),
        )
    }

    #[test]
    fn release_restart_policies_and_excluded_names_say_what_is_failing() {
        let mut converter = Converter::new(true, false).excluding(&["provision".into()]);
        converter.add_services(
            serde_json::from_str(
                r#"[{"id":1,"service_name":"main"},{"id":2,"service_name":"migrate"},
                   {"id":3,"service_name":"provision"},{"id":4,"service_name":"agent"}]"#,
            )
            .unwrap(),
        );
        // Release 7 says migrate is a one-shot job and agent may end on success; release 8
        // (a composition of another shape) says nothing, so balena's default (always) holds.
        converter.add_releases(
            serde_json::from_str(
                r#"[{"id":7,"composition":{"version":"2.1","services":{
                      "main":{"build":"."},"migrate":{"restart":"no"},
                      "agent":{"restart":"on-failure"}}}},
                   {"id":8,"composition":null}]"#,
            )
            .unwrap(),
        );
        let mut device = |release: u64, status: &str| {
            let install = |service: u64| {
                format!(
                    r#"{{"installs__image":[{{"is_a_build_of__service":{{"__id":{service}}}}}],"status":"{status}","is_provided_by__release":{{"__id":{release}}}}}"#
                )
            };
            let json = format!(
                r#"{{"id":1,"overall_status":"operational","is_running__release":[{{"id":{release},"commit":"c"}}],
                "image_install":[{},{},{},{}]}}"#,
                install(1),
                install(2),
                install(3),
                install(4)
            );
            let d = converter.device(serde_json::from_str(&json).unwrap());
            d.services
                .iter()
                .map(|s| (s.name.to_string(), s.failing))
                .collect::<Vec<_>>()
        };
        let failing = |pairs: &[(&str, bool)]| {
            pairs
                .iter()
                .map(|(n, f)| (n.to_string(), *f))
                .collect::<Vec<_>>()
        };
        // Exited on release 7: main (always, by default) fails; migrate (no) and agent
        // (on-failure) ended as designed; provision is excluded by name.
        assert_eq!(
            device(7, "exited"),
            failing(&[
                ("agent", false),
                ("main", true),
                ("migrate", false),
                ("provision", false)
            ])
        );
        // Dead is failing whatever the policy, unless excluded.
        assert_eq!(
            device(7, "Dead"),
            failing(&[
                ("agent", true),
                ("main", true),
                ("migrate", true),
                ("provision", false)
            ])
        );
        // Release 8 says no policy: every exited service but the excluded one fails.
        assert_eq!(
            device(8, "exited"),
            failing(&[
                ("agent", true),
                ("main", true),
                ("migrate", true),
                ("provision", false)
            ])
        );
    }

    #[test]
    fn services_prefer_the_running_release_and_ignore_lingering_ones() {
        let names = HashMap::from([(1, Text::from("main")), (2, Text::from("sensor-reader"))]);
        let install = |service: u64, release: u64, status: &str, progress: &str| {
            format!(
                r#"{{"installs__image":[{{"is_a_build_of__service":{{"__id":{service}}}}}],"status":"{status}","download_progress":{progress},"is_provided_by__release":{{"__id":{release}}}}}"#
            )
        };
        // Device 2 of the recorded server: running release 1, downloading release 5.
        let json = format!(
            r#"{{"id":2,"is_running__release":[{{"id":1,"commit":"a"}}],"should_be_running__release":{{"__id":5}},
            "overall_progress":80,"update_status":"downloading",
            "image_install":[{},{},{},{},{}]}}"#,
            install(1, 1, "Running", "null"),
            install(2, 1, "Running", "null"),
            install(1, 5, "Downloading", "60"),
            install(2, 5, "Downloaded", "100"),
            install(2, 3, "exited", "null"), // an old release that lingers
        );
        let d = convert(&json, &names);
        assert_eq!(
            d.services,
            [
                Service {
                    name: "main".into(),
                    status: "Running".into(),
                    download_progress: Some(0.6),
                    failing: false,
                },
                Service {
                    name: "sensor-reader".into(),
                    status: "Running".into(),
                    download_progress: None,
                    failing: false,
                },
            ]
        );
        assert_eq!(&*d.update_status, "downloading");
        assert_eq!(d.update_progress, Some(0.8));
        // No release running yet (device 51): the target's install counts; unknown names are ids.
        let json = format!(
            r#"{{"id":51,"is_running__release":[],"should_be_running__release":{{"__id":8}},"image_install":[{}]}}"#,
            install(9, 8, "exited", "null")
        );
        let d = convert(&json, &names);
        assert_eq!(d.services.len(), 1);
        assert_eq!(
            (&*d.services[0].name, &*d.services[0].status),
            ("9", "exited")
        );
        assert_eq!(&*d.update_status, "none");
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
        assert_eq!(
            d.addresses,
            [Text::from("192.168.1.10"), Text::from("10.114.101.2")]
        );
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
        assert_eq!(&*d.name, "u1");
        assert!(!d.online);
        assert_eq!(&*d.status, "unknown");
        assert_eq!(&*d.heartbeat, "unknown");
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
        assert_eq!(&*on.release, "abc");
        assert_eq!(off.on_target_release, Some(false));
        assert_eq!(none.on_target_release, Some(false));
        assert_eq!(no_target.on_target_release, None);
    }
}
