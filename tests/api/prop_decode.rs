//! Bad API bodies never panic or hang: random bytes, random JSON and mutated recordings of a
//! real balena API decode to the models or fail with an error, and whatever decodes, fed as
//! pages through the production render path, joins (each device once, or counted as an
//! orphan) and renders as metrics, service discovery and the status page.

use crate::common;

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use balena_exporter::balena::model::{Actor, Device, Envelope, Fleet};
use balena_exporter::config::{CrawlConfig, FleetFilter, SdConfig, SdMode, TagFilter};
use balena_exporter::render::{Pages, Reading, Rendered, Settings};
use balena_exporter::status::{self, CrawlReport};
use common::{promtext, props};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{select, Index};

const CASES: u32 = 256;

/// Fleet lists recorded from a real balena API server (tests/fixtures/recorded/README.md), and
/// one shaped as the exporter's own query is answered (`$expand` gives arrays).
const FLEET_SEEDS: &[&str] = &[
    include_str!("../fixtures/recorded/application-v7.json"),
    r#"{"d":[{"id":1,"app_name":"kiosks","slug":"acme/kiosks","organization":[{"handle":"acme"}],
    "is_for__device_type":[{"slug":"raspberrypi4-64"}],
    "should_be_running__release":[{"commit":"0123456789abcdef0123456789abcdef"}]},
    {"id":2,"app_name":"empty","slug":"acme/empty","organization":[{"handle":"acme"}],
    "is_for__device_type":[{"slug":"raspberrypi3"}],"should_be_running__release":[]}]}"#,
];

/// Device lists likewise: recorded, and with every field the exporter selects.
const DEVICE_SEEDS: &[&str] = &[
    include_str!("../fixtures/recorded/device-v7.json"),
    include_str!("../fixtures/recorded/device-states-v6.json"),
    include_str!("../fixtures/recorded/device-states-v7.json"),
    r#"{"d":[{"id":1,"uuid":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa01","device_name":"pi",
    "belongs_to__application":{"__id":1},"is_of__device_type":[{"slug":"raspberrypi4-64"}],
    "is_online":true,"last_connectivity_event":"2026-11-21T20:27:10.768Z",
    "api_heartbeat_state":"online","overall_status":"operational","os_version":"balenaOS 6.0.13",
    "os_variant":"prod","supervisor_version":"16.7.4",
    "is_running__release":[{"id":7,"commit":"0123456789abcdef0123456789abcdef"}],
    "should_be_running__release":{"__id":7},"cpu_usage":40,"cpu_temp":55,"memory_usage":100,
    "memory_total":3800,"storage_usage":4000,"storage_total":29000,"is_undervolted":false,
    "is_web_accessible":true,"ip_address":"192.168.1.10 fe80::1"},
    {"id":2,"uuid":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa02","device_name":null,
    "belongs_to__application":{"__id":2},"is_of__device_type":[],"is_online":false,
    "last_connectivity_event":null,"api_heartbeat_state":"timeout","overall_status":"disconnected",
    "os_version":null,"os_variant":null,"supervisor_version":null,"is_running__release":[],
    "should_be_running__release":null,"cpu_usage":null,"cpu_temp":null,"memory_usage":null,
    "memory_total":null,"storage_usage":null,"storage_total":null,"is_undervolted":null,
    "is_web_accessible":false,"ip_address":null}]}"#,
];

/// whoami of a user key (as recorded in the project's API notes) and of a device key.
const ACTOR_SEEDS: &[&str] = &[
    r#"{"id":2,"actorType":"user","actorTypeId":2,"username":"admin","email":"admin@example.com"}"#,
    r#"{"id":101,"actorType":"device","actorTypeId":1,"uuid":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa01"}"#,
];

fn all_seeds() -> impl Iterator<Item = &'static str> {
    FLEET_SEEDS
        .iter()
        .chain(DEVICE_SEEDS)
        .chain(ACTOR_SEEDS)
        .copied()
}

/// A JSON document that can say what `serde_json::Value` cannot: duplicate keys, and numbers
/// exactly as written (`1e400`, `-0`, 20 digits).
#[derive(Clone)]
enum Json {
    Null,
    Bool(bool),
    Number(String),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    fn parse(text: &str) -> Json {
        Json::from(&serde_json::from_str::<serde_json::Value>(text).expect("a seed is JSON"))
    }

    fn text(&self) -> String {
        let mut out = String::new();
        self.write(&mut out);
        out
    }

    fn write(&self, out: &mut String) {
        let string = |out: &mut String, s: &str| {
            out.push_str(&serde_json::to_string(s).expect("strings serialize"))
        };
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Number(n) => out.push_str(n),
            Json::Str(s) => string(out, s),
            Json::Arr(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write(out);
                }
                out.push(']');
            }
            Json::Obj(entries) => {
                out.push('{');
                for (i, (key, value)) in entries.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    string(out, key);
                    out.push(':');
                    value.write(out);
                }
                out.push('}');
            }
        }
    }

    fn len(&self) -> usize {
        match self {
            Json::Arr(items) => items.len(),
            Json::Obj(entries) => entries.len(),
            _ => 0,
        }
    }

    fn child_mut(&mut self, i: usize) -> &mut Json {
        match self {
            Json::Arr(items) => &mut items[i],
            Json::Obj(entries) => &mut entries[i].1,
            _ => unreachable!("scalars have no children"),
        }
    }

    fn at_mut(&mut self, path: &[usize]) -> &mut Json {
        let mut node = self;
        for &i in path {
            node = node.child_mut(i);
        }
        node
    }

    /// The path of every node, the root (`[]`) first.
    fn paths(&mut self) -> Vec<Vec<usize>> {
        fn walk(node: &mut Json, at: &mut Vec<usize>, out: &mut Vec<Vec<usize>>) {
            out.push(at.clone());
            for i in 0..node.len() {
                at.push(i);
                walk(node.child_mut(i), at, out);
                at.pop();
            }
        }
        let mut out = Vec::new();
        walk(self, &mut Vec::new(), &mut out);
        out
    }
}

impl From<&serde_json::Value> for Json {
    fn from(value: &serde_json::Value) -> Json {
        use serde_json::Value;
        match value {
            Value::Null => Json::Null,
            Value::Bool(b) => Json::Bool(*b),
            Value::Number(n) => Json::Number(n.to_string()),
            Value::String(s) => Json::Str(s.clone()),
            Value::Array(items) => Json::Arr(items.iter().map(Json::from).collect()),
            Value::Object(entries) => Json::Obj(
                entries
                    .iter()
                    .map(|(k, v)| (k.clone(), Json::from(v)))
                    .collect(),
            ),
        }
    }
}

/// Failures print the JSON text, not the tree.
impl fmt::Debug for Json {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text())
    }
}

/// An API body as bytes; printed as (lossy) text.
#[derive(Clone)]
struct Body(Vec<u8>);

impl From<Json> for Body {
    fn from(json: Json) -> Body {
        Body(json.text().into_bytes())
    }
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(&self.0))
    }
}

/// The keys the models read, so random objects hit them.
const KEYS: &[&str] = &[
    "d",
    "id",
    "uuid",
    "device_name",
    "belongs_to__application",
    "is_of__device_type",
    "is_online",
    "last_connectivity_event",
    "api_heartbeat_state",
    "overall_status",
    "os_version",
    "os_variant",
    "supervisor_version",
    "is_running__release",
    "should_be_running__release",
    "cpu_usage",
    "cpu_temp",
    "memory_usage",
    "memory_total",
    "storage_usage",
    "storage_total",
    "is_undervolted",
    "is_web_accessible",
    "ip_address",
    "app_name",
    "slug",
    "organization",
    "is_for__device_type",
    "handle",
    "commit",
    "__id",
    "actorType",
    "username",
];

/// Numbers as written; the first ones fit an f64, the rest decode as errors or not at all.
const EDGE_NUMBERS: &[&str] = &[
    "-0",
    "0.0",
    "-1",
    "0.5",
    "1e2",
    "1E-2",
    "100.0",
    "5e-324",
    "1e300",
    "1.7976931348623157e308",
    "-1.7976931348623157e308",
    "18446744073709551615",
    "123456789012345678901234567890",
    // Out of range for f64 or u64.
    "1e400",
    "-1e400",
    "18446744073709551616",
    "-9223372036854775809",
];
const IN_RANGE: usize = 13;

/// Strings the API sends, odd timestamps and addresses, and some that it never would.
const WORDS: &[&str] = &[
    "",
    " ",
    "operational",
    "updating",
    "configuring",
    "online",
    "offline",
    "unknown",
    "2026-11-21T20:27:10.768Z",
    "2026-11-21T20:27:10Z",
    "2026-11-21 20:27:10",
    "1969-12-31T23:59:59Z",
    "1970-01-01T00:00:00Z",
    "9999-12-31T23:59:59.999Z",
    "0000-01-01T00:00:00Z",
    "2026-02-30T00:00:00Z",
    "garbage",
    "192.168.1.10",
    "192.168.1.10  10.114.101.2 ",
    "fe80::1",
    "acme/kiosks",
    "raspberrypi4-64",
    "balenaOS 6.0.13",
];

const ODD_CHARS: &[char] = &[
    '"', '\\', '\n', '\r', '\t', '\0', '\u{7f}', '\u{2028}', '\u{feff}', '<', '>', '&', '\'', '{',
    '}', ':', ' ', 'é', '☃', '😀',
];

fn text() -> impl Strategy<Value = String> + Clone {
    prop_oneof![
        3 => select(WORDS).prop_map(String::from),
        2 => any::<String>(),
        1 => vec(select(ODD_CHARS), 0..8).prop_map(String::from_iter),
    ]
}

/// A number's text: small ids, any integer, any finite float, edge cases; `in_range` leaves
/// out the ones that do not fit an f64 or u64.
fn number(in_range: bool) -> impl Strategy<Value = String> {
    let edges = if in_range {
        &EDGE_NUMBERS[..IN_RANGE]
    } else {
        EDGE_NUMBERS
    };
    prop_oneof![
        3 => (0u64..40).prop_map(|n| n.to_string()),
        1 => any::<i64>().prop_map(|n| n.to_string()),
        1 => any::<u64>().prop_map(|n| n.to_string()),
        1 => any::<f64>()
            .prop_filter("JSON has no NaN or infinity", |f| f.is_finite())
            .prop_map(|f| serde_json::to_string(&f).expect("finite floats serialize")),
        1 => select(edges).prop_map(String::from),
    ]
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![4 => select(KEYS).prop_map(String::from), 1 => text()]
}

/// Any JSON value, up to 4 levels deep.
fn json_value() -> impl Strategy<Value = Json> {
    let leaf = prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::Bool),
        number(false).prop_map(Json::Number),
        text().prop_map(Json::Str),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Json::Arr),
            vec((key(), inner), 0..8).prop_map(Json::Obj),
        ]
    })
}

fn envelope(items: Vec<Json>) -> Json {
    Json::Obj(vec![("d".into(), Json::Arr(items))])
}

type Field = BoxedStrategy<Option<(String, Json)>>;

/// A field that is usually there; when `strict` is false, its value is now and then of any
/// type at all.
fn field(key: &'static str, value: impl Strategy<Value = Json> + 'static, strict: bool) -> Field {
    let value = if strict {
        value.boxed()
    } else {
        prop_oneof![12 => value, 1 => json_value()].boxed()
    };
    proptest::option::weighted(0.85, value.prop_map(move |v| (key.to_string(), v))).boxed()
}

/// A field that a model requires: always there when `strict`.
fn required(
    key: &'static str,
    value: impl Strategy<Value = Json> + 'static,
    strict: bool,
) -> Field {
    if strict {
        value.prop_map(move |v| Some((key.to_string(), v))).boxed()
    } else {
        field(key, value, strict)
    }
}

fn record(fields: Vec<Field>) -> impl Strategy<Value = Json> + Clone {
    fields.prop_map(|fields| Json::Obj(fields.into_iter().flatten().collect()))
}

fn id(range: std::ops::Range<u64>) -> impl Strategy<Value = Json> {
    range.prop_map(|n| Json::Number(n.to_string()))
}

fn string() -> impl Strategy<Value = Json> + Clone {
    text().prop_map(Json::Str)
}

fn boolean() -> impl Strategy<Value = Json> {
    nullable(any::<bool>().prop_map(Json::Bool))
}

fn nullable(value: impl Strategy<Value = Json>) -> impl Strategy<Value = Json> {
    prop_oneof![1 => Just(Json::Null), 4 => value]
}

fn reference(id: u64) -> Json {
    Json::Obj(vec![("__id".into(), Json::Number(id.to_string()))])
}

/// An expanded navigation in each shape the API may use: `[x]`, `[]`, `null`, a bare `x`, an
/// unexpanded `{"__id":n}`, or more than one.
fn link(inner: impl Strategy<Value = Json> + Clone) -> impl Strategy<Value = Json> {
    prop_oneof![
        4 => inner.clone().prop_map(|v| Json::Arr(vec![v])),
        1 => inner.clone(),
        1 => Just(Json::Arr(vec![])),
        1 => Just(Json::Null),
        1 => (0u64..8).prop_map(reference),
        1 => vec(inner, 2..4).prop_map(Json::Arr),
    ]
}

fn one(
    key: &'static str,
    value: impl Strategy<Value = Json> + Clone,
) -> impl Strategy<Value = Json> + Clone {
    value.prop_map(move |v| Json::Obj(vec![(key.to_string(), v)]))
}

fn release() -> impl Strategy<Value = Json> + Clone {
    record(vec![
        field("id", nullable(id(0..8)), true),
        field("commit", string(), true),
    ])
}

/// A fleet as the exporter's query answers it, ids 0 to 5 so that devices find them (and
/// sometimes two fleets share one). `strict`: every value of its field's type.
fn fleet(strict: bool) -> impl Strategy<Value = Json> {
    record(vec![
        required("id", id(0..6), strict),
        required("app_name", string(), strict),
        required("slug", string(), strict),
        field("organization", link(one("handle", string())), strict),
        field("is_for__device_type", link(one("slug", string())), strict),
        field("should_be_running__release", link(release()), strict),
    ])
}

/// A device as the exporter's query answers it, in fleets 0 to 7 (so some are orphans).
fn device(strict: bool) -> impl Strategy<Value = Json> {
    let metric = || nullable(number(true).prop_map(Json::Number));
    record(vec![
        required("id", id(0..20), strict),
        field("uuid", string(), strict),
        field("device_name", nullable(string()), strict),
        field(
            "belongs_to__application",
            nullable((0u64..8).prop_map(reference)),
            strict,
        ),
        field("is_of__device_type", link(one("slug", string())), strict),
        field("is_online", boolean(), strict),
        field("last_connectivity_event", nullable(string()), strict),
        field("api_heartbeat_state", nullable(string()), strict),
        field("overall_status", nullable(string()), strict),
        field("os_version", nullable(string()), strict),
        field("os_variant", nullable(string()), strict),
        field("supervisor_version", nullable(string()), strict),
        field("is_running__release", link(release()), strict),
        field(
            "should_be_running__release",
            nullable((0u64..8).prop_map(reference)),
            strict,
        ),
        field("cpu_usage", metric(), strict),
        field("cpu_temp", metric(), strict),
        field("memory_usage", metric(), strict),
        field("memory_total", metric(), strict),
        field("storage_usage", metric(), strict),
        field("storage_total", metric(), strict),
        field("is_undervolted", boolean(), strict),
        field("is_web_accessible", boolean(), strict),
        field("ip_address", nullable(string()), strict),
    ])
}

/// One change to a document's tree, at the node that `Index` picks (in document order).
#[derive(Clone, Debug)]
enum Edit {
    /// The node becomes any other value.
    Replace(Index, Json),
    /// The node becomes a value of another JSON type, made from it (`1` → `"1"`, `x` → `[x]`).
    Retype(Index, usize),
    /// The node is removed from its object or array.
    Delete(Index),
    /// The node is there twice: an object's key repeated, or an array's element.
    Duplicate(Index),
    /// The node is wrapped in this many arrays (past serde_json's recursion limit of 128).
    Nest(Index, usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        2 => (any::<Index>(), json_value()).prop_map(|(i, v)| Edit::Replace(i, v)),
        3 => (any::<Index>(), any::<usize>()).prop_map(|(i, c)| Edit::Retype(i, c)),
        2 => any::<Index>().prop_map(Edit::Delete),
        2 => any::<Index>().prop_map(Edit::Duplicate),
        1 => (any::<Index>(), select(&[1usize, 2, 100, 127, 128, 129, 1000][..]))
            .prop_map(|(i, d)| Edit::Nest(i, d)),
    ]
}

fn retyped(node: &Json, choice: usize) -> Json {
    let wrapped = || Json::Arr(vec![node.clone()]);
    let options: Vec<Json> = match node {
        Json::Null => vec![
            Json::Bool(false),
            Json::Number("0".into()),
            Json::Str(String::new()),
            Json::Arr(vec![]),
            Json::Obj(vec![]),
        ],
        Json::Bool(b) => vec![
            Json::Str(b.to_string()),
            Json::Number(u8::from(*b).to_string()),
            Json::Null,
            wrapped(),
        ],
        Json::Number(n) => vec![
            Json::Str(n.clone()),
            Json::Bool(true),
            Json::Null,
            wrapped(),
            Json::Obj(vec![("__id".into(), node.clone())]),
        ],
        Json::Str(s) => vec![
            Json::Number(if s.parse::<f64>().is_ok() {
                s.clone()
            } else {
                "1".into()
            }),
            Json::Bool(!s.is_empty()),
            Json::Null,
            wrapped(),
            Json::Obj(vec![("slug".into(), node.clone())]),
        ],
        Json::Arr(items) => vec![
            items.first().cloned().unwrap_or(Json::Null),
            Json::Obj(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| (i.to_string(), v.clone()))
                    .collect(),
            ),
            Json::Str(node.text()),
            Json::Null,
        ],
        Json::Obj(entries) => vec![
            wrapped(),
            entries.first().map_or(Json::Null, |(_, v)| v.clone()),
            Json::Str(node.text()),
            Json::Number("1".into()),
            Json::Null,
        ],
    };
    options[choice % options.len()].clone()
}

fn apply(mut doc: Json, edit: &Edit) -> Json {
    let paths = doc.paths();
    let pick = |i: &Index| paths[i.index(paths.len())].clone();
    match edit {
        Edit::Replace(i, value) => *doc.at_mut(&pick(i)) = value.clone(),
        Edit::Retype(i, choice) => {
            let node = doc.at_mut(&pick(i));
            *node = retyped(node, *choice);
        }
        Edit::Nest(i, depth) => {
            let node = doc.at_mut(&pick(i));
            let mut nested = std::mem::replace(node, Json::Null);
            for _ in 0..*depth {
                nested = Json::Arr(vec![nested]);
            }
            *node = nested;
        }
        Edit::Delete(i) | Edit::Duplicate(i) => {
            let delete = matches!(edit, Edit::Delete(_));
            let path = pick(i);
            let Some((&last, parent)) = path.split_last() else {
                return if delete {
                    Json::Null
                } else {
                    Json::Arr(vec![doc.clone(), doc])
                };
            };
            match doc.at_mut(parent) {
                Json::Arr(items) if delete => {
                    items.remove(last);
                }
                Json::Arr(items) => items.insert(last + 1, items[last].clone()),
                Json::Obj(entries) if delete => {
                    entries.remove(last);
                }
                Json::Obj(entries) => entries.insert(last + 1, entries[last].clone()),
                _ => unreachable!("a parent is an array or an object"),
            }
        }
    }
    doc
}

/// One change to a body's bytes; positions are picked by `Index`.
#[derive(Clone, Debug)]
enum ByteEdit {
    /// One bit flipped.
    Flip(Index, u8),
    /// The body cut short.
    Truncate(Index),
    /// The body up to a point, then a seed from a point on.
    Splice(Index, Index, Index),
    /// Bytes inserted.
    Insert(Index, Vec<u8>),
    /// Up to this many bytes removed.
    Remove(Index, usize),
}

fn byte_edit() -> impl Strategy<Value = ByteEdit> {
    prop_oneof![
        (any::<Index>(), 0u8..8).prop_map(|(i, bit)| ByteEdit::Flip(i, bit)),
        any::<Index>().prop_map(ByteEdit::Truncate),
        (any::<Index>(), any::<Index>(), any::<Index>())
            .prop_map(|(i, seed, j)| ByteEdit::Splice(i, seed, j)),
        (any::<Index>(), vec(any::<u8>(), 1..8)).prop_map(|(i, b)| ByteEdit::Insert(i, b)),
        (any::<Index>(), 1usize..16).prop_map(|(i, n)| ByteEdit::Remove(i, n)),
    ]
}

fn apply_bytes(bytes: &mut Vec<u8>, edit: &ByteEdit) {
    let at = |i: &Index, len: usize| i.index(len + 1);
    match edit {
        ByteEdit::Flip(i, bit) => {
            if !bytes.is_empty() {
                let at = i.index(bytes.len());
                bytes[at] ^= 1 << bit;
            }
        }
        ByteEdit::Truncate(i) => bytes.truncate(at(i, bytes.len())),
        ByteEdit::Splice(i, seed, j) => {
            let seeds: Vec<&str> = all_seeds().collect();
            let other = seeds[seed.index(seeds.len())].as_bytes();
            bytes.truncate(at(i, bytes.len()));
            bytes.extend_from_slice(&other[at(j, other.len())..]);
        }
        ByteEdit::Insert(i, inserted) => {
            let at = at(i, bytes.len());
            bytes.splice(at..at, inserted.iter().copied());
        }
        ByteEdit::Remove(i, n) => {
            let at = at(i, bytes.len());
            let end = (at + n).min(bytes.len());
            bytes.drain(at..end);
        }
    }
}

/// `seed` after 0 to 3 tree edits (mostly 1), serialized, then now and then 1 or 2 byte edits
/// (which seldom leave JSON that decodes).
fn mutated(seed: impl Strategy<Value = Json>) -> impl Strategy<Value = Body> {
    let edits = prop_oneof![
        1 => Just(vec![]),
        3 => vec(edit(), 1..=1),
        1 => vec(edit(), 2..=3),
    ];
    let byte_edits = prop_oneof![3 => Just(vec![]), 1 => vec(byte_edit(), 1..=2)];
    (seed, edits, byte_edits).prop_map(|(seed, edits, byte_edits)| {
        let doc = edits.iter().fold(seed, apply);
        let mut bytes = doc.text().into_bytes();
        for e in &byte_edits {
            apply_bytes(&mut bytes, e);
        }
        Body(bytes)
    })
}

fn seeds(texts: &[&str]) -> Vec<Json> {
    texts.iter().map(|t| Json::parse(t)).collect()
}

/// A fleet list: generated with values of the right types, or a recorded or generated one
/// mutated.
fn fleet_body() -> impl Strategy<Value = Body> {
    list_body(fleet, 6, FLEET_SEEDS)
}

/// A device list, likewise.
fn device_body() -> impl Strategy<Value = Body> {
    list_body(device, 8, DEVICE_SEEDS)
}

/// A list of up to `most` rows made by `row(true)` (values of the right types), or a recorded
/// one or one of `row(false)` (any values), mutated.
fn list_body<S>(row: fn(bool) -> S, most: usize, recorded: &[&str]) -> impl Strategy<Value = Body>
where
    S: Strategy<Value = Json> + 'static,
{
    prop_oneof![
        2 => vec(row(true), 0..most).prop_map(|rows| Body::from(envelope(rows))),
        1 => mutated(prop_oneof![
            select(seeds(recorded)),
            vec(row(false), 0..4).prop_map(envelope),
        ]),
    ]
}

const JSON_BYTES: &[u8] = b"{}[]\":,.-+eE0123456789 \n\\truefalsnd_";

/// Anything at all: random bytes, random bytes of JSON's alphabet, random JSON, and mutations.
fn any_body() -> impl Strategy<Value = Body> {
    let all: Vec<&str> = all_seeds().collect();
    prop_oneof![
        1 => vec(any::<u8>(), 0..256).prop_map(Body),
        1 => vec(select(JSON_BYTES), 0..256).prop_map(Body),
        1 => json_value().prop_map(Body::from),
        1 => vec(json_value(), 0..4).prop_map(|v| Body::from(envelope(v))),
        4 => mutated(prop_oneof![
            select(seeds(&all)),
            vec(fleet(false), 0..4).prop_map(envelope),
            vec(device(false), 0..4).prop_map(envelope),
        ]),
    ]
}

fn sd_configs() -> Vec<SdConfig> {
    let lan = SdConfig {
        mode: SdMode::Lan { port: 9100 },
        fleets: FleetFilter::default(),
        include_offline: true,
        metrics_path: "/metrics".into(),
        file: None,
        own_uuid: None,
    };
    let public = SdConfig {
        mode: SdMode::Public {
            domain: "balena-devices.com".into(),
        },
        fleets: FleetFilter::new(vec!["acme/kiosks".into(), "testfleet".into()]),
        include_offline: false,
        own_uuid: Some("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa01".into()),
        ..lan.clone()
    };
    vec![lan, public]
}

/// A crawl of every fleet that reads neither services nor tags.
fn crawl() -> CrawlConfig {
    CrawlConfig {
        interval: std::time::Duration::from_secs(60),
        full_interval: None,
        page_size: 1000,
        fleets: FleetFilter::default(),
        services: false,
        tags: TagFilter::None,
        location: true,
        ignore_services: vec![],
    }
}

fn render(pages: &Pages, sd: &SdConfig, device_metrics: bool) -> Result<Rendered, TestCaseError> {
    let settings = Settings {
        device_metrics,
        sd: Arc::new(sd.clone()),
        dashboard: None,
    };
    pages
        .render(&settings, &crawl(), std::time::SystemTime::now())
        .map_err(|e| TestCaseError::fail(format!("pages that decode do not render: {e}")))
}

fn body_text(body: &balena_exporter::state::Body) -> Result<String, TestCaseError> {
    let bytes = body
        .text()
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    String::from_utf8(bytes).map_err(|e| TestCaseError::fail(e.to_string()))
}

/// Renders `pages` every way the exporter does, checking what a user would see; the
/// rendering of the first way.
fn render_all(pages: &Pages) -> Result<Rendered, TestCaseError> {
    let configs = sd_configs();
    let rendered = render(pages, &configs[0], true)?;
    let text_of = body_text(&rendered.metrics)?;
    // The devices kept for incremental crawls render to the same bytes, when the device ids
    // go up as a crawl reads them (it fails on any that does not: paging).
    if ids_ascend(pages) {
        same_when_kept(pages, &configs[0])?;
    }
    // Panics (a failure) on any line that is not a sample of the text format.
    let samples = promtext::parse(&text_of);
    for sample in &samples {
        // Nothing may be infinite or NaN: the API's numbers are finite, and so are their
        // conversions (MiB to bytes past ±1.7e302 MiB would not be: such values are dropped).
        prop_assert!(
            sample.value.is_finite(),
            "{} {:?} is {}",
            sample.name,
            sample.labels,
            sample.value
        );
    }
    let fleet_devices = promtext::family(&samples, "balena_fleet_devices");
    prop_assert_eq!(fleet_devices.len(), rendered.fleets);
    let counted: f64 = fleet_devices.iter().map(|f| f.value).sum();
    prop_assert_eq!(counted, rendered.devices as f64);
    prop_assert_eq!(
        promtext::family(&samples, "balena_device_info").len(),
        rendered.devices
    );
    if let Some(gzip) = rendered.metrics.gzip() {
        prop_assert_eq!(gzip.inflate().ok(), Some(text_of.clone().into_bytes()));
    }
    let off = render(pages, &configs[0], false)?;
    prop_assert!(!body_text(&off.metrics)?.contains("balena_device_"));

    for config in &configs {
        let json = body_text(&render(pages, config, true)?.sd)?;
        let groups: Vec<serde_json::Value> =
            serde_json::from_str(&json).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(groups.len() <= rendered.devices);
        for group in &groups {
            prop_assert!(group["targets"].as_array().is_some_and(|t| !t.is_empty()));
        }
    }

    let (head, rest) = status::page(&CrawlReport::default(), Some(&rendered.fleets_html));
    let html = head + &rest;
    // A row per fleet (the 100 largest), with its severity, and a total row.
    prop_assert!(html.matches("<tr class=\"").count() >= rendered.fleets.min(100));
    Ok(rendered)
}

/// `pages` rendered as a full crawl and through the kept devices: the same bytes.
fn same_when_kept(pages: &Pages, sd: &SdConfig) -> Result<(), TestCaseError> {
    let settings = Settings {
        device_metrics: true,
        sd: Arc::new(sd.clone()),
        dashboard: None,
    };
    let now = std::time::SystemTime::now();
    let kept = pages
        .render_kept(&settings, &crawl(), now)
        .map_err(|e| TestCaseError::fail(format!("kept devices do not render: {e}")))?;
    let full = pages
        .render(&settings, &crawl(), now)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(body_text(&full.metrics)?, body_text(&kept.metrics)?);
    prop_assert_eq!(body_text(&full.sd)?, body_text(&kept.sd)?);
    prop_assert_eq!(&full.fleets_html, &kept.fleets_html);
    Ok(())
}

/// Whether the device ids of `pages` go up from row to row, as keyset paging reads them.
fn ids_ascend(pages: &Pages) -> bool {
    let ids: Vec<u64> = pages
        .devices
        .iter()
        .filter_map(|p| serde_json::from_slice::<serde_json::Value>(p).ok())
        .flat_map(|page| {
            let rows = page["d"].as_array().cloned().unwrap_or_default();
            rows.into_iter().map(|r| r["id"].as_u64().unwrap_or(0))
        })
        .collect();
    ids.windows(2).all(|w| w[0] < w[1])
}

#[test]
fn the_seeds_decode() {
    for seed in FLEET_SEEDS {
        serde_json::from_str::<Envelope<Fleet>>(seed).unwrap();
    }
    for seed in DEVICE_SEEDS {
        serde_json::from_str::<Envelope<Device>>(seed).unwrap();
    }
    for seed in ACTOR_SEEDS {
        serde_json::from_str::<Actor>(seed).unwrap();
    }
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    for depth in [127, 128, 129, 100_000] {
        let body = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        assert!(serde_json::from_str::<Envelope<Device>>(&body).is_err());
        let body = format!(
            r#"{{"d":[{{"id":1,"x":{}1{}}}]}}"#,
            "[".repeat(depth),
            "]".repeat(depth)
        );
        let _ = serde_json::from_str::<Envelope<Device>>(&body);
        let _ = serde_json::from_str::<Envelope<Fleet>>(&body);
    }
}

#[test]
fn any_body_decodes_or_fails_cleanly_and_what_decodes_renders() {
    // Cases, and those that decoded as fleets, devices, an actor.
    let counts: Arc<[AtomicUsize; 4]> = Arc::default();
    let count = counts.clone();
    props::check(
        "any_body_decodes_or_fails_cleanly_and_what_decodes_renders",
        CASES,
        any_body,
        move |body| {
            count[0].fetch_add(1, Ordering::Relaxed);
            if let Ok(actor) = serde_json::from_slice::<Actor>(&body.0) {
                count[3].fetch_add(1, Ordering::Relaxed);
                let _ = format!("{actor:?}");
            }
            if let Ok(fleets) = serde_json::from_slice::<Envelope<Fleet>>(&body.0) {
                count[1].fetch_add(1, Ordering::Relaxed);
                let pages = Pages {
                    fleets: vec![body.0.clone()],
                    ..Pages::default()
                };
                let rendered = render_all(&pages)?;
                prop_assert_eq!(rendered.orphans, 0);
                prop_assert_eq!(rendered.fleets, fleets.d.len());
            }
            if let Ok(devices) = serde_json::from_slice::<Envelope<Device>>(&body.0) {
                count[2].fetch_add(1, Ordering::Relaxed);
                // Fleets for every fleet the devices name, so that all of them join.
                let mut ids: Vec<u64> = devices
                    .d
                    .iter()
                    .filter_map(|d| d.fleet.as_ref().map(|r| r.__id))
                    .collect();
                ids.sort_unstable();
                ids.dedup();
                let fleets: Vec<serde_json::Value> = ids
                    .iter()
                    .map(|id| {
                        serde_json::json!(
                            {"id": id, "app_name": format!("fleet {id}"), "slug": format!("o/{id}")}
                        )
                    })
                    .collect();
                let pages = Pages {
                    fleets: vec![serde_json::json!({ "d": fleets }).to_string().into_bytes()],
                    devices: vec![body.0.clone()],
                    ..Pages::default()
                };
                let without_fleet = devices.d.iter().filter(|d| d.fleet.is_none()).count();
                let total = devices.d.len();
                let rendered = render_all(&pages)?;
                // Without a fleet to watch, the crawl reads no devices.
                if !ids.is_empty() {
                    prop_assert_eq!(rendered.orphans, without_fleet);
                    prop_assert_eq!(rendered.devices, total - without_fleet);
                }
            }
            Ok(())
        },
    );
    let [cases, fleets, devices, actors] = counts.each_ref().map(|c| c.load(Ordering::Relaxed));
    eprintln!(
        "of {cases} bodies, {fleets} decoded as fleets, {devices} as devices, {actors} as an actor"
    );
    assert!(
        (fleets + devices) * 20 >= cases,
        "too few bodies decoded as fleets or devices: the property tests too little"
    );
}

/// (fleet slug, uuid) of every device that names a fleet of `fleets`, sorted: a device of a
/// fleet id listed twice joins the last fleet of that id.
fn joined(devices: &[Device<'_>], fleets: &[Fleet<'_>]) -> Vec<(String, String)> {
    let slugs: std::collections::HashMap<u64, &str> =
        fleets.iter().map(|f| (f.id, &*f.slug)).collect();
    let mut keys: Vec<_> = devices
        .iter()
        .filter_map(|d| {
            let slug = slugs.get(&d.fleet.as_ref()?.__id)?;
            Some((slug.to_string(), d.uuid.to_string()))
        })
        .collect();
    keys.sort();
    keys
}

/// `body`'s rows in pages of the given sizes (and a last page with the rest), as a server
/// that pages them would answer.
fn paged(body: &[u8], sizes: &[usize]) -> Vec<Vec<u8>> {
    let Ok(serde_json::Value::Object(mut envelope)) = serde_json::from_slice(body) else {
        return vec![body.to_vec()];
    };
    let Some(serde_json::Value::Array(mut rows)) = envelope.remove("d") else {
        return vec![body.to_vec()];
    };
    let mut pages = Vec::new();
    for &size in sizes {
        let rest = rows.split_off(size.min(rows.len()));
        let page = std::mem::replace(&mut rows, rest);
        pages.push(serde_json::json!({ "d": page }).to_string().into_bytes());
    }
    pages.push(serde_json::json!({ "d": rows }).to_string().into_bytes());
    pages
}

#[test]
fn decoded_fleets_and_devices_join_and_render() {
    let cases = Arc::new(AtomicUsize::new(0));
    let decoded = Arc::new(AtomicUsize::new(0));
    let (all, both) = (cases.clone(), decoded.clone());
    props::check(
        "decoded_fleets_and_devices_join_and_render",
        CASES,
        || (fleet_body(), device_body(), vec(1usize..5, 0..6)),
        move |(fleet_body, device_body, sizes)| {
            all.fetch_add(1, Ordering::Relaxed);
            let decode = || {
                let fleets = serde_json::from_slice::<Envelope<Fleet>>(&fleet_body.0).ok()?;
                let devices = serde_json::from_slice::<Envelope<Device>>(&device_body.0).ok()?;
                Some((fleets.d, devices.d))
            };
            let Some((fleets, devices)) = decode() else {
                return Ok(());
            };
            both.fetch_add(1, Ordering::Relaxed);
            let fleet_ids: Vec<u64> = fleets.iter().map(|f| f.id).collect();
            let expected = joined(&devices, &fleets);
            let pages = Pages {
                fleets: vec![fleet_body.0.clone()],
                devices: vec![device_body.0.clone()],
                ..Pages::default()
            };
            let rendered = render_all(&pages)?;
            let settings = Settings {
                device_metrics: true,
                sd: Arc::new(sd_configs().remove(0)),
                dashboard: None,
            };
            let mut reading = Reading::new(&settings, &crawl());
            prop_assert!(reading.fleet_page(&fleet_body.0).is_ok());
            prop_assert_eq!(reading.fleet_ids(), fleet_ids.clone());
            prop_assert_eq!(rendered.fleets, fleets.len());
            if fleet_ids.is_empty() {
                return Ok(());
            }
            // Each device that names a decoded fleet is in that fleet, once; the rest are
            // counted as orphans.
            let text = body_text(&rendered.metrics)?;
            let samples = promtext::parse(&text);
            let mut present: Vec<(String, String)> =
                promtext::family(&samples, "balena_device_info")
                    .iter()
                    .map(|s| {
                        (
                            s.label("fleet_slug").to_string(),
                            s.label("uuid").to_string(),
                        )
                    })
                    .collect();
            present.sort();
            prop_assert_eq!(&present, &expected);
            prop_assert_eq!(rendered.orphans, devices.len() - expected.len());
            // Fleets by slug; each fleet's counts add up.
            let info = promtext::family(&samples, "balena_fleet_info");
            prop_assert!(info
                .windows(2)
                .all(|w| w[0].label("fleet_slug") <= w[1].label("fleet_slug")));
            let per_fleet = |name| promtext::family(&samples, name);
            let (online, all_devices) = (
                per_fleet("balena_devices_online"),
                per_fleet("balena_fleet_devices"),
            );
            prop_assert!(online
                .iter()
                .zip(&all_devices)
                .all(|(o, d)| o.value <= d.value));
            for family in [
                "balena_fleet_devices_by_status",
                "balena_fleet_devices_by_heartbeat",
                "balena_fleet_devices_on_target_release",
            ] {
                let sum: f64 = per_fleet(family).iter().map(|s| s.value).sum();
                if family.ends_with("on_target_release") {
                    prop_assert!(sum <= expected.len() as f64, "{}", family);
                } else {
                    prop_assert_eq!(sum, expected.len() as f64, "{}", family);
                }
            }

            // Page by page (as the crawl reads them), the same renderings as in one page.
            // (Both re-encoded: serde_json's parser may read a re-written float a bit off.)
            let in_one = render_all(&Pages {
                devices: paged(&device_body.0, &[]),
                ..pages.clone()
            })?;
            let by_pages = Pages {
                devices: paged(&device_body.0, &sizes),
                ..pages
            };
            let paged = render_all(&by_pages)?;
            prop_assert_eq!(body_text(&paged.metrics)?, body_text(&in_one.metrics)?);
            prop_assert_eq!(body_text(&paged.sd)?, body_text(&in_one.sd)?);
            prop_assert_eq!(&paged.fleets_html, &in_one.fleets_html);
            prop_assert_eq!(paged.orphans, rendered.orphans);
            Ok(())
        },
    );
    let (cases, decoded) = (
        cases.load(Ordering::Relaxed),
        decoded.load(Ordering::Relaxed),
    );
    assert!(
        decoded * 4 >= cases,
        "only {decoded} of {cases} cases decoded both bodies: the property tests too little"
    );
    eprintln!("{decoded} of {cases} cases decoded both bodies");
}
