//! The live check of the Grafana dashboards: every panel and variable query returns data from a
//! real Prometheus running the shipped configuration.
//!
//! The fake balena API serving the sample account with balenaCloud's fields (services, update
//! statuses, tags, an offline device, coordinates), the exporter in `SD_MODE=lan`, a real
//! `prometheus-node-exporter` standing in for a device on 127.0.0.2 (with the flags of
//! `examples/device-node-exporter`), and a real `prometheus` running the shipped
//! `prometheus/prometheus.yml`, which scrapes the exporter and discovers the device through
//! `/sd`. The variables are resolved as Grafana resolves them (query, regex with named `text` and
//! `value` groups, sort, saved default), twice: as a newcomer finds them on first open, and with
//! "All" wherever it is offered. Each time every panel query and every variable query must
//! return at least one series; the only exceptions are the few in `MAY_BE_EMPTY` (sensors a
//! virtual machine lacks) and `EMPTY_WHILE_ABSENT` (alerts that have not fired, a balena dashboard
//! that is not configured), each checked to be empty for that reason only. The counts of panels
//! and queries with data are printed, also for `--demo` (`first_open_in_demo_mode`). The lints
//! of the files themselves are in `dashboards_static.rs`.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde_json::Value;

use common::child::quiet;
use common::dashboards::{
    dashboards, provisioned_uid, read, variable_query, with_uid, Dashboard, VariableOption,
    BUILTINS,
};
use common::exporter::{start_ready, Exporter};
use common::fake::Account;
use common::prometheus::Prometheus;
use common::promql::{selectors, variable_promql, variable_refs};

/// A panel query allowed to return no series on the machine that runs the live test, and why.
/// The exception is narrow: it applies only while the machine lacks the hardware
/// (`expected_here` false; where it has it, as a Raspberry Pi or a NUC does, the query must
/// return data), only when every other metric of the query has data, and only when the
/// collectors that would produce the missing metrics did run on the stand-in device. A misspelled
/// metric therefore still fails.
struct MayBeEmpty {
    uid: &'static str,
    panel: &'static str,
    ref_id: &'static str,
    /// The metrics whose absence is allowed; the query must use each of them.
    metrics: &'static [&'static str],
    /// The node_exporter collectors of those metrics (`node_scrape_collector_success` label).
    collectors: &'static [&'static str],
    /// Whether this machine has what the query reads, in which case it must return data.
    expected_here: fn() -> bool,
    reason: &'static str,
}

const MAY_BE_EMPTY: &[MayBeEmpty] = &[
    MayBeEmpty {
        uid: "balena-node",
        panel: "Temperature",
        ref_id: "A",
        metrics: &["node_hwmon_temp_celsius"],
        collectors: &["hwmon"],
        expected_here: hwmon_temperatures,
        reason: "real devices have hwmon temperature sensors (SoC, coretemp, ACPI); a virtual \
                 machine or container has no /sys/class/hwmon/*/temp*_input",
    },
    MayBeEmpty {
        uid: "balena-node",
        panel: "Temperature",
        ref_id: "B",
        metrics: &["node_thermal_zone_temp", "node_hwmon_temp_celsius"],
        collectors: &["thermal_zone", "hwmon"],
        expected_here: thermal_zones_without_hwmon,
        reason: "thermal zones are shown only for devices without a hwmon temperature; a virtual \
                 machine has no /sys/class/thermal/thermal_zone*/temp at all",
    },
];

/// Where an `EMPTY_WHILE_ABSENT` query sits: a panel's target, or a query variable.
enum Place {
    Target {
        panel: &'static str,
        ref_id: &'static str,
    },
    Variable(&'static str),
}

/// A query allowed to return no series while a selector it reads returns none from the whole
/// Prometheus, for a reason of the account or of the moment rather than of the query: the
/// exception applies only while `absent` is empty (where it has data, as on an account with a
/// firing alert or a configured balena dashboard, the query must return data too), and the
/// query must read `absent`'s metric.
struct EmptyWhileAbsent {
    uid: &'static str,
    place: Place,
    absent: &'static str,
    reason: &'static str,
}

const NO_BALENA_DASHBOARD: &str = "balena_dashboard_info exists only where a balena dashboard is \
    configured (balenaCloud); the exporter here reads a fake API at a local address, as with openBalena";

const EMPTY_WHILE_ABSENT: &[EmptyWhileAbsent] = &[
    EmptyWhileAbsent {
        uid: "balena-home",
        place: Place::Target {
            panel: "Alerts firing now",
            ref_id: "A",
        },
        absent: "ALERTS{alertstate=\"firing\"}",
        reason: "no alert fires within this test: every alert rule waits its `for:` (5 minutes or \
                 more) first, and a healthy account fires none at all",
    },
    EmptyWhileAbsent {
        uid: "balena-device",
        place: Place::Target {
            panel: "balena dashboard",
            ref_id: "A",
        },
        absent: "balena_dashboard_info",
        reason: NO_BALENA_DASHBOARD,
    },
    EmptyWhileAbsent {
        uid: "balena-device",
        place: Place::Variable("balena_dashboard"),
        absent: "balena_dashboard_info",
        reason: NO_BALENA_DASHBOARD,
    },
];

impl EmptyWhileAbsent {
    fn is_target(&self, uid: &str, panel: &str, ref_id: &str) -> bool {
        self.uid == uid
            && matches!(self.place, Place::Target { panel: p, ref_id: r } if p == panel && r == ref_id)
    }

    fn is_variable(&self, uid: &str, name: &str) -> bool {
        self.uid == uid && matches!(self.place, Place::Variable(v) if v == name)
    }

    /// The metric of `absent`.
    fn metric(&self) -> &'static str {
        self.absent.split('{').next().unwrap_or(self.absent)
    }

    /// Why the empty answer is acceptable (`Ok`), or why not (`Err`): `absent` has data.
    async fn excuse(&self, prometheus: &Prometheus) -> Result<String, String> {
        match instant_query(prometheus, self.absent).await {
            Ok(series) if series.is_empty() => Ok(format!(
                "allowed to be empty while {} is: {}",
                self.absent, self.reason
            )),
            Ok(_) => Err(format!(
                ", although {} has data (EMPTY_WHILE_ABSENT: {})",
                self.absent, self.reason
            )),
            Err(e) => Err(format!(", and {} failed: {e}", self.absent)),
        }
    }
}

/// Whether any /sys/class/hwmon/*/temp*_input exists.
fn hwmon_temperatures() -> bool {
    sys_entries("/sys/class/hwmon", "hwmon").iter().any(|dir| {
        std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .any(|f| {
                let name = f.file_name().to_string_lossy().into_owned();
                name.starts_with("temp") && name.ends_with("_input")
            })
    })
}

/// Whether any /sys/class/thermal/thermal_zone*/temp exists while no hwmon temperature does.
fn thermal_zones_without_hwmon() -> bool {
    let zones = sys_entries("/sys/class/thermal", "thermal_zone")
        .iter()
        .any(|dir| dir.join("temp").exists());
    zones && !hwmon_temperatures()
}

/// The entries of `dir` whose names start with `prefix` (none if `dir` does not exist).
fn sys_entries(dir: &str, prefix: &str) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
        .map(|e| e.path())
        .collect()
}

#[test]
fn may_be_empty_entries_name_existing_queries_and_their_metrics() {
    let dashboards = dashboards();
    for entry in MAY_BE_EMPTY {
        let d = with_uid(&dashboards, entry.uid)
            .unwrap_or_else(|| panic!("MAY_BE_EMPTY: no dashboard {}", entry.uid));
        let (_, _, expr) = d
            .queries()
            .into_iter()
            .find(|(panel, ref_id, _)| panel == entry.panel && ref_id == entry.ref_id)
            .unwrap_or_else(|| {
                panic!(
                    "MAY_BE_EMPTY: {} has no panel {:?} target {}",
                    d.name(),
                    entry.panel,
                    entry.ref_id
                )
            });
        let used: BTreeSet<String> = selectors(&expr).into_iter().map(|(m, _)| m).collect();
        for metric in entry.metrics {
            assert!(
                used.contains(*metric),
                "MAY_BE_EMPTY: {} {:?} {} does not use {metric}: {expr}",
                d.name(),
                entry.panel,
                entry.ref_id
            );
        }
        assert!(!entry.collectors.is_empty() && !entry.reason.is_empty());
    }
    for entry in EMPTY_WHILE_ABSENT {
        let d = with_uid(&dashboards, entry.uid)
            .unwrap_or_else(|| panic!("EMPTY_WHILE_ABSENT: no dashboard {}", entry.uid));
        let expr = match entry.place {
            Place::Target { panel, ref_id } => d
                .queries()
                .into_iter()
                .find(|(p, r, _)| p == panel && r == ref_id)
                .map(|(_, _, expr)| expr),
            Place::Variable(name) => d
                .variables()
                .into_iter()
                .find(|v| v["name"] == name)
                .and_then(|v| variable_query(v).map(String::from)),
        }
        .unwrap_or_else(|| {
            panic!(
                "EMPTY_WHILE_ABSENT: {} has no query for {}",
                d.name(),
                entry.absent
            )
        });
        let used: BTreeSet<String> = selectors(&expr).into_iter().map(|(m, _)| m).collect();
        assert!(
            used.contains(entry.metric()) && !entry.reason.is_empty(),
            "EMPTY_WHILE_ABSENT: {} does not read {}: {expr}",
            d.name(),
            entry.metric()
        );
    }
}

/// `text` with every variable reference replaced by its value from `values` or `BUILTINS`.
fn interpolate(text: &str, values: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::new();
    let mut last = 0;
    for (range, name) in variable_refs(text) {
        let value = values
            .get(&name)
            .map(String::as_str)
            .or_else(|| {
                BUILTINS
                    .iter()
                    .find(|(builtin, _)| *builtin == name)
                    .map(|(_, v)| *v)
            })
            .ok_or_else(|| format!("no value for ${name}"))?;
        out.push_str(&text[last..range.start]);
        out.push_str(value);
        last = range.end;
    }
    out.push_str(&text[last..]);
    Ok(out)
}

/// An instant query through the HTTP API: its series (a scalar or string result counts as
/// one), or the error Prometheus gave. (`Prometheus::query` hides errors, which a failure
/// message here should show.)
async fn instant_query(prometheus: &Prometheus, query: &str) -> Result<Vec<Value>, String> {
    let response = reqwest::Client::new()
        .get(format!("{}/api/v1/query", prometheus.url))
        .query(&[("query", query)])
        .send()
        .await
        .map_err(|e| format!("request failed: {e}"))?;
    let body: Value = serde_json::from_slice(&response.bytes().await.map_err(|e| e.to_string())?)
        .map_err(|e| format!("not JSON: {e}"))?;
    if body["status"] != "success" {
        return Err(format!("{}: {}", body["errorType"], body["error"]));
    }
    let data = &body["data"];
    Ok(match data["resultType"].as_str() {
        Some("vector") | Some("matrix") => data["result"].as_array().cloned().unwrap_or_default(),
        Some("scalar") | Some("string") => vec![data["result"].clone()],
        other => return Err(format!("unexpected result type {other:?}")),
    })
}

/// One series of a `query_result` variable as Grafana's Prometheus datasource turns it into an
/// item (`queryResultQuery`): `name{label="value",...} value timestamp_ms`, the labels in the
/// order Prometheus sent them and their values unescaped.
fn query_result_line(series: &Value) -> String {
    let metric = series["metric"].as_object().cloned().unwrap_or_default();
    let name = metric.get("__name__").and_then(Value::as_str).unwrap_or("");
    let labels: Vec<String> = metric
        .iter()
        .filter(|(k, _)| *k != "__name__")
        .map(|(k, v)| format!("{k}=\"{}\"", v.as_str().unwrap_or("")))
        .collect();
    let value = series["value"][1].as_str().unwrap_or("");
    let millis = series["value"][0].as_f64().unwrap_or(0.0) * 1000.0;
    format!("{name}{{{}}} {value} {millis}", labels.join(","))
}

/// What a variable offers, as Grafana makes its options: the values of its label (sorted, as
/// the label values API returns them), or the lines of `query_result`, through its regex and
/// sort (`variable_options`).
async fn variable_options(
    prometheus: &Prometheus,
    d: &Dashboard,
    var: &Value,
    values: &BTreeMap<String, String>,
) -> Result<Vec<VariableOption>, String> {
    let query = variable_query(var).ok_or("no query")?;
    let (promql, label) = variable_promql(query)?;
    let promql = interpolate(&promql, values)?;
    let series = instant_query(prometheus, &promql)
        .await
        .map_err(|e| format!("{promql}: {e}"))?;
    let items: Vec<String> = match &label {
        Some(label) => series
            .iter()
            .filter_map(|s| s["metric"][label].as_str())
            .filter(|v| !v.is_empty())
            .map(String::from)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect(),
        None => series.iter().map(query_result_line).collect(),
    };
    let options = common::dashboards::variable_options(var, &items)?;
    if options.is_empty() {
        return Err(format!("{}: {promql} returned no values", d.name()));
    }
    Ok(options)
}

/// What Grafana keeps for a variable whose query offers nothing: a saved "All", else nothing.
fn value_without_options(var: &Value) -> String {
    let saved_all = var["current"]["value"] == "$__all"
        || var["current"]["value"]
            .as_array()
            .is_some_and(|v| v.iter().any(|v| v == "$__all"));
    if saved_all && var["includeAll"] == true {
        all_value(var, &[])
    } else {
        String::new()
    }
}

/// Grafana's value for an "All" selection: the variable's allValue, else every option as a regex.
fn all_value(var: &Value, options: &[VariableOption]) -> String {
    match var["allValue"].as_str() {
        Some(all) if !all.is_empty() => all.to_string(),
        _ => format!(
            "({})",
            options
                .iter()
                .map(|o| o.value.as_str())
                .collect::<Vec<_>>()
                .join("|")
        ),
    }
}

/// What Grafana selects when the dashboard opens: the saved `current` value when it is All or
/// one of the options, else the first option.
fn first_open_value(var: &Value, options: &[VariableOption]) -> String {
    let current = &var["current"]["value"];
    let saved: Vec<&str> = match current {
        Value::String(s) => vec![s.as_str()],
        Value::Array(list) => list.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    if saved.contains(&"$__all") && var["includeAll"] == true {
        return all_value(var, options);
    }
    match saved.first() {
        Some(v) if options.iter().any(|o| o.value == *v) => v.to_string(),
        _ => options[0].value.clone(),
    }
}

/// How the variables are set for one pass over the dashboards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Selection {
    /// As a newcomer finds them: Grafana's choice on opening the dashboard.
    FirstOpen,
    /// "All" for every variable that offers it, the first-open choice for the others.
    All,
}

/// The outcome of one pass: what failed, what was excused, and how much had data.
#[derive(Default)]
struct Pass {
    failures: Vec<String>,
    excused: Vec<String>,
    empty: Vec<String>,
    panels: usize,
    panels_with_data: usize,
    queries: usize,
    queries_with_data: usize,
    /// (dashboard, panels with data, panels) in file order.
    per_dashboard: Vec<(String, usize, usize)>,
    /// Each dashboard's variables as the picker shows them (names, not uuids).
    selections: Vec<String>,
    /// Panels without any data, as "dashboard: title".
    empty_panels: Vec<String>,
}

impl Pass {
    fn summary(&self, what: &str) -> String {
        let per: Vec<String> = self
            .per_dashboard
            .iter()
            .map(|(d, with, all)| format!("{d} {with}/{all}"))
            .collect();
        format!(
            "{what}: {} of {} panels and {} of {} queries have data ({})",
            self.panels_with_data,
            self.panels,
            self.queries_with_data,
            self.queries,
            per.join(", ")
        )
    }
}

/// Resolves every dashboard's variables for `selection` as Grafana does, then runs every panel
/// query. Empty answers are failures unless `MAY_BE_EMPTY` excuses them here.
async fn run_pass(prometheus: &Prometheus, selection: Selection) -> Pass {
    let mut pass = Pass::default();
    for d in dashboards() {
        // Resolve the variables in order, as Grafana does: each from the values its query
        // offers given the ones before it.
        let mut values = BTreeMap::new();
        let mut shown = Vec::new();
        for var in d.variables() {
            let name = var["name"].as_str().unwrap_or("").to_string();
            let value = match var["type"].as_str() {
                Some("query") => match variable_options(prometheus, &d, var, &values).await {
                    Ok(options) => {
                        // A regex with a text group must show something else than the value.
                        let names = var["regex"].as_str().unwrap_or("").contains("(?<text>");
                        if names && options.iter().all(|o| o.text == o.value) {
                            pass.failures.push(format!(
                                "{}: variable {name} shows values, not names: {options:?}",
                                d.name()
                            ));
                        }
                        let value = if selection == Selection::All && var["includeAll"] == true {
                            all_value(var, &options)
                        } else {
                            first_open_value(var, &options)
                        };
                        let text = options
                            .iter()
                            .find(|o| o.value == value)
                            .map_or("All".to_string(), |o| o.text.clone());
                        shown.push(format!("${name}={text}"));
                        value
                    }
                    Err(e) => {
                        let entry = EMPTY_WHILE_ABSENT
                            .iter()
                            .find(|entry| entry.is_variable(d.uid(), &name));
                        let excuse = match entry {
                            Some(entry) if e.ends_with("returned no values") => {
                                entry.excuse(prometheus).await
                            }
                            _ => Err(String::new()),
                        };
                        match excuse {
                            Ok(reason) => pass
                                .excused
                                .push(format!("{}: variable {name}: {reason}", d.name())),
                            Err(why) => pass
                                .failures
                                .push(format!("{}: variable {name}: {e}{why}", d.name())),
                        }
                        value_without_options(var)
                    }
                },
                Some("datasource") => provisioned_uid(),
                Some("constant") | Some("textbox") | Some("custom") => var["query"]
                    .as_str()
                    .unwrap_or("")
                    .split(',')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_string(),
                Some("interval") => "1m".to_string(),
                other => {
                    pass.failures
                        .push(format!("{}: variable {name}: type {other:?}", d.name()));
                    continue;
                }
            };
            values.insert(name, value);
        }
        let selection = shown.join(" ");
        let (mut panels, mut with_data) = (0, 0);
        for panel in d.panels() {
            let title = panel["title"].as_str().unwrap_or("?").to_string();
            let targets = panel["targets"].as_array().cloned().unwrap_or_default();
            if targets.is_empty() {
                continue; // rows and text panels
            }
            let mut data = false;
            for target in &targets {
                let ref_id = target["refId"].as_str().unwrap_or("?");
                let expr = target["expr"].as_str().unwrap_or("");
                let place = format!(
                    "{}: panel {title:?} target {ref_id} ({selection})",
                    d.name()
                );
                let query = match interpolate(expr, &values) {
                    Ok(query) => query,
                    Err(e) => {
                        pass.failures.push(format!("{place}: {e}: {expr}"));
                        continue;
                    }
                };
                pass.queries += 1;
                match instant_query(prometheus, &query).await {
                    Ok(series) if !series.is_empty() => {
                        pass.queries_with_data += 1;
                        data = true;
                    }
                    Ok(_) => {
                        let absent = EMPTY_WHILE_ABSENT
                            .iter()
                            .find(|entry| entry.is_target(d.uid(), &title, ref_id));
                        let excuse = match absent {
                            Some(entry) => {
                                let excuse = entry.excuse(prometheus).await;
                                if excuse.is_err() {
                                    pass.empty.push(format!("{place}: {query}"));
                                }
                                excuse
                            }
                            None => {
                                pass.empty.push(format!("{place}: {query}"));
                                may_be_empty(prometheus, &d, &title, ref_id, &query).await
                            }
                        };
                        match excuse {
                            Ok(reason) => pass.excused.push(format!("{place}: {reason}")),
                            Err(why) => pass
                                .failures
                                .push(format!("{place}: no series{why}: {query}")),
                        }
                    }
                    Err(e) => pass.failures.push(format!("{place}: {e}: {query}")),
                }
            }
            panels += 1;
            with_data += usize::from(data);
            if !data {
                pass.empty_panels.push(format!("{}: {title:?}", d.uid()));
            }
        }
        pass.selections.push(format!("{}: {selection}", d.uid()));
        pass.panels += panels;
        pass.panels_with_data += with_data;
        pass.per_dashboard
            .push((d.uid().to_string(), with_data, panels));
    }
    pass
}

/// Why an empty answer to `query` (target `ref_id` of panel `panel` of `d`) is acceptable on
/// this machine (`Ok`), or what rules the exception out (`Err`, "" when there is none).
async fn may_be_empty(
    prometheus: &Prometheus,
    d: &Dashboard,
    panel: &str,
    ref_id: &str,
    query: &str,
) -> Result<String, String> {
    let entry = MAY_BE_EMPTY
        .iter()
        .find(|e| e.uid == d.uid() && e.panel == panel && e.ref_id == ref_id)
        .ok_or_else(String::new)?;
    if (entry.expected_here)() {
        return Err(format!(
            ", although this machine has what it reads (MAY_BE_EMPTY: {})",
            entry.reason
        ));
    }
    for (metric, _) in selectors(query) {
        if metric.is_empty() || entry.metrics.contains(&metric.as_str()) {
            continue;
        }
        let probe = format!("group({metric}{{job=\"balena-devices\"}})");
        if !instant_query(prometheus, &probe)
            .await
            .is_ok_and(|series| !series.is_empty())
        {
            return Err(format!(
                ", and {metric}, which MAY_BE_EMPTY does not excuse, has no data"
            ));
        }
    }
    for collector in entry.collectors {
        let probe = format!(
            "node_scrape_collector_success{{job=\"balena-devices\", collector=\"{collector}\"}}"
        );
        if !instant_query(prometheus, &probe)
            .await
            .is_ok_and(|series| !series.is_empty())
        {
            return Err(format!(
                ", and node_exporter's {collector} collector did not run, so the absence is not the hardware's"
            ));
        }
    }
    Ok(format!("allowed to be empty here: {}", entry.reason))
}

/// The flags `examples/device-node-exporter` runs node_exporter with (its Dockerfile's CMD),
/// without `--web.listen-address`, which the test sets.
fn example_node_exporter_flags() -> Vec<String> {
    let path = "examples/device-node-exporter/Dockerfile.template";
    let dockerfile = read(path).replace("\\\n", " ");
    let cmd = dockerfile
        .lines()
        .find_map(|line| line.trim().strip_prefix("CMD "))
        .unwrap_or_else(|| panic!("{path}: no CMD"));
    let flags: Vec<String> = serde_json::from_str(cmd)
        .unwrap_or_else(|e| panic!("{path}: CMD is not a JSON array of strings ({e}): {cmd}"));
    assert!(
        flags.iter().any(|f| f == "--web.listen-address=:80"),
        "{path}: node_exporter must listen on port 80 (the public device URL and SD_LAN_PORT's default)"
    );
    flags
        .into_iter()
        .filter(|f| !f.starts_with("--web.listen-address"))
        .collect()
}

/// Waits until Prometheus has scraped the exporter `exporter_scrapes` times and, when
/// `device_scrapes` > 0, the discovered device that many times with `up` 1: rate() needs two
/// samples in its window.
async fn wait_for_scrapes(prometheus: &Prometheus, exporter_scrapes: f64, device_scrapes: f64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let at_least = |n: f64, rows: Vec<(Value, f64)>| rows.iter().any(|(_, v)| *v >= n);
        if at_least(
            exporter_scrapes,
            prometheus.query("count_over_time(balena_up[1m])").await,
        ) && (device_scrapes == 0.0
            || at_least(
                device_scrapes,
                prometheus
                    .query("sum_over_time(up{job=\"balena-devices\"}[1m])")
                    .await,
            ))
        {
            return;
        }
        if std::time::Instant::now() > deadline {
            let targets = prometheus.api("/api/v1/targets").await;
            panic!("not enough scrapes of the exporter and the devices; targets: {targets:#}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn every_panel_and_variable_query_returns_data() {
    if !common::tools::require(&["prometheus", "prometheus-node-exporter"]) {
        return;
    }
    // The sample account has services (running, exited, restarting, downloading), update
    // statuses (done, downloading with progress, rejected), tags, an offline device with the
    // time it went offline, and, with balenaCloud's fields, coordinates.
    let mut account = Account::sample();
    account.cloud_fields = true;
    assert!(account.devices.iter().any(|d| d.latitude.is_some()));

    // The device the node exporter stands in for: an online device of acme/sensors that
    // reported every hardware value and runs its fleet's target release. It alone has an
    // address, so /sd (lan mode) lists it alone.
    let fleet = account
        .fleets
        .iter()
        .find(|f| f.slug == "acme/sensors")
        .expect("the sample account has acme/sensors")
        .clone();
    assert!(fleet.target_release.is_some());
    let device = account
        .devices
        .iter()
        .find(|d| {
            d.fleet_id == fleet.id
                && d.is_online
                && d.cpu_usage.is_some()
                && d.cpu_temp.is_some()
                && d.memory_total.is_some()
                && d.storage_total.is_some()
                && d.last_connectivity_event.is_some()
                && d.running_release.as_ref().map(|r| r.id)
                    == fleet.target_release.as_ref().map(|r| r.id)
                && d.pinned_release.is_none()
        })
        .expect("an online device of acme/sensors with hardware values on the target release")
        .clone();
    for d in &mut account.devices {
        d.ip_address = (d.uuid == device.uuid).then(|| "127.0.0.2".to_string());
    }

    // The stand-in device: Debian's node exporter on 127.0.0.2, as a device on the LAN, with
    // the example's flags.
    let port = std::net::TcpListener::bind("127.0.0.2:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let flags = example_node_exporter_flags();
    let mut node = quiet(
        std::process::Command::new("prometheus-node-exporter")
            .args(&flags)
            .arg(format!("--web.listen-address=127.0.0.2:{port}")),
        "prometheus-node-exporter (Debian package; scripts/test installs it)",
    );

    let (_fake, exporter) = start_ready(
        account,
        &[("SD_MODE", "lan"), ("SD_LAN_PORT", &port.to_string())],
    )
    .await;
    let prometheus = Prometheus::shipped(exporter.url.trim_start_matches("http://"));
    // With a scrape a second: five of the exporter, three of the device (Prometheus passes
    // discovered targets on to scraping every 5 s, so the device's scrapes start later).
    wait_for_scrapes(&prometheus, 5.0, 3.0).await;
    if let Some(status) = node.0.try_wait().unwrap() {
        panic!("prometheus-node-exporter exited ({status}); the example's flags: {flags:?}");
    }

    let mut failures = Vec::new();
    let mut checked = 0;
    for (selection, what) in [
        (Selection::FirstOpen, "first open"),
        (Selection::All, "All selected"),
    ] {
        let pass = run_pass(&prometheus, selection).await;
        eprintln!("{}", pass.summary(what));
        eprintln!("{what}: {}", pass.selections.join("; "));
        for line in &pass.excused {
            eprintln!("{line}");
        }
        checked += pass.queries;
        failures.extend(pass.failures);
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} queries or variables failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(checked > 0, "no queries were checked");
    exporter.stop().await.unwrap();
}

/// What a newcomer sees on `--demo` (`balena_exporter::demo`, no balena account, no device
/// exporters): every query answers, the device picker opens on a device that fills the device
/// dashboard, and the counts of panels with data, printed for comparison. Which other panels
/// have data depends on the minute (the demo's devices fail, update and go offline by turns),
/// and the node dashboard has nothing to show without discovered devices (its text panel says
/// what to run): those are reported, not asserted.
#[tokio::test]
async fn first_open_in_demo_mode() {
    if !common::tools::require(&["prometheus"]) {
        return;
    }
    let api = balena_exporter::demo::start().await.unwrap();
    let exporter =
        Exporter::start(&format!("http://{api}"), balena_exporter::demo::TOKEN, &[]).await;
    exporter.wait_ready().await;
    let prometheus = Prometheus::shipped(exporter.url.trim_start_matches("http://"));
    wait_for_scrapes(&prometheus, 5.0, 0.0).await;

    let pass = run_pass(&prometheus, Selection::FirstOpen).await;
    eprintln!("{}", pass.summary("demo mode, first open"));
    eprintln!("demo mode, first open: {}", pass.selections.join("; "));
    eprintln!(
        "demo mode, first open, panels without data: {}",
        pass.empty_panels.join(", ")
    );
    let errors: Vec<&String> = pass
        .failures
        .iter()
        .filter(|f| !f.contains("no series") && !f.contains("returned no values"))
        .collect();
    assert!(
        errors.is_empty(),
        "queries failed in demo mode: {errors:#?}"
    );
    let device_empty: Vec<&String> = pass
        .empty
        .iter()
        .filter(|e| e.contains("(balena-device,"))
        .collect();
    assert!(
        device_empty.is_empty(),
        "the device dashboard opens on a device that leaves panels empty: {device_empty:#?}"
    );
    exporter.stop().await.unwrap();
}
