//! Which devices a crawl reads, and what it keeps of them for the next one. A full crawl reads
//! every device; between full crawls (`FULL_CRAWL_INTERVAL`), an incremental crawl reads only
//! the devices written since a watermark, and those whose service installs or tags were, into
//! the devices kept from the last crawl (`Store`), then asks how many devices there are and,
//! when that is not how many are kept, which, to forget the deleted, the moved away and the
//! no longer visible. Every crawl then renders every kept device, so it publishes what a full
//! crawl would.
//!
//! The watermark comes from the server's own data, never this machine's clock: the newest
//! `modified_at` read, less an overlap of the last crawl's duration and a margin, so a row
//! written while the last crawl was reading (after its page was read, but before a newer row
//! was) is read again. A full crawl runs first, on schedule, after any failed crawl (nothing
//! is kept then), and when the fleets, service names or releases changed (a fleet's target
//! release changes its devices' targets without a write to them). A server that cannot filter
//! on `modified_at` gets full crawls, said once, and is asked again at each scheduled one.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::{Duration, Instant};

use super::on_blocking;
use crate::balena::{self, model, query, ApiError, Client, CrawlKind, Resource};
use crate::config::CrawlConfig;
use crate::render::{Rendered, Rendering};
use crate::store::Store;

/// Added to the last crawl's duration to make the overlap: writes committed a little after
/// the time they carry, and clocks of the server's replicas a little apart.
const OVERLAP_MARGIN: Duration = Duration::from_secs(10);

/// What the devices of the last good crawl left for the next.
#[derive(Default)]
pub(super) struct Devices {
    kept: Option<Kept>,
    /// When incremental reads were last refused by the server; until the next scheduled
    /// full crawl, every crawl is full.
    refused: Option<Instant>,
    /// The fallback to full crawls was said (it is said once).
    said: bool,
}

struct Kept {
    store: Store,
    /// Of the fleet, service and release pages the kept devices were converted with.
    fingerprint: u64,
    full_at: Instant,
    duration: Duration,
}

/// The fleet, service and release pages a crawl read, as one number: when it changes, kept
/// devices may be stale (targets, service names, restart policies) and the crawl is full.
#[derive(Default)]
pub(super) struct Fingerprint(DefaultHasher);

impl Fingerprint {
    pub(super) fn add(&mut self, body: &[u8]) {
        body.hash(&mut self.0);
    }

    fn value(&self, location: bool) -> u64 {
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
}

impl Devices {
    /// The kind of the coming crawl: full unless devices are kept, the pages they were
    /// converted with are the same, no full crawl is due and the server filters.
    pub(super) fn kind(
        &self,
        config: &CrawlConfig,
        pages: &Fingerprint,
        location: bool,
    ) -> CrawlKind {
        let Some(every) = config.full_interval else {
            return CrawlKind::Full;
        };
        let incremental = self.kept.as_ref().is_some_and(|kept| {
            kept.fingerprint == pages.value(location)
                && kept.full_at.elapsed() < every
                && kept.store.newest().is_some()
        }) && self.refused.is_none_or(|at| at.elapsed() >= every);
        if incremental {
            CrawlKind::Incremental
        } else {
            CrawlKind::Full
        }
    }

    /// Reads the devices as `kind` says into `rendering`, and renders. What is kept is taken
    /// now: a crawl that fails leaves nothing, so the next one is full.
    pub(super) async fn read(
        &mut self,
        kind: CrawlKind,
        read: Read<'_>,
        rendering: Rendering,
        pages: &Fingerprint,
        location: bool,
    ) -> Result<(Rendered, CrawlKind), ApiError> {
        let kept = self.kept.take();
        let (rendering, store, kind) = match (kind, kept) {
            (CrawlKind::Incremental, Some(kept)) => {
                let since = kept.store.newest().unwrap_or(0).saturating_sub(
                    u64::try_from((kept.duration + OVERLAP_MARGIN).as_millis()).unwrap_or(u64::MAX),
                );
                match changed(&read, rendering, kept.store, since).await? {
                    Changed::Read(rendering, store) => {
                        let store = forget_gone(&read, store).await?;
                        self.kept = Some(Kept { store, ..kept });
                        (rendering, None, CrawlKind::Incremental)
                    }
                    Changed::Refused(rendering, error) => {
                        self.refuse(&error);
                        let (rendering, store) = every(&read, rendering, true).await?;
                        (rendering, store, CrawlKind::Full)
                    }
                }
            }
            _ => {
                let keep = read.config.full_interval.is_some();
                let (rendering, store) = every(&read, rendering, keep).await?;
                (rendering, store, CrawlKind::Full)
            }
        };
        if let Some(store) = store {
            self.kept = Some(Kept {
                store,
                fingerprint: pages.value(location),
                full_at: read.started,
                duration: Duration::ZERO,
            });
        }
        let duration = read.started.elapsed();
        let Some(mut kept) = self.kept.take() else {
            let rendered = on_blocking(move || rendering.finish(std::time::SystemTime::now()));
            return Ok((rendered.await, kind));
        };
        kept.duration = duration;
        let (rendered, kept) = on_blocking(move || {
            let rendered = rendering.finish_kept(&kept.store, std::time::SystemTime::now());
            (rendered, kept)
        })
        .await;
        self.kept = Some(kept);
        Ok((rendered, kind))
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

/// Every device, in pages rendered as they arrive and kept in a new store when `keep`.
async fn every(
    read: &Read<'_>,
    mut rendering: Rendering,
    keep: bool,
) -> Result<(Rendering, Option<Store>), ApiError> {
    let (only, reads) = (read.only, &read.reads);
    let mut pages = read
        .client
        .pages(Resource::Device, read.config.page_size, |top, after| {
            query::devices(only, reads, top, after)
        });
    let mut store = keep.then(Store::default);
    while let Some(body) = pages.next().await? {
        let (back, kept, ids) = on_blocking(move || {
            let ids = rendering.device_page(&body, store.as_mut());
            (rendering, store, ids)
        })
        .await;
        (rendering, store) = (back, kept);
        count(read, CrawlKind::Full, &ids);
        pages.advance(ids)?;
    }
    Ok((rendering, store))
}

/// The outcome of reading changed devices.
enum Changed {
    Read(Rendering, Store),
    /// The server refused the first page (it cannot filter on `modified_at`).
    Refused(Rendering, ApiError),
}

/// The devices changed since `since` (Unix milliseconds), kept in `store`.
async fn changed(
    read: &Read<'_>,
    mut rendering: Rendering,
    mut store: Store,
    since: u64,
) -> Result<Changed, ApiError> {
    let (only, reads) = (read.only, &read.reads);
    let mut pages = read
        .client
        .pages(Resource::Device, read.config.page_size, |top, after| {
            query::changed_devices(only, reads, since, top, after)
        });
    let mut first = true;
    loop {
        let body = match pages.next().await {
            Ok(Some(body)) => body,
            Ok(None) => return Ok(Changed::Read(rendering, store)),
            Err(e @ (ApiError::Server { .. } | ApiError::Client { .. })) if first => {
                return Ok(Changed::Refused(rendering, e))
            }
            Err(e) => return Err(e),
        };
        first = false;
        let (back, kept, ids) = on_blocking(move || {
            let ids = rendering.changed_page(&body, &mut store);
            (rendering, store, ids)
        })
        .await;
        (rendering, store) = (back, kept);
        count(read, CrawlKind::Incremental, &ids);
        pages.advance(ids)?;
    }
}

/// Forgets kept devices that are gone: asks how many devices there are, and when that is not
/// how many are kept, which they are.
async fn forget_gone(read: &Read<'_>, mut store: Store) -> Result<Store, ApiError> {
    let count = read.client.count(&query::device_count(read.only)).await?;
    if count == store.len() as u64 {
        return Ok(store);
    }
    let mut ids = Vec::new();
    read.client
        .read_pages(
            Resource::Device,
            read.config.page_size,
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

fn count(read: &Read<'_>, kind: CrawlKind, ids: &Result<Vec<u64>, serde_json::Error>) {
    if let Ok(ids) = ids {
        read.client
            .stats()
            .read_rows(Resource::Device, kind, ids.len());
    }
}
