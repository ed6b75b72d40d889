//! What the HTTP handlers serve: bodies rendered once per crawl and swapped in whole, so a
//! request costs a pointer copy and never waits for the crawler.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use flate2::write::GzEncoder;
use flate2::Compression;

/// One crawl's rendering.
pub struct Published {
    pub metrics: Bytes,
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
    pub fn new(
        mut metrics: String,
        status_html: String,
        sd_json: Option<String>,
        last_success: Option<Instant>,
        stale_after: Duration,
    ) -> Self {
        // `Bytes` would keep the spare capacity of the estimate: give it back (realloc
        // shrinks in place or remaps; it does not copy a large buffer).
        metrics.shrink_to_fit();
        let metrics_gzip = gzip(metrics.as_bytes());
        Published {
            metrics: Bytes::from(metrics),
            metrics_gzip,
            status_html: Bytes::from(status_html),
            sd_json: sd_json.map(Bytes::from),
            last_success,
            stale_after,
        }
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
/// BENCHMARKS.md), and every crawl pays for it.
fn gzip(data: &[u8]) -> Bytes {
    // Room for a 4:1 ratio, so the buffer seldom grows (growing copies it).
    let mut encoder = GzEncoder::new(Vec::with_capacity(data.len() / 4), Compression::fast());
    // Writing to a Vec cannot fail.
    let _ = encoder.write_all(data);
    let mut body = encoder.finish().unwrap_or_default();
    body.shrink_to_fit();
    Bytes::from(body)
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
    use std::io::Read;

    #[test]
    fn gzip_round_trips() {
        let p = Published::new(
            "a 1\n".repeat(1000),
            String::new(),
            None,
            None,
            Duration::from_secs(1),
        );
        let mut out = String::new();
        flate2::read::GzDecoder::new(&p.metrics_gzip[..])
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(out.as_bytes(), &p.metrics[..]);
        assert!(p.metrics_gzip.len() < p.metrics.len() / 10);
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
