//! The one render path: a crawl's API pages, in the order they are read (fleet pages, service
//! pages, release pages: `Reading`; then device pages: `Rendering`), become the `/metrics`
//! families, the `/sd` target groups and the status page's fleets part (`Rendered`). Each
//! device is converted, written into every family, group and list it belongs to, and dropped;
//! only the fleets and their counts are kept until the end of the crawl. The crawler feeds it
//! page by page as the API answers; tests and benches feed it recorded or generated pages
//! (`Pages`). A crawl that fails drops its rendering, and the last good publication stays.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use crate::balena::{self, model};
use crate::config::{Config, CrawlConfig, FleetFilter, SdConfig, TagFilter};
use crate::metrics::Families;
use crate::sd;
use crate::snapshot::{by_slug, unix_millis, Converter, Device, Fleet, Tally};
use crate::state::Body;
use crate::status::{self, Survey};
use crate::store::Store;

/// What is rendered, besides what the crawl read.
#[derive(Clone, Debug)]
pub struct Settings {
    pub device_metrics: bool,
    pub sd: Arc<SdConfig>,
    /// The balena dashboard the status page's devices link to (`BALENA_DASHBOARD_URL`).
    pub dashboard: Option<Arc<str>>,
}

impl Settings {
    /// What the configuration asks to render.
    pub fn new(config: &Config) -> Settings {
        Settings {
            device_metrics: config.device_metrics,
            sd: Arc::new(config.sd.clone()),
            dashboard: config.balena_dashboard_url.as_deref().map(Arc::from),
        }
    }
}

/// The pages read before the devices: the fleets (those the crawl watches are kept), the
/// service names and the releases' restart policies.
pub struct Reading {
    settings: Settings,
    watched: FleetFilter,
    converter: Converter,
    fleets: Vec<Fleet>,
    /// Fleets the token sees, watched or not.
    visible: usize,
}

impl Reading {
    /// A crawl configured by `crawl` (which fleets, whether services and tags are read, the
    /// services never counted as failing), rendered as `settings` say.
    pub fn new(settings: &Settings, crawl: &CrawlConfig) -> Reading {
        let converter = Converter::new(crawl.services, crawl.tags != TagFilter::None)
            .excluding(&crawl.ignore_services);
        Reading {
            settings: settings.clone(),
            watched: crawl.fleets.clone(),
            converter,
            fleets: Vec::new(),
            visible: 0,
        }
    }

    /// A page of fleets (`balena::page`: the ids of its rows, or why it does not decode).
    pub fn fleet_page(&mut self, body: &[u8]) -> Result<Vec<u64>, serde_json::Error> {
        balena::page(body, |page: Vec<model::Fleet>| {
            self.visible += page.len();
            for fleet in page {
                if self.watched.matches(&fleet.slug, &fleet.app_name) {
                    self.fleets.push(self.converter.fleet(fleet));
                }
            }
        })
    }

    /// A page of services: their names.
    pub fn service_page(&mut self, body: &[u8]) -> Result<Vec<u64>, serde_json::Error> {
        balena::page(body, |page| self.converter.add_services(page))
    }

    /// A page of releases: their services' restart policies.
    pub fn release_page(&mut self, body: &[u8]) -> Result<Vec<u64>, serde_json::Error> {
        balena::page(body, |page| self.converter.add_releases(page))
    }

    /// The ids of the watched fleets, in the order read.
    pub fn fleet_ids(&self) -> Vec<u64> {
        self.fleets.iter().map(|f| f.id).collect()
    }

    /// Fleets the token sees, watched or not.
    pub fn visible_fleets(&self) -> usize {
        self.visible
    }

    /// The rendering the device pages go into.
    pub fn devices(self) -> Rendering {
        Rendering::new(&self.settings, self.converter, self.fleets)
    }
}

/// One crawl's API page bodies, in the order the crawler reads them: what tests and benches
/// feed the render path with, as the crawler does page by page.
#[derive(Clone, Debug, Default)]
pub struct Pages {
    pub fleets: Vec<Vec<u8>>,
    pub services: Vec<Vec<u8>>,
    pub releases: Vec<Vec<u8>>,
    pub devices: Vec<Vec<u8>>,
}

impl Pages {
    /// The renderings of these pages, as a full crawl makes them, as of `now`; an error when
    /// a page does not decode (the crawl would fail).
    pub fn render(
        &self,
        settings: &Settings,
        crawl: &CrawlConfig,
        now: SystemTime,
    ) -> Result<Rendered, serde_json::Error> {
        self.render_as(settings, crawl, now, None)
    }

    /// As `render`, through the devices kept for incremental crawls: every device page read
    /// into a `Store` as changed rows are, and the store rendered, as an incremental crawl
    /// does. It must give the same bytes as `render`.
    pub fn render_kept(
        &self,
        settings: &Settings,
        crawl: &CrawlConfig,
        now: SystemTime,
    ) -> Result<Rendered, serde_json::Error> {
        self.render_as(settings, crawl, now, Some(Store::default()))
    }

    fn render_as(
        &self,
        settings: &Settings,
        crawl: &CrawlConfig,
        now: SystemTime,
        store: Option<Store>,
    ) -> Result<Rendered, serde_json::Error> {
        let mut reading = Reading::new(settings, crawl);
        for body in &self.fleets {
            reading.fleet_page(body)?;
        }
        let watched = !reading.fleets.is_empty();
        if crawl.services && watched {
            for body in &self.services {
                reading.service_page(body)?;
            }
            for body in &self.releases {
                reading.release_page(body)?;
            }
        }
        let mut rendering = reading.devices();
        let devices = if watched { &self.devices[..] } else { &[] };
        match store {
            None => {
                for body in devices {
                    rendering.device_page(body, None)?;
                }
                Ok(rendering.finish(now))
            }
            Some(mut store) => {
                for body in devices {
                    rendering.changed_page(body, &mut store)?;
                }
                Ok(rendering.finish_kept(&store, now))
            }
        }
    }
}

pub struct Rendering {
    converter: Converter,
    /// The watched fleets in the order the API listed them, and their counts.
    fleets: Vec<Fleet>,
    tallies: Vec<Tally>,
    index: HashMap<u64, usize>,
    families: Families,
    sd: sd::Writer,
    survey: Survey,
    dashboard: Option<Arc<str>>,
    devices: usize,
    orphans: usize,
}

/// What a successful crawl publishes.
pub struct Rendered {
    pub metrics: Body,
    pub sd: Body,
    /// `status::fleets_part`.
    pub fleets_html: String,
    /// `sd::Writer::note`.
    pub sd_note: Option<String>,
    pub fleets: usize,
    pub devices: usize,
    /// Devices of fleets not watched, or created after the fleets were read: left out.
    pub orphans: usize,
}

impl Rendering {
    /// A rendering of the devices of `fleets`, converted by `converter` (which knows the
    /// service names, and whether services and tags were read).
    fn new(settings: &Settings, converter: Converter, fleets: Vec<Fleet>) -> Rendering {
        Rendering {
            families: Families::new(settings.device_metrics, converter.reads()),
            sd: sd::Writer::new(settings.sd.clone()),
            survey: Survey::new(&fleets),
            dashboard: settings.dashboard.clone(),
            tallies: vec![Tally::default(); fleets.len()],
            index: fleets.iter().enumerate().map(|(i, f)| (f.id, i)).collect(),
            fleets,
            converter,
            devices: 0,
            orphans: 0,
        }
    }

    /// A page of devices (`balena::page`: the ids of its rows, or why it does not decode),
    /// rendered now: a full crawl's. Each device is kept in `keep` when there is one.
    pub fn device_page(
        &mut self,
        body: &[u8],
        mut keep: Option<&mut Store>,
    ) -> Result<Vec<u64>, serde_json::Error> {
        balena::page(body, |page| {
            for device in page {
                if let Some((i, modified, d)) = self.convert(device) {
                    if let Some(store) = keep.as_deref_mut() {
                        store.put(self.fleets[i].id, &d, modified);
                    }
                    self.add(i, &d);
                }
            }
        })
    }

    /// A page of devices changed since the last crawl, kept in `store` (replacing what was
    /// kept of them) and rendered with the others by `finish_kept`.
    pub fn changed_page(
        &mut self,
        body: &[u8],
        store: &mut Store,
    ) -> Result<Vec<u64>, serde_json::Error> {
        balena::page(body, |page: Vec<model::Device>| {
            for device in page {
                let id = device.id;
                match self.convert(device) {
                    Some((i, modified, d)) => store.put(self.fleets[i].id, &d, modified),
                    // Moved to a fleet not watched: no longer kept.
                    None => store.remove(id),
                }
            }
        })
    }

    /// The device converted, with the index of its fleet and its `modified_at` (Unix
    /// milliseconds); None for a device of a fleet not watched (or created after the fleets
    /// were read), which is counted as an orphan.
    fn convert(&mut self, device: model::Device) -> Option<(usize, Option<u64>, Device)> {
        let fleet = device.fleet.as_ref().and_then(|r| self.index.get(&r.__id));
        let Some(&i) = fleet else {
            self.orphans += 1;
            return None;
        };
        // The newest write read: the device's, or (read by incremental crawls) an install's or
        // a tag's, which leave the device's `modified_at` as it was.
        let stamps = device.installs.iter().map(|i| &i.modified_at);
        let stamps = stamps.chain(device.tags.iter().map(|t| &t.modified_at));
        let modified = std::iter::once(&device.modified_at)
            .chain(stamps)
            .filter_map(|m| m.as_deref().and_then(unix_millis))
            .max();
        Some((i, modified, self.converter.device(device)))
    }

    /// Writes one device of fleet `i` into every family, group and list it belongs to.
    fn add(&mut self, i: usize, d: &Device) {
        let f = &self.fleets[i];
        self.families.add_device(f, d);
        self.sd.add(f, d);
        self.survey.add(i, d);
        self.tallies[i].add(d);
        self.devices += 1;
    }

    /// The renderings of every device kept in `store` (an incremental crawl's): what a full
    /// crawl reading the same rows renders. `now` as in `finish`.
    pub fn finish_kept(mut self, store: &Store, now: SystemTime) -> Rendered {
        for (fleet, d) in store.devices() {
            match self.index.get(&fleet) {
                Some(&i) => self.add(i, &d),
                None => self.orphans += 1,
            }
        }
        self.finish(now)
    }

    /// The renderings; `now` is when the crawl ended (offline durations are as of then).
    pub fn finish(self, now: SystemTime) -> Rendered {
        let sd_note = self.sd.note();
        let fleets_html = status::fleets_part(
            &self.fleets,
            &self.tallies,
            self.survey,
            now,
            self.dashboard.as_deref(),
        );
        let mut sorted: Vec<(&Fleet, Tally)> = self.fleets.iter().zip(self.tallies).collect();
        sorted.sort_by(|a, b| by_slug(a.0, b.0));
        let (streams, mut deflater) = self.families.finish(&sorted);
        let metrics = Body::from_streams(streams, &mut deflater);
        let (stream, mut deflater) = self.sd.finish();
        Rendered {
            metrics,
            sd: Body::from_streams(vec![stream], &mut deflater),
            fleets_html,
            sd_note,
            fleets: self.fleets.len(),
            devices: self.devices,
            orphans: self.orphans,
        }
    }
}

/// For unit tests that describe fleets and devices as plain rows: the API pages those rows
/// are converted from, rendered through the production path.
#[cfg(test)]
pub(crate) mod testing {
    use std::collections::BTreeMap;
    use std::time::{Duration, UNIX_EPOCH};

    use serde_json::{json, Value};

    use super::*;
    use crate::config::SdMode;
    use crate::snapshot::{Device, Text};

    /// The release every device runs (its installs are of it); another is a target it does not.
    const RUNNING: u64 = 1;
    const ELSEWHERE: u64 = 2;
    const MIB: f64 = 1024.0 * 1024.0;

    pub fn sd_config(mode: SdMode) -> SdConfig {
        SdConfig {
            mode,
            fleets: FleetFilter::default(),
            include_offline: false,
            metrics_path: "/metrics".into(),
            file: None,
            own_uuid: None,
        }
    }

    pub fn settings(sd: SdConfig) -> Settings {
        Settings {
            device_metrics: true,
            sd: Arc::new(sd),
            dashboard: None,
        }
    }

    /// Every fleet, services and all tags read.
    pub fn crawl() -> CrawlConfig {
        CrawlConfig {
            interval: Duration::from_secs(60),
            full_interval: Some(Duration::from_secs(3600)),
            page_size: 1000,
            fleets: FleetFilter::default(),
            services: true,
            tags: TagFilter::All,
            location: true,
            ignore_services: Vec::new(),
        }
    }

    /// `fleets` rendered as a crawl at `now` (Unix seconds) renders them.
    pub fn render(settings: &Settings, fleets: &[(Fleet, Vec<Device>)], now: u64) -> Rendered {
        let now = UNIX_EPOCH + Duration::from_secs(now);
        pages(fleets)
            .render(settings, &crawl(), now)
            .expect("the pages decode")
    }

    /// The pages a server would answer for `fleets`: one page of each kind. Fleet ids are
    /// their positions (from 1); services are named by id in order of first appearance.
    pub fn pages(fleets: &[(Fleet, Vec<Device>)]) -> Pages {
        let mut services: BTreeMap<String, u64> = BTreeMap::new();
        let mut fleet_rows = Vec::new();
        let mut device_rows = Vec::new();
        for (i, (f, devices)) in fleets.iter().enumerate() {
            let id = i as u64 + 1;
            fleet_rows.push(fleet_row(id, f));
            for d in devices {
                device_rows.push(device_row(id, d, &mut services));
            }
        }
        let service_rows: Vec<Value> = services
            .iter()
            .map(|(name, id)| json!({"id": id, "service_name": name}))
            .collect();
        let page = |rows: Vec<Value>| json!({ "d": rows }).to_string().into_bytes();
        Pages {
            fleets: vec![page(fleet_rows)],
            services: vec![page(service_rows)],
            releases: vec![],
            devices: vec![page(device_rows)],
        }
    }

    fn tag_rows(tags: &[(Text, Text)]) -> Vec<Value> {
        tags.iter()
            .map(|(k, v)| json!({"tag_key": &**k, "value": &**v}))
            .collect()
    }

    fn fleet_row(id: u64, f: &Fleet) -> Value {
        let target: Vec<Value> = if f.target_release.is_empty() {
            vec![]
        } else {
            vec![json!({"commit": &*f.target_release})]
        };
        json!({
            "id": id, "app_name": &*f.name, "slug": &*f.slug,
            "organization": [{"handle": &*f.organization}],
            "is_for__device_type": [{"slug": &*f.device_type}],
            "should_be_running__release": target,
            "application_tag": tag_rows(&f.tags),
        })
    }

    fn time(seconds: Option<f64>) -> Value {
        seconds.map_or(Value::Null, |s| {
            let t = UNIX_EPOCH + Duration::from_millis((s * 1e3).round() as u64);
            Value::from(humantime::format_rfc3339_millis(t).to_string())
        })
    }

    /// `ratio` in percent, as the API has it.
    fn percent(ratio: Option<f64>) -> Value {
        ratio.map_or(Value::Null, |r| {
            Value::from((r * 100.0 * 1e6).round() / 1e6)
        })
    }

    fn device_row(fleet: u64, d: &Device, services: &mut BTreeMap<String, u64>) -> Value {
        let target = match d.on_target_release {
            Some(true) => json!({"__id": RUNNING}),
            Some(false) => json!({"__id": ELSEWHERE}),
            None => Value::Null,
        };
        let installs: Vec<Value> = d
            .services
            .iter()
            .map(|s| {
                let next = services.len() as u64 + 1;
                let id = *services.entry(s.name.to_string()).or_insert(next);
                json!({
                    "status": &*s.status, "download_progress": percent(s.download_progress),
                    "is_provided_by__release": {"__id": RUNNING},
                    "installs__image": [{"is_a_build_of__service": {"__id": id}}],
                })
            })
            .collect();
        let mib = |bytes: Option<f64>| bytes.map(|b| b / MIB);
        let update_status = (&*d.update_status != "none").then(|| &*d.update_status);
        json!({
            "id": d.id, "uuid": &*d.uuid, "device_name": &*d.name,
            "belongs_to__application": {"__id": fleet},
            "is_of__device_type": [{"slug": &*d.device_type}],
            "is_online": d.online, "overall_status": &*d.status,
            "api_heartbeat_state": &*d.heartbeat, "os_version": &*d.os_version,
            "os_variant": &*d.os_variant, "supervisor_version": &*d.supervisor_version,
            "is_running__release": [{"id": RUNNING, "commit": &*d.release}],
            "should_be_running__release": target,
            "last_connectivity_event": time(d.last_connectivity_seconds),
            "cpu_usage": percent(d.cpu_ratio), "cpu_temp": d.temperature_celsius,
            "memory_usage": mib(d.memory_used_bytes), "memory_total": mib(d.memory_total_bytes),
            "storage_usage": mib(d.storage_used_bytes),
            "storage_total": mib(d.storage_total_bytes),
            "is_undervolted": d.undervolted, "is_web_accessible": d.web_accessible,
            "ip_address": d.addresses.iter().map(|a| &**a).collect::<Vec<_>>().join(" "),
            "update_status": update_status,
            "last_update_status_event": time(d.update_status_changed_seconds),
            "overall_progress": percent(d.update_progress),
            "changed_api_heartbeat_state_on__date": time(d.heartbeat_changed_seconds),
            "latitude": d.latitude, "longitude": d.longitude,
            "image_install": installs, "device_tag": tag_rows(&d.tags),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;
    use crate::config::SdMode;

    fn text(body: &Body) -> String {
        String::from_utf8(body.text().unwrap()).unwrap()
    }

    #[test]
    fn devices_join_fleets_and_orphans_are_left_out() {
        let fleets = br#"{"d":[{"id":2,"app_name":"b","slug":"org/b"},{"id":1,"app_name":"a","slug":"org/a"}]}"#;
        let devices = br#"{"d":[{"id":3,"belongs_to__application":{"__id":1},"overall_status":"brand-new-status"},
            {"id":4,"belongs_to__application":{"__id":9}},
            {"id":5,"belongs_to__application":{"__id":1},"overall_status":"operational","is_online":true},
            {"id":6,"belongs_to__application":{"__id":2},"api_heartbeat_state":"online"}]}"#;
        let pages = Pages {
            fleets: vec![fleets.to_vec()],
            devices: vec![devices.to_vec()],
            ..Pages::default()
        };
        let settings = settings(sd_config(SdMode::Lan { port: 80 }));
        let rendered = pages.render(&settings, &crawl(), UNIX_EPOCH_NOW).unwrap();
        assert_eq!(
            (rendered.fleets, rendered.devices, rendered.orphans),
            (2, 3, 1)
        );
        let metrics = text(&rendered.metrics);
        // Fleets by slug; the counts of each.
        assert!(metrics.contains(
            "balena_devices_online{fleet_name=\"a\",fleet_slug=\"org/a\"} 1\n\
             balena_devices_online{fleet_name=\"b\",fleet_slug=\"org/b\"} 0\n"
        ));
        for line in [
            "balena_fleet_devices_by_status{fleet_name=\"a\",fleet_slug=\"org/a\",status=\"brand-new-status\"} 1",
            "balena_fleet_devices_by_status{fleet_name=\"a\",fleet_slug=\"org/a\",status=\"operational\"} 1",
            "balena_fleet_devices_by_status{fleet_name=\"a\",fleet_slug=\"org/a\",status=\"updating\"} 0",
            "balena_fleet_devices_by_heartbeat{fleet_name=\"b\",fleet_slug=\"org/b\",state=\"online\"} 1",
        ] {
            assert!(metrics.lines().any(|l| l == line), "{line}\n{metrics}");
        }
        // A page that does not decode fails the crawl.
        let bad = Pages {
            devices: vec![b"{\"d\":[{\"id\":\"x\"}]}".to_vec()],
            ..pages
        };
        assert!(bad.render(&settings, &crawl(), UNIX_EPOCH_NOW).is_err());
    }

    const UNIX_EPOCH_NOW: SystemTime = SystemTime::UNIX_EPOCH;
}
