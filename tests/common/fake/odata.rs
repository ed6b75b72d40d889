//! The fake's query parser, after `@balena/odata-parser`: options, `$select`, `$expand` with
//! nested options, `$filter` (and/or left to right, comparisons, `nav/any(v:...)` lambdas, and
//! `mod` only to refuse it) and `$orderby`, from the raw query string, decoding only what the
//! real parser decodes.

use serde_json::{json, Value};

use super::resources::ApiError::{self, BadUrl};

type R<T> = Result<T, ApiError>;

/// The options of a read, or of one `$expand` (where `$top` and `$skip` are not implemented).
#[derive(Default)]
pub(crate) struct Query {
    pub(crate) select: Option<Vec<String>>,
    pub(crate) expand: Vec<Expand>,
    pub(crate) filter: Option<Expr>,
    /// (field, descending)
    pub(crate) orderby: Vec<(String, bool)>,
    pub(crate) top: Option<usize>,
    pub(crate) skip: Option<usize>,
}

pub(crate) struct Expand {
    pub(crate) nav: String,
    /// `nav/$count`: a bare integer.
    pub(crate) count: bool,
    /// Nested options (`;`-separated): `$select`, `$expand`, `$filter`, `$orderby`.
    pub(crate) query: Query,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

pub(crate) enum Expr {
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Cmp {
        field: String,
        op: Op,
        lit: Value,
    },
    /// `1 eq 1`, as in the access lambdas.
    True,
    /// `field mod n`, compared or not: pinejs accepts the syntax, the query then fails (500,
    /// as recorded).
    Modulo,
    /// `is_directly_accessible_by__user/any(v:1 eq 1)` on application: the caller may read it.
    UserAccess,
    /// `nav/any(v:<body>)`: at least one row reached through navigation `nav` passes `body`,
    /// in which fields are written `v/field` (`v/nav2/any(...)` nests).
    Any {
        nav: String,
        body: Box<Expr>,
    },
}

/// Characters reserved by odata-parser's `ResourceName`.
pub(crate) const RESERVED: &[u8] = b":/?#[]@!$*&()+,;= '";

pub(crate) fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

pub(crate) fn parse_query(raw: &str) -> R<Query> {
    let mut q = Query::default();
    if raw.is_empty() {
        return Ok(q);
    }
    for part in raw.split('&') {
        let (key, value) = part.split_once('=').ok_or(BadUrl)?;
        let Some(option) = key.strip_prefix('$').or_else(|| key.strip_prefix("%24")) else {
            // A custom option `name=value` (odata-parser's OperationParam): accepted, ignored.
            if part
                .bytes()
                .filter(|b| b":/?#[]@!$*()+,;=".contains(b))
                .count()
                > 1
            {
                return Err(BadUrl);
            }
            continue;
        };
        match option {
            "top" | "skip" => {
                let n = Some(value)
                    .filter(|v| is_digits(v))
                    .and_then(|v| v.parse().ok())
                    .ok_or(BadUrl)?;
                if option == "top" {
                    q.top = Some(n)
                } else {
                    q.skip = Some(n)
                }
                continue;
            }
            "select" | "expand" | "filter" | "orderby" => {}
            _ => return Err(BadUrl),
        }
        let mut p = Parser {
            toks: lex(value)?,
            at: 0,
            var: None,
        };
        match option {
            "select" => q.select = p.select()?,
            "expand" => q.expand = p.expand()?,
            "filter" => q.filter = Some(p.filter()?),
            _ => q.orderby = p.orderby()?,
        }
        if p.at != p.toks.len() {
            return Err(BadUrl);
        }
    }
    Ok(q)
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Tok {
    Name(String),
    Str(String),
    Sym(u8),
    Space,
    /// `%24`, which odata-parser accepts for `$` only where an option name starts.
    EncodedDollar,
}

/// The byte that `%XX` at `b[i]` encodes (None if there is no well-formed escape there).
pub(crate) fn hex_at(b: &[u8], i: usize) -> Option<u8> {
    let digit = |at: usize| b.get(at).and_then(|c| (*c as char).to_digit(16));
    (b.get(i) == Some(&b'%')).then_some(())?;
    Some((digit(i + 1)? * 16 + digit(i + 2)?) as u8)
}

/// Splits a raw option value into tokens, decoding what odata-parser decodes and nothing else.
pub(crate) fn lex(raw: &str) -> R<Vec<Tok>> {
    let b = raw.as_bytes();
    let mut toks = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let (tok, len) = match (b[i], hex_at(b, i)) {
            (b' ' | b'+', _) => (Tok::Space, 1),
            (b'%', Some(0x20)) => (Tok::Space, 3),
            (b'%', Some(0x24)) => (Tok::EncodedDollar, 3),
            (b'\'', _) | (b'%', Some(0x27)) => {
                // Quoted text: up to the next lone apostrophe (`'` or `%27`); `''` is a quote.
                let mut text = Vec::new();
                let mut j = if b[i] == b'\'' { i + 1 } else { i + 3 };
                let quote = |j: usize| {
                    if b.get(j) == Some(&b'\'') {
                        Some(1)
                    } else {
                        (hex_at(b, j) == Some(0x27)).then_some(3)
                    }
                };
                loop {
                    let Some(&c) = b.get(j) else {
                        return Err(BadUrl);
                    };
                    match quote(j) {
                        Some(n) => match quote(j + n) {
                            Some(m) => {
                                text.push(b'\'');
                                j += n + m;
                            }
                            None => {
                                j += n;
                                break;
                            }
                        },
                        None if c == b'%' => {
                            text.push(hex_at(b, j).ok_or(BadUrl)?);
                            j += 3;
                        }
                        None => {
                            text.push(c);
                            j += 1;
                        }
                    }
                }
                (
                    Tok::Str(String::from_utf8(text).map_err(|_| BadUrl)?),
                    j - i,
                )
            }
            (b'%', _) => return Err(BadUrl),
            (c, _) if RESERVED.contains(&c) => (Tok::Sym(c), 1),
            _ => {
                let len = b[i..]
                    .iter()
                    .take_while(|c| !RESERVED.contains(c) && **c != b'%')
                    .count();
                (Tok::Name(raw[i..i + len].to_owned()), len)
            }
        };
        if !(tok == Tok::Space && toks.last() == Some(&Tok::Space)) {
            toks.push(tok);
        }
        i += len;
    }
    Ok(toks)
}

pub(crate) struct Parser {
    toks: Vec<Tok>,
    at: usize,
    /// Inside a lambda body: its variable, which every field must start with.
    var: Option<String>,
}

impl Parser {
    fn eat(&mut self, tok: Tok) -> bool {
        let hit = self.toks.get(self.at) == Some(&tok);
        self.at += hit as usize;
        hit
    }
    fn expect(&mut self, tok: Tok) -> R<()> {
        if self.eat(tok) {
            Ok(())
        } else {
            Err(BadUrl)
        }
    }
    fn skip_space(&mut self) {
        self.eat(Tok::Space);
    }
    fn name(&mut self) -> R<String> {
        match self.toks.get(self.at) {
            Some(Tok::Name(n)) => {
                self.at += 1;
                Ok(n.clone())
            }
            _ => Err(BadUrl),
        }
    }
    fn word(&mut self, word: &str) -> R<()> {
        if self.name()? == word {
            Ok(())
        } else {
            Err(BadUrl)
        }
    }
    /// `name` or `name/name/...` (a path is never a known field, so it ends as a 500).
    fn path(&mut self) -> R<String> {
        let mut path = self.name()?;
        while self.toks.get(self.at) == Some(&Tok::Sym(b'/'))
            && matches!(self.toks.get(self.at + 1), Some(Tok::Name(_)))
        {
            self.at += 1;
            path = format!("{path}/{}", self.name()?);
        }
        Ok(path)
    }
    /// `$select=a,b,c` or `$select=*` (None: all fields).
    fn select(&mut self) -> R<Option<Vec<String>>> {
        if self.eat(Tok::Sym(b'*')) {
            return Ok(None);
        }
        let mut names = vec![self.path()?];
        while self.eat(Tok::Sym(b',')) {
            names.push(self.path()?);
        }
        Ok(Some(names))
    }
    /// `$orderby=a asc,b desc,c` — no direction means DESCENDING in pinejs.
    fn orderby(&mut self) -> R<Vec<(String, bool)>> {
        let mut keys = Vec::new();
        loop {
            let field = self.path()?;
            let desc = match self.eat(Tok::Space) {
                false => true,
                true => match self.name()?.as_str() {
                    "asc" => false,
                    "desc" => true,
                    _ => return Err(BadUrl),
                },
            };
            keys.push((field, desc));
            if !self.eat(Tok::Sym(b',')) {
                return Ok(keys);
            }
        }
    }
    /// `$expand=nav($select=a,b;$expand=x($select=y);$filter=...;$orderby=id asc),other,
    /// owns__device/$count($filter=...)`: nested options split by `;`, to any depth.
    fn expand(&mut self) -> R<Vec<Expand>> {
        let mut out = Vec::new();
        loop {
            let nav = self.name()?;
            let count = self.eat(Tok::Sym(b'/'));
            if count {
                self.expect(Tok::Sym(b'$'))?;
                self.word("count")?;
            }
            let mut e = Expand {
                nav,
                count,
                query: Query::default(),
            };
            if self.eat(Tok::Sym(b'(')) {
                loop {
                    if !(self.eat(Tok::Sym(b'$')) || self.eat(Tok::EncodedDollar)) {
                        return Err(BadUrl);
                    }
                    let option = self.name()?;
                    self.expect(Tok::Sym(b'='))?;
                    // Other nested options ($top, $skip, ...) are valid OData that this fake
                    // does not implement; a count takes only a filter.
                    match (option.as_str(), count) {
                        ("filter", _) => e.query.filter = Some(self.filter()?),
                        ("select", false) => e.query.select = self.select()?,
                        ("expand", false) => e.query.expand = self.expand()?,
                        ("orderby", false) => e.query.orderby = self.orderby()?,
                        _ => return Err(BadUrl),
                    }
                    if !self.eat(Tok::Sym(b';')) {
                        break;
                    }
                }
                self.expect(Tok::Sym(b')'))?;
            }
            out.push(e);
            if !self.eat(Tok::Sym(b',')) {
                return Ok(out);
            }
        }
    }
    /// Terms joined by `and`/`or`, equal precedence, left to right (pinejs' operatorPrecedence).
    fn filter(&mut self) -> R<Expr> {
        let mut lhs = self.term()?;
        loop {
            let before = self.at;
            self.skip_space();
            let and = match self.toks.get(self.at) {
                Some(Tok::Name(op)) if op == "and" || op == "or" => op == "and",
                _ => {
                    self.at = before; // trailing spaces are a syntax error, as in odata-parser
                    return Ok(lhs);
                }
            };
            self.at += 1;
            self.skip_space();
            let rhs = Box::new(self.term()?);
            lhs = if and {
                Expr::And(Box::new(lhs), rhs)
            } else {
                Expr::Or(Box::new(lhs), rhs)
            };
        }
    }
    fn term(&mut self) -> R<Expr> {
        if self.eat(Tok::Sym(b'(')) {
            self.skip_space();
            let e = self.filter()?;
            self.skip_space();
            self.expect(Tok::Sym(b')'))?;
            if matches!(e, Expr::Modulo) {
                // `(id mod 4) eq 1`
                self.comparison()?;
            }
            return Ok(e);
        }
        let mut field = self.name()?;
        if field == "1" {
            // `1 eq 1`; other constant comparisons are valid OData the fake does not implement.
            return match self.comparison()? {
                Some((Op::Eq, lit)) if lit == json!(1) => Ok(Expr::True),
                _ => Err(BadUrl),
            };
        }
        if let Some(var) = &self.var {
            if field != *var {
                return Err(BadUrl); // inside a lambda every field starts with its variable
            }
            self.expect(Tok::Sym(b'/'))?;
            field = self.name()?;
        }
        if self.eat(Tok::Sym(b'/')) {
            return self.lambda(&field);
        }
        if self.toks.get(self.at) == Some(&Tok::Space)
            && self.toks.get(self.at + 1) == Some(&Tok::Name("mod".into()))
        {
            self.at += 2;
            self.skip_space();
            match self.toks.get(self.at) {
                Some(Tok::Name(n)) if is_digits(n) => self.at += 1,
                _ => return Err(BadUrl),
            }
            self.comparison()?;
            return Ok(Expr::Modulo);
        }
        let (op, lit) = self.comparison()?.ok_or(BadUrl)?;
        Ok(Expr::Cmp { field, op, lit })
    }
    /// ` <op> <literal>` if it comes next (None if no comparison operator follows).
    fn comparison(&mut self) -> R<Option<(Op, Value)>> {
        let op = match (self.toks.get(self.at), self.toks.get(self.at + 1)) {
            (Some(Tok::Space), Some(Tok::Name(op))) => match op.as_str() {
                "eq" => Op::Eq,
                "ne" => Op::Ne,
                "gt" => Op::Gt,
                "ge" => Op::Ge,
                "lt" => Op::Lt,
                "le" => Op::Le,
                "and" | "or" => return Ok(None),
                _ => return Err(BadUrl), // functions and the rest: valid OData, not implemented here
            },
            _ => return Ok(None),
        };
        self.at += 2;
        self.skip_space();
        let lit = match self.toks.get(self.at) {
            Some(Tok::Str(s)) => Value::from(s.as_str()),
            Some(Tok::Name(n)) => match n.as_str() {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                "null" => Value::Null,
                n => json!(n.parse::<i64>().map_err(|_| BadUrl)?),
            },
            _ => return Err(BadUrl),
        };
        self.at += 1;
        Ok(Some((op, lit)))
    }
    /// After `nav/`: `any(v:<filter on v>)`; the user-access lambda takes only `1 eq 1` (any
    /// other lambda → 400).
    fn lambda(&mut self, nav: &str) -> R<Expr> {
        self.word("any")?;
        self.expect(Tok::Sym(b'('))?;
        self.skip_space();
        let var = self.name()?;
        self.expect(Tok::Sym(b':'))?;
        let outer = self.var.replace(var);
        let body = self.filter();
        self.var = outer;
        let body = body?;
        self.skip_space();
        self.expect(Tok::Sym(b')'))?;
        match (nav, body) {
            ("is_directly_accessible_by__user", Expr::True) => Ok(Expr::UserAccess),
            ("is_directly_accessible_by__user", _) => Err(BadUrl),
            (nav, body) => Ok(Expr::Any {
                nav: nav.to_owned(),
                body: Box::new(body),
            }),
        }
    }
}
