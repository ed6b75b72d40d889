//! What the benchmarks share: the test suite's fake API and account generator (included by
//! path, not copied), and the API's answers for a generated account, recorded once from the
//! fake so that a benchmark measures the exporter and not the fake.
//!
//! The fake renders every device of its account for every request (and ranks device types per
//! record), which is fine for tests and far too slow for 100,000 devices. So devices are
//! recorded a page at a time, each from a fake that holds every fleet but only that page's
//! devices, with the exporter's own device query, and each page is split into its rows: one
//! row per device, as the fake renders it (`Row`). The crawl bench serves pages assembled from
//! those rows (`benches/crawl/table.rs`, `Table`), so that it can answer full, changed-since
//! and id pages and change devices between crawls.
//!
//! `modified_at`: the fake has no such field yet, so rows are recorded without it (the
//! exporter's query less `modified_at`, and any `modified_at` a fake renders is dropped) and
//! the replay writes it into each row it serves whose query selects it, from a time it keeps
//! per device (`initial_changed_at` at first).

#![allow(dead_code)]

#[path = "../../tests/common/fake/mod.rs"]
pub mod fake;
#[path = "../../tests/common/generate.rs"]
pub mod generate;

use std::path::PathBuf;
use std::time::{Duration, UNIX_EPOCH};

use balena_exporter::balena::{model, query};
use balena_exporter::config::{Config, CrawlConfig, TagFilter};
use balena_exporter::render::{self, Pages, Rendered};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// The sizes every figure is taken at.
pub const SIZES: &[usize] = &[10, 1_000, 10_000, 100_000];

/// The exporter's default `PAGE_SIZE`.
pub const PAGE_SIZE: u32 = 1_000;

/// What the exporter reads with its default settings: services, every tag, coordinates.
pub const READS: query::DeviceReads = query::DeviceReads {
    services: true,
    tags: &TagFilter::All,
    location: true,
};

/// The server's clock when the bench starts (2026-12-01T00:00:00Z, Unix ms): every device
/// was last written in the 30 days before it.
pub const SERVER_EPOCH: u64 = 1_796_083_200_000;

/// When device `id` was last written before the bench: spread over 30 days before
/// `SERVER_EPOCH`, so that a crawl's overlap (its duration and 10 s) holds next to none.
pub fn initial_changed_at(id: u64) -> u64 {
    SERVER_EPOCH - 1 - mix(id) % (30 * 86_400_000)
}

/// splitmix64: a well-mixed number from `x`.
pub fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A `modified_at` value as the server writes it: `2026-12-07T17:42:44.154Z`.
pub fn iso_millis(unix_millis: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(unix_millis)).to_string()
}

/// One device as the fake renders it for the exporter's device query, without `modified_at`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Row {
    pub id: u64,
    /// `belongs_to__application`.
    pub fleet: u64,
    /// The JSON object, compact, ending in `}`.
    pub text: String,
}

impl Row {
    /// The row with `"modified_at":"<at>"` in each of its image installs and tags, as a
    /// changed read selects them (`query::changed_devices`).
    pub fn stamped(&self, at: u64) -> Row {
        let mut value: serde_json::Value =
            serde_json::from_str(&self.text).expect("a recorded row is JSON");
        for nav in ["image_install", "device_tag"] {
            for child in value[nav].as_array_mut().into_iter().flatten() {
                child["modified_at"] = iso_millis(at).into();
            }
        }
        Row {
            text: value.to_string(),
            ..*self
        }
    }

    /// The row's JSON with `"modified_at":"<at>"` as its last field when `modified`.
    pub fn write(&self, out: &mut Vec<u8>, modified: Option<u64>) {
        match modified {
            Some(at) => {
                out.extend_from_slice(&self.text.as_bytes()[..self.text.len() - 1]);
                out.extend_from_slice(b",\"modified_at\":\"");
                out.extend_from_slice(iso_millis(at).as_bytes());
                out.extend_from_slice(b"\"}");
            }
            None => out.extend_from_slice(self.text.as_bytes()),
        }
    }
}

/// `{"d":[...]}` of `rows`, each with its `modified_at` when `modified` gives one.
pub fn envelope<'a>(
    rows: impl IntoIterator<Item = &'a Row>,
    modified: impl Fn(&Row) -> Option<u64>,
) -> Vec<u8> {
    let mut out = Vec::from(&b"{\"d\":["[..]);
    for (i, row) in rows.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        row.write(&mut out, modified(row));
    }
    out.extend_from_slice(b"]}");
    out
}

/// The exporter's device query for a page, without `modified_at` in its `$select` (the fake
/// answers an unknown field with 500).
fn recording_query(page_size: u32) -> String {
    query::devices(None, &READS, page_size, 0)
        .replace(",modified_at,", ",")
        .replace(",modified_at&", "&")
}

/// A device page's rows, without any `modified_at`.
fn split_rows(page: &[u8]) -> Vec<Row> {
    #[derive(Deserialize)]
    struct Page {
        d: Vec<serde_json::Value>,
    }
    let page: Page = serde_json::from_slice(page).expect("the fake's device page is JSON");
    page.d
        .into_iter()
        .map(|mut value| {
            let object = value.as_object_mut().expect("a device row is an object");
            object.remove("modified_at");
            let id = object.get("id").and_then(serde_json::Value::as_u64);
            let fleet = object
                .get("belongs_to__application")
                .and_then(|f| f.get("__id"))
                .and_then(serde_json::Value::as_u64);
            Row {
                id: id.expect("a device row has an id"),
                fleet: fleet.expect("a device row has its fleet"),
                text: value.to_string(),
            }
        })
        .collect()
}

/// The API's answers for one account, as the exporter asks for them.
pub struct Recorded {
    pub devices: usize,
    pub fleets: usize,
    pub page_size: u32,
    pub whoami: Bytes,
    /// The answer to the first crawl's question whether the server has coordinates.
    pub probe: Bytes,
    pub fleet_list: Bytes,
    pub service_list: Bytes,
    /// The releases in use (`query::releases`).
    pub release_list: Bytes,
    /// Every device in id order.
    pub rows: Vec<Row>,
    /// Page k holds devices k × page_size .. (k + 1) × page_size in id order, as the
    /// exporter's query reads them (with `modified_at`, `initial_changed_at`).
    pub pages: Vec<Bytes>,
}

/// Changed when what is recorded changes (part of the cache's key).
const RECORDING_FORMAT: &str = "rows, modified_at left out, releases: 1";

/// How `Recorded::sized` caches an account on disk.
#[derive(Serialize, Deserialize)]
struct Cached {
    /// whoami, probe, fleets, services, releases.
    parts: Vec<String>,
    rows: Vec<Row>,
}

impl Recorded {
    /// Records `account` page by page through the fake.
    pub async fn from_fake(account: &fake::Account, page_size: u32) -> Recorded {
        let token = generate::TOKEN;
        let fleets_only = fake::Account {
            devices: Vec::new(),
            ..account.clone()
        };
        let api = fake::FakeBalena::start(fleets_only.clone()).await;
        let http = reqwest::Client::new();
        let get = |path: String| {
            let request = http
                .get(format!("{}{path}", api.url()))
                .bearer_auth(token)
                .send();
            async move {
                let response = request.await.expect("fake answers");
                assert_eq!(response.status(), 200, "fake refused {path}");
                response.bytes().await.expect("fake body")
            }
        };
        let whoami = get(query::WHOAMI.to_string()).await;
        let probe = get(query::LOCATION_PROBE.to_string()).await;
        let fleet_list = get(query::fleets(&TagFilter::All, page_size, 0)).await;
        let service_list = get(query::services(page_size, 0)).await;
        // Releases are read with every device in the account: the releases in use.
        api.set_account(account.clone());
        let release_list = get(query::releases(page_size, 0)).await;
        let mut devices = account.devices.clone();
        devices.sort_by_key(|d| d.id);
        let mut rows = Vec::with_capacity(devices.len());
        for chunk in devices.chunks(page_size as usize) {
            api.set_account(fake::Account {
                devices: chunk.to_vec(),
                ..fleets_only.clone()
            });
            rows.extend(split_rows(&get(recording_query(page_size)).await));
        }
        let parts = [whoami, probe, fleet_list, service_list, release_list];
        Recorded::new(page_size, parts, rows)
    }

    /// The answers of a crawl: whoami, the location probe, the fleet, service and release
    /// lists, then the devices' rows; the number of fleets is read from the fleet list.
    fn new(page_size: u32, parts: [Bytes; 5], rows: Vec<Row>) -> Recorded {
        let [whoami, probe, fleet_list, service_list, release_list] = parts;
        let fleets = serde_json::from_slice::<model::Envelope<model::Fleet>>(&fleet_list)
            .map_or(0, |e| e.d.len());
        let pages = rows
            .chunks(page_size as usize)
            .map(|chunk| Bytes::from(envelope(chunk, |r| Some(initial_changed_at(r.id)))))
            .collect();
        Recorded {
            devices: rows.len(),
            fleets,
            page_size,
            whoami,
            probe,
            fleet_list,
            service_list,
            release_list,
            rows,
            pages,
        }
    }

    /// The generated account of `devices` devices ([`generate::sized`]), recorded once and
    /// cached under `target/bench-data/` (recording 100,000 devices takes about a minute).
    pub async fn sized(devices: usize, page_size: u32) -> Recorded {
        let dir = target_dir().join("bench-data");
        // Keyed by the generator's and the fake's source and the recording's format, so that a
        // change to any of them records anew.
        let sources = [
            include_str!("../../tests/common/generate.rs"),
            include_str!("../../tests/common/fake/mod.rs"),
            include_str!("../../tests/common/fake/account.rs"),
            include_str!("../../tests/common/fake/odata.rs"),
            include_str!("../../tests/common/fake/resources.rs"),
            RECORDING_FORMAT,
        ];
        let version = sources
            .iter()
            .flat_map(|s| s.bytes())
            .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
            });
        let file = dir.join(format!("rows-{devices}-p{page_size}-{version:016x}.json"));
        if let Ok(text) = std::fs::read(&file) {
            if let Ok(cached) = serde_json::from_slice::<Cached>(&text) {
                if cached.parts.len() == 5 {
                    let mut it = cached.parts.into_iter().map(Bytes::from);
                    let parts = [(); 5].map(|()| it.next().unwrap_or_default());
                    return Recorded::new(page_size, parts, cached.rows);
                }
            }
        }
        let recorded = Recorded::from_fake(&generate::sized(devices), page_size).await;
        let cached = Cached {
            parts: [
                &recorded.whoami,
                &recorded.probe,
                &recorded.fleet_list,
                &recorded.service_list,
                &recorded.release_list,
            ]
            .into_iter()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect(),
            rows: recorded.rows.clone(),
        };
        let _ = std::fs::create_dir_all(&dir);
        let _ = std::fs::write(&file, serde_json::to_vec(&cached).unwrap_or_default());
        recorded
    }

    /// The pages a crawl of this account reads (no release pages, as before the crawl read
    /// them: the generated services have no restart policy).
    pub fn pages(&self) -> Pages {
        Pages {
            fleets: vec![self.fleet_list.to_vec()],
            services: vec![self.service_list.to_vec()],
            releases: vec![],
            devices: self.pages.iter().map(|p| p.to_vec()).collect(),
        }
    }

    /// What a crawl of this account renders: the production render path, page by page.
    pub fn render(&self, pages: &Pages) -> Rendered {
        pages
            .render(&settings(), &crawl_config(), std::time::SystemTime::now())
            .expect("recorded pages decode")
    }

    /// Response bytes of a full crawl's plain bodies (with the empty pages that end fleets,
    /// services, releases and devices; without the first crawl's location question).
    pub fn body_bytes(&self) -> usize {
        self.whoami.len()
            + self.fleet_list.len()
            + self.service_list.len()
            + self.release_list.len()
            + self.pages.iter().map(Bytes::len).sum::<usize>()
            + 4 * br#"{"d":[]}"#.len()
    }
}

/// Cargo's target directory (`CARGO_TARGET_DIR`, else `target/` of the crate).
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"))
}

/// Where the benchmarks leave their tables for `scripts/bench`.
pub fn results_dir() -> PathBuf {
    let dir = target_dir().join("bench");
    let _ = std::fs::create_dir_all(&dir);
    dir
}

/// `1234567` → `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Bytes as `812 B`, `3.4 KiB`, `21.7 MiB`.
pub fn size(bytes: u64) -> String {
    let b = bytes as f64;
    if b < 1024.0 {
        format!("{bytes} B")
    } else if b < 1024.0 * 1024.0 {
        format!("{:.1} KiB", b / 1024.0)
    } else {
        format!("{:.1} MiB", b / 1024.0 / 1024.0)
    }
}

/// Seconds as `412 µs`, `12.3 ms`, `1.52 s`.
pub fn duration(seconds: f64) -> String {
    if seconds < 1e-3 {
        format!("{:.0} µs", seconds * 1e6)
    } else if seconds < 1.0 {
        format!("{:.1} ms", seconds * 1e3)
    } else {
        format!("{seconds:.2} s")
    }
}

/// The exporter's configuration for the benches: every fleet, services and tags, `lan`
/// service discovery, no dashboard links.
fn config() -> Config {
    let vars = [
        ("BALENA_TOKEN", "t"),
        ("SD_MODE", "lan"),
        ("BALENA_DASHBOARD_URL", "off"),
    ];
    Config::from_vars(vars.map(|(k, v)| (k.to_string(), v.to_string())))
        .expect("a valid configuration")
}

/// What the exporter renders, configured as `config` says.
pub fn settings() -> render::Settings {
    render::Settings::new(&config())
}

/// What the crawl reads, configured as `config` says.
pub fn crawl_config() -> CrawlConfig {
    config().crawl
}
