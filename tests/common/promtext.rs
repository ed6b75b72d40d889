//! A small parser of the Prometheus text format, so tests compare values, not strings.

use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, name: &str) -> &str {
        self.labels.get(name).map_or("", String::as_str)
    }
}

/// Parses every sample line; panics with the line on anything malformed.
pub fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|line| parse_line(line).unwrap_or_else(|| panic!("malformed sample line: {line:?}")))
        .collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let brace = line
        .find('{')
        .filter(|&b| b < line.find(' ').unwrap_or(usize::MAX));
    let Some(brace) = brace else {
        let (name, value) = line.split_once(' ')?;
        return Some(Sample {
            name: name.into(),
            labels: BTreeMap::new(),
            value: number(value)?,
        });
    };
    let mut labels = BTreeMap::new();
    let mut rest = &line[brace + 1..];
    loop {
        rest = rest.trim_start_matches(',');
        if let Some(after) = rest.strip_prefix('}') {
            rest = after;
            break;
        }
        let (key, after) = rest.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '\\' => value.push(match chars.next()?.1 {
                    'n' => '\n',
                    c @ ('\\' | '"') => c,
                    _ => return None,
                }),
                '"' => break i + 1,
                c => value.push(c),
            }
        };
        labels.insert(key.to_string(), value);
        rest = &after[end..];
    }
    Some(Sample {
        name: line[..brace].into(),
        labels,
        value: number(rest)?,
    })
}

fn number(text: &str) -> Option<f64> {
    match text.trim().split(' ').next()? {
        "+Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        v => v.parse().ok(),
    }
}

/// The samples of one family. (Not used by tests/http and tests/tools.)
#[allow(dead_code)]
pub fn family<'a>(samples: &'a [Sample], name: &str) -> Vec<&'a Sample> {
    samples.iter().filter(|s| s.name == name).collect()
}

/// The value of the one sample of `name` whose labels include `labels`; None if absent.
pub fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let matching: Vec<_> = samples
        .iter()
        .filter(|s| s.name == name && labels.iter().all(|(k, v)| s.label(k) == *v))
        .collect();
    assert!(
        matching.len() <= 1,
        "{name}{labels:?} matches {} samples",
        matching.len()
    );
    matching.first().map(|s| s.value)
}

#[test]
fn parses_escapes_and_special_values() {
    let s = parse(
        "# HELP x y\nx{a=\"q\\\"uo\\\\te\\nnl\",b=\"é,}=\"} 1.5\nup 1\nh{le=\"+Inf\"} +Inf\n",
    );
    assert_eq!(s.len(), 3);
    assert_eq!(s[0].label("a"), "q\"uo\\te\nnl");
    assert_eq!(s[0].label("b"), "é,}=");
    assert_eq!(s[0].value, 1.5);
    assert_eq!(value(&s, "up", &[]), Some(1.0));
    assert_eq!(s[2].value, f64::INFINITY);
}
