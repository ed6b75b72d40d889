//! The fake's data: an account of fleets, devices, releases, services, image installs and tags,
//! and a sample account with a bit of everything.

#[derive(Clone, Debug, Default)]
pub struct Account {
    /// Tokens that authenticate as the (single) user `admin`; any other token runs as a guest.
    pub tokens: Vec<String>,
    /// Device API keys (token, device id): whoami answers actor type `device`.
    pub device_keys: Vec<(String, u64)>,
    pub fleets: Vec<Fleet>,
    pub devices: Vec<Device>,
    pub services: Vec<Service>,
    /// Whether the server has balenaCloud's device fields (`latitude`, `longitude`, `location`,
    /// `is_active`). openBalena has not: selecting one answers 500 with an empty body.
    pub cloud_fields: bool,
    /// A server that cannot filter on `modified_at` (selecting it still works): such a
    /// `$filter` answers 500 with an empty body, as an unknown field does.
    pub no_modified_at_filter: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
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
    /// Organization handle; the fake numbers organizations (from 1, new handles in name order,
    /// when first seen).
    pub organization: String,
    /// Device type slug; numbered by the fake as organizations are.
    pub device_type: String,
    pub target_release: Option<Release>,
    /// `fleet|block|app`; an empty string is served as `"fleet"`.
    pub is_of__class: String,
    /// `application_tag` rows: (key, value).
    pub tags: Vec<(String, String)>,
}

/// A service of a fleet (`service` resource).
#[derive(Clone, Debug, Default)]
pub struct Service {
    pub id: u64,
    pub fleet_id: u64,
    pub name: String,
    /// The service's `restart` policy in its fleet's release compositions; None: not given
    /// (balena's default, `always`).
    pub restart: Option<String>,
}

/// One `image_install` row: the image of `service_id` in `release_id` on a device. The image
/// is the fake's (one image per service and release, numbered when first seen).
#[derive(Clone, Debug, Default)]
pub struct Install {
    pub id: u64,
    pub service_id: u64,
    pub release_id: u64,
    /// As the server stores it: `Running`, `Downloading`, `exited`, `deleted`, ...
    pub status: String,
    /// 0–100 while downloading, else usually None.
    pub download_progress: Option<i64>,
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
    /// `rejected`, `downloading`, `downloaded`, `applying changes`, `aborted`, `done` or None.
    pub update_status: Option<String>,
    pub last_update_status_event: Option<String>,
    /// Computed by the server while an install downloads: 0–100.
    pub overall_progress: Option<i64>,
    /// v7: when the heartbeat state last changed (null until it does).
    pub heartbeat_changed_at: Option<String>,
    /// balenaCloud only (Short Text on the server).
    pub latitude: Option<String>,
    pub longitude: Option<String>,
    pub installs: Vec<Install>,
    /// `device_tag` rows: (key, value).
    pub tags: Vec<(String, String)>,
}

/// A commit derived from a release id.
pub fn commit(id: u64) -> String {
    format!("{:032x}", id * 0x1234_5678_9abc)
}

impl Account {
    /// The devices of fleet `fleet_id`, in id order. (Not used by tests/http.)
    #[allow(dead_code)]
    pub fn devices_of(&self, fleet_id: u64) -> Vec<&Device> {
        self.devices
            .iter()
            .filter(|d| d.fleet_id == fleet_id)
            .collect()
    }

    /// Token `sample-token`; organizations `acme` and `globex`; fleets 1 `acme/sensors`,
    /// 2 `globex/sensors` (same app_name as 1) and 3 `acme/gateways` (no target release);
    /// devices 1-8 with varied statuses; device 4 is pinned; device 8 never reported anything.
    pub fn sample() -> Account {
        let rel = |id: u64| Release {
            id,
            commit: commit(id),
        };
        let fleet = |id: u64, app: &str, org: &str, dt: &str, target: Option<Release>| Fleet {
            id,
            app_name: app.into(),
            slug: format!("{org}/{app}"),
            organization: org.into(),
            device_type: dt.into(),
            target_release: target,
            is_of__class: "fleet".into(),
            tags: Vec::new(),
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
            update_status: Some("done".into()),
            last_update_status_event: Some("2026-11-20T10:00:00.000Z".into()),
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
        d[1].heartbeat_changed_at = Some("2026-11-21T08:00:00.000Z".into());
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
        d[5].update_status = Some("downloading".into());
        // 7: a dev image still configuring, running nothing yet.
        d[6].api_heartbeat_state = "unknown".into();
        d[6].overall_status = "configuring".into();
        d[6].os_variant = Some("dev".into());
        d[6].running_release = None;
        d[6].update_status = None;
        // Services (as on the recorded server): sensors run main and sensor-reader, globex's
        // sensors run probe, gateways run proxy and mqtt (no device of theirs runs anything).
        let install =
            |id: u64, service_id: u64, release_id: u64, status: &str, progress: Option<i64>| {
                Install {
                    id,
                    service_id,
                    release_id,
                    status: status.into(),
                    download_progress: progress,
                }
            };
        // 1 runs its target.
        d[0].installs = vec![
            install(1, 1, 11, "Running", None),
            install(2, 2, 11, "Running", None),
        ];
        // 2 (offline) runs release 10; its sensor-reader exited.
        d[1].installs = vec![
            install(3, 1, 10, "Running", None),
            install(4, 2, 10, "exited", None),
        ];
        d[1].update_status = Some("rejected".into());
        // 3 runs 10 and downloads its target 11: main at 60 %, sensor-reader done.
        d[2].installs = vec![
            install(5, 1, 10, "Running", None),
            install(6, 2, 10, "Running", None),
            install(7, 1, 11, "Downloading", Some(60)),
            install(8, 2, 11, "Downloaded", Some(100)),
        ];
        d[2].update_status = Some("downloading".into());
        d[2].overall_progress = Some(80);
        d[2].last_update_status_event = Some("2026-11-21T19:00:00.000Z".into());
        // 4 is pinned on 10, which it runs; sensor-reader restarts; an old install was deleted.
        d[3].installs = vec![
            install(9, 1, 9, "deleted", None),
            install(10, 1, 10, "Running", None),
            install(11, 2, 10, "restarting", None),
        ];
        // 5 runs its target; 6 downloads it.
        d[4].installs = vec![install(12, 3, 21, "Running", None)];
        d[5].installs = vec![
            install(13, 3, 20, "Running", None),
            install(14, 3, 21, "Downloading", Some(10)),
        ];
        d[5].overall_progress = Some(10);
        // Tags, with keys that need sanitising and differ only by case.
        d[0].tags = vec![
            ("site".into(), "Köln".into()),
            ("rack.position".into(), "A/3".into()),
        ];
        d[4].tags = vec![
            ("Env".into(), "prod".into()),
            ("env".into(), "staging".into()),
        ];
        d[5].tags = vec![("customer".into(), "O'Brien & Söhne \"GmbH\"".into())];
        // Coordinates (served only when the account has balenaCloud's fields).
        d[0].latitude = Some("52.52".into());
        d[0].longitude = Some("13.405".into());
        d[4].latitude = Some("-33.8688".into());
        d[4].longitude = Some("151.2093".into());
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
        let mut fleets = vec![
            fleet(1, "sensors", "acme", pi4, Some(rel(11))),
            fleet(2, "sensors", "globex", pi3, Some(rel(21))),
            fleet(3, "gateways", "acme", nuc, None),
        ];
        fleets[0].tags = vec![
            ("region".into(), "eu-west".into()),
            ("owner".into(), "Zoë Ångström".into()),
        ];
        fleets[2].tags = vec![
            ("region".into(), "eu".into()),
            ("Region".into(), "EU".into()),
        ];
        let service = |id: u64, fleet_id: u64, name: &str| Service {
            id,
            fleet_id,
            name: name.into(),
            restart: None,
        };
        Account {
            tokens: vec!["sample-token".into()],
            fleets,
            devices: d,
            services: vec![
                service(1, 1, "main"),
                service(2, 1, "sensor-reader"),
                service(3, 2, "probe"),
                service(4, 3, "proxy"),
                service(5, 3, "mqtt"),
            ],
            ..Default::default()
        }
    }
}
