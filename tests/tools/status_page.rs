//! The status page at `/` with the fake API's sample account: what a user would check (a row
//! per fleet with the API's counts, the failing services with their device's name, the links
//! to the dashboards and the balena dashboard, the alerts a fake Alertmanager fires), then the
//! page in a real browser on a phone-sized and a desktop screen: Debian's `chromium`,
//! headless, for the text as the browser sees it, the layout (nothing wider than the screen)
//! and screenshots, kept in `target/test-artifacts/status-page*.png`. Then one truth: per
//! fleet, the page's offline and updating counts equal the definitions computed from the
//! account's own rows, and the recording rules a real Prometheus evaluates.

use crate::common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use std::collections::HashMap;

use common::exporter::{start_ready, wait_for, Exporter};
use common::fake::{Account, Device, FakeBalena};
use common::prometheus::Prometheus;
use common::tools;
use warp::Filter;

const TOKEN: &str = "sample-token";
const DASHBOARD: &str = "https://dashboard.example.com";

/// Two alerts as Alertmanager's API v2 answers them: a critical one about a fleet and a
/// warning about a device.
const ALERTS: &str = r#"[
  {"labels": {"alertname": "DeviceOffline", "severity": "warning", "scope": "device",
              "fleet_slug": "acme/sensors", "device_name": "sensor-02", "device_uuid": "x"},
   "annotations": {"summary": "Device sensor-02 of fleet sensors is offline"},
   "startsAt": "2026-11-21T08:30:00.000Z", "endsAt": "2026-11-21T09:00:00.000Z",
   "updatedAt": "2026-11-21T08:30:00.000Z", "fingerprint": "a1", "receivers": [{"name": "default"}],
   "status": {"state": "active", "silencedBy": [], "inhibitedBy": []}},
  {"labels": {"alertname": "ServiceNotRunning", "severity": "critical", "scope": "service",
              "fleet_slug": "acme/sensors", "device_name": "sensor-04", "service_name": "sensor-reader"},
   "annotations": {"summary": "sensor-reader on sensor-04 is restarting <again> & again"},
   "startsAt": "2026-11-21T09:00:00.000Z", "endsAt": "2026-11-21T09:30:00.000Z",
   "updatedAt": "2026-11-21T09:00:00.000Z", "fingerprint": "b2", "receivers": [{"name": "default"}],
   "status": {"state": "active", "silencedBy": [], "inhibitedBy": []}}
]"#;

/// A fake Alertmanager on loopback, served under the app's `/alertmanager/` route prefix:
/// `GET /alertmanager/api/v2/alerts` answers `ALERTS`.
async fn fake_alertmanager() -> String {
    let route = warp::path!("alertmanager" / "api" / "v2" / "alerts")
        .and(warp::get())
        .map(|| warp::reply::with_header(ALERTS, "content-type", "application/json"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(warp::serve(route).incoming(listener).run());
    url
}

/// The sample account, one crawl (the page stays as it is while the test reads it), with
/// device links to `DASHBOARD`, and the alerts of a fake Alertmanager (once they show).
async fn started() -> (FakeBalena, Exporter) {
    let fake = FakeBalena::start(Account::sample()).await;
    let alertmanager = fake_alertmanager().await;
    let exporter = Exporter::ready_on(
        &fake,
        &[
            ("CRAWL_INTERVAL", "60"),
            ("REQUEST_TIMEOUT", "5"),
            ("BALENA_DASHBOARD_URL", DASHBOARD),
            ("ALERTMANAGER_URL", &alertmanager),
        ],
    )
    .await;
    wait_for("the alerts on the page", || async {
        exporter.get("/").await.1.contains("Alerts firing (2)")
    })
    .await;
    (fake, exporter)
}

/// Offline as `src/definitions.rs` defines it, from the account's own row: balena's
/// `disconnected` (`offline` on API v6).
fn offline(d: &Device) -> bool {
    matches!(d.overall_status.as_str(), "disconnected" | "offline")
}

/// Updating as defined: not inactive, and downloading, downloaded or applying changes; a
/// device without an update status is updating when `overall_status` says so.
fn updating(d: &Device) -> bool {
    d.overall_status != "inactive"
        && match d.update_status.as_deref() {
            Some(s) => matches!(s, "downloading" | "downloaded" | "applying changes"),
            None => d.overall_status == "updating",
        }
}

/// Expected online: neither inactive nor configuring.
fn expected_online(d: &Device) -> bool {
    !matches!(
        d.overall_status.as_str(),
        "inactive" | "configuring" | "post-provisioning"
    )
}

/// The fleet rows the page must have, computed from the account as the fake serves it, up to
/// the failing services: name, slug, devices, devices expected online, offline, updating.
fn expected_rows(account: &Account) -> Vec<String> {
    account
        .fleets
        .iter()
        .map(|f| {
            let devices = account.devices_of(f.id);
            let count = |f: fn(&Device) -> bool| devices.iter().filter(|d| f(d)).count();
            format!(
                "<td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>",
                f.app_name,
                f.slug,
                devices.len(),
                count(expected_online),
                count(offline),
                count(updating),
            )
        })
        .collect()
}

/// The part of the page from `<section id="{id}">` to its end.
fn section<'a>(html: &'a str, id: &str) -> &'a str {
    let start = html
        .find(&format!("<section id=\"{id}\">"))
        .unwrap_or_else(|| panic!("no section {id}:\n{html}"));
    let end = html[start..].find("</section>").unwrap() + start;
    &html[start..end]
}

#[tokio::test]
async fn the_page_shows_fleets_failing_services_and_links() {
    let (_fake, exporter) = started().await;
    let (status, page) = exporter.get("/").await;
    assert_eq!(status, 200);
    let account = Account::sample();

    for row in expected_rows(&account) {
        assert!(page.contains(&row), "no row {row}:\n{page}");
    }
    // The sample's failing services: sensor-02's sensor-reader exited, sensor-04's restarts.
    let failing = section(&page, "failing");
    for (name, service) in [
        ("sensor-02", "sensor-reader: exited"),
        ("sensor-04", "sensor-reader: restarting"),
    ] {
        let device = account
            .devices
            .iter()
            .find(|d| d.device_name == name)
            .unwrap();
        let row = format!(
            "<a href=\"grafana/d/balena-device?var-device={uuid}\">{name}</a><br><small>acme/sensors \
             · <a href=\"{DASHBOARD}/devices/{uuid}/summary\" rel=\"noreferrer\">balena dashboard</a>\
             </small></td><td>{service}</td>",
            uuid = device.uuid
        );
        assert!(failing.contains(&row), "no {row} in:\n{failing}");
    }
    assert!(
        failing.contains("<h3>Failing services (2)</h3>"),
        "{failing}"
    );
    // Offline: sensor-02 (disconnected since 2026-11-21T08:00:00Z, with its heartbeat).
    // sensor-03's heartbeat timed out, but its VPN is up (reduced-functionality): not offline.
    // gw-02 is inactive and gw-01 never connected: never offline.
    let offline = section(&page, "offline");
    assert!(offline.contains("<h3>Offline (1)</h3>"), "{offline}");
    assert!(offline.contains(">sensor-02</a>"), "{offline}");
    assert!(
        offline.contains(
            "offline since <span class=\"t\">2026-11-21</span> <span class=\"t\">08:00 UTC</span>"
        ),
        "{offline}"
    );
    for name in ["sensor-03", "gw-01", "gw-02"] {
        assert!(
            !offline.contains(&format!(">{name}</a>")),
            "{name}: {offline}"
        );
    }
    // The alerts, the critical first, escaped.
    let alerts =
        &page[page.find("<h2 id=\"alerts\">").unwrap()..page.find("<h2 id=\"fleets\">").unwrap()];
    let (critical, warning) = (
        alerts
            .find(">Service<wbr>Not<wbr>Running<")
            .expect("critical alert"),
        alerts.find(">Device<wbr>Offline<").expect("warning alert"),
    );
    assert!(critical < warning, "{alerts}");
    assert!(
        alerts.contains("restarting &lt;again&gt; &amp; again"),
        "{alerts}"
    );
    assert!(alerts.contains("<tr class=\"bad\">"), "{alerts}");
    // Refreshed at the crawl interval; the fleet rows carry their severity.
    assert!(page.contains("<meta http-equiv=\"refresh\" content=\"60\">"));
    assert!(
        page.contains("<tr class=\"bad\"><td>sensors</td>"),
        "1 of 4 offline is 25 %"
    );
    assert!(section(&page, "undervolted").contains(">sensor-03</a>"));
    assert!(section(&page, "update-failed").contains(">sensor-02</a>"));
    let updating = section(&page, "updating");
    assert!(updating.contains(">sensor-03</a>") && updating.contains(">probe-02</a>"));

    // Every link is relative (status/mod.rs tests each of them): the page works under a path.
    assert!(
        page.contains("<a href=\"grafana/d/balena-fleets\">"),
        "{page}"
    );
    assert!(!page.contains("href=\"/"), "relative links only");
    assert!(page.contains(concat!("Version ", env!("CARGO_PKG_VERSION"))));
    assert!(page.contains("<meta name=\"viewport\""));
    assert!(
        !page.to_ascii_lowercase().contains("<script"),
        "no JavaScript"
    );
    // Tag values (which need escaping) are not on the page; names are, escaped.
    assert!(!page.contains("O'Brien"));
    exporter.stop().await.unwrap();
}

/// Where test artifacts go: `target/test-artifacts` (or under `CARGO_TARGET_DIR`).
fn artifacts() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let dir = target.join("test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs headless `chromium` on a window as wide as a phone (390 CSS pixels; 844 high is a
/// phone's screen) with `args` and a fresh profile, for up to 90 s; returns its stdout.
fn chromium(height: u32, args: &[String]) -> String {
    chromium_sized(390, height, args)
}

/// `chromium` on a window `width` × `height`.
fn chromium_sized(width: u32, height: u32, args: &[String]) -> String {
    let profile = tempfile::tempdir().unwrap();
    let mut child = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--window-size={width},{height}"))
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("chromium (Debian package chromium)");
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut out = Vec::new();
            let _ = pipe.read_to_end(&mut out);
            String::from_utf8_lossy(&out).into_owned()
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium {args:?} did not finish within 90 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let (stdout, stderr) = (stdout.join().unwrap(), stderr.join().unwrap());
    assert!(status.success(), "chromium {args:?}: {status}\n{stderr}");
    stdout
}

/// The text of an HTML document: tags dropped, a few entities decoded, spaces collapsed.
fn text(html: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => {
                in_tag = true;
                out.push(' ');
            }
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    let out = out
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&");
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Width and height of a PNG, from its IHDR chunk.
fn png_size(png: &[u8]) -> (u32, u32) {
    assert!(png.len() > 24, "not a PNG: {} bytes", png.len());
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "PNG signature");
    assert_eq!(&png[12..16], b"IHDR");
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    (be(&png[16..20]), be(&png[20..24]))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_phone_browser_renders_the_page() {
    if !tools::require(&["chromium"]) {
        return;
    }
    let (_fake, exporter) = started().await;
    let (status, page) = exporter.get("/").await;
    assert_eq!(status, 200);
    let url = format!("{}/", exporter.url);
    let dir = artifacts();
    let screenshot = dir.join("status-page.png");
    let whole = dir.join("status-page-whole.png");
    let desktop = dir.join("status-page-desktop.png");
    for png in [&screenshot, &whole, &desktop] {
        let _ = std::fs::remove_file(png);
    }

    let (dom, layout) = {
        let (url, dir, page) = (url.clone(), dir.clone(), page.clone());
        let (screenshot, whole, desktop) = (screenshot.clone(), whole.clone(), desktop.clone());
        tokio::task::spawn_blocking(move || {
            // The page as the browser parsed it.
            let dom = chromium(844, &["--dump-dom".into(), url.clone()]);
            // A screenshot of the first screen.
            chromium(
                844,
                &[
                    format!("--screenshot={}", screenshot.display()),
                    url.clone(),
                ],
            );
            // And the whole page, for a person to look at, on a phone and on a desktop.
            chromium(
                2400,
                &[format!("--screenshot={}", whole.display()), url.clone()],
            );
            chromium_sized(
                1280,
                1600,
                &[format!("--screenshot={}", desktop.display()), url],
            );
            // The layout: the same page in a phone-sized frame (a headless window is at least
            // 500 pixels wide) of a page whose script writes the widths the browser laid out.
            let probe = format!(
                "<!DOCTYPE html><html><body style=\"margin:0\"><iframe id=\"phone\" \
                 style=\"width:390px;height:844px;border:0\" srcdoc=\"{}\"></iframe><script>\
                 onload=function(){{var w=document.getElementById('phone').contentWindow,\
                 d=w.document,o=[].filter.call(d.querySelectorAll('.scroll'),\
                 function(e){{return e.scrollWidth>e.clientWidth}}).length;\
                 document.body.insertAdjacentHTML('beforeend','<p id=\"layout\">page '+\
                 d.documentElement.scrollWidth+' viewport '+w.innerWidth+' overflowing '+o+\
                 ' fleet-header '+w.getComputedStyle(d.querySelector('.fleets thead')).display+\
                 '</p>')}}</script></body></html>",
                page.replace('&', "&amp;").replace('"', "&quot;")
            );
            let probe_path = dir.join("status-page-layout.html");
            std::fs::write(&probe_path, probe).unwrap();
            let layout = chromium(
                844,
                &[
                    "--dump-dom".into(),
                    format!("file://{}", probe_path.display()),
                ],
            );
            (dom, layout)
        })
        .await
        .unwrap()
    };

    // The text as the browser sees it.
    let seen = text(&dom);
    let account = Account::sample();
    for f in &account.fleets {
        assert!(seen.contains(&f.slug), "{} not in {seen}", f.slug);
    }
    for needle in [
        "balena fleet monitor",
        concat!("Version ", env!("CARGO_PKG_VERSION")),
        "Alerts firing (2)",
        "Service Not Running critical since 2026-11-21 09:00 UTC sensor-reader on sensor-04 is \
         restarting <again> & again acme/sensors · sensor-04",
        "Fleet Slug Devices Expected online Offline Updating Failing services On target",
        "sensors acme/sensors 4 4 1 1 2 2",
        "Failing services (2)",
        "sensor-02 acme/sensors · balena dashboard sensor-reader: exited",
        "sensor-04 acme/sensors · balena dashboard sensor-reader: restarting",
        "Offline (1)",
        "Undervolted (1)",
        "Dashboards: Fleets · Services · Exporter",
        "Last successful crawl: 20",
    ] {
        assert!(seen.contains(needle), "{needle:?} not in {seen}");
    }
    // The browser kept every link and row of the page (nothing was lost to a parse error).
    assert_eq!(
        dom.matches("<a href=").count(),
        page.matches("<a href=").count()
    );
    assert_eq!(dom.matches("<tr>").count(), page.matches("<tr>").count());

    // Nothing is wider than the phone's screen: not the page, not a table. (The last
    // paragraph: the first match is in the script.)
    let start = layout
        .rfind("<p id=\"layout\">")
        .expect("the layout probe ran");
    let line = &layout[start + 15..];
    let line = &line[..line.find('<').unwrap()];
    let numbers: Vec<u32> = line.split(' ').filter_map(|w| w.parse().ok()).collect();
    let [page_width, viewport, overflowing] = numbers[..] else {
        panic!("layout: {line}");
    };
    assert_eq!(viewport, 390, "{line}");
    assert!(page_width <= viewport, "the page scrolls sideways: {line}");
    assert_eq!(overflowing, 0, "a table is wider than the screen: {line}");
    // On a phone, fleets are short paragraphs, without the table's header.
    assert!(line.ends_with("fleet-header none"), "{line}");

    let png = std::fs::read(&screenshot).expect("chromium wrote the screenshot");
    assert_eq!(png_size(&png), (390, 844));
    // A blank 390 × 844 PNG is about 3 KB; text and tables make tens of KB.
    assert!(png.len() > 20_000, "screenshot of {} bytes", png.len());
    assert_eq!(png_size(&std::fs::read(&whole).unwrap()), (390, 2400));
    assert_eq!(png_size(&std::fs::read(&desktop).unwrap()), (1280, 1600));
    println!("screenshot: {}", screenshot.display());
    println!("whole page: {}", whole.display());
    println!("desktop: {}", desktop.display());
    exporter.stop().await.unwrap();
}

#[tokio::test]
async fn an_alertmanager_that_is_down_leaves_a_note_and_the_page() {
    let fake = FakeBalena::start(Account::sample()).await;
    let refused = common::net::free_port();
    let exporter = Exporter::ready_on(
        &fake,
        &[("ALERTMANAGER_URL", &format!("http://127.0.0.1:{refused}"))],
    )
    .await;
    let note = "<p class=\"err\">Alertmanager unreachable since <span class=\"t\">";
    exporter.wait_body("/", note).await;
    let (status, page) = exporter.get("/").await;
    assert_eq!(status, 200);
    assert!(page.contains("<h2 id=\"fleets\">Fleets</h2>"), "{page}");
    assert!(page.ends_with("</body></html>\n"));
    exporter.stop().await.unwrap();

    // Without ALERTMANAGER_URL the section says what to set.
    let exporter = Exporter::start(&fake.url(), TOKEN, &[]).await;
    let (_, page) = exporter.get("/").await;
    assert!(
        page.contains("Not configured: set <code>ALERTMANAGER_URL</code>"),
        "{page}"
    );
    exporter.stop().await.unwrap();
}

/// Per fleet, the page's cells after the name: slug → [slug, devices, expected online,
/// offline, updating, failing services, on target].
fn fleet_cells(page: &str) -> HashMap<String, Vec<String>> {
    let start = page
        .find("<table class=\"fleets\">")
        .expect("a fleets table");
    let table = &page[start..start + page[start..].find("</tbody>").unwrap()];
    table
        .split("<tr class=\"")
        .skip(1)
        .map(|row| {
            let cells: Vec<String> = row
                .split("<td>")
                .skip(2)
                .map(|c| c[..c.find("</td>").unwrap()].to_string())
                .collect();
            (cells[0].clone(), cells)
        })
        .collect()
}

/// One truth: per fleet, the status page's offline and updating counts equal (a) the
/// definitions computed from the fake account's own rows and (b) the recording rules
/// `fleet:balena_devices_offline:count` and `fleet:balena_devices_updating:count` that the
/// dashboards' stats read, evaluated by a real Prometheus with the shipped configuration.
#[tokio::test(flavor = "multi_thread")]
async fn offline_and_updating_are_one_number_on_the_page_and_in_prometheus() {
    if !tools::require(&["prometheus"]) {
        return;
    }
    let account = common::generate::account(6, 50);
    // The account has every case the definitions tell apart.
    let has = |what: &str, f: &dyn Fn(&Device) -> bool| {
        let n = account.devices.iter().filter(|d| f(d)).count();
        assert!(n > 0, "the generated account has no device {what}");
        n
    };
    let cases = [
        has("offline", &offline),
        has("updating", &updating),
        has("done while overall_status says updating", &|d| {
            d.update_status.as_deref() == Some("done") && d.overall_status == "updating"
        }),
        has("inactive", &|d| d.overall_status == "inactive"),
        has("configuring", &|d| {
            matches!(
                d.overall_status.as_str(),
                "configuring" | "post-provisioning"
            )
        }),
    ];
    let (_fake, exporter) = start_ready(
        account.clone(),
        &[("CRAWL_INTERVAL", "60"), ("REQUEST_TIMEOUT", "5")],
    )
    .await;
    let (_, page) = exporter.get("/").await;
    let cells = fleet_cells(&page);

    let prometheus = Prometheus::shipped(exporter.url.trim_start_matches("http://"));
    let rules = [
        "fleet:balena_devices_offline:count",
        "fleet:balena_devices_updating:count",
    ];
    for rule in rules {
        wait_for(&format!("{rule} for every fleet"), || async {
            prometheus.query(rule).await.len() == account.fleets.len()
        })
        .await;
    }
    let mut by_rule: Vec<HashMap<String, f64>> = Vec::new();
    for rule in rules {
        by_rule.push(
            prometheus
                .query(rule)
                .await
                .into_iter()
                .map(|(labels, v)| (labels["fleet_slug"].as_str().unwrap().to_string(), v))
                .collect(),
        );
    }
    let (mut offline_total, mut updating_total) = (0, 0);
    for f in &account.fleets {
        let devices = account.devices_of(f.id);
        let want_offline = devices.iter().filter(|d| offline(d)).count();
        let want_updating = devices.iter().filter(|d| updating(d)).count();
        let row = cells
            .get(&f.slug)
            .unwrap_or_else(|| panic!("no row for {}", f.slug));
        let page_offline: usize = row[3].parse().unwrap();
        let page_updating: usize = row[4].parse().unwrap();
        assert_eq!(page_offline, want_offline, "offline of {}", f.slug);
        assert_eq!(page_updating, want_updating, "updating of {}", f.slug);
        assert_eq!(
            by_rule[0][&f.slug], want_offline as f64,
            "{}: {}",
            rules[0], f.slug
        );
        assert_eq!(
            by_rule[1][&f.slug], want_updating as f64,
            "{}: {}",
            rules[1], f.slug
        );
        offline_total += want_offline;
        updating_total += want_updating;
    }
    println!(
        "{} fleets, {} devices: offline {offline_total}, updating {updating_total} on the page, \
         from the account's rows and in Prometheus alike (account: {} offline, {} updating, \
         {} done while overall_status says updating, {} inactive, {} configuring)",
        account.fleets.len(),
        account.devices.len(),
        cases[0],
        cases[1],
        cases[2],
        cases[3],
        cases[4]
    );
    exporter.stop().await.unwrap();
}
