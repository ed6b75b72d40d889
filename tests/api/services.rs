//! What runs on the devices: services (from image installs), updates, tags, offline-since and
//! location, checked against the fake API's own answers to flat reads (not the nested ones the
//! exporter sends), and the switches that leave them out.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use common::exporter::Exporter;
use common::fake::{Account, FakeBalena};
use common::promtext::{family, value, Sample};

const TOKEN: &str = "sample-token";

/// The `d` rows of a GET (URL written literally).
async fn rows(fake: &FakeBalena, path_and_query: &str) -> Vec<Value> {
    let response = reqwest::Client::new()
        .get(format!("{}{path_and_query}", fake.url()))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{path_and_query}");
    let body: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    body["d"].as_array().cloned().unwrap_or_default()
}

fn id(v: &Value) -> u64 {
    v.get("__id").unwrap_or(v).as_u64().unwrap_or(0)
}

/// (uuid, service) → (status, download progress), computed from flat reads of the API: per
/// device and service, the install of the running release, else of the target release.
async fn expected_services(fake: &FakeBalena) -> BTreeMap<(String, String), (String, Option<f64>)> {
    let names: BTreeMap<u64, String> = rows(fake, "/v7/service?$select=id,service_name")
        .await
        .iter()
        .map(|s| {
            (
                id(&s["id"]),
                s["service_name"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let devices = rows(
        fake,
        "/v7/device?$select=id,uuid,is_running__release,should_be_running__release",
    )
    .await;
    let images: BTreeMap<u64, u64> = rows(fake, "/v7/image?$select=id,is_a_build_of__service")
        .await
        .iter()
        .map(|i| (id(&i["id"]), id(&i["is_a_build_of__service"])))
        .collect();
    let installs = rows(
        fake,
        "/v7/image_install?$select=status,download_progress,device,installs__image,is_provided_by__release&$filter=status%20ne%20'deleted'",
    )
    .await;
    let mut out = BTreeMap::new();
    for d in &devices {
        let (running, target) = (
            id(&d["is_running__release"]),
            id(&d["should_be_running__release"]),
        );
        let mine: Vec<&Value> = installs
            .iter()
            .filter(|i| id(&i["device"]) == id(&d["id"]))
            .collect();
        let services: BTreeSet<u64> = mine
            .iter()
            .map(|i| images[&id(&i["installs__image"])])
            .collect();
        for service in services {
            let of = |release: u64| {
                mine.iter().find(|i| {
                    release != 0
                        && images[&id(&i["installs__image"])] == service
                        && id(&i["is_provided_by__release"]) == release
                })
            };
            let Some(chosen) = of(running).or_else(|| of(target)) else {
                continue;
            };
            let progress = [of(running), of(target)]
                .into_iter()
                .flatten()
                .find(|i| i["status"] == "Downloading")
                .map(|i| i["download_progress"].as_f64().unwrap_or(0.0) / 100.0);
            out.insert(
                (
                    d["uuid"].as_str().unwrap().to_string(),
                    names[&service].clone(),
                ),
                (chosen["status"].as_str().unwrap().to_string(), progress),
            );
        }
    }
    out
}

/// The sample account, an exporter ready on it, and its first scrape.
async fn sample_started() -> (FakeBalena, Exporter, Vec<Sample>) {
    let fake = FakeBalena::start(Account::sample()).await;
    let (exporter, samples) = started(&fake, &[]).await;
    (fake, exporter, samples)
}

async fn started(fake: &FakeBalena, vars: &[(&str, &str)]) -> (Exporter, Vec<Sample>) {
    let exporter = Exporter::ready_on(fake, vars).await;
    let samples = exporter.metrics().await;
    (exporter, samples)
}

#[tokio::test]
async fn every_service_state_and_fleet_count_equals_the_api() {
    let (fake, exporter, samples) = sample_started().await;
    let expected = expected_services(&fake).await;
    assert!(
        expected.len() >= 9,
        "the sample account has services: {expected:?}"
    );

    let exported: BTreeMap<(String, String), (String, Option<f64>)> =
        family(&samples, "balena_service_status")
            .iter()
            .map(|s| {
                let (uuid, service) = (s.label("uuid"), s.label("service"));
                let progress = value(
                    &samples,
                    "balena_service_download_progress_ratio",
                    &[("uuid", uuid), ("service", service)],
                );
                assert_eq!(s.value, 1.0);
                (
                    (uuid.to_string(), service.to_string()),
                    (s.label("status").to_string(), progress),
                )
            })
            .collect();
    assert_eq!(exported, expected);
    // An install of an older release that lingers (device 4's main@9 was deleted; device 3's
    // target is downloading) is not the state of the service.
    let account = Account::sample();
    let sensor3 = &account.devices[2].uuid;
    assert_eq!(
        exported[&(sensor3.clone(), "main".to_string())],
        ("Running".to_string(), Some(0.6))
    );

    // Per fleet: instances by service and status are the sums of the devices'.
    let mut counts: BTreeMap<(String, String, String), f64> = BTreeMap::new();
    for ((uuid, service), (status, _)) in &expected {
        let d = account.devices.iter().find(|d| &d.uuid == uuid).unwrap();
        let slug = &account
            .fleets
            .iter()
            .find(|f| f.id == d.fleet_id)
            .unwrap()
            .slug;
        *counts
            .entry((slug.clone(), service.clone(), status.clone()))
            .or_default() += 1.0;
    }
    let fleet_counts: BTreeMap<(String, String, String), f64> =
        family(&samples, "balena_fleet_service_instances")
            .iter()
            .map(|s| {
                (
                    (
                        s.label("fleet_slug").to_string(),
                        s.label("service").to_string(),
                        s.label("status").to_string(),
                    ),
                    s.value,
                )
            })
            .collect();
    assert_eq!(fleet_counts, counts);
    exporter.stop().await.unwrap();
}

#[tokio::test]
async fn updates_and_offline_since_equal_the_api() {
    let (fake, exporter, samples) = sample_started().await;
    let devices = rows(
        &fake,
        "/v7/device?$select=uuid,update_status,overall_progress,last_update_status_event,changed_api_heartbeat_state_on__date",
    )
    .await;
    let seconds = |v: &Value| {
        v.as_str().map(|t| {
            humantime::parse_rfc3339(t)
                .unwrap()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs_f64()
        })
    };
    for d in &devices {
        let uuid = d["uuid"].as_str().unwrap();
        let status = d["update_status"].as_str().unwrap_or("none");
        assert_eq!(
            value(
                &samples,
                "balena_device_update_status",
                &[("uuid", uuid), ("status", status)]
            ),
            Some(1.0),
            "{uuid}"
        );
        assert_eq!(
            value(
                &samples,
                "balena_device_update_progress_ratio",
                &[("uuid", uuid)]
            ),
            d["overall_progress"].as_f64().map(|p| p / 100.0),
            "{uuid}"
        );
        assert_eq!(
            value(
                &samples,
                "balena_device_update_status_timestamp_seconds",
                &[("uuid", uuid)]
            ),
            seconds(&d["last_update_status_event"]),
            "{uuid}"
        );
        assert_eq!(
            value(
                &samples,
                "balena_device_heartbeat_state_changed_timestamp_seconds",
                &[("uuid", uuid)]
            ),
            seconds(&d["changed_api_heartbeat_state_on__date"]),
            "{uuid}"
        );
    }
    // Fleet counts by update status equal the API's own $count.
    let account = Account::sample();
    for f in &account.fleets {
        for status in ["downloading", "done", "rejected"] {
            let path = format!(
                "/v7/device/$count?$filter=belongs_to__application%20eq%20{}%20and%20update_status%20eq%20'{status}'",
                f.id
            );
            let response = reqwest::Client::new()
                .get(format!("{}{path}", fake.url()))
                .bearer_auth(TOKEN)
                .send()
                .await
                .unwrap();
            let count: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
            assert_eq!(
                value(
                    &samples,
                    "balena_fleet_devices_by_update_status",
                    &[("fleet_slug", &f.slug), ("status", status)]
                ),
                count["d"].as_f64(),
                "{} {status}",
                f.slug
            );
        }
    }
    exporter.stop().await.unwrap();
}

/// `tag_` and the key in snake_case: every character outside [A-Za-z0-9_] as `_`, `_` before
/// an upper-case letter that follows a lower-case one or a digit, all lower-cased.
fn label_of(key: &str) -> String {
    let mut out = String::from("tag_");
    let mut previous = ' ';
    for c in key.chars() {
        let c = if c.is_ascii_alphanumeric() { c } else { '_' };
        if c.is_ascii_uppercase() && (previous.is_ascii_lowercase() || previous.is_ascii_digit()) {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
        previous = c;
    }
    out
}

/// Checks the `tag_*` labels of `series` against the API's `(key, value)` rows: the same
/// values, and each key whose name no other key shares under its own name.
fn check_tags(series: &Sample, rows: &[(String, String)]) {
    let mut values: Vec<&str> = series
        .labels
        .iter()
        .filter(|(k, _)| k.starts_with("tag_"))
        .map(|(_, v)| v.as_str())
        .collect();
    let mut expected: Vec<&str> = rows.iter().map(|(_, v)| v.as_str()).collect();
    values.sort_unstable();
    expected.sort_unstable();
    assert_eq!(values, expected, "{series:?}");
    for (key, value) in rows {
        let name = label_of(key);
        if rows.iter().filter(|(k, _)| label_of(k) == name).count() == 1 {
            assert_eq!(series.label(&name), value, "{key} in {series:?}");
        }
    }
}

/// (key, value) of the tag rows whose expanded `link` has `field` equal to `id`.
fn tags_of(rows: &[Value], link: &str, field: &str, id: &str) -> Vec<(String, String)> {
    let text = |v: &Value| v.as_str().unwrap().to_string();
    rows.iter()
        .filter(|t| t[link][0][field] == id)
        .map(|t| (text(&t["tag_key"]), text(&t["value"])))
        .collect()
}

#[tokio::test]
async fn every_tag_equals_the_api_and_the_allow_list_narrows_them() {
    let (fake, exporter, samples) = sample_started().await;
    let device_tags = rows(
        &fake,
        "/v7/device_tag?$select=tag_key,value&$expand=device($select=uuid)",
    )
    .await;
    assert!(device_tags.len() >= 5);
    let device_series = family(&samples, "balena_device_tags");
    for s in &device_series {
        check_tags(s, &tags_of(&device_tags, "device", "uuid", s.label("uuid")));
    }
    let fleet_tags = rows(
        &fake,
        "/v7/application_tag?$select=tag_key,value&$expand=application($select=slug)",
    )
    .await;
    for s in &family(&samples, "balena_fleet_tags") {
        let slug = s.label("fleet_slug");
        check_tags(s, &tags_of(&fleet_tags, "application", "slug", slug));
    }
    // Keys that differ only by case stay apart: the sample device 5 has env and Env.
    let sample = Account::sample();
    let probe = device_series
        .iter()
        .find(|s| s.label("uuid") == sample.devices[4].uuid)
        .unwrap();
    assert_eq!(
        (probe.label("tag_env"), probe.label("tag_env_2")),
        ("staging", "prod")
    );
    // Every device has its series (joins keep untagged devices), with tags or without.
    assert_eq!(
        family(&samples, "balena_device_tags").len(),
        Account::sample().devices.len()
    );
    exporter.stop().await.unwrap();

    let (exporter, samples) = started(&fake, &[("TAGS", "site,region")]).await;
    let labels: BTreeSet<String> = family(&samples, "balena_device_tags")
        .iter()
        .chain(&family(&samples, "balena_fleet_tags"))
        .flat_map(|s| s.labels.keys().filter(|k| k.starts_with("tag_")).cloned())
        .collect();
    assert_eq!(
        labels,
        BTreeSet::from(["tag_site".into(), "tag_region".into()])
    );
    exporter.stop().await.unwrap();

    let (exporter, samples) = started(&fake, &[("TAGS", "none")]).await;
    assert!(family(&samples, "balena_device_tags").is_empty());
    assert!(family(&samples, "balena_fleet_tags").is_empty());
    exporter.stop().await.unwrap();
}

#[tokio::test]
async fn location_is_there_only_where_the_server_has_it() {
    // openBalena: no coordinates. The crawl succeeds; the families are absent; asked once.
    let fake = FakeBalena::start(Account::sample()).await;
    let (exporter, _) = started(&fake, &[]).await;
    let samples = exporter
        .wait_metrics("three crawls", |s| {
            value(s, "balena_crawls_total", &[]) >= Some(3.0)
        })
        .await;
    assert_eq!(value(&samples, "balena_up", &[]), Some(1.0));
    assert!(family(&samples, "balena_device_latitude_degrees").is_empty());
    let probes = fake
        .requests()
        .iter()
        .filter(|r| r.raw_query.contains("latitude"))
        .count();
    assert_eq!(probes, 1, "asked once, never in a device page");
    exporter.stop().await.unwrap();

    // balenaCloud: present, with the devices' values.
    let mut account = Account::sample();
    account.cloud_fields = true;
    let cloud = FakeBalena::start(account.clone()).await;
    let (exporter, samples) = started(&cloud, &[]).await;
    for d in &account.devices {
        let coordinate = |v: &Option<String>| v.as_deref().map(|t| t.parse::<f64>().unwrap());
        assert_eq!(
            value(
                &samples,
                "balena_device_latitude_degrees",
                &[("uuid", &d.uuid)]
            ),
            coordinate(&d.latitude)
        );
        assert_eq!(
            value(
                &samples,
                "balena_device_longitude_degrees",
                &[("uuid", &d.uuid)]
            ),
            coordinate(&d.longitude)
        );
    }
    assert_eq!(family(&samples, "balena_device_latitude_degrees").len(), 2);
    exporter.stop().await.unwrap();
}

#[tokio::test]
async fn services_tags_and_location_can_be_turned_off() {
    let mut account = Account::sample();
    account.cloud_fields = true;
    let fake = FakeBalena::start(account).await;
    let (exporter, samples) = started(
        &fake,
        &[
            ("SERVICE_METRICS", "false"),
            ("TAGS", "none"),
            ("LOCATION_METRICS", "false"),
        ],
    )
    .await;
    for name in [
        "balena_service_status",
        "balena_fleet_service_instances",
        "balena_device_tags",
        "balena_device_latitude_degrees",
    ] {
        assert!(family(&samples, name).is_empty(), "{name}");
    }
    let requests = fake.requests();
    assert!(requests.iter().all(|r| r.path != "/v7/service"));
    assert!(requests
        .iter()
        .all(|r| !r.raw_query.contains("image_install")
            && !r.raw_query.contains("_tag")
            && !r.raw_query.contains("latitude")));
    exporter.stop().await.unwrap();
}
