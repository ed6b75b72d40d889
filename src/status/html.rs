//! The status page's HTML: the page around the crawl's part, the alerts section, the fleets
//! table and the lists of devices that need attention (a table of sections). Every text from
//! the API or the configuration is HTML-escaped, and put in links percent-encoded; links are
//! relative, so that the page works under a public URL with a path.

use std::borrow::Cow;
use std::cmp::Reverse;
use std::fmt::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::survey::{valid_time, Listed, Survey};
use super::{CrawlReport, ALERTS, FLEETS, FLEET_OFFLINE_RATIO, HOT_CELSIUS};
use crate::alerts::{Alert, Alerts};
use crate::snapshot::{by_slug, Device, Fleet, Tally};

/// Failing services named at most per device.
const SERVICES_PER_DEVICE: usize = 3;
/// Characters shown at most of a name (fleet, slug, device, service, status).
pub(super) const NAME_CHARS: usize = 64;
/// Characters shown at most of the last error and the API URL.
pub(super) const ERROR_CHARS: usize = 500;
/// Bytes of a device uuid put in a link at most (balena's are 32 or 62).
const UUID_BYTES: usize = 128;
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

pub(super) fn fleets_table(
    html: &mut String,
    fleets: &[Fleet],
    tallies: &[Tally],
    survey: &Survey,
) {
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
    let shown = shown(fleets, &rows);
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
    legend(html);
}

/// The indexes of the fleets shown, in slug order: all of them, or the `FLEETS` largest.
fn shown(fleets: &[Fleet], rows: &[Row]) -> Vec<usize> {
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
    shown
}

/// What the fleet table's words and colours mean.
fn legend(html: &mut String) {
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

/// One list of devices that need attention: its anchor, heading, what it means, its detail
/// column and how a device's detail is written (as of the crawl's time).
struct Section<'a> {
    id: &'static str,
    title: &'static str,
    about: Cow<'static, str>,
    column: &'static str,
    devices: Listed<'a>,
    detail: fn(&mut String, &Device, f64),
}

/// The lists of devices that need attention, in the order shown.
fn sections(survey: &Survey) -> [Section<'_>; 5] {
    [
        Section {
            id: "offline",
            title: "Offline",
            about: "Disconnected: neither heartbeat nor VPN; the longest first. Deactivated and \
                    never-connected devices are never offline."
                .into(),
            column: "Offline for",
            devices: survey.offline.listed(),
            detail: offline_detail,
        },
        Section {
            id: "failing",
            title: "Failing services",
            about: "A service exited (unless its restart policy is no or on-failure), is dead or \
                    restarting."
                .into(),
            column: "Services",
            devices: survey.failing.listed(),
            detail: failing_detail,
        },
        Section {
            id: "undervolted",
            title: "Undervolted",
            about: "The supervisor reports under-voltage: a weak power supply, which risks SD card \
                    corruption."
                .into(),
            column: "Status",
            devices: survey.undervolted.listed(),
            detail: |html, d, _| push_text(html, &d.status, NAME_CHARS),
        },
        Section {
            id: "hot",
            title: "Hot",
            about: format!(
                "CPU temperature above {HOT_CELSIUS} °C, where a Raspberry Pi throttles; the hottest first."
            )
            .into(),
            column: "Temperature",
            devices: survey.hot.listed(),
            detail: |html, d, _| {
                let _ = write!(html, "{:.0} °C", d.temperature_celsius.unwrap_or(f64::NAN));
            },
        },
        Section {
            id: "update-failed",
            title: "Update rejected or aborted",
            about: "The device's last update did not happen.".into(),
            column: "Update",
            devices: survey.update_failed.listed(),
            detail: update_failed_detail,
        },
    ]
}

/// Devices being updated: listed after those that need attention, and no cause for it.
fn updating(survey: &Survey) -> Section<'_> {
    Section {
        id: "updating",
        title: "Updating",
        about: "Devices downloading, downloaded or applying changes.".into(),
        column: "Update",
        devices: survey.updating.listed(),
        detail: |html, d, _| {
            push_text(html, &d.update_status, NAME_CHARS);
            if let Some(p) = d.update_progress {
                let _ = write!(html, " {:.0} %", p * 100.0);
            }
        },
    }
}

/// The devices that need attention, list by list (or a sentence that none does), then the
/// devices updating.
pub(super) fn attention(
    html: &mut String,
    fleets: &[Fleet],
    survey: &Survey,
    now: f64,
    dashboard: Option<&str>,
) {
    let links = &Links { fleets, dashboard };
    html.push_str("<h2 id=\"attention\">Devices that need attention</h2>\n");
    let mut any = false;
    for section in sections(survey) {
        any |= list(html, links, &section, now);
    }
    if !any {
        html.push_str(
            "<p>None: every device is online, without failing services, \
                       under-voltage, heat or a failed update.</p>\n",
        );
    }
    list(html, links, &updating(survey), now);
}

fn offline_detail(html: &mut String, d: &Device, now: f64) {
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
}

fn failing_detail(html: &mut String, d: &Device, _now: f64) {
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
}

fn update_failed_detail(html: &mut String, d: &Device, _now: f64) {
    push_text(html, &d.update_status, NAME_CHARS);
    if let Some(s) = d.update_status_changed_seconds.filter(|s| valid_time(*s)) {
        html.push_str("<br><small>since ");
        push_time(html, s);
        html.push_str("</small>");
    }
}

/// One list of devices with a heading and a count; nothing when it is empty. Returns whether
/// it had devices.
fn list(html: &mut String, links: &Links, section: &Section, now: f64) -> bool {
    let (total, items) = (section.devices.total, &section.devices.items);
    if total == 0 {
        return false;
    }
    let _ = write!(
        html,
        "<section id=\"{}\"><h3>{} ({total})</h3>\n<p class=\"muted\">{}</p>\n\
         <div class=\"scroll\"><table class=\"list\"><thead><tr><th>Device</th><th>{}</th></tr></thead>\
         <tbody>\n",
        section.id, section.title, section.about, section.column
    );
    for (fleet, device) in items {
        let Some(fleet) = links.fleets.get(*fleet) else {
            continue;
        };
        device_cell(html, links, fleet, device);
        (section.detail)(html, device, now);
        html.push_str("</td></tr>\n");
    }
    html.push_str("</tbody></table></div>\n");
    if total > items.len() {
        let _ = writeln!(
            html,
            "<p class=\"muted\">And {} more.</p>",
            total - items.len()
        );
    }
    html.push_str("</section>\n");
    true
}

/// A device row up to its detail: its name linked to its Grafana dashboard, its fleet, and
/// its balena dashboard page if there is one.
fn device_cell(html: &mut String, links: &Links, fleet: &Fleet, device: &Device) {
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
}

/// `seconds` as days and hours, hours and minutes, or minutes.
pub(super) fn span(seconds: f64) -> String {
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
