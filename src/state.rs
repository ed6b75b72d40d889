//! What the HTTP handlers serve: the last publication (rendered once per crawl, swapped in
//! whole, so a request costs a pointer copy and never waits for the crawler) and the
//! exporter's health, rendered per request so that its families are current.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;

use crate::gzip;
use crate::metrics::Health;

/// One crawl's rendering.
pub struct Published {
    /// The fleet and device families, gzipped; completed per request with the health families.
    pub metrics: gzip::Head,
    pub status_html: Bytes,
    /// HTTP service discovery JSON; None before the first successful crawl.
    pub sd_json: Option<Bytes>,
    /// When the last successful crawl finished; None before the first.
    pub last_success: Option<Instant>,
    /// Past this age the data is stale and `/-/ready` answers 503.
    pub stale_after: Duration,
}

impl Published {
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

/// The single-writer, many-reader cell between the publisher and the handlers.
pub struct Shared {
    published: ArcSwap<Published>,
    health: Arc<Health>,
}

impl Shared {
    pub fn new(initial: Published, health: Arc<Health>) -> Self {
        Shared {
            published: ArcSwap::from_pointee(initial),
            health,
        }
    }

    pub fn load(&self) -> Arc<Published> {
        self.published.load_full()
    }

    pub fn store(&self, published: Published) {
        self.published.store(Arc::new(published));
    }

    pub fn health(&self) -> &Health {
        &self.health
    }

    /// The `/metrics` body as gzip, in two parts sent one after the other: the published head
    /// (shared, not copied) and a tail with the health families as they are now.
    pub fn metrics_gzip(&self) -> [Bytes; 2] {
        let published = self.load();
        let tail = published.metrics.tail(self.health.render().as_bytes());
        [published.metrics.bytes().clone(), tail]
    }

    /// The `/metrics` body as text, for a client that does not accept gzip: the head inflated
    /// (about 23 ms of CPU at 10,000 devices: see BENCHMARKS.md), then the health families.
    pub fn metrics_plain(&self) -> std::io::Result<Vec<u8>> {
        let mut text = self.load().metrics.inflate()?;
        text.write_all(self.health.render().as_bytes())?;
        Ok(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn published(last_success: Option<Instant>) -> Published {
        Published {
            metrics: gzip::Head::empty(),
            status_html: Bytes::new(),
            sd_json: None,
            last_success,
            stale_after: Duration::from_secs(10),
        }
    }

    #[test]
    fn readiness_needs_a_fresh_success() {
        let now = Instant::now();
        assert_eq!(
            published(None).readiness(now),
            Err("no successful crawl of the balena API yet".into())
        );
        let fresh = published(Some(now));
        assert_eq!(fresh.readiness(now + Duration::from_secs(10)), Ok(()));
        assert_eq!(
            fresh.readiness(now + Duration::from_secs(11)),
            Err("data is stale: last successful crawl 11s ago".into())
        );
    }

    #[test]
    fn both_bodies_end_with_current_health() {
        use std::io::Read;
        let stats = Arc::new(crate::balena::ApiStats::default());
        let shared = Shared::new(published(None), Arc::new(Health::new(stats, Vec::new())));
        shared
            .health()
            .crawl_failed("timeout", Duration::from_secs(1), 3);
        let plain = String::from_utf8(shared.metrics_plain().unwrap()).unwrap();
        assert!(plain.contains("\nbalena_crawl_api_requests 3\n"), "{plain}");
        let [head, tail] = shared.metrics_gzip();
        let mut inflated = String::new();
        flate2::read::GzDecoder::new(&[&head[..], &tail[..]].concat()[..])
            .read_to_string(&mut inflated)
            .unwrap();
        assert!(inflated.contains("\nbalena_crawl_api_requests 3\n"));
    }
}
