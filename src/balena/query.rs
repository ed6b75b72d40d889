//! The OData queries the exporter sends, written with the literal characters the balena
//! server demands: it parses the raw query string and answers 400 when `$ ( ) , / : ; =`
//! arrive percent-encoded, so only spaces are encoded here.

/// Fleet fields read; `organization`, `is_for__device_type` and the target release are expanded.
const FLEET_SELECT: &str = "id,app_name,slug";
const FLEET_EXPAND: &str = "organization($select=handle),\
is_for__device_type($select=slug),\
should_be_running__release($select=commit)";
const FLEETS_VISIBLE: &str = "is_directly_accessible_by__user/any(dau:1 eq 1)";

/// Device fields read. `should_be_running__release` stays a `{"__id":N}` reference: it is
/// compared with the id of the expanded running release.
const DEVICE_SELECT: &str = "id,uuid,device_name,belongs_to__application,is_online,\
last_connectivity_event,api_heartbeat_state,overall_status,os_version,os_variant,\
supervisor_version,should_be_running__release,cpu_usage,cpu_temp,memory_usage,\
memory_total,storage_usage,storage_total,is_undervolted,is_web_accessible,ip_address";
const DEVICE_EXPAND: &str =
    "is_of__device_type($select=slug),is_running__release($select=id,commit)";
const DEVICES_VISIBLE: &str =
    "belongs_to__application/any(a:a/is_directly_accessible_by__user/any(dau:1 eq 1))";

/// The token check: any actor (user or named key) answers 200, anything else 401.
pub const WHOAMI: &str = "/actor/v1/whoami";

/// One page of the fleets the token can see: the first `top` with an id above `after`.
pub fn fleets(top: u32, after: u64) -> String {
    page(
        "/v7/application",
        FLEET_SELECT,
        FLEET_EXPAND,
        FLEETS_VISIBLE,
        top,
        after,
    )
}

/// One page of devices; `fleet_ids` limits them to those fleets (None: every visible fleet).
pub fn devices(fleet_ids: Option<&[u64]>, top: u32, after: u64) -> String {
    let filter = match fleet_ids {
        None => DEVICES_VISIBLE.to_string(),
        Some(ids) => ids
            .iter()
            .map(|id| format!("belongs_to__application eq {id}"))
            .collect::<Vec<_>>()
            .join(" or "),
    };
    page(
        "/v7/device",
        DEVICE_SELECT,
        DEVICE_EXPAND,
        &filter,
        top,
        after,
    )
}

/// A keyset page: `filter` and `id gt after`, in ascending id order, `top` rows at most.
/// The server groups `and`/`or` left to right, so `filter` goes in parentheses.
fn page(path: &str, select: &str, expand: &str, filter: &str, top: u32, after: u64) -> String {
    build(
        path,
        &[
            ("$select", select),
            ("$expand", expand),
            ("$filter", &format!("({filter}) and id gt {after}")),
            // Without a direction the server sorts descending.
            ("$orderby", "id asc"),
            ("$top", &top.to_string()),
        ],
    )
}

/// Joins options as `path?k=v&k=v`, encoding only spaces (as `%20`).
fn build(path: &str, options: &[(&str, &str)]) -> String {
    let mut out = String::from(path);
    for (i, (key, value)) in options.iter().enumerate() {
        debug_assert!(
            !value.contains(['&', '#', '%']),
            "unescaped query value {value}"
        );
        out.push(if i == 0 { '?' } else { '&' });
        out.push_str(key);
        out.push('=');
        out.push_str(&value.replace(' ', "%20"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fleet_query_is_literal_and_keyset_paged() {
        assert_eq!(
            fleets(1000, 17),
            "/v7/application?$select=id,app_name,slug\
             &$expand=organization($select=handle),is_for__device_type($select=slug),\
             should_be_running__release($select=commit)\
             &$filter=(is_directly_accessible_by__user/any(dau:1%20eq%201))%20and%20id%20gt%2017\
             &$orderby=id%20asc&$top=1000"
        );
    }

    #[test]
    fn device_page_query_is_literal_and_ordered_ascending() {
        let q = devices(None, 500, 1000);
        assert!(q.starts_with("/v7/device?$select=id,uuid,device_name,belongs_to__application,"));
        assert!(q.contains(
            "&$expand=is_of__device_type($select=slug),is_running__release($select=id,commit)&"
        ));
        assert!(q.contains(
            "&$filter=(belongs_to__application/any(a:a/is_directly_accessible_by__user/any(dau:1%20eq%201)))%20and%20id%20gt%201000&"
        ));
        assert!(q.ends_with("&$orderby=id%20asc&$top=500"));
    }

    #[test]
    fn fleet_filter_becomes_an_id_filter_in_parentheses() {
        let q = devices(Some(&[3, 17]), 10, 0);
        assert!(q.contains(
            "&$filter=(belongs_to__application%20eq%203%20or%20belongs_to__application%20eq%2017)%20and%20id%20gt%200&"
        ));
    }

    #[test]
    fn url_parsing_keeps_the_reserved_characters_literal() {
        // reqwest parses the URL with the `url` crate; it must not encode what we wrote.
        for q in [fleets(5, 0), devices(None, 1, 0), devices(Some(&[1]), 1, 9)] {
            let url = reqwest::Url::parse(&format!("https://api.example.com{q}")).unwrap();
            assert_eq!(format!("{}?{}", url.path(), url.query().unwrap()), q);
            let query = url.query().unwrap();
            for encoded in ["%24", "%28", "%29", "%2C", "%2F", "%3A", "%3B", "%3D", "+"] {
                assert!(!query.contains(encoded), "{encoded} in {query}");
            }
        }
    }
}
