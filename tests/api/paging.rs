//! Paging: every fleet and device is read, whatever the server does between and within
//! pages (a cap on `$top`, rows deleted and added while paging), in a number of requests that
//! does not grow with the number of fleets; a server that ignores the keyset filter fails the
//! crawl as `paging` and the last good data stays.

use crate::common;

use common::exporter::{start_ready, wait_for, Exporter};
use common::fake::{Account, Device, FakeBalena, Fault, Fleet, Recorded, Release};
use common::promtext::{family, value, Sample};

const TOKEN: &str = "sample-token";

fn fleet_value(samples: &[Sample], name: &str, slug: &str) -> Option<f64> {
    value(samples, name, &[("fleet_slug", slug)])
}

/// The uuids of `balena_device_info`, sorted.
fn exported_uuids(samples: &[Sample]) -> Vec<String> {
    let mut uuids: Vec<String> = family(samples, "balena_device_info")
        .iter()
        .map(|s| s.label("uuid").to_string())
        .collect();
    uuids.sort();
    uuids
}

/// `fleets` fleets sharing `devices` devices round-robin, with ids from 1.
fn generated(fleets: u64, devices: u64) -> Account {
    let mut account = Account {
        tokens: vec![TOKEN.into()],
        ..Account::default()
    };
    for id in 1..=fleets {
        account.fleets.push(Fleet {
            id,
            app_name: format!("fleet-{id}"),
            slug: format!("org/fleet-{id}"),
            organization: "org".into(),
            device_type: "raspberrypi4-64".into(),
            target_release: Some(Release {
                id: 1,
                commit: "c1".into(),
            }),
            is_of__class: "fleet".into(),
            tags: Vec::new(),
        });
    }
    for id in 1..=devices {
        account.devices.push(Device {
            id,
            uuid: format!("{id:032x}"),
            device_name: format!("device-{id}"),
            fleet_id: 1 + id % fleets,
            device_type: "raspberrypi4-64".into(),
            is_online: id % 3 != 0,
            api_heartbeat_state: "online".into(),
            overall_status: if id % 3 == 0 {
                "disconnected"
            } else {
                "operational"
            }
            .into(),
            running_release: Some(Release {
                id: 1 + id % 2,
                commit: format!("c{}", 1 + id % 2),
            }),
            ..Device::default()
        });
    }
    account
}

/// Requests of the first complete crawl: from the first whoami to the one before the next.
fn one_crawl(fake: &FakeBalena) -> Vec<Recorded> {
    let requests = fake.requests();
    let start = requests
        .iter()
        .position(|r| r.path == "/actor/v1/whoami")
        .unwrap();
    let end = requests[start + 1..]
        .iter()
        .position(|r| r.path == "/actor/v1/whoami")
        .map_or(requests.len(), |i| start + 1 + i);
    requests[start..end].to_vec()
}

/// Pages of `page_size` rows, and one crawl during a test (the next one is 30 s away).
fn paged(page_size: &str) -> [(&str, &str); 3] {
    [
        ("PAGE_SIZE", page_size),
        ("CRAWL_INTERVAL", "30"),
        ("REQUEST_TIMEOUT", "5"),
    ]
}

#[tokio::test]
async fn several_thousand_devices_over_pages() {
    let account = generated(3, 2500);
    let (fake, exporter) = start_ready(account.clone(), &paged("1000")).await;
    let samples = exporter.metrics().await;
    assert_eq!(family(&samples, "balena_device_online").len(), 2500);
    let total: f64 = family(&samples, "balena_fleet_devices")
        .iter()
        .map(|s| s.value)
        .sum();
    assert_eq!(total, 2500.0);
    for f in &account.fleets {
        let online = account
            .devices_of(f.id)
            .iter()
            .filter(|d| d.is_online)
            .count();
        assert_eq!(
            fleet_value(&samples, "balena_devices_online", &f.slug),
            Some(online as f64)
        );
    }
    // whoami; the first crawl's question whether the server has coordinates; fleets, then the
    // empty page after them; services (none); the releases in use and the empty page after
    // them; pages of 1000, 1000 and 500 devices and the empty page after them: keyset pages in
    // id order, written literally.
    let crawl = one_crawl(&fake);
    let paths: Vec<_> = crawl.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/actor/v1/whoami",
            "/v7/device",
            "/v7/application",
            "/v7/application",
            "/v7/service",
            "/v7/release",
            "/v7/release",
            "/v7/device",
            "/v7/device",
            "/v7/device",
            "/v7/device",
        ]
    );
    assert_eq!(crawl[1].status, 500, "the fake has openBalena's fields");
    assert!(
        crawl[3].raw_query.contains("%20and%20id%20gt%203&"),
        "{}",
        crawl[3].raw_query
    );
    for (page, after) in crawl[7..].iter().zip([0, 1000, 2000, 2500]) {
        assert!(
            page.raw_query.contains(&format!(
                "%20and%20id%20gt%20{after}&$orderby=id%20asc&$top=1000"
            )),
            "{}",
            page.raw_query
        );
        assert!(
            page.raw_query
                .contains("$expand=is_of__device_type($select=slug),"),
            "{}",
            page.raw_query
        );
        assert_eq!(page.status, 200);
    }
    assert!(crawl.iter().all(|r| r.authorized));
    let agent = format!("balena-exporter/{}", env!("CARGO_PKG_VERSION"));
    assert!(crawl.iter().all(|r| r.user_agent == agent), "{crawl:?}");
    assert_eq!(
        value(&samples, "balena_crawl_api_requests", &[]),
        Some(11.0)
    );
    exporter.stop().await.unwrap();
}

#[tokio::test]
async fn requests_per_crawl_do_not_grow_with_fleets() {
    let mut counts = Vec::new();
    for fleets in [2, 200] {
        let (fake, exporter) = start_ready(generated(fleets, 450), &paged("250")).await;
        let samples = exporter.metrics().await;
        assert_eq!(
            family(&samples, "balena_devices_online").len(),
            fleets as usize
        );
        counts.push((
            one_crawl(&fake).len(),
            value(&samples, "balena_crawl_api_requests", &[]),
        ));
        exporter.stop().await.unwrap();
    }
    // whoami, the first crawl's location question, one page of fleets and the empty one, the
    // (empty) page of services, a page of releases and the empty one, ⌈450 / 250⌉ = 2 pages of
    // devices and the empty one: 10 for both.
    assert_eq!(counts, [(10, Some(10.0)), (10, Some(10.0))]);
}

/// balenaCloud publishes no cap on `$top`; a server that has one must not cost devices.
#[tokio::test]
async fn a_server_that_caps_pages_loses_no_fleet_and_no_device() {
    let account = generated(150, 700);
    let fake = FakeBalena::start(account.clone()).await;
    fake.set_max_top(Some(100));
    let exporter = Exporter::ready_on(&fake, &paged("1000")).await;
    let samples = exporter.metrics().await;
    assert_eq!(family(&samples, "balena_devices_online").len(), 150);
    let mut expected: Vec<String> = account.devices.iter().map(|d| d.uuid.clone()).collect();
    expected.sort();
    assert_eq!(exported_uuids(&samples), expected);
    for f in &account.fleets {
        let devices = account.devices_of(f.id).len();
        assert_eq!(
            fleet_value(&samples, "balena_fleet_devices", &f.slug),
            Some(devices as f64),
            "{}",
            f.slug
        );
    }
    // whoami, the location question, 2 + 1 pages of fleets, 1 of services, 1 + 1 of releases,
    // 7 + 1 of devices.
    assert_eq!(
        value(&samples, "balena_crawl_api_requests", &[]),
        Some(16.0)
    );
    assert_eq!(value(&samples, "balena_up", &[]), Some(1.0));
    exporter.stop().await.unwrap();
}

/// Devices deleted while the exporter pages shift an offset and make others vanish; a keyset
/// does not move. Every device that existed during the whole crawl must be exported.
#[tokio::test]
async fn devices_deleted_and_added_between_pages_cost_no_other_device() {
    let account = generated(4, 400);
    let fake = FakeBalena::start(account.clone()).await;
    fake.set_churn(8);
    let exporter = Exporter::ready_on(&fake, &paged("50")).await;
    let samples = exporter.metrics().await;
    let now = fake.account();
    // Deleted during the crawl: the first device of each of the first 8 pages.
    let survivors: Vec<String> = account
        .devices
        .iter()
        .filter(|d| now.devices.iter().any(|n| n.id == d.id))
        .map(|d| d.uuid.clone())
        .collect();
    assert_eq!(survivors.len(), 400 - 8, "each page deleted one device");
    let exported = exported_uuids(&samples);
    let missing: Vec<&String> = survivors.iter().filter(|u| !exported.contains(u)).collect();
    assert!(missing.is_empty(), "devices lost while paging: {missing:?}");
    assert_eq!(value(&samples, "balena_up", &[]), Some(1.0));
    exporter.stop().await.unwrap();
}

/// A server that ignores `id gt N` would answer the same page forever: the crawl fails as
/// `paging` instead, and the last good data stays.
#[tokio::test]
async fn a_server_ignoring_the_keyset_fails_as_paging_and_keeps_the_data() {
    let account = generated(2, 30);
    let (fake, exporter) = start_ready(account, &[("PAGE_SIZE", "10")]).await;
    fake.set_fault(Some(Fault::IgnoreFilter));
    let failed = exporter
        .wait_metrics("a paging error", |s| {
            value(s, "balena_crawl_errors_total", &[("kind", "paging")]) >= Some(1.0)
        })
        .await;
    assert_eq!(value(&failed, "balena_up", &[]), Some(0.0));
    assert_eq!(family(&failed, "balena_device_info").len(), 30);
    fake.set_fault(None);
    wait_for("recovery", || async {
        value(&exporter.metrics().await, "balena_up", &[]) == Some(1.0)
    })
    .await;
    exporter.stop().await.unwrap();
}

/// Every request asks for gzip and the fake answers it gzipped, as open-balena-api does: the
/// device pages cross the link at a fraction of their size, the exporter publishes the same
/// devices, and `balena_api_response_bytes_total` counts the bytes as they were sent.
#[tokio::test]
async fn pages_come_gzipped_and_their_wire_bytes_are_counted() {
    let account = common::generate::account(4, 250);
    let (fake, exporter) = start_ready(account.clone(), &paged("250")).await;
    let samples = exporter.metrics().await;
    assert_eq!(family(&samples, "balena_device_online").len(), 1000);
    let crawl = one_crawl(&fake);
    let sent = |path: &str| -> usize {
        let pages = crawl.iter().filter(|r| r.path == path && r.status == 200);
        pages.map(|r| r.body_bytes).sum()
    };
    // The same device pages as a client that does not ask for gzip gets them.
    let http = reqwest::Client::new();
    let mut plain = 0;
    for r in crawl
        .iter()
        .filter(|r| r.path == "/v7/device" && r.status == 200)
    {
        let url = format!("{}{}?{}", fake.url(), r.path, r.raw_query);
        let answer = http
            .get(url)
            .bearer_auth(common::generate::TOKEN)
            .send()
            .await;
        plain += answer.unwrap().bytes().await.unwrap().len();
    }
    let device_bytes = sent("/v7/device");
    assert!(
        device_bytes * 5 < plain,
        "device pages: {device_bytes} bytes gzipped, {plain} plain"
    );
    let counted = value(
        &samples,
        "balena_api_response_bytes_total",
        &[("resource", "device")],
    );
    assert_eq!(counted, Some(device_bytes as f64));
    exporter.stop().await.unwrap();
}

/// Fleets, services and releases are asked for again with the ETag of their last answer: an
/// unchanged page is a 304 without a body, and the exporter publishes what it did; a changed
/// fleet is a 200 with the change. Devices are read in full every crawl.
#[tokio::test]
async fn unchanged_fleets_services_and_releases_are_not_sent_again() {
    let account = Account::sample();
    let fast = [("CRAWL_INTERVAL", "1"), ("REQUEST_TIMEOUT", "0.5")];
    let (fake, exporter) = start_ready(account.clone(), &fast).await;
    let crawls = || async { value(&exporter.metrics().await, "balena_crawls_total", &[]) };
    let first = crawls().await.unwrap_or(0.0);
    wait_for("a second crawl", || async {
        crawls().await >= Some(first + 2.0)
    })
    .await;
    let before = exporter.get("/metrics").await.1;
    // The last whole crawl: from the last whoami but one to the last.
    let requests = fake.requests();
    let whoamis: Vec<usize> = (0..requests.len())
        .filter(|&i| requests[i].path == "/actor/v1/whoami")
        .collect();
    let crawl = &requests[whoamis[whoamis.len() - 2]..whoamis[whoamis.len() - 1]];
    let status = |path: &str| -> Vec<u16> {
        crawl
            .iter()
            .filter(|r| r.path == path)
            .map(|r| r.status)
            .collect()
    };
    assert!(
        status("/v7/application").iter().all(|s| *s == 304),
        "{crawl:?}"
    );
    assert!(status("/v7/service").iter().all(|s| *s == 304), "{crawl:?}");
    assert!(status("/v7/release").iter().all(|s| *s == 304), "{crawl:?}");
    assert!(status("/v7/device").iter().all(|s| *s == 200), "{crawl:?}");
    let fleet_lines = |text: &str| -> Vec<String> {
        let lines = text.lines().filter(|l| l.starts_with("balena_fleet_info"));
        lines.map(String::from).collect()
    };
    // A renamed fleet changes its page, whose next answer is a 200 with the new name.
    let mut renamed = account.clone();
    renamed.fleets[0].app_name = "renamed".into();
    fake.set_account(renamed);
    wait_for("the renamed fleet", || async {
        exporter
            .get("/metrics")
            .await
            .1
            .contains("fleet_name=\"renamed\"")
    })
    .await;
    let after = exporter.get("/metrics").await.1;
    assert_ne!(fleet_lines(&before), fleet_lines(&after));
    exporter.stop().await.unwrap();
}
