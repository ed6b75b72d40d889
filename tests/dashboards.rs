//! The Grafana dashboards in `grafana/dashboards/`, checked two ways:
//!
//! - statically: each file parses, uids are unique, every panel and target queries the
//!   datasource that `grafana/provisioning/datasources/prometheus.yml` provisions, every template
//!   variable a query uses is defined, every metric is one the README documents, and the
//!   provisioning and the Dockerfile agree on where the dashboards live;
//! - live: the fake balena API, the exporter and a real `prometheus` scraping it, then every
//!   panel query and every variable query, with the variables filled in as Grafana would, must
//!   return at least one series.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde_json::Value;

use common::exporter::{wait_for, Exporter};
use common::fake::{Account, FakeBalena};
use common::prometheus::Prometheus;

const TOKEN: &str = "sample-token";

/// The dashboards the app ships, by uid; other links and docs point at these.
const EXPECTED_UIDS: &[&str] = &["balena-fleets", "balena-device", "balena-exporter"];

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

#[tokio::test]
async fn every_panel_and_variable_query_returns_data() {
    let account = Account::sample();
    let fake = FakeBalena::start(account.clone()).await;
    let exporter = Exporter::start(&fake.url(), TOKEN, &[]).await;
    exporter.wait_ready().await;
    let prometheus = Prometheus::start(exporter.url.trim_start_matches("http://"));
    wait_for("prometheus to scrape the exporter", || async {
        !prometheus.query("balena_up").await.is_empty()
    })
    .await;
    // rate() needs two samples in its window; with a scrape a second, wait for five.
    wait_for("five scrapes of the exporter", || async {
        prometheus
            .query("count_over_time(balena_up[1m])")
            .await
            .iter()
            .any(|(_, v)| *v >= 5.0)
    })
    .await;

    // The fleet and device to show: a fleet with a target release, and a device of it that
    // reported every hardware value.
    let fleet = account
        .fleets
        .iter()
        .find(|f| f.slug == "acme/sensors")
        .expect("the sample account has acme/sensors");
    assert!(fleet.target_release.is_some());
    let device = account
        .devices
        .iter()
        .find(|d| {
            d.fleet_id == fleet.id
                && d.cpu_usage.is_some()
                && d.cpu_temp.is_some()
                && d.memory_total.is_some()
                && d.storage_total.is_some()
                && d.last_connectivity_event.is_some()
                && d.running_release.as_ref().map(|r| r.id)
                    == fleet.target_release.as_ref().map(|r| r.id)
                && d.pinned_release.is_none()
        })
        .expect("a device of acme/sensors with hardware values on the target release");
    let preferred: BTreeMap<&str, &str> = [
        ("fleet", fleet.slug.as_str()),
        ("device", device.uuid.as_str()),
    ]
    .into();

    let mut failures = Vec::new();
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
                    Ok(_) => failures.push(format!("{place}: no series: {query}")),
                    Err(e) => failures.push(format!("{place}: {e}: {query}")),
                }
            }
        }
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
