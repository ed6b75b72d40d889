//! The in-process part of a crawl, at 10, 1,000, 10,000 and 100,000 devices, with criterion:
//!
//! - `decode`: the API's device pages (JSON) → the typed rows (serde only);
//! - `render`: the API's pages → a crawl's renderings (`render::Pages`, the production render
//!   path: decode, convert, the `/metrics` families gzipped as they are written, `/sd`, the
//!   status page);
//! - `health`: the exporter's own families, rendered per scrape.
//!
//! `cargo bench --bench render` (add `-- render/` etc. to filter). After criterion's own
//! report it prints a table of medians and sizes and leaves it in `target/bench/render.md`.
//! `RENDER_DUMP=DIR cargo bench --bench render` only writes each size's fleet and device
//! families to `DIR/<devices>.prom`: compare two versions of the renderer byte for byte with
//! `cmp`.

mod support;

use std::hint::black_box;
use std::time::Duration;

use std::sync::Arc;

use balena_exporter::balena::{self, model, ApiStats};
use balena_exporter::metrics::Health;
use balena_exporter::render::Pages;
use criterion::{BenchmarkId, Criterion};
use support::{Recorded, PAGE_SIZE, SIZES};

struct Input {
    recorded: Recorded,
    pages: Pages,
    /// The fleet and device families' text, and the body kept for them (gzipped).
    text_bytes: usize,
    gzip_bytes: usize,
}

fn inputs() -> Vec<Input> {
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    SIZES
        .iter()
        .map(|&n| {
            let recorded = runtime.block_on(Recorded::sized(n, PAGE_SIZE));
            let pages = recorded.pages();
            let rendered = recorded.render(&pages);
            assert_eq!(rendered.devices, n, "every generated device decodes");
            let text_bytes = rendered.metrics.text().expect("inflates").len();
            let gzip_bytes = rendered.metrics.gzip().map_or(0, |g| g.compressed_len());
            Input {
                recorded,
                pages,
                text_bytes,
                gzip_bytes,
            }
        })
        .collect()
}

fn health() -> Health {
    Health::new(Arc::new(ApiStats::default()), Vec::new())
}

fn benches(c: &mut Criterion, inputs: &[Input]) {
    let health = health();
    for name in ["decode", "render", "health"] {
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
                "render" => b.iter(|| black_box(input.recorded.render(&input.pages))),
                _ => b.iter(|| black_box(health.render())),
            });
        }
        group.finish();
    }
}

type Bencher<'a> = criterion::Bencher<'a, criterion::measurement::WallTime>;

fn bench_decode(b: &mut Bencher, input: &Input) {
    b.iter(|| {
        for page in &input.pages.devices {
            balena::page(page, |rows: Vec<model::Device>| drop(black_box(rows)))
                .expect("device page");
        }
    });
}

/// Other ways to serve the body, at 10,000 devices, to weigh them against the numbers above:
/// gzip at the default level 6 instead of 1, and inflating the gzip body for a client that
/// does not take gzip (the cost of keeping only the gzip copy in memory).
fn alternatives(c: &mut Criterion, inputs: &[Input]) -> Option<(usize, usize)> {
    use std::io::Write;
    let input = inputs
        .iter()
        .find(|i| i.recorded.devices == ALTERNATIVES_AT)?;
    let rendered = input.recorded.render(&input.pages);
    let text = String::from_utf8(rendered.metrics.text().expect("inflates")).expect("UTF-8")
        + &health().render();
    let level6 = |text: &[u8]| {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
        gz.write_all(text).expect("gzip to memory");
        gz.finish().expect("gzip to memory")
    };
    let level6_bytes = level6(text.as_bytes()).len();
    let gzip = rendered.metrics.gzip()?.clone();
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
            let rendered = input.recorded.render(&input.pages);
            let text = rendered.metrics.text().expect("inflates");
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
        "| devices | fleets | decode: device pages → rows | render: pages → renderings | text | gzip | health per scrape |\n\
         |---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for input in &inputs {
        let n = input.recorded.devices.to_string();
        table.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} |\n",
            support::thousands(input.recorded.devices as u64),
            input.recorded.fleets,
            time("decode", &n),
            time("render", &n),
            support::size(input.text_bytes as u64),
            support::size(input.gzip_bytes as u64),
            time("health", &n),
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
