//! The table of every metric family the exporter serves: name, type, labels and help, as the
//! README's metrics table lists them. No other file names a metric.

pub(super) const CACHED: &str = "as of the last successful crawl of the balena API";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Gauge,
    Counter,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Gauge => "gauge",
            Kind::Counter => "counter",
        }
    }
}

/// One metric family: what the README's metrics table lists, row by row.
#[derive(Debug)]
pub struct Def {
    pub name: &'static str,
    pub kind: Kind,
    pub labels: &'static [&'static str],
    pub help: &'static str,
}

const fn gauge(name: &'static str, labels: &'static [&'static str], help: &'static str) -> Def {
    Def {
        name,
        kind: Kind::Gauge,
        labels,
        help,
    }
}

const fn counter(name: &'static str, labels: &'static [&'static str], help: &'static str) -> Def {
    Def {
        name,
        kind: Kind::Counter,
        labels,
        help,
    }
}

const FLEET: &[&str] = &["fleet_name", "fleet_slug"];
const DEVICE: &[&str] = &["uuid", "fleet_slug"];

pub const DEVICES_ONLINE: Def = gauge(
    "balena_devices_online",
    FLEET,
    "Devices of the fleet that are online (is_online)",
);
pub const FLEET_DEVICES: Def = gauge("balena_fleet_devices", FLEET, "Devices in the fleet");
pub const FLEET_EXPECTED_ONLINE: Def = gauge(
    "balena_fleet_devices_expected_online",
    FLEET,
    "Devices of the fleet expected online: neither inactive (deactivated) nor configuring (never connected)",
);
pub const FLEET_OFFLINE: Def = gauge(
    "balena_fleet_devices_offline",
    FLEET,
    "Devices of the fleet that are offline: disconnected, neither heartbeat nor VPN (never inactive or configuring ones)",
);
pub const FLEET_UPDATING: Def = gauge(
    "balena_fleet_devices_updating",
    FLEET,
    "Devices of the fleet that are updating: update status downloading, downloaded or applying changes",
);
pub const FLEET_SERVICES_FAILING: Def = gauge(
    "balena_fleet_services_failing",
    FLEET,
    "Failing service instances on the fleet's devices: exited, Dead or restarting, except services that end by design or are ignored",
);
pub const FLEET_BY_STATUS: Def = gauge(
    "balena_fleet_devices_by_status",
    &["fleet_name", "fleet_slug", "status"],
    "Devices of the fleet by overall_status",
);
pub const FLEET_BY_HEARTBEAT: Def = gauge(
    "balena_fleet_devices_by_heartbeat",
    &["fleet_name", "fleet_slug", "state"],
    "Devices of the fleet by API heartbeat state",
);
pub const FLEET_ON_TARGET: Def = gauge(
    "balena_fleet_devices_on_target_release",
    FLEET,
    "Devices of the fleet running their target release",
);
pub const FLEET_INFO: Def = gauge(
    "balena_fleet_info",
    &[
        "fleet_name",
        "fleet_slug",
        "organization",
        "device_type",
        "target_release",
    ],
    "Fleet details as labels; the value is 1",
);
pub const DEVICE_ONLINE: Def = gauge(
    "balena_device_online",
    DEVICE,
    "1 if the device is online (is_online), else 0",
);
pub const DEVICE_STATUS: Def = gauge(
    "balena_device_status",
    &["uuid", "fleet_slug", "status"],
    "The device's overall_status as a label; the value is 1",
);
pub const DEVICE_HEARTBEAT: Def = gauge(
    "balena_device_heartbeat_state",
    &["uuid", "fleet_slug", "state"],
    "The device's API heartbeat state as a label; the value is 1",
);
pub const DEVICE_LAST_CONNECTIVITY: Def = gauge(
    "balena_device_last_connectivity_timestamp_seconds",
    DEVICE,
    "Unix time of the device's last connectivity event",
);
pub const DEVICE_CPU: Def = gauge(
    "balena_device_cpu_usage_ratio",
    DEVICE,
    "CPU usage reported by the device, 0 to 1",
);
pub const DEVICE_TEMPERATURE: Def = gauge(
    "balena_device_cpu_temperature_celsius",
    DEVICE,
    "CPU temperature reported by the device",
);
pub const DEVICE_MEMORY_USED: Def = gauge(
    "balena_device_memory_used_bytes",
    DEVICE,
    "Memory in use reported by the device",
);
pub const DEVICE_MEMORY_TOTAL: Def = gauge(
    "balena_device_memory_total_bytes",
    DEVICE,
    "Memory size reported by the device",
);
pub const DEVICE_STORAGE_USED: Def = gauge(
    "balena_device_storage_used_bytes",
    DEVICE,
    "Storage in use reported by the device",
);
pub const DEVICE_STORAGE_TOTAL: Def = gauge(
    "balena_device_storage_total_bytes",
    DEVICE,
    "Storage size reported by the device",
);
pub const DEVICE_UNDERVOLTED: Def = gauge(
    "balena_device_undervolted",
    DEVICE,
    "1 if the device reports undervoltage, else 0",
);
pub const DEVICE_ON_TARGET: Def = gauge(
    "balena_device_on_target_release",
    DEVICE,
    "1 if the device runs its target release, else 0; absent without a target",
);
pub const DEVICE_INFO: Def = gauge(
    "balena_device_info",
    &[
        "uuid",
        "fleet_slug",
        "fleet_name",
        "device_name",
        "device_type",
        "os_version",
        "os_variant",
        "supervisor_version",
        "release",
    ],
    "Device details as labels; the value is 1",
);
pub const DEVICE_UPDATE_STATUS: Def = gauge(
    "balena_device_update_status",
    &["uuid", "fleet_slug", "status"],
    "The device's update_status as a label (none when it has none); the value is 1",
);
pub const DEVICE_UPDATE_PROGRESS: Def = gauge(
    "balena_device_update_progress_ratio",
    DEVICE,
    "Progress of the update the device downloads (overall_progress), 0 to 1; absent when none",
);
pub const DEVICE_UPDATE_STATUS_TIME: Def = gauge(
    "balena_device_update_status_timestamp_seconds",
    DEVICE,
    "Unix time of the device's last update status event",
);
pub const DEVICE_HEARTBEAT_CHANGED: Def = gauge(
    "balena_device_heartbeat_state_changed_timestamp_seconds",
    DEVICE,
    "Unix time the device's heartbeat state last changed (offline since, when offline)",
);
pub const DEVICE_LATITUDE: Def = gauge(
    "balena_device_latitude_degrees",
    DEVICE,
    "Latitude of the device (balenaCloud only)",
);
pub const DEVICE_LONGITUDE: Def = gauge(
    "balena_device_longitude_degrees",
    DEVICE,
    "Longitude of the device (balenaCloud only)",
);
pub const DEVICE_TAGS: Def = gauge(
    "balena_device_tags",
    &["uuid", "fleet_slug", "tag_<key>"],
    "The device's tags as labels tag_<key>; the value is 1",
);
pub const SERVICE_STATUS: Def = gauge(
    "balena_service_status",
    &["uuid", "fleet_slug", "service", "status"],
    "Status of a service's container on the device (image_install of the release it runs, else of its target) as a label; the value is 1",
);
pub const SERVICE_DOWNLOAD: Def = gauge(
    "balena_service_download_progress_ratio",
    &["uuid", "fleet_slug", "service"],
    "Download progress of a service's image on the device, 0 to 1; absent when not downloading",
);
pub const DEVICE_EXPECTED_ONLINE: Def = gauge(
    "balena_device_expected_online",
    DEVICE,
    "1 if the device is expected online (neither inactive nor configuring), else 0",
);
pub const DEVICE_OFFLINE: Def = gauge(
    "balena_device_offline",
    DEVICE,
    "1 if the device is offline (disconnected: neither heartbeat nor VPN), else 0; inactive and configuring devices are 0",
);
pub const DEVICE_OFFLINE_SINCE: Def = gauge(
    "balena_device_offline_since_timestamp_seconds",
    DEVICE,
    "Unix time an offline device went offline (its heartbeat change, else its last connectivity event); absent when not offline",
);
pub const DEVICE_UPDATING: Def = gauge(
    "balena_device_updating",
    DEVICE,
    "1 if the device is updating (update status downloading, downloaded or applying changes), else 0",
);
pub const SERVICE_FAILING: Def = gauge(
    "balena_service_failing",
    &["uuid", "fleet_slug", "service"],
    "1 if the service is failing (exited, Dead or restarting, unless it ended by design or is ignored), else 0",
);
pub const FLEET_BY_UPDATE_STATUS: Def = gauge(
    "balena_fleet_devices_by_update_status",
    &["fleet_name", "fleet_slug", "status"],
    "Devices of the fleet by update_status (none when a device has none)",
);
pub const FLEET_SERVICES: Def = gauge(
    "balena_fleet_service_instances",
    &["fleet_name", "fleet_slug", "service", "status"],
    "Service instances on the fleet's devices by service and status",
);
pub const FLEET_TAGS: Def = gauge(
    "balena_fleet_tags",
    &["fleet_name", "fleet_slug", "tag_<key>"],
    "The fleet's tags as labels tag_<key>; the value is 1",
);
pub const UP: Def = gauge(
    "balena_up",
    &[],
    "1 if the last crawl of the balena API succeeded, 0 if it failed or none has finished.",
);
pub const CRAWL_DURATION: Def = gauge(
    "balena_crawl_duration_seconds",
    &[],
    "Wall time of the last crawl of the balena API.",
);
pub const LAST_SUCCESS: Def = gauge(
    "balena_last_successful_crawl_timestamp_seconds",
    &[],
    "Unix time when the last successful crawl finished; 0 before the first.",
);
pub const CRAWL_REQUESTS: Def = gauge(
    "balena_crawl_api_requests",
    &[],
    "API requests made by the last crawl, retries included.",
);
pub const CRAWLS: Def = counter(
    "balena_crawls_total",
    &[],
    "Crawls of the balena API finished.",
);
pub const CRAWL_ERRORS: Def = counter(
    "balena_crawl_errors_total",
    &["kind"],
    "Crawls that failed, by the kind of error that ended them.",
);
pub const API_REQUESTS: Def = counter(
    "balena_api_requests_total",
    &["resource"],
    "Requests sent to the balena API, by resource, retries included.",
);
pub const API_ERRORS: Def = counter(
    "balena_api_errors_total",
    &["kind"],
    "Failed requests to the balena API, by kind of error.",
);
pub const API_RESPONSE_BYTES: Def = counter(
    "balena_api_response_bytes_total",
    &["resource"],
    "Bytes of balena API answers as they came over the wire (gzipped: the exporter asks for gzip), by resource.",
);
pub const API_ROWS: Def = counter(
    "balena_api_rows_read_total",
    &["resource", "crawl"],
    "Rows of balena API pages read, by resource and crawl kind (full: every device; incremental: the devices changed since the last crawl). Pages answered 304 count too.",
);
pub const SD_FILE_ERRORS: Def = counter(
    "balena_sd_file_write_errors_total",
    &[],
    "Failed writes of the service discovery file (SD_FILE).",
);
pub const HTTP_OPEN: Def = gauge(
    "balena_http_connections_open",
    &["listener"],
    "HTTP connections open now, by listener (public: PORT, internal: INTERNAL_PORT).",
);
pub const HTTP_ACCEPTED: Def = counter(
    "balena_http_connections_accepted_total",
    &["listener"],
    "HTTP connections accepted, by listener.",
);
pub const HTTP_LIMIT: Def = counter(
    "balena_http_connection_limit_reached_total",
    &["listener"],
    "Times a new connection had to wait because MAX_CONNECTIONS were open, by listener.",
);
pub const HTTP_CLOSED: Def = counter(
    "balena_http_connections_closed_total",
    &["listener", "reason"],
    "HTTP connections the exporter closed, by listener and reason (head_timeout: the request head did not arrive in time, also idle keep-alive; head_too_large; stalled: the client read nothing; max_age; error).",
);
pub const HTTP_AUTH_FAILURES: Def = counter(
    "balena_http_auth_failures_total",
    &[],
    "Requests whose credentials (METRICS_TOKEN, or METRICS_USERNAME and METRICS_PASSWORD) were wrong.",
);
pub const ALERTMANAGER_POLL_ERRORS: Def = counter(
    "balena_alertmanager_poll_errors_total",
    &[],
    "Failed polls of Alertmanager's alerts for the status page (ALERTMANAGER_URL): unreachable, an error status or an answer that does not decode.",
);
pub const DASHBOARD_INFO: Def = gauge(
    "balena_dashboard_info",
    &["url"],
    "The balena dashboard that device links open (<url>/devices/<uuid>/summary); absent when none is set. The value is 1.",
);
pub const BUILD_INFO: Def = gauge(
    "balena_exporter_build_info",
    &["version"],
    "Version of the exporter; the value is 1.",
);

/// Every family the exporter serves but the prometheus crate's `process_*` ones. A label
/// `tag_<key>` stands for one label per tag key (see `tags`).
pub const FAMILIES: &[&Def] = &[
    &DEVICES_ONLINE,
    &FLEET_DEVICES,
    &FLEET_EXPECTED_ONLINE,
    &FLEET_OFFLINE,
    &FLEET_UPDATING,
    &FLEET_SERVICES_FAILING,
    &FLEET_BY_STATUS,
    &FLEET_BY_HEARTBEAT,
    &FLEET_ON_TARGET,
    &FLEET_INFO,
    &FLEET_BY_UPDATE_STATUS,
    &FLEET_SERVICES,
    &FLEET_TAGS,
    &DEVICE_ONLINE,
    &DEVICE_STATUS,
    &DEVICE_HEARTBEAT,
    &DEVICE_LAST_CONNECTIVITY,
    &DEVICE_CPU,
    &DEVICE_TEMPERATURE,
    &DEVICE_MEMORY_USED,
    &DEVICE_MEMORY_TOTAL,
    &DEVICE_STORAGE_USED,
    &DEVICE_STORAGE_TOTAL,
    &DEVICE_UNDERVOLTED,
    &DEVICE_ON_TARGET,
    &DEVICE_INFO,
    &DEVICE_UPDATE_STATUS,
    &DEVICE_UPDATE_PROGRESS,
    &DEVICE_UPDATE_STATUS_TIME,
    &DEVICE_HEARTBEAT_CHANGED,
    &DEVICE_LATITUDE,
    &DEVICE_LONGITUDE,
    &DEVICE_TAGS,
    &SERVICE_STATUS,
    &SERVICE_DOWNLOAD,
    &DEVICE_EXPECTED_ONLINE,
    &DEVICE_OFFLINE,
    &DEVICE_OFFLINE_SINCE,
    &DEVICE_UPDATING,
    &SERVICE_FAILING,
    &UP,
    &CRAWL_DURATION,
    &LAST_SUCCESS,
    &CRAWL_REQUESTS,
    &CRAWLS,
    &CRAWL_ERRORS,
    &API_REQUESTS,
    &API_ERRORS,
    &API_RESPONSE_BYTES,
    &API_ROWS,
    &SD_FILE_ERRORS,
    &HTTP_OPEN,
    &HTTP_ACCEPTED,
    &HTTP_LIMIT,
    &HTTP_CLOSED,
    &HTTP_AUTH_FAILURES,
    &ALERTMANAGER_POLL_ERRORS,
    &DASHBOARD_INFO,
    &BUILD_INFO,
];

/// Device families: the run of `FAMILIES` from `DEVICE_ONLINE` to `SERVICE_FAILING`, in
/// order; `Slot` names the positions.
pub(super) const DEVICE_FAMILIES: &[&Def] = FAMILIES
    .split_at(FIRST_DEVICE_FAMILY)
    .1
    .split_at(Slot::ServiceFailing as usize + 1)
    .0;
/// Where `DEVICE_ONLINE` stands in `FAMILIES`.
pub(super) const FIRST_DEVICE_FAMILY: usize = 13;

#[derive(Clone, Copy)]
pub(super) enum Slot {
    Online,
    Status,
    Heartbeat,
    LastConnectivity,
    Cpu,
    Temperature,
    MemoryUsed,
    MemoryTotal,
    StorageUsed,
    StorageTotal,
    Undervolted,
    OnTarget,
    Info,
    UpdateStatus,
    UpdateProgress,
    UpdateStatusTime,
    HeartbeatChanged,
    Latitude,
    Longitude,
    Tags,
    ServiceStatus,
    ServiceDownload,
    ExpectedOnline,
    Offline,
    OfflineSince,
    Updating,
    ServiceFailing,
}
