//! Configuration from environment variables: one table of every variable (`VARIABLES`, which
//! the parser, `--help` and the README's table all follow), one typed struct with defaults,
//! and validation whose error is one line naming the variable to fix.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// The balenaCloud API, used when `BALENA_API_URL` is not set.
pub const DEFAULT_API_URL: &str = "https://api.balena-cloud.com";

/// The log filter when `RUST_LOG` is not set: warp logs every client that hangs up
/// mid-response (a scrape timeout) at ERROR, which is noise in balena's log view.
pub const DEFAULT_LOG_FILTER: &str = "info,warp::server=off";

/// One environment variable the exporter reads.
pub struct Variable {
    pub name: &'static str,
    pub default: Default,
    /// One line for `--help`.
    pub help: &'static str,
}

/// What an unset variable means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Default {
    /// Nothing: the feature is off, or the value is required.
    None,
    /// This value, parsed as if it were set: the one place it is written.
    Value(&'static str),
    /// Worked out by the parser; the words say how (README, `--help`).
    Described(&'static str),
}

impl Default {
    /// As the README and `--help` show it (`—` when there is none).
    pub fn shown(self) -> &'static str {
        match self {
            Default::None => "—",
            Default::Value(v) | Default::Described(v) => v,
        }
    }
}

impl Variable {
    /// The `Default::Value` of `name`, if it has one.
    pub fn default_value(name: &str) -> Option<&'static str> {
        match VARIABLES.iter().find(|v| v.name == name)?.default {
            Default::Value(v) => Some(v),
            _ => None,
        }
    }
}

/// Every variable the exporter reads, in the order of the README's table.
pub const VARIABLES: &[Variable] = &[
    Variable {
        name: "BALENA_TOKEN",
        default: Default::None,
        help: "user or named API key (required unless API_KEY is set)",
    },
    Variable {
        name: "API_KEY",
        default: Default::None,
        help: "same as BALENA_TOKEN (baletheus' name); BALENA_TOKEN wins",
    },
    Variable {
        name: "BALENA_API_URL",
        default: Default::Value(DEFAULT_API_URL),
        help: "API root: balenaCloud or https://api.<your openBalena domain>",
    },
    Variable {
        name: "BALENA_CA_CERT",
        default: Default::None,
        help: "PEM file of extra CA certificates to trust (private openBalena CA)",
    },
    Variable {
        name: "CRAWL_INTERVAL",
        default: Default::Value("60"),
        help: "seconds between crawls of the API",
    },
    Variable {
        name: "FULL_CRAWL_INTERVAL",
        default: Default::Value("3600"),
        help: "seconds between full crawls; crawls between read only changed devices (0: always full)",
    },
    Variable {
        name: "REQUEST_TIMEOUT",
        default: Default::Described("10, at most half of CRAWL_INTERVAL"),
        help: "seconds one API request may take; must be below CRAWL_INTERVAL",
    },
    Variable {
        name: "API_RETRIES",
        default: Default::Value("3"),
        help: "retries of a request after a timeout, connection error or 5xx",
    },
    Variable {
        name: "PAGE_SIZE",
        default: Default::Value("1000"),
        help: "rows asked for per request (1 to 10000)",
    },
    Variable {
        name: "FLEETS",
        default: Default::Described("all"),
        help: "comma-separated fleet slugs (org/fleet) or names to watch",
    },
    Variable {
        name: "DEVICE_METRICS",
        default: Default::Value("true"),
        help: "false keeps only fleet and exporter families (very large accounts)",
    },
    Variable {
        name: "SERVICE_METRICS",
        default: Default::Value("true"),
        help: "false leaves out the services of each device (image installs)",
    },
    Variable {
        name: "TAGS",
        default: Default::Value("all"),
        help: "device and fleet tag keys to export: all, none, or a comma-separated list",
    },
    Variable {
        name: "LOCATION_METRICS",
        default: Default::Value("true"),
        help: "false leaves out device coordinates (balenaCloud only)",
    },
    Variable {
        name: "IGNORE_SERVICES",
        default: Default::None,
        help: "services, by name, never counted as failing (comma-separated): one-shot jobs whose release does not say restart: no",
    },
    Variable {
        name: "BALENA_DASHBOARD_URL",
        default: Default::Described("balenaCloud's"),
        help: "balena dashboard that device links open (<url>/devices/<uuid>/summary); off for openBalena unless set, `off` turns it off",
    },
    Variable {
        name: "LISTEN_ADDRESS",
        default: Default::Value("0.0.0.0"),
        help: "IP address to listen on (:: for IPv6)",
    },
    Variable {
        name: "PORT",
        default: Default::Value("8000"),
        help: "port of the HTTP server",
    },
    Variable {
        name: "INTERNAL_PORT",
        default: Default::None,
        help: "a second port serving /metrics and /sd without credentials (the app sets 8001)",
    },
    Variable {
        name: "PUBLIC_METRICS",
        default: Default::Value("false"),
        help: "true serves /metrics, /sd and the status page on PORT without credentials",
    },
    Variable {
        name: "MAX_CONNECTIONS",
        default: Default::Value("512"),
        help: "connections served at once per port (lowered to fit the open-files limit)",
    },
    Variable {
        name: "GRAFANA_URL",
        default: Default::None,
        help: "forward /grafana/... there (the app sets http://grafana:3000)",
    },
    Variable {
        name: "ALERTMANAGER_URL",
        default: Default::None,
        help: "forward /alertmanager/... there, behind the credentials (the app sets it)",
    },
    Variable {
        name: "METRICS_TOKEN",
        default: Default::None,
        help: "require this bearer token on /metrics, /sd and / (at least 16 characters)",
    },
    Variable {
        name: "METRICS_USERNAME",
        default: Default::None,
        help: "require basic auth with this user on /metrics, /sd and /",
    },
    Variable {
        name: "METRICS_PASSWORD",
        default: Default::None,
        help: "the basic auth password for METRICS_USERNAME (at least 16 characters)",
    },
    Variable {
        name: "SD_MODE",
        default: Default::Value("public"),
        help: "how /sd addresses devices: public (public device URL) or lan",
    },
    Variable {
        name: "USE_PUBLIC_URLS",
        default: Default::None,
        help: "baletheus' name for SD_MODE: true = public, false = lan",
    },
    Variable {
        name: "SD_PUBLIC_DOMAIN",
        default: Default::Value("balena-devices.com"),
        help: "domain of public device URLs in SD_MODE=public",
    },
    Variable {
        name: "SD_LAN_PORT",
        default: Default::Value("80"),
        help: "port scraped on each local address in SD_MODE=lan",
    },
    Variable {
        name: "SD_FLEETS",
        default: Default::Described("all"),
        help: "comma-separated fleet slugs or names whose devices /sd lists",
    },
    Variable {
        name: "SD_INCLUDE_OFFLINE",
        default: Default::Value("false"),
        help: "list offline devices in /sd too",
    },
    Variable {
        name: "SD_METRICS_PATH",
        default: Default::Value("/metrics"),
        help: "metrics path on the devices (__metrics_path__)",
    },
    Variable {
        name: "SD_FILE",
        default: Default::None,
        help: "also write the /sd JSON to this file after each successful crawl",
    },
    Variable {
        name: "BALENA_DEVICE_UUID",
        default: Default::Described("set by balena"),
        help: "the monitor device's own uuid, left out of /sd",
    },
    Variable {
        name: "BALENA_API_KEY",
        default: Default::Described("set by balena"),
        help: "the device's own key: never used, only explained when it is all there is",
    },
    Variable {
        name: "RUST_LOG",
        default: Default::Value(DEFAULT_LOG_FILTER),
        help: "log filter (env_logger syntax), e.g. debug",
    },
];

/// `--help`'s list of variables, from `VARIABLES`.
pub fn variables_help() -> String {
    let width = VARIABLES.iter().map(|v| v.name.len()).max().unwrap_or(0);
    let mut out = String::new();
    for v in VARIABLES {
        out.push_str(&format!(
            "  {:width$}  {} (default: {})\n",
            v.name,
            v.help,
            v.default.shown()
        ));
    }
    out
}

/// A secret that never shows in `Debug` or `Display` output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself; call only where it is sent, never where it is logged.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Which fleets to watch: every fleet the token can see, or those named by slug or name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FleetFilter(Vec<String>);

impl FleetFilter {
    pub fn new(entries: Vec<String>) -> Self {
        FleetFilter(entries)
    }

    pub fn is_all(&self) -> bool {
        self.0.is_empty()
    }

    /// A fleet matches when an entry equals its slug (case-insensitive) or its name.
    pub fn matches(&self, slug: &str, name: &str) -> bool {
        self.is_all()
            || self
                .0
                .iter()
                .any(|e| e.eq_ignore_ascii_case(slug) || e == name)
    }
}

impl fmt::Display for FleetFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_all() {
            f.write_str("all")
        } else {
            write!(f, "{:?}", self.0)
        }
    }
}

/// Credentials that `/metrics` (and `/sd`) require, when any are configured.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MetricsAuth {
    /// `Authorization: Bearer <token>`.
    pub token: Option<Secret>,
    /// `Authorization: Basic ...` with this user name and password.
    pub basic: Option<(String, Secret)>,
}

/// How `/sd` addresses a device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SdMode {
    /// `https://<uuid>.<domain>:443`, only for devices with the public URL on.
    Public { domain: String },
    /// `http://<address>:<port>` for each local address.
    Lan { port: u16 },
}

/// HTTP service discovery of fleet devices (and its file_sd copy).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SdConfig {
    pub mode: SdMode,
    pub fleets: FleetFilter,
    pub include_offline: bool,
    pub metrics_path: String,
    /// Also write the target list here after each successful crawl (file_sd).
    pub file: Option<std::path::PathBuf>,
    /// The device this exporter runs on (balena injects `BALENA_DEVICE_UUID`): left out of
    /// the targets, since its port 80 serves this exporter, not a device exporter.
    pub own_uuid: Option<String>,
}

/// How to reach the balena API: what the client needs, and nothing else.
#[derive(Clone, Debug)]
pub struct ApiConfig {
    pub url: String,
    pub token: Secret,
    /// Extra trusted CA certificates (PEM), for an openBalena with a private CA.
    pub ca_cert_pem: Option<Vec<u8>>,
    pub request_timeout: Duration,
    pub retries: u32,
}

/// Which tag keys are read and exported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TagFilter {
    All,
    None,
    /// These keys only (exact, case-sensitive, as balena stores them).
    Keys(Vec<String>),
}

impl TagFilter {
    pub fn allows(&self, key: &str) -> bool {
        match self {
            TagFilter::All => true,
            TagFilter::None => false,
            TagFilter::Keys(keys) => keys.iter().any(|k| k == key),
        }
    }
}

/// What the crawl reads and how often.
#[derive(Clone, Debug)]
pub struct CrawlConfig {
    pub interval: Duration,
    /// How often every device is read again; in between, only changed devices are. None:
    /// every crawl reads every device (`FULL_CRAWL_INTERVAL=0`).
    pub full_interval: Option<Duration>,
    pub page_size: u32,
    pub fleets: FleetFilter,
    /// Read each device's services (image installs).
    pub services: bool,
    pub tags: TagFilter,
    /// Read device coordinates where the server has them.
    pub location: bool,
    /// Services never counted as failing.
    pub ignore_services: Vec<String>,
}

/// The exporter's settings, validated.
#[derive(Clone, Debug)]
pub struct Config {
    pub api: ApiConfig,
    pub crawl: CrawlConfig,
    pub device_metrics: bool,
    /// The public listener (PORT), internet-facing on balena.
    pub listen: SocketAddr,
    /// The internal listener (INTERNAL_PORT), for the on-device Prometheus; None: none.
    pub internal_listen: Option<SocketAddr>,
    /// Connections served at once per listener.
    pub max_connections: usize,
    /// The balena dashboard whose device pages are linked; None: no links.
    pub balena_dashboard_url: Option<String>,
    /// Where `/grafana/...` is forwarded; None leaves `/grafana/` unserved.
    pub grafana_url: Option<String>,
    /// Where `/alertmanager/...` is forwarded (behind the credentials); None: unserved.
    pub alertmanager_url: Option<String>,
    /// Who may read fleet data on the public listener.
    pub access: Access,
    pub sd: SdConfig,
}

/// Who may read fleet data (`/metrics`, `/sd`, the status page, `/alertmanager/`) on the
/// public listener.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Access {
    /// Anyone: `PUBLIC_METRICS=true` (or `--demo`).
    Open,
    /// Whoever has these credentials.
    Credentials(MetricsAuth),
    /// Nobody: no credentials are configured and the port was not opened on purpose.
    Closed,
}

impl Config {
    /// The age after which `/-/ready` reports the data as stale.
    pub fn stale_after(&self) -> Duration {
        self.crawl.interval * 3 + self.api.request_timeout
    }
}

/// A configuration error: its `Display` is the one line printed at startup.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

/// The variables of `VARIABLES` that are set to something other than blanks.
struct Vars(BTreeMap<&'static str, String>);

impl Vars {
    fn new<I>(vars: I) -> Vars
    where
        I: IntoIterator<Item = (String, String)>,
    {
        let mut map = BTreeMap::new();
        for (name, value) in vars {
            // Empty values count as unset: `FOO=` in a compose file means "no value".
            if value.trim().is_empty() {
                continue;
            }
            if let Some(v) = VARIABLES.iter().find(|v| v.name == name) {
                map.insert(v.name, value);
            }
        }
        Vars(map)
    }

    /// The value the user set, if any.
    fn set(&self, name: &'static str) -> Option<&str> {
        debug_assert!(
            VARIABLES.iter().any(|v| v.name == name),
            "{name} is not in VARIABLES"
        );
        self.0.get(name).map(String::as_str)
    }

    /// The value set, else the table's `Default::Value`.
    fn value(&self, name: &'static str) -> Result<&str, ConfigError> {
        self.set(name)
            .or_else(|| Variable::default_value(name))
            .ok_or_else(|| ConfigError(format!("{name}: not set, and it has no default")))
    }
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_vars(std::env::vars())
    }

    /// Reads the given variables (the test seam for `from_env`).
    pub fn from_vars<I>(vars: I) -> Result<Config, ConfigError>
    where
        I: IntoIterator<Item = (String, String)>,
    {
        let vars = Vars::new(vars);
        let interval = seconds(&vars, "CRAWL_INTERVAL")?;
        let api = api(&vars, interval)?;
        let crawl = crawl(&vars, interval)?;
        let balena_dashboard_url = dashboard_url(vars.set("BALENA_DASHBOARD_URL"), &api.url)?;
        let (listen, internal_listen) = listeners(&vars)?;
        let optional_url = |name| vars.set(name).map(|u| http_url(name, u)).transpose();
        Ok(Config {
            device_metrics: boolean(&vars, "DEVICE_METRICS")?,
            max_connections: integer(&vars, "MAX_CONNECTIONS", 1, 65_535)? as usize,
            grafana_url: optional_url("GRAFANA_URL")?,
            alertmanager_url: optional_url("ALERTMANAGER_URL")?,
            access: access(&vars)?,
            sd: sd(&vars)?,
            api,
            crawl,
            listen,
            internal_listen,
            balena_dashboard_url,
        })
    }
}

/// The longest default `REQUEST_TIMEOUT`, in seconds (its row in `VARIABLES` says so).
const DEFAULT_TIMEOUT_CAP: f64 = 10.0;

fn api(vars: &Vars, interval: Duration) -> Result<ApiConfig, ConfigError> {
    let token = token(vars)?;
    let url = http_url("BALENA_API_URL", vars.value("BALENA_API_URL")?)?;
    // The default fits any interval; only a timeout the user chose can be too long.
    let request_timeout = match vars.set("REQUEST_TIMEOUT") {
        None => Duration::from_secs_f64(DEFAULT_TIMEOUT_CAP.min(interval.as_secs_f64() / 2.0)),
        Some(_) => seconds(vars, "REQUEST_TIMEOUT")?,
    };
    if request_timeout >= interval {
        return Err(ConfigError(format!(
            "REQUEST_TIMEOUT ({}s) must be below CRAWL_INTERVAL ({}s)",
            request_timeout.as_secs_f64(),
            interval.as_secs_f64()
        )));
    }
    let ca_cert_pem = match vars.set("BALENA_CA_CERT") {
        None => None,
        Some(path) => Some(ca_cert(path.trim())?),
    };
    Ok(ApiConfig {
        url,
        token,
        ca_cert_pem,
        request_timeout,
        retries: integer(vars, "API_RETRIES", 0, 10)?,
    })
}

fn crawl(vars: &Vars, interval: Duration) -> Result<CrawlConfig, ConfigError> {
    Ok(CrawlConfig {
        interval,
        full_interval: match integer(vars, "FULL_CRAWL_INTERVAL", 0, 604_800)? {
            0 => None,
            s => Some(Duration::from_secs(u64::from(s))),
        },
        page_size: integer(vars, "PAGE_SIZE", 1, 10_000)?,
        fleets: fleet_list(vars.set("FLEETS")),
        services: boolean(vars, "SERVICE_METRICS")?,
        tags: tag_filter(vars.value("TAGS")?)?,
        location: boolean(vars, "LOCATION_METRICS")?,
        ignore_services: name_list(vars.set("IGNORE_SERVICES")),
    })
}

/// The public listener (PORT) and the internal one (INTERNAL_PORT), on LISTEN_ADDRESS.
fn listeners(vars: &Vars) -> Result<(SocketAddr, Option<SocketAddr>), ConfigError> {
    let address = vars.value("LISTEN_ADDRESS")?;
    let address: IpAddr = address.trim().parse().map_err(|_| {
        ConfigError(format!(
            "LISTEN_ADDRESS: expected an IP address such as 0.0.0.0 or ::1, got {address:?}"
        ))
    })?;
    let port = integer(vars, "PORT", 1, u16::MAX as u32)? as u16;
    let internal = match vars.set("INTERNAL_PORT") {
        None => None,
        Some(_) => Some(integer(vars, "INTERNAL_PORT", 1, u16::MAX as u32)? as u16),
    };
    if internal == Some(port) {
        return Err(ConfigError(format!(
            "INTERNAL_PORT: {port} is PORT already; the internal port must be another"
        )));
    }
    Ok((
        SocketAddr::new(address, port),
        internal.map(|p| SocketAddr::new(address, p)),
    ))
}

/// Who may read fleet data on the public port: PUBLIC_METRICS or the credentials.
fn access(vars: &Vars) -> Result<Access, ConfigError> {
    match (boolean(vars, "PUBLIC_METRICS")?, metrics_auth(vars)?) {
        (true, Some(_)) => Err(ConfigError(
            "PUBLIC_METRICS: true opens /metrics to anyone, so METRICS_TOKEN and \
             METRICS_USERNAME would have no effect: set either PUBLIC_METRICS or the credentials"
                .into(),
        )),
        (true, None) => Ok(Access::Open),
        (false, Some(auth)) => Ok(Access::Credentials(auth)),
        (false, None) => Ok(Access::Closed),
    }
}

/// balenaCloud's dashboard, linked when the API is balenaCloud's and `BALENA_DASHBOARD_URL`
/// is not set.
pub const BALENA_CLOUD_DASHBOARD: &str = "https://dashboard.balena-cloud.com";

/// `BALENA_DASHBOARD_URL`: `off` (or empty) for none; unset, balenaCloud's for balenaCloud's
/// API and none for any other (an openBalena has no dashboard of its own).
fn dashboard_url(value: Option<&str>, api_url: &str) -> Result<Option<String>, ConfigError> {
    match value.map(str::trim) {
        None if api_url.trim_end_matches('/') == DEFAULT_API_URL => {
            Ok(Some(BALENA_CLOUD_DASHBOARD.to_string()))
        }
        None | Some("" | "off") => Ok(None),
        Some(url) => Ok(Some(http_url("BALENA_DASHBOARD_URL", url)?)),
    }
}

/// A comma-separated list, trimmed, without empty entries.
fn name_list(value: Option<&str>) -> Vec<String> {
    value
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

fn fleet_list(value: Option<&str>) -> FleetFilter {
    FleetFilter::new(name_list(value))
}

/// `all`, `none`, or keys separated by commas (a tag key cannot hold whitespace).
fn tag_filter(value: &str) -> Result<TagFilter, ConfigError> {
    let value = value.trim();
    if value.eq_ignore_ascii_case("all") {
        return Ok(TagFilter::All);
    }
    if value.eq_ignore_ascii_case("none") {
        return Ok(TagFilter::None);
    }
    let keys: Vec<String> = value
        .split(',')
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(String::from)
        .collect();
    match keys.iter().find(|k| k.contains(char::is_whitespace) || k.len() > 100) {
        Some(bad) => Err(ConfigError(format!(
            "TAGS: expected all, none or comma-separated tag keys (no spaces, at most 100 characters), got {bad:?}"
        ))),
        None => Ok(TagFilter::Keys(keys)),
    }
}

fn sd(vars: &Vars) -> Result<SdConfig, ConfigError> {
    // SD_MODE wins; baletheus' USE_PUBLIC_URLS is read when it is not set.
    let public = match (vars.set("SD_MODE"), vars.set("USE_PUBLIC_URLS")) {
        (None, Some(v)) => parse_bool("USE_PUBLIC_URLS", v)?,
        _ => match vars.value("SD_MODE")?.trim() {
            m if m.eq_ignore_ascii_case("public") => true,
            m if m.eq_ignore_ascii_case("lan") => false,
            m => {
                return Err(ConfigError(format!(
                    "SD_MODE: expected public or lan, got {m:?}"
                )))
            }
        },
    };
    let mode = if public {
        let domain = vars.value("SD_PUBLIC_DOMAIN")?.trim();
        if domain.is_empty()
            || !domain
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
        {
            return Err(ConfigError(format!(
                "SD_PUBLIC_DOMAIN: expected a domain such as balena-devices.com, got {domain:?}"
            )));
        }
        SdMode::Public {
            domain: domain.trim_matches('.').to_string(),
        }
    } else {
        SdMode::Lan {
            port: integer(vars, "SD_LAN_PORT", 1, u16::MAX as u32)? as u16,
        }
    };
    let metrics_path = vars.value("SD_METRICS_PATH")?.trim().to_string();
    if !metrics_path.starts_with('/') {
        return Err(ConfigError(format!(
            "SD_METRICS_PATH: expected a path starting with /, got {metrics_path:?}"
        )));
    }
    Ok(SdConfig {
        mode,
        fleets: fleet_list(vars.set("SD_FLEETS")),
        include_offline: boolean(vars, "SD_INCLUDE_OFFLINE")?,
        metrics_path,
        file: vars
            .set("SD_FILE")
            .map(|p| std::path::PathBuf::from(p.trim())),
        own_uuid: vars.set("BALENA_DEVICE_UUID").map(|u| u.trim().to_string()),
    })
}

fn token(vars: &Vars) -> Result<Secret, ConfigError> {
    let (name, value) =
        match (vars.set("BALENA_TOKEN"), vars.set("API_KEY")) {
            (Some(t), _) => ("BALENA_TOKEN", t),
            (None, Some(k)) => ("API_KEY", k),
            (None, None) if vars.set("BALENA_API_KEY").is_some() => return Err(ConfigError(
                "BALENA_TOKEN is not set, and BALENA_API_KEY is the device key balena injects, \
                 which can read only its own device and cannot list fleets: set BALENA_TOKEN \
                 (or API_KEY) to a user or named API key as a service variable of the exporter"
                    .into(),
            )),
            (None, None) => {
                return Err(ConfigError(
                    "BALENA_TOKEN is not set: set BALENA_TOKEN (or API_KEY) to a balena user or \
                 named API key (dashboard: Preferences > Access tokens), or run with --demo"
                        .into(),
                ))
            }
        };
    let value = value.trim();
    // The token goes into an HTTP header: only visible ASCII is valid there.
    if !value.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ConfigError(format!(
            "{name}: the token contains spaces or characters that are not printable ASCII"
        )));
    }
    Ok(Secret::new(value))
}

/// An http(s) root URL without query or fragment, returned without a trailing slash.
fn http_url(name: &str, value: &str) -> Result<String, ConfigError> {
    let value = value.trim();
    let example = match name {
        "GRAFANA_URL" => "http://grafana:3000",
        "ALERTMANAGER_URL" => "http://alertmanager:9093",
        "BALENA_DASHBOARD_URL" => "https://dashboard.example.com",
        _ => DEFAULT_API_URL,
    };
    let url = reqwest::Url::parse(value).map_err(|e| {
        ConfigError(format!(
            "{name}: expected a URL such as {example}, got {value:?} ({e})"
        ))
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(ConfigError(format!(
            "{name}: expected an http or https URL such as {example}, got {value:?}"
        )));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(ConfigError(format!(
            "{name}: expected a root URL without query or fragment, got {value:?}"
        )));
    }
    Ok(value.trim_end_matches('/').to_string())
}

fn metrics_auth(vars: &Vars) -> Result<Option<MetricsAuth>, ConfigError> {
    let token = vars.set("METRICS_TOKEN").map(str::trim);
    if token.is_some_and(|t| !t.bytes().all(|b| b.is_ascii_graphic())) {
        return Err(ConfigError(
            "METRICS_TOKEN: the token contains spaces or characters that are not printable ASCII"
                .into(),
        ));
    }
    let basic = match (vars.set("METRICS_USERNAME"), vars.set("METRICS_PASSWORD")) {
        (None, None) => None,
        (Some(_), None) => return Err(ConfigError(
            "METRICS_PASSWORD is not set: basic auth needs METRICS_USERNAME and METRICS_PASSWORD"
                .into(),
        )),
        (None, Some(_)) => return Err(ConfigError(
            "METRICS_USERNAME is not set: basic auth needs METRICS_USERNAME and METRICS_PASSWORD"
                .into(),
        )),
        (Some(user), Some(_)) if user.contains(':') => {
            return Err(ConfigError(
                "METRICS_USERNAME: a user name cannot contain ':'".into(),
            ))
        }
        (Some(user), Some(password)) => Some((user.to_string(), Secret::new(password))),
    };
    if let Some(token) = token {
        long_enough("METRICS_TOKEN", token)?;
    }
    if let Some(password) = vars.set("METRICS_PASSWORD") {
        long_enough("METRICS_PASSWORD", password)?;
    }
    Ok((token.is_some() || basic.is_some()).then(|| MetricsAuth {
        token: token.map(Secret::new),
        basic,
    }))
}

/// The shortest `METRICS_TOKEN` or `METRICS_PASSWORD` accepted: the port is on the internet,
/// and 16 random characters cannot be guessed through it (SECURITY.md has the arithmetic).
pub const MIN_SECRET_CHARS: usize = 16;

fn long_enough(name: &str, secret: &str) -> Result<(), ConfigError> {
    let chars = secret.chars().count();
    if chars < MIN_SECRET_CHARS {
        return Err(ConfigError(format!(
            "{name}: {chars} characters is too short to guard fleet data on a public port; use at least {MIN_SECRET_CHARS} random characters (e.g. `openssl rand -hex 16`)"
        )));
    }
    Ok(())
}

fn seconds(vars: &Vars, name: &'static str) -> Result<Duration, ConfigError> {
    let value = vars.value(name)?;
    match value.trim().parse::<f64>() {
        Ok(s) if s.is_finite() && s > 0.0 && s <= 86_400.0 => Ok(Duration::from_secs_f64(s)),
        _ => Err(ConfigError(format!(
            "{name}: expected a number of seconds above 0 and at most 86400, got {value:?}"
        ))),
    }
}

fn integer(vars: &Vars, name: &'static str, min: u32, max: u32) -> Result<u32, ConfigError> {
    let value = vars.value(name)?;
    match value.trim().parse::<u32>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(ConfigError(format!(
            "{name}: expected a whole number from {min} to {max}, got {value:?}"
        ))),
    }
}

/// Parses true/false/1/0/yes/no (any case); anything else is an error naming the variable.
pub fn parse_bool(name: &str, value: &str) -> Result<bool, ConfigError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(ConfigError(format!(
            "{name}: expected true, false, 1, 0, yes or no, got {value:?}"
        ))),
    }
}

fn boolean(vars: &Vars, name: &'static str) -> Result<bool, ConfigError> {
    parse_bool(name, vars.value(name)?)
}

fn ca_cert(path: &str) -> Result<Vec<u8>, ConfigError> {
    let pem = std::fs::read(path)
        .map_err(|e| ConfigError(format!("BALENA_CA_CERT: cannot read {path:?}: {e}")))?;
    match reqwest::Certificate::from_pem_bundle(&pem) {
        Ok(certs) if !certs.is_empty() => Ok(pem),
        _ => Err(ConfigError(format!(
            "BALENA_CA_CERT: {path:?} holds no PEM certificate"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_vars(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    fn error(vars: &[(&str, &str)]) -> String {
        match load(vars) {
            Ok(c) => panic!("expected an error for {vars:?}, got {c:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn defaults() {
        let c = load(&[("BALENA_TOKEN", "abc")]).unwrap();
        assert_eq!(
            (c.api.token.expose(), c.api.url.as_str(), c.api.retries),
            ("abc", "https://api.balena-cloud.com", 3)
        );
        let timing = (c.crawl.interval, c.api.request_timeout, c.crawl.page_size);
        assert_eq!(
            timing,
            (Duration::from_secs(60), Duration::from_secs(10), 1000)
        );
        assert!(c.crawl.fleets.is_all());
        assert!(c.device_metrics);
        assert!(c.crawl.services && c.crawl.location);
        assert_eq!(c.crawl.tags, TagFilter::All);
        assert_eq!(c.listen, "0.0.0.0:8000".parse().unwrap());
        assert!(c.api.ca_cert_pem.is_none());
        assert!(c.grafana_url.is_none());
        assert_eq!(
            c.access,
            Access::Closed,
            "closed unless opened or given credentials"
        );
        assert_eq!(c.internal_listen, None);
        assert_eq!(c.max_connections, 512);
        assert_eq!(
            c.sd,
            SdConfig {
                mode: SdMode::Public {
                    domain: "balena-devices.com".into()
                },
                fleets: FleetFilter::default(),
                include_offline: false,
                metrics_path: "/metrics".into(),
                file: None,
                own_uuid: None,
            }
        );
        assert_eq!(c.stale_after(), Duration::from_secs(190));
    }

    #[test]
    fn every_variable_is_read() {
        let c = load(&[
            ("API_KEY", " key-from-baletheus \n"),
            ("BALENA_API_URL", "http://127.0.0.1:9999/"),
            ("CRAWL_INTERVAL", "0.5"),
            ("REQUEST_TIMEOUT", "0.25"),
            ("API_RETRIES", "0"),
            ("PAGE_SIZE", "2"),
            ("FLEETS", "myorg/fleet-a, Fleet B ,,"),
            ("DEVICE_METRICS", "No"),
            ("LISTEN_ADDRESS", "::1"),
            ("PORT", "9100"),
            ("GRAFANA_URL", "http://grafana:3000/"),
            ("METRICS_TOKEN", "scrape-me-0123456789"),
            ("METRICS_USERNAME", "prom"),
            ("METRICS_PASSWORD", "pass word 0123456789"),
            ("IGNORE_SERVICES", " migrate, ,provision "),
            ("BALENA_DASHBOARD_URL", "https://dashboard.example.com/"),
        ])
        .unwrap();
        assert_eq!(c.grafana_url.as_deref(), Some("http://grafana:3000"));
        let Access::Credentials(auth) = c.access.clone() else {
            panic!("credentials expected, got {:?}", c.access)
        };
        assert_eq!(auth.token, Some(Secret::new("scrape-me-0123456789")));
        assert_eq!(
            auth.basic,
            Some(("prom".into(), Secret::new("pass word 0123456789")))
        );
        assert_eq!(c.crawl.ignore_services, ["migrate", "provision"]);
        assert_eq!(
            c.balena_dashboard_url.as_deref(),
            Some("https://dashboard.example.com")
        );
        assert_eq!(c.api.token.expose(), "key-from-baletheus");
        assert_eq!(c.api.url, "http://127.0.0.1:9999");
        assert_eq!(c.crawl.interval, Duration::from_millis(500));
        assert_eq!(c.api.request_timeout, Duration::from_millis(250));
        assert_eq!(c.api.retries, 0);
        assert_eq!(c.crawl.page_size, 2);
        assert_eq!(
            c.crawl.fleets,
            FleetFilter::new(vec!["myorg/fleet-a".into(), "Fleet B".into()])
        );
        assert!(!c.device_metrics);
        assert_eq!(c.listen, "[::1]:9100".parse().unwrap());
    }

    #[test]
    fn service_discovery_settings() {
        let c = load(&[
            ("BALENA_TOKEN", "t"),
            ("SD_MODE", "LAN"),
            ("SD_LAN_PORT", "9100"),
            ("SD_FLEETS", "acme/a,b"),
            ("SD_INCLUDE_OFFLINE", "yes"),
            ("SD_METRICS_PATH", "/node/metrics"),
            ("SD_FILE", "/data/targets.json"),
            ("BALENA_DEVICE_UUID", "monitor-uuid"),
        ])
        .unwrap();
        assert_eq!(c.sd.own_uuid.as_deref(), Some("monitor-uuid"));
        assert_eq!(c.sd.mode, SdMode::Lan { port: 9100 });
        assert_eq!(
            c.sd.fleets,
            FleetFilter::new(vec!["acme/a".into(), "b".into()])
        );
        assert!(c.sd.include_offline);
        assert_eq!(c.sd.metrics_path, "/node/metrics");
        assert_eq!(
            c.sd.file.as_deref(),
            Some(std::path::Path::new("/data/targets.json"))
        );
        // baletheus' variable: false means LAN (baletheus itself read "false" as true).
        let lan = load(&[("BALENA_TOKEN", "t"), ("USE_PUBLIC_URLS", "false")]).unwrap();
        assert_eq!(lan.sd.mode, SdMode::Lan { port: 80 });
        let public = load(&[
            ("BALENA_TOKEN", "t"),
            ("USE_PUBLIC_URLS", "false"),
            ("SD_MODE", "public"),
            ("SD_PUBLIC_DOMAIN", "devices.example.org"),
        ])
        .unwrap();
        assert_eq!(
            public.sd.mode,
            SdMode::Public {
                domain: "devices.example.org".into()
            }
        );
    }

    #[test]
    fn the_default_timeout_fits_the_interval() {
        for (interval, timeout) in [
            ("60", 10.0),
            ("20", 10.0),
            ("10", 5.0),
            ("5", 2.5),
            ("1", 0.5),
        ] {
            let c = load(&[("BALENA_TOKEN", "t"), ("CRAWL_INTERVAL", interval)]).unwrap();
            assert_eq!(
                c.api.request_timeout.as_secs_f64(),
                timeout,
                "CRAWL_INTERVAL={interval}"
            );
        }
        // A timeout the user set is kept when it is below the interval.
        let c = load(&[
            ("BALENA_TOKEN", "t"),
            ("CRAWL_INTERVAL", "10"),
            ("REQUEST_TIMEOUT", "9"),
        ])
        .unwrap();
        assert_eq!(c.api.request_timeout, Duration::from_secs(9));
    }

    #[test]
    fn the_table_lists_each_variable_once_and_help_shows_them_all() {
        let names: std::collections::HashSet<_> = VARIABLES.iter().map(|v| v.name).collect();
        assert_eq!(names.len(), VARIABLES.len(), "a variable listed twice");
        let help = variables_help();
        for v in VARIABLES {
            assert!(
                help.contains(&format!("  {} ", v.name)),
                "{} in --help",
                v.name
            );
        }
        // Variables outside the table are not read.
        let c = load(&[("BALENA_TOKEN", "t"), ("CRAWL_INTERVALS", "abc")]).unwrap();
        assert_eq!(c.crawl.interval, Duration::from_secs(60));
    }

    #[test]
    fn listeners_and_access() {
        let c = load(&[
            ("BALENA_TOKEN", "t"),
            ("INTERNAL_PORT", "8001"),
            ("PUBLIC_METRICS", "true"),
            ("MAX_CONNECTIONS", "100"),
            ("ALERTMANAGER_URL", "http://alertmanager:9093/"),
        ])
        .unwrap();
        assert_eq!(c.internal_listen, Some("0.0.0.0:8001".parse().unwrap()));
        assert_eq!(c.access, Access::Open);
        assert_eq!(c.max_connections, 100);
        assert_eq!(
            c.alertmanager_url.as_deref(),
            Some("http://alertmanager:9093")
        );
    }

    #[test]
    fn tag_keys() {
        let tags = |v: &str| load(&[("BALENA_TOKEN", "t"), ("TAGS", v)]).map(|c| c.crawl.tags);
        assert_eq!(tags("NONE"), Ok(TagFilter::None));
        assert_eq!(tags("all"), Ok(TagFilter::All));
        assert_eq!(
            tags("site, customer,,rack.position"),
            Ok(TagFilter::Keys(vec![
                "site".into(),
                "customer".into(),
                "rack.position".into()
            ]))
        );
        assert!(TagFilter::Keys(vec!["Env".into()]).allows("Env"));
        assert!(!TagFilter::Keys(vec!["Env".into()]).allows("env"));
        let c = load(&[
            ("BALENA_TOKEN", "t"),
            ("SERVICE_METRICS", "no"),
            ("LOCATION_METRICS", "0"),
        ])
        .unwrap();
        assert!(!c.crawl.services && !c.crawl.location);
    }

    #[test]
    fn balena_token_wins_over_api_key() {
        let c = load(&[("API_KEY", "old"), ("BALENA_TOKEN", "new")]).unwrap();
        assert_eq!(c.api.token.expose(), "new");
    }

    #[test]
    fn empty_values_count_as_unset() {
        let c = load(&[("BALENA_TOKEN", "t"), ("PORT", ""), ("FLEETS", " ")]).unwrap();
        assert_eq!(c.listen.port(), 8000);
        assert!(c.crawl.fleets.is_all());
    }

    #[test]
    fn every_default_is_written_once_and_valid() {
        // A Value default is read by the parser: setting it explicitly changes nothing.
        let base = format!("{:?}", load(&[("BALENA_TOKEN", "t")]).unwrap());
        for v in VARIABLES {
            if let Default::Value(value) = v.default {
                let set = load(&[("BALENA_TOKEN", "t"), (v.name, value)]).unwrap();
                assert_eq!(format!("{set:?}"), base, "{} set to its default", v.name);
            }
        }
        // The one described default with a number in it says the parser's number.
        let timeout = VARIABLES.iter().find(|v| v.name == "REQUEST_TIMEOUT");
        let shown = timeout.map(|v| v.default.shown()).unwrap_or_default();
        assert!(
            shown.starts_with(&format!("{DEFAULT_TIMEOUT_CAP}, ")),
            "{shown}"
        );
    }

    #[test]
    fn the_balena_dashboard_is_balena_clouds_for_its_api_only() {
        let dashboard = |vars: &[(&str, &str)]| {
            let mut all = vec![("BALENA_TOKEN", "t")];
            all.extend_from_slice(vars);
            Config::from_vars(all.iter().map(|(k, v)| (k.to_string(), v.to_string())))
                .unwrap()
                .balena_dashboard_url
        };
        assert_eq!(dashboard(&[]).as_deref(), Some(BALENA_CLOUD_DASHBOARD));
        let open_balena = ("BALENA_API_URL", "https://api.balena.example.com");
        assert_eq!(dashboard(&[open_balena]), None);
        let set = ("BALENA_DASHBOARD_URL", "https://dash.example.com");
        assert_eq!(
            dashboard(&[open_balena, set]).as_deref(),
            Some("https://dash.example.com")
        );
        assert_eq!(dashboard(&[("BALENA_DASHBOARD_URL", "off")]), None);
    }

    #[test]
    fn bad_inputs_give_one_line_naming_the_variable() {
        let t = ("BALENA_TOKEN", "t");
        let table: &[(&[(&str, &str)], &str)] = &[
            (&[], "BALENA_TOKEN is not set: set BALENA_TOKEN (or API_KEY) to a balena user or named API key (dashboard: Preferences > Access tokens), or run with --demo"),
            (&[("BALENA_TOKEN", "")], "BALENA_TOKEN is not set: set BALENA_TOKEN (or API_KEY) to a balena user or named API key (dashboard: Preferences > Access tokens), or run with --demo"),
            (&[("BALENA_API_KEY", "device-key")], "BALENA_TOKEN is not set, and BALENA_API_KEY is the device key balena injects, which can read only its own device and cannot list fleets: set BALENA_TOKEN (or API_KEY) to a user or named API key as a service variable of the exporter"),
            (&[("BALENA_TOKEN", "two words")], "BALENA_TOKEN: the token contains spaces or characters that are not printable ASCII"),
            (&[("API_KEY", "caf\u{e9}")], "API_KEY: the token contains spaces or characters that are not printable ASCII"),
            (&[t, ("CRAWL_INTERVAL", "abc")], "CRAWL_INTERVAL: expected a number of seconds above 0 and at most 86400, got \"abc\""),
            (&[t, ("CRAWL_INTERVAL", "0")], "CRAWL_INTERVAL: expected a number of seconds above 0 and at most 86400, got \"0\""),
            (&[t, ("CRAWL_INTERVAL", "-5")], "CRAWL_INTERVAL: expected a number of seconds above 0 and at most 86400, got \"-5\""),
            (&[t, ("CRAWL_INTERVAL", "inf")], "CRAWL_INTERVAL: expected a number of seconds above 0 and at most 86400, got \"inf\""),
            (&[t, ("REQUEST_TIMEOUT", "10s")], "REQUEST_TIMEOUT: expected a number of seconds above 0 and at most 86400, got \"10s\""),
            (&[t, ("CRAWL_INTERVAL", "30"), ("REQUEST_TIMEOUT", "30")], "REQUEST_TIMEOUT (30s) must be below CRAWL_INTERVAL (30s)"),
            (&[t, ("CRAWL_INTERVAL", "5"), ("REQUEST_TIMEOUT", "10")], "REQUEST_TIMEOUT (10s) must be below CRAWL_INTERVAL (5s)"),
            (&[t, ("PORT", "http")], "PORT: expected a whole number from 1 to 65535, got \"http\""),
            (&[t, ("PORT", "70000")], "PORT: expected a whole number from 1 to 65535, got \"70000\""),
            (&[t, ("PORT", "0")], "PORT: expected a whole number from 1 to 65535, got \"0\""),
            (&[t, ("PAGE_SIZE", "0")], "PAGE_SIZE: expected a whole number from 1 to 10000, got \"0\""),
            (&[t, ("API_RETRIES", "many")], "API_RETRIES: expected a whole number from 0 to 10, got \"many\""),
            (&[t, ("DEVICE_METRICS", "maybe")], "DEVICE_METRICS: expected true, false, 1, 0, yes or no, got \"maybe\""),
            (&[t, ("SERVICE_METRICS", "maybe")], "SERVICE_METRICS: expected true, false, 1, 0, yes or no, got \"maybe\""),
            (&[t, ("TAGS", "site,owner team")], "TAGS: expected all, none or comma-separated tag keys (no spaces, at most 100 characters), got \"owner team\""),
            (&[t, ("LISTEN_ADDRESS", "localhost")], "LISTEN_ADDRESS: expected an IP address such as 0.0.0.0 or ::1, got \"localhost\""),
            (&[t, ("BALENA_API_URL", "ftp://example.com")], "BALENA_API_URL: expected an http or https URL such as https://api.balena-cloud.com, got \"ftp://example.com\""),
            (&[t, ("BALENA_API_URL", "api.balena-cloud.com")], "BALENA_API_URL: expected a URL such as https://api.balena-cloud.com, got \"api.balena-cloud.com\" (relative URL without a base)"),
            (&[t, ("BALENA_API_URL", "https://api.example.com/?x=1")], "BALENA_API_URL: expected a root URL without query or fragment, got \"https://api.example.com/?x=1\""),
            (&[t, ("GRAFANA_URL", "grafana:3000")], "GRAFANA_URL: expected an http or https URL such as http://grafana:3000, got \"grafana:3000\""),
            (&[t, ("METRICS_USERNAME", "prom")], "METRICS_PASSWORD is not set: basic auth needs METRICS_USERNAME and METRICS_PASSWORD"),
            (&[t, ("METRICS_PASSWORD", "x")], "METRICS_USERNAME is not set: basic auth needs METRICS_USERNAME and METRICS_PASSWORD"),
            (&[t, ("METRICS_USERNAME", "a:b"), ("METRICS_PASSWORD", "x")], "METRICS_USERNAME: a user name cannot contain ':'"),
            (&[t, ("SD_MODE", "both")], "SD_MODE: expected public or lan, got \"both\""),
            (&[t, ("USE_PUBLIC_URLS", "nope")], "USE_PUBLIC_URLS: expected true, false, 1, 0, yes or no, got \"nope\""),
            (&[t, ("SD_INCLUDE_OFFLINE", "sometimes")], "SD_INCLUDE_OFFLINE: expected true, false, 1, 0, yes or no, got \"sometimes\""),
            (&[t, ("SD_MODE", "lan"), ("SD_LAN_PORT", "0")], "SD_LAN_PORT: expected a whole number from 1 to 65535, got \"0\""),
            (&[t, ("SD_PUBLIC_DOMAIN", "https://x.org")], "SD_PUBLIC_DOMAIN: expected a domain such as balena-devices.com, got \"https://x.org\""),
            (&[t, ("SD_METRICS_PATH", "metrics")], "SD_METRICS_PATH: expected a path starting with /, got \"metrics\""),
            (&[t, ("METRICS_TOKEN", "a b")], "METRICS_TOKEN: the token contains spaces or characters that are not printable ASCII"),
            (&[t, ("METRICS_TOKEN", "0123456789abcde")], "METRICS_TOKEN: 15 characters is too short to guard fleet data on a public port; use at least 16 random characters (e.g. `openssl rand -hex 16`)"),
            (&[t, ("METRICS_USERNAME", "prom"), ("METRICS_PASSWORD", "1234")], "METRICS_PASSWORD: 4 characters is too short to guard fleet data on a public port; use at least 16 random characters (e.g. `openssl rand -hex 16`)"),
            (&[t, ("BALENA_DASHBOARD_URL", "dashboard.example.com")], "BALENA_DASHBOARD_URL: expected a URL such as https://dashboard.example.com, got \"dashboard.example.com\" (relative URL without a base)"),
            (&[t, ("PUBLIC_METRICS", "true"), ("METRICS_TOKEN", "0123456789abcdef")], "PUBLIC_METRICS: true opens /metrics to anyone, so METRICS_TOKEN and METRICS_USERNAME would have no effect: set either PUBLIC_METRICS or the credentials"),
            (&[t, ("INTERNAL_PORT", "8000")], "INTERNAL_PORT: 8000 is PORT already; the internal port must be another"),
            (&[t, ("MAX_CONNECTIONS", "0")], "MAX_CONNECTIONS: expected a whole number from 1 to 65535, got \"0\""),
            (&[t, ("BALENA_CA_CERT", "/nonexistent/ca.pem")], "BALENA_CA_CERT: cannot read \"/nonexistent/ca.pem\": No such file or directory (os error 2)"),
        ];
        for (vars, expected) in table {
            let got = error(vars);
            assert_eq!(&got, expected, "for {vars:?}");
            assert!(!got.contains('\n'), "one line for {vars:?}");
        }
    }

    #[test]
    fn ca_cert_must_hold_a_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate").unwrap();
        let got = error(&[
            ("BALENA_TOKEN", "t"),
            ("BALENA_CA_CERT", path.to_str().unwrap()),
        ]);
        assert_eq!(
            got,
            format!(
                "BALENA_CA_CERT: {:?} holds no PEM certificate",
                path.to_str().unwrap()
            )
        );
    }

    #[test]
    fn debug_output_hides_the_token() {
        let c = load(&[("BALENA_TOKEN", "s3cr3t-token")]).unwrap();
        let c = Config {
            access: Access::Credentials(MetricsAuth {
                token: Some(Secret::new("s3cr3t-token")),
                basic: None,
            }),
            ..c
        };
        let shown = format!("{c:?}");
        assert!(!shown.contains("s3cr3t-token"), "{shown}");
        assert!(shown.contains("<redacted>"));
    }

    #[test]
    fn fleet_filter_matches_slug_or_name() {
        let f = FleetFilter::new(vec!["MyOrg/Fleet".into(), "Kiosks".into()]);
        assert!(f.matches("myorg/fleet", "anything"));
        assert!(f.matches("other/kiosks", "Kiosks"));
        assert!(!f.matches("other/kiosks", "kiosks"));
        assert!(FleetFilter::default().matches("a/b", "b"));
    }

    #[test]
    fn booleans() {
        for (v, want) in [
            ("true", true),
            ("YES", true),
            ("1", true),
            ("False", false),
            ("no", false),
            ("0", false),
        ] {
            assert_eq!(parse_bool("X", v), Ok(want), "{v}");
        }
        assert!(parse_bool("X", "on").is_err());
    }
}
