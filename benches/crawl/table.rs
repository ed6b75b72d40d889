//! The replayed account: its devices, how it changes between crawls, and the answer to each
//! request, assembled from the table.

use std::collections::HashMap;

use bytes::Bytes;
use warp::http::StatusCode;

use crate::support::{self, Recorded, Row};

/// How a replayed account changes between two crawls (at the start of every crawl but the
/// first): `share` of its devices report a new `cpu_usage`, `deletes` devices are deleted
/// and `moves` move to another fleet. The server's clock (`Table::clock`) advances by
/// `SERVER_INTERVAL` per round, and the round's writes are spread evenly over it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Churn {
    pub(crate) share: f64,
    pub(crate) deletes: usize,
    pub(crate) moves: usize,
}

impl Churn {
    /// The issue's steady account: 2 % changed, 2 deleted, 2 moved before every crawl.
    pub(crate) const STEADY: Churn = Churn {
        share: 0.02,
        deletes: 2,
        moves: 2,
    };
    /// Every device changed before every crawl: incremental reads at their worst.
    pub(crate) const ALL: Churn = Churn {
        share: 1.0,
        ..Churn::STEADY
    };
}

/// The server's time between two rounds of changes: the exporter's default `CRAWL_INTERVAL`.
/// The bench crawls every 2 s at 10,000 devices, but the server's clock says a minute went by,
/// so the overlap of an incremental read (the last crawl's duration and 10 s, on the server's
/// clock) holds what it would in production: about a sixth of the previous round's writes.
const SERVER_INTERVAL: u64 = 60_000;

/// One device as the replay serves it.
struct Device {
    row: support::Row,
    /// When it was last written, by the server's clock (Unix ms): its `modified_at`.
    changed_at: u64,
}

/// A request's shape, for the counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Shape {
    Whoami,
    /// A fleet, service or release page (200).
    Listing,
    /// A fleet, service or release page that had not changed (304, no body).
    NotModified,
    Probe,
    /// A page of every device (`query::devices`).
    Devices,
    /// A page of devices changed since a time (`query::changed_devices`).
    Changed,
    /// `/v7/device/$count`.
    Count,
    /// A page of device ids (`query::device_ids`).
    Ids,
    Unknown,
}

pub(crate) const SHAPES: usize = 9;

impl Shape {
    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// What a request asks for, read from its query: `$select`, `$top`, the keyset's `id gt N`
/// and a changed read's `modified_at gt '<time>'`.
#[derive(Debug, Default)]
struct Ask {
    select: String,
    top: Option<usize>,
    after: Option<u64>,
    since: Option<u64>,
}

impl Ask {
    fn parse(query: &str) -> Ask {
        let query = query.replace("%20", " ").replace("%27", "'");
        let mut ask = Ask::default();
        for option in query.split('&') {
            let (key, value) = option.split_once('=').unwrap_or((option, ""));
            match key {
                "$select" => ask.select = value.to_owned(),
                "$top" => ask.top = value.parse().ok(),
                "$filter" => {
                    ask.after = value.rsplit_once("id gt ").and_then(|(_, rest)| {
                        let digits: String =
                            rest.chars().take_while(char::is_ascii_digit).collect();
                        digits.parse().ok()
                    });
                    ask.since = value
                        .split_once("modified_at gt '")
                        .and_then(|(_, rest)| rest.split_once('\''))
                        .and_then(|(time, _)| humantime::parse_rfc3339(time).ok())
                        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                        .and_then(|d| u64::try_from(d.as_millis()).ok());
                }
                _ => {}
            }
        }
        ask
    }

    /// Whether the rows' `modified_at` is asked for (the binary of an earlier commit does not).
    fn modified(&self) -> bool {
        self.select.split(',').any(|f| f == "modified_at")
    }
}

/// The account as the replay serves it: fixed answers for whoami, the probe and the fleet,
/// service and release lists, and a table of devices from which device pages are assembled
/// at each request. Full pages are kept once assembled, until the devices change.
pub(crate) struct Table {
    whoami: Bytes,
    probe: Bytes,
    fleet_list: Bytes,
    service_list: Bytes,
    release_list: Bytes,
    fleets: Vec<u64>,
    /// In id order.
    devices: Vec<Device>,
    /// The server's clock (Unix ms): the newest `changed_at`.
    clock: u64,
    rounds: u64,
    /// Full device pages by (after, top, modified_at asked for, gzip).
    pages: HashMap<(u64, usize, bool, bool), Bytes>,
}

const EMPTY: &[u8] = br#"{"d":[]}"#;

/// `body` gzipped as the recorded server does: default level.
pub(crate) fn gzip(body: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(body).expect("gzip in memory");
    encoder.finish().expect("gzip in memory")
}

/// A weak ETag of a body, as the fake writes them (`W/"<length hex>-<hash>"`).
fn etag(body: &[u8]) -> String {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    body.hash(&mut hasher);
    format!("W/\"{:x}-{:016x}\"", body.len(), hasher.finish())
}

/// An answer before it is encoded.
pub(crate) struct Answer {
    pub(crate) shape: Shape,
    pub(crate) status: StatusCode,
    pub(crate) body: Bytes,
    /// For fleet, service and release pages.
    pub(crate) etag: Option<String>,
    /// Device rows in the body.
    pub(crate) rows: usize,
    /// Full pages are kept gzipped too (by `Table::full_page`).
    pub(crate) gzipped: Option<Bytes>,
}

impl Answer {
    fn ok(shape: Shape, body: Bytes) -> Answer {
        Answer {
            shape,
            status: StatusCode::OK,
            body,
            etag: None,
            rows: 0,
            gzipped: None,
        }
    }
}

impl Table {
    pub(crate) fn new(recorded: &Recorded) -> Table {
        let fleets = serde_json::from_slice::<serde_json::Value>(&recorded.fleet_list)
            .ok()
            .and_then(|v| {
                let list = v.get("d")?.as_array()?.iter();
                Some(list.filter_map(|f| f.get("id")?.as_u64()).collect())
            })
            .unwrap_or_default();
        let devices: Vec<Device> = recorded
            .rows
            .iter()
            .map(|row| Device {
                row: row.clone(),
                changed_at: support::initial_changed_at(row.id),
            })
            .collect();
        let clock = devices.iter().map(|d| d.changed_at).max().unwrap_or(0);
        Table {
            whoami: recorded.whoami.clone(),
            probe: recorded.probe.clone(),
            fleet_list: recorded.fleet_list.clone(),
            service_list: recorded.service_list.clone(),
            release_list: recorded.release_list.clone(),
            fleets,
            devices,
            clock: clock.max(support::SERVER_EPOCH),
            rounds: 0,
            pages: HashMap::new(),
        }
    }

    /// Assembles and keeps every full page of a first crawl with `modified` and `gzip` as
    /// the binary asks, so that the first crawl's wall time is not the replay's.
    pub(crate) fn warm(&mut self, page_size: usize, modified: bool, gzip: bool) {
        let mut after = 0;
        loop {
            let (answer, last) = self.full_page(after, page_size, modified, gzip);
            match last {
                Some(last) if answer.rows > 0 => after = last,
                _ => return,
            }
        }
    }

    /// The page of up to `top` devices with an id above `after`, and the last id in it.
    pub(crate) fn full_page(
        &mut self,
        after: u64,
        top: usize,
        modified: bool,
        gzipped: bool,
    ) -> (Answer, Option<u64>) {
        let start = self.devices.partition_point(|d| d.row.id <= after);
        let end = (start + top).min(self.devices.len());
        let last = end.checked_sub(1).filter(|&e| e >= start);
        let last = last.map(|e| self.devices[e].row.id);
        let key = (after, top, modified, false);
        let plain = match self.pages.get(&key) {
            Some(body) => body.clone(),
            None => {
                let body = Bytes::from(self.assemble(&self.devices[start..end], modified));
                self.pages.insert(key, body.clone());
                body
            }
        };
        let mut answer = Answer::ok(Shape::Devices, plain.clone());
        answer.rows = end - start;
        if gzipped && plain.len() >= 1024 {
            let key = (after, top, modified, true);
            let body = self
                .pages
                .entry(key)
                .or_insert_with(|| Bytes::from(gzip(&plain)))
                .clone();
            answer.gzipped = Some(body);
        }
        (answer, last)
    }

    fn assemble(&self, devices: &[Device], modified: bool) -> Vec<u8> {
        let at: HashMap<u64, u64> = if modified {
            devices.iter().map(|d| (d.row.id, d.changed_at)).collect()
        } else {
            HashMap::new()
        };
        support::envelope(devices.iter().map(|d| &d.row), |r| at.get(&r.id).copied())
    }

    /// The answer to `path?query`.
    pub(crate) fn answer(&mut self, path: &str, query: &str, gzip: bool) -> Answer {
        let ask = Ask::parse(query);
        let listing = |body: &Bytes| {
            let body = if ask.after.unwrap_or(0) == 0 {
                body.clone()
            } else {
                Bytes::from_static(EMPTY)
            };
            let mut answer = Answer::ok(Shape::Listing, body);
            answer.etag = Some(etag(&answer.body));
            answer
        };
        match path {
            balena_exporter::balena::query::WHOAMI => {
                Answer::ok(Shape::Whoami, self.whoami.clone())
            }
            "/v7/application" => listing(&self.fleet_list),
            "/v7/service" => listing(&self.service_list),
            "/v7/release" => listing(&self.release_list),
            "/v7/device/$count" => {
                // Every device, or (`query::changed_count`) those changed since a time.
                let since = ask.since.unwrap_or(0);
                let n = self.devices.iter().filter(|d| d.changed_at > since).count();
                let n = if ask.since.is_some() {
                    n
                } else {
                    self.devices.len()
                };
                Answer::ok(Shape::Count, Bytes::from(format!("{{\"d\":{n}}}")))
            }
            "/v7/device" => {
                let top = ask.top.unwrap_or(usize::MAX);
                match (ask.after, ask.since) {
                    (None, _) => Answer::ok(Shape::Probe, self.probe.clone()),
                    (Some(after), _) if ask.select == "id" => {
                        let start = self.devices.partition_point(|d| d.row.id <= after);
                        let ids: Vec<String> = self.devices[start..]
                            .iter()
                            .take(top)
                            .map(|d| format!("{{\"id\":{}}}", d.row.id))
                            .collect();
                        let body = format!("{{\"d\":[{}]}}", ids.join(","));
                        Answer::ok(Shape::Ids, Bytes::from(body))
                    }
                    (Some(after), Some(since)) => {
                        let start = self.devices.partition_point(|d| d.row.id <= after);
                        let changed: Vec<&Device> = self.devices[start..]
                            .iter()
                            .filter(|d| d.changed_at > since)
                            .take(top)
                            .collect();
                        let modified = ask.modified();
                        // A changed read selects its installs' and tags' `modified_at` too.
                        let stamps =
                            query.contains(",modified_at;") || query.contains(",modified_at)");
                        let rows: Vec<Row> = changed
                            .iter()
                            .map(|d| {
                                if stamps {
                                    d.row.stamped(d.changed_at)
                                } else {
                                    d.row.clone()
                                }
                            })
                            .collect();
                        let body = support::envelope(&rows, |r| {
                            let d = changed.iter().find(|d| d.row.id == r.id);
                            d.filter(|_| modified).map(|d| d.changed_at)
                        });
                        let mut answer = Answer::ok(Shape::Changed, Bytes::from(body));
                        answer.rows = changed.len();
                        answer
                    }
                    (Some(after), None) => self.full_page(after, top, ask.modified(), gzip).0,
                }
            }
            _ => Answer {
                status: StatusCode::NOT_FOUND,
                ..Answer::ok(Shape::Unknown, Bytes::new())
            },
        }
    }

    /// One round of changes (see `Churn`).
    pub(crate) fn churn(&mut self, churn: Churn) {
        self.rounds += 1;
        self.pages.clear();
        let round = self.rounds;
        let n = self.devices.len();
        if n == 0 {
            return;
        }
        let mut draw = (0u64..).map(|i| support::mix(round << 32 | i));
        let changed = ((n as f64 * churn.share).round() as usize).min(n);
        let mut picked: Vec<usize> = if changed == n {
            (0..n).collect()
        } else {
            let mut set = std::collections::HashSet::new();
            while set.len() < changed {
                set.insert(draw.next().unwrap_or(0) as usize % n);
            }
            set.into_iter().collect()
        };
        picked.sort_unstable();
        let moved: Vec<usize> = (0..churn.moves)
            .map(|_| draw.next().unwrap_or(0) as usize % n)
            .collect();
        // The writes of the round, spread over the server's interval in a drawn order.
        let mut writes: Vec<usize> = picked.iter().chain(&moved).copied().collect();
        writes.sort_by_key(|&i| support::mix(round ^ (i as u64) << 20));
        writes.dedup();
        let step = (SERVER_INTERVAL / (writes.len() as u64 + 1)).max(1);
        let start = self.clock;
        for (k, &i) in writes.iter().enumerate() {
            self.devices[i].changed_at = start + (k as u64 + 1) * step;
        }
        self.clock = (start + SERVER_INTERVAL).max(start + (writes.len() as u64 + 1) * step);
        for &i in &picked {
            let d = &mut self.devices[i];
            let usage = support::mix(round ^ d.row.id) % 100;
            d.row.text = patch(&d.row.text, "\"cpu_usage\":", &usage.to_string());
        }
        for &i in &moved {
            let d = &mut self.devices[i];
            let at = self
                .fleets
                .iter()
                .position(|&f| f == d.row.fleet)
                .unwrap_or(0);
            let to = self.fleets[(at + 1) % self.fleets.len().max(1)];
            let key = "\"belongs_to__application\":{\"__id\":";
            d.row.text = patch(&d.row.text, key, &to.to_string());
            d.row.fleet = to;
        }
        for _ in 0..churn.deletes.min(self.devices.len()) {
            let i = draw.next().unwrap_or(0) as usize % self.devices.len();
            self.devices.remove(i);
        }
    }
}

/// `text` with the value after `key` (a number or null) replaced by `value`.
fn patch(text: &str, key: &str, value: &str) -> String {
    let Some(at) = text.find(key) else {
        panic!("no {key} in a device row");
    };
    let from = at + key.len();
    let len = text[from..]
        .find([',', '}'])
        .expect("a value ends the field");
    format!("{}{value}{}", &text[..from], &text[from + len..])
}
