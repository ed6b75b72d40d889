//! The fake's resources: a schema of the OData resources the exporter may read (fields in the
//! real server's order, links and their targets), the rows the account becomes (with their
//! `modified_at` from `stamps`, and an index of each to-many navigation), the semantic checks
//! that answer 500 like the real server (unknown fields, navigations, type mismatches and
//! literals that are no timestamp), and the evaluation of a parsed query into a `{"d":[...]}`
//! body.

use std::cmp::Ordering;
use std::collections::{BTreeSet, HashMap};

use serde_json::{json, Value};

use super::account::*;
use super::odata::{Expr, Op, Query};
use super::stamps::{Fx, Rows};
use super::time::{instant, timestamp};

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
    /// Fields in the real server's order (links included: a row holds a link's id, which is
    /// served as `{"__id":N}`).
    fields: &'static [&'static str],
    links: &'static [Link],
    guest: Guest,
    /// Fields the fake computes from other rows: a change of one writes no row, so it does
    /// not change `modified_at` (as on the server, where v7's `should_be_running__release`
    /// follows the fleet's target without a write to the device).
    computed: &'static [&'static str],
}

/// balenaCloud's device fields, which openBalena lacks.
pub const CLOUD_DEVICE_FIELDS: &[&str] = &["latitude", "longitude", "location", "is_active"];

const SCHEMAS: &[Schema] = &[
    Schema {
        name: "application",
        fields: &[
            "modified_at",
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
        computed: &[],
    },
    Schema {
        name: "device",
        fields: &[
            "modified_at",
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
        // The server computes `overall_status` and `overall_progress` too, from image
        // installs and heartbeats, without a write to the device. The fake's account stores
        // them with the device instead, so here they are device content: a change of either
        // is a write to the device and changes its modified_at.
        computed: &["should_be_running__release"],
    },
    Schema {
        name: "organization",
        fields: &["modified_at", "id", "handle"],
        links: &[],
        guest: Guest::Refused,
        computed: &[],
    },
    Schema {
        name: "device_type",
        fields: &["modified_at", "id", "slug"],
        links: &[],
        guest: Guest::Empty,
        computed: &[],
    },
    Schema {
        name: "release",
        fields: &[
            "modified_at",
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
        computed: &[],
    },
    Schema {
        name: "service",
        fields: &["modified_at", "id", "application", "service_name"],
        links: &[one("application", "application")],
        guest: Guest::Empty,
        computed: &[],
    },
    Schema {
        name: "image",
        fields: &["modified_at", "id", "is_a_build_of__service", "status"],
        links: &[one("is_a_build_of__service", "service")],
        guest: Guest::Refused,
        computed: &[],
    },
    Schema {
        name: "image_install",
        fields: &[
            "modified_at",
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
        computed: &[],
    },
    Schema {
        name: "device_tag",
        fields: &["modified_at", "id", "device", "tag_key", "value"],
        links: &[one("device", "device")],
        guest: Guest::Refused,
        computed: &[],
    },
    Schema {
        name: "application_tag",
        fields: &["modified_at", "id", "application", "tag_key", "value"],
        links: &[one("application", "application")],
        guest: Guest::Empty,
        computed: &[],
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

/// The account as rows of every resource, each sorted by id, built anew whenever the account
/// changes, with an index of each to-many navigation.
pub(crate) struct Db {
    tables: HashMap<&'static str, Vec<Record>>,
    /// (table, link field) → the id the field holds → the rows of `table` holding it, in id
    /// order: what `Via::Reverse` follows.
    children: HashMap<(&'static str, &'static str), HashMap<u64, Vec<usize>>>,
    cloud_fields: bool,
    no_modified_at_filter: bool,
}

/// A link field as a row holds it: the target's id, or null.
fn link_value(id: Option<u64>) -> Value {
    id.map_or(Value::Null, Value::from)
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

/// Where `field` is in each row of `schema` (a row holds the schema's fields in order).
fn place(schema: &Schema, field: &str) -> Option<usize> {
    schema.fields.iter().position(|f| *f == field)
}

/// A row's content as stored, hashed: every field but `modified_at` and the computed ones.
fn fingerprint(schema: &Schema, record: &Record) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = Fx::default();
    for (field, value) in record {
        if *field != "modified_at" && !schema.computed.contains(field) {
            value.hash(&mut hasher);
        }
    }
    hasher.finish()
}

impl Db {
    /// The rows of `account`, written into `rows`: the ids the fake gives rows the account
    /// does not number come from it, and every row new or changed since the last write gets
    /// this write's `modified_at`.
    pub(crate) fn new(account: &Account, rows: &mut Rows) -> Db {
        rows.begin();
        // Device types and organizations are numbered in name order when first seen.
        let slugs: BTreeSet<&str> = account
            .fleets
            .iter()
            .map(|f| f.device_type.as_str())
            .chain(account.devices.iter().map(|d| d.device_type.as_str()))
            .collect();
        let handles: BTreeSet<&str> = account
            .fleets
            .iter()
            .map(|f| f.organization.as_str())
            .collect();
        let numbered = |rows: &mut Rows, table, names: BTreeSet<&str>| -> HashMap<String, u64> {
            names
                .into_iter()
                .map(|n| (n.to_owned(), rows.id(table, n.to_owned())))
                .collect()
        };
        let device_types = numbered(rows, "device_type", slugs);
        let orgs = numbered(rows, "organization", handles);
        let device_type = |slug: &str| link_value(device_types.get(slug).copied());
        let rel = |r: Option<&Release>| link_value(r.map(|r| r.id));
        let mut releases: HashMap<u64, (Option<u64>, String)> = HashMap::new();
        let mut images: BTreeSet<(u64, u64)> = BTreeSet::new();
        let mut tables: HashMap<&'static str, Vec<Record>> = HashMap::new();
        // A row from its fields in any order: the schema's order, absent fields null. (Each
        // search starts after the last field found: fields in the schema's order cost one
        // comparison each.)
        let mut add = |table: &'static str, mut pairs: Vec<(&'static str, Value)>| {
            let mut cursor = 0;
            let mut take = |f: &str| {
                let n = pairs.len();
                let at = (0..n)
                    .map(|i| (cursor + i) % n)
                    .find(|&i| pairs[i].0 == f)?;
                cursor = at + 1;
                Some(pairs[at].1.take())
            };
            let fields = schema(table).map_or(&[][..], |s| s.fields);
            let mut field = |f: &'static str| (f, take(f).unwrap_or(Value::Null));
            let mut record: Record = fields.iter().map(|&f| field(f)).collect();
            if table == "device" && account.cloud_fields {
                record.extend(CLOUD_DEVICE_FIELDS.iter().map(|&f| field(f)));
            }
            tables.entry(table).or_default().push(record);
        };
        for f in &account.fleets {
            if let Some(r) = &f.target_release {
                releases.insert(r.id, (Some(f.id), r.commit.clone()));
            }
            let class = if f.is_of__class.is_empty() {
                "fleet"
            } else {
                f.is_of__class.as_str()
            };
            add(
                "application",
                vec![
                    ("id", f.id.into()),
                    ("app_name", f.app_name.as_str().into()),
                    ("slug", f.slug.as_str().into()),
                    ("uuid", format!("f1ee7{:027x}", f.id).into()),
                    (
                        "organization",
                        link_value(orgs.get(f.organization.as_str()).copied()),
                    ),
                    ("is_for__device_type", device_type(&f.device_type)),
                    ("should_be_running__release", rel(f.target_release.as_ref())),
                    ("is_of__class", class.into()),
                    ("should_track_latest_release", true.into()),
                    ("is_host", false.into()),
                    ("is_archived", false.into()),
                ],
            );
            for (key, value) in &f.tags {
                add(
                    "application_tag",
                    vec![
                        (
                            "id",
                            rows.id("application_tag", format!("{}/{key}", f.id)).into(),
                        ),
                        ("application", link_value(Some(f.id))),
                        ("tag_key", key.as_str().into()),
                        ("value", value.as_str().into()),
                    ],
                );
            }
        }
        let text = |s: &Option<String>| Value::from(s.as_deref());
        // A release that is no fleet's target belongs to the fleet of its images' services,
        // else to that of the first device that refers to it: a device that moves to another
        // fleet does not take the release along.
        let service_fleets: HashMap<u64, u64> = account
            .services
            .iter()
            .map(|s| (s.id, s.fleet_id))
            .collect();
        let install_fleets: HashMap<u64, u64> = account
            .devices
            .iter()
            .flat_map(|d| &d.installs)
            .filter_map(|i| Some((i.release_id, *service_fleets.get(&i.service_id)?)))
            .collect();
        let fleet_of = |release: u64, d: &Device| {
            Some(install_fleets.get(&release).copied().unwrap_or(d.fleet_id))
        };
        for d in &account.devices {
            for r in [&d.running_release, &d.pinned_release]
                .into_iter()
                .flatten()
            {
                releases
                    .entry(r.id)
                    .or_insert((fleet_of(r.id, d), r.commit.clone()));
            }
            add(
                "device",
                vec![
                    ("id", d.id.into()),
                    ("api_heartbeat_state", d.api_heartbeat_state.as_str().into()),
                    (
                        "changed_api_heartbeat_state_on__date",
                        text(&d.heartbeat_changed_at),
                    ),
                    ("uuid", d.uuid.as_str().into()),
                    ("device_name", d.device_name.as_str().into()),
                    ("is_of__device_type", device_type(&d.device_type)),
                    ("belongs_to__application", link_value(Some(d.fleet_id))),
                    ("is_online", d.is_online.into()),
                    ("last_connectivity_event", text(&d.last_connectivity_event)),
                    ("ip_address", text(&d.ip_address)),
                    ("is_web_accessible", d.is_web_accessible.into()),
                    ("memory_usage", d.memory_usage.into()),
                    ("memory_total", d.memory_total.into()),
                    ("storage_usage", d.storage_usage.into()),
                    ("storage_total", d.storage_total.into()),
                    ("cpu_usage", d.cpu_usage.into()),
                    ("cpu_temp", d.cpu_temp.into()),
                    ("is_undervolted", d.is_undervolted.into()),
                    ("is_running__release", rel(d.running_release.as_ref())),
                    ("os_version", text(&d.os_version)),
                    ("os_variant", text(&d.os_variant)),
                    ("overall_status", d.overall_status.as_str().into()),
                    ("overall_progress", d.overall_progress.into()),
                    ("supervisor_version", text(&d.supervisor_version)),
                    ("is_pinned_on__release", rel(d.pinned_release.as_ref())),
                    ("should_be_running__release", rel(target(account, d))),
                    ("update_status", text(&d.update_status)),
                    (
                        "last_update_status_event",
                        text(&d.last_update_status_event),
                    ),
                    ("latitude", text(&d.latitude)),
                    ("longitude", text(&d.longitude)),
                    ("location", Value::Null),
                    ("is_active", true.into()),
                ],
            );
            for i in &d.installs {
                images.insert((i.service_id, i.release_id));
                releases
                    .entry(i.release_id)
                    .or_insert((fleet_of(i.release_id, d), commit(i.release_id)));
            }
            for (key, value) in &d.tags {
                add(
                    "device_tag",
                    vec![
                        (
                            "id",
                            rows.id("device_tag", format!("{}/{key}", d.id)).into(),
                        ),
                        ("device", link_value(Some(d.id))),
                        ("tag_key", key.as_str().into()),
                        ("value", value.as_str().into()),
                    ],
                );
            }
        }
        // One image per service and release, numbered in that order when first seen.
        let image_ids: HashMap<(u64, u64), u64> = images
            .iter()
            .map(|&(service, release)| {
                let id = rows.id("image", format!("{service}/{release}"));
                ((service, release), id)
            })
            .collect();
        for (&(service, _), &id) in &image_ids {
            add(
                "image",
                vec![
                    ("id", id.into()),
                    ("is_a_build_of__service", link_value(Some(service))),
                    ("status", "success".into()),
                ],
            );
        }
        for d in &account.devices {
            for i in &d.installs {
                add(
                    "image_install",
                    vec![
                        ("id", i.id.into()),
                        ("status", i.status.as_str().into()),
                        ("download_progress", i.download_progress.into()),
                        ("install_date", "2026-11-30T07:47:09.675Z".into()),
                        ("device", link_value(Some(d.id))),
                        (
                            "installs__image",
                            link_value(image_ids.get(&(i.service_id, i.release_id)).copied()),
                        ),
                        ("is_provided_by__release", link_value(Some(i.release_id))),
                    ],
                );
            }
        }
        for s in &account.services {
            add(
                "service",
                vec![
                    ("id", s.id.into()),
                    ("application", link_value(Some(s.fleet_id))),
                    ("service_name", s.name.as_str().into()),
                ],
            );
        }
        for (id, (fleet, commit)) in releases {
            add(
                "release",
                vec![
                    ("id", id.into()),
                    ("commit", commit.into()),
                    ("status", "success".into()),
                    ("composition", composition(account, fleet)),
                    ("belongs_to__application", link_value(fleet)),
                ],
            );
        }
        for (slug, id) in device_types {
            add(
                "device_type",
                vec![("id", id.into()), ("slug", slug.into())],
            );
        }
        for (handle, id) in orgs {
            add(
                "organization",
                vec![("id", id.into()), ("handle", handle.into())],
            );
        }
        // Most rows share a few times: each is formatted once.
        let mut texts: HashMap<i64, Value> = HashMap::new();
        for (table, records) in tables.iter_mut() {
            let schema = schema_of(table);
            let place = |field| place(schema, field).unwrap_or(0);
            let (id_at, modified_at) = (place("id"), place("modified_at"));
            records.sort_by_key(|r| r[id_at].1.as_u64());
            for record in records {
                let id = record[id_at].1.as_u64().unwrap_or(0);
                let at = rows.stamp(table, id, fingerprint(schema, record));
                record[modified_at].1 = texts
                    .entry(at)
                    .or_insert_with(|| timestamp(at).into())
                    .clone();
            }
        }
        rows.end();
        let mut children: HashMap<(&'static str, &'static str), HashMap<u64, Vec<usize>>> =
            HashMap::new();
        for link in SCHEMAS.iter().flat_map(|s| s.links) {
            let Via::Reverse(field) = link.via else {
                continue;
            };
            let index = children.entry((link.target, field)).or_default();
            let records = tables.get(link.target).map_or(&[][..], Vec::as_slice);
            let Some(place) = place(schema_of(link.target), field) else {
                continue;
            };
            for (at, record) in records.iter().enumerate() {
                if let Some(parent) = record[place].1.as_u64() {
                    index.entry(parent).or_default().push(at);
                }
            }
        }
        Db {
            tables,
            children,
            cloud_fields: account.cloud_fields,
            no_modified_at_filter: account.no_modified_at_filter,
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

    /// The rows a navigation of `row` reaches, in id order.
    fn follow<'d>(&'d self, link: &Link, row: &Record) -> Vec<&'d Record> {
        match link.via {
            Via::Field(field) => get(row, field)
                .as_u64()
                .and_then(|id| self.by_id(link.target, id))
                .into_iter()
                .collect(),
            Via::Reverse(field) => {
                let rows = self.rows(link.target);
                get(row, "id")
                    .as_u64()
                    .and_then(|id| self.children.get(&(link.target, field))?.get(&id))
                    .map_or(Vec::new(), |at| at.iter().map(|&i| &rows[i]).collect())
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
            let text = match v {
                Value::Number(id) if kind(schema, k) == Kind::Link => format!(r#"{{"__id":{id}}}"#),
                v => v.to_string(),
            };
            parts.push((k.to_owned(), text));
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

/// A field's value (a link's is the target's id); null for a field the row lacks.
fn get<'r>(rec: &'r Record, field: &str) -> &'r Value {
    rec.iter()
        .find(|(k, _)| *k == field)
        .map_or(&Value::Null, |(_, v)| v)
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
    /// A timestamp: compared as an instant, to the microsecond, with a quoted literal.
    Date,
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
        "modified_at" => Kind::Date,
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
        Expr::True => true,
        Expr::Modulo => false,
        Expr::UserAccess => schema.name == "application",
        // An unknown navigation is a 500, as in `$expand`.
        Expr::Any { nav, body } => {
            let link = link(schema, nav).ok_or(ServerError)?;
            return check_filter(db, body, schema_of(link.target));
        }
        Expr::Cmp { field, op, lit } => {
            db.known_field(schema, field)
                && !(db.no_modified_at_filter && field == "modified_at")
                && match (kind(schema, field), lit) {
                    (_, Value::Null) => true,
                    // Postgres casts the text: one that is no timestamp fails the query.
                    (Kind::Date, Value::String(s)) => instant(s).is_some(),
                    (Kind::Bool, Value::Bool(_)) | (Kind::Text, Value::String(_)) => true,
                    (Kind::Int | Kind::Link, Value::Number(_)) => true,
                    _ => false,
                }
                // Order comparisons with booleans are not valid SQL for pinejs (with null
                // they are, and hold for no row: `modified_at gt null` → `{"d":[]}`).
                && (matches!(op, Op::Eq | Op::Ne) || !matches!(lit, Value::Bool(_)))
        }
    };
    ok.then_some(()).ok_or(ServerError)
}

fn eval(db: &Db, schema: &Schema, e: &Expr, rec: &Record) -> bool {
    match e {
        Expr::And(a, b) => eval(db, schema, a, rec) && eval(db, schema, b, rec),
        Expr::Or(a, b) => eval(db, schema, a, rec) || eval(db, schema, b, rec),
        // Every fleet of the account is the authorized caller's.
        Expr::True | Expr::UserAccess => true,
        Expr::Modulo => false, // refused by check_filter
        Expr::Any { nav, body } => link(schema, nav).is_some_and(|l| {
            let target = schema_of(l.target);
            db.follow(l, rec).iter().any(|t| eval(db, target, body, t))
        }),
        Expr::Cmp { field, op, lit } => {
            let value = get(rec, field);
            if kind(schema, field) == Kind::Date {
                // As instants: `'…17:42:44.154Z'` and `'…18:42:44.154+01:00'` are one moment.
                let at = |v: &Value| {
                    v.as_str()
                        .and_then(instant)
                        .map_or(Value::Null, Value::from)
                };
                return holds(*op, &at(value), &at(lit));
            }
            holds(*op, value, lit)
        }
    }
}

/// Whether `value <op> lit` holds, as SQL has it: null equals nothing but `eq null`, `ne`
/// treats null as different, and an order comparison with null holds for no row.
fn holds(op: Op, value: &Value, lit: &Value) -> bool {
    match op {
        Op::Eq => value == lit,
        Op::Ne => value != lit,
        _ if value.is_null() || lit.is_null() => false,
        Op::Gt => compare(value, lit) == Ordering::Greater,
        Op::Ge => compare(value, lit) != Ordering::Less,
        Op::Lt => compare(value, lit) == Ordering::Less,
        Op::Le => compare(value, lit) != Ordering::Greater,
    }
}
