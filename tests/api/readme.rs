//! The README's tables against the code they document: every variable of `config::VARIABLES`
//! (name and default, in order) in the configuration table, and every family of
//! `metrics::FAMILIES` (type and labels) in the metrics table, and nothing more.

use balena_exporter::config::VARIABLES;
use balena_exporter::metrics::FAMILIES;

/// The rows of the first table after `heading`, as cells without the outer pipes.
fn table(heading: &str) -> Vec<Vec<String>> {
    let readme = std::fs::read_to_string("README.md").unwrap();
    let start = readme
        .find(&format!("\n{heading}\n"))
        .unwrap_or_else(|| panic!("README.md has no {heading:?}"));
    readme[start..]
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2) // header and separator
        .map(|l| {
            l.trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_string())
                .collect()
        })
        .collect()
}

/// The backticked words of a cell: "`a`, `b`" → [a, b].
fn ticked(cell: &str) -> Vec<String> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .map(String::from)
        .collect()
}

#[test]
fn the_configuration_table_lists_every_variable_with_its_default() {
    let rows = table("## Configuration");
    let names: Vec<String> = rows.iter().flat_map(|r| ticked(&r[0])).collect();
    let expected: Vec<&str> = VARIABLES.iter().map(|v| v.name).collect();
    assert_eq!(
        names, expected,
        "README rows in the order of config::VARIABLES"
    );
    for (row, v) in rows.iter().zip(VARIABLES) {
        assert_eq!(
            row[1].replace('`', ""),
            v.default.shown(),
            "default of {}",
            v.name
        );
    }
}

#[test]
fn the_metrics_table_lists_every_family_with_its_type_and_labels() {
    let rows = table("## Metrics");
    let mut documented = Vec::new();
    for row in &rows {
        for name in ticked(&row[0]) {
            if name == "process_*" {
                continue;
            }
            let def = FAMILIES.iter().find(|d| d.name == name).unwrap_or_else(|| {
                panic!("README documents {name}, which metrics.rs does not define")
            });
            assert_eq!(row[1], def.kind.name(), "type of {name}");
            assert_eq!(ticked(&row[2]), def.labels, "labels of {name}");
            documented.push(name);
        }
    }
    for def in FAMILIES {
        assert!(
            documented.iter().any(|n| n == def.name),
            "{} is not in the README's metrics table",
            def.name
        );
    }
}
