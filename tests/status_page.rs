//! The status page at `/` with the fake API's sample account: what a user would check (a row
//! per fleet with the API's counts, the failing services with their device's name, the links
//! to the dashboards), then the page in a real browser on a phone-sized screen: Debian's
//! `chromium`, headless, for the text as the browser sees it, the layout (nothing wider than
//! the screen) and a screenshot, kept in `target/test-artifacts/status-page.png`.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::exporter::Exporter;
use common::fake::{Account, FakeBalena};
use common::tools;

const TOKEN: &str = "sample-token";

/// The sample account, one crawl (the page stays as it is while the test reads it).
async fn started() -> (FakeBalena, Exporter) {
    let fake = FakeBalena::start(Account::sample()).await;
    let exporter = Exporter::start(
        &fake.url(),
        TOKEN,
        &[("CRAWL_INTERVAL", "60"), ("REQUEST_TIMEOUT", "5")],
    )
    .await;
    exporter.wait_ready().await;
    (fake, exporter)
}

/// The fleet rows the page must have, computed from the account as the fake serves it:
/// name, slug, devices online, devices, devices on their target release (the pinned release,
/// else the fleet's; "—" when there is none), devices updating.
fn expected_rows(account: &Account) -> Vec<String> {
    account
        .fleets
        .iter()
        .map(|f| {
            let devices: Vec<_> = account
                .devices
                .iter()
                .filter(|d| d.fleet_id == f.id)
                .collect();
            let online = devices.iter().filter(|d| d.is_online).count();
            let targets: Vec<_> = devices
                .iter()
                .map(|d| (d, d.pinned_release.as_ref().or(f.target_release.as_ref())))
                .collect();
            let on_target = targets
                .iter()
                .filter(|(d, t)| t.is_some() && d.running_release.as_ref() == *t)
                .count();
            let on_target = if f.target_release.is_none() && targets.iter().all(|t| t.1.is_none())
            {
                "—".to_string()
            } else {
                on_target.to_string()
            };
            let updating = devices
                .iter()
                .filter(|d| {
                    d.overall_status == "updating"
                        || matches!(
                            d.update_status.as_deref(),
                            Some("downloading" | "downloaded" | "applying changes")
                        )
                })
                .count();
            format!(
                "<tr><td>{}</td><td>{}</td><td>{online}</td><td>{}</td><td>{on_target}</td><td>{updating}</td></tr>",
                f.app_name,
                f.slug,
                devices.len()
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
            "<a href=\"grafana/d/balena-device?var-device={}\">{name}</a><br><small>acme/sensors</small></td><td>{service}</td>",
            device.uuid
        );
        assert!(failing.contains(&row), "no {row} in:\n{failing}");
    }
    assert!(
        failing.contains("<h3>Failing services (2)</h3>"),
        "{failing}"
    );
    // Offline: sensor-02 (offline since 2026-11-21T08:00:00Z, with its heartbeat) first, then
    // sensor-03 (heartbeat timed out, no time known); gw-02 is inactive, left out.
    let offline = section(&page, "offline");
    let (s2, s3) = (
        offline.find(">sensor-02</a>").expect("sensor-02 offline"),
        offline.find(">sensor-03</a>").expect("sensor-03 timed out"),
    );
    assert!(s2 < s3, "{offline}");
    assert!(
        offline.contains(
            "offline since <span class=\"t\">2026-11-21</span> <span class=\"t\">08:00 UTC</span>"
        ),
        "{offline}"
    );
    assert!(!offline.contains("gw-02"), "{offline}");
    assert!(section(&page, "undervolted").contains(">sensor-03</a>"));
    assert!(section(&page, "update-failed").contains(">sensor-02</a>"));
    let updating = section(&page, "updating");
    assert!(updating.contains(">sensor-03</a>") && updating.contains(">probe-02</a>"));

    for href in [
        "grafana/d/balena-fleets",
        "grafana/d/balena-services",
        "grafana/d/balena-exporter",
        "metrics",
        "-/ready",
    ] {
        assert!(page.contains(&format!("<a href=\"{href}\">")), "{href}");
    }
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
        .arg(format!("--window-size=390,{height}"))
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
    let _ = std::fs::remove_file(&screenshot);
    let _ = std::fs::remove_file(&whole);

    let (dom, layout) = {
        let (url, dir, page) = (url.clone(), dir.clone(), page.clone());
        let (screenshot, whole) = (screenshot.clone(), whole.clone());
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
            // And the whole page, for a person to look at.
            chromium(2400, &[format!("--screenshot={}", whole.display()), url]);
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
        "balena exporter",
        concat!("Version ", env!("CARGO_PKG_VERSION")),
        "Fleet Slug Online Devices On target Updating",
        "sensors acme/sensors 3 4 2 1",
        "Failing services (2)",
        "sensor-02 acme/sensors sensor-reader: exited",
        "sensor-04 acme/sensors sensor-reader: restarting",
        "Offline (2)",
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
    println!("screenshot: {}", screenshot.display());
    println!("whole page: {}", whole.display());
    exporter.stop().await.unwrap();
}
