//! Black-box tests: the fake balena API and the exporter on loopback sockets; assertions are
//! on what a user reads from `/metrics`, `/-/ready` and `/`, and on what the API received.

use crate::common;

use std::time::Duration;

use common::exporter::{start_ready, wait_for, Exporter};
use common::fake::{Account, Device, FakeBalena, Fault};
use common::promtext::{family, value, Sample};

const TOKEN: &str = "sample-token";

/// The API's own count of devices matching `filter` (`$count`, a bare integer).
async fn api_count(fake: &FakeBalena, filter: &str) -> f64 {
    let url = format!(
        "{}/v7/device/$count?$filter={}",
        fake.url(),
        filter.replace(' ', "%20")
    );
    let response = reqwest::Client::new()
        .get(url)
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    body["d"]
        .as_f64()
        .unwrap_or_else(|| panic!("not a bare integer count: {body}"))
}

fn fleet_value(samples: &[Sample], name: &str, slug: &str, extra: &[(&str, &str)]) -> Option<f64> {
    let mut labels = vec![("fleet_slug", slug)];
    labels.extend_from_slice(extra);
    value(samples, name, &labels)
}

/// A device's target: its pin, else its fleet's target release (v7's computed target).
fn on_target(account: &Account, d: &Device) -> Option<bool> {
    let fleet = account.fleets.iter().find(|f| f.id == d.fleet_id)?;
    let target = d
        .pinned_release
        .as_ref()
        .or(fleet.target_release.as_ref())?;
    Some(
        d.running_release
            .as_ref()
            .is_some_and(|r| r.id == target.id),
    )
}

#[tokio::test]
async fn every_fleet_and_device_value_equals_the_api() {
    let account = Account::sample();
    let (fake, exporter) = start_ready(account.clone(), &[]).await;
    let samples = exporter.metrics().await;

    // Fleet counts equal the API's own `$count` answers.
    assert_eq!(
        family(&samples, "balena_devices_online").len(),
        account.fleets.len()
    );
    for f in &account.fleets {
        let of = format!("belongs_to__application eq {}", f.id);
        let online = api_count(&fake, &format!("{of} and is_online eq true")).await;
        assert_eq!(
            fleet_value(
                &samples,
                "balena_devices_online",
                &f.slug,
                &[("fleet_name", &f.app_name)]
            ),
            Some(online),
            "{}",
            f.slug
        );
        let total = api_count(&fake, &of).await;
        assert_eq!(
            fleet_value(&samples, "balena_fleet_devices", &f.slug, &[]),
            Some(total),
            "{}",
            f.slug
        );
        for status in [
            "operational",
            "disconnected",
            "reduced-functionality",
            "updating",
            "configuring",
            "inactive",
        ] {
            let n = api_count(&fake, &format!("{of} and overall_status eq '{status}'")).await;
            assert_eq!(
                fleet_value(
                    &samples,
                    "balena_fleet_devices_by_status",
                    &f.slug,
                    &[("status", status)]
                ),
                Some(n),
                "{} {status}",
                f.slug
            );
        }
        for state in ["online", "offline", "timeout", "unknown"] {
            let n = api_count(&fake, &format!("{of} and api_heartbeat_state eq '{state}'")).await;
            assert_eq!(
                fleet_value(
                    &samples,
                    "balena_fleet_devices_by_heartbeat",
                    &f.slug,
                    &[("state", state)]
                ),
                Some(n),
                "{} {state}",
                f.slug
            );
        }
        let on = account
            .devices_of(f.id)
            .into_iter()
            .filter(|d| on_target(&account, d) == Some(true))
            .count();
        assert_eq!(
            fleet_value(
                &samples,
                "balena_fleet_devices_on_target_release",
                &f.slug,
                &[]
            ),
            Some(on as f64)
        );
        let target = f.target_release.as_ref().map_or("", |r| r.commit.as_str());
        let info = [
            ("fleet_name", f.app_name.as_str()),
            ("organization", &f.organization),
            ("device_type", &f.device_type),
            ("target_release", target),
        ];
        assert_eq!(
            fleet_value(&samples, "balena_fleet_info", &f.slug, &info),
            Some(1.0)
        );
    }

    // Every device's values, in base units.
    const MIB: f64 = 1_048_576.0;
    for d in &account.devices {
        let fleet = account.fleets.iter().find(|f| f.id == d.fleet_id).unwrap();
        let id = [
            ("uuid", d.uuid.as_str()),
            ("fleet_slug", fleet.slug.as_str()),
        ];
        let get = |name: &str| value(&samples, name, &id);
        assert_eq!(
            get("balena_device_online"),
            Some(if d.is_online { 1.0 } else { 0.0 }),
            "{}",
            d.device_name
        );
        assert_eq!(
            value(
                &samples,
                "balena_device_status",
                &[id[0], ("status", &d.overall_status)]
            ),
            Some(1.0)
        );
        assert_eq!(
            value(
                &samples,
                "balena_device_heartbeat_state",
                &[id[0], ("state", &d.api_heartbeat_state)]
            ),
            Some(1.0)
        );
        let mib = |m: Option<i64>| m.map(|m| m as f64 * MIB);
        let flag = |b: bool| if b { 1.0 } else { 0.0 };
        let expected = [
            (
                "balena_device_cpu_usage_ratio",
                d.cpu_usage.map(|p| p as f64 / 100.0),
            ),
            (
                "balena_device_cpu_temperature_celsius",
                d.cpu_temp.map(|t| t as f64),
            ),
            ("balena_device_memory_used_bytes", mib(d.memory_usage)),
            ("balena_device_memory_total_bytes", mib(d.memory_total)),
            ("balena_device_storage_used_bytes", mib(d.storage_usage)),
            ("balena_device_storage_total_bytes", mib(d.storage_total)),
            ("balena_device_undervolted", Some(flag(d.is_undervolted))),
            (
                "balena_device_on_target_release",
                on_target(&account, d).map(flag),
            ),
        ];
        for (family, want) in expected {
            assert_eq!(get(family), want, "{family} of {}", d.device_name);
        }
        assert_eq!(
            get("balena_device_last_connectivity_timestamp_seconds").is_some(),
            d.last_connectivity_event.is_some()
        );
        let release = d.running_release.as_ref().map_or("", |r| r.commit.as_str());
        let info = [
            id[0],
            ("fleet_name", fleet.app_name.as_str()),
            ("device_name", &d.device_name),
            ("device_type", &d.device_type),
            ("os_version", d.os_version.as_deref().unwrap_or("")),
            ("os_variant", d.os_variant.as_deref().unwrap_or("")),
            (
                "supervisor_version",
                d.supervisor_version.as_deref().unwrap_or(""),
            ),
            ("release", release),
        ];
        assert_eq!(
            value(&samples, "balena_device_info", &info),
            Some(1.0),
            "{}",
            d.device_name
        );
    }
    assert_eq!(value(&samples, "balena_up", &[]), Some(1.0));
    exporter.stop().await.unwrap();
}

#[tokio::test]
async fn hostile_names_round_trip_and_same_named_fleets_stay_apart() {
    let mut account = Account::sample();
    let names = [
        "quote \" back\\slash",
        "new\nline",
        "Ünïcødé ☃ 设备",
        "{braces}=,commas",
    ];
    for (d, name) in account.devices.iter_mut().zip(names) {
        d.device_name = name.into();
    }
    account.fleets[2].app_name = "gate \"ways\"\\\n\u{e9}".into();
    let (_fake, exporter) = start_ready(account.clone(), &[]).await;
    let samples = exporter.metrics().await;
    for (d, name) in account.devices.iter().zip(names) {
        assert_eq!(
            value(
                &samples,
                "balena_device_info",
                &[("uuid", &d.uuid), ("device_name", name)]
            ),
            Some(1.0),
            "{name:?}"
        );
    }
    assert_eq!(
        value(
            &samples,
            "balena_fleet_devices",
            &[("fleet_name", "gate \"ways\"\\\n\u{e9}")]
        ),
        Some(2.0)
    );
    // Two fleets named "sensors" in two organizations: two series, told apart by slug.
    let sensors: Vec<_> = family(&samples, "balena_devices_online")
        .into_iter()
        .filter(|s| s.label("fleet_name") == "sensors")
        .collect();
    assert_eq!(
        sensors
            .iter()
            .map(|s| s.label("fleet_slug"))
            .collect::<Vec<_>>(),
        ["acme/sensors", "globex/sensors"]
    );
    let (_, page) = exporter.get("/").await;
    assert!(page.contains("gate &quot;ways&quot;"), "{page}");
    exporter.stop().await.unwrap();
}

#[tokio::test]
async fn a_rejected_token_is_reported_and_retried() {
    let fake = FakeBalena::start(Account::sample()).await;
    let exporter = Exporter::start(
        &fake.url(),
        "not-a-valid-token",
        &[("CRAWL_INTERVAL", "0.2"), ("REQUEST_TIMEOUT", "0.1")],
    )
    .await;
    let samples = exporter
        .wait_metrics("two unauthorized crawls", |s| {
            value(s, "balena_crawl_errors_total", &[("kind", "unauthorized")]) >= Some(2.0)
        })
        .await;
    assert_eq!(value(&samples, "balena_up", &[]), Some(0.0));
    assert!(
        family(&samples, "balena_devices_online").is_empty(),
        "no fleet data from a bad token"
    );
    let (status, body) = exporter.get("/-/ready").await;
    assert_eq!(
        (status, body.as_str()),
        (
            503,
            "Not ready: no successful crawl of the balena API yet.\n"
        )
    );
    assert_eq!(exporter.get("/-/healthy").await.0, 200);
    let (_, page) = exporter.get("/").await;
    assert!(page.contains("the balena API rejected the token"), "{page}");
    // The guest answer to a fleet read (200, no fleets) is never what the exporter reports:
    // it stops at whoami.
    assert!(fake
        .requests()
        .iter()
        .all(|r| r.path == "/actor/v1/whoami" && r.status == 401));
    exporter.stop().await.unwrap();
}

/// For each fault: the last good values stay, `balena_up` goes 0, the error is counted by
/// kind, and the next good answer brings new values.
#[tokio::test]
async fn api_failures_keep_the_last_good_values_and_recover() {
    let cases = [
        (Fault::Unavailable, "server_error"),
        (
            Fault::RateLimited {
                retry_after_secs: 1,
            },
            "rate_limited",
        ),
        (Fault::Hang, "timeout"),
        (Fault::Truncated, "decode"),
        (Fault::Malformed, "decode"),
    ];
    let account = Account::sample();
    let (fake, exporter) = start_ready(account.clone(), &[]).await;
    let mut good = exporter.metrics().await;
    let online = |s: &[Sample]| fleet_value(s, "balena_devices_online", "acme/sensors", &[]);
    assert_eq!(online(&good), Some(3.0));

    for (i, (fault, kind)) in cases.into_iter().enumerate() {
        let errors_before = value(
            &exporter.metrics().await,
            "balena_crawl_errors_total",
            &[("kind", kind)],
        )
        .unwrap();
        fake.set_fault(Some(fault.clone()));
        let failing = exporter
            .wait_metrics(kind, |s| {
                value(s, "balena_crawl_errors_total", &[("kind", kind)]) > Some(errors_before)
            })
            .await;
        assert_eq!(value(&failing, "balena_up", &[]), Some(0.0), "{fault:?}");
        assert_eq!(
            online(&failing),
            online(&good),
            "{fault:?} keeps the last good value"
        );
        assert_eq!(
            family(&failing, "balena_device_info").len(),
            account.devices.len(),
            "{fault:?}"
        );

        // Recovery shows new data: device 2 of acme/sensors flips on or off every round.
        let mut changed = account.clone();
        changed.devices[1].is_online = i % 2 == 0;
        let expected = if i % 2 == 0 { 4.0 } else { 3.0 };
        assert_ne!(online(&good), Some(expected));
        fake.set_account(changed);
        fake.set_fault(None);
        let recovered = exporter
            .wait_metrics("recovery", |s| value(s, "balena_up", &[]) == Some(1.0))
            .await;
        assert_eq!(online(&recovered), Some(expected), "after {fault:?}");
        good = recovered;
    }
    exporter.stop().await.unwrap();
}

/// Makes paused time (`#[tokio::test(start_paused = true)]`) pass a millisecond at a time.
/// Paused time jumps to the next timer whenever every task waits, even while an answer is on
/// its way over a loopback socket: a request's timeout could then fire before its answer. With
/// a timer every millisecond, an exchange over loopback takes a few milliseconds as it does in
/// real time, and a wait with nothing on the wire (a backoff, a `Retry-After`) still takes no
/// real time. The task ends with the test's runtime.
fn step_paused_time() {
    tokio::spawn(async {
        loop {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    });
}

/// A ready exporter crawling every `interval` seconds (requests time out after `timeout`),
/// whose API answers 429 with `Retry-After: retry_after_secs` from now on; the request log
/// starts empty. For `start_paused` tests: the clock steps (`step_paused_time`).
async fn rate_limited(
    interval: &str,
    timeout: &str,
    retry_after_secs: u64,
) -> (FakeBalena, Exporter) {
    step_paused_time();
    let vars = [("CRAWL_INTERVAL", interval), ("REQUEST_TIMEOUT", timeout)];
    let (fake, exporter) = start_ready(Account::sample(), &vars).await;
    fake.set_fault(Some(Fault::RateLimited { retry_after_secs }));
    fake.clear_requests();
    (fake, exporter)
}

/// How many requests the API answered 429.
fn limited(fake: &FakeBalena) -> usize {
    fake.requests().iter().filter(|r| r.status == 429).count()
}

#[tokio::test(start_paused = true)]
async fn a_429_is_waited_out_not_hammered() {
    let (fake, exporter) = rate_limited("1", "0.5", 4).await;
    tokio::time::sleep(Duration::from_millis(3500)).await;
    // With a 1 s interval the exporter would crawl 3 or 4 times in 3.5 s; Retry-After: 4
    // allows one request.
    assert_eq!(limited(&fake), 1, "{:?}", fake.requests());
    exporter.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_day_long_retry_after_is_cut_to_five_intervals() {
    let (fake, exporter) = rate_limited("0.2", "0.1", 86_400).await;
    // Five intervals are 1 s: the exporter asks again after 1 s, not after a day.
    wait_for("a second 429 within seconds", || async {
        limited(&fake) >= 2
    })
    .await;
    let requests = fake.requests();
    assert!(requests.len() <= 4, "{requests:?}");
    fake.set_fault(None);
    exporter.wait_ready().await;
    exporter.stop().await.unwrap();
}

#[tokio::test]
async fn transient_errors_are_retried_within_a_crawl() {
    let fake = FakeBalena::start(Account::sample()).await;
    fake.set_fault(Some(Fault::Unavailable));
    let exporter = Exporter::start(
        &fake.url(),
        TOKEN,
        &[
            ("API_RETRIES", "2"),
            ("CRAWL_INTERVAL", "30"),
            ("REQUEST_TIMEOUT", "1"),
        ],
    )
    .await;
    // The first crawl's whoami fails, backs off 0.5 s, and is retried.
    wait_for("a retried request", || async { fake.requests().len() >= 2 }).await;
    fake.set_fault(None);
    exporter.wait_ready().await;
    let samples = exporter.metrics().await;
    assert!(
        value(
            &samples,
            "balena_api_errors_total",
            &[("kind", "server_error")]
        ) >= Some(1.0)
    );
    assert_eq!(
        value(
            &samples,
            "balena_crawl_errors_total",
            &[("kind", "server_error")]
        ),
        Some(0.0),
        "the crawl itself succeeded"
    );
    exporter.stop().await.unwrap();
}

#[tokio::test]
async fn ready_turns_503_when_data_goes_stale() {
    let fake = FakeBalena::start(Account::sample()).await;
    // stale after 3 intervals + the timeout = 1.8 s
    let exporter = Exporter::ready_on(&fake, &[]).await;
    fake.set_fault(Some(Fault::Hang));
    wait_for("/-/ready to go stale", || async {
        let (status, body) = exporter.get("/-/ready").await;
        status == 503 && body.starts_with("Not ready: data is stale")
    })
    .await;
    assert_eq!(exporter.get("/-/healthy").await.0, 200);
    fake.set_fault(None);
    exporter.wait_ready().await;
    exporter.stop().await.unwrap();
}

#[tokio::test]
async fn fleets_and_devices_that_disappear_disappear() {
    let account = Account::sample();
    let (fake, exporter) = start_ready(account.clone(), &[]).await;
    let mut smaller = account.clone();
    smaller.fleets.retain(|f| f.slug != "acme/gateways");
    smaller.devices.retain(|d| d.fleet_id != 3 && d.id != 1);
    fake.set_account(smaller);
    let samples = exporter
        .wait_metrics("the smaller account", |s| {
            family(s, "balena_devices_online").len() == 2
        })
        .await;
    assert!(samples
        .iter()
        .all(|s| s.label("fleet_slug") != "acme/gateways"));
    assert!(samples
        .iter()
        .all(|s| s.label("uuid") != account.devices[0].uuid));
    assert_eq!(family(&samples, "balena_device_info").len(), 5);
    exporter.stop().await.unwrap();
}

#[tokio::test]
async fn fleet_filter_by_slug_or_name() {
    let (fake, exporter) =
        start_ready(Account::sample(), &[("FLEETS", "globex/sensors, gateways")]).await;
    let samples = exporter.metrics().await;
    let slugs: Vec<_> = family(&samples, "balena_devices_online")
        .iter()
        .map(|s| s.label("fleet_slug").to_string())
        .collect();
    assert_eq!(slugs, ["acme/gateways", "globex/sensors"]);
    assert_eq!(family(&samples, "balena_device_info").len(), 4);
    let device_query = fake
        .requests()
        .into_iter()
        .find(|r| r.path == "/v7/device" && r.raw_query.contains("$filter="))
        .unwrap()
        .raw_query;
    assert!(
        device_query.contains(
            "$filter=(belongs_to__application%20eq%202%20or%20belongs_to__application%20eq%203)%20and%20id%20gt%200&"
        ),
        "{device_query}"
    );
    exporter.stop().await.unwrap();
}

#[tokio::test]
async fn device_metrics_can_be_turned_off() {
    let (_fake, exporter) = start_ready(Account::sample(), &[("DEVICE_METRICS", "false")]).await;
    let samples = exporter.metrics().await;
    assert!(samples
        .iter()
        .all(|s| !s.name.starts_with("balena_device_")));
    assert_eq!(family(&samples, "balena_devices_online").len(), 3);
    exporter.stop().await.unwrap();
}

#[tokio::test]
async fn http_surface() {
    let fake = FakeBalena::start(Account::sample()).await;
    // One crawl only during this test, so that any later API request comes from a scrape.
    let exporter =
        Exporter::ready_on(&fake, &[("CRAWL_INTERVAL", "60"), ("REQUEST_TIMEOUT", "5")]).await;

    // Plain and gzip bodies of /metrics are compared byte for byte in plain_gzip.rs.
    let (status, page) = exporter.get("/").await;
    assert_eq!(status, 200);
    assert!(
        // devices, expected online, offline, updating, failing services, on target
        page.contains(
            "<td>sensors</td><td>acme/sensors</td><td>4</td><td>4</td><td>1</td><td>1</td><td>2</td><td>2</td>"
        ),
        "{page}"
    );
    assert_eq!(
        exporter.get("/-/healthy").await,
        (200, "Healthy.\n".to_string())
    );
    assert_eq!(
        exporter.get("/-/ready").await,
        (200, "Ready.\n".to_string())
    );
    assert_eq!(
        exporter.get("/nope").await,
        (404, "Not found.\n".to_string())
    );
    assert_eq!(exporter.get("/metrics/extra").await.0, 404);

    // A scrape never reaches the API.
    fake.set_fault(Some(Fault::Hang));
    fake.clear_requests();
    for _ in 0..20 {
        exporter.metrics().await;
    }
    assert_eq!(fake.requests(), [], "scrapes caused API requests");
    exporter.stop().await.unwrap();
}
