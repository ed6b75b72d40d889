//! The static lints of the Grafana dashboards in `grafana/dashboards/`: what the files say,
//! checked without running anything.
//!
//! Each file parses, uids are unique, every panel and target queries the datasource that
//! `grafana/provisioning/datasources/prometheus.yml` provisions, every template variable a query
//! uses is defined, every `balena_*` metric is one the README documents, every selector of the
//! device dashboards (node_exporter on the discovered devices) is limited to the
//! `balena-devices` job and the chosen fleets and devices, and the provisioning and the
//! Dockerfile agree on where the dashboards live. For a newcomer: every panel has a title and a
//! description, panels do not overlap, every dashboard links to the others, links between
//! dashboards name existing dashboards and variables, device pickers show names (a regex with
//! named `text` and `value` groups that the tests can run), and a dashboard that reads an
//! optional family says what turns it on. No query uses the definitions issue 18 replaced
//! (offline as all minus online or as heartbeat offline, updating or failing as a status
//! matcher), and Grafana opens on the fleet overview, which lists the alerts firing now. The
//! live check of every query is in
//! `dashboards_live.rs`.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use common::dashboards::{
    dashboards, explanations, is_row, is_text, provisioned_uid, read, variable_query, with_uid,
    yaml_values, Dashboard, JsRegex, BUILTINS,
};
use common::promql::{metric_names, selectors, variable_promql, variable_refs};

/// The dashboards the app ships, by uid; other links and docs point at these.
const EXPECTED_UIDS: &[&str] = &[
    "balena-home",
    "balena-fleets",
    "balena-device",
    "balena-services",
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

/// The value of the first `key:` line of a YAML file, without quotes.
fn yaml_value(path: &str, key: &str) -> String {
    yaml_values(path, key)
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("{path}: no {key}:"))
}

/// Asserts that `value` is neither empty nor in `seen` yet, and adds it; `what` says what it is.
fn assert_once(seen: &mut BTreeSet<String>, value: &str, what: impl FnOnce() -> String) {
    assert!(
        !value.is_empty() && seen.insert(value.to_string()),
        "{} {value:?} is empty or repeated",
        what()
    );
}

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
            // Titles name the panel in failures here and in Grafana's search: one each. The
            // description is the (i) beside the title: what the panel shows, from which metric.
            if !is_row(panel) {
                let title = panel["title"].as_str().unwrap_or("");
                assert_once(&mut titles, title, || format!("{}: panel title", d.name()));
                assert!(
                    panel["description"]
                        .as_str()
                        .is_some_and(|t| t.trim().len() > 20),
                    "{}: panel {title:?} has no description",
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
            if is_text(panel) {
                // A text panel queries nothing: it must say something, and ask no datasource.
                assert!(
                    panel["options"]["mode"] == "markdown"
                        && panel["options"]["content"]
                            .as_str()
                            .is_some_and(|c| !c.trim().is_empty()),
                    "{}: text panel {title:?} has no markdown content",
                    d.name()
                );
                assert!(
                    panel["targets"].is_null() && panel["datasource"].is_null(),
                    "{}: text panel {title:?} has targets or a datasource",
                    d.name()
                );
                continue;
            }
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
                let what = || format!("{}: panel {title:?}: refId", d.name());
                assert_once(&mut ref_ids, ref_id, what);
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
            assert_once(&mut defined, name, || {
                format!("{}: variable name", d.name())
            });
        }
        for (place, text) in d.expressions() {
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

#[test]
fn device_dashboards_select_only_the_chosen_devices() {
    let dashboards = dashboards();
    for uid in DEVICE_DASHBOARDS {
        let d = with_uid(&dashboards, uid).unwrap_or_else(|| panic!("no dashboard with uid {uid}"));
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
        // The panels' queries (the variables' are checked above).
        let panels = d
            .expressions()
            .into_iter()
            .filter(|(p, _)| p.starts_with("panel "));
        for (place, expr) in panels {
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
fn every_metric_is_documented_in_the_readme() {
    let readme = read("README.md");
    for d in dashboards() {
        for (_, text) in d.expressions() {
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
        copy_destination("grafana/provisioning/"),
        "/etc/grafana/provisioning"
    );
    let provider = yaml_value("grafana/provisioning/dashboards/balena.yml", "path");
    assert_eq!(
        copy_destination("grafana/dashboards/"),
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

/// The cells of the 24-column grid a panel covers, for the overlap check.
fn cells(panel: &Value) -> Vec<(u64, u64)> {
    let g = &panel["gridPos"];
    let (x, y) = (g["x"].as_u64().unwrap_or(0), g["y"].as_u64().unwrap_or(0));
    let (w, h) = (g["w"].as_u64().unwrap_or(0), g["h"].as_u64().unwrap_or(0));
    (x..x + w)
        .flat_map(|cx| (y..y + h).map(move |cy| (cx, cy)))
        .collect()
}

#[test]
fn panels_fit_the_grid_without_overlapping() {
    for d in dashboards() {
        let mut taken: BTreeMap<(u64, u64), String> = BTreeMap::new();
        // Panels inside a collapsed row are laid out when it opens: only top-level ones here.
        for panel in d.json["panels"].as_array().into_iter().flatten() {
            let title = panel["title"].as_str().unwrap_or("?").to_string();
            let g = &panel["gridPos"];
            assert!(
                g["x"].as_u64().unwrap_or(99) + g["w"].as_u64().unwrap_or(99) <= 24
                    && g["w"].as_u64().unwrap_or(0) > 0
                    && g["h"].as_u64().unwrap_or(0) > 0,
                "{}: panel {title:?} does not fit the 24 columns: {g}",
                d.name()
            );
            for cell in cells(panel) {
                if let Some(other) = taken.insert(cell, title.clone()) {
                    panic!(
                        "{}: panels {other:?} and {title:?} overlap at {cell:?}",
                        d.name()
                    );
                }
            }
        }
    }
}

#[test]
fn every_dashboard_links_to_the_others() {
    let dashboards = dashboards();
    for d in &dashboards {
        // The dashboard links dropdown lists every dashboard tagged balena, keeping the time
        // range and the variables (fleet, device) across them.
        assert!(
            d.json["tags"]
                .as_array()
                .is_some_and(|t| t.iter().any(|t| t == "balena")),
            "{}: not tagged balena, so the other dashboards' links do not list it",
            d.name()
        );
        let links = d.json["links"].as_array().cloned().unwrap_or_default();
        assert!(
            links.iter().any(|l| l["type"] == "dashboards"
                && l["tags"].as_array().is_some_and(|t| t == &["balena"])
                && l["includeVars"] == true
                && l["keepTime"] == true),
            "{}: no dashboards link to the balena-tagged dashboards (with includeVars and keepTime)",
            d.name()
        );
    }
}

/// Every data link URL in a panel (defaults and overrides), with the panel's title.
fn panel_links(d: &Dashboard) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for panel in d.panels() {
        let title = panel["title"].as_str().unwrap_or("?").to_string();
        let config = &panel["fieldConfig"];
        let mut lists = vec![&config["defaults"]["links"]];
        for o in config["overrides"].as_array().into_iter().flatten() {
            for p in o["properties"].as_array().into_iter().flatten() {
                if p["id"] == "links" {
                    lists.push(&p["value"]);
                }
            }
        }
        for list in lists {
            for link in list.as_array().into_iter().flatten() {
                out.push((
                    title.clone(),
                    link["url"].as_str().unwrap_or("").to_string(),
                ));
            }
        }
    }
    out
}

#[test]
fn links_between_dashboards_name_existing_dashboards_and_variables() {
    let dashboards = dashboards();
    let mut checked = 0;
    for d in &dashboards {
        for (title, url) in panel_links(d) {
            let Some(rest) = url.strip_prefix("/d/") else {
                continue;
            };
            let uid = rest.split(['/', '?']).next().unwrap_or("");
            let target = with_uid(&dashboards, uid).unwrap_or_else(|| {
                panic!("{}: panel {title:?} links to no dashboard: {url}", d.name())
            });
            let query = url.split_once('?').map(|(_, q)| q).unwrap_or("");
            for pair in query.split('&') {
                if let Some(name) = pair.strip_prefix("var-").and_then(|p| p.split('=').next()) {
                    assert!(
                        target.variables().iter().any(|v| v["name"] == name),
                        "{}: panel {title:?} sets var-{name}, which {} does not have: {url}",
                        d.name(),
                        target.name()
                    );
                }
            }
            checked += 1;
        }
    }
    assert!(checked > 0, "no links between dashboards were checked");
}

#[test]
fn device_pickers_show_names_and_every_regex_runs() {
    for d in dashboards() {
        for var in d.variables() {
            let name = var["name"].as_str().unwrap_or("?");
            let regex = var["regex"].as_str().unwrap_or("");
            let parsed = (!regex.is_empty()).then(|| {
                JsRegex::parse(regex)
                    .unwrap_or_else(|e| panic!("{}: variable {name}: {e}", d.name()))
            });
            if name != "device" {
                continue;
            }
            // A uuid means nothing to a person: the picker shows the device's name and passes
            // its uuid on, through a query_result line and a regex with named groups.
            let query = variable_query(var).unwrap_or("");
            assert!(
                query.trim_start().starts_with("query_result("),
                "{}: variable device must list whole series (query_result) to show names: {query}",
                d.name()
            );
            let parsed =
                parsed.unwrap_or_else(|| panic!("{}: variable device has no regex", d.name()));
            // Grafana writes label values unescaped: a quote in a name may cut the text short,
            // but the uuid (hex) always comes whole.
            let line = r#"balena_device_info{device_name="kiosk "1"",fleet_slug="a/b",uuid="0123abcd"} 1 1700000000000"#;
            let options = common::dashboards::variable_options(var, &[line.to_string()])
                .unwrap_or_else(|e| panic!("{}: {e}", d.name()));
            assert!(
                parsed.groups >= 2 && options.len() == 1 && options[0].value == "0123abcd" && options[0].text.starts_with("kiosk"),
                "{}: variable device's regex {regex} does not take the name as text and the uuid as value: {options:?}",
                d.name()
            );
        }
    }
}

/// Optional families, and what a dashboard that reads them must name to explain an empty panel.
const OPTIONAL: &[(&str, &[&str], &[&str])] = &[
    (
        "services",
        &[
            "balena_service_status",
            "balena_service_download_progress_ratio",
            "balena_fleet_service_instances",
        ],
        &["SERVICE_METRICS"],
    ),
    (
        "locations",
        &[
            "balena_device_latitude_degrees",
            "balena_device_longitude_degrees",
        ],
        &["LOCATION_METRICS", "openBalena"],
    ),
    (
        "tags",
        &["balena_device_tags", "balena_fleet_tags"],
        &["TAGS"],
    ),
];

#[test]
fn dashboards_say_what_turns_on_optional_data() {
    for d in dashboards() {
        let words = explanations(&d);
        let texts: Vec<String> = d.queries().into_iter().map(|(_, _, e)| e).collect();
        for (what, metrics, needed) in OPTIONAL {
            if texts
                .iter()
                .any(|e| metrics.iter().any(|m| metric_names(e).contains(*m)))
            {
                for word in *needed {
                    assert!(
                        words.contains(word),
                        "{}: reads {what} but never says {word} (in a text panel, a description, a no-data text or a mapping)",
                        d.name()
                    );
                }
            }
        }
        // The device dashboards are empty without discovered devices: they must say how to get them.
        if DEVICE_DASHBOARDS.contains(&d.uid()) {
            let text_panels: String = d
                .panels()
                .into_iter()
                .filter(|p| is_text(p))
                .map(|p| p["options"]["content"].as_str().unwrap_or("").to_string())
                .collect();
            for word in [
                "examples/device-node-exporter",
                "SD_MODE",
                "/sd",
                "openBalena",
            ] {
                assert!(
                    text_panels.contains(word),
                    "{}: no text panel says {word:?} (how devices get discovered and scraped)",
                    d.name()
                );
            }
        }
    }
}

/// Why a query uses a definition that `shared/DESIGN.md` ("What the words mean") replaced, if it
/// does. Offline, updating and failing services are computed once, in the exporter
/// (`balena_device_offline`, `balena_device_updating`, `balena_service_failing`) and the
/// recording rules (`fleet:balena_*`); a dashboard that computes them again drifts from the
/// alerts and the status page.
fn old_definition(expr: &str) -> Option<&'static str> {
    let flat: String = expr.split_whitespace().collect();
    // All devices minus is_online counts inactive and configuring devices as offline.
    let all = flat
        .find("balena_fleet_devices{")
        .or_else(|| flat.find("balena_fleet_devices)"));
    if let (Some(all), Some(online)) = (all, flat.find("balena_devices_online")) {
        let between = &flat[all.min(online)..all.max(online)];
        if between.contains(")-") || between.contains("}-") {
            return Some("offline as balena_fleet_devices - balena_devices_online (inactive and configuring devices are not offline)");
        }
    }
    for (metric, matchers) in selectors(expr) {
        let on_label = |label: &str, words: &[&str]| {
            matchers.iter().any(|m| {
                let m = m.replace(' ', "");
                m.strip_prefix(label).is_some_and(|rest| {
                    rest.starts_with(['=', '!']) && words.iter().any(|w| rest.contains(w))
                })
            })
        };
        if metric == "balena_device_heartbeat_state" && on_label("state", &["offline"]) {
            return Some("offline as heartbeat state offline (offline is balena's disconnected: neither heartbeat nor VPN)");
        }
        if metric.contains("status") && on_label("status", &["updating", "downloading", "applying"])
        {
            return Some("updating as a status matcher (use balena_device_updating or fleet:balena_devices_updating:count)");
        }
        if (metric.starts_with("balena_service_status")
            || metric.starts_with("balena_fleet_service_instances"))
            && on_label("status", &["exited", "Dead", "restarting"])
        {
            return Some("failing as a status matcher (an exited service with restart no/on-failure is not failing; use balena_service_failing or fleet:balena_services_failing:count)");
        }
    }
    None
}

#[test]
fn no_query_uses_the_old_definitions() {
    let mut checked = 0;
    for d in dashboards() {
        for (place, expr) in d.expressions() {
            if let Some(why) = old_definition(&expr) {
                panic!("{}: {place} computes {why}: {expr}", d.name());
            }
            checked += 1;
        }
    }
    assert!(checked > 0, "no queries were checked");
    // The lint catches what the dashboards used before issue 18.
    for old in [
        r#"sum(balena_fleet_devices{fleet_slug=~"$fleet"}) - sum(balena_devices_online{fleet_slug=~"$fleet"})"#,
        r#"balena_fleet_devices{fleet_slug=~"$fleet"} - balena_devices_online{fleet_slug=~"$fleet"}"#,
        r#"x and on(uuid) balena_device_heartbeat_state{fleet_slug=~"$fleet", state="offline"}"#,
        r#"sum(balena_fleet_devices_by_status{status="updating"})"#,
        r#"sum(balena_fleet_devices_by_update_status{status=~"downloading|downloaded|applying changes"})"#,
        r#"balena_service_status{status=~"exited|Dead|restarting"} == 1"#,
    ] {
        assert!(old_definition(old).is_some(), "the lint misses {old}");
    }
    for new in [
        r#"sum(fleet:balena_devices_offline:count{fleet_slug=~"$fleet"})"#,
        r#"sum by (state) (balena_fleet_devices_by_heartbeat{fleet_slug=~"$fleet"})"#,
        r#"sum(balena_fleet_devices{fleet_slug=~"$fleet"})"#,
        r#"balena_device_heartbeat_state{uuid="$device"} == 1"#,
    ] {
        assert!(old_definition(new).is_none(), "the lint flags {new}");
    }
}

/// The value of `NAME=value` in the Dockerfile's ENV instructions, without quotes.
fn dockerfile_env(dockerfile: &str, name: &str) -> Option<String> {
    dockerfile
        .lines()
        .map(str::trim)
        .filter(|line| !line.starts_with('#'))
        .flat_map(|line| line.trim_start_matches("ENV ").split_whitespace())
        .find_map(|word| word.strip_prefix(&format!("{name}=")))
        .map(|value| value.trim_matches('"').to_string())
}

#[test]
fn grafana_opens_on_the_fleet_overview_with_the_firing_alerts() {
    let dockerfile = read("grafana/Dockerfile.template");
    let path = dockerfile_env(&dockerfile, "GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
        .expect("grafana/Dockerfile.template: no GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH (Grafana would open on its welcome page)");
    let provider = yaml_value("grafana/provisioning/dashboards/balena.yml", "path");
    let file = path
        .strip_prefix(&format!("{}/", provider.trim_end_matches('/')))
        .unwrap_or_else(|| {
            panic!("the home dashboard {path} is not under the provisioned {provider}")
        });
    let dashboards = dashboards();
    let home = dashboards
        .iter()
        .find(|d| d.file == format!("grafana/dashboards/{file}"))
        .unwrap_or_else(|| panic!("the home dashboard {path} is not a file of grafana/dashboards"));
    assert_eq!(
        home.uid(),
        "balena-home",
        "{}: the home dashboard's uid",
        home.name()
    );
    let queries = home.queries();
    // Per fleet, the numbers the alerts use: every recording rule.
    for rule in [
        "fleet:balena_devices_expected_online:count",
        "fleet:balena_devices_offline:count",
        "fleet:balena_devices_offline:ratio",
        "fleet:balena_devices_updating:count",
        "fleet:balena_services_failing:count",
    ] {
        assert!(
            queries.iter().any(|(_, _, e)| e.contains(rule)),
            "{}: no panel reads {rule}",
            home.name()
        );
    }
    // The alerts firing now: a table listing them, with a link to Alertmanager.
    let alerts = home
        .panels()
        .into_iter()
        .find(|p| {
            p["type"] == "table"
                && p["targets"].as_array().into_iter().flatten().any(|t| {
                    let expr: String = t["expr"]
                        .as_str()
                        .unwrap_or("")
                        .split_whitespace()
                        .collect();
                    // The alerts themselves, not a count of them.
                    expr.starts_with("ALERTS{") && expr.contains(r#"alertstate="firing""#)
                })
        })
        .unwrap_or_else(|| {
            panic!(
                "{}: no table of ALERTS{{alertstate=\"firing\"}}",
                home.name()
            )
        });
    assert!(
        alerts["links"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|l| l["url"] == "/alertmanager/"),
        "{}: the alerts panel {} does not link /alertmanager/",
        home.name(),
        alerts["title"]
    );
}
