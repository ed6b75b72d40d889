//! How long inflating the gzipped device pages of one full crawl takes, done the way the
//! exporter does it (`src/balena/mod.rs`, `inflate`: flate2's `GzDecoder`, read to the end
//! into a buffer of eight times the body, at most 256 MiB).
//!
//! Input: `target/bench/inflate-<devices>.bin`, written by
//! `BENCH_PARTS=inflate BENCH_SIZES=10000 cargo bench --bench crawl`: each page as its length
//! (4 bytes, little endian) and its gzip bytes. `scripts/bench` builds this for x86_64 and
//! aarch64 musl and runs it natively and under `qemu-x86_64-static` and `qemu-aarch64-static`.
//!
//! usage: inflate-bench <file> [rounds]     (default 20 rounds after one to warm up)
//!
//! Prints one line: `pages=… gzip_bytes=… plain_bytes=… rounds=… min_ms=… median_ms=…`, the
//! wall time of inflating every page once (one thread, nothing else).

use std::hint::black_box;
use std::io::Read;
use std::time::Instant;

/// As `MAX_PAGE_BYTES` of `src/balena/mod.rs`.
const MAX_PAGE_BYTES: u64 = 256 * 1024 * 1024;

/// As `inflate` of `src/balena/mod.rs`.
fn inflate(body: &[u8]) -> Vec<u8> {
    let mut text = Vec::with_capacity(body.len() * 8);
    flate2::read::GzDecoder::new(body)
        .take(MAX_PAGE_BYTES + 1)
        .read_to_end(&mut text)
        .expect("a gzip page inflates");
    assert!(
        text.len() as u64 <= MAX_PAGE_BYTES,
        "a page inflates too far"
    );
    text
}

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(file) = args.next() else {
        eprintln!("usage: inflate-bench <file> [rounds]");
        std::process::exit(2);
    };
    let rounds: usize = args
        .next()
        .and_then(|r| r.parse().ok())
        .unwrap_or(20)
        .max(1);
    let data = std::fs::read(&file).unwrap_or_else(|e| panic!("cannot read {file}: {e}"));
    let mut pages = Vec::new();
    let mut rest = &data[..];
    while rest.len() >= 4 {
        let (len, tail) = rest.split_at(4);
        let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
        let (page, tail) = tail.split_at(len.min(tail.len()));
        pages.push(page);
        rest = tail;
    }
    let gzip: usize = pages.iter().map(|p| p.len()).sum();
    let plain: usize = pages.iter().map(|p| inflate(p).len()).sum();
    let mut times = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let start = Instant::now();
        for page in &pages {
            black_box(inflate(black_box(page)));
        }
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    println!(
        "pages={} gzip_bytes={gzip} plain_bytes={plain} rounds={rounds} min_ms={:.2} median_ms={:.2}",
        pages.len(),
        times[0],
        times[times.len() / 2]
    );
}
