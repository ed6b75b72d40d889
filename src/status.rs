//! The HTML status page at `/`: fleets with online/total counts, the last crawl and the
//! last error, and links to the other endpoints. Rendered once per crawl.

use std::fmt::Write;
use std::time::{Duration, SystemTime};

use crate::snapshot::Snapshot;

/// What the page says about crawling.
#[derive(Clone, Debug, Default)]
pub struct CrawlReport {
    pub last_attempt: Option<SystemTime>,
    pub last_duration: Option<Duration>,
    pub last_success: Option<SystemTime>,
    pub last_error: Option<String>,
    pub api_url: String,
}

pub fn render(snapshot: Option<&Snapshot>, report: &CrawlReport) -> String {
    let mut html = String::from(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>balena exporter</title>\
         <style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}\
         td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left}.err{color:#b00}</style>\
         </head><body>\n<h1>balena exporter</h1>\n",
    );
    let time = |t: Option<SystemTime>| {
        t.map_or("never".to_string(), |t| {
            humantime::format_rfc3339_seconds(t).to_string()
        })
    };
    let _ = writeln!(
        html,
        "<p>API: {}<br>Last crawl: {}{}<br>Last successful crawl: {}</p>",
        escape(&report.api_url),
        time(report.last_attempt),
        report.last_duration.map_or(String::new(), |d| format!(
            " (took {:.2} s)",
            d.as_secs_f64()
        )),
        time(report.last_success),
    );
    if let Some(error) = &report.last_error {
        let _ = writeln!(html, "<p class=\"err\">Last error: {}</p>", escape(error));
    }
    match snapshot {
        None => html.push_str("<p>Waiting for the first successful crawl.</p>\n"),
        Some(s) => {
            let _ = writeln!(
                html,
                "<table><tr><th>Fleet</th><th>Slug</th><th>Online</th><th>Devices</th></tr>"
            );
            for f in &s.fleets {
                let _ = writeln!(
                    html,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    escape(&f.name),
                    escape(&f.slug),
                    f.online(),
                    f.devices.len()
                );
            }
            html.push_str("</table>\n");
        }
    }
    html.push_str(
        "<p><a href=\"metrics\">/metrics</a> · <a href=\"-/ready\">/-/ready</a> · \
         <a href=\"-/healthy\">/-/healthy</a></p>\n</body></html>\n",
    );
    html
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::{Device, Fleet};

    #[test]
    fn lists_fleets_escaped_with_counts_and_errors() {
        let fleet = Fleet {
            name: "<script>\"x\"".into(),
            slug: "o/x".into(),
            devices: vec![
                Device {
                    online: true,
                    ..Device::default()
                },
                Device::default(),
            ],
            ..Fleet::default()
        };
        let report = CrawlReport {
            last_attempt: Some(SystemTime::UNIX_EPOCH),
            last_duration: Some(Duration::from_millis(250)),
            last_success: None,
            last_error: Some("HTTP 503 & more".into()),
            api_url: "http://x".into(),
        };
        let html = render(
            Some(&Snapshot {
                fleets: vec![fleet],
                ..Snapshot::default()
            }),
            &report,
        );
        assert!(
            html.contains("<td>&lt;script&gt;&quot;x&quot;</td><td>o/x</td><td>1</td><td>2</td>"),
            "{html}"
        );
        assert!(html.contains("Last crawl: 1970-01-01T00:00:00Z (took 0.25 s)"));
        assert!(html.contains("Last successful crawl: never"));
        assert!(html.contains("Last error: HTTP 503 &amp; more"));
    }

    #[test]
    fn before_the_first_crawl() {
        let report = CrawlReport {
            last_attempt: None,
            last_duration: None,
            last_success: None,
            last_error: None,
            api_url: "u".into(),
        };
        assert!(render(None, &report).contains("Waiting for the first successful crawl."));
    }
}
