//! Tests of the fake balena API itself (tests/common/fake/): each behaviour it mirrors from
//! the facts recorded in shared/balena-api/. URLs are written literally: reqwest keeps
//! `$ ( ) , / : ; =` and existing `%XX` escapes as they are, and sends `'` as `%27`.

use crate::common;
use common::fake::*;

use std::time::Duration;

const TOKEN: &str = "sample-token";

struct Answer {
    status: u16,
    content_type: Option<String>,
    retry_after: Option<String>,
    body: String,
}

async fn get_with(fake: &FakeBalena, path_and_query: &str, authorization: Option<&str>) -> Answer {
    let mut request = reqwest::Client::new().get(format!("{}{path_and_query}", fake.url()));
    if let Some(value) = authorization {
        request = request.header("Authorization", value);
    }
    let response = request.send().await.expect("request to the fake");
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap_or("?").to_owned())
    };
    let (status, content_type, retry_after) = (
        response.status().as_u16(),
        header("content-type"),
        header("retry-after"),
    );
    let body = response.text().await.expect("body");
    Answer {
        status,
        content_type,
        retry_after,
        body,
    }
}

async fn get(fake: &FakeBalena, path_and_query: &str) -> Answer {
    get_with(fake, path_and_query, Some(&format!("Bearer {TOKEN}"))).await
}

/// Asserts the body of each (path and query, body).
async fn assert_bodies(fake: &FakeBalena, cases: &[(&str, &str)]) {
    for (path_and_query, body) in cases {
        assert_eq!(
            get(fake, path_and_query).await.body,
            *body,
            "{path_and_query}"
        );
    }
}

async fn sample() -> FakeBalena {
    FakeBalena::start(Account::sample()).await
}

/// The ids of the rows `path_and_query` answers.
async fn ids_of(fake: &FakeBalena, path_and_query: &str) -> Vec<u64> {
    ids(&get(fake, path_and_query).await.body)
}

fn ids(body: &str) -> Vec<u64> {
    let v: serde_json::Value = serde_json::from_str(body).expect("JSON body");
    let rows = v["d"].as_array().expect("d is an array");
    rows.iter().map(|r| r["id"].as_u64().expect("id")).collect()
}

fn malformed(path_and_query: &str) -> String {
    format!("\"Malformed url: '{path_and_query}'\"")
}

/// Asserts that each `"key":` occurs in the raw body text, in this order.
fn assert_key_order(body: &str, keys: &[&str]) {
    let mut last = 0;
    for key in keys {
        let at = body
            .find(&format!("\"{key}\":"))
            .unwrap_or_else(|| panic!("{key} missing in {body}"));
        assert!(at >= last, "{key} out of order in {body}");
        last = at;
    }
}

#[tokio::test]
async fn ping_answers_without_a_token() {
    let fake = sample().await;
    let a = get_with(&fake, "/ping", None).await;
    assert_eq!((a.status, a.body.as_str()), (200, "OK"));
}

#[tokio::test]
async fn whoami_accepts_a_known_token_with_any_case_of_bearer() {
    let fake = sample().await;
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let a = get_with(
            &fake,
            "/actor/v1/whoami",
            Some(&format!("{scheme} {TOKEN}")),
        )
        .await;
        assert_eq!(a.status, 200, "{scheme}");
        assert_eq!(
            a.body,
            r#"{"id":1,"actorType":"user","actorTypeId":1,"username":"admin","email":"admin@example.com"}"#
        );
        assert_eq!(
            a.content_type.as_deref(),
            Some("application/json; charset=utf-8")
        );
    }
    assert_eq!(get(&fake, "/user/v1/whoami").await.status, 200);
}

#[tokio::test]
async fn whoami_rejects_unknown_missing_and_malformed_tokens_with_an_empty_401() {
    let fake = sample().await;
    for auth in [
        Some("Bearer nope"),
        None,
        Some(TOKEN),
        Some("Basic sample-token"),
        Some("Bearer "),
    ] {
        let a = get_with(&fake, "/actor/v1/whoami", auth).await;
        assert_eq!((a.status, a.body.as_str()), (401, ""), "{auth:?}");
    }
}

#[tokio::test]
async fn a_guest_sees_no_fleets_but_gets_401_on_devices() {
    let fake = sample().await;
    for auth in [None, Some("Bearer not-a-key")] {
        let a = get_with(&fake, "/v7/application?$select=id,app_name", auth).await;
        assert_eq!((a.status, a.body.as_str()), (200, r#"{"d":[]}"#));
        assert_eq!(
            a.content_type.as_deref(),
            Some("application/json; charset=utf-8")
        );
        for path in [
            "/v7/device?$select=id",
            "/v7/device/$count",
            "/actor/v1/whoami",
        ] {
            let a = get_with(&fake, path, auth).await;
            assert_eq!((a.status, a.body.as_str()), (401, ""), "{path}");
            assert_eq!(a.content_type, None);
        }
    }
    assert!(fake.requests().iter().all(|r| !r.authorized));
}

#[tokio::test]
async fn literal_queries_work_and_percent_encoded_reserved_characters_are_400() {
    let fake = sample().await;
    let ok = "/v7/device?$select=id,device_name&$expand=belongs_to__application($select=app_name)&$filter=id%20eq%201";
    let a = get(&fake, ok).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(
        a.body,
        r#"{"d":[{"belongs_to__application":[{"app_name":"sensors"}],"id":1,"device_name":"sensor-01"}]}"#
    );

    let rejected = [
        "/v7/device?$select=id%2Cdevice_name",
        "/v7/device?$select=id%2cdevice_name",
        "/v7/device?$expand=belongs_to__application%28$select=app_name%29",
        "/v7/device?$expand=belongs_to__application($select=app_name%29",
        "/v7/application?$expand=owns__device/%24count",
        "/v7/device?$filter=belongs_to__application%2Fany(a:a/is_directly_accessible_by__user/any(dau:1%20eq%201))",
        "/v7/application?$filter=is_directly_accessible_by__user/any(dau%3A1%20eq%201)",
        "/v7/application?$expand=owns__device/$count($filter=is_online%20eq%20true%3B)",
        "/v7/device?$filter=id%20eq%201&$select%3Did",
    ];
    for pq in rejected {
        let a = get(&fake, pq).await;
        assert_eq!((a.status, a.body.clone()), (400, malformed(pq)), "{pq}");
        assert_eq!(
            a.content_type.as_deref(),
            Some("application/json; charset=utf-8")
        );
    }
}

#[tokio::test]
async fn encodings_the_odata_grammar_accepts() {
    let fake = sample().await;
    // odata-parser: `Dollar = '$' / '%24'` where an option name starts; spaces are ` `, `%20`
    // or `+`; an apostrophe may be `%27` (reqwest sends `'` so); quoted text is URI-decoded.
    for pq in [
        "/v7/device?%24select=id&$filter=id%20eq%202",
        "/v7/device?$select=id&$filter=id+eq+2",
        "/v7/device?$select=id&$filter=device_name%20eq%20'sensor-02'",
        "/v7/device?$select=id&$filter=device_name%20eq%20%27sensor%2D02%27",
        "/v7/device?$select=id&$expand=is_of__device_type(%24select=slug)&$filter=id%20eq%202",
    ] {
        let a = get(&fake, pq).await;
        assert_eq!(a.status, 200, "{pq}: {}", a.body);
        assert_eq!(ids(&a.body), [2], "{pq}");
    }
}

#[tokio::test]
async fn unknown_fields_and_navigations_are_500_with_an_empty_body() {
    let fake = sample().await;
    for pq in [
        "/v7/device?$select=nope",
        "/v7/device?$select=id,app_name",
        "/v7/device?$filter=nope%20eq%201",
        "/v7/device?$orderby=nope%20asc",
        "/v7/device?$expand=nope",
        "/v7/device?$expand=belongs_to__application($select=nope)",
        "/v7/application?$select=device_name",
        "/v7/application?$select=nope", // also for a guest-visible resource
        "/v7/device?$filter=is_online%20eq%20'yes'",
    ] {
        let a = get(&fake, pq).await;
        assert_eq!(
            (a.status, a.body.as_str(), a.content_type),
            (500, "", None),
            "{pq}"
        );
    }
}

#[tokio::test]
async fn malformed_queries_are_400_and_unknown_resources_401() {
    let fake = sample().await;
    // Recorded verbatim from the real server.
    let a = get(&fake, "/v7/device?$filter=is_online%20eq").await;
    assert_eq!(
        (a.status, a.body.as_str()),
        (
            400,
            r#""Malformed url: '/v7/device?$filter=is_online%20eq'""#
        )
    );
    for pq in [
        "/v7/device?$top=abc",
        "/v7/device?$top=-1",
        "/v7/device?$skip=1.5",
        "/v7/device?$nope=1",
        "/v7/device?$select=id&",
        "/v7/device?$orderby=id%20up",
        "/v7/device?$filter=id%20has%201", // valid OData, but not implemented by the fake
        "/v7/device?$filter=device_name%20eq%20%27unterminated",
        "/v7/device?$filter=id%20eq%201%20", // odata-parser takes no trailing space
        "/v7/device?$select=id,%20device_name",
        "/v7/device?$orderby=id%20",
    ] {
        let a = get(&fake, pq).await;
        assert_eq!((a.status, a.body.clone()), (400, malformed(pq)), "{pq}");
    }
    let a = get(&fake, "/v7/nothing").await;
    assert_eq!((a.status, a.body.as_str()), (401, ""));
    assert_eq!(
        get(&fake, "/v6/device").await.status,
        404,
        "the fake speaks v7 only"
    );
}

#[tokio::test]
async fn orderby_id_without_direction_sorts_descending() {
    let fake = sample().await;
    assert_bodies(
        &fake,
        &[(
            "/v7/device?$select=id&$orderby=id",
            r#"{"d":[{"id":8},{"id":7},{"id":6},{"id":5},{"id":4},{"id":3},{"id":2},{"id":1}]}"#,
        )],
    )
    .await;
    assert_eq!(
        ids_of(&fake, "/v7/device?$select=id&$orderby=id%20asc").await,
        [1, 2, 3, 4, 5, 6, 7, 8]
    );
    assert_eq!(
        ids_of(&fake, "/v7/device?$select=id&$orderby=id%20desc").await,
        [8, 7, 6, 5, 4, 3, 2, 1]
    );
    assert_eq!(
        ids_of(&fake, "/v7/device?$select=id").await,
        [1, 2, 3, 4, 5, 6, 7, 8],
        "default: id ascending"
    );
    let by_name = get(
        &fake,
        "/v7/application?$select=id&$orderby=app_name%20asc,id%20desc",
    )
    .await;
    assert_eq!(ids(&by_name.body), [3, 2, 1]);
}

#[tokio::test]
async fn top_and_skip_page_after_filter_and_sort() {
    let fake = sample().await;
    let a = get(
        &fake,
        "/v7/device?$select=id&$orderby=id%20asc&$top=2&$skip=1",
    )
    .await;
    assert_eq!(a.body, r#"{"d":[{"id":2},{"id":3}]}"#);

    let (mut all, mut skip) = (Vec::<u64>::new(), 0);
    loop {
        let page = ids_of(
            &fake,
            &format!("/v7/device?$select=id&$orderby=id%20asc&$top=3&$skip={skip}"),
        )
        .await;
        all.extend(&page);
        skip += 3;
        if page.len() < 3 {
            break;
        }
    }
    assert_eq!(all, [1, 2, 3, 4, 5, 6, 7, 8]);
    let online = get(
        &fake,
        "/v7/device?$select=id&$filter=is_online%20eq%20true&$orderby=id%20desc&$top=2&$skip=1",
    )
    .await;
    assert_eq!(ids(&online.body), [6, 5]);
    assert_eq!(
        ids_of(&fake, "/v7/device?$select=id&$top=100000")
            .await
            .len(),
        8,
        "no server cap"
    );
}

#[tokio::test]
async fn expansions_are_arrays_and_a_null_link_is_an_empty_array() {
    let fake = sample().await;
    let q = "$select=id&$expand=is_running__release($select=commit),is_pinned_on__release($select=id),should_be_running__release($select=id)";
    assert_bodies(&fake, &[(&format!("/v7/device?{q}&$filter=id%20eq%208"), r#"{"d":[{"is_running__release":[],"is_pinned_on__release":[],"should_be_running__release":[],"id":8}]}"#)]).await;
    let running = get(&fake, &format!("/v7/device?{q}&$filter=id%20eq%201")).await;
    let v: serde_json::Value = serde_json::from_str(&running.body).expect("JSON");
    let commit = v["d"][0]["is_running__release"][0]["commit"]
        .as_str()
        .expect("commit");
    assert_eq!(commit.len(), 32);
    assert_eq!(v["d"][0]["is_pinned_on__release"], serde_json::json!([]));
    assert_eq!(
        v["d"][0]["should_be_running__release"],
        serde_json::json!([{"id": 11}]),
        "fleet target"
    );
    let pinned = get(&fake, &format!("/v7/device?{q}&$filter=id%20eq%204")).await;
    assert!(
        pinned.body.contains(
            r#""is_pinned_on__release":[{"id":10}],"should_be_running__release":[{"id":10}]"#
        ),
        "{}",
        pinned.body
    );
    assert_bodies(&fake, &[("/v7/application?$select=id&$expand=should_be_running__release($select=commit),organization($select=id,handle)&$filter=id%20eq%203", r#"{"d":[{"should_be_running__release":[],"organization":[{"id":1,"handle":"acme"}],"id":3}]}"#)]).await;
}

#[tokio::test]
async fn expanded_keys_come_first_then_fields_in_select_order() {
    let fake = sample().await;
    assert_bodies(&fake, &[("/v7/device?$select=is_online,device_name&$expand=is_of__device_type($select=slug),belongs_to__application($select=slug,id)&$filter=id%20eq%201", r#"{"d":[{"is_of__device_type":[{"slug":"raspberrypi4-64"}],"belongs_to__application":[{"slug":"acme/sensors","id":1}],"is_online":true,"device_name":"sensor-01"}]}"#)]).await;
    let all = get(
        &fake,
        "/v7/device?$expand=belongs_to__application($select=slug)&$filter=id%20eq%208",
    )
    .await;
    let rest = device_fields()
        .iter()
        .filter(|f| **f != "belongs_to__application");
    assert_key_order(
        &all.body,
        &[vec!["belongs_to__application"], rest.copied().collect()].concat(),
    );
    let fleet = get(&fake, "/v7/application?$filter=id%20eq%201").await;
    assert_key_order(&fleet.body, fleet_fields());
}

#[tokio::test]
async fn links_that_are_not_expanded_are_id_objects_or_null() {
    let fake = sample().await;
    // The fake numbers organizations and device types from 1, in name order when first seen.
    assert_bodies(
        &fake,
        &[
            (
                "/v7/device?$select=belongs_to__application,is_running__release,should_be_running__release&$filter=id%20eq%208",
                r#"{"d":[{"belongs_to__application":{"__id":3},"is_running__release":null,"should_be_running__release":null}]}"#,
            ),
            (
                "/v7/device?$select=is_pinned_on__release,should_be_running__release&$filter=id%20eq%204",
                r#"{"d":[{"is_pinned_on__release":{"__id":10},"should_be_running__release":{"__id":10}}]}"#,
            ),
            (
                "/v7/application?$select=organization,is_for__device_type&$filter=id%20eq%202",
                r#"{"d":[{"organization":{"__id":2},"is_for__device_type":{"__id":2}}]}"#,
            ),
            (
                "/v7/device?$select=cpu_usage,cpu_temp,memory_usage,memory_total,storage_usage,storage_total,os_version&$filter=id%20eq%208",
                r#"{"d":[{"cpu_usage":null,"cpu_temp":null,"memory_usage":null,"memory_total":null,"storage_usage":null,"storage_total":null,"os_version":null}]}"#,
            ),
        ],
    )
    .await;
}

#[tokio::test]
async fn fleets_with_the_same_name_in_two_organizations() {
    let fake = sample().await;
    let a = get(&fake, "/v7/application?$select=id,app_name,slug&$expand=organization($select=handle)&$filter=is_directly_accessible_by__user/any(dau:1%20eq%201)").await;
    assert_eq!(
        a.body,
        concat!(
            r#"{"d":[{"organization":[{"handle":"acme"}],"id":1,"app_name":"sensors","slug":"acme/sensors"},"#,
            r#"{"organization":[{"handle":"globex"}],"id":2,"app_name":"sensors","slug":"globex/sensors"},"#,
            r#"{"organization":[{"handle":"acme"}],"id":3,"app_name":"gateways","slug":"acme/gateways"}]}"#
        )
    );
}

#[tokio::test]
async fn count_is_a_bare_integer_that_agrees_with_the_list() {
    let fake = sample().await;
    let a = get(
        &fake,
        "/v7/device/$count?$filter=belongs_to__application%20eq%201%20and%20is_online%20eq%20true",
    )
    .await;
    assert_eq!((a.status, a.body.as_str()), (200, r#"{"d":3}"#));
    for filter in [
        "is_online%20eq%20false",
        "overall_status%20eq%20'operational'",
        "api_heartbeat_state%20eq%20'unknown'",
        "belongs_to__application/any(a:a/is_directly_accessible_by__user/any(dau:1%20eq%201))",
    ] {
        let count = get(&fake, &format!("/v7/device/$count?$filter={filter}"))
            .await
            .body;
        let list = ids(
            &get(&fake, &format!("/v7/device?$select=id&$filter={filter}"))
                .await
                .body,
        );
        assert_eq!(count, format!(r#"{{"d":{}}}"#, list.len()), "{filter}");
    }
    assert_eq!(get(&fake, "/v7/device/$count").await.body, r#"{"d":8}"#);
    assert_eq!(
        get(&fake, "/v7/application/$count").await.body,
        r#"{"d":3}"#
    );
}

#[tokio::test]
async fn filters() {
    let fake = sample().await;
    let f = |filter: &str| format!("/v7/device?$select=id&$filter={filter}");
    assert_eq!(ids_of(&fake, &f("is_online%20eq%20false")).await, [2, 8]);
    assert_eq!(
        ids_of(&fake, &f("overall_status%20eq%20'operational'")).await,
        [1, 4, 5]
    );
    assert_eq!(
        ids_of(&fake, &f("api_heartbeat_state%20ne%20'online'")).await,
        [2, 3, 7, 8]
    );
    assert_eq!(ids_of(&fake, &f("os_version%20eq%20null")).await, [8]);
    // pinejs gives `and` and `or` the same precedence, left to right: (1 or 2) and offline.
    assert_eq!(
        ids_of(
            &fake,
            &f("id%20eq%201%20or%20id%20eq%202%20and%20is_online%20eq%20false")
        )
        .await,
        [2]
    );
    assert_eq!(
        ids_of(
            &fake,
            &f("id%20eq%201%20or%20(id%20eq%202%20and%20is_online%20eq%20false)")
        )
        .await,
        [1, 2]
    );
    // Order comparisons, as keyset paging uses them; null compares as nothing.
    assert_eq!(ids_of(&fake, &f("id%20gt%205")).await, [6, 7, 8]);
    assert_eq!(ids_of(&fake, &f("id%20le%202")).await, [1, 2]);
    assert_eq!(
        ids_of(&fake, &f("cpu_temp%20ge%2080")).await,
        [3],
        "device 8 has no temperature"
    );
    assert_eq!(get(&fake, &f("is_online%20gt%20false")).await.status, 500);
    let fleets = get(
        &fake,
        "/v7/application?$select=id&$filter=(is_directly_accessible_by__user/any(dau:1%20eq%201))%20and%20id%20gt%201",
    )
    .await;
    assert_eq!(ids(&fleets.body), [2, 3]);
    let wrong_resource = get(
        &fake,
        "/v7/device?$filter=is_directly_accessible_by__user/any(dau:1%20eq%201)",
    )
    .await;
    assert_eq!(wrong_resource.status, 500);
}

#[tokio::test]
async fn owns_device_count_expansion_and_read_by_key() {
    let fake = sample().await;
    assert_bodies(&fake, &[("/v7/application?$select=id,app_name&$expand=owns__device/$count($filter=is_online%20eq%20true)", r#"{"d":[{"owns__device":3,"id":1,"app_name":"sensors"},{"owns__device":2,"id":2,"app_name":"sensors"},{"owns__device":1,"id":3,"app_name":"gateways"}]}"#)]).await;
    assert_eq!(
        get(&fake, "/v7/application(1)?$select=id,app_name")
            .await
            .body,
        r#"{"d":[{"id":1,"app_name":"sensors"}]}"#
    );
    assert_eq!(
        get(&fake, "/v7/application(999)?$select=id,app_name")
            .await
            .body,
        r#"{"d":[]}"#
    );
    assert_eq!(
        get(&fake, "/v7/device(3)?$select=device_name").await.body,
        r#"{"d":[{"device_name":"sensor-03"}]}"#
    );
}

#[tokio::test]
async fn set_account_replaces_the_data() {
    let fake = sample().await;
    let mut account = Account::sample();
    account.devices.retain(|d| d.fleet_id != 3);
    account.fleets.retain(|f| f.id != 3);
    account.devices[0].is_online = false;
    fake.set_account(account);
    assert_eq!(ids_of(&fake, "/v7/application?$select=id").await, [1, 2]);
    assert_eq!(
        ids_of(
            &fake,
            "/v7/device?$select=id&$filter=is_online%20eq%20false"
        )
        .await,
        [1, 2]
    );
    fake.set_account(Account {
        tokens: vec!["other".into()],
        ..Account::sample()
    });
    assert_eq!(
        get(&fake, "/v7/device?$select=id").await.status,
        401,
        "old token revoked"
    );
}

#[tokio::test]
async fn requests_are_recorded_in_order() {
    let fake = sample().await;
    get(&fake, "/v7/device?$select=id&$filter=id%20eq%201").await;
    get_with(&fake, "/v7/device", None).await;
    get(&fake, "/v7/device?$select=nope").await;
    let status = reqwest::Client::new()
        .post(format!("{}/v7/device", fake.url()))
        .send()
        .await
        .expect("post")
        .status();
    assert_eq!(status.as_u16(), 405, "only GET is served");
    let recorded = fake.requests();
    let r = |method: &str, path: &str, raw_query: &str, authorized, status| Recorded {
        method: method.into(),
        path: path.into(),
        raw_query: raw_query.into(),
        authorized,
        status,
        user_agent: String::new(),
        body_bytes: 0,
    };
    assert_eq!(
        recorded,
        [
            Recorded {
                body_bytes: r#"{"d":[{"id":1}]}"#.len(), // not asked for gzip
                ..r(
                    "GET",
                    "/v7/device",
                    "$select=id&$filter=id%20eq%201",
                    true,
                    200
                )
            },
            r("GET", "/v7/device", "", false, 401),
            r("GET", "/v7/device", "$select=nope", true, 500),
            r("POST", "/v7/device", "", false, 405),
        ]
    );
    fake.clear_requests();
    assert!(fake.requests().is_empty());
}

#[tokio::test]
async fn faults() {
    let fake = sample().await;
    let pq = "/v7/device?$select=id,device_name";
    let normal = get(&fake, pq).await.body;

    fake.set_fault(Some(Fault::Unavailable));
    let a = get(&fake, pq).await;
    assert_eq!((a.status, a.body.as_str()), (503, ""));
    assert_eq!(get(&fake, "/actor/v1/whoami").await.status, 503);
    assert_eq!(
        get(&fake, "/ping").await.status,
        200,
        "ping is never faulted"
    );

    fake.set_fault(Some(Fault::RateLimited {
        retry_after_secs: 7,
    }));
    let a = get(&fake, "/v7/application").await;
    assert_eq!((a.status, a.retry_after.as_deref()), (429, Some("7")));

    fake.set_fault(Some(Fault::Truncated));
    let a = get(&fake, pq).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body, normal[..normal.len() / 2]);
    assert!(serde_json::from_str::<serde_json::Value>(&a.body).is_err());

    fake.set_fault(Some(Fault::Malformed));
    let a = get(&fake, pq).await;
    assert_eq!((a.status, a.body.as_str()), (200, "<html>oops"));
    assert_eq!(
        a.content_type.as_deref(),
        Some("application/json; charset=utf-8")
    );

    fake.set_fault(Some(Fault::Hang));
    fake.clear_requests();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .expect("client");
    let err = client
        .get(format!("{}{pq}", fake.url()))
        .send()
        .await
        .expect_err("hangs");
    assert!(err.is_timeout(), "{err}");
    assert_eq!(
        fake.requests()[0].status,
        0,
        "recorded before answering; never answered"
    );

    fake.set_fault(None);
    assert_eq!(get(&fake, pq).await.body, normal);
    let statuses: Vec<u16> = fake.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [0, 200]);
}

#[tokio::test]
async fn a_page_cap_shortens_reads_whatever_top_says() {
    let fake = sample().await;
    fake.set_max_top(Some(3));
    let q = "/v7/device?$select=id&$orderby=id%20asc";
    assert_eq!(ids_of(&fake, &format!("{q}&$top=1000")).await, [1, 2, 3]);
    assert_eq!(ids_of(&fake, q).await, [1, 2, 3]);
    assert_eq!(ids_of(&fake, &format!("{q}&$top=2")).await, [1, 2]);
    fake.set_max_top(None);
    assert_eq!(ids_of(&fake, &format!("{q}&$top=1000")).await.len(), 8);
}

#[tokio::test]
async fn churn_deletes_the_first_device_of_each_page_and_adds_one() {
    let fake = sample().await;
    fake.set_churn(2);
    let q = "/v7/device?$select=id&$orderby=id%20asc&$top=3";
    assert_eq!(ids_of(&fake, q).await, [1, 2, 3]);
    // Device 1 is gone and device 9 came: an offset of 3 now skips device 4.
    assert_eq!(ids_of(&fake, &format!("{q}&$skip=3")).await, [5, 6, 7]);
    let left: Vec<u64> = fake.account().devices.iter().map(|d| d.id).collect();
    assert_eq!(left, [2, 3, 4, 6, 7, 8, 9, 10]);
}

#[tokio::test]
async fn nested_expansions_with_their_own_options() {
    let mut account = Account::sample();
    account.services = vec![
        Service {
            id: 1,
            fleet_id: 1,
            name: "main".into(),
            restart: None,
        },
        Service {
            id: 2,
            fleet_id: 1,
            name: "sidecar".into(),
            restart: Some("no".into()),
        },
    ];
    let install = |id, service_id, release_id, status: &str| Install {
        id,
        service_id,
        release_id,
        status: status.into(),
        download_progress: None,
    };
    account.devices[0].installs = vec![
        install(1, 1, 10, "deleted"),
        install(2, 1, 11, "Running"),
        install(3, 2, 11, "exited"),
    ];
    account.devices[0].tags = vec![("site".into(), "Köln".into())];
    let fake = FakeBalena::start(account).await;
    let a = get(
        &fake,
        "/v7/device?$select=id&$expand=image_install($select=id,status,is_provided_by__release;\
         $expand=installs__image($select=is_a_build_of__service);\
         $filter=status%20ne%20'deleted';$orderby=id%20asc),device_tag($select=tag_key,value)\
         &$filter=id%20eq%201",
    )
    .await;
    assert_eq!(
        a.body,
        r#"{"d":[{"image_install":[{"installs__image":[{"is_a_build_of__service":{"__id":1}}],"id":2,"status":"Running","is_provided_by__release":{"__id":11}},{"installs__image":[{"is_a_build_of__service":{"__id":2}}],"id":3,"status":"exited","is_provided_by__release":{"__id":11}}],"device_tag":[{"tag_key":"site","value":"Köln"}],"id":1}]}"#
    );
    // Without their own $orderby, nested lists come in no particular order.
    assert_bodies(
        &fake,
        &[(
            "/v7/device?$select=id&$expand=image_install($select=id)&$filter=id%20eq%201",
            r#"{"d":[{"image_install":[{"id":3},{"id":2},{"id":1}],"id":1}]}"#,
        )],
    )
    .await;
    // An unknown nested field or navigation is a 500, as at the top level.
    for bad in [
        "/v7/device?$expand=image_install($select=nope)",
        "/v7/device?$expand=image_install($expand=nope)",
        "/v7/device?$expand=installs($select=id)",
    ] {
        assert_eq!(get(&fake, bad).await.status, 500, "{bad}");
    }
    assert_bodies(
        &fake,
        &[(
            "/v7/service?$select=id,service_name&$orderby=id%20asc",
            r#"{"d":[{"id":1,"service_name":"main"},{"id":2,"service_name":"sidecar"}]}"#,
        )],
    )
    .await;
    // As recorded: a guest gets 401 on installs and device tags, an empty 200 on services.
    let guest = Some("Bearer nobody");
    assert_eq!(
        get_with(&fake, "/v7/image_install", guest).await.status,
        401
    );
    assert_eq!(get_with(&fake, "/v7/device_tag", guest).await.status, 401);
    let empty = get_with(&fake, "/v7/service", guest).await;
    assert_eq!((empty.status, empty.body.as_str()), (200, r#"{"d":[]}"#));
}

#[tokio::test]
async fn balena_cloud_fields_exist_only_when_the_account_has_them() {
    let q = "/v7/device?$select=id,latitude,longitude&$filter=id%20eq%201";
    let open_balena = sample().await;
    let a = get(&open_balena, q).await;
    assert_eq!((a.status, a.body.as_str(), a.content_type), (500, "", None));
    let mut account = Account::sample();
    account.cloud_fields = true;
    let cloud = FakeBalena::start(account).await;
    assert_eq!(
        get(&cloud, q).await.body,
        r#"{"d":[{"id":1,"latitude":"52.52","longitude":"13.405"}]}"#
    );
}

#[tokio::test]
async fn a_device_key_passes_whoami_as_a_device() {
    let mut account = Account::sample();
    account.device_keys = vec![("device-5-key".into(), 5)];
    let fake = FakeBalena::start(account).await;
    let a = get_with(&fake, "/actor/v1/whoami", Some("Bearer device-5-key")).await;
    assert_eq!(a.status, 200);
    let actor: serde_json::Value = serde_json::from_str(&a.body).unwrap();
    assert_eq!(actor["actorType"], "device");
    assert_eq!(
        get_with(&fake, "/v7/device", Some("Bearer device-5-key"))
            .await
            .status,
        401
    );
}

/// The releases in use (fleet targets, pins, running releases) with their compositions, as
/// `recorded/release-running-page.json` reads them, and a guest's empty answer.
#[tokio::test]
async fn releases_in_use_with_their_restart_policies() {
    let mut account = Account::sample();
    account.services[1].restart = Some("no".into());
    let fake = FakeBalena::start(account).await;
    let query = "/v7/release?$select=id,composition&$filter=(should_be_running_on__application/any(a:1%20eq%201)%20or%20is_running_on__device/any(d:1%20eq%201)%20or%20is_pinned_to__device/any(d:1%20eq%201))%20and%20id%20gt%200&$orderby=id%20asc&$top=100";
    let answer = get(&fake, query).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    // Fleet targets 11 and 21, pin 10, running 10, 11, 20, 21; release 9 only has a deleted install.
    assert_eq!(ids(&answer.body), [10, 11, 20, 21]);
    let v: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
    let sensors = &v["d"][0]["composition"]["services"];
    assert_eq!(sensors["sensor-reader"]["restart"], "no");
    assert!(sensors["main"].get("restart").is_none());
    let guest = get_with(&fake, query, None).await;
    assert_eq!((guest.status, guest.body.as_str()), (200, r#"{"d":[]}"#));
}

// ------------------------------------------------------------------ modified_at, incremental reads

/// `path_and_query` with every space sent as `%20`, as the exporter sends it.
fn spaced(path_and_query: &str) -> String {
    path_and_query.replace(' ', "%20")
}

/// The ids and modified_at of the rows of `resource` matching `filter` (all rows if empty).
async fn stamps(fake: &FakeBalena, resource: &str, filter: &str) -> Vec<(u64, String)> {
    let filter = if filter.is_empty() {
        String::new()
    } else {
        format!("&$filter={filter}")
    };
    let a = get(
        fake,
        &spaced(&format!(
            "/v7/{resource}?$select=id,modified_at&$orderby=id asc{filter}"
        )),
    )
    .await;
    assert_eq!(a.status, 200, "{resource}: {}", a.body);
    let v: serde_json::Value = serde_json::from_str(&a.body).expect("JSON");
    v["d"]
        .as_array()
        .expect("d is an array")
        .iter()
        .map(|r| {
            let at = r["modified_at"].as_str().expect("modified_at").to_owned();
            (r["id"].as_u64().expect("id"), at)
        })
        .collect()
}

/// The modified_at of row `id` of `resource`.
async fn stamp(fake: &FakeBalena, resource: &str, id: u64) -> String {
    let rows = stamps(fake, resource, &format!("id eq {id}")).await;
    assert_eq!(rows.len(), 1, "{resource} {id}");
    rows[0].1.clone()
}

/// The rows of `before` and `after` whose modified_at differs (or that are new), by id.
fn bumped(before: &[(u64, String)], after: &[(u64, String)]) -> Vec<u64> {
    after
        .iter()
        .filter(|row| !before.contains(row))
        .map(|(id, _)| *id)
        .collect()
}

/// The id of the tag `key` of device `device`.
async fn tag_id(fake: &FakeBalena, device: u64, key: &str) -> u64 {
    let a = get(
        fake,
        &spaced(&format!(
            "/v7/device_tag?$select=id&$filter=device eq {device} and tag_key eq '{key}'"
        )),
    )
    .await;
    ids(&a.body)[0]
}

/// Every resource the fake serves.
const RESOURCES: &[&str] = &[
    "device",
    "image_install",
    "device_tag",
    "application",
    "application_tag",
    "release",
    "service",
    "image",
    "organization",
    "device_type",
];

#[tokio::test]
async fn every_resource_has_modified_at_to_the_millisecond() {
    let fake = sample().await;
    for resource in RESOURCES {
        let rows = stamps(&fake, resource, "").await;
        assert!(!rows.is_empty(), "{resource}");
        for (id, at) in rows {
            let shape = at.len() == 24
                && at.char_indices().all(|(i, c)| match i {
                    4 | 7 => c == '-',
                    10 => c == 'T',
                    13 | 16 => c == ':',
                    19 => c == '.',
                    23 => c == 'Z',
                    _ => c.is_ascii_digit(),
                });
            assert!(shape, "{resource} {id}: {at}");
        }
    }
}

#[tokio::test]
async fn a_device_write_bumps_only_the_device() {
    let fake = sample().await;
    let before: Vec<_> = {
        let mut all = Vec::new();
        for resource in RESOURCES {
            all.push(stamps(&fake, resource, "").await);
        }
        all
    };
    // The same account again: no row changed, none is bumped.
    fake.set_account(Account::sample());
    for (resource, rows) in RESOURCES.iter().zip(&before) {
        assert_eq!(&stamps(&fake, resource, "").await, rows, "{resource}");
    }
    let mut account = Account::sample();
    account.devices[0].cpu_usage = Some(60); // device 1: a metric
    account.devices[2].overall_status = "operational".into(); // device 3: stored in the fake
    account.devices[3].fleet_id = 2; // device 4 moves to fleet 2
    fake.set_account(account);
    for (resource, rows) in RESOURCES.iter().zip(&before) {
        let after = stamps(&fake, resource, "").await;
        let expected: &[u64] = if *resource == "device" {
            &[1, 3, 4]
        } else {
            &[]
        };
        assert_eq!(bumped(rows, &after), expected, "{resource}");
    }
    let d1 = stamp(&fake, "device", 1).await;
    assert!(d1 > before[0][0].1, "later than before: {d1}");
    // All rows of one write share its time.
    assert_eq!(stamp(&fake, "device", 3).await, d1);
    assert_eq!(stamp(&fake, "device", 4).await, d1);
}

#[tokio::test]
async fn a_computed_field_or_a_fleet_change_does_not_bump_its_devices() {
    let fake = sample().await;
    let devices = stamps(&fake, "device", "").await;
    let fleets = stamps(&fake, "application", "").await;
    let mut account = Account::sample();
    // Fleet 1's target moves on: the v7 should_be_running__release of devices 1-3 follows.
    account.fleets[0].target_release = Some(Release {
        id: 12,
        commit: commit(12),
    });
    fake.set_account(account);
    assert_eq!(
        bumped(&fleets, &stamps(&fake, "application", "").await),
        [1]
    );
    assert_eq!(
        bumped(&devices, &stamps(&fake, "device", "").await),
        [0u64; 0]
    );
    let target = get(
        &fake,
        "/v7/device?$select=should_be_running__release&$filter=id%20eq%201",
    )
    .await;
    assert_eq!(
        target.body,
        r#"{"d":[{"should_be_running__release":{"__id":12}}]}"#
    );
}

#[tokio::test]
async fn a_tag_or_install_write_bumps_only_that_row() {
    let fake = sample().await;
    let devices = stamps(&fake, "device", "").await;
    let tags = stamps(&fake, "device_tag", "").await;
    let installs = stamps(&fake, "image_install", "").await;
    let site = tag_id(&fake, 1, "site").await;
    let mut account = Account::sample();
    account.devices[0].tags[0].1 = "Bonn".into(); // device 1, site
    account.devices[1].installs[1].status = "Running".into(); // install 4 (was exited)
    account.devices[5].installs[1].download_progress = Some(40); // install 14 (was 10)
    fake.set_account(account);
    assert_eq!(
        bumped(&devices, &stamps(&fake, "device", "").await),
        [0u64; 0]
    );
    assert_eq!(
        bumped(&tags, &stamps(&fake, "device_tag", "").await),
        [site]
    );
    assert_eq!(
        bumped(&installs, &stamps(&fake, "image_install", "").await),
        [4, 14]
    );
}

#[tokio::test]
async fn tags_keep_their_ids_and_a_new_row_is_stamped_now() {
    let fake = sample().await;
    let env = tag_id(&fake, 5, "env").await;
    let customer = tag_id(&fake, 6, "customer").await;
    let tags = stamps(&fake, "device_tag", "").await;
    let mut account = Account::sample();
    account.devices.retain(|d| d.id != 1); // its two tags go
    account.devices[3].tags.push(("room".into(), "12".into())); // device 5: a new tag
    fake.set_account(account);
    assert_eq!(tag_id(&fake, 5, "env").await, env, "ids do not shift");
    assert_eq!(tag_id(&fake, 6, "customer").await, customer);
    let room = tag_id(&fake, 5, "room").await;
    assert!(room > customer, "a new id: {room}");
    assert_eq!(
        bumped(&tags, &stamps(&fake, "device_tag", "").await),
        [room]
    );
}

#[tokio::test]
async fn writes_get_strictly_later_times() {
    let fake = sample().await;
    let mut seen = vec![stamp(&fake, "device", 1).await];
    for cpu in [1, 2, 3] {
        let mut account = Account::sample();
        account.devices[0].cpu_usage = Some(cpu);
        fake.set_account(account);
        seen.push(stamp(&fake, "device", 1).await);
    }
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
}

/// `modified_at` of device 3 shifted by `ms` milliseconds, in the fake's format.
fn shifted(at: &str, ms: i64) -> String {
    let millis = |s: &str| s.parse::<i64>().expect("digits");
    // Within one day: enough for the shifts below.
    let (day, time) = at.split_once('T').expect("T");
    let (hms, rest) = time.split_once('.').expect(".");
    let parts: Vec<i64> = hms.split(':').map(millis).collect();
    let total = ((parts[0] * 60 + parts[1]) * 60 + parts[2]) * 1000 + millis(&rest[..3]) + ms;
    assert!(
        (0..86_400_000).contains(&total),
        "the test runs near midnight"
    );
    format!(
        "{day}T{:02}:{:02}:{:02}.{:03}Z",
        total / 3_600_000,
        total / 60_000 % 60,
        total / 1000 % 60,
        total % 1000
    )
}

#[tokio::test]
async fn modified_at_compares_exactly_to_the_millisecond() {
    let fake = sample().await;
    let mut account = Account::sample();
    account.devices[2].cpu_usage = Some(1);
    fake.set_account(account); // device 3 alone has the newest time
    let at = stamp(&fake, "device", 3).await;
    let (day, time) = at.split_once('T').expect("T");
    let second = &time[..8];
    let ms = &time[9..12];
    let hour: i64 = time[..2].parse().expect("hour");
    let fake = &fake;
    let count = |filter: String| async move {
        let a = get(
            fake,
            &spaced(&format!("/v7/device/$count?$filter={filter}")),
        )
        .await;
        assert_eq!(a.status, 200, "{filter}: {}", a.body);
        a.body
    };
    let device3 = |filter: String| async move {
        let q = format!("/v7/device?$select=id&$filter=id eq 3 and {filter}");
        let a = get(fake, &spaced(&q)).await;
        assert_eq!(a.status, 200, "{filter}: {}", a.body);
        ids(&a.body) == [3]
    };
    let cases: Vec<(String, bool)> = vec![
        (format!("modified_at gt '{at}'"), false),
        (format!("modified_at eq '{at}'"), true),
        (format!("modified_at ge '{at}'"), true),
        (format!("modified_at lt '{at}'"), false),
        (format!("modified_at le '{at}'"), true),
        (format!("modified_at ne '{at}'"), false),
        (format!("modified_at gt '{}'", shifted(&at, -1)), true),
        (format!("modified_at lt '{}'", shifted(&at, 1)), true),
        // Without milliseconds, the whole second: device 3 is later unless ms is 000.
        (format!("modified_at gt '{day}T{second}Z'"), ms != "000"),
        (format!("modified_at ge '{day}T{second}Z'"), true),
        (format!("modified_at gt '{day} {second}'"), ms != "000"),
        (format!("modified_at eq '{day}T{second}.{ms}000Z'"), true),
        (format!("modified_at gt '{day}T{second}.{ms}9Z'"), false),
        (format!("modified_at lt '{day}T{second}.{ms}1Z'"), true),
        (format!("modified_at gt '{day}'"), true),
        ("modified_at gt null".to_string(), false),
    ];
    for (filter, holds) in cases {
        assert_eq!(device3(filter.clone()).await, holds, "{filter}");
    }
    // An offset is honoured: the same instant written in +01:00 (or -02:30).
    if (1..22).contains(&hour) {
        let plus_one = format!("{day}T{:02}{}+01:00", hour + 1, &time[2..12]);
        assert!(device3(format!("modified_at eq '{plus_one}'")).await);
        let minus = format!("{day}T{:02}{}-0100", hour - 1, &time[2..12]);
        assert!(device3(format!("modified_at eq '{minus}'")).await);
    }
    // $count agrees: device 3 alone is after the others.
    assert_eq!(
        count(format!("modified_at gt '{}'", shifted(&at, -1))).await,
        r#"{"d":1}"#
    );
    assert_eq!(count(format!("modified_at ge '{at}'")).await, r#"{"d":1}"#);
    assert_eq!(count(format!("modified_at gt '{at}'")).await, r#"{"d":0}"#);
    assert_eq!(count(format!("modified_at lt '{at}'")).await, r#"{"d":7}"#);
    assert_eq!(count(format!("modified_at le '{at}'")).await, r#"{"d":8}"#);
}

#[tokio::test]
async fn timestamp_literals_that_are_none_are_500_and_unquoted_ones_400() {
    let fake = sample().await;
    for filter in [
        "modified_at gt 'not-a-date'",
        "modified_at gt ''",
        "modified_at gt 1765129364154",
        "modified_at eq '2026-13-01T00:00:00Z'",
        "modified_at gt '2026-02-30'",
        "modified_at gt '2026-12-07T25:00:00Z'",
        "modified_at gt '2026-12-07T17:42:44.Z'",
        "modified_at gt true",
        "image_install/any(i:i/modified_at gt 'yesterday')",
    ] {
        for path in [
            "/v7/device?$select=id&$filter=",
            "/v7/device/$count?$filter=",
        ] {
            let a = get(&fake, &spaced(&format!("{path}{filter}"))).await;
            assert_eq!(
                (a.status, a.body.as_str(), a.content_type),
                (500, "", None),
                "{path}{filter}"
            );
        }
    }
    let pq = spaced("/v7/device?$select=id&$filter=modified_at gt 2026-12-07T17:42:44.154Z");
    let a = get(&fake, &pq).await;
    assert_eq!((a.status, a.body), (400, malformed(&pq)));
}

#[tokio::test]
async fn id_mod_n_is_500_as_recorded() {
    let fake = sample().await;
    for pq in [
        "/v7/device?$select=id&$filter=id mod 4 eq 1",
        "/v7/device?$select=id&$filter=(id mod 4) eq 1",
        "/v7/device/$count?$filter=id mod 4 eq 1",
        "/v7/device?$select=id&$filter=id gt 0 and id mod 2 eq 0",
    ] {
        let a = get(&fake, &spaced(pq)).await;
        assert_eq!((a.status, a.body.as_str()), (500, ""), "{pq}");
    }
    // Ranges work.
    assert_eq!(
        ids_of(
            &fake,
            &spaced("/v7/device?$select=id&$filter=id gt 2 and id le 4")
        )
        .await,
        [3, 4]
    );
}

/// The filter of fleets the exporter uses: all visible fleets, or a list of fleet ids.
const VISIBLE: &str =
    "belongs_to__application/any(a:a/is_directly_accessible_by__user/any(dau:1 eq 1))";
const LISTED: &str = "belongs_to__application eq 1 or belongs_to__application eq 3";

/// The exporter's read of devices changed since `since` (request 2 of an incremental crawl).
fn changed_since(fleets: &str, since: &str, after: u64) -> String {
    spaced(&format!(
        "/v7/device?$select=id,uuid,overall_status,modified_at\
         &$expand=image_install($select=id,status,modified_at),device_tag($select=tag_key,value)\
         &$filter=({fleets}) and (modified_at gt '{since}' \
         or image_install/any(i:i/modified_at gt '{since}') \
         or device_tag/any(t:t/modified_at gt '{since}')) and id gt {after}\
         &$orderby=id asc&$top=1000"
    ))
}

#[tokio::test]
async fn lambdas_find_devices_whose_only_change_is_a_tag_or_an_install() {
    let fake = sample().await;
    let since = stamps(&fake, "device", "")
        .await
        .into_iter()
        .map(|(_, at)| at)
        .max()
        .expect("devices");
    for fleets in [VISIBLE, LISTED] {
        let a = get(&fake, &changed_since(fleets, &since, 0)).await;
        assert_eq!(
            (a.status, a.body.as_str()),
            (200, r#"{"d":[]}"#),
            "{fleets}"
        );
    }
    let mut account = Account::sample();
    account.devices[4].tags[0].1 = "test".into(); // device 5: a tag only
    account.devices[1].installs[1].status = "Running".into(); // device 2: an install only
    account.devices[6].cpu_usage = Some(40); // device 7: the device row (was 20)
    fake.set_account(account);
    let a = get(&fake, &changed_since(VISIBLE, &since, 0)).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(ids(&a.body), [2, 5, 7]);
    let v: serde_json::Value = serde_json::from_str(&a.body).expect("JSON");
    assert!(v["d"][0]["modified_at"]
        .as_str()
        .is_some_and(|at| at <= since.as_str()));
    // The fleet filter still applies (devices 5 and 6 are in fleet 2), and so does the keyset.
    assert_eq!(
        ids_of(&fake, &changed_since(LISTED, &since, 0)).await,
        [2, 7]
    );
    assert_eq!(
        ids_of(&fake, &changed_since(VISIBLE, &since, 2)).await,
        [5, 7]
    );
    // The device row alone, or one lambda.
    let alone = |filter: &str| {
        spaced(&format!(
            "/v7/device?$select=id&$filter={filter}&$orderby=id asc"
        ))
    };
    assert_eq!(
        ids_of(&fake, &alone(&format!("modified_at gt '{since}'"))).await,
        [7]
    );
    assert_eq!(
        ids_of(
            &fake,
            &alone(&format!("device_tag/any(t:t/modified_at gt '{since}')"))
        )
        .await,
        [5]
    );
    assert_eq!(
        ids_of(
            &fake,
            &alone(&format!("image_install/any(i:i/modified_at gt '{since}')"))
        )
        .await,
        [2]
    );
    // Also inside $expand, and in a lambda over other fields, as recorded.
    let a = get(&fake, &spaced(&format!("/v7/device?$select=id&$expand=device_tag($select=tag_key;$filter=modified_at gt '{since}')&$filter=id eq 5"))).await;
    assert_eq!(
        a.body,
        r#"{"d":[{"device_tag":[{"tag_key":"Env"}],"id":5}]}"#
    );
    assert_eq!(
        ids_of(
            &fake,
            &alone("belongs_to__application/any(a:a/app_name eq 'gateways')")
        )
        .await,
        [7, 8]
    );
    // A field inside a lambda without its variable is not implemented: 400.
    let pq = alone("device_tag/any(t:tag_key eq 'x')");
    assert_eq!(get(&fake, &pq).await.status, 400);
}

#[tokio::test]
async fn count_with_a_filter_and_id_pages() {
    let fake = sample().await;
    for (filter, n) in [(VISIBLE, 8), (LISTED, 6), ("is_online eq false", 2)] {
        let a = get(
            &fake,
            &spaced(&format!("/v7/device/$count?$filter=({filter})")),
        )
        .await;
        assert_eq!(
            (a.status, a.body),
            (200, format!(r#"{{"d":{n}}}"#)),
            "{filter}"
        );
    }
    let page = |fleets: &str, after: u64| {
        spaced(&format!(
            "/v7/device?$select=id&$filter=({fleets}) and id gt {after}&$orderby=id asc&$top=3"
        ))
    };
    assert_eq!(
        get(&fake, &page(VISIBLE, 2)).await.body,
        r#"{"d":[{"id":3},{"id":4},{"id":5}]}"#
    );
    assert_eq!(
        get(&fake, &page(LISTED, 3)).await.body,
        r#"{"d":[{"id":4},{"id":7},{"id":8}]}"#
    );
    assert_eq!(get(&fake, &page(LISTED, 8)).await.body, r#"{"d":[]}"#);
}

#[tokio::test]
async fn keyset_paging_by_modified_at_then_id() {
    let fake = sample().await;
    // Three writes: devices 5, 2 then 7 and 3 change; the others keep the first time.
    for changed in [&[5][..], &[2], &[7, 3]] {
        let mut account = fake.account();
        for d in account
            .devices
            .iter_mut()
            .filter(|d| changed.contains(&d.id))
        {
            d.cpu_usage = Some(d.cpu_usage.unwrap_or(0) + 1);
        }
        fake.set_account(account);
    }
    let mut expected = stamps(&fake, "device", "").await;
    expected.sort_by(|a, b| (&a.1, a.0).cmp(&(&b.1, b.0)));
    let order: Vec<u64> = expected.iter().map(|(id, _)| *id).collect();
    assert_eq!(order, [1, 4, 6, 8, 5, 2, 3, 7]);
    let all = spaced("/v7/device?$select=id,modified_at&$orderby=modified_at asc,id asc");
    assert_eq!(ids_of(&fake, &all).await, order);
    let desc = spaced("/v7/device?$select=id&$orderby=modified_at,id desc");
    let mut reversed = order.clone();
    reversed.reverse();
    assert_eq!(
        ids_of(&fake, &desc).await,
        reversed,
        "no direction: descending"
    );
    let (mut seen, mut key) = (Vec::new(), None::<(String, u64)>);
    loop {
        let filter = match &key {
            None => String::new(),
            Some((x, n)) => {
                format!("&$filter=modified_at gt '{x}' or (modified_at eq '{x}' and id gt {n})")
            }
        };
        let a = get(
            &fake,
            &spaced(&format!(
                "/v7/device?$select=id,modified_at{filter}&$orderby=modified_at asc,id asc&$top=3"
            )),
        )
        .await;
        assert_eq!(a.status, 200, "{}", a.body);
        let v: serde_json::Value = serde_json::from_str(&a.body).expect("JSON");
        let rows = v["d"].as_array().expect("rows").clone();
        for r in &rows {
            let id = r["id"].as_u64().expect("id");
            seen.push(id);
            key = Some((r["modified_at"].as_str().expect("at").to_owned(), id));
        }
        if rows.len() < 3 {
            break;
        }
    }
    assert_eq!(seen, order);
}

/// The largest modified_at of all devices: a watermark.
async fn watermark(fake: &FakeBalena) -> String {
    let rows = stamps(fake, "device", "").await;
    rows.into_iter().map(|(_, at)| at).max().expect("devices")
}

#[tokio::test]
async fn churn_changes_a_share_of_the_devices_as_a_live_account_does() {
    use common::generate::{self, churn, Churn};
    let mut account = generate::account(4, 50);
    account.tokens.push(TOKEN.into());
    let mut again = account.clone();
    let fake = FakeBalena::start(account.clone()).await;
    let since = watermark(&fake).await;
    let changes = churn(&mut account, 1, 0.2);
    // The same round changes the same way.
    assert_eq!(churn(&mut again, 1, 0.2), changes);
    assert_eq!(format!("{again:?}"), format!("{account:?}"));
    let Churn {
        metrics,
        connectivity,
        installs,
        tags,
        deleted,
        moved,
        added,
    } = changes.clone();
    assert!((1..=2).contains(&deleted) && (1..=2).contains(&moved) && added == 1);
    let share = metrics + connectivity + installs + tags;
    assert!((20..=60).contains(&share), "about 40 of 200: {changes:?}");
    assert!(metrics > connectivity + installs + tags, "{changes:?}");
    assert!(connectivity > 0 && installs > 0 && tags > 0, "{changes:?}");
    // Consistent: unique ids, installs of services that exist, moved devices' installs deleted.
    let mut device_ids: Vec<u64> = account.devices.iter().map(|d| d.id).collect();
    let mut install_ids: Vec<u64> = account
        .devices
        .iter()
        .flat_map(|d| &d.installs)
        .map(|i| i.id)
        .collect();
    let (devices, all_installs) = (device_ids.len(), install_ids.len());
    device_ids.sort();
    device_ids.dedup();
    install_ids.sort();
    install_ids.dedup();
    assert_eq!(
        (device_ids.len(), install_ids.len()),
        (devices, all_installs)
    );
    assert_eq!(devices, 200 - deleted + added);
    assert_eq!(
        device_ids.last(),
        Some(&201),
        "the new device has the next id"
    );
    for d in &account.devices {
        for i in &d.installs {
            let service = account.services.iter().find(|s| s.id == i.service_id);
            assert!(
                service.is_some(),
                "device {}: service {}",
                d.id,
                i.service_id
            );
        }
    }
    // Through the fake: tag and install changes do not bump their device.
    fake.set_account(account);
    let count = |filter: String| {
        let fake = &fake;
        async move {
            let a = get(
                fake,
                &spaced(&format!("/v7/device/$count?$filter={filter}")),
            )
            .await;
            assert_eq!(a.status, 200, "{filter}: {}", a.body);
            a.body
        }
    };
    let d = |n: usize| format!(r#"{{"d":{n}}}"#);
    assert_eq!(count(format!("({VISIBLE})")).await, d(devices));
    assert_eq!(
        count(format!("modified_at gt '{since}'")).await,
        d(changes.rows())
    );
    let any_change = format!(
        "modified_at gt '{since}' or image_install/any(i:i/modified_at gt '{since}') \
         or device_tag/any(t:t/modified_at gt '{since}')"
    );
    assert_eq!(count(any_change).await, d(changes.changed()));
    assert_eq!(
        ids_of(&fake, &changed_since(VISIBLE, &since, 0))
            .await
            .len(),
        changes.changed()
    );
    // With no share, only the structural changes.
    let mut account = fake.account();
    let structural = churn(&mut account, 2, 0.0);
    assert_eq!(structural.changed(), structural.moved + structural.added);
}
