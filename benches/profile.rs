//! Where a crawl's CPU and memory go, phase by phase, in process, with a counting allocator:
//! for each phase of one crawl of a generated account, done as the crawler does it (fleets
//! and service names; each device page decoded, converted and rendered into the metrics, the
//! `/sd` JSON and the status page's lists; the end: fleet families, joining, the status page,
//! plain copies of small bodies), its wall time, the allocations it made, the bytes it
//! allocated, and the most heap that was live at once (counted from the start of the crawl,
//! with the previous crawl's results still held, as the exporter holds them). Two more rows
//! split the device pages' time: decoding alone, and decoding and converting. Sizes:
//! `BENCH_SIZES` (default 10,000 and 100,000).
//!
//! `cargo bench --bench profile`; `scripts/bench` runs it and keeps the table in
//! `target/bench/profile.md`. Prints figures only: nothing here passes or fails on time.

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Instant, SystemTime};

use balena_exporter::balena::{self, model};
use balena_exporter::render;
use balena_exporter::snapshot;
use balena_exporter::state::Body;
use support::{Recorded, PAGE_SIZE};

/// The system allocator, counting: calls, bytes, live bytes and the peak of live bytes.
struct Counting;

static CALLS: AtomicUsize = AtomicUsize::new(0);
static BYTES: AtomicUsize = AtomicUsize::new(0);
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        CALLS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(live, Ordering::Relaxed);
        // SAFETY: the caller's layout is passed on unchanged.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: ptr was allocated by `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        CALLS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(new_size, Ordering::Relaxed);
        let live = if new_size >= layout.size() {
            LIVE.fetch_add(new_size - layout.size(), Ordering::Relaxed) + new_size - layout.size()
        } else {
            LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed) - (layout.size() - new_size)
        };
        PEAK.fetch_max(live, Ordering::Relaxed);
        // SAFETY: as for `alloc` and `dealloc`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// One phase's figures.
struct Phase {
    name: &'static str,
    seconds: f64,
    calls: usize,
    bytes: usize,
    /// Most heap live at once since the crawl started, at the end of this phase.
    peak: usize,
    /// Heap live when the phase ended.
    live: usize,
}

/// Runs `work` as a phase, recording its figures.
fn phase<T>(phases: &mut Vec<Phase>, name: &'static str, work: impl FnOnce() -> T) -> T {
    let (calls, bytes) = (CALLS.load(Ordering::Relaxed), BYTES.load(Ordering::Relaxed));
    let started = Instant::now();
    let value = work();
    phases.push(Phase {
        name,
        seconds: started.elapsed().as_secs_f64(),
        calls: CALLS.load(Ordering::Relaxed) - calls,
        bytes: BYTES.load(Ordering::Relaxed) - bytes,
        peak: PEAK.load(Ordering::Relaxed),
        live: LIVE.load(Ordering::Relaxed),
    });
    value
}

/// One crawl's work after the bytes have arrived, as the crawler does it.
fn crawl(recorded: &Recorded, phases: &mut Vec<Phase>) -> render::Rendered {
    let mut rendering = phase(phases, "fleets and service names", || {
        let mut reading = render::Reading::new(&support::settings(), &support::crawl_config());
        reading.fleet_page(&recorded.fleet_list).expect("fleets");
        reading
            .service_page(&recorded.service_list)
            .expect("services");
        reading.devices()
    });
    phase(phases, "device pages: decode, convert, render", || {
        for page in &recorded.pages {
            rendering.device_page(page, None).expect("device page");
        }
    });
    phase(phases, "finish: fleet families, join, status page", || {
        rendering.finish(SystemTime::now())
    })
}

/// The crawl as an incremental one renders it: every device page kept in a store (as a full
/// crawl that keeps its devices does, without rendering them), then every kept device
/// rendered. The store's heap is the difference of "heap after" between the two phases.
fn crawl_kept(recorded: &Recorded, phases: &mut Vec<Phase>) -> render::Rendered {
    let mut reading = render::Reading::new(&support::settings(), &support::crawl_config());
    reading.fleet_page(&recorded.fleet_list).expect("fleets");
    reading
        .service_page(&recorded.service_list)
        .expect("services");
    let mut rendering = reading.devices();
    let mut store = balena_exporter::store::Store::default();
    phase(
        phases,
        "(kept: device pages decoded, converted, kept)",
        || {
            for page in &recorded.pages {
                rendering
                    .changed_page(page, &mut store)
                    .expect("device page");
            }
        },
    );
    phase(phases, "(kept: every kept device rendered, finish)", || {
        rendering.finish_kept(&store, SystemTime::now())
    })
}

/// The device pages' time split: decoding alone, then decoding and converting.
fn split(recorded: &Recorded, phases: &mut Vec<Phase>) {
    phase(phases, "(device pages: decode only)", || {
        for page in &recorded.pages {
            balena::page(page, |page: Vec<model::Device>| drop(black_box(page)))
                .expect("device page");
        }
    });
    phase(phases, "(device pages: decode and convert only)", || {
        let mut converter = snapshot::Converter::new(true, true);
        balena::page(&recorded.service_list, |page| converter.add_services(page))
            .expect("services");
        for page in &recorded.pages {
            balena::page(page, |page: Vec<model::Device>| {
                for d in page {
                    black_box(converter.device(d));
                }
            })
            .expect("device page");
        }
    });
}

/// Heap a crawl's results hold between crawls (bodies and the status page's part).
fn held(r: &render::Rendered) -> usize {
    let body =
        |b: &Body| b.gzip().map_or(0, |g| g.compressed_len()) + b.plain().map_or(0, |p| p.len());
    body(&r.metrics) + body(&r.sd) + r.fleets_html.len()
}

fn main() {
    let sizes: Vec<usize> = std::env::var("BENCH_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![10_000, 100_000]);
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let mut table = String::from(
        "| devices | phase | time | allocations | allocated | peak heap (crawl so far) | heap after |\n\
         |---:|---|---:|---:|---:|---:|---:|\n",
    );
    for n in sizes {
        let recorded = runtime.block_on(Recorded::sized(n, PAGE_SIZE));
        // A first crawl whose results stay alive, as the exporter's previous publication does.
        let mut warm = Vec::new();
        let previous = crawl(&recorded, &mut warm);
        let pages: usize = recorded.pages.iter().map(|p| p.len()).sum();
        // Count from here: the previous results and the recorded pages are the baseline.
        PEAK.store(LIVE.load(Ordering::Relaxed), Ordering::Relaxed);
        let baseline = LIVE.load(Ordering::Relaxed);
        let mut phases = Vec::new();
        let current = crawl(&recorded, &mut phases);
        black_box((&previous, &current));
        drop(current);
        split(&recorded, &mut phases);
        drop(crawl_kept(&recorded, &mut phases));
        let mb = |b: usize| support::size(b as u64);
        for p in &phases {
            table.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} |\n",
                support::thousands(n as u64),
                p.name,
                support::duration(p.seconds),
                support::thousands(p.calls as u64),
                mb(p.bytes),
                mb(p.peak - baseline),
                mb(p.live.saturating_sub(baseline)),
            ));
        }
        table.push_str(&format!(
            "| {} | (held between crawls: previous results {}, API pages {}) | | | | | |\n",
            support::thousands(n as u64),
            mb(held(&previous)),
            mb(pages),
        ));
    }
    println!("\n{table}");
    let _ = std::fs::write(support::results_dir().join("profile.md"), table);
}
