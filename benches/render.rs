//! The in-process part of a crawl, at 10, 1,000, 10,000 and 100,000 devices, with criterion:
//!
//! - `decode`: the API's device pages (JSON) → `Snapshot` (serde, then the fleet join);
//! - `render`: `Snapshot` + health → the `/metrics` text (`metrics::render`, once per crawl);
//! - `publish`: the text → the gzip body (`gzip::Writer`, as `metrics::render_head` feeds it).
//!
//! `cargo bench --bench render` (add `-- render/` etc. to filter). After criterion's own
//! report it prints a table of medians and sizes and leaves it in `target/bench/render.md`.
//! `RENDER_DUMP=DIR cargo bench --bench render` only writes each size's snapshot text to
//! `DIR/<devices>.prom`: compare two versions of the renderer byte for byte with `cmp`.

mod support;

use std::hint::black_box;
use std::time::Duration;

use std::sync::Arc;

use balena_exporter::balena::ApiStats;
use balena_exporter::gzip;
use balena_exporter::metrics::{self, Health};
use balena_exporter::snapshot::{Device, Service, Snapshot, Text};
use criterion::{BatchSize, BenchmarkId, Criterion};
use support::{Recorded, PAGE_SIZE, SIZES};

struct Input {
    recorded: Recorded,
    text_bytes: usize,
    gzip_bytes: usize,
    /// Heap held by the snapshot (strings, device vectors), without allocator overhead.
    snapshot_bytes: usize,
}

fn inputs() -> Vec<Input> {
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    SIZES
        .iter()
        .map(|&n| {
            let recorded = runtime.block_on(Recorded::sized(n, PAGE_SIZE));
            let snapshot = recorded.snapshot();
            assert_eq!(snapshot.device_count(), n, "every generated device decodes");
            let text = metrics::render(Some(&snapshot), true, &health());
            let text_bytes = text.len();
            let gzip_bytes = publish(text).compressed_len();
            Input {
                recorded,
                text_bytes,
                gzip_bytes,
                snapshot_bytes: snapshot_heap(&snapshot),
            }
        })
        .collect()
}

/// Heap held by the snapshot: fleets' device vectors, and each distinct string once (they
/// are shared `Arc<str>`s: a string the crawl saw many times is stored once).
fn snapshot_heap(snapshot: &Snapshot) -> usize {
    let mut seen = std::collections::HashSet::new();
    let mut heap = 0;
    let mut text = |s: &Text, heap: &mut usize| {
        if seen.insert(Arc::as_ptr(s) as *const u8) {
            // Two reference counts ahead of the bytes.
            *heap += 2 * std::mem::size_of::<usize>() + s.len();
        }
    };
    for f in &snapshot.fleets {
        heap += f.devices.capacity() * std::mem::size_of::<Device>();
        for s in [
            &f.name,
            &f.slug,
            &f.organization,
            &f.device_type,
            &f.target_release,
        ] {
            text(s, &mut heap);
        }
        for d in &f.devices {
            for s in [
                &d.uuid,
                &d.name,
                &d.device_type,
                &d.status,
                &d.heartbeat,
                &d.os_version,
                &d.os_variant,
                &d.supervisor_version,
                &d.release,
                &d.update_status,
            ] {
                text(s, &mut heap);
            }
            heap += d.addresses.capacity() * std::mem::size_of::<Text>();
            heap += d.services.capacity() * std::mem::size_of::<Service>();
            heap += d.tags.capacity() * std::mem::size_of::<(Text, Text)>();
            for s in d
                .addresses
                .iter()
                .chain(d.services.iter().flat_map(|s| [&s.name, &s.status]))
            {
                text(s, &mut heap);
            }
            for (k, v) in &d.tags {
                text(k, &mut heap);
                text(v, &mut heap);
            }
        }
    }
    heap
}

fn publish(text: String) -> gzip::Head {
    let mut writer = gzip::Writer::new();
    for chunk in text.as_bytes().chunks(64 * 1024) {
        writer.write(chunk);
    }
    writer.finish()
}

fn health() -> Health {
    Health::new(Arc::new(ApiStats::default()), Vec::new())
}

fn benches(c: &mut Criterion, inputs: &[Input]) {
    let health = health();
    for name in ["decode", "render", "publish"] {
        let mut group = c.benchmark_group(name);
        for input in inputs {
            let n = input.recorded.devices;
            // Big inputs take seconds per iteration: the fewest samples criterion allows.
            group.sample_size(if n >= 10_000 { 10 } else { 30 });
            group.warm_up_time(Duration::from_secs(1));
            group.measurement_time(Duration::from_secs(if n >= 100_000 { 20 } else { 4 }));
            let id = BenchmarkId::from_parameter(n);
            group.bench_with_input(id, input, |b, input| match name {
                "decode" => bench_decode(b, input),
                "render" => bench_render(b, input, &health),
                _ => bench_publish(b, input, &health),
            });
        }
        group.finish();
    }
}

type Bencher<'a> = criterion::Bencher<'a, criterion::measurement::WallTime>;

fn bench_decode(b: &mut Bencher, input: &Input) {
    b.iter(|| black_box(input.recorded.snapshot()));
}

fn bench_render(b: &mut Bencher, input: &Input, health: &Health) {
    let snapshot = input.recorded.snapshot();
    b.iter(|| black_box(metrics::render(Some(&snapshot), true, health)));
}

fn bench_publish(b: &mut Bencher, input: &Input, health: &Health) {
    let text = metrics::render(Some(&input.recorded.snapshot()), true, health);
    b.iter_batched(
        || text.clone(),
        |text| black_box(publish(text)),
        BatchSize::LargeInput,
    );
}

/// Other ways to serve the body, at 10,000 devices, to weigh them against the numbers above:
/// gzip at the default level 6 instead of 1, and inflating the gzip body for a client that
/// does not take gzip (the cost of keeping only the gzip copy in memory).
fn alternatives(c: &mut Criterion, inputs: &[Input]) -> Option<(usize, usize)> {
    use std::io::Write;
    let input = inputs
        .iter()
        .find(|i| i.recorded.devices == ALTERNATIVES_AT)?;
    let text = metrics::render(Some(&input.recorded.snapshot()), true, &health());
    let level6 = |text: &[u8]| {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
        gz.write_all(text).expect("gzip to memory");
        gz.finish().expect("gzip to memory")
    };
    let level6_bytes = level6(text.as_bytes()).len();
    let gzip = publish(text.clone());
    let mut group = c.benchmark_group("alternatives");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(4));
    group.bench_function("gzip-level-6", |b| {
        b.iter(|| black_box(level6(text.as_bytes())))
    });
    group.bench_function("inflate", |b| {
        b.iter(|| black_box(gzip.inflate().expect("inflate")))
    });
    group.finish();
    Some((level6_bytes, input.gzip_bytes))
}

const ALTERNATIVES_AT: usize = 10_000;

/// Criterion's median for `group/n`, in seconds (None when that benchmark did not run).
fn median(out: &std::path::Path, group: &str, id: &str) -> Option<f64> {
    let file = out.join(group).join(id).join("new/estimates.json");
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(file).ok()?).ok()?;
    Some(json["median"]["point_estimate"].as_f64()? / 1e9)
}

fn main() {
    let out = support::target_dir().join("criterion");
    let mut c = Criterion::default()
        .output_directory(&out)
        .configure_from_args();
    let inputs = inputs();
    if let Some(dir) = std::env::var_os("RENDER_DUMP") {
        for input in &inputs {
            let text = metrics::render_snapshot(&input.recorded.snapshot(), true);
            let file = std::path::Path::new(&dir).join(format!("{}.prom", input.recorded.devices));
            std::fs::write(file, text).expect("dump");
        }
        return;
    }
    benches(&mut c, &inputs);
    let alternatives = alternatives(&mut c, &inputs);
    c.final_summary();

    let time =
        |group: &str, id: &str| median(&out, group, id).map_or("—".into(), support::duration);
    let mut table = String::from(
        "| devices | fleets | decode: pages → snapshot | snapshot in memory | render: snapshot → text | text | publish: gzip | gzip |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for input in &inputs {
        let n = input.recorded.devices.to_string();
        table.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
            support::thousands(input.recorded.devices as u64),
            input.recorded.fleets,
            time("decode", &n),
            support::size(input.snapshot_bytes as u64),
            time("render", &n),
            support::size(input.text_bytes as u64),
            time("publish", &n),
            support::size(input.gzip_bytes as u64),
        ));
    }
    if let Some((level6_bytes, level1_bytes)) = alternatives {
        table.push_str(&format!(
            "\nAt {} devices: gzip level 6 takes {} for {} (level 1: {}); inflating the gzip \
             body for a plain scrape would take {} per request.\n",
            support::thousands(ALTERNATIVES_AT as u64),
            time("alternatives", "gzip-level-6"),
            support::size(level6_bytes as u64),
            support::size(level1_bytes as u64),
            time("alternatives", "inflate"),
        ));
    }
    println!("\n{table}");
    let _ = std::fs::write(support::results_dir().join("render.md"), table);
}
