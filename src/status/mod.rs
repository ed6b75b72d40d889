//! The HTML status page at `/`, the exporter's front door: the alerts firing now (from
//! `alerts`); per fleet the devices expected online, offline, updating, the failing services
//! and the rollout, coloured by severity; the devices that need attention (offline the
//! longest, failing services, undervolted, hot, update rejected), each linked to its Grafana
//! dashboard and its balena dashboard page; links to the Grafana dashboards and the other
//! endpoints; the version and the last crawl. Every count and list uses `definitions` (through
//! `snapshot::Device` and `snapshot::Tally`), as the metric families and recording rules do.
//!
//! Server-rendered, without JavaScript, readable on a phone, refreshed by the browser at the
//! crawl interval. The fleets part is rendered once per crawl (`render::Rendering`), on the
//! blocking pool, in one pass over the devices (`survey`), as HTML (`html`); its size is bounded whatever the account's:
//! at most `FLEETS` fleets and `DEVICES` devices per list, with a count of the rest, and
//! names and errors clipped. Every text from the API or the configuration is HTML-escaped,
//! and put in links percent-encoded. Links are relative, so that the page works under a
//! public URL with a path.

mod html;
mod survey;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use html::{alerts_part, page};
pub use survey::Survey;

use crate::snapshot::{Fleet, Tally};

/// Fleets shown at most (the largest ones, in slug order); a total row counts them all.
pub const FLEETS: usize = 100;
/// Devices shown at most in each list.
pub const DEVICES: usize = 20;
/// A device hotter than this is listed (the `HighTemperature` alert's threshold: Raspberry Pi
/// firmware throttles the CPU from about 80 °C).
pub const HOT_CELSIUS: f64 = 80.0;
/// Above this share of its devices expected online offline, a fleet is red: the threshold of
/// the `FleetDevicesOffline` alert (`fleet:balena_devices_offline:ratio > 0.2` in
/// prometheus/rules/balena.yml).
pub const FLEET_OFFLINE_RATIO: f64 = 0.2;
/// Alerts listed at most.
pub const ALERTS: usize = 30;

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
    html::fleets_table(&mut html, fleets, tallies, &survey);
    html::attention(&mut html, fleets, &survey, now, dashboard);
    html
}

#[cfg(test)]
mod tests {
    use super::html::{span, ERROR_CHARS, NAME_CHARS};
    use super::survey::Top;
    use super::*;
    use crate::alerts::{Alert, Alerts};
    use crate::config::SdMode;
    use crate::render::{testing, Settings};
    use crate::snapshot::{Device, Service};

    type Account = Vec<(Fleet, Vec<Device>)>;

    /// The whole page as the handler serves it after a crawl of `account` (None: before the
    /// first) that ended at `NOW`, with device links to `dashboard` and `alerts`.
    fn render(
        account: Option<&Account>,
        report: &CrawlReport,
        dashboard: Option<&str>,
        alerts: &Alerts,
    ) -> String {
        let settings = Settings {
            dashboard: dashboard.map(Into::into),
            ..testing::settings(testing::sd_config(SdMode::Lan { port: 80 }))
        };
        let part = account.map(|a| testing::render(&settings, a, NOW).fleets_html);
        let (head, rest) = page(report, part.as_deref());
        head + &alerts_part(alerts) + &rest
    }

    /// 2026-11-30T10:00:00Z: the last successful crawl of the tests.
    const NOW: u64 = 1_796_032_800;

    /// The whole page, without a balena dashboard or Alertmanager.
    fn html_of(account: Option<&Account>, report: &CrawlReport) -> String {
        render(account, report, None, &Alerts::NotConfigured)
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

    fn snapshot(fleets: Account) -> Account {
        fleets
    }

    fn fleet(slug: &str, devices: Vec<Device>) -> (Fleet, Vec<Device>) {
        let fleet = Fleet {
            name: slug.rsplit('/').next().unwrap_or(slug).into(),
            slug: slug.into(),
            target_release: "abc".into(),
            ..Fleet::default()
        };
        (fleet, devices)
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
        no_target.0.target_release = "".into();
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
        f.0.name = evil.into();
        f.0.slug = evil.into();
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
        f.0.name = "n".repeat(10_000).into();
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
        let fleets: Account = (0..1_000u64)
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
        assert_eq!(s.iter().map(|f| f.1.len()).sum::<usize>(), 100_000);
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
