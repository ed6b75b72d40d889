//! The shipped Grafana dashboards (`grafana/dashboards/*.json`) as the dashboard tests read them:
//! loading, the walk over panels, targets and variables, and the provisioned datasource uid.

use std::path::PathBuf;

use serde_json::Value;

/// What the tests put in for Grafana's built-in variables (the lints take these names as defined).
pub const BUILTINS: &[(&str, &str)] = &[
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

/// A file of the repository (`path` relative to its root), read whole; panics with the path.
pub fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// One dashboard file: its path in the repository and its JSON.
pub struct Dashboard {
    pub file: String,
    pub json: Value,
}

impl Dashboard {
    pub fn uid(&self) -> &str {
        self.json["uid"].as_str().unwrap_or("")
    }

    /// "title (uid, file)", for failure messages.
    pub fn name(&self) -> String {
        format!(
            "{} ({}, {})",
            self.json["title"].as_str().unwrap_or("?"),
            self.uid(),
            self.file
        )
    }

    /// Every panel, rows and the panels nested in (collapsed) rows included.
    pub fn panels(&self) -> Vec<&Value> {
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

    /// The template variables, in the order Grafana resolves them.
    pub fn variables(&self) -> Vec<&Value> {
        self.json["templating"]["list"]
            .as_array()
            .map(|list| list.iter().collect())
            .unwrap_or_default()
    }

    /// (panel title, refId, expr) of every target of every panel.
    pub fn queries(&self) -> Vec<(String, String, String)> {
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

/// Whether a panel is a row (which draws nothing and has no targets).
pub fn is_row(panel: &Value) -> bool {
    panel["type"] == "row"
}

/// The query of a query variable: a plain string, or `{"query": "..."}` as newer Grafana saves it.
pub fn variable_query(var: &Value) -> Option<&str> {
    var["query"]
        .as_str()
        .or_else(|| var["query"]["query"].as_str())
}

/// Every `grafana/dashboards/*.json`, parsed, in file name order.
pub fn dashboards() -> Vec<Dashboard> {
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

/// The dashboard of `dashboards` with the uid `uid`.
pub fn with_uid<'a>(dashboards: &'a [Dashboard], uid: &str) -> Option<&'a Dashboard> {
    dashboards.iter().find(|d| d.uid() == uid)
}

/// The uid of the datasource that Grafana provisions, by a line scan of the YAML file.
pub fn provisioned_uid() -> String {
    let path = "grafana/provisioning/datasources/prometheus.yml";
    let uids = yaml_values(path, "uid");
    assert_eq!(
        uids.len(),
        1,
        "{path}: expected exactly one uid, found {uids:?}"
    );
    assert!(!uids[0].is_empty(), "{path}: empty uid");
    uids[0].clone()
}

/// The values of every `key:` line (or `- key:` item) of a YAML file, without quotes.
pub fn yaml_values(path: &str, key: &str) -> Vec<String> {
    read(path)
        .lines()
        .map(|line| line.trim().trim_start_matches("- ").trim())
        .filter_map(|line| line.strip_prefix(&format!("{key}:")))
        .map(|value| value.trim().trim_matches(['"', '\'']).to_string())
        .collect()
}
