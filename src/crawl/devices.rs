//! Which devices a crawl reads, and what it keeps of them for the next one. A full crawl reads
//! every device; between full crawls (`FULL_CRAWL_INTERVAL`), an incremental crawl counts the
//! devices written since a watermark and those whose service installs or tags were, reads them
//! (or every device, when most changed) into the devices kept from the last crawl (`Store`),
//! then asks how many devices there are and, when that is not how many are kept, which, to
//! forget the deleted, the moved away and the no longer visible. Every crawl then renders
//! every kept device, so it publishes what a full crawl would.
//!
//! The watermark comes from the server, never this machine's clock (`since`): the newest
//! `modified_at` read, less an overlap of the last crawl's duration and a margin, so a row
//! written while the last crawl was reading is read again; and once the server's clock (the
//! `Date` of its answers) is past the newest write by more than the margin, that write
//! itself. A full crawl runs first, on schedule, after any failed crawl (nothing is kept
//! then), and when the fleets, service names or releases changed (a fleet's target release
//! changes its devices' targets without a write to them). A server that cannot filter on
//! `modified_at` gets full crawls, said once, and is asked again at each scheduled one.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::on_blocking;
use crate::balena::{self, model, query, ApiError, Client, CrawlKind, Resource};
use crate::config::CrawlConfig;
use crate::render::{Rendered, Rendering};
use crate::store::Store;

/// Added to the last crawl's duration to make the overlap: writes committed a little after
/// the time they carry, and clocks of the server's replicas a little apart.
const OVERLAP_MARGIN: Duration = Duration::from_secs(10);

/// The most ids asked for a page (`PAGE_SIZE`'s own maximum).
const ID_PAGE_ROWS: u32 = 10_000;

/// What the devices of the last good crawl left for the next.
#[derive(Default)]
pub(super) struct Devices {
    kept: Option<Kept>,
    /// When the server last refused to count changed devices; until the next scheduled full
    /// crawl, every crawl is full.
    refused: Option<Instant>,
    /// The fallback to full crawls was said (it is said once).
    said: bool,
}

struct Kept {
    store: Store,
    /// Of the fleet, service and release pages the kept devices were converted with.
    fingerprint: u64,
    /// When the last full crawl started.
    full_at: Instant,
    /// How long the crawl that kept them took: part of the next one's overlap.
    duration: Duration,
    /// The server's clock when that crawl started (Unix milliseconds, to the second).
    server_start: Option<u64>,
}

/// The fleet, service and release pages a crawl read, as one number: when it changes, kept
/// devices may be stale (targets, service names, restart policies) and the crawl is full.
#[derive(Default)]
pub(super) struct Fingerprint(DefaultHasher);

impl Fingerprint {
    pub(super) fn add(&mut self, body: &[u8]) {
        body.hash(&mut self.0);
    }

    /// The pages' number, for a crawl that reads coordinates or not (what device pages select).
    pub(super) fn value(&self, location: bool) -> u64 {
        let mut h = self.0.clone();
        location.hash(&mut h);
        h.finish()
    }
}

/// What one crawl reads of the devices.
pub(super) struct Read<'a> {
    pub client: &'a Client,
    pub config: &'a CrawlConfig,
    /// The watched fleets' ids (None: every visible fleet's devices).
    pub only: Option<&'a [u64]>,
    pub reads: query::DeviceReads<'a>,
    pub started: Instant,
    /// The server's clock as the crawl started (the `Date` of its first answer), in Unix
    /// milliseconds.
    pub server_start: Option<u64>,
    /// `Fingerprint::value` of the crawl's fleet, service and release pages.
    pub fingerprint: u64,
}

impl Devices {
    /// The kind of the coming crawl: full unless devices are kept, the pages they were
    /// converted with are the same, no full crawl is due and the server filters.
    fn kind(&mut self, config: &CrawlConfig, fingerprint: u64) -> CrawlKind {
        let (Some(every), Some(kept)) = (config.full_interval, &self.kept) else {
            return CrawlKind::Full;
        };
        if kept.store.newest().is_none() && !kept.store.is_empty() && !self.said {
            log::warn!("the API sent devices without modified_at: every crawl reads every device");
            self.said = true;
        }
        let incremental = kept.fingerprint == fingerprint
            && kept.full_at.elapsed() < every
            && kept.store.newest().is_some()
            && self.refused.is_none_or(|at| at.elapsed() >= every);
        if incremental {
            CrawlKind::Incremental
        } else {
            CrawlKind::Full
        }
    }

    /// Reads the devices into `rendering`, as a full or an incremental crawl (`kind`), and
    /// renders; the kind it was. What is kept is taken now: a crawl that fails leaves
    /// nothing, so the next one is full.
    pub(super) async fn read(
        &mut self,
        read: Read<'_>,
        rendering: Rendering,
    ) -> Result<(Rendered, CrawlKind), ApiError> {
        let kind = self.kind(read.config, read.fingerprint);
        let kept = self.kept.take().filter(|_| kind == CrawlKind::Incremental);
        let rendering = match kept {
            Some(kept) => match incremental(&read, rendering, kept).await? {
                Incremental::Read(rendering, mut kept) => {
                    kept.duration = read.started.elapsed();
                    kept.server_start = read.server_start;
                    let now = SystemTime::now();
                    let (rendered, kept) =
                        on_blocking(move || (rendering.finish_kept(&kept.store, now), kept)).await;
                    self.kept = Some(kept);
                    return Ok((rendered, CrawlKind::Incremental));
                }
                Incremental::MostChanged(rendering) => rendering,
                Incremental::Refused(rendering, error) => {
                    self.refuse(&error);
                    rendering
                }
            },
            None => rendering,
        };
        let keep = read.config.full_interval.is_some();
        let (rendering, store) = every(&read, rendering, keep).await?;
        self.kept = store.map(|store| Kept {
            store,
            fingerprint: read.fingerprint,
            full_at: read.started,
            duration: read.started.elapsed(),
            server_start: read.server_start,
        });
        let now = SystemTime::now();
        let rendered = on_blocking(move || rendering.finish(now)).await;
        Ok((rendered, CrawlKind::Full))
    }

    /// Says once that the server refused an incremental read, and when it is asked again.
    fn refuse(&mut self, error: &ApiError) {
        self.refused = Some(Instant::now());
        if !self.said {
            log::warn!(
                "the API cannot read changed devices (modified_at filters): every crawl reads every device, asking again at each full crawl error=\"{error}\""
            );
            self.said = true;
        } else {
            log::debug!("incremental device read refused again error=\"{error}\"");
        }
    }
}

/// `time` in Unix milliseconds.
pub(super) fn epoch_millis(time: SystemTime) -> Option<u64> {
    time.duration_since(UNIX_EPOCH).ok().map(millis)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The time an incremental crawl reads changes after (Unix milliseconds, the server's
/// clock). A change the last crawl did not read was written after that crawl started, so
/// after both the newest write it read less its duration and the margin, and the server's
/// clock at its start less the margin; when the server has been quiet for longer than the
/// margin, after the newest write itself (re-reading nothing).
fn since(kept: &Kept) -> u64 {
    let newest = kept.store.newest().unwrap_or(0);
    let overlapped = newest.saturating_sub(millis(kept.duration + OVERLAP_MARGIN));
    match kept.server_start {
        Some(start) => overlapped.max(newest.min(start.saturating_sub(millis(OVERLAP_MARGIN)))),
        None => overlapped,
    }
}

/// What an incremental read came to.
enum Incremental {
    /// The changed devices, read into what was kept (and the gone forgotten).
    Read(Rendering, Kept),
    /// Most devices changed: reading them all costs less than reading them as changes (the
    /// pages would be as many, their installs and tags longer, and the ids read on top).
    MostChanged(Rendering),
    /// The server refused to count changed devices: it cannot filter on `modified_at`.
    Refused(Rendering, ApiError),
}

/// Counts the devices changed since `since(kept)`; unless most did, reads them into `kept`
/// and forgets those gone.
async fn incremental(
    read: &Read<'_>,
    rendering: Rendering,
    kept: Kept,
) -> Result<Incremental, ApiError> {
    let since = since(&kept);
    let count = query::changed_count(read.only, &read.reads, since);
    let changed = match read.client.count(&count).await {
        Ok(n) => n,
        Err(e @ (ApiError::Server { .. } | ApiError::Client { .. })) => {
            return Ok(Incremental::Refused(rendering, e))
        }
        Err(e) => return Err(e),
    };
    if changed.saturating_mul(2) > kept.store.len() as u64 {
        log::debug!(
            "most devices changed, reading every one changed={changed} kept={}",
            kept.store.len()
        );
        return Ok(Incremental::MostChanged(rendering));
    }
    let Kept { store, .. } = kept;
    let (rendering, store) = changed_devices(read, rendering, store, since).await?;
    let store = forget_gone(read, store).await?;
    Ok(Incremental::Read(rendering, Kept { store, ..kept }))
}

/// Every device, in pages rendered as they arrive and kept in a new store when `keep`.
async fn every(
    read: &Read<'_>,
    rendering: Rendering,
    keep: bool,
) -> Result<(Rendering, Option<Store>), ApiError> {
    let (only, reads) = (read.only, &read.reads);
    let query = |top, after| query::devices(only, reads, top, after);
    let store = keep.then(Store::default);
    device_pages(
        read,
        CrawlKind::Full,
        query,
        rendering,
        store,
        |r, body, store| r.device_page(body, store.as_mut()),
    )
    .await
}

/// The devices changed since `since` (Unix milliseconds), kept in `store`.
async fn changed_devices(
    read: &Read<'_>,
    rendering: Rendering,
    store: Store,
    since: u64,
) -> Result<(Rendering, Store), ApiError> {
    let (only, reads) = (read.only, &read.reads);
    let query = |top, after| query::changed_devices(only, reads, since, top, after);
    device_pages(
        read,
        CrawlKind::Incremental,
        query,
        rendering,
        store,
        |r, body, store| r.changed_page(body, store),
    )
    .await
}

/// How a device page goes into the rendering and `S` (the store, if any): the ids of its rows.
type PageInto<S> = fn(&mut Rendering, &[u8], &mut S) -> Result<Vec<u64>, serde_json::Error>;

/// The device pages `query` writes, each handed to `page` with the rendering and `store` on
/// the blocking pool as it arrives, its rows counted as read by a crawl of `kind`.
async fn device_pages<S: Send + 'static>(
    read: &Read<'_>,
    kind: CrawlKind,
    query: impl Fn(u32, u64) -> String,
    mut rendering: Rendering,
    mut store: S,
    page: PageInto<S>,
) -> Result<(Rendering, S), ApiError> {
    let mut pages = read
        .client
        .pages(Resource::Device, read.config.page_size, query);
    while let Some(body) = pages.next().await? {
        let (back, kept, ids) = on_blocking(move || {
            let ids = page(&mut rendering, &body, &mut store);
            (rendering, store, ids)
        })
        .await;
        (rendering, store) = (back, kept);
        if let Ok(ids) = &ids {
            read.client
                .stats()
                .read_rows(Resource::Device, kind, ids.len());
        }
        pages.advance(ids)?;
    }
    Ok((rendering, store))
}

/// Forgets kept devices that are gone: asks how many devices there are, and when that is not
/// how many are kept, which they are.
async fn forget_gone(read: &Read<'_>, mut store: Store) -> Result<Store, ApiError> {
    let count = read.client.count(&query::device_count(read.only)).await?;
    if count == store.len() as u64 {
        return Ok(store);
    }
    let mut ids = Vec::new();
    // Ids are a dozen bytes a row: ten times the rows a page, in a tenth of the requests (a
    // server that caps pages shorter is paged on, as ever).
    let size = read.config.page_size.saturating_mul(10).min(ID_PAGE_ROWS);
    read.client
        .read_pages(
            Resource::Device,
            size,
            |top, after| query::device_ids(read.only, top, after),
            |body| {
                let page = balena::page(body, |_: Vec<model::Id>| {})?;
                ids.extend_from_slice(&page);
                Ok(page)
            },
        )
        .await?;
    let gone = store.retain_sorted(&ids);
    log::debug!(
        "devices gone since the last crawl gone={gone} counted={count} kept={}",
        store.len()
    );
    Ok(store)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::testing;
    use crate::snapshot::Device;

    fn kept(fingerprint: u64, full_at: Instant, newest: Option<u64>) -> Kept {
        let mut store = Store::default();
        let device = Device {
            id: 1,
            ..Device::default()
        };
        store.put(1, &device, newest);
        Kept {
            store,
            fingerprint,
            full_at,
            duration: Duration::from_secs(1),
            server_start: None,
        }
    }

    #[test]
    fn a_crawl_is_full_unless_kept_devices_are_current() {
        let config = testing::crawl();
        let mut pages = Fingerprint::default();
        pages.add(b"{\"d\":[]}");
        let same = pages.value(true);
        let now = Instant::now();
        let kind = |devices: &mut Devices, config: &CrawlConfig, location: bool| {
            devices.kind(config, pages.value(location))
        };
        // Nothing kept: the first crawl, or the one after a failure.
        let mut devices = Devices::default();
        assert_eq!(kind(&mut devices, &config, true), CrawlKind::Full);
        devices.kept = Some(kept(same, now, Some(5)));
        assert_eq!(kind(&mut devices, &config, true), CrawlKind::Incremental);
        // The fleet, service or release pages changed, or what a device page selects did.
        assert_eq!(kind(&mut devices, &config, false), CrawlKind::Full);
        devices.kept = Some(kept(same ^ 1, now, Some(5)));
        assert_eq!(kind(&mut devices, &config, true), CrawlKind::Full);
        // A full crawl is due.
        let hour_ago = now.checked_sub(Duration::from_secs(3600)).unwrap();
        devices.kept = Some(kept(same, hour_ago, Some(5)));
        assert_eq!(kind(&mut devices, &config, true), CrawlKind::Full);
        // The devices came without modified_at: nothing to read changes from.
        devices.kept = Some(kept(same, now, None));
        assert_eq!(kind(&mut devices, &config, true), CrawlKind::Full);
        // The server refused an incremental read lately; an hour on, it is asked again.
        devices.kept = Some(kept(same, now, Some(5)));
        devices.refused = Some(now);
        assert_eq!(kind(&mut devices, &config, true), CrawlKind::Full);
        devices.refused = Some(hour_ago);
        assert_eq!(kind(&mut devices, &config, true), CrawlKind::Incremental);
        // FULL_CRAWL_INTERVAL=0: every crawl is full.
        let always = CrawlConfig {
            full_interval: None,
            ..config
        };
        assert_eq!(kind(&mut devices, &always, true), CrawlKind::Full);
    }

    #[test]
    fn changes_are_read_from_an_overlap_before_the_newest_write_unless_the_server_was_quiet() {
        let mut kept = kept(0, Instant::now(), Some(100_000));
        kept.duration = Duration::from_secs(2);
        // Without the server's clock: the newest write less the duration and 10 s.
        assert_eq!(since(&kept), 88_000);
        // Writes up to the crawl's start: the same overlap (and never before it).
        kept.server_start = Some(100_000);
        assert_eq!(since(&kept), 90_000);
        kept.server_start = Some(101_000);
        assert_eq!(since(&kept), 91_000);
        // Nothing written in the 10 s before the crawl started: from the newest write on.
        kept.server_start = Some(111_000);
        assert_eq!(since(&kept), 100_000);
        kept.server_start = Some(5_000_000);
        assert_eq!(since(&kept), 100_000);
    }
}
