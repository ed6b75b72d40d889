//! What both benchmarks share: the test suite's fake API and account generator (included by
//! path, not copied), and the API's answers for a generated account, recorded once from the
//! fake so that a benchmark measures the exporter and not the fake.
//!
//! The fake renders every device of its account for every request (and ranks device types per
//! record), which is fine for tests and far too slow for 100,000 devices. So each page is
//! recorded from a fake that holds every fleet but only that page's devices, with the
//! exporter's own query for the first page; the replay then answers the exporter's real query
//! for page k (ids above the last id of page k - 1) with page k, and the query after the last
//! page with an empty page. The bodies are byte for byte what the fake serves.

#![allow(dead_code)]

#[path = "../../tests/common/fake/mod.rs"]
pub mod fake;
#[path = "../../tests/common/generate.rs"]
pub mod generate;

use std::collections::HashMap;
use std::path::PathBuf;

use balena_exporter::balena::{model, query};
use balena_exporter::config::{Config, CrawlConfig, TagFilter};
use balena_exporter::render::{self, Pages, Rendered};
use bytes::Bytes;

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
    /// Page k holds devices k × page_size .. (k + 1) × page_size in id order.
    pub pages: Vec<Bytes>,
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
        let mut devices = account.devices.clone();
        devices.sort_by_key(|d| d.id);
        let mut pages = Vec::new();
        for chunk in devices.chunks(page_size as usize) {
            api.set_account(fake::Account {
                devices: chunk.to_vec(),
                ..fleets_only.clone()
            });
            pages.push(get(query::devices(None, &READS, page_size, 0)).await);
        }
        let parts = [whoami, probe, fleet_list, service_list];
        Recorded::new(devices.len(), page_size, parts, pages)
    }

    /// The answers of a crawl: whoami, the location probe, the fleet and service lists, then
    /// the device pages; the number of fleets is read from the fleet list.
    fn new(devices: usize, page_size: u32, parts: [Bytes; 4], pages: Vec<Bytes>) -> Recorded {
        let [whoami, probe, fleet_list, service_list] = parts;
        let fleets = serde_json::from_slice::<model::Envelope<model::Fleet>>(&fleet_list)
            .map_or(0, |e| e.d.len());
        Recorded {
            devices,
            fleets,
            page_size,
            whoami,
            probe,
            fleet_list,
            service_list,
            pages,
        }
    }

    /// The generated account of `devices` devices ([`generate::sized`]), recorded once and
    /// cached under `target/bench-data/` (recording 100,000 devices takes about a minute).
    pub async fn sized(devices: usize, page_size: u32) -> Recorded {
        let dir = target_dir().join("bench-data");
        // Keyed by the generator's and the fake's source, so that a change to either records anew.
        let sources = [
            include_str!("../../tests/common/generate.rs"),
            include_str!("../../tests/common/fake/mod.rs"),
            include_str!("../../tests/common/fake/account.rs"),
            include_str!("../../tests/common/fake/odata.rs"),
            include_str!("../../tests/common/fake/resources.rs"),
        ];
        let version = sources
            .iter()
            .flat_map(|s| s.bytes())
            .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
            });
        let file = dir.join(format!(
            "account-{devices}-p{page_size}-{version:016x}.json"
        ));
        if let Ok(text) = std::fs::read(&file) {
            if let Ok(cached) = serde_json::from_slice::<Vec<String>>(&text) {
                if cached.len() >= 4 {
                    let mut it = cached.into_iter().map(Bytes::from);
                    let parts = [(); 4].map(|()| it.next().unwrap_or_default());
                    return Recorded::new(devices, page_size, parts, it.collect());
                }
            }
        }
        let recorded = Recorded::from_fake(&generate::sized(devices), page_size).await;
        let all: Vec<String> = [
            &recorded.whoami,
            &recorded.probe,
            &recorded.fleet_list,
            &recorded.service_list,
        ]
        .into_iter()
        .chain(&recorded.pages)
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .collect();
        let _ = std::fs::create_dir_all(&dir);
        let _ = std::fs::write(&file, serde_json::to_vec(&all).unwrap_or_default());
        recorded
    }

    /// What the exporter's requests map to: `path?query` → body.
    pub fn routes(&self) -> HashMap<String, Bytes> {
        let empty = Bytes::from_static(br#"{"d":[]}"#);
        let last_id = |body: &Bytes| {
            serde_json::from_slice::<model::Envelope<model::Device>>(body)
                .ok()
                .and_then(|e| e.d.last().map(|d| d.id))
                .unwrap_or(0)
        };
        let mut map = HashMap::new();
        let tags = &TagFilter::All;
        map.insert(query::WHOAMI.to_string(), self.whoami.clone());
        map.insert(query::LOCATION_PROBE.to_string(), self.probe.clone());
        map.insert(
            query::fleets(tags, self.page_size, 0),
            self.fleet_list.clone(),
        );
        let last_fleet = serde_json::from_slice::<model::Envelope<model::Fleet>>(&self.fleet_list)
            .ok()
            .and_then(|e| e.d.last().map(|f| f.id))
            .unwrap_or(0);
        map.insert(
            query::fleets(tags, self.page_size, last_fleet),
            empty.clone(),
        );
        map.insert(
            query::services(self.page_size, 0),
            self.service_list.clone(),
        );
        let last_service =
            serde_json::from_slice::<model::Envelope<model::Service>>(&self.service_list)
                .ok()
                .and_then(|e| e.d.last().map(|s| s.id))
                .unwrap_or(0);
        map.insert(query::services(self.page_size, last_service), empty.clone());
        // No release says a restart policy (the generated services have none): one empty page.
        map.insert(query::releases(self.page_size, 0), empty.clone());
        let mut after = 0;
        for page in &self.pages {
            map.insert(
                query::devices(None, &READS, self.page_size, after),
                page.clone(),
            );
            after = last_id(page);
        }
        // The exporter reads until a page is empty.
        map.insert(query::devices(None, &READS, self.page_size, after), empty);
        map
    }

    /// The pages a crawl of this account reads (no release pages: the fake has none).
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

    /// Response bytes of a steady crawl's bodies (with the empty pages that end fleets,
    /// services and devices; without the first crawl's location question).
    pub fn body_bytes(&self) -> usize {
        self.whoami.len()
            + self.fleet_list.len()
            + self.service_list.len()
            + self.pages.iter().map(Bytes::len).sum::<usize>()
            + 3 * br#"{"d":[]}"#.len()
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
