//! What the HTTP handlers serve: bodies rendered once per crawl and swapped in whole, so a
//! request costs a pointer copy and never waits for the crawler. The metrics body is kept
//! gzipped only; a client that does not accept gzip gets it inflated per request.

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use flate2::write::GzEncoder;
use flate2::Compression;

/// One crawl's rendering.
pub struct Published {
    /// The `/metrics` body, gzipped (level 1). There is no plain copy: see `metrics_plain`.
    pub metrics_gzip: Bytes,
    pub status_html: Bytes,
    /// HTTP service discovery JSON; None before the first successful crawl.
    pub sd_json: Option<Bytes>,
    /// When the last successful crawl finished; None before the first.
    pub last_success: Option<Instant>,
    /// Past this age the data is stale and `/-/ready` answers 503.
    pub stale_after: Duration,
}

impl Published {
    /// From the plain metrics text, which is gzipped and dropped.
    pub fn new(
        metrics: String,
        status_html: String,
        sd_json: Option<String>,
        last_success: Option<Instant>,
        stale_after: Duration,
    ) -> Self {
        let metrics_gzip = gzip(metrics.as_bytes());
        drop(metrics);
        Published::from_gzip(
            metrics_gzip,
            status_html,
            sd_json,
            last_success,
            stale_after,
        )
    }

    /// From a metrics body gzipped as it was rendered (`metrics::render_gzip`).
    pub fn from_gzip(
        metrics_gzip: Vec<u8>,
        status_html: String,
        sd_json: Option<String>,
        last_success: Option<Instant>,
        stale_after: Duration,
    ) -> Self {
        Published {
            metrics_gzip: Bytes::from(metrics_gzip),
            status_html: Bytes::from(status_html),
            sd_json: sd_json.map(Bytes::from),
            last_success,
            stale_after,
        }
    }

    /// The metrics body inflated, for a client that does not accept gzip (about 23 ms of CPU
    /// at 10,000 devices: see BENCHMARKS.md).
    pub fn metrics_plain(&self) -> std::io::Result<Vec<u8>> {
        let gz = &self.metrics_gzip[..];
        // The gzip trailer ends with the text's size (mod 2^32): allocate it once.
        let size = gz
            .len()
            .checked_sub(4)
            .and_then(|at| gz[at..].try_into().ok())
            .map_or(0, |b| u32::from_le_bytes(b) as usize);
        let mut plain = Vec::with_capacity(size);
        flate2::read::GzDecoder::new(gz).read_to_end(&mut plain)?;
        Ok(plain)
    }

    /// Ready when a crawl has succeeded and its data is not stale; otherwise why not.
    pub fn readiness(&self, now: Instant) -> Result<(), String> {
        match self.last_success {
            None => Err("no successful crawl of the balena API yet".into()),
            Some(t) if now.saturating_duration_since(t) > self.stale_after => Err(format!(
                "data is stale: last successful crawl {}s ago",
                now.saturating_duration_since(t).as_secs()
            )),
            Some(_) => Ok(()),
        }
    }
}

/// Level 1 (`fast`): the metrics text compresses about 5:1 at level 1 already (see
/// BENCHMARKS.md), and every crawl pays for it. `metrics::render_gzip` uses the same level.
fn gzip(data: &[u8]) -> Vec<u8> {
    // Room for a 4:1 ratio, so the buffer seldom grows (growing copies it).
    let mut encoder = GzEncoder::new(Vec::with_capacity(data.len() / 4), Compression::fast());
    // Writing to a Vec cannot fail.
    let _ = encoder.write_all(data);
    let mut body = encoder.finish().unwrap_or_default();
    body.shrink_to_fit();
    body
}

/// The single-writer, many-reader cell between the crawler and the handlers.
pub struct Shared(ArcSwap<Published>);

impl Shared {
    pub fn new(initial: Published) -> Self {
        Shared(ArcSwap::from_pointee(initial))
    }

    pub fn load(&self) -> Arc<Published> {
        self.0.load_full()
    }

    pub fn store(&self, published: Published) {
        self.0.store(Arc::new(published));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_round_trips() {
        let text = "a 1\n".repeat(1000);
        let p = Published::new(
            text.clone(),
            String::new(),
            None,
            None,
            Duration::from_secs(1),
        );
        let mut out = String::new();
        flate2::read::GzDecoder::new(&p.metrics_gzip[..])
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(out, text);
        assert_eq!(p.metrics_plain().unwrap(), text.as_bytes());
        assert!(p.metrics_gzip.len() < text.len() / 10);
    }

    #[test]
    fn readiness_needs_a_fresh_success() {
        let now = Instant::now();
        let stale_after = Duration::from_secs(10);
        let never = Published::new(String::new(), String::new(), None, None, stale_after);
        assert_eq!(
            never.readiness(now),
            Err("no successful crawl of the balena API yet".into())
        );
        let fresh = Published::new(String::new(), String::new(), None, Some(now), stale_after);
        assert_eq!(fresh.readiness(now + Duration::from_secs(10)), Ok(()));
        assert_eq!(
            fresh.readiness(now + Duration::from_secs(11)),
            Err("data is stale: last successful crawl 11s ago".into())
        );
    }
}
