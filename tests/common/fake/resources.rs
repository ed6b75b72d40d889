//! The fake's resources: a schema of the OData resources the exporter may read (fields in the
//! real server's order, links and their targets), the rows the account becomes, the semantic
//! checks that answer 500 like the real server (unknown fields, navigations and type
//! mismatches), and the evaluation of a parsed query into a `{"d":[...]}` body.

use std::cmp::Ordering;
use std::collections::{BTreeSet, HashMap};

use serde_json::{json, Value};

use super::account::*;
use super::odata::{Expr, Op, Query};

pub(crate) enum ApiError {
    /// 400 `"Malformed url: '...'"`: the URL does not parse (or uses syntax the fake lacks).
    BadUrl,
    /// 401, empty body: unknown resource, or a guest reading what guests may not.
    Unauthorized,
    /// 500, empty body: unknown field or navigation, or a type mismatch in `$filter`.
    ServerError,
}
use ApiError::{ServerError, Unauthorized};
pub(crate) type R<T> = Result<T, ApiError>;

/// How a navigation reaches its target.
enum Via {
    /// To-one: this row's field holds the target's id.
    Field(&'static str),
    /// To-many: the target rows whose field holds this row's id.
    Reverse(&'static str),
}

struct Link {
    nav: &'static str,
    target: &'static str,
    via: Via,
}

const fn one(nav: &'static str, target: &'static str) -> Link {
    Link {
        nav,
        target,
        via: Via::Field(nav),
    }
}

const fn many(nav: &'static str, target: &'static str, field: &'static str) -> Link {
    Link {
        nav,
        target,
        via: Via::Reverse(field),
    }
}

/// What a guest (unknown or missing token) gets from a resource, as recorded.
#[derive(PartialEq)]
enum Guest {
    /// 200 `{"d":[]}` (public rows only, and there are none).
    Empty,
    /// 401 with an empty body.
    Refused,
}

struct Schema {
    name: &'static str,
    /// Fields in the real server's order (links included, as `{"__id":N}`).
    fields: &'static [&'static str],
    links: &'static [Link],
    guest: Guest,
}

/// balenaCloud's device fields, which openBalena lacks.
pub const CLOUD_DEVICE_FIELDS: &[&str] = &["latitude", "longitude", "location", "is_active"];

const SCHEMAS: &[Schema] = &[
    Schema {
        name: "application",
        fields: &[
            "id",
            "should_track_latest_release",
            "is_of__class",
            "organization",
            "app_name",
            "slug",
            "is_for__device_type",
            "should_be_running__release",
            "is_host",
            "is_archived",
            "uuid",
        ],
        links: &[
            one("organization", "organization"),
            one("is_for__device_type", "device_type"),
            one("should_be_running__release", "release"),
            many("owns__device", "device", "belongs_to__application"),
            many("application_tag", "application_tag", "application"),
            many("service", "service", "application"),
        ],
        guest: Guest::Empty,
    },
    Schema {
        name: "device",
        fields: &[
            "id",
            "api_heartbeat_state",
            "changed_api_heartbeat_state_on__date",
            "uuid",
            "device_name",
            "is_of__device_type",
            "belongs_to__application",
            "is_online",
            "last_connectivity_event",
            "ip_address",
            "is_web_accessible",
            "memory_usage",
            "memory_total",
            "storage_usage",
            "storage_total",
            "cpu_usage",
            "cpu_temp",
            "is_undervolted",
            "is_running__release",
            "os_version",
            "os_variant",
            "overall_status",
            "overall_progress",
            "supervisor_version",
            "is_pinned_on__release",
            "should_be_running__release",
            "update_status",
            "last_update_status_event",
        ],
        links: &[
            one("belongs_to__application", "application"),
            one("is_of__device_type", "device_type"),
            one("is_running__release", "release"),
            one("should_be_running__release", "release"),
            one("is_pinned_on__release", "release"),
            many("image_install", "image_install", "device"),
            many("device_tag", "device_tag", "device"),
        ],
        guest: Guest::Refused,
    },
    Schema {
        name: "organization",
        fields: &["id", "handle"],
        links: &[],
        guest: Guest::Refused,
    },
    Schema {
        name: "device_type",
        fields: &["id", "slug"],
        links: &[],
        guest: Guest::Empty,
    },
    Schema {
        name: "release",
        fields: &[
            "id",
            "belongs_to__application",
            "commit",
            "composition",
            "status",
        ],
        links: &[
            one("belongs_to__application", "application"),
            many(
                "should_be_running_on__application",
                "application",
                "should_be_running__release",
            ),
            many("is_running_on__device", "device", "is_running__release"),
            many("is_pinned_to__device", "device", "is_pinned_on__release"),
        ],
        guest: Guest::Empty,
    },
    Schema {
        name: "service",
        fields: &["id", "application", "service_name"],
        links: &[one("application", "application")],
        guest: Guest::Empty,
    },
    Schema {
        name: "image",
        fields: &["id", "is_a_build_of__service", "status"],
        links: &[one("is_a_build_of__service", "service")],
        guest: Guest::Refused,
    },
    Schema {
        name: "image_install",
        fields: &[
            "id",
            "status",
            "download_progress",
            "install_date",
            "device",
            "installs__image",
            "is_provided_by__release",
        ],
        links: &[
            one("device", "device"),
            one("installs__image", "image"),
            Link {
                nav: "image",
                target: "image",
                via: Via::Field("installs__image"),
            },
            one("is_provided_by__release", "release"),
        ],
        guest: Guest::Refused,
    },
    Schema {
        name: "device_tag",
        fields: &["id", "device", "tag_key", "value"],
        links: &[one("device", "device")],
        guest: Guest::Refused,
    },
    Schema {
        name: "application_tag",
        fields: &["id", "application", "tag_key", "value"],
        links: &[one("application", "application")],
        guest: Guest::Empty,
    },
];

/// Device fields the fake serves, in the real server's order (without balenaCloud's).
#[allow(dead_code)] // for tests/api/fake_api.rs only
pub fn device_fields() -> &'static [&'static str] {
    schema("device").map_or(&[], |s| s.fields)
}

/// Application (fleet) fields the fake serves, in the real server's order.
#[allow(dead_code)] // for tests/api/fake_api.rs only
pub fn fleet_fields() -> &'static [&'static str] {
    schema("application").map_or(&[], |s| s.fields)
}

fn schema(name: &str) -> Option<&'static Schema> {
    SCHEMAS.iter().find(|s| s.name == name)
}

fn link(schema: &Schema, nav: &str) -> Option<&'static Link> {
    let s = SCHEMAS.iter().find(|s| s.name == schema.name)?;
    s.links.iter().find(|l| l.nav == nav)
}

/// One row: field → value, in the schema's field order.
pub(crate) type Record = Vec<(&'static str, Value)>;

/// The account as rows of every resource, each sorted by id.
pub(crate) struct Db {
    tables: HashMap<&'static str, Vec<Record>>,
    cloud_fields: bool,
}

fn link_value(id: Option<u64>) -> Value {
    id.map_or(Value::Null, |id| json!({ "__id": id }))
}

/// The 1-based rank of `x` among all of `items` (derived ids of device types, organizations).
fn ranks<'s>(items: impl Iterator<Item = &'s str>) -> HashMap<&'s str, u64> {
    let all: BTreeSet<&str> = items.collect();
    all.into_iter().zip(1..).collect()
}

/// A release's composition as balena stores it (the parsed docker-compose file): the fleet's
/// services, each with its `restart` policy where it has one.
fn composition(account: &Account, fleet: Option<u64>) -> Value {
    let services: serde_json::Map<String, Value> = account
        .services
        .iter()
        .filter(|s| Some(s.fleet_id) == fleet)
        .map(|s| {
            let mut service = json!({"build": format!("./{}", s.name), "labels": {}});
            if let Some(restart) = &s.restart {
                service["restart"] = json!(restart);
            }
            (s.name.clone(), service)
        })
        .collect();
    json!({"version": "2.1", "networks": {}, "volumes": {}, "services": services})
}

/// The release a device should run (v7): its pin, else its fleet's target.
fn target<'a>(account: &'a Account, d: &'a Device) -> Option<&'a Release> {
    d.pinned_release.as_ref().or_else(|| {
        account
            .fleets
            .iter()
            .find(|f| f.id == d.fleet_id)?
            .target_release
            .as_ref()
    })
}

impl Db {
    pub(crate) fn new(account: &Account) -> Db {
        let device_types = ranks(
            account
                .fleets
                .iter()
                .map(|f| f.device_type.as_str())
                .chain(account.devices.iter().map(|d| d.device_type.as_str())),
        );
        let orgs = ranks(account.fleets.iter().map(|f| f.organization.as_str()));
        let rel = |r: Option<&Release>| link_value(r.map(|r| r.id));
        let mut releases: HashMap<u64, (Option<u64>, String)> = HashMap::new();
        let mut images: BTreeSet<(u64, u64)> = BTreeSet::new();
        let mut tables: HashMap<&'static str, Vec<Record>> = HashMap::new();
        let mut add = |table: &'static str, obj: Value| {
            let fields = schema(table).map_or(&[][..], |s| s.fields);
            let mut record: Record = fields.iter().map(|&f| (f, obj[f].clone())).collect();
            for &f in CLOUD_DEVICE_FIELDS {
                if table == "device" && account.cloud_fields {
                    record.push((f, obj[f].clone()));
                }
            }
            tables.entry(table).or_default().push(record);
        };
        for f in &account.fleets {
            if let Some(r) = &f.target_release {
                releases.insert(r.id, (Some(f.id), r.commit.clone()));
            }
            add(
                "application",
                json!({
                    "id": f.id, "app_name": f.app_name, "slug": f.slug,
                    "uuid": format!("f1ee7{:027x}", f.id),
                    "organization": link_value(orgs.get(f.organization.as_str()).copied()),
                    "is_for__device_type": link_value(device_types.get(f.device_type.as_str()).copied()),
                    "should_be_running__release": rel(f.target_release.as_ref()),
                    "is_of__class": if f.is_of__class.is_empty() { "fleet" } else { f.is_of__class.as_str() },
                    "should_track_latest_release": true, "is_host": false, "is_archived": false,
                }),
            );
        }
        let mut tag_id = 0;
        for f in &account.fleets {
            for (key, value) in &f.tags {
                tag_id += 1;
                add(
                    "application_tag",
                    json!({"id": tag_id, "application": {"__id": f.id}, "tag_key": key, "value": value}),
                );
            }
        }
        let mut device_tag_id = 0;
        for d in &account.devices {
            for r in [&d.running_release, &d.pinned_release]
                .into_iter()
                .flatten()
            {
                releases
                    .entry(r.id)
                    .or_insert((Some(d.fleet_id), r.commit.clone()));
            }
            add(
                "device",
                json!({
                    "id": d.id, "api_heartbeat_state": d.api_heartbeat_state, "uuid": d.uuid,
                    "changed_api_heartbeat_state_on__date": d.heartbeat_changed_at,
                    "device_name": d.device_name, "is_online": d.is_online,
                    "is_of__device_type": link_value(device_types.get(d.device_type.as_str()).copied()),
                    "belongs_to__application": {"__id": d.fleet_id},
                    "last_connectivity_event": d.last_connectivity_event,
                    "ip_address": d.ip_address,
                    "is_web_accessible": d.is_web_accessible, "is_undervolted": d.is_undervolted,
                    "memory_usage": d.memory_usage, "memory_total": d.memory_total,
                    "storage_usage": d.storage_usage, "storage_total": d.storage_total,
                    "cpu_usage": d.cpu_usage, "cpu_temp": d.cpu_temp,
                    "os_version": d.os_version, "os_variant": d.os_variant,
                    "overall_status": d.overall_status, "overall_progress": d.overall_progress,
                    "supervisor_version": d.supervisor_version,
                    "is_running__release": rel(d.running_release.as_ref()),
                    "is_pinned_on__release": rel(d.pinned_release.as_ref()),
                    "should_be_running__release": rel(target(account, d)),
                    "update_status": d.update_status,
                    "last_update_status_event": d.last_update_status_event,
                    "latitude": d.latitude, "longitude": d.longitude,
                    "location": Value::Null, "is_active": true,
                }),
            );
            for i in &d.installs {
                images.insert((i.service_id, i.release_id));
                releases
                    .entry(i.release_id)
                    .or_insert((Some(d.fleet_id), commit(i.release_id)));
            }
            for (key, value) in &d.tags {
                device_tag_id += 1;
                add(
                    "device_tag",
                    json!({"id": device_tag_id, "device": {"__id": d.id}, "tag_key": key, "value": value}),
                );
            }
        }
        // One image per service and release, ids in that order.
        let image_ids: HashMap<(u64, u64), u64> = images.iter().copied().zip(1..).collect();
        for (&(service, _), &id) in &image_ids {
            add(
                "image",
                json!({"id": id, "is_a_build_of__service": {"__id": service}, "status": "success"}),
            );
        }
        for d in &account.devices {
            for i in &d.installs {
                add(
                    "image_install",
                    json!({
                        "id": i.id, "status": i.status, "download_progress": i.download_progress,
                        "install_date": "2026-11-30T07:47:09.675Z",
                        "device": {"__id": d.id},
                        "installs__image": {"__id": image_ids[&(i.service_id, i.release_id)]},
                        "is_provided_by__release": {"__id": i.release_id},
                    }),
                );
            }
        }
        for s in &account.services {
            add(
                "service",
                json!({"id": s.id, "application": {"__id": s.fleet_id}, "service_name": s.name}),
            );
        }
        for (id, (fleet, commit)) in releases {
            add(
                "release",
                json!({"id": id, "commit": commit, "status": "success",
                       "composition": composition(account, fleet),
                       "belongs_to__application": link_value(fleet)}),
            );
        }
        for (slug, id) in device_types {
            add("device_type", json!({"id": id, "slug": slug}));
        }
        for (handle, id) in orgs {
            add("organization", json!({"id": id, "handle": handle}));
        }
        for rows in tables.values_mut() {
            rows.sort_by_key(|r| get(r, "id").as_u64());
        }
        Db {
            tables,
            cloud_fields: account.cloud_fields,
        }
    }

    fn rows(&self, table: &str) -> &[Record] {
        self.tables.get(table).map_or(&[], Vec::as_slice)
    }

    fn by_id(&self, table: &str, id: u64) -> Option<&Record> {
        let rows = self.rows(table);
        rows.binary_search_by_key(&Some(id), |r| get(r, "id").as_u64())
            .ok()
            .map(|i| &rows[i])
    }

    fn known_field(&self, schema: &Schema, field: &str) -> bool {
        schema.fields.contains(&field)
            || (schema.name == "device"
                && self.cloud_fields
                && CLOUD_DEVICE_FIELDS.contains(&field))
    }

    /// The rows a navigation of `row` reaches (after the nested `$filter` and `$orderby`).
    fn follow<'d>(&'d self, link: &Link, row: &Record) -> Vec<&'d Record> {
        match link.via {
            Via::Field(field) => get(row, field)
                .as_u64()
                .and_then(|id| self.by_id(link.target, id))
                .into_iter()
                .collect(),
            Via::Reverse(field) => {
                let id = get(row, "id").as_u64();
                self.rows(link.target)
                    .iter()
                    .filter(|r| get(r, field).as_u64() == id)
                    .collect()
            }
        }
    }
}

/// Answers one read of `resource` (`key`: a read by key, `count`: `/$count`). Returns the body
/// and the ids of the rows served.
pub(crate) fn answer(
    db: &Db,
    authorized: bool,
    resource: &str,
    key: Option<u64>,
    count: bool,
    q: &Query,
    max_top: Option<usize>,
) -> R<(String, Vec<u64>)> {
    let schema = schema(resource).ok_or(Unauthorized)?;
    if !authorized && schema.guest == Guest::Refused {
        return Err(Unauthorized);
    }
    check(db, q, schema)?;
    // A guest sees public rows only, and there are none.
    let mut rows: Vec<&Record> = if authorized {
        db.rows(resource).iter().collect()
    } else {
        Vec::new()
    };
    rows.retain(|rec| key.is_none_or(|k| get(rec, "id").as_u64() == Some(k)));
    if let Some(filter) = &q.filter {
        rows.retain(|rec| eval(db, schema, filter, rec));
    }
    if count {
        // OData: /$count is not affected by $top, $skip, $orderby or $expand.
        return Ok((format!(r#"{{"d":{}}}"#, rows.len()), Vec::new()));
    }
    sort(&mut rows, &q.orderby);
    let top = q
        .top
        .unwrap_or(usize::MAX)
        .min(max_top.unwrap_or(usize::MAX));
    let rows: Vec<&Record> = rows
        .into_iter()
        .skip(q.skip.unwrap_or(0))
        .take(top)
        .collect();
    let ids = rows.iter().filter_map(|r| get(r, "id").as_u64()).collect();
    let objects: Vec<String> = rows.iter().map(|rec| render(db, schema, q, rec)).collect();
    Ok((format!(r#"{{"d":[{}]}}"#, objects.join(",")), ids))
}

/// `$orderby` keys; without any the server's order (by id) stays.
fn sort(rows: &mut [&Record], orderby: &[(String, bool)]) {
    rows.sort_by(|a, b| {
        orderby.iter().fold(Ordering::Equal, |acc, (field, desc)| {
            acc.then_with(|| {
                let o = compare(get(a, field), get(b, field));
                if *desc {
                    o.reverse()
                } else {
                    o
                }
            })
        })
    });
}

/// One output object: expanded navigations first (in `$expand` order), then the selected fields.
fn render(db: &Db, schema: &Schema, q: &Query, rec: &Record) -> String {
    let mut parts: Vec<(String, String)> = Vec::new();
    for e in &q.expand {
        let Some(link) = link(schema, &e.nav) else {
            continue; // checked before: cannot happen
        };
        let mut targets = db.follow(link, rec);
        if let Some(filter) = &e.query.filter {
            targets.retain(|t| eval(db, schema_of(link.target), filter, t));
        }
        let text = if e.count {
            targets.len().to_string()
        } else {
            if e.query.orderby.is_empty() {
                // Nested lists come in no particular order unless asked for one.
                targets.reverse();
            } else {
                sort(&mut targets, &e.query.orderby);
            }
            let target = schema_of(link.target);
            let objects: Vec<String> = targets
                .iter()
                .map(|t| render(db, target, &e.query, t))
                .collect();
            format!("[{}]", objects.join(","))
        };
        parts.push((e.nav.clone(), text));
    }
    for (k, v) in pick(rec, q.select.as_deref()) {
        if !parts.iter().any(|(p, _)| p == k) {
            parts.push((k.to_owned(), v.to_string()));
        }
    }
    object(&parts)
}

fn schema_of(name: &str) -> &'static Schema {
    schema(name).unwrap_or(&SCHEMAS[0])
}

fn pick<'r>(rec: &'r Record, select: Option<&[String]>) -> Vec<(&'r str, &'r Value)> {
    match select {
        None => rec.iter().map(|(k, v)| (*k, v)).collect(),
        Some(names) => names
            .iter()
            .filter_map(|n| rec.iter().find(|(k, _)| k == n))
            .map(|(k, v)| (*k, v))
            .collect(),
    }
}

fn object<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{}:{}", Value::from(k.as_ref()), v.as_ref()))
        .collect();
    format!("{{{}}}", parts.join(","))
}

/// A field's value; a link compares as its id.
fn get<'r>(rec: &'r Record, field: &str) -> &'r Value {
    let v = rec
        .iter()
        .find(|(k, _)| *k == field)
        .map_or(&Value::Null, |(_, v)| v);
    v.get("__id").unwrap_or(v)
}

/// Postgres order: NULLs last ascending (so first descending).
fn compare(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Null, Value::Null) => Ordering::Equal,
        (Value::Null, _) => Ordering::Greater,
        (_, Value::Null) => Ordering::Less,
        (Value::Number(x), Value::Number(y)) => x
            .as_f64()
            .partial_cmp(&y.as_f64())
            .unwrap_or(Ordering::Equal),
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        _ => Ordering::Equal,
    }
}

// ----------------------------------------------------------------------------- semantic checks

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Int,
    Bool,
    Text,
    Link,
}

fn kind(schema: &Schema, field: &str) -> Kind {
    match field {
        _ if schema
            .links
            .iter()
            .any(|l| matches!(l.via, Via::Field(f) if f == field)) =>
        {
            Kind::Link
        }
        "id" | "cpu_usage" | "cpu_temp" | "memory_usage" | "memory_total" | "storage_usage"
        | "storage_total" | "overall_progress" | "download_progress" => Kind::Int,
        "is_online"
        | "is_web_accessible"
        | "is_undervolted"
        | "is_archived"
        | "is_host"
        | "is_active"
        | "should_track_latest_release" => Kind::Bool,
        _ => Kind::Text,
    }
}

/// Unknown fields and navigations are a 500 with an empty body on v7 (as recorded), in
/// `$select`, `$orderby`, `$filter` and nested options alike.
fn check(db: &Db, q: &Query, schema: &Schema) -> R<()> {
    let known = |f: &String| db.known_field(schema, f);
    if !q.select.iter().flatten().all(known) || !q.orderby.iter().all(|(f, _)| known(f)) {
        return Err(ServerError);
    }
    if let Some(filter) = &q.filter {
        check_filter(db, filter, schema)?;
    }
    for e in &q.expand {
        let link = link(schema, &e.nav).ok_or(ServerError)?;
        if e.count && !matches!(link.via, Via::Reverse(_)) {
            return Err(ServerError);
        }
        check(db, &e.query, schema_of(link.target))?;
    }
    Ok(())
}

fn check_filter(db: &Db, e: &Expr, schema: &Schema) -> R<()> {
    let ok = match e {
        Expr::And(a, b) | Expr::Or(a, b) => {
            return check_filter(db, a, schema).and(check_filter(db, b, schema))
        }
        Expr::UserAccess => schema.name == "application",
        Expr::FleetAccess => schema.name == "device",
        // An unknown navigation is a 500, as in `$expand`.
        Expr::Any(nav) => link(schema, nav).is_some(),
        Expr::Cmp { field, op, lit } => {
            db.known_field(schema, field)
                && matches!(
                    (kind(schema, field), lit),
                    (_, Value::Null)
                        | (Kind::Bool, Value::Bool(_))
                        | (Kind::Text, Value::String(_))
                        | (Kind::Int | Kind::Link, Value::Number(_))
                )
                // Order comparisons with null or booleans are not valid SQL for pinejs.
                && (matches!(op, Op::Eq | Op::Ne) || !matches!(lit, Value::Null | Value::Bool(_)))
        }
    };
    ok.then_some(()).ok_or(ServerError)
}

fn eval(db: &Db, schema: &Schema, e: &Expr, rec: &Record) -> bool {
    match e {
        Expr::And(a, b) => eval(db, schema, a, rec) && eval(db, schema, b, rec),
        Expr::Or(a, b) => eval(db, schema, a, rec) || eval(db, schema, b, rec),
        // Every fleet and device of the account is the authorized caller's.
        Expr::UserAccess | Expr::FleetAccess => true,
        Expr::Any(nav) => link(schema, nav).is_some_and(|l| !db.follow(l, rec).is_empty()),
        Expr::Cmp { field, op, lit } => {
            let value = get(rec, field);
            match op {
                // SQL: null equals nothing but `eq null`; `ne` treats null as different.
                Op::Eq => value == lit,
                Op::Ne => value != lit,
                _ if value.is_null() || lit.is_null() => false,
                Op::Gt => compare(value, lit) == Ordering::Greater,
                Op::Ge => compare(value, lit) != Ordering::Less,
                Op::Lt => compare(value, lit) == Ordering::Less,
                Op::Le => compare(value, lit) != Ordering::Greater,
            }
        }
    }
}
