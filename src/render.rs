//! One crawl's renderings, built as its device pages arrive: the `/metrics` families, the `/sd`
//! target groups and the status page's lists. Each device is converted, written into every
//! family, group and list it belongs to, and dropped; only the fleets and their counts are
//! kept until the end of the crawl. A crawl that fails drops its rendering, and the last good
//! publication stays.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use crate::balena::model;
use crate::config::SdConfig;
use crate::metrics::Families;
use crate::sd;
use crate::snapshot::{by_slug, Converter, Fleet, Tally};
use crate::state::Body;
use crate::status::{self, Survey};

/// What is rendered, besides what the crawl read.
#[derive(Clone, Debug)]
pub struct Settings {
    pub device_metrics: bool,
    pub sd: Arc<SdConfig>,
    /// The balena dashboard the status page's devices link to (`BALENA_DASHBOARD_URL`).
    pub dashboard: Option<Arc<str>>,
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
    pub fn new(settings: &Settings, converter: Converter, fleets: Vec<Fleet>) -> Rendering {
        Rendering {
            families: Families::new(settings.device_metrics, &converter, true),
            sd: sd::Writer::new(settings.sd.clone(), true),
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

    /// Renders a page of devices.
    pub fn add_devices(&mut self, page: Vec<model::Device>) {
        for device in page {
            let fleet = device.fleet.as_ref().and_then(|r| self.index.get(&r.__id));
            let Some(&i) = fleet else {
                self.orphans += 1;
                continue;
            };
            let d = self.converter.device(device);
            let f = &self.fleets[i];
            self.families.add_device(f, &d);
            self.sd.add(f, &d);
            self.survey.add(i, &d);
            self.tallies[i].add(&d);
            self.devices += 1;
        }
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
