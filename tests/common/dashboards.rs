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

    /// (where, PromQL) of every panel target and every query variable: "panel \"title\" target
    /// A" or "variable name".
    pub fn expressions(&self) -> Vec<(String, String)> {
        let targets = self
            .queries()
            .into_iter()
            .map(|(panel, ref_id, expr)| (format!("panel {panel:?} target {ref_id}"), expr));
        let variables = self.variables().into_iter().filter_map(|var| {
            let query = variable_query(var)?;
            Some((format!("variable {}", var["name"]), query.to_string()))
        });
        targets.chain(variables).collect()
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

/// Whether a panel is a text panel (which shows its markdown and queries nothing).
pub fn is_text(panel: &Value) -> bool {
    panel["type"] == "text"
}

/// What a dashboard tells a reader in words: its description, its text panels' content, and
/// each panel's description, "no data" text (`noValue`) and value-mapping texts.
pub fn explanations(d: &Dashboard) -> String {
    let mut out = vec![d.json["description"].as_str().unwrap_or("").to_string()];
    for panel in d.panels() {
        out.push(
            panel["options"]["content"]
                .as_str()
                .unwrap_or("")
                .to_string(),
        );
        out.push(panel["description"].as_str().unwrap_or("").to_string());
        let defaults = &panel["fieldConfig"]["defaults"];
        out.push(defaults["noValue"].as_str().unwrap_or("").to_string());
        for mapping in defaults["mappings"].as_array().into_iter().flatten() {
            for option in mapping["options"]
                .as_object()
                .into_iter()
                .flat_map(|o| o.values())
            {
                out.push(option["text"].as_str().unwrap_or("").to_string());
            }
        }
    }
    out.join("\n")
}

/// One option of a query variable as Grafana offers it: the text shown and the value used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VariableOption {
    pub text: String,
    pub value: String,
}

/// The options a query variable offers, from the items its query returned (a label's values, or
/// the lines of `query_result`), as Grafana makes them: the variable's regex filters the items
/// and may pick a part, or a `text` and a `value` through named groups; then options with the
/// same value are dropped and the rest sorted by the variable's `sort`.
///
/// This follows `metricNamesToVariableValues` of Grafana's scenes library
/// (`packages/scenes/src/variables/variants/query/utils.ts`) and the "Filter and modify using
/// named text and value capture groups" section of Grafana's query variable documentation.
pub fn variable_options(var: &Value, items: &[String]) -> Result<Vec<VariableOption>, String> {
    let regex = match var["regex"].as_str().unwrap_or("") {
        "" => None,
        source => Some(JsRegex::parse(source)?),
    };
    let mut options: Vec<VariableOption> = Vec::new();
    for item in items {
        let (mut text, mut value) = (item.clone(), item.clone());
        if let Some(regex) = &regex {
            let matches = regex.all_matches(item);
            if matches.is_empty() {
                continue;
            }
            // JavaScript's `m.groups.value` is truthy only for a non-empty capture.
            let named = |name: &str| {
                matches
                    .iter()
                    .find_map(|m| m.named(regex, name).filter(|s| !s.is_empty()))
            };
            let (text_group, value_group) = (named("text"), named("value"));
            if text_group.is_some() || value_group.is_some() {
                value = value_group.or(text_group).unwrap().to_string();
                text = text_group.or(value_group).unwrap().to_string();
            } else if regex.groups > 0 && matches.len() > 1 {
                for m in &matches {
                    let part = m.group(1).unwrap_or("").to_string();
                    options.push(VariableOption {
                        text: part.clone(),
                        value: part,
                    });
                }
                continue;
            } else if regex.groups > 0 {
                text = matches[0].group(1).unwrap_or("").to_string();
                value = text.clone();
            }
        }
        options.push(VariableOption { text, value });
    }
    let mut seen = std::collections::BTreeSet::new();
    options.retain(|o| seen.insert(o.value.clone()));
    sort_options(&mut options, var["sort"].as_u64().unwrap_or(0))?;
    Ok(options)
}

/// Grafana's variable sort orders (`VariableSort`): 0 keeps the query's order.
fn sort_options(options: &mut [VariableOption], sort: u64) -> Result<(), String> {
    fn natural(a: &str, b: &str) -> std::cmp::Ordering {
        // Runs of digits compare as numbers, the rest without regard to case.
        let chunks = |s: &str| {
            let mut out: Vec<(bool, String)> = Vec::new();
            for c in s.chars() {
                let digit = c.is_ascii_digit();
                match out.last_mut() {
                    Some((d, chunk)) if *d == digit => chunk.push(c),
                    _ => out.push((digit, c.to_string())),
                }
            }
            out
        };
        let (a, b) = (chunks(a), chunks(b));
        for (x, y) in a.iter().zip(&b) {
            let order = match (x.0, y.0) {
                (true, true) => {
                    let (x, y) = (x.1.trim_start_matches('0'), y.1.trim_start_matches('0'));
                    x.len().cmp(&y.len()).then_with(|| x.cmp(y))
                }
                _ => x.1.to_lowercase().cmp(&y.1.to_lowercase()),
            };
            if order.is_ne() {
                return order;
            }
        }
        a.len().cmp(&b.len())
    }
    let first_number = |s: &str| -> i64 {
        let digits: String = s
            .chars()
            .skip_while(|c| !c.is_ascii_digit())
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().unwrap_or(-1)
    };
    match sort {
        0 => {}
        1 | 2 => options.sort_by(|a, b| a.text.cmp(&b.text)),
        3 | 4 => options.sort_by_key(|o| first_number(&o.text)),
        5 | 6 => options.sort_by_key(|o| o.text.to_lowercase()),
        7 | 8 => options.sort_by(|a, b| natural(&a.text, &b.text)),
        other => return Err(format!("unknown variable sort {other}")),
    }
    if sort.is_multiple_of(2) && sort > 0 {
        options.reverse();
    }
    Ok(())
}

/// A JavaScript regular expression literal (`/pattern/flags`, or a bare pattern), as far as
/// variable regexes need one: literals and escapes, `.`, classes (`[...]`, `[^...]`, `\d \w
/// \s`), groups (capturing, `(?:...)`, `(?<name>...)`), alternation, the greedy and lazy
/// quantifiers `* + ? {n,m}`, `^`, `$`, and the flags `g` and `i`. Anything else (lookaround,
/// backreferences) is an error, so a dashboard cannot rely on what this does not check.
pub struct JsRegex {
    program: Vec<Inst>,
    /// Capture groups, numbered from 1.
    pub groups: usize,
    /// Names of the capture groups, by number.
    names: Vec<(usize, String)>,
    global: bool,
    ignore_case: bool,
}

/// One match: the byte span of the whole match and of each group (None: did not take part).
pub struct JsMatch<'t> {
    text: &'t str,
    spans: Vec<Option<usize>>,
}

impl<'t> JsMatch<'t> {
    pub fn group(&self, n: usize) -> Option<&'t str> {
        match (self.spans.get(2 * n), self.spans.get(2 * n + 1)) {
            (Some(Some(start)), Some(Some(end))) => Some(&self.text[*start..*end]),
            _ => None,
        }
    }

    pub fn named(&self, regex: &JsRegex, name: &str) -> Option<&'t str> {
        let n = regex.names.iter().find(|(_, n)| n == name)?.0;
        self.group(n)
    }
}

#[derive(Clone, Debug)]
enum Node {
    Char(char),
    Any,
    /// Ranges (inclusive), negated.
    Class(Vec<(char, char)>, bool),
    Start,
    End,
    Group(Box<Node>, Option<usize>),
    Concat(Vec<Node>),
    Alt(Vec<Node>),
    Repeat(Box<Node>, usize, Option<usize>, bool),
}

#[derive(Clone, Debug)]
enum Inst {
    Char(char),
    Any,
    Class(Vec<(char, char)>, bool),
    Start,
    End,
    /// Try the first, then the second.
    Split(usize, usize),
    Jump(usize),
    Save(usize),
    Match,
}

struct Parser<'a> {
    chars: Vec<char>,
    pos: usize,
    groups: usize,
    names: Vec<(usize, String)>,
    source: &'a str,
}

impl Parser<'_> {
    fn error(&self, what: &str) -> String {
        format!("regex {:?}: {what} at character {}", self.source, self.pos)
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn alternation(&mut self) -> Result<Node, String> {
        let mut branches = vec![self.concatenation()?];
        while self.eat('|') {
            branches.push(self.concatenation()?);
        }
        Ok(if branches.len() == 1 {
            branches.pop().unwrap()
        } else {
            Node::Alt(branches)
        })
    }

    fn concatenation(&mut self) -> Result<Node, String> {
        let mut items = Vec::new();
        while let Some(c) = self.peek() {
            if c == '|' || c == ')' {
                break;
            }
            let atom = self.atom()?;
            items.push(self.quantified(atom)?);
        }
        Ok(Node::Concat(items))
    }

    fn number(&mut self) -> Option<usize> {
        let start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
        }
        self.chars[start..self.pos]
            .iter()
            .collect::<String>()
            .parse()
            .ok()
    }

    fn quantified(&mut self, atom: Node) -> Result<Node, String> {
        let (min, max) = match self.peek() {
            Some('*') => (0, None),
            Some('+') => (1, None),
            Some('?') => (0, Some(1)),
            Some('{') => {
                let save = self.pos;
                self.pos += 1;
                let Some(min) = self.number() else {
                    // JavaScript reads a `{` that starts no quantifier as a literal.
                    self.pos = save;
                    return Ok(atom);
                };
                let max = if self.eat(',') {
                    self.number()
                } else {
                    Some(min)
                };
                if !self.eat('}') {
                    self.pos = save;
                    return Ok(atom);
                }
                self.pos -= 1;
                (min, max)
            }
            _ => return Ok(atom),
        };
        self.pos += 1;
        if matches!(atom, Node::Start | Node::End) {
            return Err(self.error("quantified anchor"));
        }
        let greedy = !self.eat('?');
        Ok(Node::Repeat(Box::new(atom), min, max, greedy))
    }

    fn escape(&mut self) -> Result<Node, String> {
        let c = self
            .peek()
            .ok_or_else(|| self.error("trailing backslash"))?;
        self.pos += 1;
        Ok(match c {
            'd' => Node::Class(vec![('0', '9')], false),
            'D' => Node::Class(vec![('0', '9')], true),
            'w' => Node::Class(WORD.to_vec(), false),
            'W' => Node::Class(WORD.to_vec(), true),
            's' => Node::Class(SPACE.to_vec(), false),
            'S' => Node::Class(SPACE.to_vec(), true),
            'n' => Node::Char('\n'),
            't' => Node::Char('\t'),
            'r' => Node::Char('\r'),
            c if c.is_ascii_alphanumeric() => {
                return Err(self.error(&format!("unsupported escape \\{c}")))
            }
            c => Node::Char(c),
        })
    }

    fn class(&mut self) -> Result<Node, String> {
        let negated = self.eat('^');
        let mut ranges = Vec::new();
        let mut first = true;
        loop {
            let c = self.peek().ok_or_else(|| self.error("unclosed ["))?;
            if c == ']' && !first {
                self.pos += 1;
                break;
            }
            first = false;
            self.pos += 1;
            let low = if c == '\\' {
                match self.escape()? {
                    Node::Char(c) => c,
                    Node::Class(set, false) => {
                        ranges.extend(set);
                        continue;
                    }
                    _ => return Err(self.error("unsupported escape in a class")),
                }
            } else {
                c
            };
            if self.peek() == Some('-') && self.chars.get(self.pos + 1).is_some_and(|c| *c != ']') {
                self.pos += 1;
                let mut high = self.peek().unwrap();
                self.pos += 1;
                if high == '\\' {
                    match self.escape()? {
                        Node::Char(c) => high = c,
                        _ => return Err(self.error("class range to a class")),
                    }
                }
                if high < low {
                    return Err(self.error("class range out of order"));
                }
                ranges.push((low, high));
            } else {
                ranges.push((low, low));
            }
        }
        Ok(Node::Class(ranges, negated))
    }

    fn atom(&mut self) -> Result<Node, String> {
        let c = self.peek().unwrap();
        self.pos += 1;
        Ok(match c {
            '.' => Node::Any,
            '^' => Node::Start,
            '$' => Node::End,
            '\\' => self.escape()?,
            '[' => self.class()?,
            '(' => {
                let index = if self.eat('?') {
                    if self.eat(':') {
                        None
                    } else if self.eat('<') {
                        let start = self.pos;
                        while self
                            .peek()
                            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
                        {
                            self.pos += 1;
                        }
                        let name: String = self.chars[start..self.pos].iter().collect();
                        if name.is_empty() || !self.eat('>') {
                            return Err(self.error("bad group name (lookbehind is unsupported)"));
                        }
                        self.groups += 1;
                        self.names.push((self.groups, name));
                        Some(self.groups)
                    } else {
                        return Err(self.error("unsupported group (lookahead?)"));
                    }
                } else {
                    self.groups += 1;
                    Some(self.groups)
                };
                let inner = self.alternation()?;
                if !self.eat(')') {
                    return Err(self.error("unclosed ("));
                }
                Node::Group(Box::new(inner), index)
            }
            '*' | '+' | '?' => return Err(self.error("nothing to repeat")),
            ')' => return Err(self.error("unmatched )")),
            c => Node::Char(c),
        })
    }
}

const WORD: &[(char, char)] = &[('a', 'z'), ('A', 'Z'), ('0', '9'), ('_', '_')];
const SPACE: &[(char, char)] = &[(' ', ' '), ('\t', '\r')];

fn compile(node: &Node, program: &mut Vec<Inst>) {
    match node {
        Node::Char(c) => program.push(Inst::Char(*c)),
        Node::Any => program.push(Inst::Any),
        Node::Class(ranges, negated) => program.push(Inst::Class(ranges.clone(), *negated)),
        Node::Start => program.push(Inst::Start),
        Node::End => program.push(Inst::End),
        Node::Group(inner, index) => {
            if let Some(n) = index {
                program.push(Inst::Save(2 * n));
            }
            compile(inner, program);
            if let Some(n) = index {
                program.push(Inst::Save(2 * n + 1));
            }
        }
        Node::Concat(items) => items.iter().for_each(|item| compile(item, program)),
        Node::Alt(branches) => {
            let mut jumps = Vec::new();
            for (i, branch) in branches.iter().enumerate() {
                if i + 1 < branches.len() {
                    let split = program.len();
                    program.push(Inst::Split(split + 1, 0));
                    compile(branch, program);
                    jumps.push(program.len());
                    program.push(Inst::Jump(0));
                    let next = program.len();
                    program[split] = Inst::Split(split + 1, next);
                } else {
                    compile(branch, program);
                }
            }
            let end = program.len();
            for j in jumps {
                program[j] = Inst::Jump(end);
            }
        }
        Node::Repeat(inner, min, max, greedy) => {
            for _ in 0..*min {
                compile(inner, program);
            }
            let split = |program: &mut Vec<Inst>, at: usize, body: usize, out: usize| {
                program[at] = if *greedy {
                    Inst::Split(body, out)
                } else {
                    Inst::Split(out, body)
                };
            };
            match max {
                None => {
                    let at = program.len();
                    program.push(Inst::Jump(0));
                    compile(inner, program);
                    program.push(Inst::Jump(at));
                    let out = program.len();
                    split(program, at, at + 1, out);
                }
                Some(max) => {
                    let mut splits = Vec::new();
                    for _ in *min..*max {
                        splits.push(program.len());
                        program.push(Inst::Jump(0));
                        compile(inner, program);
                    }
                    let out = program.len();
                    for at in splits {
                        split(program, at, at + 1, out);
                    }
                }
            }
        }
    }
}

impl JsRegex {
    /// Parses `/pattern/flags` (as Grafana's `stringToJsRegex` does) or a bare pattern.
    pub fn parse(source: &str) -> Result<JsRegex, String> {
        let (pattern, flags) = match source.strip_prefix('/') {
            Some(rest) => {
                let end = rest
                    .rfind('/')
                    .ok_or_else(|| format!("regex {source:?}: no closing /"))?;
                (&rest[..end], &rest[end + 1..])
            }
            None => (source, ""),
        };
        if let Some(flag) = flags.chars().find(|f| !matches!(f, 'g' | 'i')) {
            return Err(format!("regex {source:?}: unsupported flag {flag}"));
        }
        let mut parser = Parser {
            chars: pattern.chars().collect(),
            pos: 0,
            groups: 0,
            names: Vec::new(),
            source,
        };
        let node = parser.alternation()?;
        if parser.pos != parser.chars.len() {
            return Err(parser.error("unmatched )"));
        }
        let mut program = vec![Inst::Save(0)];
        compile(&node, &mut program);
        program.push(Inst::Save(1));
        program.push(Inst::Match);
        Ok(JsRegex {
            program,
            groups: parser.groups,
            names: parser.names,
            global: flags.contains('g'),
            ignore_case: flags.contains('i'),
        })
    }

    fn char_eq(&self, a: char, b: char) -> bool {
        a == b || (self.ignore_case && a.to_lowercase().eq(b.to_lowercase()))
    }

    fn in_class(&self, c: char, ranges: &[(char, char)]) -> bool {
        let inside = |c: char| ranges.iter().any(|(lo, hi)| *lo <= c && c <= *hi);
        inside(c)
            || (self.ignore_case && (c.to_lowercase().any(inside) || c.to_uppercase().any(inside)))
    }

    /// The leftmost match starting at or after byte `from`, with JavaScript's preferences
    /// (backtracking, first alternative and greedy quantifiers first).
    fn find_at<'t>(&self, text: &'t str, from: usize) -> Option<JsMatch<'t>> {
        let chars: Vec<(usize, char)> = text.char_indices().collect();
        let byte = |i: usize| chars.get(i).map_or(text.len(), |(b, _)| *b);
        let first = chars
            .iter()
            .position(|(b, _)| *b >= from)
            .unwrap_or(chars.len());
        let width = chars.len() + 1;
        for start in first..=chars.len() {
            // Each (instruction, position) is tried once: without backreferences a state that
            // failed once fails again, so this stays linear and still finds the match that
            // backtracking in priority order finds.
            let mut visited = vec![false; self.program.len() * width];
            let mut slots: Vec<Option<usize>> = vec![None; 2 * (self.groups + 1)];
            enum Job {
                Run(usize, usize),
                Restore(usize, Option<usize>),
            }
            let mut stack = vec![Job::Run(0, start)];
            while let Some(job) = stack.pop() {
                let (mut pc, mut pos) = match job {
                    Job::Restore(slot, old) => {
                        slots[slot] = old;
                        continue;
                    }
                    Job::Run(pc, pos) => (pc, pos),
                };
                loop {
                    if std::mem::replace(&mut visited[pc * width + pos], true) {
                        break;
                    }
                    let here = chars.get(pos).map(|(_, c)| *c);
                    match &self.program[pc] {
                        Inst::Match => {
                            let spans = slots.iter().map(|s| s.map(byte)).collect();
                            return Some(JsMatch { text, spans });
                        }
                        Inst::Char(c) => match here {
                            Some(h) if self.char_eq(h, *c) => (pc, pos) = (pc + 1, pos + 1),
                            _ => break,
                        },
                        Inst::Any => match here {
                            Some(h) if !matches!(h, '\n' | '\r' | '\u{2028}' | '\u{2029}') => {
                                (pc, pos) = (pc + 1, pos + 1)
                            }
                            _ => break,
                        },
                        Inst::Class(ranges, negated) => match here {
                            Some(h) if self.in_class(h, ranges) != *negated => {
                                (pc, pos) = (pc + 1, pos + 1)
                            }
                            _ => break,
                        },
                        Inst::Start if pos == 0 => pc += 1,
                        Inst::End if pos == chars.len() => pc += 1,
                        Inst::Start | Inst::End => break,
                        Inst::Split(a, b) => {
                            stack.push(Job::Run(*b, pos));
                            pc = *a;
                        }
                        Inst::Jump(a) => pc = *a,
                        Inst::Save(slot) => {
                            stack.push(Job::Restore(*slot, slots[*slot]));
                            slots[*slot] = Some(pos);
                            pc += 1;
                        }
                    }
                }
            }
        }
        None
    }

    /// Every match as Grafana's `getAllMatches` collects them: repeated `exec` while the flag
    /// `g` is set and the last match was not empty; one `exec` without `g`.
    pub fn all_matches<'t>(&self, text: &'t str) -> Vec<JsMatch<'t>> {
        let mut out = Vec::new();
        let mut last_index = 0;
        while let Some(m) = self.find_at(text, last_index) {
            let (start, end) = (m.spans[0].unwrap(), m.spans[1].unwrap());
            out.push(m);
            if !self.global || start == end {
                break;
            }
            last_index = end;
        }
        out
    }
}

#[test]
fn named_text_and_value_groups_work_as_grafanas_documentation_shows() {
    // The example of "Filter and modify using named text and value capture groups".
    let items: Vec<String> = (0..4)
        .map(|i| {
            format!("node_hwmon_chip_names{{chip=\"0000:d7:00_0_0000:d8:00_{i}\",chip_name=\"enp216s0f0np{i}\"}} 1")
        })
        .collect();
    let var = serde_json::json!({
        "regex": "/chip_name=\"(?<text>[^\"]+)|chip=\"(?<value>[^\"]+)/g",
        "sort": 0
    });
    let options = variable_options(&var, &items).unwrap();
    assert_eq!(options.len(), 4);
    assert_eq!(options[2].text, "enp216s0f0np2");
    assert_eq!(options[2].value, "0000:d7:00_0_0000:d8:00_2");
    // The other examples of that page: a filter, a capture group, a Prometheus line.
    let backends: Vec<String> = (1..=4).map(|i| format!("backend_0{i}")).collect();
    let pick = |regex: &str, items: &[String]| -> Vec<String> {
        let var = serde_json::json!({ "regex": regex, "sort": 0 });
        variable_options(&var, items)
            .unwrap()
            .into_iter()
            .map(|o| o.text)
            .collect()
    };
    assert_eq!(pick("/(01|02)$/", &backends), ["01", "02"]);
    assert_eq!(pick("/.*(01|02)/", &backends), ["01", "02"]);
    let up = vec![
        "up{instance=\"demo.robustperception.io:9090\",job=\"prometheus\"} 1 1521630638000"
            .to_string(),
    ];
    assert_eq!(
        pick("/.*instance=\"([^\"]*).*/", &up),
        ["demo.robustperception.io:9090"]
    );
    // Sorting, duplicates, lazy and bounded quantifiers, case folding.
    let var = serde_json::json!({ "regex": "", "sort": 7 });
    let names = ["dev-10", "Dev-9", "dev-9", "dev-1"].map(String::from);
    let sorted: Vec<String> = variable_options(&var, &names)
        .unwrap()
        .into_iter()
        .map(|o| o.value)
        .collect();
    assert_eq!(sorted, ["dev-1", "Dev-9", "dev-9", "dev-10"]);
    let regex = JsRegex::parse("/a(?<x>.+?)c{1,2}/i").unwrap();
    let found = regex.all_matches("xAbbcccd");
    assert_eq!(found[0].named(&regex, "x"), Some("bb"));
    assert_eq!(found[0].group(0), Some("Abbcc"));
    assert!(JsRegex::parse("/(?=a)/").is_err());
    assert!(JsRegex::parse("/a/y").is_err());
}
