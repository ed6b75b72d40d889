//! The HTML status page at `/`, the exporter's front door: the alerts firing now (from
//! `alerts`); per fleet the devices expected online, offline, updating, the failing services
//! and the rollout, coloured by severity; the devices that need attention (offline the
//! longest, failing services, undervolted, hot, update rejected), each linked to its Grafana
//! dashboard and its balena dashboard page; links to the Grafana dashboards and the other
//! endpoints; the version and the last crawl. Every count and list uses `definitions` (through
//! `snapshot::Device` and `snapshot::Tally`), as the metric families and recording rules do.
//!
//! Server-rendered, without JavaScript, readable on a phone, refreshed by the browser at the
//! crawl interval. The fleets part is rendered once per crawl, on the
//! blocking pool, in one pass over the devices; its size is bounded whatever the account's:
//! at most `FLEETS` fleets and `DEVICES` devices per list, with a count of the rest, and
//! names and errors clipped. Every text from the API or the configuration is HTML-escaped,
//! and put in links percent-encoded. Links are relative, so that the page works under a
//! public URL with a path.

use std::cmp::Reverse;
use std::fmt::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::alerts::{Alert, Alerts};
use crate::snapshot::{by_slug, Device, Fleet, Snapshot, Tally};

/// Fleets shown at most (the largest ones, in slug order); a total row counts them all.
pub const FLEETS: usize = 100;
/// Devices shown at most in each list.
pub const DEVICES: usize = 20;
/// Failing services named at most per device.
const SERVICES_PER_DEVICE: usize = 3;
/// Characters shown at most of a name (fleet, slug, device, service, status).
const NAME_CHARS: usize = 64;
/// Characters shown at most of the last error and the API URL.
const ERROR_CHARS: usize = 500;
/// Bytes of a device uuid put in a link at most (balena's are 32 or 62).
const UUID_BYTES: usize = 128;
/// A device hotter than this is listed (the `HighTemperature` alert's threshold: Raspberry Pi
/// firmware throttles the CPU from about 80 °C).
pub const HOT_CELSIUS: f64 = 80.0;
/// Above this share of its devices expected online offline, a fleet is red: the threshold of
/// the `FleetDevicesOffline` alert (`fleet:balena_devices_offline:ratio > 0.2` in
/// prometheus/rules/balena.yml).
pub const FLEET_OFFLINE_RATIO: f64 = 0.2;
/// `update_status` values of an update that did not happen (the `UpdateFailed` alert's).
const UPDATE_FAILED: &[&str] = &["rejected", "aborted"];
/// Alerts listed at most.
pub const ALERTS: usize = 30;
/// The shortest refresh of the page, in seconds, whatever the crawl interval.
const MIN_REFRESH: u64 = 10;

/// Phones (narrower than 36em) see each fleet row as a short paragraph ("12 devices · 10
/// expected online · 2 offline · ...") rather than eight columns; the device lists have two
/// columns, and long words break rather than widen the page. Severity is a translucent
/// background and a bar at the start of the row (red, amber, green), readable on light and
/// dark backgrounds alike, and the legend says it in words.
const STYLE: &str = "\
:root{color-scheme:light dark}\
body{font:16px/1.45 system-ui,-apple-system,\"Segoe UI\",Roboto,sans-serif;margin:0 auto;\
max-width:64em;padding:.5em .8em 2em}\
h1{font-size:1.45em;margin:.3em 0 .1em}\
h2{font-size:1.2em;margin:1.3em 0 .4em;padding-bottom:.1em;border-bottom:2px solid #8886}\
h3{font-size:1.05em;margin:1.1em 0 .2em}\
p{margin:.35em 0}\
.scroll{overflow-x:auto}\
table{border-collapse:collapse;width:100%}\
th,td{padding:.3em .4em;border-bottom:1px solid #8884;text-align:left;vertical-align:top}\
td{overflow-wrap:anywhere}\
.list th:first-child{width:40%}.list td:first-child{min-width:9em}\
.fleets td:nth-child(n+3),.fleets th:nth-child(n+3){text-align:right}\
.fleets td:nth-child(n+3){white-space:nowrap}\
tfoot th,tfoot td{border-bottom:0;font-weight:600}\
small,.muted{color:#777;font-size:.85em}\
.err{color:#d22;overflow-wrap:anywhere}\
.good{color:#2a9d4a}\
tr.bad{background:#e5393524}tr.warn{background:#f0a30a24}\
tr.bad>:first-child{box-shadow:inset 5px 0 #e53935}\
tr.warn>:first-child{box-shadow:inset 5px 0 #f0a30a}\
tr.ok>:first-child{box-shadow:inset 5px 0 #2a9d4a}\
tr.bad>:first-child,tr.warn>:first-child,tr.ok>:first-child{padding-left:.7em}\
.sev{font-weight:600}\
code{overflow-wrap:anywhere}\
.t,nav a{white-space:nowrap}\
@media (max-width:36em){\
.fleets,.fleets tbody,.fleets tfoot,.fleets tr{display:block}\
.fleets thead{display:none}\
.fleets tr{padding:.35em 0 .35em .7em;border-bottom:1px solid #8884}\
.fleets tr.bad{box-shadow:inset 5px 0 #e53935}\
.fleets tr.warn{box-shadow:inset 5px 0 #f0a30a}\
.fleets tr.ok{box-shadow:inset 5px 0 #2a9d4a}\
.fleets tr>:first-child{box-shadow:none}\
.fleets td,.fleets th{display:inline;border:0;padding:0;text-align:left}\
.fleets td:nth-child(n+3){white-space:normal;text-align:left}\
.fleets td:first-child,.fleets th:first-child{display:block;font-weight:600;padding:0}\
.fleets td:nth-child(2){display:block;color:#777;font-size:.85em}\
.fleets td:empty{display:none}\
.fleets td:nth-child(n+4)::before{content:\" · \"}\
.fleets td:nth-child(3)::after{content:\" devices\"}\
.fleets td:nth-child(4)::after{content:\" expected online\"}\
.fleets td:nth-child(5)::after{content:\" offline\"}\
.fleets td:nth-child(6)::after{content:\" updating\"}\
.fleets td:nth-child(7)::after{content:\" failing services\"}\
.fleets td:nth-child(8)::after{content:\" on target\"}}";

/// What the page says about crawling.
#[derive(Clone, Debug, Default)]
pub struct CrawlReport {
    pub last_attempt: Option<SystemTime>,
    pub last_duration: Option<Duration>,
    pub last_success: Option<SystemTime>,
    pub last_error: Option<String>,
    pub api_url: String,
    /// The crawl interval: the browser reloads the page at it (at least `MIN_REFRESH`).
    pub interval: Duration,
}

/// The whole page from a snapshot (None before the first successful crawl), with device
/// links to `dashboard` (the balena dashboard) if any, and `alerts`: what the publication
/// and the handler put together. Offline durations are as of the last successful crawl.
pub fn render(
    snapshot: Option<&Snapshot>,
    report: &CrawlReport,
    dashboard: Option<&str>,
    alerts: &Alerts,
) -> String {
    let now = report.last_success.unwrap_or_else(SystemTime::now);
    let part = snapshot.map(|s| {
        let mut survey = Survey::new(&s.fleets);
        for (i, f) in s.fleets.iter().enumerate() {
            for d in &f.devices {
                survey.add(i, d);
            }
        }
        let tallies: Vec<Tally> = s.fleets.iter().map(Fleet::tally).collect();
        fleets_part(&s.fleets, &tallies, survey, now, dashboard)
    });
    let (head, rest) = page(report, part.as_deref());
    head + &alerts_part(alerts) + &rest
}

/// The part of the page that comes from a crawl (the fleets and the devices that need
/// attention), as of `now`: rendered once per successful crawl and kept, so that no device
/// need be. `fleets` are those the survey was made with, in the same order, and `tallies`
/// their counts (those of the fleet families); devices link to `dashboard` if any.
pub fn fleets_part(
    fleets: &[Fleet],
    tallies: &[Tally],
    mut survey: Survey,
    now: SystemTime,
    dashboard: Option<&str>,
) -> String {
    let mut html = String::with_capacity(16 * 1024);
    let now = now
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    survey.finish();
    fleets_table(&mut html, fleets, tallies, &survey);
    attention(&mut html, fleets, &survey, now, dashboard);
    html
}

/// The whole page around `fleets` (from `fleets_part`; None before the first successful
/// crawl), in two parts: the alerts (`alerts_part`, which change between crawls) go between
/// them. Cheap enough to render after every crawl, failed ones too.
pub fn page(report: &CrawlReport, fleets: Option<&str>) -> (String, String) {
    let mut html = String::with_capacity(4 * 1024);
    let refresh = report
        .interval
        .as_secs_f64()
        .round()
        .max(MIN_REFRESH as f64) as u64;
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <meta name=\"robots\" content=\"noindex\">\
         <meta http-equiv=\"refresh\" content=\"{refresh}\">\
         <title>balena fleet monitor</title><style>"
    );
    html.push_str(STYLE);
    html.push_str(
        "</style></head><body>\n<h1>balena fleet monitor</h1>\n<p class=\"muted\">Version ",
    );
    html.push_str(env!("CARGO_PKG_VERSION"));
    html.push_str(" · API <code>");
    push_text(&mut html, &report.api_url, ERROR_CHARS);
    html.push_str("</code></p>\n");
    crawl(&mut html, report, fleets.is_some());
    links(&mut html);
    let mut rest = String::with_capacity(64 + fleets.map_or(0, str::len));
    match fleets {
        None => rest.push_str("<p>Waiting for the first successful crawl.</p>\n"),
        Some(part) => rest.push_str(part),
    }
    rest.push_str("</body></html>\n");
    (html, rest)
}

/// The alerts section: the alerts firing now, the most severe first, or why there are none
/// to show.
pub fn alerts_part(alerts: &Alerts) -> String {
    let mut html = String::with_capacity(1024);
    let (alerts, total) = match alerts {
        Alerts::NotConfigured => {
            html.push_str(
                "<h2 id=\"alerts\">Alerts</h2>\n<p class=\"muted\">Not configured: set \
                 <code>ALERTMANAGER_URL</code> (the balena app sets \
                 <code>http://alertmanager:9093</code>).</p>\n",
            );
            return html;
        }
        Alerts::Waiting => {
            html.push_str(
                "<h2 id=\"alerts\">Alerts</h2>\n<p class=\"muted\">Waiting for \
                 <a href=\"alertmanager/\">Alertmanager</a>'s first answer.</p>\n",
            );
            return html;
        }
        Alerts::Unreachable { since, error } => {
            html.push_str(
                "<h2 id=\"alerts\">Alerts</h2>\n<p class=\"err\">Alertmanager unreachable since ",
            );
            push_time(&mut html, unix(*since));
            html.push_str(": ");
            push_text(&mut html, error, ERROR_CHARS);
            html.push_str(
                "</p>\n<p class=\"muted\">Alerts may be firing unseen: check the \
                 <code>alertmanager</code> service.</p>\n",
            );
            return html;
        }
        Alerts::Firing { alerts, total, .. } => (alerts, *total),
    };
    let _ = writeln!(html, "<h2 id=\"alerts\">Alerts firing ({total})</h2>");
    if total == 0 {
        html.push_str(
            "<p class=\"good\">None: no alert is firing (silenced and inhibited ones aside).</p>\n",
        );
        return html;
    }
    html.push_str(
        "<div class=\"scroll\"><table class=\"list\"><thead><tr><th>Alert</th><th>Summary</th>\
         </tr></thead><tbody>\n",
    );
    for a in alerts.iter().take(ALERTS) {
        alert_row(&mut html, a);
    }
    html.push_str("</tbody></table></div>\n");
    let shown = alerts.len().min(ALERTS);
    if total > shown {
        let _ = writeln!(html, "<p class=\"muted\">And {} more.</p>", total - shown);
    }
    html.push_str(
        "<p class=\"muted\">Silenced and inhibited alerts are left out; \
         <a href=\"alertmanager/\">Alertmanager</a> has them all.</p>\n",
    );
    html
}

fn alert_row(html: &mut String, a: &Alert) {
    let class = match a.rank() {
        0 => "bad",
        1 => "warn",
        _ => "info",
    };
    let _ = write!(html, "<tr class=\"{class}\"><td><span class=\"sev\">");
    // Alert names are CamelCase: on a phone they wrap between their words.
    let mut lower = false;
    for (i, c) in a.name.chars().enumerate() {
        if i == NAME_CHARS {
            html.push('…');
            break;
        }
        if lower && c.is_ascii_uppercase() {
            html.push_str("<wbr>");
        }
        lower = c.is_ascii_lowercase();
        push_text(html, c.encode_utf8(&mut [0; 4]), 1);
    }
    html.push_str("</span><br><small>");
    push_text(html, &a.severity, NAME_CHARS);
    if let Some(t) = a.starts_at {
        html.push_str(" since ");
        push_time(html, unix(t));
    }
    html.push_str("</small></td><td>");
    push_text(html, &a.summary, ERROR_CHARS);
    let place: Vec<&str> = [&a.fleet_slug, &a.device]
        .into_iter()
        .map(String::as_str)
        .filter(|s| !s.is_empty())
        .collect();
    if !place.is_empty() {
        html.push_str("<br><small>");
        for (i, p) in place.iter().enumerate() {
            if i > 0 {
                html.push_str(" · ");
            }
            push_text(html, p, NAME_CHARS);
        }
        html.push_str("</small>");
    }
    html.push_str("</td></tr>\n");
}

/// Seconds since the Unix epoch (0 before it).
fn unix(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn crawl(html: &mut String, report: &CrawlReport, have_data: bool) {
    let time = |t: Option<SystemTime>| {
        t.map_or("never".to_string(), |t| {
            format!(
                "<span class=\"t\">{}</span>",
                humantime::format_rfc3339_seconds(t)
            )
        })
    };
    let _ = writeln!(
        html,
        "<p>Last crawl: {}{}<br>Last successful crawl: {}</p>",
        time(report.last_attempt),
        report.last_duration.map_or(String::new(), |d| format!(
            " <span class=\"t\">(took {:.2} s)</span>",
            d.as_secs_f64()
        )),
        time(report.last_success),
    );
    if let Some(error) = &report.last_error {
        html.push_str("<p class=\"err\">Last error: ");
        push_text(html, error, ERROR_CHARS);
        html.push_str("</p>\n");
        if have_data {
            html.push_str(
                "<p class=\"muted\">The data below is from the last successful crawl.</p>\n",
            );
        }
    }
}

fn links(html: &mut String) {
    html.push_str(
        "<nav><p>Dashboards: <a href=\"grafana/d/balena-fleets\">Fleets</a> · \
         <a href=\"grafana/d/balena-services\">Services</a> · \
         <a href=\"grafana/d/balena-exporter\">Exporter</a><br>\
         <span class=\"muted\">They need <code>GRAFANA_URL</code> (the balena app sets it); \
         device names link to the device dashboard.</span><br>\
         Endpoints: <a href=\"metrics\">/metrics</a> · <a href=\"sd\">/sd</a> · \
         <a href=\"-/ready\">/-/ready</a> · <a href=\"-/healthy\">/-/healthy</a></p></nav>\n",
    );
}

/// The counts of a fleet row (or of the total row), from the fleet's `Tally`.
#[derive(Clone, Copy, Default)]
struct Row {
    devices: usize,
    expected_online: usize,
    offline: usize,
    updating: usize,
    services_failing: usize,
    on_target: usize,
    /// Whether the fleet or any of its devices has a target release.
    has_target: bool,
}

impl Row {
    fn new(t: &Tally, has_target: bool) -> Row {
        Row {
            devices: t.devices,
            expected_online: t.expected_online,
            offline: t.offline,
            updating: t.updating,
            services_failing: t.services_failing,
            on_target: t.on_target_release,
            has_target,
        }
    }

    /// `bad` (red) above the `FleetDevicesOffline` threshold, `warn` (amber) with a device
    /// offline or a service failing, `ok` (green) otherwise.
    fn severity(&self) -> &'static str {
        if self.offline as f64 > FLEET_OFFLINE_RATIO * self.expected_online as f64 {
            "bad"
        } else if self.offline > 0 || self.services_failing > 0 {
            "warn"
        } else {
            "ok"
        }
    }
}

impl std::ops::AddAssign for Row {
    fn add_assign(&mut self, r: Row) {
        self.devices += r.devices;
        self.expected_online += r.expected_online;
        self.offline += r.offline;
        self.updating += r.updating;
        self.services_failing += r.services_failing;
        self.on_target += r.on_target;
        self.has_target |= r.has_target;
    }
}

/// Devices listed by one key, keeping only the `limit` first by key; `total` counts all.
/// A kept device is a copy (with the index of its fleet): the crawl keeps no device.
struct Top<K> {
    limit: usize,
    total: usize,
    items: Vec<(K, usize, Device)>,
    /// Once `limit` devices are kept: the largest key kept, which a new key must be under.
    bar: Option<K>,
}

impl<K: Ord + Clone> Top<K> {
    fn new(limit: usize) -> Self {
        Top {
            limit,
            total: 0,
            items: Vec::new(),
            bar: None,
        }
    }

    fn push(&mut self, key: K, fleet: usize, device: &Device) {
        self.total += 1;
        if self.bar.as_ref().is_some_and(|bar| key >= *bar) {
            return;
        }
        self.items.push((key, fleet, device.clone()));
        // Amortized O(1): shrink back to `limit` every `limit` pushes.
        if self.items.len() >= 2 * self.limit.max(1) {
            self.shrink();
        }
    }

    fn shrink(&mut self) {
        if self.items.len() > self.limit {
            self.items
                .select_nth_unstable_by(self.limit, |a, b| a.0.cmp(&b.0));
            self.items.truncate(self.limit);
        }
        if self.items.len() >= self.limit {
            self.bar = self.items.iter().map(|i| i.0.clone()).max();
        }
    }

    /// The kept devices, in key order.
    fn finish(&mut self) {
        self.shrink();
        self.items.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    }
}

/// Everything the page lists, device by device. Keys end with the device's position in the
/// crawl, so ties keep that order.
pub struct Survey {
    /// Per fleet: whether it or any of its devices has a target release.
    has_target: Vec<bool>,
    seq: usize,
    /// Offline: with a known time first, the longest offline first.
    offline: Top<(bool, i64, usize)>,
    failing: Top<usize>,
    undervolted: Top<usize>,
    /// Hottest first, in millidegrees.
    hot: Top<(Reverse<i64>, usize)>,
    update_failed: Top<usize>,
    updating: Top<usize>,
}

impl Survey {
    /// A survey of devices of `fleets`.
    pub fn new(fleets: &[Fleet]) -> Survey {
        Survey {
            has_target: fleets
                .iter()
                .map(|f| !f.target_release.is_empty())
                .collect(),
            seq: 0,
            offline: Top::new(DEVICES),
            failing: Top::new(DEVICES),
            undervolted: Top::new(DEVICES),
            hot: Top::new(DEVICES),
            update_failed: Top::new(DEVICES),
            updating: Top::new(DEVICES),
        }
    }

    /// A device of the fleet at index `fleet`.
    pub fn add(&mut self, fleet: usize, d: &Device) {
        let Some(has_target) = self.has_target.get_mut(fleet) else {
            return;
        };
        self.seq += 1;
        let seq = self.seq;
        *has_target |= d.on_target_release.is_some();
        if d.updating() {
            self.updating.push(seq, fleet, d);
        }
        if d.offline() {
            let since = d.offline_since().filter(|s| valid_time(*s));
            let key = (since.is_none(), since.map_or(0, |s| (s * 1e3) as i64), seq);
            self.offline.push(key, fleet, d);
        }
        if d.services.iter().any(|s| s.failing) {
            self.failing.push(seq, fleet, d);
        }
        if d.undervolted == Some(true) {
            self.undervolted.push(seq, fleet, d);
        }
        if let Some(t) = d.temperature_celsius.filter(|t| *t > HOT_CELSIUS) {
            self.hot.push((Reverse((t * 1e3) as i64), seq), fleet, d);
        }
        if UPDATE_FAILED.contains(&&*d.update_status) {
            self.update_failed.push(seq, fleet, d);
        }
    }

    fn finish(&mut self) {
        self.offline.finish();
        self.failing.finish();
        self.undervolted.finish();
        self.hot.finish();
        self.update_failed.finish();
        self.updating.finish();
    }
}

/// Whether `seconds` is a Unix time that can be shown (1970 to year 5000).
fn valid_time(seconds: f64) -> bool {
    (0.0..1e11).contains(&seconds)
}

fn fleets_table(html: &mut String, fleets: &[Fleet], tallies: &[Tally], survey: &Survey) {
    html.push_str("<h2 id=\"fleets\">Fleets</h2>\n");
    if fleets.is_empty() {
        html.push_str(
            "<p>No fleets: the token sees none, or <code>FLEETS</code> selects none.</p>\n",
        );
        return;
    }
    let none = Tally::default();
    let rows: Vec<Row> = (0..fleets.len())
        .map(|i| {
            Row::new(
                tallies.get(i).unwrap_or(&none),
                survey.has_target.get(i).copied().unwrap_or(false),
            )
        })
        .collect();
    // In slug order; the largest fleets when there are too many.
    let mut shown: Vec<usize> = (0..fleets.len()).collect();
    shown.sort_by(|&a, &b| by_slug(&fleets[a], &fleets[b]));
    let position: Vec<usize> = {
        let mut position = vec![0; fleets.len()];
        for (p, &i) in shown.iter().enumerate() {
            position[i] = p;
        }
        position
    };
    if shown.len() > FLEETS {
        shown.select_nth_unstable_by_key(FLEETS, |&i| (Reverse(rows[i].devices), position[i]));
        shown.truncate(FLEETS);
        shown.sort_unstable_by_key(|&i| position[i]);
    }
    html.push_str(
        "<div class=\"scroll\"><table class=\"fleets\"><thead><tr><th>Fleet</th><th>Slug</th>\
         <th>Devices</th><th>Expected online</th><th>Offline</th><th>Updating</th>\
         <th>Failing services</th><th>On target</th></tr></thead><tbody>\n",
    );
    let mut total = Row::default();
    for r in &rows {
        total += *r;
    }
    for &i in &shown {
        let (f, r) = (&fleets[i], rows[i]);
        let _ = write!(html, "<tr class=\"{}\"><td>", r.severity());
        push_text(html, &f.name, NAME_CHARS);
        html.push_str("</td><td>");
        push_text(html, &f.slug, NAME_CHARS);
        counts(html, r);
    }
    html.push_str("</tbody>");
    if fleets.len() > 1 {
        let _ = write!(
            html,
            "<tfoot><tr class=\"{}\"><th>All {} fleets</th><td>",
            total.severity(),
            fleets.len()
        );
        counts(html, total);
        html.push_str("</tfoot>");
    }
    html.push_str("</table></div>\n");
    if shown.len() < fleets.len() {
        let _ = writeln!(
            html,
            "<p class=\"muted\">And {} more fleets: the {} largest are shown.</p>",
            fleets.len() - shown.len(),
            shown.len()
        );
    }
    let _ = writeln!(
        html,
        "<p class=\"muted\">Expected online: neither deactivated nor never connected. Offline: \
         balena's disconnected, neither heartbeat nor VPN. Updating: downloading, downloaded or \
         applying changes. Failing services: exited, dead or restarting. On target: running \
         the target release (— : no target release). Red: more than {:.0} % of the devices \
         expected online are offline (the FleetDevicesOffline alert's threshold); amber: a \
         device offline or a service failing; green: neither.</p>",
        FLEET_OFFLINE_RATIO * 100.0
    );
}

/// The count cells of a fleet row, after its slug cell, to the end of the row.
fn counts(html: &mut String, r: Row) {
    let _ = write!(
        html,
        "</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>",
        r.devices, r.expected_online, r.offline, r.updating, r.services_failing
    );
    if r.has_target {
        let _ = write!(html, "{}", r.on_target);
    } else {
        html.push('—');
    }
    html.push_str("</td></tr>\n");
}

/// What a device row links to: its fleet, and the balena dashboard if any.
struct Links<'a> {
    fleets: &'a [Fleet],
    dashboard: Option<&'a str>,
}

fn attention(
    html: &mut String,
    fleets: &[Fleet],
    survey: &Survey,
    now: f64,
    dashboard: Option<&str>,
) {
    let fleets = &Links { fleets, dashboard };
    html.push_str("<h2 id=\"attention\">Devices that need attention</h2>\n");
    let mut any = false;
    any |= list(
        html,
        fleets,
        "offline",
        "Offline",
        "Disconnected: neither heartbeat nor VPN; the longest first. Deactivated and \
         never-connected devices are never offline.",
        ("Offline for", &survey.offline),
        |html, d| {
            match d.offline_since().filter(|s| valid_time(*s)) {
                Some(s) => {
                    // A time ahead of the crawl's (a skewed clock) has no duration.
                    if s <= now {
                        html.push_str(&span(now - s));
                        html.push_str("<br>");
                    }
                    html.push_str("<small>");
                    html.push_str(match &*d.heartbeat {
                        "timeout" => "heartbeat timed out",
                        _ => "offline",
                    });
                    html.push_str(" since ");
                    push_time(html, s);
                    html.push_str("</small>");
                }
                None => {
                    html.push_str("unknown<br><small>heartbeat ");
                    push_text(html, &d.heartbeat, NAME_CHARS);
                    html.push_str("</small>");
                }
            }
        },
    );
    any |= list(
        html,
        fleets,
        "failing",
        "Failing services",
        "A service exited (unless its restart policy is no or on-failure), is dead or \
         restarting.",
        ("Services", &survey.failing),
        |html, d| {
            let bad: Vec<_> = d.services.iter().filter(|s| s.failing).collect();
            for (i, s) in bad.iter().take(SERVICES_PER_DEVICE).enumerate() {
                if i > 0 {
                    html.push_str("<br>");
                }
                push_text(html, &s.name, NAME_CHARS);
                html.push_str(": ");
                push_text(html, &s.status, NAME_CHARS);
            }
            if bad.len() > SERVICES_PER_DEVICE {
                let _ = write!(
                    html,
                    "<br><small>and {} more</small>",
                    bad.len() - SERVICES_PER_DEVICE
                );
            }
        },
    );
    any |= list(
        html,
        fleets,
        "undervolted",
        "Undervolted",
        "The supervisor reports under-voltage: a weak power supply, which risks SD card \
         corruption.",
        ("Status", &survey.undervolted),
        |html, d| push_text(html, &d.status, NAME_CHARS),
    );
    let about_hot = format!(
        "CPU temperature above {HOT_CELSIUS} °C, where a Raspberry Pi throttles; the hottest first."
    );
    any |= list(
        html,
        fleets,
        "hot",
        "Hot",
        &about_hot,
        ("Temperature", &survey.hot),
        |html, d| {
            let _ = write!(html, "{:.0} °C", d.temperature_celsius.unwrap_or(f64::NAN));
        },
    );
    any |= list(
        html,
        fleets,
        "update-failed",
        "Update rejected or aborted",
        "The device's last update did not happen.",
        ("Update", &survey.update_failed),
        |html, d| {
            push_text(html, &d.update_status, NAME_CHARS);
            if let Some(s) = d.update_status_changed_seconds.filter(|s| valid_time(*s)) {
                html.push_str("<br><small>since ");
                push_time(html, s);
                html.push_str("</small>");
            }
        },
    );
    if !any {
        html.push_str(
            "<p>None: every device is online, without failing services, \
                       under-voltage, heat or a failed update.</p>\n",
        );
    }
    list(
        html,
        fleets,
        "updating",
        "Updating",
        "Devices downloading, downloaded or applying changes.",
        ("Update", &survey.updating),
        |html, d| {
            push_text(html, &d.update_status, NAME_CHARS);
            if let Some(p) = d.update_progress {
                let _ = write!(html, " {:.0} %", p * 100.0);
            }
        },
    );
}

/// One list of devices with a heading and a count; nothing when it is empty. Returns whether
/// it had devices.
fn list<K>(
    html: &mut String,
    links: &Links,
    id: &str,
    title: &str,
    about: &str,
    (column, top): (&str, &Top<K>),
    detail: impl Fn(&mut String, &Device),
) -> bool {
    if top.total == 0 {
        return false;
    }
    let _ = write!(
        html,
        "<section id=\"{id}\"><h3>{title} ({})</h3>\n<p class=\"muted\">{about}</p>\n\
         <div class=\"scroll\"><table class=\"list\"><thead><tr><th>Device</th><th>{column}</th></tr></thead>\
         <tbody>\n",
        top.total
    );
    for (_, fleet, device) in &top.items {
        let Some(fleet) = links.fleets.get(*fleet) else {
            continue;
        };
        html.push_str("<tr><td><a href=\"grafana/d/balena-device?var-device=");
        push_query(html, &device.uuid);
        html.push_str("\">");
        push_text(html, &device.name, NAME_CHARS);
        html.push_str("</a><br><small>");
        push_text(html, &fleet.slug, NAME_CHARS);
        if let Some(dashboard) = links.dashboard {
            html.push_str(" · <a href=\"");
            push_text(html, dashboard.trim_end_matches('/'), ERROR_CHARS);
            html.push_str("/devices/");
            push_query(html, &device.uuid);
            html.push_str("/summary\" rel=\"noreferrer\">balena dashboard</a>");
        }
        html.push_str("</small></td><td>");
        detail(html, device);
        html.push_str("</td></tr>\n");
    }
    html.push_str("</tbody></table></div>\n");
    if top.total > top.items.len() {
        let _ = writeln!(
            html,
            "<p class=\"muted\">And {} more.</p>",
            top.total - top.items.len()
        );
    }
    html.push_str("</section>\n");
    true
}

/// `seconds` as days and hours, hours and minutes, or minutes.
fn span(seconds: f64) -> String {
    let s = seconds.max(0.0) as u64;
    let (d, h, m) = (s / 86_400, s / 3_600 % 24, s / 60 % 60);
    match (d, h) {
        (0, 0) if m == 0 => "under a minute".to_string(),
        (0, 0) => format!("{m} min"),
        (0, _) => format!("{h} h {m} min"),
        _ => format!("{d} d {h} h"),
    }
}

/// A Unix time to the minute, `2026-11-21 08:00 UTC`, which may wrap only between the date
/// and the time; nothing when it is out of range.
fn push_time(html: &mut String, seconds: f64) {
    if valid_time(seconds) {
        let t = UNIX_EPOCH + Duration::from_secs_f64(seconds);
        let t = humantime::format_rfc3339_seconds(t).to_string();
        let (date, time) = (&t[..10], &t[11..16]);
        let _ = write!(
            html,
            "<span class=\"t\">{date}</span> <span class=\"t\">{time} UTC</span>"
        );
    }
}

/// `text` HTML-escaped, clipped to `max` characters (an ellipsis marks a clipped one).
fn push_text(html: &mut String, text: &str, max: usize) {
    for (i, c) in text.chars().enumerate() {
        if i == max {
            html.push('…');
            break;
        }
        match c {
            '&' => html.push_str("&amp;"),
            '<' => html.push_str("&lt;"),
            '>' => html.push_str("&gt;"),
            '"' => html.push_str("&quot;"),
            '\'' => html.push_str("&#39;"),
            c => html.push(c),
        }
    }
}

/// `value` percent-encoded for a URL query, clipped to `UUID_BYTES` bytes; the result needs
/// no HTML escaping.
fn push_query(html: &mut String, value: &str) {
    for b in value.bytes().take(UUID_BYTES) {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            html.push(char::from(b));
        } else {
            let _ = write!(html, "%{b:02X}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::Service;

    /// 2026-11-30T10:00:00Z: the last successful crawl of the tests.
    const NOW: u64 = 1_796_032_800;

    /// The whole page, without a balena dashboard or Alertmanager.
    fn html_of(snapshot: Option<&Snapshot>, report: &CrawlReport) -> String {
        render(snapshot, report, None, &Alerts::NotConfigured)
    }

    fn report() -> CrawlReport {
        CrawlReport {
            last_attempt: Some(UNIX_EPOCH + Duration::from_secs(NOW)),
            last_duration: Some(Duration::from_millis(250)),
            last_success: Some(UNIX_EPOCH + Duration::from_secs(NOW)),
            last_error: None,
            api_url: "https://api.balena-cloud.com".into(),
            interval: Duration::from_secs(60),
        }
    }

    fn device(id: u64, name: &str) -> Device {
        Device {
            id,
            uuid: format!("{id:032x}").into(),
            name: name.into(),
            online: true,
            status: "operational".into(),
            heartbeat: "online".into(),
            update_status: "done".into(),
            ..Device::default()
        }
    }

    fn service(name: &str, status: &str) -> Service {
        Service {
            name: name.into(),
            status: status.into(),
            download_progress: None,
            failing: crate::definitions::service_failing(
                crate::definitions::Presence::Connected,
                status,
                None,
                false,
            ),
        }
    }

    fn snapshot(fleets: Vec<Fleet>) -> Snapshot {
        Snapshot {
            fleets,
            services: true,
            tags: false,
        }
    }

    fn fleet(slug: &str, devices: Vec<Device>) -> Fleet {
        Fleet {
            name: slug.rsplit('/').next().unwrap_or(slug).into(),
            slug: slug.into(),
            target_release: "abc".into(),
            devices,
            ..Fleet::default()
        }
    }

    /// The part of the page from `<section id="{id}">` to its end; empty when it is absent.
    fn section<'a>(html: &'a str, id: &str) -> &'a str {
        let Some(start) = html.find(&format!("<section id=\"{id}\">")) else {
            return "";
        };
        let end = html[start..].find("</section>").unwrap() + start;
        &html[start..end]
    }

    /// The device names of a section, in order.
    fn names(section: &str) -> Vec<&str> {
        section
            .split("<tr><td><a href=\"")
            .skip(1)
            .map(|row| {
                let name = &row[row.find("\">").unwrap() + 2..];
                &name[..name.find("</a>").unwrap()]
            })
            .collect()
    }

    #[test]
    fn fleet_rows_use_the_definitions_and_show_severity() {
        let mut on = device(1, "on");
        on.on_target_release = Some(true);
        // Offline is balena's disconnected; is_online alone says nothing.
        let mut offline = device(2, "offline");
        (offline.status, offline.online) = ("disconnected".into(), false);
        offline.on_target_release = Some(false);
        let mut vpn_off = device(9, "vpn-off");
        vpn_off.online = false;
        let mut downloading = device(3, "downloading");
        downloading.on_target_release = Some(false);
        downloading.update_status = "downloading".into();
        downloading.update_progress = Some(0.42);
        // Done is not updating, whatever overall_status says; none follows overall_status.
        let mut done = device(4, "done-but-updating");
        done.status = "updating".into();
        let mut none = device(6, "none-updating");
        (none.status, none.update_status) = ("updating".into(), "none".into());
        // Neither inactive nor configuring devices are offline or expected online.
        let mut inactive = device(7, "inactive");
        (inactive.status, inactive.online) = ("inactive".into(), false);
        inactive.update_status = "downloading".into();
        let mut configuring = device(8, "configuring");
        (configuring.status, configuring.online) = ("configuring".into(), false);
        let mut crashing = device(10, "crashing");
        crashing.services = vec![service("a", "exited"), service("b", "Dead")];
        let mut no_target = fleet("o/gateways", vec![device(5, "gw"), crashing]);
        no_target.target_release = "".into();
        let s = snapshot(vec![
            fleet(
                "o/sensors",
                vec![
                    on,
                    offline,
                    vpn_off,
                    downloading,
                    done,
                    none,
                    inactive,
                    configuring,
                ],
            ),
            no_target,
            fleet("o/quiet", vec![device(11, "fine")]),
        ]);
        let html = html_of(Some(&s), &report());
        // 1 offline of 6 expected online: amber, under the 20 % of FleetDevicesOffline.
        let row = "<tr class=\"warn\"><td>sensors</td><td>o/sensors</td><td>8</td><td>6</td>\
                   <td>1</td><td>2</td><td>0</td><td>1</td></tr>";
        assert!(html.contains(row), "{html}");
        let row = "<tr class=\"warn\"><td>gateways</td><td>o/gateways</td><td>2</td><td>2</td>\
                   <td>0</td><td>0</td><td>2</td><td>—</td></tr>";
        assert!(html.contains(row), "{html}");
        let row = "<tr class=\"ok\"><td>quiet</td><td>o/quiet</td><td>1</td><td>1</td>\
                   <td>0</td><td>0</td><td>0</td><td>0</td></tr>";
        assert!(html.contains(row), "{html}");
        let total = "<tfoot><tr class=\"warn\"><th>All 3 fleets</th><td></td><td>11</td>\
                     <td>9</td><td>1</td><td>2</td><td>2</td><td>1</td></tr>";
        assert!(html.contains(total), "{html}");
        assert!(html.contains(
            "<th>Devices</th><th>Expected online</th><th>Offline</th><th>Updating</th>\
             <th>Failing services</th><th>On target</th>"
        ));
        assert!(html.contains("more than 20 % of the devices expected online are offline"));
        let updating = section(&html, "updating");
        assert_eq!(names(updating), ["downloading", "none-updating"]);
        assert!(updating.contains("downloading 42 %"), "{updating}");
        assert_eq!(names(section(&html, "offline")), ["offline"]);
        // The tallies are the fleet families': one number everywhere.
        assert_eq!(s.fleets[0].tally().offline, 1);
        assert_eq!(s.fleets[0].tally().updating, 2);
        // One fleet: no total row.
        let one = html_of(Some(&snapshot(vec![fleet("o/a", vec![])])), &report());
        assert!(!one.contains("<tfoot>"));
        assert!(html_of(Some(&snapshot(vec![])), &report()).contains("No fleets"));
    }

    #[test]
    fn a_fleet_is_red_above_the_fleet_offline_threshold() {
        let offline = |id| {
            let mut d = device(id, "off");
            d.status = "disconnected".into();
            d
        };
        // 1 of 5 is 20 %: not above. 2 of 5 is: red.
        let at = fleet(
            "o/at",
            vec![
                offline(1),
                device(2, "a"),
                device(3, "b"),
                device(4, "c"),
                device(5, "d"),
            ],
        );
        let above = fleet(
            "o/above",
            vec![
                offline(6),
                offline(7),
                device(8, "e"),
                device(9, "f"),
                device(10, "g"),
            ],
        );
        // Only inactive devices: nothing expected online, nothing offline: green.
        let mut inactive = device(11, "i");
        inactive.status = "inactive".into();
        let idle = fleet("o/idle", vec![inactive]);
        let html = html_of(Some(&snapshot(vec![at, above, idle])), &report());
        assert!(html.contains("<tr class=\"warn\"><td>at</td>"), "{html}");
        assert!(html.contains("<tr class=\"bad\"><td>above</td>"), "{html}");
        assert!(html.contains("<tr class=\"ok\"><td>idle</td>"), "{html}");
        assert!(
            html.contains("<tfoot><tr class=\"bad\">"),
            "3 of 10 are offline"
        );
    }

    #[test]
    fn devices_needing_attention_by_category_and_order() {
        let hour = 3_600.0;
        let now = NOW as f64;
        let mut devices = Vec::new();
        // Offline (disconnected): an hour, a week, unknown; timed out a minute ago.
        // Deactivated and never-connected devices are never offline (left out).
        let off = |id, name| {
            let mut d = device(id, name);
            (d.online, d.status, d.heartbeat) = (false, "disconnected".into(), "offline".into());
            d
        };
        let mut d = off(1, "off-1h");
        d.heartbeat_changed_seconds = Some(now - hour);
        devices.push(d);
        let mut d = off(2, "off-unknown");
        d.heartbeat = "unknown".into();
        devices.push(d);
        let mut d = off(3, "off-week");
        d.heartbeat_changed_seconds = Some(now - 7.0 * 24.0 * hour - 2.0 * hour);
        d.last_connectivity_seconds = Some(now - 10.0); // the heartbeat's time wins
        devices.push(d);
        let mut d = off(4, "timeout");
        d.heartbeat = "timeout".into();
        d.heartbeat_changed_seconds = Some(now - 90.0);
        devices.push(d);
        let mut d = device(5, "deactivated");
        (d.online, d.status) = (false, "inactive".into());
        devices.push(d);
        let mut d = device(13, "never-connected");
        (d.online, d.status, d.heartbeat) = (false, "configuring".into(), "unknown".into());
        devices.push(d);
        // VPN off on purpose, heartbeat online: not offline.
        let mut d = device(14, "vpn-off");
        d.online = false;
        devices.push(d);
        // Without a heartbeat time, the last connectivity event stands in.
        let mut d = off(6, "off-connectivity");
        d.last_connectivity_seconds = Some(now - 2.0 * hour);
        devices.push(d);
        // A clock ahead of the crawl's: listed with its time, without a duration.
        let mut d = off(12, "off-future");
        d.heartbeat_changed_seconds = Some(now + hour);
        devices.push(d);
        // Failing services, in any case; running and stopped ones are not.
        let mut d = device(7, "crashing");
        d.services = vec![
            service("a", "exited"),
            service("b", "Dead"),
            service("c", "Running"),
            service("d", "restarting"),
            service("e", "RESTARTING"),
            service("f", "Stopped"),
        ];
        devices.push(d);
        let mut d = device(8, "fine");
        d.services = vec![service("a", "Running"), service("b", "Downloading")];
        d.temperature_celsius = Some(80.0); // not above 80
        d.undervolted = Some(false);
        devices.push(d);
        // Hot and undervolted.
        let mut d = device(9, "warm");
        d.temperature_celsius = Some(81.2);
        d.undervolted = Some(true);
        devices.push(d);
        let mut d = device(10, "hottest");
        d.temperature_celsius = Some(92.0);
        devices.push(d);
        let mut d = device(11, "rejected");
        d.update_status = "rejected".into();
        d.update_status_changed_seconds = Some(now - hour);
        devices.push(d);
        let html = html_of(Some(&snapshot(vec![fleet("o/f", devices)])), &report());

        let offline = section(&html, "offline");
        assert!(offline.contains("<h3>Offline (6)</h3>"), "{offline}");
        assert_eq!(
            names(offline),
            [
                "off-week",
                "off-connectivity",
                "off-1h",
                "timeout",
                "off-future",
                "off-unknown"
            ]
        );
        assert!(offline.contains(
            "<td><small>offline since <span class=\"t\">2026-11-30</span> <span class=\"t\">11:00 UTC</span></small></td>"
        ));
        assert!(offline.contains(
            "7 d 2 h<br><small>offline since <span class=\"t\">2026-11-23</span> <span class=\"t\">08:00 UTC</span></small>"
        ));
        assert!(offline.contains("1 min<br><small>heartbeat timed out since"));
        assert!(offline.contains("unknown<br><small>heartbeat unknown</small>"));
        // Links to the device dashboard, relative, and the fleet under the name.
        assert!(offline.contains(
            "<a href=\"grafana/d/balena-device?var-device=00000000000000000000000000000003\">off-week</a><br><small>o/f</small>"
        ));

        let failing = section(&html, "failing");
        assert_eq!(names(failing), ["crashing"]);
        assert!(
            failing.contains("a: exited<br>b: Dead<br>d: restarting<br><small>and 1 more</small>"),
            "{failing}"
        );
        assert_eq!(names(section(&html, "undervolted")), ["warm"]);
        let hot = section(&html, "hot");
        assert_eq!(names(hot), ["hottest", "warm"]);
        assert!(hot.contains("<td>92 °C</td>") && hot.contains("<td>81 °C</td>"));
        let rejected = section(&html, "update-failed");
        assert_eq!(names(rejected), ["rejected"]);
        assert!(rejected.contains(
            "rejected<br><small>since <span class=\"t\">2026-11-30</span> <span class=\"t\">09:00 UTC</span></small>"
        ));
        assert_eq!(section(&html, "updating"), "");
        assert!(!html.contains("None: every device"));

        // A healthy fleet: no lists, and a sentence that says so.
        let html = html_of(
            Some(&snapshot(vec![fleet("o/f", vec![device(1, "ok")])])),
            &report(),
        );
        assert!(html.contains("None: every device is online"));
        assert!(!html.contains("<section"));
    }

    #[test]
    fn everything_is_escaped_and_clipped() {
        let evil = "<script>alert('x')</script>&\"";
        let mut d = device(1, evil);
        d.uuid = "\"><script>&x=1 é".into();
        d.online = false;
        d.status = evil.into();
        d.undervolted = Some(true);
        d.services = vec![service(evil, "exited")];
        d.update_status = "rejected".into();
        let mut f = fleet("o/x", vec![d]);
        f.name = evil.into();
        f.slug = evil.into();
        let mut report = report();
        report.last_error = Some(format!("HTTP 503 & more {evil}"));
        report.api_url = format!("https://x/{evil}");
        let html = html_of(Some(&snapshot(vec![f])), &report);
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("'x'"));
        let escaped = "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;";
        assert!(html.contains(&format!("<td>{escaped}</td><td>{escaped}</td><td>1</td>")));
        assert!(html.contains(&format!("Last error: HTTP 503 &amp; more {escaped}</p>")));
        assert!(html.contains(&format!("<code>https://x/{escaped}</code>")));
        assert!(html.contains(&format!("{escaped}: exited")));
        assert!(
            html.contains("var-device=%22%3E%3Cscript%3E%26x%3D1%20%C3%A9\">"),
            "{html}"
        );
        // Long texts are clipped.
        let mut d = device(2, &"d".repeat(10_000));
        d.status = "disconnected".into();
        let mut f = fleet("o/y", vec![d]);
        f.name = "n".repeat(10_000).into();
        let mut report = super::tests::report();
        report.last_error = Some("e".repeat(100_000));
        let html = html_of(Some(&snapshot(vec![f])), &report);
        assert!(html.contains(&format!("<td>{}…</td>", "n".repeat(NAME_CHARS))));
        assert!(html.contains(&format!(">{}…</a>", "d".repeat(NAME_CHARS))));
        assert!(html.contains(&format!("Last error: {}…</p>", "e".repeat(ERROR_CHARS))));
        assert!(html.len() < 20_000, "{}", html.len());
    }

    #[test]
    fn devices_link_to_the_balena_dashboard_when_there_is_one() {
        let mut d = device(1, "off");
        d.status = "disconnected".into();
        let mut odd = device(2, "odd");
        (odd.status, odd.uuid) = ("disconnected".into(), "a/b c\"<".into());
        let s = snapshot(vec![fleet("o/f", vec![d, odd])]);
        let dashboard = Some("https://dash.example.com/");
        let html = render(Some(&s), &report(), dashboard, &Alerts::NotConfigured);
        let offline = section(&html, "offline");
        assert!(offline.contains(
            "<a href=\"grafana/d/balena-device?var-device=00000000000000000000000000000001\">off\
             </a><br><small>o/f · <a href=\"https://dash.example.com/devices/\
             00000000000000000000000000000001/summary\" rel=\"noreferrer\">balena dashboard</a>\
             </small>"
        ), "{offline}");
        assert!(
            offline.contains("/devices/a%2Fb%20c%22%3C/summary\""),
            "{offline}"
        );
        // Without a dashboard, no link.
        let html = html_of(Some(&s), &report());
        assert!(!html.contains("balena dashboard</a>") && !html.contains("/summary"));
    }

    #[test]
    fn alerts_are_listed_by_severity_and_escaped() {
        let evil = "<script>alert('x')</script>&\"";
        let at = |s: u64| Some(UNIX_EPOCH + Duration::from_secs(s));
        let alerts = vec![
            Alert {
                name: "FleetDevicesOffline".into(),
                severity: "critical".into(),
                fleet_slug: "o/f".into(),
                summary: "40% of fleet f is offline".into(),
                starts_at: at(NOW - 3_600),
                ..Alert::default()
            },
            Alert {
                name: evil.into(),
                severity: "warning".into(),
                fleet_slug: evil.into(),
                device: evil.into(),
                summary: evil.into(),
                starts_at: None,
            },
        ];
        let firing = Alerts::Firing {
            alerts: alerts.clone(),
            total: 2,
            at: UNIX_EPOCH,
        };
        let html = render(None, &report(), None, &firing);
        assert!(!html.contains("<script"), "{html}");
        let escaped = "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;";
        assert!(
            html.contains("<h2 id=\"alerts\">Alerts firing (2)</h2>"),
            "{html}"
        );
        assert!(
            html.contains(
                "<tr class=\"bad\"><td><span class=\"sev\">Fleet<wbr>Devices<wbr>Offline</span><br><small>\
             critical since <span class=\"t\">2026-11-30</span> <span class=\"t\">09:00 UTC</span>\
             </small></td><td>40% of fleet f is offline<br><small>o/f</small></td></tr>"
            ),
            "{html}"
        );
        assert!(
            html.contains(&format!(
                "<tr class=\"warn\"><td><span class=\"sev\">{escaped}</span><br><small>warning\
             </small></td><td>{escaped}<br><small>{escaped} · {escaped}</small></td></tr>"
            )),
            "{html}"
        );
        // The alerts go between the crawl report and the fleets.
        let s = snapshot(vec![fleet("o/f", vec![device(1, "ok")])]);
        let html = render(Some(&s), &report(), None, &firing);
        let (a, f) = (
            html.find("id=\"alerts\"").unwrap(),
            html.find("id=\"fleets\"").unwrap(),
        );
        assert!(html.find("Last crawl").unwrap() < a && a < f);
        // More than shown: a count of the rest.
        let many = Alerts::Firing {
            alerts: vec![alerts[0].clone(); ALERTS + 5],
            total: ALERTS + 20,
            at: UNIX_EPOCH,
        };
        let html = alerts_part(&many);
        assert_eq!(html.matches("<tr class=").count(), ALERTS);
        assert!(html.contains("And 20 more."), "{html}");
        // None firing, not configured, waiting, unreachable.
        let none = Alerts::Firing {
            alerts: vec![],
            total: 0,
            at: UNIX_EPOCH,
        };
        assert!(alerts_part(&none).contains("Alerts firing (0)</h2>\n<p class=\"good\">None"));
        assert!(alerts_part(&Alerts::NotConfigured)
            .contains("Not configured: set <code>ALERTMANAGER_URL</code>"));
        assert!(alerts_part(&Alerts::Waiting).contains("first answer"));
        let down = alerts_part(&Alerts::Unreachable {
            since: UNIX_EPOCH + Duration::from_secs(NOW),
            error: format!("connection refused {evil}"),
        });
        assert!(
            down.contains(&format!(
            "<p class=\"err\">Alertmanager unreachable since <span class=\"t\">2026-11-30</span> \
             <span class=\"t\">10:00 UTC</span>: connection refused {escaped}</p>"
        )),
            "{down}"
        );
    }

    #[test]
    fn the_page_refreshes_at_the_crawl_interval() {
        let mut report = report();
        for (interval, refresh) in [(60.0, 60), (0.5, 10), (9.6, 10), (12.4, 12), (300.0, 300)] {
            report.interval = Duration::from_secs_f64(interval);
            let html = html_of(None, &report);
            assert!(
                html.contains(&format!(
                    "<meta http-equiv=\"refresh\" content=\"{refresh}\">"
                )),
                "{interval}"
            );
        }
        assert!(html_of(None, &report).contains("<title>balena fleet monitor</title>"));
        assert!(html_of(None, &report).contains("<h1>balena fleet monitor</h1>"));
    }

    #[test]
    fn crawl_report_version_and_links() {
        let mut report = report();
        report.last_attempt = Some(UNIX_EPOCH);
        report.last_success = None;
        report.last_error = Some("HTTP 503".into());
        let html = html_of(None, &report);
        assert!(html
            .contains("Last crawl: <span class=\"t\">1970-01-01T00:00:00Z</span> <span class=\"t\">(took 0.25 s)</span>"));
        assert!(html.contains("Last successful crawl: never"));
        assert!(html.contains("<p class=\"err\">Last error: HTTP 503</p>"));
        assert!(html.contains(concat!("Version ", env!("CARGO_PKG_VERSION"))));
        assert!(html.contains("<meta name=\"viewport\""));
        for href in [
            "grafana/d/balena-fleets",
            "grafana/d/balena-services",
            "grafana/d/balena-exporter",
            "metrics",
            "sd",
            "-/ready",
            "-/healthy",
        ] {
            assert!(html.contains(&format!("<a href=\"{href}\">")), "{href}");
        }
        assert!(!html.contains("href=\"/"), "links are relative");
        // With data, a failed crawl says the data is older.
        let s = snapshot(vec![fleet("o/f", vec![device(1, "ok")])]);
        report.last_success = Some(UNIX_EPOCH + Duration::from_secs(NOW));
        assert!(html_of(Some(&s), &report)
            .contains("The data below is from the last successful crawl."));
    }

    #[test]
    fn before_the_first_crawl() {
        let report = CrawlReport {
            api_url: "u".into(),
            ..CrawlReport::default()
        };
        let html = html_of(None, &report);
        assert!(html.contains("Waiting for the first successful crawl."));
        assert!(html.contains("Last crawl: never<br>Last successful crawl: never"));
        assert!(!html.contains("Last error"));
        assert!(!html.contains("<table"));
        assert!(html.ends_with("</body></html>\n"));
    }

    #[test]
    fn spans() {
        assert_eq!(span(-5.0), "under a minute");
        assert_eq!(span(59.0), "under a minute");
        assert_eq!(span(61.0), "1 min");
        assert_eq!(span(3.0 * 3600.0 + 120.0), "3 h 2 min");
        assert_eq!(span(2.0 * 86400.0 + 3.0 * 3600.0 + 59.0), "2 d 3 h");
    }

    #[test]
    fn top_keeps_the_first_by_key() {
        let d = Device::default();
        let mut top = Top::new(3);
        for k in [9, 4, 7, 1, 8, 2, 6, 3, 5, 0] {
            top.push(k, 0, &d);
        }
        top.finish();
        assert_eq!(top.total, 10);
        assert_eq!(top.items.iter().map(|i| i.0).collect::<Vec<_>>(), [0, 1, 2]);
        let mut none = Top::new(0);
        none.push(1, 0, &d);
        none.finish();
        assert_eq!((none.total, none.items.len()), (1, 0));
    }

    /// 100,000 devices in 1,000 fleets, a tenth offline, and services failing, undervoltage,
    /// heat, rejected updates and updates under way here and there: the page stays small.
    #[test]
    fn a_large_account_renders_a_small_page() {
        let now = NOW as f64;
        let fleets: Vec<Fleet> = (0..1_000u64)
            .map(|f| {
                let devices = (0..100u64)
                    .map(|i| {
                        let id = f * 100 + i;
                        let mut d = device(id, &format!("device-{id:06}"));
                        d.on_target_release = Some(id % 7 != 0);
                        if id % 10 == 3 {
                            (d.online, d.heartbeat) = (false, "offline".into());
                            d.status = "disconnected".into();
                            d.heartbeat_changed_seconds = Some(now - id as f64);
                        }
                        if id % 50 == 1 {
                            d.services = vec![service("main", "exited"), service("b", "Running")];
                        }
                        d.undervolted = Some(id % 40 == 2);
                        d.temperature_celsius = Some(40.0 + (id % 47) as f64);
                        if id % 30 == 4 {
                            d.update_status = "rejected".into();
                        }
                        if id % 20 == 5 {
                            d.update_status = "downloading".into();
                            d.update_progress = Some(0.5);
                        }
                        d
                    })
                    .collect();
                fleet(&format!("org/fleet-{f:04}"), devices)
            })
            .collect();
        let s = snapshot(fleets);
        assert_eq!(s.device_count(), 100_000);
        let started = std::time::Instant::now();
        let html = html_of(Some(&s), &report());
        let took = started.elapsed();
        eprintln!(
            "status page at 100,000 devices in 1,000 fleets: {} bytes, rendered in {:.1} ms",
            html.len(),
            took.as_secs_f64() * 1e3
        );
        assert!(html.len() < 64 * 1024, "{} bytes", html.len());
        assert_eq!(html.matches("\"><td>fleet-").count(), FLEETS);
        assert!(html.contains("And 900 more fleets: the 100 largest are shown."));
        assert!(html.contains(
            "<th>All 1000 fleets</th><td></td><td>100000</td><td>100000</td><td>10000</td>"
        ));
        assert!(html.contains("<h3>Offline (10000)</h3>"));
        assert!(html.contains("<p class=\"muted\">And 9980 more.</p>"));
        // The longest offline are the ones with the largest ids.
        assert_eq!(names(section(&html, "offline"))[0], "device-099993");
        for (id, total) in [
            ("failing", 2_000),
            ("undervolted", 2_500),
            ("update-failed", 3_334),
            ("updating", 5_000),
        ] {
            let part = section(&html, id);
            assert!(part.contains(&format!("({total})</h3>")), "{id}");
            assert_eq!(names(part).len(), DEVICES, "{id}");
        }
        // Hot: above 80 °C are 81 to 86 °C; the hottest first.
        assert!(section(&html, "hot").contains("<td>86 °C</td>"));
    }
}
