//! The text exposition format, written straight: the fleet and device families of a crawl
//! (`Families`), device by device into gzip streams, and the samples of the health families.

use super::families::*;
use crate::gzip;
use crate::snapshot::{Device, Fleet, Reads, Tally, Text};
use crate::tags;

/// The fleet and device families of one crawl, written as the devices arrive. The text format
/// groups each family's samples, so each device family has a stream of its own that the
/// device's samples are appended to (deflated a segment at a time: `gzip::Stream`); the fleet
/// families, counted as the devices pass, are written at the end; the streams are joined in
/// `FAMILIES` order. Nothing holds the whole text, and no device is kept.
///
/// The text is written straight, without building the prometheus crate's metric model first:
/// at 10,000 devices that model is 130,000 metrics with their own label strings, which cost
/// more time and memory than the text itself. The output is byte for byte what `TextEncoder`
/// writes for the same families (tests/api/golden.rs).
pub struct Families {
    device_metrics: bool,
    reads: Reads,
    out: Streams,
    tag_names: tags::Names,
}

/// The device families' streams.
struct Streams {
    /// One per `DEVICE_FAMILIES` entry.
    streams: Vec<gzip::Stream>,
    /// The help texts of `DEVICE_FAMILIES`, with the note that values are cached.
    helps: Vec<String>,
    deflater: gzip::Deflater,
}

impl Streams {
    /// One sample of a device family.
    fn add(&mut self, slot: Slot, labels: &[(&str, &str)], value: f64) {
        let (def, help) = (DEVICE_FAMILIES[slot as usize], &self.helps[slot as usize]);
        let stream = &mut self.streams[slot as usize];
        let started = stream.text_len() > 0;
        write_sample(stream.text(), def, help, started, labels, value);
        stream.spill(&mut self.deflater);
    }

    /// A sample in each family of `values` that has one.
    fn add_some(&mut self, labels: &[(&str, &str)], values: &[(Slot, Option<f64>)]) {
        for (slot, value) in values {
            if let Some(v) = value {
                self.add(*slot, labels, *v);
            }
        }
    }
}

impl Families {
    /// `reads`: whether the crawl read services and tags (their families are left out when
    /// not); `device_metrics`: whether the device families are written at all.
    pub fn new(device_metrics: bool, reads: Reads) -> Families {
        Families {
            device_metrics,
            reads,
            out: Streams {
                streams: DEVICE_FAMILIES
                    .iter()
                    .map(|_| gzip::Stream::new())
                    .collect(),
                helps: DEVICE_FAMILIES.iter().map(|def| cached(def)).collect(),
                deflater: gzip::Deflater::new(),
            },
            tag_names: tags::Names::new("tag_"),
        }
    }

    /// A device's samples, in every device family.
    pub fn add_device(&mut self, f: &Fleet, d: &Device) {
        if !self.device_metrics {
            return;
        }
        self.add_state(f, d);
        if self.reads.tags {
            let id = [("uuid", &*d.uuid), ("fleet_slug", &*f.slug)];
            let names = self.tag_names.of(&d.tags);
            let mut labels = id.to_vec();
            labels.extend(
                names
                    .iter()
                    .map(String::as_str)
                    .zip(d.tags.iter().map(|t| &*t.1)),
            );
            self.out.add(Slot::Tags, &labels, 1.0);
        }
        if self.reads.services {
            self.add_services(f, d);
        }
    }

    /// The samples every device has, and those of the values it reported.
    fn add_state(&mut self, f: &Fleet, d: &Device) {
        let out = &mut self.out;
        let (uuid, slug) = (("uuid", &*d.uuid), ("fleet_slug", &*f.slug));
        let id = [uuid, slug];
        out.add(Slot::Online, &id, flag(d.online));
        out.add(
            Slot::ExpectedOnline,
            &id,
            flag(d.presence().expected_online()),
        );
        out.add(Slot::Offline, &id, flag(d.offline()));
        out.add_some(&id, &[(Slot::OfflineSince, d.offline_since())]);
        out.add(Slot::Updating, &id, flag(d.updating()));
        out.add(Slot::Status, &[uuid, slug, ("status", &d.status)], 1.0);
        out.add(Slot::Heartbeat, &[uuid, slug, ("state", &d.heartbeat)], 1.0);
        out.add(Slot::Info, &device_info_labels(f, d), 1.0);
        let status = [uuid, slug, ("status", &*d.update_status)];
        out.add(Slot::UpdateStatus, &status, 1.0);
        // Each family has a stream of its own, so the order of these calls is free.
        let values = [
            (Slot::LastConnectivity, d.last_connectivity_seconds),
            (Slot::Cpu, d.cpu_ratio),
            (Slot::Temperature, d.temperature_celsius),
            (Slot::MemoryUsed, d.memory_used_bytes),
            (Slot::MemoryTotal, d.memory_total_bytes),
            (Slot::StorageUsed, d.storage_used_bytes),
            (Slot::StorageTotal, d.storage_total_bytes),
            (Slot::Undervolted, d.undervolted.map(flag)),
            (Slot::OnTarget, d.on_target_release.map(flag)),
            (Slot::UpdateProgress, d.update_progress),
            (Slot::UpdateStatusTime, d.update_status_changed_seconds),
            (Slot::HeartbeatChanged, d.heartbeat_changed_seconds),
            (Slot::Latitude, d.latitude),
            (Slot::Longitude, d.longitude),
        ];
        out.add_some(&id, &values);
    }

    fn add_services(&mut self, f: &Fleet, d: &Device) {
        let out = &mut self.out;
        let (uuid, slug) = (("uuid", &*d.uuid), ("fleet_slug", &*f.slug));
        for s in &d.services {
            let labels = [uuid, slug, ("service", &s.name), ("status", &s.status)];
            out.add(Slot::ServiceStatus, &labels, 1.0);
        }
        for s in &d.services {
            let labels = [uuid, slug, ("service", &s.name)];
            out.add(Slot::ServiceFailing, &labels, flag(s.failing));
        }
        for s in &d.services {
            let labels = [uuid, slug, ("service", &s.name)];
            out.add_some(&labels, &[(Slot::ServiceDownload, s.download_progress)]);
        }
    }

    /// The fleet families (from the fleets' tallies, in the order given) and then the device
    /// families, as streams to join, and the compressor they share.
    pub fn finish(self, fleets: &[(&Fleet, Tally)]) -> (Vec<gzip::Stream>, gzip::Deflater) {
        let mut head = gzip::Stream::new();
        write_fleet_families(head.text(), fleets, self.reads);
        let mut streams = vec![head];
        streams.extend(self.out.streams);
        (streams, self.out.deflater)
    }
}

/// The help of a family written once per crawl: it says the values are cached.
fn cached(def: &Def) -> String {
    format!("{}, {CACHED}.", def.help)
}

/// One sample; the family's `# HELP`/`# TYPE` header first when it has not `started`, so a
/// family without samples leaves nothing (as the encoder drops empty families).
fn write_sample(
    out: &mut Vec<u8>,
    def: &Def,
    help: &str,
    started: bool,
    labels: &[(&str, &str)],
    value: f64,
) {
    debug_assert!(
        def.labels.last() == Some(&"tag_<key>")
            || labels
                .iter()
                .map(|(n, _)| *n)
                .eq(def.labels.iter().copied()),
        "labels of {}",
        def.name
    );
    let name = def.name.as_bytes();
    if !started {
        out.extend_from_slice(b"# HELP ");
        out.extend_from_slice(name);
        out.push(b' ');
        push_escaped(out, help, false);
        out.extend_from_slice(b"\n# TYPE ");
        out.extend_from_slice(name);
        out.push(b' ');
        out.extend_from_slice(def.kind.name().as_bytes());
        out.push(b'\n');
    }
    out.extend_from_slice(name);
    let mut separator = b'{';
    for (label, value) in labels {
        out.push(separator);
        out.extend_from_slice(label.as_bytes());
        out.extend_from_slice(b"=\"");
        push_escaped(out, value, true);
        out.push(b'"');
        separator = b',';
    }
    if !labels.is_empty() {
        out.push(b'}');
    }
    out.push(b' ');
    push_value(out, value);
    out.push(b'\n');
}

/// One family written in one go into a buffer.
pub(super) struct Family<'o> {
    out: &'o mut Vec<u8>,
    def: &'static Def,
    help: String,
    started: bool,
}

impl<'o> Family<'o> {
    pub(super) fn new(out: &'o mut Vec<u8>, def: &'static Def, help: String) -> Family<'o> {
        Family {
            out,
            def,
            help,
            started: false,
        }
    }

    /// A family written once per crawl (see `cached`).
    fn cached(out: &'o mut Vec<u8>, def: &'static Def) -> Family<'o> {
        Family::new(out, def, cached(def))
    }

    pub(super) fn add(&mut self, labels: &[(&str, &str)], value: f64) {
        write_sample(self.out, self.def, &self.help, self.started, labels, value);
        self.started = true;
    }
}

/// A sample value as the encoder writes it (`f64`'s `Display`: `1`, `0.4`, `1795292830.768`).
fn push_value(out: &mut Vec<u8>, value: f64) {
    use std::io::Write;
    if value == 1.0 {
        out.push(b'1');
    } else if value == 0.0 && value.is_sign_positive() {
        out.push(b'0');
    } else if value.is_infinite() {
        out.extend_from_slice(if value > 0.0 { b"+Inf" } else { b"-Inf" });
    } else {
        let _ = write!(out, "{value}");
    }
}

/// Escapes `\` and newline (and `"` in label values), as the exposition format requires.
fn push_escaped(out: &mut Vec<u8>, text: &str, quote: bool) {
    let special = |b: u8| b == b'\\' || b == b'\n' || (quote && b == b'"');
    if !text.bytes().any(special) {
        out.extend_from_slice(text.as_bytes());
        return;
    }
    for b in text.bytes() {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'"' if quote => out.extend_from_slice(b"\\\""),
            b => out.push(b),
        }
    }
}

fn flag(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

fn id(f: &Fleet) -> [(&'static str, &str); 2] {
    [("fleet_name", &f.name), ("fleet_slug", &f.slug)]
}

/// `base` labels, then one `tag_<name>` label per tag.
fn with_tags<'a>(
    base: &[(&'a str, &'a str)],
    names: &'a [(String, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    let mut labels = base.to_vec();
    labels.extend(names.iter().map(|(n, v)| (n.as_str(), *v)));
    labels
}

/// `tag_<name>` for each tag's label name.
fn tag_labels(tags: &[(Text, Text)]) -> Vec<(String, &str)> {
    tags::label_names(tags)
        .into_iter()
        .map(|(name, value)| (format!("tag_{name}"), value))
        .collect()
}

fn write_fleet_families(out: &mut Vec<u8>, fleets: &[(&Fleet, Tally)], reads: Reads) {
    let mut per_fleet = |def: &'static Def, value: fn(&Tally) -> usize| {
        let mut family = Family::cached(out, def);
        for (f, t) in fleets {
            family.add(&id(f), value(t) as f64);
        }
    };
    per_fleet(&DEVICES_ONLINE, |t| t.online);
    per_fleet(&FLEET_DEVICES, |t| t.devices);
    per_fleet(&FLEET_EXPECTED_ONLINE, |t| t.expected_online);
    per_fleet(&FLEET_OFFLINE, |t| t.offline);
    per_fleet(&FLEET_UPDATING, |t| t.updating);
    if reads.services {
        per_fleet(&FLEET_SERVICES_FAILING, |t| t.services_failing);
    }
    let mut by_status = Family::cached(out, &FLEET_BY_STATUS);
    for (f, t) in fleets {
        let [name, slug] = id(f);
        for (status, n) in t.by_status() {
            by_status.add(&[name, slug, ("status", status)], n as f64);
        }
    }
    let mut by_heartbeat = Family::cached(out, &FLEET_BY_HEARTBEAT);
    for (f, t) in fleets {
        let [name, slug] = id(f);
        for (state, n) in t.by_heartbeat() {
            by_heartbeat.add(&[name, slug, ("state", state)], n as f64);
        }
    }
    let mut on_target = Family::cached(out, &FLEET_ON_TARGET);
    for (f, t) in fleets {
        on_target.add(&id(f), t.on_target_release as f64);
    }
    let mut info = Family::cached(out, &FLEET_INFO);
    for (f, _) in fleets {
        let [name, slug] = id(f);
        info.add(
            &[
                name,
                slug,
                ("organization", &f.organization),
                ("device_type", &f.device_type),
                ("target_release", &f.target_release),
            ],
            1.0,
        );
    }
    let mut by_update = Family::cached(out, &FLEET_BY_UPDATE_STATUS);
    for (f, t) in fleets {
        let [name, slug] = id(f);
        for (status, n) in t.by_update_status() {
            by_update.add(&[name, slug, ("status", status)], n as f64);
        }
    }
    if reads.services {
        let mut instances = Family::cached(out, &FLEET_SERVICES);
        for (f, t) in fleets {
            let [name, slug] = id(f);
            for ((service, status), n) in t.service_instances() {
                instances.add(
                    &[name, slug, ("service", service), ("status", status)],
                    n as f64,
                );
            }
        }
    }
    if reads.tags {
        let mut tagged = Family::cached(out, &FLEET_TAGS);
        for (f, _) in fleets {
            let names = tag_labels(&f.tags);
            tagged.add(&with_tags(&id(f), &names), 1.0);
        }
    }
}

fn device_info_labels<'a>(f: &'a Fleet, d: &'a Device) -> [(&'static str, &'a str); 9] {
    [
        ("uuid", &d.uuid),
        ("fleet_slug", &f.slug),
        ("fleet_name", &f.name),
        ("device_name", &d.name),
        ("device_type", &d.device_type),
        ("os_version", &d.os_version),
        ("os_variant", &d.os_variant),
        ("supervisor_version", &d.supervisor_version),
        ("release", &d.release),
    ]
}

/// Text written as bytes (only ever from `str`s, so valid UTF-8).
pub(super) fn text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into())
}
