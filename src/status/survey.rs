//! What the status page lists, surveyed device by device as a crawl converts them: per list
//! (offline, failing services, undervolted, hot, update failed, updating) the first devices
//! by its order and a count of all, and per fleet whether a target release is known. Bounded
//! whatever the account's size: no list keeps more than `DEVICES` devices.

use std::cmp::Reverse;

use super::{DEVICES, HOT_CELSIUS};
use crate::snapshot::{Device, Fleet};

/// `update_status` values of an update that did not happen (the `UpdateFailed` alert's).
const UPDATE_FAILED: &[&str] = &["rejected", "aborted"];

/// Devices listed by one key, keeping only the `limit` first by key; `total` counts all.
/// A kept device is a copy (with the index of its fleet): the crawl keeps no device.
pub(super) struct Top<K> {
    limit: usize,
    pub(super) total: usize,
    pub(super) items: Vec<(K, usize, Device)>,
    /// Once `limit` devices are kept: the largest key kept, which a new key must be under.
    bar: Option<K>,
}

impl<K: Ord + Clone> Top<K> {
    pub(super) fn new(limit: usize) -> Self {
        Top {
            limit,
            total: 0,
            items: Vec::new(),
            bar: None,
        }
    }

    pub(super) fn push(&mut self, key: K, fleet: usize, device: &Device) {
        self.total += 1;
        if self.bar.as_ref().is_some_and(|bar| key >= *bar) {
            return;
        }
        self.items.push((key, fleet, device.clone()));
        // Amortized O(1): shrink back to `limit` every `limit` pushes.
        if self.items.len() >= 2 * self.limit.max(1) {
            self.shrink();
        }
    }

    fn shrink(&mut self) {
        if self.items.len() > self.limit {
            self.items
                .select_nth_unstable_by(self.limit, |a, b| a.0.cmp(&b.0));
            self.items.truncate(self.limit);
        }
        if self.items.len() >= self.limit {
            self.bar = self.items.iter().map(|i| i.0.clone()).max();
        }
    }

    /// The kept devices, in key order.
    pub(super) fn finish(&mut self) {
        self.shrink();
        self.items.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    }
}

/// A list as the page shows it: how many devices it counts, and the kept ones (with the index
/// of their fleet) in key order.
pub(super) struct Listed<'a> {
    pub total: usize,
    pub items: Vec<(usize, &'a Device)>,
}

impl<K> Top<K> {
    pub(super) fn listed(&self) -> Listed<'_> {
        Listed {
            total: self.total,
            items: self.items.iter().map(|(_, f, d)| (*f, d)).collect(),
        }
    }
}

/// Everything the page lists, device by device. Keys end with the device's position in the
/// crawl, so ties keep that order.
pub struct Survey {
    /// Per fleet: whether it or any of its devices has a target release.
    pub(super) has_target: Vec<bool>,
    seq: usize,
    /// Offline: with a known time first, the longest offline first.
    pub(super) offline: Top<(bool, i64, usize)>,
    pub(super) failing: Top<usize>,
    pub(super) undervolted: Top<usize>,
    /// Hottest first, in millidegrees.
    pub(super) hot: Top<(Reverse<i64>, usize)>,
    pub(super) update_failed: Top<usize>,
    pub(super) updating: Top<usize>,
}

impl Survey {
    /// A survey of devices of `fleets`.
    pub fn new(fleets: &[Fleet]) -> Survey {
        Survey {
            has_target: fleets
                .iter()
                .map(|f| !f.target_release.is_empty())
                .collect(),
            seq: 0,
            offline: Top::new(DEVICES),
            failing: Top::new(DEVICES),
            undervolted: Top::new(DEVICES),
            hot: Top::new(DEVICES),
            update_failed: Top::new(DEVICES),
            updating: Top::new(DEVICES),
        }
    }

    /// A device of the fleet at index `fleet`.
    pub fn add(&mut self, fleet: usize, d: &Device) {
        let Some(has_target) = self.has_target.get_mut(fleet) else {
            return;
        };
        self.seq += 1;
        let seq = self.seq;
        *has_target |= d.on_target_release.is_some();
        if d.updating() {
            self.updating.push(seq, fleet, d);
        }
        if d.offline() {
            let since = d.offline_since().filter(|s| valid_time(*s));
            let key = (since.is_none(), since.map_or(0, |s| (s * 1e3) as i64), seq);
            self.offline.push(key, fleet, d);
        }
        if d.services.iter().any(|s| s.failing) {
            self.failing.push(seq, fleet, d);
        }
        if d.undervolted == Some(true) {
            self.undervolted.push(seq, fleet, d);
        }
        if let Some(t) = d.temperature_celsius.filter(|t| *t > HOT_CELSIUS) {
            self.hot.push((Reverse((t * 1e3) as i64), seq), fleet, d);
        }
        if UPDATE_FAILED.contains(&&*d.update_status) {
            self.update_failed.push(seq, fleet, d);
        }
    }

    pub(super) fn finish(&mut self) {
        self.offline.finish();
        self.failing.finish();
        self.undervolted.finish();
        self.hot.finish();
        self.update_failed.finish();
        self.updating.finish();
    }
}

/// Whether `seconds` is a Unix time that can be shown (1970 to year 5000).
pub(super) fn valid_time(seconds: f64) -> bool {
    (0.0..1e11).contains(&seconds)
}
