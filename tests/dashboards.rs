//! The Grafana dashboards in `grafana/dashboards/`, checked two ways:
//!
//! - statically: each file parses, uids are unique, every panel and target queries the
//!   datasource that `grafana/provisioning/datasources/prometheus.yml` provisions, every template
//!   variable a query uses is defined, every `balena_*` metric is one the README documents, every
//!   selector of the device dashboards (node_exporter on the discovered devices) is limited to the
//!   `balena-devices` job and the chosen fleets and devices, and the provisioning and the
//!   Dockerfile agree on where the dashboards live;
//! - live: the fake balena API, the exporter in `SD_MODE=lan`, a real `prometheus-node-exporter`
//!   standing in for a device on 127.0.0.2 (with the flags of `examples/device-node-exporter`),
//!   and a real `prometheus` running the shipped `prometheus/prometheus.yml`, which scrapes the
//!   exporter and discovers the device through `/sd`. Then every panel query and every variable
//!   query, with the variables filled in as Grafana would, must return at least one series;
//!   the only exceptions are the few in `MAY_BE_EMPTY` (sensors a virtual machine lacks), each
//!   checked to be empty for that reason only.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde_json::Value;

use common::exporter::Exporter;
use common::fake::{Account, FakeBalena};
use common::prometheus::Prometheus;

const TOKEN: &str = "sample-token";

/// The dashboards the app ships, by uid; other links and docs point at these.
const EXPECTED_UIDS: &[&str] = &[
    "balena-fleets",
    "balena-device",
    "balena-exporter",
    "balena-node",
];

/// Dashboards of the metrics scraped from the devices themselves (job `balena-devices`, found
/// through the exporter's `/sd`). Every selector in them must carry `DEVICE_MATCHERS`, so a panel
/// never mixes in another job's series or devices outside the chosen fleets and devices.
const DEVICE_DASHBOARDS: &[&str] = &["balena-node"];
const DEVICE_MATCHERS: &[&str] = &[
    "job=\"balena-devices\"",
    "fleet_slug=~\"$fleet\"",
    "uuid=~\"$device\"",
];

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

/// What the test puts in for Grafana's built-in variables.
const BUILTINS: &[(&str, &str)] = &[
    ("__rate_interval", "30s"),
    ("__interval", "15s"),
    ("__interval_ms", "15000"),
    ("__range", "5m"),
    ("__range_s", "300"),
    ("__range_ms", "300000"),
];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

// ------------------------------------------------------------------------------ model

struct Dashboard {
    file: String,
    json: Value,
}

impl Dashboard {
    fn uid(&self) -> &str {
        self.json["uid"].as_str().unwrap_or("")
    }

    fn name(&self) -> String {
        format!(
            "{} ({}, {})",
            self.json["title"].as_str().unwrap_or("?"),
            self.uid(),
            self.file
        )
    }

    /// Every panel, rows and the panels nested in (collapsed) rows included.
    fn panels(&self) -> Vec<&Value> {
        fn walk<'a>(list: &'a Value, out: &mut Vec<&'a Value>) {
            for panel in list.as_array().into_iter().flatten() {
                out.push(panel);
                walk(&panel["panels"], out);
            }
        }
        let mut out = Vec::new();
        walk(&self.json["panels"], &mut out);
        out
    }

    fn variables(&self) -> Vec<&Value> {
        self.json["templating"]["list"]
            .as_array()
            .map(|list| list.iter().collect())
            .unwrap_or_default()
    }

    /// (panel title, refId, expr) of every target of every panel.
    fn queries(&self) -> Vec<(String, String, String)> {
        let mut out = Vec::new();
        for panel in self.panels() {
            for target in panel["targets"].as_array().into_iter().flatten() {
                out.push((
                    panel["title"].as_str().unwrap_or("?").to_string(),
                    target["refId"].as_str().unwrap_or("?").to_string(),
                    target["expr"].as_str().unwrap_or("").to_string(),
                ));
            }
        }
        out
    }
}

fn is_row(panel: &Value) -> bool {
    panel["type"] == "row"
}

/// The query of a query variable: a plain string, or `{"query": "..."}` as newer Grafana saves it.
fn variable_query(var: &Value) -> Option<&str> {
    var["query"]
        .as_str()
        .or_else(|| var["query"]["query"].as_str())
}

fn dashboards() -> Vec<Dashboard> {
    let dir = repo().join("grafana/dashboards");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no dashboards in {}", dir.display());
    files
        .into_iter()
        .map(|path| {
            let file = format!(
                "grafana/dashboards/{}",
                path.file_name().unwrap().to_string_lossy()
            );
            let text = std::fs::read_to_string(&path).unwrap();
            let json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
            Dashboard { file, json }
        })
        .collect()
}

/// The uid of the datasource that Grafana provisions, by a line scan of the YAML file.
fn provisioned_uid() -> String {
    let path = "grafana/provisioning/datasources/prometheus.yml";
    let uids: Vec<String> = read(path)
        .lines()
        .map(|line| line.trim().trim_start_matches("- ").trim())
        .filter_map(|line| line.strip_prefix("uid:"))
        .map(|value| value.trim().trim_matches(['"', '\'']).to_string())
        .collect();
    assert_eq!(
        uids.len(),
        1,
        "{path}: expected exactly one uid, found {uids:?}"
    );
    assert!(!uids[0].is_empty(), "{path}: empty uid");
    uids[0].clone()
}

/// The value of the first `key:` line of a YAML file, without quotes.
fn yaml_value(path: &str, key: &str) -> String {
    read(path)
        .lines()
        .map(|line| line.trim().trim_start_matches("- ").trim())
        .find_map(|line| line.strip_prefix(&format!("{key}:")))
        .map(|value| value.trim().trim_matches(['"', '\'']).to_string())
        .unwrap_or_else(|| panic!("{path}: no {key}:"))
}

// ------------------------------------------------------------------------- variables

/// A reference to a template variable in a query: `$name`, `${name}`, `${name:format}` or
/// `[[name]]`, as (byte range in the text, name).
fn variable_refs(text: &str) -> Vec<(std::ops::Range<usize>, String)> {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut out = Vec::new();
    let mut i = 0;
    while i < text.len() {
        let rest = &text[i..];
        if let Some(inner) = rest.strip_prefix("${") {
            if let Some(end) = inner.find('}') {
                let name = inner[..end].split(':').next().unwrap_or("");
                out.push((i..i + 2 + end + 1, name.to_string()));
                i += 2 + end + 1;
                continue;
            }
        } else if let Some(inner) = rest.strip_prefix("[[") {
            if let Some(end) = inner.find("]]") {
                let name = inner[..end].split(':').next().unwrap_or("");
                out.push((i..i + 2 + end + 2, name.to_string()));
                i += 2 + end + 2;
                continue;
            }
        } else if let Some(inner) = rest.strip_prefix('$') {
            let len = inner.find(|c: char| !is_ident(c)).unwrap_or(inner.len());
            if len > 0 {
                out.push((i..i + 1 + len, inner[..len].to_string()));
                i += 1 + len;
                continue;
            }
        }
        i += rest.chars().next().unwrap().len_utf8();
    }
    out
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

/// Splits `label_values(selector, label)` (or `label_values(label)`) into its parts.
fn label_values(query: &str) -> Option<(String, String)> {
    let inner = query
        .trim()
        .strip_prefix("label_values(")?
        .strip_suffix(')')?;
    let mut depth = 0;
    let mut split = None;
    for (i, c) in inner.char_indices() {
        match c {
            '(' | '{' | '[' => depth += 1,
            ')' | '}' | ']' => depth -= 1,
            ',' if depth == 0 => split = Some(i),
            _ => {}
        }
    }
    Some(match split {
        Some(i) => (
            inner[..i].trim().to_string(),
            inner[i + 1..].trim().to_string(),
        ),
        None => {
            let label = inner.trim().to_string();
            (format!("{{{label}=~\".+\"}}"), label)
        }
    })
}

/// The PromQL a variable query runs, and the label whose values it offers (None: the query
/// offers whole series, as `query_result` does).
fn variable_promql(query: &str) -> Result<(String, Option<String>), String> {
    if let Some((selector, label)) = label_values(query) {
        return Ok((selector, Some(label)));
    }
    if let Some(expr) = query
        .trim()
        .strip_prefix("query_result(")
        .and_then(|q| q.strip_suffix(')'))
    {
        return Ok((expr.to_string(), None));
    }
    Err(format!("unsupported variable query {query:?}"))
}

// ---------------------------------------------------------------------------- static

#[test]
fn dashboards_parse_with_unique_uids() {
    let dashboards = dashboards();
    let mut seen = BTreeMap::new();
    for d in &dashboards {
        assert!(!d.uid().is_empty(), "{}: no uid", d.file);
        assert!(
            d.json["title"].as_str().is_some_and(|t| !t.is_empty()),
            "{}: no title",
            d.file
        );
        if let Some(other) = seen.insert(d.uid().to_string(), d.file.clone()) {
            panic!("uid {} in both {other} and {}", d.uid(), d.file);
        }
        assert!(
            d.json.get("id").is_none_or(Value::is_null),
            "{}: a provisioned dashboard must not carry a database id",
            d.file
        );
        let mut ids = BTreeSet::new();
        let mut titles = BTreeSet::new();
        for panel in d.panels() {
            // Titles name the panel in failures here and in Grafana's search: one each.
            if !is_row(panel) {
                let title = panel["title"].as_str().unwrap_or("");
                assert!(
                    !title.is_empty() && titles.insert(title.to_string()),
                    "{}: panel title {title:?} is empty or repeated",
                    d.name()
                );
            }
            let id = panel["id"]
                .as_u64()
                .unwrap_or_else(|| panic!("{}: panel {} has no id", d.name(), panel["title"]));
            assert!(ids.insert(id), "{}: panel id {id} twice", d.name());
            assert!(
                panel["gridPos"]["w"].as_u64().is_some(),
                "{}: panel {} has no gridPos",
                d.name(),
                panel["title"]
            );
        }
    }
    for uid in EXPECTED_UIDS {
        assert!(seen.contains_key(*uid), "no dashboard with uid {uid}");
    }
}

/// Whether `ds` (a panel's, target's or variable's `datasource`) is the provisioned Prometheus,
/// directly or through a datasource variable of the dashboard.
fn datasource_ok(d: &Dashboard, ds: &Value, uid: &str) -> bool {
    let reference = match ds {
        Value::Object(o) => {
            if o.get("type").is_some_and(|t| t != "prometheus") {
                return false;
            }
            o.get("uid").and_then(Value::as_str).unwrap_or("")
        }
        Value::String(s) => s.as_str(),
        _ => return false,
    };
    if reference == uid {
        return true;
    }
    // "${ds}" or "$ds": a datasource variable limited to Prometheus, whose default is ours.
    let refs = variable_refs(reference);
    if refs.len() != 1 || refs[0].0 != (0..reference.len()) {
        return false;
    }
    d.variables().iter().any(|v| {
        v["name"] == refs[0].1.as_str()
            && v["type"] == "datasource"
            && v["query"] == "prometheus"
            && (v["current"]["value"] == uid || v["current"]["value"].is_null())
    })
}

#[test]
fn every_panel_and_target_uses_the_provisioned_datasource() {
    let uid = provisioned_uid();
    for d in dashboards() {
        for panel in d.panels() {
            let title = panel["title"].as_str().unwrap_or("?");
            if is_row(panel) {
                // A row draws nothing; if it names a datasource (for repeats), it must be ours.
                if !panel["datasource"].is_null() {
                    assert!(
                        datasource_ok(&d, &panel["datasource"], &uid),
                        "{}: row {title:?}: datasource {}",
                        d.name(),
                        panel["datasource"]
                    );
                }
                continue;
            }
            assert!(
                datasource_ok(&d, &panel["datasource"], &uid),
                "{}: panel {title:?}: datasource {} is not the provisioned {uid:?}",
                d.name(),
                panel["datasource"]
            );
            let targets = panel["targets"].as_array().cloned().unwrap_or_default();
            assert!(
                !targets.is_empty(),
                "{}: panel {title:?} has no targets",
                d.name()
            );
            let mut ref_ids = BTreeSet::new();
            for target in &targets {
                let ref_id = target["refId"].as_str().unwrap_or("");
                assert!(
                    !ref_id.is_empty() && ref_ids.insert(ref_id.to_string()),
                    "{}: panel {title:?}: missing or repeated refId {ref_id:?}",
                    d.name()
                );
                assert!(
                    datasource_ok(&d, &target["datasource"], &uid),
                    "{}: panel {title:?} target {ref_id}: datasource {} is not the provisioned {uid:?}",
                    d.name(),
                    target["datasource"]
                );
                assert!(
                    target["expr"]
                        .as_str()
                        .is_some_and(|e| !e.trim().is_empty()),
                    "{}: panel {title:?} target {ref_id}: no expr",
                    d.name()
                );
            }
        }
        for var in d.variables() {
            if var["type"] == "query" {
                assert!(
                    datasource_ok(&d, &var["datasource"], &uid),
                    "{}: variable {}: datasource {} is not the provisioned {uid:?}",
                    d.name(),
                    var["name"],
                    var["datasource"]
                );
            }
        }
    }
}

#[test]
fn every_variable_used_is_defined() {
    for d in dashboards() {
        let mut defined = BTreeSet::new();
        for var in d.variables() {
            let name = var["name"].as_str().unwrap_or("");
            assert!(!name.is_empty(), "{}: a variable has no name", d.name());
            assert!(
                defined.insert(name.to_string()),
                "{}: ${name} twice",
                d.name()
            );
        }
        let mut texts: Vec<(String, String)> = d
            .queries()
            .into_iter()
            .map(|(panel, ref_id, expr)| (format!("panel {panel:?} target {ref_id}"), expr))
            .collect();
        for var in d.variables() {
            if let Some(query) = variable_query(var) {
                texts.push((format!("variable {}", var["name"]), query.to_string()));
            }
        }
        for (place, text) in texts {
            for (_, name) in variable_refs(&text) {
                let builtin = BUILTINS.iter().any(|(b, _)| *b == name);
                assert!(
                    builtin || defined.contains(&name),
                    "{}: {place} uses ${name}, which the dashboard does not define: {text}",
                    d.name()
                );
            }
        }
        for var in d.variables() {
            if var["type"] == "query" {
                let query = variable_query(var).unwrap_or_else(|| {
                    panic!("{}: variable {} has no query", d.name(), var["name"])
                });
                variable_promql(query).unwrap_or_else(|e| panic!("{}: {e}", d.name()));
            }
        }
    }
}

/// Metric names (`balena_*`, `process_*`) in a PromQL text.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut out = BTreeSet::new();
    for prefix in ["balena_", "process_"] {
        for (start, _) in expr.match_indices(prefix) {
            if expr[..start].chars().next_back().is_some_and(is_ident) {
                continue;
            }
            let rest = &expr[start..];
            let len = rest.find(|c: char| !is_ident(c)).unwrap_or(rest.len());
            out.insert(rest[..len].to_string());
        }
    }
    out
}

/// The index just past the string literal that starts at `start` (`"`, `'` or `` ` ``).
fn skip_string(chars: &[char], start: usize) -> usize {
    let quote = chars[start];
    let mut i = start + 1;
    while i < chars.len() && chars[i] != quote {
        if chars[i] == '\\' && quote != '`' {
            i += 1;
        }
        i += 1;
    }
    i + 1
}

/// The index of the bracket closing the one at `open`, skipping string literals.
fn closing(chars: &[char], open: usize) -> usize {
    let (left, right) = match chars[open] {
        '(' => ('(', ')'),
        '{' => ('{', '}'),
        _ => ('[', ']'),
    };
    let mut depth = 0;
    let mut i = open;
    while i < chars.len() {
        match chars[i] {
            '"' | '\'' | '`' => {
                i = skip_string(chars, i);
                continue;
            }
            c if c == left => depth += 1,
            c if c == right => {
                depth -= 1;
                if depth == 0 {
                    return i;
                }
            }
            _ => {}
        }
        i += 1;
    }
    chars.len()
}

/// The vector selectors of a PromQL text, as (metric name, its label matchers split at the
/// commas; empty without braces). Function and aggregation names (followed by `(`), keywords,
/// the label lists of `by`/`without`/`on`/`ignoring`/`group_left`/`group_right`, numbers,
/// strings and range or subquery brackets are not selectors.
fn selectors(expr: &str) -> Vec<(String, Vec<String>)> {
    const KEYWORDS: &[&str] = &["and", "or", "unless", "bool", "offset", "atan2"];
    const LABEL_LISTS: &[&str] = &[
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    let chars: Vec<char> = expr.chars().collect();
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let split = |inner: &[char]| -> Vec<String> {
        let mut out = Vec::new();
        let mut start = 0;
        let mut i = 0;
        while i < inner.len() {
            match inner[i] {
                '"' | '\'' | '`' => {
                    i = skip_string(inner, i);
                    continue;
                }
                ',' => {
                    out.push(inner[start..i].iter().collect::<String>());
                    start = i + 1;
                }
                _ => {}
            }
            i += 1;
        }
        out.push(inner[start.min(inner.len())..].iter().collect::<String>());
        out.into_iter()
            .map(|m| m.trim().to_string())
            .filter(|m| !m.is_empty())
            .collect()
    };
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            i = skip_string(&chars, i);
        } else if c == '[' {
            i = closing(&chars, i) + 1;
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            while i < chars.len() && (is_ident(chars[i]) || chars[i] == '.') {
                i += 1;
            }
        } else if c == '{' {
            let end = closing(&chars, i);
            out.push((String::new(), split(&chars[i + 1..end.min(chars.len())])));
            i = end + 1;
        } else if is_ident(c) {
            let start = i;
            while i < chars.len() && is_ident(chars[i]) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let mut next = i;
            while next < chars.len() && chars[next].is_whitespace() {
                next += 1;
            }
            let followed_by = chars.get(next).copied();
            // `sum by (label) (...)`: an aggregation whose label list comes first.
            let word_after: String = chars[next..].iter().take_while(|c| is_ident(**c)).collect();
            if LABEL_LISTS.contains(&word.as_str()) {
                if followed_by == Some('(') {
                    i = closing(&chars, next) + 1;
                }
            } else if KEYWORDS.contains(&word.as_str())
                || followed_by == Some('(')
                || word_after == "by"
                || word_after == "without"
            {
                // A keyword, or a function or aggregation: its argument list is scanned next.
            } else if followed_by == Some('{') {
                let end = closing(&chars, next);
                out.push((word, split(&chars[next + 1..end.min(chars.len())])));
                i = end + 1;
            } else {
                out.push((word, Vec::new()));
            }
        } else {
            i += 1;
        }
    }
    out
}

#[test]
fn selectors_are_found_as_prometheus_reads_them() {
    let found = selectors(
        "1 - avg by (uuid, instance) (rate(node_cpu_seconds_total{job=\"a\", mode=\"idle\"}[5m])) \
         + sum(node_load5) without (cpu) / count without(mode) (x) \
         unless on(uuid) group_left(device_name) up{x=~\"a,b}\"} * 1e3 + node_load1 offset 1m",
    );
    assert_eq!(
        found,
        vec![
            (
                "node_cpu_seconds_total".to_string(),
                vec!["job=\"a\"".to_string(), "mode=\"idle\"".to_string()]
            ),
            ("node_load5".to_string(), vec![]),
            ("x".to_string(), vec![]),
            ("up".to_string(), vec!["x=~\"a,b}\"".to_string()]),
            ("node_load1".to_string(), vec![]),
        ]
    );
}

#[test]
fn device_dashboards_select_only_the_chosen_devices() {
    let dashboards = dashboards();
    for uid in DEVICE_DASHBOARDS {
        let d = dashboards
            .iter()
            .find(|d| d.uid() == *uid)
            .unwrap_or_else(|| panic!("no dashboard with uid {uid}"));
        let texts: Vec<(String, String)> = d
            .queries()
            .into_iter()
            .map(|(panel, ref_id, expr)| (format!("panel {panel:?} target {ref_id}"), expr))
            .collect();
        // The device variable lists only devices of the chosen fleets, and both list only
        // targets of the devices job.
        for var in d.variables() {
            let name = var["name"].as_str().unwrap_or("");
            let query = variable_query(var).unwrap_or("");
            assert!(
                query.contains(DEVICE_MATCHERS[0]),
                "{}: variable {name} is not limited to the balena-devices job: {query}",
                d.name()
            );
            if name == "device" {
                assert!(
                    query.contains(DEVICE_MATCHERS[1]),
                    "{}: variable device is not limited to the chosen fleets: {query}",
                    d.name()
                );
            }
            assert!(
                var["multi"] == true && var["includeAll"] == true && var["allValue"] == ".*",
                "{}: variable {name}: expected multi-value with All (.*)",
                d.name()
            );
        }
        for (place, expr) in texts {
            let found = selectors(&expr);
            assert!(
                !found.is_empty(),
                "{}: {place}: no selector in {expr}",
                d.name()
            );
            for (metric, matchers) in found {
                for required in DEVICE_MATCHERS {
                    assert!(
                        matchers.iter().any(|m| m == required),
                        "{}: {place}: {metric} lacks {required}: {expr}",
                        d.name()
                    );
                }
            }
        }
    }
}

#[test]
fn may_be_empty_entries_name_existing_queries_and_their_metrics() {
    let dashboards = dashboards();
    for entry in MAY_BE_EMPTY {
        let d = dashboards
            .iter()
            .find(|d| d.uid() == entry.uid)
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
}

#[test]
fn every_metric_is_documented_in_the_readme() {
    let readme = read("README.md");
    for d in dashboards() {
        let mut texts: Vec<String> = d.queries().into_iter().map(|(_, _, e)| e).collect();
        texts.extend(
            d.variables()
                .iter()
                .filter_map(|v| variable_query(v).map(String::from)),
        );
        for text in texts {
            for name in metric_names(&text) {
                let documented = if name.starts_with("process_") {
                    readme.contains("`process_*`")
                } else {
                    readme.contains(&format!("`{name}`"))
                };
                assert!(
                    documented,
                    "{}: {name} is not in the README's metrics table: {text}",
                    d.name()
                );
            }
        }
    }
}

#[test]
fn the_image_puts_the_dashboards_where_the_provider_reads_them() {
    let dockerfile = read("grafana/Dockerfile.template");
    let copy_destination = |source: &str| {
        dockerfile
            .lines()
            .map(str::trim)
            .filter_map(|line| line.strip_prefix("COPY "))
            .map(|args| args.split_whitespace().collect::<Vec<_>>())
            .find(|args| args.first() == Some(&source))
            .and_then(|args| args.last().map(|d| d.trim_end_matches('/').to_string()))
            .unwrap_or_else(|| panic!("grafana/Dockerfile.template: no COPY {source}"))
    };
    assert_eq!(
        copy_destination("provisioning/"),
        "/etc/grafana/provisioning"
    );
    let provider = yaml_value("grafana/provisioning/dashboards/balena.yml", "path");
    assert_eq!(
        copy_destination("dashboards/"),
        provider.trim_end_matches('/'),
        "the dashboard provider's path is not where the Dockerfile copies the dashboards"
    );
    let from = dockerfile
        .lines()
        .find_map(|line| line.trim().strip_prefix("FROM "))
        .expect("grafana/Dockerfile.template: no FROM");
    let tag = from.rsplit_once(':').map(|(_, tag)| tag).unwrap_or("");
    assert!(
        tag.split('.').count() == 3 && tag.split('.').all(|n| n.parse::<u32>().is_ok()),
        "grafana/Dockerfile.template: FROM {from} is not pinned to a full version"
    );
}

// ------------------------------------------------------------------------------ live

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

/// What a variable offers: the distinct values of its label in what its query returns.
async fn variable_options(
    prometheus: &Prometheus,
    d: &Dashboard,
    var: &Value,
    values: &BTreeMap<String, String>,
) -> Result<Vec<String>, String> {
    let query = variable_query(var).ok_or("no query")?;
    let (promql, label) = variable_promql(query)?;
    let promql = interpolate(&promql, values)?;
    let series = instant_query(prometheus, &promql)
        .await
        .map_err(|e| format!("{promql}: {e}"))?;
    let options: BTreeSet<String> = series
        .iter()
        .map(|s| match &label {
            Some(label) => s["metric"][label].as_str().unwrap_or("").to_string(),
            None => s["metric"].to_string(),
        })
        .filter(|v| !v.is_empty())
        .collect();
    if options.is_empty() {
        return Err(format!("{}: {promql} returned no values", d.name()));
    }
    Ok(options.into_iter().collect())
}

/// Grafana's value for an "All" selection: the variable's allValue, else every option as a regex.
fn all_value(var: &Value, options: &[String]) -> String {
    match var["allValue"].as_str() {
        Some(all) if !all.is_empty() => all.to_string(),
        _ => format!("({})", options.join("|")),
    }
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

/// A node exporter killed when dropped.
struct NodeExporter(std::process::Child);

impl Drop for NodeExporter {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
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

#[tokio::test]
async fn every_panel_and_variable_query_returns_data() {
    let mut account = Account::sample();

    // The fleet and device to show: a fleet with a target release, and a device of it that
    // reported every hardware value. That device is also the one the node exporter stands in
    // for: it alone has an address, so /sd (lan mode) lists it alone.
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
    let preferred: BTreeMap<&str, &str> = [
        ("fleet", fleet.slug.as_str()),
        ("device", device.uuid.as_str()),
    ]
    .into();

    // The stand-in device: Debian's node exporter on 127.0.0.2, as a device on the LAN, with
    // the example's flags.
    let port = std::net::TcpListener::bind("127.0.0.2:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let flags = example_node_exporter_flags();
    let mut node = NodeExporter(
        std::process::Command::new("prometheus-node-exporter")
            .args(&flags)
            .arg(format!("--web.listen-address=127.0.0.2:{port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("prometheus-node-exporter (Debian package; scripts/test installs it)"),
    );

    let fake = FakeBalena::start(account).await;
    let exporter = Exporter::start(
        &fake.url(),
        TOKEN,
        &[("SD_MODE", "lan"), ("SD_LAN_PORT", &port.to_string())],
    )
    .await;
    exporter.wait_ready().await;
    let prometheus = Prometheus::shipped(exporter.url.trim_start_matches("http://"), "");

    // rate() needs two samples in its window; with a scrape a second, wait for five of the
    // exporter and three successful ones of the device (Prometheus passes discovered targets
    // on to scraping every 5 s, so the device's scrapes start later).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        if let Some(status) = node.0.try_wait().unwrap() {
            panic!("prometheus-node-exporter exited ({status}); the example's flags: {flags:?}");
        }
        let at_least = |n: f64, rows: Vec<(Value, f64)>| rows.iter().any(|(_, v)| *v >= n);
        if at_least(
            5.0,
            prometheus.query("count_over_time(balena_up[1m])").await,
        ) && at_least(
            3.0,
            prometheus
                .query("sum_over_time(up{job=\"balena-devices\"}[1m])")
                .await,
        ) {
            break;
        }
        if std::time::Instant::now() > deadline {
            let targets = prometheus.api("/api/v1/targets").await;
            panic!("not enough scrapes of the exporter and the device; targets: {targets:#}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    let mut failures = Vec::new();
    let mut excused = Vec::new();
    let mut checked = 0;
    for d in dashboards() {
        // Resolve the variables in order, as Grafana does: each from the values its query
        // offers given the ones before it. Two selections: one value each, then "All" for the
        // variables that offer it.
        for all in [false, true] {
            let mut values = BTreeMap::new();
            for var in d.variables() {
                let name = var["name"].as_str().unwrap_or("").to_string();
                let value = match var["type"].as_str() {
                    Some("query") => match variable_options(&prometheus, &d, var, &values).await {
                        Ok(options) if all && var["includeAll"] == true => all_value(var, &options),
                        Ok(options) => match preferred.get(name.as_str()) {
                            Some(p) if options.iter().any(|o| o == p) => p.to_string(),
                            Some(p) => {
                                failures.push(format!(
                                    "{}: variable {name} does not offer {p}: {options:?}",
                                    d.name()
                                ));
                                p.to_string()
                            }
                            None => options[0].clone(),
                        },
                        Err(e) => {
                            failures.push(format!("{}: variable {name}: {e}", d.name()));
                            continue;
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
                        failures.push(format!("{}: variable {name}: type {other:?}", d.name()));
                        continue;
                    }
                };
                values.insert(name, value);
            }
            let selection = values
                .iter()
                .map(|(k, v)| format!("${k}={v}"))
                .collect::<Vec<_>>()
                .join(" ");
            for (panel, ref_id, expr) in d.queries() {
                let place = format!(
                    "{}: panel {panel:?} target {ref_id} ({selection})",
                    d.name()
                );
                let query = match interpolate(&expr, &values) {
                    Ok(query) => query,
                    Err(e) => {
                        failures.push(format!("{place}: {e}: {expr}"));
                        continue;
                    }
                };
                checked += 1;
                match instant_query(&prometheus, &query).await {
                    Ok(series) if !series.is_empty() => {}
                    Ok(_) => match may_be_empty(&prometheus, &d, &panel, &ref_id, &query).await {
                        Ok(reason) => excused.push(format!("{place}: {reason}")),
                        Err(why) => failures.push(format!("{place}: no series{why}: {query}")),
                    },
                    Err(e) => failures.push(format!("{place}: {e}: {query}")),
                }
            }
        }
    }
    for line in &excused {
        eprintln!("{line}");
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} queries failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(checked > 0, "no queries were checked");
    exporter.stop().await.unwrap();
}
