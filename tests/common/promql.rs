//! A scanner of the PromQL in dashboard queries, enough for the dashboard tests: the vector
//! selectors and their label matchers, the `balena_*`/`process_*` metric names, the Grafana
//! template variables a query refers to, and the PromQL a variable query runs.

use std::collections::BTreeSet;

/// The vector selectors of a PromQL text, as (metric name, its label matchers split at the
/// commas; empty without braces). Function and aggregation names (followed by `(`), keywords,
/// the label lists of `by`/`without`/`on`/`ignoring`/`group_left`/`group_right`, numbers,
/// strings and range or subquery brackets are not selectors.
pub fn selectors(expr: &str) -> Vec<(String, Vec<String>)> {
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

/// Metric names (`balena_*`, `process_*`) in a PromQL text.
pub fn metric_names(expr: &str) -> BTreeSet<String> {
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

/// A reference to a template variable in a query: `$name`, `${name}`, `${name:format}` or
/// `[[name]]`, as (byte range in the text, name).
pub fn variable_refs(text: &str) -> Vec<(std::ops::Range<usize>, String)> {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut out = Vec::new();
    let mut i = 0;
    while i < text.len() {
        let rest = &text[i..];
        // `${name}` and `[[name]]`, with an optional `:format`; else `$name`.
        let bracketed = [("${", "}"), ("[[", "]]")]
            .iter()
            .find_map(|(open, close)| {
                let inner = rest.strip_prefix(open)?;
                let end = inner.find(close)?;
                let name = inner[..end].split(':').next().unwrap_or("");
                Some((open.len() + end + close.len(), name))
            });
        let plain = || {
            let inner = rest.strip_prefix('$')?;
            let len = inner.find(|c: char| !is_ident(c)).unwrap_or(inner.len());
            (len > 0).then(|| (1 + len, &inner[..len]))
        };
        if let Some((len, name)) = bracketed.or_else(plain) {
            out.push((i..i + len, name.to_string()));
            i += len;
            continue;
        }
        i += rest.chars().next().unwrap().len_utf8();
    }
    out
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
pub fn variable_promql(query: &str) -> Result<(String, Option<String>), String> {
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
