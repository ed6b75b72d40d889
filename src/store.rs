//! The devices a crawl read, kept compact between crawls for the next incremental crawl to
//! update (`Store`): each device is one short byte record, text that repeats across devices
//! (statuses, versions, releases, service names, tag keys and values) is kept once, and the
//! newest `modified_at` read is the watermark the next crawl reads changes from. Records
//! decode back to exactly the `snapshot::Device` they were made from.

use std::collections::HashMap;
use std::sync::Arc;

use crate::snapshot::{Device, Service, Text};

/// Kept devices by id (so in the order a full crawl reads them), each with its fleet. The
/// records lie one after another in one buffer: thousands of small allocations that outlive
/// every crawl would pin the allocator's pages between the crawl's own, and cost more memory
/// than they hold.
#[derive(Default)]
pub struct Store {
    records: Vec<u8>,
    /// (device id, offset of its record, length), by id.
    index: Vec<(u64, u32, u32)>,
    /// Bytes of `records` no record uses any more (replaced or forgotten).
    garbage: usize,
    strings: Strings,
    /// The newest `modified_at` of the rows put here, in Unix milliseconds.
    newest: Option<u64>,
}

impl Store {
    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// The newest `modified_at` of the rows put here (Unix milliseconds), as the server wrote it.
    pub fn newest(&self) -> Option<u64> {
        self.newest
    }

    /// Keeps `device` of fleet `fleet`, replacing what was kept of it; `modified` is its row's
    /// newest `modified_at` in Unix milliseconds.
    pub fn put(&mut self, fleet: u64, device: &Device, modified: Option<u64>) {
        self.newest = self.newest.max(modified);
        let start = self.records.len();
        encode(fleet, device, &mut self.strings, &mut self.records);
        let (Ok(offset), Ok(len), Ok(_)) = (
            u32::try_from(start),
            u32::try_from(self.records.len() - start),
            u32::try_from(self.records.len()),
        ) else {
            // Beyond 4 GiB of records: not kept (a full crawl is then needed for it).
            self.records.truncate(start);
            self.remove(device.id);
            return;
        };
        // Devices mostly come in id order (pages are): the last place is the common one.
        let at = match self.index.last() {
            Some(&(last, _, _)) if last < device.id => Err(self.index.len()),
            _ => self.index.binary_search_by_key(&device.id, |r| r.0),
        };
        match at {
            Ok(i) => {
                self.garbage += self.index[i].2 as usize;
                self.index[i] = (device.id, offset, len);
            }
            Err(i) => self.index.insert(i, (device.id, offset, len)),
        }
        self.compact_if_wasteful();
    }

    /// Forgets device `id` (deleted, moved to a fleet not watched, or no longer visible).
    pub fn remove(&mut self, id: u64) {
        if let Ok(i) = self.index.binary_search_by_key(&id, |r| r.0) {
            self.garbage += self.index.remove(i).2 as usize;
        }
    }

    /// Keeps only the devices whose ids are in `ids` (ascending); how many were forgotten.
    pub fn retain_sorted(&mut self, ids: &[u64]) -> usize {
        let before = self.index.len();
        let mut garbage = 0;
        self.index.retain(|(id, _, len)| {
            let keep = ids.binary_search(id).is_ok();
            garbage += if keep { 0 } else { *len as usize };
            keep
        });
        self.garbage += garbage;
        self.compact_if_wasteful();
        before - self.index.len()
    }

    /// Every kept device with its fleet id, in id order.
    pub fn devices(&self) -> impl Iterator<Item = (u64, Device)> + '_ {
        self.index.iter().filter_map(|&(id, offset, len)| {
            let record = self.records.get(span(offset, len))?;
            decode(id, record, &self.strings)
        })
    }

    /// Copies the records in use into a buffer of their size once more than half of the
    /// buffer is garbage.
    fn compact_if_wasteful(&mut self) {
        if self.garbage < 64 * 1024 || self.garbage * 2 < self.records.len() {
            return;
        }
        let mut records = Vec::with_capacity(self.records.len() - self.garbage);
        for (_, offset, len) in &mut self.index {
            let start = records.len() as u32;
            records.extend_from_slice(self.records.get(span(*offset, *len)).unwrap_or_default());
            *offset = start;
        }
        self.records = records;
        self.garbage = 0;
    }
}

/// The bytes of a record at `offset`, `len` long.
fn span(offset: u32, len: u32) -> std::ops::Range<usize> {
    offset as usize..offset as usize + len as usize
}

/// Texts kept once, by index.
#[derive(Default)]
struct Strings {
    all: Vec<Text>,
    index: HashMap<Text, u32>,
}

impl Strings {
    fn index(&mut self, text: &Text) -> u32 {
        if let Some(&i) = self.index.get(text) {
            return i;
        }
        let i = self.all.len() as u32;
        self.all.push(text.clone());
        self.index.insert(text.clone(), i);
        i
    }

    fn get(&self, i: u32) -> Option<Text> {
        self.all.get(i as usize).cloned()
    }
}

// Flag bits of a record.
const ONLINE: u8 = 1;
const WEB: u8 = 2;
const HAS_TARGET: u8 = 4;
const ON_TARGET: u8 = 8;
const HAS_UNDERVOLTED: u8 = 16;
const UNDERVOLTED: u8 = 32;
// Flag bits of a service.
const FAILING: u8 = 1;
const HAS_PROGRESS: u8 = 2;

/// The device's optional numbers, in record order.
fn numbers(d: &Device) -> [Option<f64>; 12] {
    [
        d.last_connectivity_seconds,
        d.cpu_ratio,
        d.temperature_celsius,
        d.memory_used_bytes,
        d.memory_total_bytes,
        d.storage_used_bytes,
        d.storage_total_bytes,
        d.update_progress,
        d.update_status_changed_seconds,
        d.heartbeat_changed_seconds,
        d.latitude,
        d.longitude,
    ]
}

/// The device's repeated texts, in record order.
fn repeated(d: &Device) -> [&Text; 8] {
    [
        &d.device_type,
        &d.status,
        &d.heartbeat,
        &d.os_version,
        &d.os_variant,
        &d.supervisor_version,
        &d.release,
        &d.update_status,
    ]
}

/// Appends the record of `d` to `out`.
fn encode(fleet: u64, d: &Device, strings: &mut Strings, out: &mut Vec<u8>) {
    varint(out, fleet);
    let flag = |on: bool, bit: u8| if on { bit } else { 0 };
    out.push(
        flag(d.online, ONLINE)
            | flag(d.web_accessible, WEB)
            | flag(d.on_target_release.is_some(), HAS_TARGET)
            | flag(d.on_target_release == Some(true), ON_TARGET)
            | flag(d.undervolted.is_some(), HAS_UNDERVOLTED)
            | flag(d.undervolted == Some(true), UNDERVOLTED),
    );
    let numbers = numbers(d);
    let mask = numbers
        .iter()
        .enumerate()
        .fold(0u16, |m, (i, n)| m | (u16::from(n.is_some()) << i));
    out.extend_from_slice(&mask.to_le_bytes());
    for n in numbers.into_iter().flatten() {
        out.extend_from_slice(&n.to_le_bytes());
    }
    text(out, &d.uuid);
    text(out, &d.name);
    varint(out, d.addresses.len() as u64);
    for address in &d.addresses {
        text(out, address);
    }
    for t in repeated(d) {
        varint(out, u64::from(strings.index(t)));
    }
    varint(out, d.services.len() as u64);
    for s in &d.services {
        varint(out, u64::from(strings.index(&s.name)));
        varint(out, u64::from(strings.index(&s.status)));
        out.push(flag(s.failing, FAILING) | flag(s.download_progress.is_some(), HAS_PROGRESS));
        if let Some(p) = s.download_progress {
            out.extend_from_slice(&p.to_le_bytes());
        }
    }
    varint(out, d.tags.len() as u64);
    for (key, value) in &d.tags {
        varint(out, u64::from(strings.index(key)));
        varint(out, u64::from(strings.index(value)));
    }
}

/// A record back as the device it was made from; None only if the record is not one
/// `encode` wrote (a bug: the device is then left out).
fn decode(id: u64, record: &[u8], strings: &Strings) -> Option<(u64, Device)> {
    let mut r = Reader(record);
    let fleet = r.varint()?;
    let flags = r.byte()?;
    let on = |bit: u8| flags & bit != 0;
    let mask = u16::from_le_bytes([r.byte()?, r.byte()?]);
    let mut n = [None; 12];
    for (i, slot) in n.iter_mut().enumerate() {
        if mask & (1 << i) != 0 {
            *slot = Some(r.f64()?);
        }
    }
    let uuid = r.text()?;
    let name = r.text()?;
    let addresses = (0..r.varint()?)
        .map(|_| r.text())
        .collect::<Option<Vec<_>>>()?;
    let mut repeated = Vec::with_capacity(8);
    for _ in 0..8 {
        repeated.push(r.string(strings)?);
    }
    let [device_type, status, heartbeat, os_version, os_variant, supervisor_version, release, update_status]: [Text; 8] =
        repeated.try_into().ok()?;
    let mut services = Vec::new();
    for _ in 0..r.varint()? {
        let (name, status) = (r.string(strings)?, r.string(strings)?);
        let flags = r.byte()?;
        let download_progress = match flags & HAS_PROGRESS != 0 {
            true => Some(r.f64()?),
            false => None,
        };
        services.push(Service {
            name,
            status,
            download_progress,
            failing: flags & FAILING != 0,
        });
    }
    let mut tags = Vec::new();
    for _ in 0..r.varint()? {
        tags.push((r.string(strings)?, r.string(strings)?));
    }
    let device = Device {
        id,
        uuid,
        name,
        device_type,
        online: on(ONLINE),
        status,
        heartbeat,
        os_version,
        os_variant,
        supervisor_version,
        release,
        on_target_release: on(HAS_TARGET).then_some(on(ON_TARGET)),
        last_connectivity_seconds: n[0],
        cpu_ratio: n[1],
        temperature_celsius: n[2],
        memory_used_bytes: n[3],
        memory_total_bytes: n[4],
        storage_used_bytes: n[5],
        storage_total_bytes: n[6],
        undervolted: on(HAS_UNDERVOLTED).then_some(on(UNDERVOLTED)),
        web_accessible: on(WEB),
        addresses,
        update_status,
        update_progress: n[7],
        update_status_changed_seconds: n[8],
        heartbeat_changed_seconds: n[9],
        latitude: n[10],
        longitude: n[11],
        services,
        tags,
    };
    Some((fleet, device))
}

fn varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn text(out: &mut Vec<u8>, text: &str) {
    varint(out, text.len() as u64);
    out.extend_from_slice(text.as_bytes());
}

/// Reads a record front to back.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    fn varint(&mut self) -> Option<u64> {
        let mut n = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            n |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(n);
            }
        }
        None
    }

    fn bytes(&mut self, len: usize) -> Option<&[u8]> {
        if self.0.len() < len {
            return None;
        }
        let (head, rest) = self.0.split_at(len);
        self.0 = rest;
        Some(head)
    }

    fn f64(&mut self) -> Option<f64> {
        Some(f64::from_le_bytes(self.bytes(8)?.try_into().ok()?))
    }

    fn text(&mut self) -> Option<Text> {
        let len = usize::try_from(self.varint()?).ok()?;
        std::str::from_utf8(self.bytes(len)?).ok().map(Arc::from)
    }

    fn string(&mut self, strings: &Strings) -> Option<Text> {
        strings.get(u32::try_from(self.varint()?).ok()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(id: u64, status: &str) -> Device {
        Device {
            id,
            uuid: format!("{id:032x}").into(),
            name: "sensor-é".into(),
            device_type: "raspberrypi4-64".into(),
            online: true,
            status: status.into(),
            heartbeat: "online".into(),
            release: "abc".into(),
            on_target_release: Some(false),
            cpu_ratio: Some(0.2),
            temperature_celsius: Some(-3.5),
            memory_used_bytes: Some(429_916_160.0),
            latitude: Some(f64::MIN_POSITIVE),
            undervolted: Some(false),
            addresses: vec!["10.0.0.2".into(), "fe80::1".into()],
            update_status: "none".into(),
            services: vec![
                Service {
                    name: "main".into(),
                    status: "Downloading".into(),
                    download_progress: Some(0.375),
                    failing: false,
                },
                Service {
                    name: "worker".into(),
                    status: "exited".into(),
                    download_progress: None,
                    failing: true,
                },
            ],
            tags: vec![("site".into(), "Oslo".into())],
            ..Device::default()
        }
    }

    #[test]
    fn records_decode_to_the_devices_they_were_made_from() {
        let mut store = Store::default();
        let a = device(300, "operational");
        let mut b = device(7, "disconnected");
        b.on_target_release = None;
        b.undervolted = Some(true);
        b.online = false;
        b.web_accessible = true;
        b.longitude = Some(179.999_999);
        b.update_progress = Some(1.0);
        let empty = Device {
            id: 1 << 40,
            ..Device::default()
        };
        store.put(2, &a, Some(5));
        store.put(1, &b, Some(9));
        store.put(3, &empty, None);
        let back: Vec<(u64, Device)> = store.devices().collect();
        assert_eq!(back, vec![(1, b.clone()), (2, a.clone()), (3, empty)]);
        assert_eq!(store.newest(), Some(9));

        // A device kept again replaces its record; ids not listed are forgotten.
        let mut a2 = a.clone();
        a2.status = "updating".into();
        store.put(4, &a2, Some(3));
        assert_eq!(store.newest(), Some(9));
        assert_eq!(store.retain_sorted(&[7, 300]), 1);
        let back: Vec<(u64, Device)> = store.devices().collect();
        assert_eq!(back, vec![(1, b), (4, a2)]);
        store.remove(7);
        assert_eq!(store.len(), 1);
    }

    #[test]
    fn a_device_with_its_repeated_text_kept_once_takes_a_short_record() {
        let mut store = Store::default();
        for id in 0..1000 {
            store.put(1, &device(id, "operational"), None);
        }
        let bytes = store.records.len();
        // uuid (32), name, two addresses, 12 numbers' mask and 5 values, ids of repeated text.
        assert!(bytes / 1000 < 140, "{} bytes a device", bytes / 1000);
        assert_eq!(store.strings.all.len(), 12, "{:?}", store.strings.all);
    }

    #[test]
    fn records_replaced_again_and_again_are_compacted_and_still_read_back() {
        let mut store = Store::default();
        for id in 0..500 {
            store.put(1, &device(id, "operational"), Some(id));
        }
        let size = store.records.len();
        for round in 0..10 {
            for id in (0..500).step_by(2) {
                store.put(2, &device(id, &format!("round-{round}")), None);
            }
        }
        // Five rounds' worth of replaced records would be garbage without compaction.
        assert!(
            store.records.len() < size * 2,
            "{} bytes",
            store.records.len()
        );
        let back: Vec<(u64, Device)> = store.devices().collect();
        assert_eq!(back.len(), 500);
        assert_eq!(back[0], (2, device(0, "round-9")));
        assert_eq!(back[1], (1, device(1, "operational")));
        assert_eq!(store.retain_sorted(&[1, 2]), 498);
        let back: Vec<u64> = store.devices().map(|(_, d)| d.id).collect();
        assert_eq!(back, [1, 2]);
    }
}
