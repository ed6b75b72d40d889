//! The fake's memory of its rows from one account to the next, as a database keeps it: the
//! ids it gives the rows the account does not number (tags, images, device types,
//! organizations), and each row's content fingerprint and `modified_at`, which a write sets to
//! the write's time when the row is new or its content changed.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use super::time::Clock;

/// A fast hasher (FxHash's mixing, a word at a time): for fingerprints and the maps below,
/// which a write of 10,000 devices fills with some 100,000 rows.
#[derive(Default)]
pub(crate) struct Fx(u64);

impl Fx {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl Hasher for Fx {
    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            self.add(u64::from_le_bytes(word.try_into().unwrap_or_default()));
        }
        let mut last = [0u8; 8];
        last[..words.remainder().len()].copy_from_slice(words.remainder());
        self.add(u64::from_le_bytes(last) ^ bytes.len() as u64);
    }
    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<Fx>>;

/// One row as last written.
struct Stamp {
    fingerprint: u64,
    /// Milliseconds since the Unix epoch.
    modified_at: i64,
    /// The write that last saw the row.
    write: u64,
}

/// Ids and stamps, kept across accounts. A write (`begin`, then `id` and `stamp` for every row,
/// then `end`) forgets the rows it did not see: a row that comes back is a new row, with a new
/// id where the fake numbers it, as on the server.
pub(crate) struct Rows {
    clock: Clock,
    /// The current write: its number and its time.
    write: u64,
    now: i64,
    /// (table, natural key) → (id, the write that last saw it).
    ids: FxMap<(&'static str, String), (u64, u64)>,
    /// The highest id given in each table (ids are never given twice).
    last_id: FxMap<&'static str, u64>,
    stamps: FxMap<(&'static str, u64), Stamp>,
}

impl Rows {
    pub(crate) fn new() -> Rows {
        Rows {
            clock: Clock::new(),
            write: 0,
            now: 0,
            ids: FxMap::default(),
            last_id: FxMap::default(),
            stamps: FxMap::default(),
        }
    }

    /// Starts a write: every row changed by it gets this moment, later than any before.
    pub(crate) fn begin(&mut self) {
        self.write += 1;
        self.now = self.clock.tick();
        if self.write == 1 {
            // The account a fake starts with was written long before, as a live account's
            // rows mostly were: a day ago. Later writes are now.
            self.now -= 86_400_000;
        }
    }

    /// The id of the row of `table` known by `key` (the next free id if it is new).
    pub(crate) fn id(&mut self, table: &'static str, key: String) -> u64 {
        let write = self.write;
        let last = self.last_id.entry(table).or_insert(0);
        let entry = self.ids.entry((table, key)).or_insert_with(|| {
            *last += 1;
            (*last, write)
        });
        entry.1 = write;
        entry.0
    }

    /// The `modified_at` of row `id` of `table` whose content has `fingerprint`: as before if
    /// the content is the same, else the time of this write.
    pub(crate) fn stamp(&mut self, table: &'static str, id: u64, fingerprint: u64) -> i64 {
        let (write, now) = (self.write, self.now);
        let stamp = self.stamps.entry((table, id)).or_insert(Stamp {
            fingerprint,
            modified_at: now,
            write,
        });
        if stamp.fingerprint != fingerprint {
            stamp.fingerprint = fingerprint;
            stamp.modified_at = now;
        }
        stamp.write = write;
        stamp.modified_at
    }

    /// Ends a write: rows it did not see are gone.
    pub(crate) fn end(&mut self) {
        let write = self.write;
        self.ids.retain(|_, (_, seen)| *seen == write);
        self.stamps.retain(|_, stamp| stamp.write == write);
    }
}
