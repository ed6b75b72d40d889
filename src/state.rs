//! What the HTTP handlers serve: the last publication (rendered once per crawl, swapped in
//! whole, so a request costs a pointer copy and never waits for the crawler) and the
//! exporter's health, rendered per request so that its families are current. Large bodies are
//! kept only gzipped; small ones plain too, so a client without gzip costs no inflating.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;

use crate::gzip;
use crate::metrics::Health;

/// Text up to this size is kept plain (at about 750 devices with 3 services and 2 tags each,
/// `/metrics` is this large): for `curl`, browsers and Prometheus' service discovery, which
/// do not ask for gzip. Larger bodies are inflated per such request.
pub const PLAIN_MAX: u64 = 2 * 1024 * 1024;

/// A body rendered once per crawl: gzipped, and plain too when it is small; plain only when
/// it is smaller than a gzip segment (a client that asks for gzip then gets it plain, as HTTP
/// allows: gzip would save it less than 64 KiB, and cost the compressor's half a MiB).
#[derive(Clone)]
pub struct Body {
    gzip: Option<gzip::Head>,
    plain: Option<Bytes>,
}

impl Body {
    /// A gzipped body, kept plain too when it is small.
    pub fn new(gzip: gzip::Head) -> Body {
        let plain = (gzip.text_len() <= PLAIN_MAX)
            .then(|| gzip.inflate())
            .and_then(|inflated| match inflated {
                Ok(text) => Some(Bytes::from(text)),
                // A head this process deflated inflates; if not, requests inflate (and log).
                Err(_) => None,
            });
        Body {
            gzip: Some(gzip),
            plain,
        }
    }

    /// The streams' text one after the other, as `new` makes it. A small body none of whose
    /// text was deflated yet is joined plain first and deflated once, instead of deflated per
    /// stream and inflated again. Small bodies are gzipped too for the clients that ask: a
    /// central Prometheus scraping the public URL over a cellular link gets a fifth of the
    /// bytes.
    pub fn from_streams(streams: Vec<gzip::Stream>, deflater: &mut gzip::Deflater) -> Body {
        let size: u64 = streams.iter().map(gzip::Stream::text_len).sum();
        if size > PLAIN_MAX || streams.iter().any(gzip::Stream::deflated) {
            return Body::new(gzip::Head::join(streams, deflater));
        }
        let mut text = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        for stream in streams {
            text.extend_from_slice(&stream.into_text());
        }
        if text.len() < gzip::SEGMENT {
            return Body {
                gzip: None,
                plain: Some(Bytes::from(text)),
            };
        }
        let mut stream = gzip::Stream::new();
        for segment in text.chunks(gzip::SEGMENT) {
            stream.write(segment, deflater);
        }
        Body {
            gzip: Some(gzip::Head::join([stream], deflater)),
            plain: Some(Bytes::from(text)),
        }
    }

    pub fn empty() -> Body {
        Body {
            gzip: None,
            plain: Some(Bytes::new()),
        }
    }

    pub fn gzip(&self) -> Option<&gzip::Head> {
        self.gzip.as_ref()
    }

    /// The text, when it is kept plain.
    pub fn plain(&self) -> Option<&Bytes> {
        self.plain.as_ref()
    }

    /// The text: the kept copy, or inflated now (milliseconds of CPU on a large account).
    pub fn text(&self) -> std::io::Result<Vec<u8>> {
        match (&self.plain, &self.gzip) {
            (Some(plain), _) => Ok(plain.to_vec()),
            (None, Some(gzip)) => gzip.inflate(),
            (None, None) => Ok(Vec::new()),
        }
    }

    /// The text as it is read: the kept copy, or inflated as it goes.
    pub fn reader(&self) -> Box<dyn std::io::Read + Send> {
        match (&self.plain, &self.gzip) {
            (Some(plain), _) => Box::new(std::io::Cursor::new(plain.clone())),
            (None, Some(gzip)) => Box::new(gzip.reader()),
            (None, None) => Box::new(std::io::empty()),
        }
    }
}

/// One crawl's rendering.
pub struct Published {
    /// The fleet and device families; completed per request with the health families.
    pub metrics: Body,
    /// The status page up to its alerts section (`status::page`); `status_rest` follows it.
    pub status_html: Bytes,
    pub status_rest: Bytes,
    /// HTTP service discovery JSON; None before the first successful crawl.
    pub sd: Option<Body>,
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
    /// The status page's alerts section (`status::alerts_part`), swapped in by the alerts
    /// poller whenever what it says changes.
    alerts_html: ArcSwap<Bytes>,
    health: Arc<Health>,
}

impl Shared {
    pub fn new(initial: Published, health: Arc<Health>) -> Self {
        Shared {
            published: ArcSwap::from_pointee(initial),
            alerts_html: ArcSwap::from_pointee(Bytes::new()),
            health,
        }
    }

    pub fn load(&self) -> Arc<Published> {
        self.published.load_full()
    }

    pub fn store(&self, published: Published) {
        self.published.store(Arc::new(published));
    }

    /// Sets the status page's alerts section.
    pub fn set_alerts(&self, html: Bytes) {
        self.alerts_html.store(Arc::new(html));
    }

    /// The status page, in parts sent one after the other (shared, not copied): the last
    /// publication's, with the alerts section as it is now in its place.
    pub fn status_page(&self) -> Vec<Bytes> {
        let published = self.load();
        let alerts = Bytes::clone(&self.alerts_html.load());
        vec![
            published.status_html.clone(),
            alerts,
            published.status_rest.clone(),
        ]
    }

    pub fn health(&self) -> &Health {
        &self.health
    }

    /// The `/metrics` body as gzip, in parts sent one after the other: the published head
    /// (shared, not copied) and a tail with the health families as they are now. None when
    /// the body is kept plain only.
    pub fn metrics_gzip(&self) -> Option<Vec<Bytes>> {
        let published = self.load();
        let head = published.metrics.gzip()?;
        let mut parts = head.chunks().to_vec();
        parts.push(head.tail(self.health.render().as_bytes()));
        Some(parts)
    }

    /// The `/metrics` body as text when it is kept plain: the text and the health families.
    pub fn metrics_kept_plain(&self) -> Option<[Bytes; 2]> {
        let plain = self.load().metrics.plain()?.clone();
        Some([plain, Bytes::from(self.health.render())])
    }

    /// The `/metrics` body as text, for a client that does not accept gzip: the head inflated
    /// (about 40 ms of CPU at 10,000 devices: see BENCHMARKS.md), then the health families.
    pub fn metrics_plain(&self) -> std::io::Result<Vec<u8>> {
        let mut text = self.load().metrics.text()?;
        text.write_all(self.health.render().as_bytes())?;
        Ok(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn published(last_success: Option<Instant>) -> Published {
        Published {
            metrics: Body::empty(),
            status_html: Bytes::new(),
            status_rest: Bytes::new(),
            sd: None,
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
    fn small_bodies_are_kept_plain_too() {
        let body = |text: &[u8]| {
            let mut writer = gzip::Writer::new();
            writer.write(text);
            Body::new(writer.finish())
        };
        let small = b"balena_fleet_devices 1\n".repeat(1000);
        let kept = body(&small);
        assert_eq!(kept.plain().map(|b| &b[..]), Some(&small[..]));
        assert_eq!(kept.text().unwrap(), small);
        let large = b"balena_fleet_devices 1\n".repeat(PLAIN_MAX as usize / 10);
        let inflated = body(&large);
        assert!(inflated.plain().is_none());
        assert_eq!(inflated.text().unwrap(), large);
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
        assert!(
            shared.metrics_gzip().is_none(),
            "an empty body is kept plain only"
        );
        let mut writer = gzip::Writer::new();
        writer.write(b"balena_fleet_devices 1\n");
        shared.store(Published {
            metrics: Body::new(writer.finish()),
            ..published(None)
        });
        let parts = shared.metrics_gzip().expect("a gzip body");
        let mut inflated = String::new();
        flate2::read::GzDecoder::new(&parts.concat()[..])
            .read_to_string(&mut inflated)
            .unwrap();
        assert!(inflated.starts_with("balena_fleet_devices 1\n"));
        assert!(inflated.contains("\nbalena_crawl_api_requests 3\n"));
    }

    #[test]
    fn small_bodies_are_kept_plain_and_gzipped_from_a_segment_on() {
        let mut deflater = gzip::Deflater::new();
        let stream = |text: &[u8], deflater: &mut gzip::Deflater| {
            let mut stream = gzip::Stream::new();
            stream.write(text, deflater);
            stream
        };
        let small = vec![
            stream(b"a 1\n", &mut deflater),
            stream(b"b 2\n", &mut deflater),
        ];
        let body = Body::from_streams(small, &mut deflater);
        assert!(body.gzip().is_none(), "less than a segment stays plain");
        assert_eq!(body.plain().map(|b| &b[..]), Some(&b"a 1\nb 2\n"[..]));
        // Two halves of a segment: neither stream was deflated; joined, gzipped once.
        let half = b"d 4\n".repeat(gzip::SEGMENT / 8 + 1);
        let halves = vec![stream(&half, &mut deflater), stream(&half, &mut deflater)];
        let body = Body::from_streams(halves, &mut deflater);
        let both = [&half[..], &half].concat();
        assert_eq!(body.plain().map(|b| &b[..]), Some(&both[..]));
        let gzip = body.gzip().expect("gzipped too");
        assert_eq!(gzip.inflate().unwrap(), both);
        assert!(gzip.compressed_len() < both.len() / 10);
        // One stream filled a segment: gzipped, and kept plain too since it is small.
        let segment = b"c 3\n".repeat(gzip::SEGMENT / 4);
        let mixed = vec![
            stream(b"a 1\n", &mut deflater),
            stream(&segment, &mut deflater),
        ];
        let body = Body::from_streams(mixed, &mut deflater);
        assert!(body.gzip().is_some());
        assert_eq!(body.text().unwrap(), [&b"a 1\n"[..], &segment].concat());
        assert!(body.plain().is_some());
    }
}
