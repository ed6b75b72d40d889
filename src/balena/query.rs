//! The OData queries the exporter sends, written with the literal characters the balena
//! server demands: it parses the raw query string and answers 400 when `$ ( ) , / : ; =`
//! arrive percent-encoded, so only spaces are encoded here.

use crate::config::TagFilter;

/// Fleet fields read; `organization`, `is_for__device_type` and the target release are expanded.
const FLEET_SELECT: &str = "id,app_name,slug";
const FLEET_EXPAND: &str = "organization($select=handle),\
is_for__device_type($select=slug),\
should_be_running__release($select=commit)";
const FLEETS_VISIBLE: &str = "is_directly_accessible_by__user/any(dau:1 eq 1)";

/// Device fields read. `should_be_running__release` stays a `{"__id":N}` reference: it is
/// compared with the id of the expanded running release (and of each install's release).
const DEVICE_SELECT: &str = "id,uuid,device_name,belongs_to__application,is_online,\
last_connectivity_event,api_heartbeat_state,changed_api_heartbeat_state_on__date,\
overall_status,os_version,os_variant,supervisor_version,should_be_running__release,\
cpu_usage,cpu_temp,memory_usage,memory_total,storage_usage,storage_total,is_undervolted,\
is_web_accessible,ip_address,update_status,last_update_status_event,overall_progress,\
modified_at";
const DEVICE_EXPAND: &str =
    "is_of__device_type($select=slug),is_running__release($select=id,commit)";
/// Each device's installs that are not deleted, with the release and the image's service
/// as references (service names come from the `service` pages); `{}`: more fields.
const DEVICE_INSTALLS: [&str; 2] = [
    "image_install($select=status,download_progress,is_provided_by__release",
    ";$expand=installs__image($select=is_a_build_of__service);\
$filter=status ne 'deleted';$orderby=id asc)",
];
/// Selected in the expansions of changed devices: the newest write read, to the watermark.
const STAMP: &str = ",modified_at";
/// balenaCloud's coordinates (openBalena answers 500 when they are asked for).
const DEVICE_LOCATION: &str = "latitude,longitude";
const DEVICES_VISIBLE: &str =
    "belongs_to__application/any(a:a/is_directly_accessible_by__user/any(dau:1 eq 1))";

const RELEASES_IN_USE: &str = "should_be_running_on__application/any(a:1 eq 1) or \
is_running_on__device/any(d:1 eq 1) or is_pinned_to__device/any(d:1 eq 1)";

/// The token check: any actor (user or named key) answers 200, anything else 401.
pub const WHOAMI: &str = "/actor/v1/whoami";

/// Whether the server has balenaCloud's coordinates: 200 if so, 500 with an empty body if not.
pub const LOCATION_PROBE: &str = "/v7/device?$select=id,latitude,longitude&$top=1";

/// What a device page reads besides the basic fields.
#[derive(Clone, Debug)]
pub struct DeviceReads<'a> {
    pub services: bool,
    pub tags: &'a TagFilter,
    pub location: bool,
}

/// One page of the fleets the token can see: the first `top` with an id above `after`.
pub fn fleets(tags: &TagFilter, top: u32, after: u64) -> String {
    let mut expand = FLEET_EXPAND.to_string();
    if let Some(tags) = tag_expansion("application_tag", tags, "") {
        expand.push(',');
        expand.push_str(&tags);
    }
    page(
        "/v7/application",
        FLEET_SELECT,
        &expand,
        Some(FLEETS_VISIBLE),
        top,
        after,
    )
}

/// Which devices a device query reads: those of `fleet_ids` (None: every visible fleet).
fn device_filter(fleet_ids: Option<&[u64]>) -> String {
    match fleet_ids {
        None => DEVICES_VISIBLE.to_string(),
        Some(ids) => ids
            .iter()
            .map(|id| format!("belongs_to__application eq {id}"))
            .collect::<Vec<_>>()
            .join(" or "),
    }
}

/// One page of devices; `fleet_ids` limits them to those fleets (None: every visible fleet).
pub fn devices(fleet_ids: Option<&[u64]>, reads: &DeviceReads, top: u32, after: u64) -> String {
    device_page(&device_filter(fleet_ids), reads, "", top, after)
}

/// One page of the devices written since `since` (Unix milliseconds, the server's clock),
/// and of those whose service installs or tags were (a write to those rows leaves the
/// device's own `modified_at` as it was).
pub fn changed_devices(
    fleet_ids: Option<&[u64]>,
    reads: &DeviceReads,
    since: u64,
    top: u32,
    after: u64,
) -> String {
    let filter = changed_filter(fleet_ids, reads, since);
    device_page(&filter, reads, STAMP, top, after)
}

/// How many devices `changed_devices` would read: `{"d":N}`.
pub fn changed_count(fleet_ids: Option<&[u64]>, reads: &DeviceReads, since: u64) -> String {
    let filter = changed_filter(fleet_ids, reads, since);
    build("/v7/device/$count", &[("$filter", &filter)])
}

fn changed_filter(fleet_ids: Option<&[u64]>, reads: &DeviceReads, since: u64) -> String {
    let since = timestamp(since);
    let mut changed = format!("modified_at gt {since}");
    if reads.services {
        changed.push_str(&format!(
            " or image_install/any(i:i/modified_at gt {since})"
        ));
    }
    match reads.tags {
        TagFilter::None => {}
        TagFilter::Keys(keys) if keys.is_empty() => {}
        TagFilter::All => {
            changed.push_str(&format!(" or device_tag/any(t:t/modified_at gt {since})"));
        }
        TagFilter::Keys(keys) => changed.push_str(&format!(
            " or device_tag/any(t:t/modified_at gt {since} and ({}))",
            key_filter("t/", keys)
        )),
    }
    format!("({}) and ({changed})", device_filter(fleet_ids))
}

/// How many devices there are now: `{"d":N}`.
pub fn device_count(fleet_ids: Option<&[u64]>) -> String {
    let filter = device_filter(fleet_ids);
    build("/v7/device/$count", &[("$filter", &filter)])
}

/// One page of the ids of the devices there are now.
pub fn device_ids(fleet_ids: Option<&[u64]>, top: u32, after: u64) -> String {
    let filter = device_filter(fleet_ids);
    page("/v7/device", "id", "", Some(&filter), top, after)
}

/// A page of devices: `filter`, and `more` fields selected in each expanded install and tag.
fn device_page(filter: &str, reads: &DeviceReads, more: &str, top: u32, after: u64) -> String {
    let mut select = DEVICE_SELECT.to_string();
    if reads.location {
        select.push(',');
        select.push_str(DEVICE_LOCATION);
    }
    let mut expand = DEVICE_EXPAND.to_string();
    if reads.services {
        let [head, tail] = DEVICE_INSTALLS;
        expand.push_str(&format!(",{head}{more}{tail}"));
    }
    if let Some(tags) = tag_expansion("device_tag", reads.tags, more) {
        expand.push(',');
        expand.push_str(&tags);
    }
    page("/v7/device", &select, &expand, Some(filter), top, after)
}

/// A `modified_at` literal as the server writes them: `'2026-12-07T17:42:44.154Z'`, exact to
/// the millisecond (the server compares to the millisecond).
fn timestamp(unix_millis: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(unix_millis);
    format!("'{}'", humantime::format_rfc3339_millis(t))
}

/// One page of services (id and name), to name the services of image installs.
pub fn services(top: u32, after: u64) -> String {
    page("/v7/service", "id,service_name", "", None, top, after)
}

/// The releases devices run or should run (fleet targets, pins, running releases): one page
/// of their ids and compositions, whose services' `restart` policies say which services are
/// meant to end.
pub fn releases(top: u32, after: u64) -> String {
    page(
        "/v7/release",
        "id,composition",
        "",
        Some(RELEASES_IN_USE),
        top,
        after,
    )
}

/// `device_tag($select=tag_key,value)` (and `more` fields), limited to the allowed keys;
/// None when tags are off.
fn tag_expansion(nav: &str, tags: &TagFilter, more: &str) -> Option<String> {
    match tags {
        TagFilter::None => None,
        TagFilter::All => Some(format!("{nav}($select=tag_key,value{more})")),
        TagFilter::Keys(keys) if keys.is_empty() => None,
        TagFilter::Keys(keys) => Some(format!(
            "{nav}($select=tag_key,value{more};$filter={})",
            key_filter("", keys)
        )),
    }
}

/// `tag_key eq 'a' or tag_key eq 'b'`, each `tag_key` after `prefix` (a lambda's `t/`).
fn key_filter(prefix: &str, keys: &[String]) -> String {
    let any: Vec<String> = keys
        .iter()
        .map(|k| format!("{prefix}tag_key eq {}", literal(k)))
        .collect();
    any.join(" or ")
}

/// An OData string literal: quotes doubled; inside it the server decodes `%XX`, so the
/// characters that would end or confuse the query string are sent percent-encoded.
fn literal(text: &str) -> String {
    let mut out = String::from("'");
    for c in text.chars() {
        match c {
            '\'' => out.push_str("''"),
            '%' => out.push_str("%25"),
            '&' => out.push_str("%26"),
            '#' => out.push_str("%23"),
            '+' => out.push_str("%2B"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// A keyset page: `filter` and `id gt after`, in ascending id order, `top` rows at most.
/// The server groups `and`/`or` left to right, so `filter` goes in parentheses.
fn page(
    path: &str,
    select: &str,
    expand: &str,
    filter: Option<&str>,
    top: u32,
    after: u64,
) -> String {
    let filter = match filter {
        Some(f) => format!("({f}) and id gt {after}"),
        None => format!("id gt {after}"),
    };
    let top = top.to_string();
    let mut options = vec![("$select", select)];
    if !expand.is_empty() {
        options.push(("$expand", expand));
    }
    options.extend([
        ("$filter", filter.as_str()),
        // Without a direction the server sorts descending.
        ("$orderby", "id asc"),
        ("$top", top.as_str()),
    ]);
    build(path, &options)
}

/// Joins options as `path?k=v&k=v`, encoding only spaces (as `%20`).
fn build(path: &str, options: &[(&str, &str)]) -> String {
    let mut out = String::from(path);
    for (i, (key, value)) in options.iter().enumerate() {
        debug_assert!(!value.contains(['&', '#']), "unescaped query value {value}");
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

    const BASIC: DeviceReads = DeviceReads {
        services: false,
        tags: &TagFilter::None,
        location: false,
    };

    #[test]
    fn fleet_query_is_literal_and_keyset_paged() {
        assert_eq!(
            fleets(&TagFilter::None, 1000, 17),
            "/v7/application?$select=id,app_name,slug\
             &$expand=organization($select=handle),is_for__device_type($select=slug),\
             should_be_running__release($select=commit)\
             &$filter=(is_directly_accessible_by__user/any(dau:1%20eq%201))%20and%20id%20gt%2017\
             &$orderby=id%20asc&$top=1000"
        );
        assert!(fleets(&TagFilter::All, 5, 0).contains(
            ",should_be_running__release($select=commit),application_tag($select=tag_key,value)&"
        ));
    }

    #[test]
    fn device_page_query_is_literal_and_ordered_ascending() {
        let q = devices(None, &BASIC, 500, 1000);
        assert!(q.starts_with("/v7/device?$select=id,uuid,device_name,belongs_to__application,"));
        assert!(q.contains(",update_status,last_update_status_event,overall_progress,modified_at&"));
        assert!(q.contains(
            "&$expand=is_of__device_type($select=slug),is_running__release($select=id,commit)&"
        ));
        assert!(q.contains(
            "&$filter=(belongs_to__application/any(a:a/is_directly_accessible_by__user/any(dau:1%20eq%201)))%20and%20id%20gt%201000&"
        ));
        assert!(q.ends_with("&$orderby=id%20asc&$top=500"));
        assert!(
            !q.contains("latitude") && !q.contains("image_install") && !q.contains("device_tag")
        );
    }

    #[test]
    fn services_tags_and_location_are_read_only_when_asked() {
        let keys = TagFilter::Keys(vec!["site".into(), "O'Brien&Co#1%".into()]);
        let reads = DeviceReads {
            services: true,
            tags: &keys,
            location: true,
        };
        let q = devices(None, &reads, 10, 0);
        assert!(
            q.contains(",overall_progress,modified_at,latitude,longitude&"),
            "{q}"
        );
        assert!(
            q.contains(
                ",image_install($select=status,download_progress,is_provided_by__release;\
             $expand=installs__image($select=is_a_build_of__service);\
             $filter=status%20ne%20'deleted';$orderby=id%20asc),"
            ),
            "{q}"
        );
        assert!(q.contains(
            "device_tag($select=tag_key,value;$filter=tag_key%20eq%20'site'%20or%20tag_key%20eq%20'O''Brien%26Co%231%25')&"
        ), "{q}");
        assert_eq!(
            services(1000, 3),
            "/v7/service?$select=id,service_name&$filter=id%20gt%203&$orderby=id%20asc&$top=1000"
        );
    }

    #[test]
    fn fleet_filter_becomes_an_id_filter_in_parentheses() {
        let q = devices(Some(&[3, 17]), &BASIC, 10, 0);
        assert!(q.contains(
            "&$filter=(belongs_to__application%20eq%203%20or%20belongs_to__application%20eq%2017)%20and%20id%20gt%200&"
        ));
    }

    #[test]
    fn changed_devices_are_read_by_modified_at_of_the_device_its_installs_and_tags() {
        let reads = DeviceReads {
            services: true,
            tags: &TagFilter::All,
            location: false,
        };
        // 2026-12-07T17:42:44.154Z
        let q = changed_devices(Some(&[3]), &reads, 1_796_665_364_154, 100, 9);
        assert!(q.contains(
            "&$filter=((belongs_to__application%20eq%203)%20and%20(modified_at%20gt%20'2026-12-07T17:42:44.154Z'\
             %20or%20image_install/any(i:i/modified_at%20gt%20'2026-12-07T17:42:44.154Z')\
             %20or%20device_tag/any(t:t/modified_at%20gt%20'2026-12-07T17:42:44.154Z')))%20and%20id%20gt%209&"
        ), "{q}");
        assert!(q.contains(",overall_progress,modified_at&"), "{q}");
        // The installs' and tags' own writes are read too (for the watermark).
        assert!(q.contains("image_install($select=status,download_progress,is_provided_by__release,modified_at;"), "{q}");
        assert!(
            q.contains("device_tag($select=tag_key,value,modified_at)"),
            "{q}"
        );
        assert!(!devices(None, &reads, 1, 0).contains(",modified_at;"));
        let keys = TagFilter::Keys(vec!["site".into()]);
        let only_site = DeviceReads {
            tags: &keys,
            ..reads
        };
        assert!(changed_devices(None, &only_site, 0, 1, 0).contains(
            "device_tag/any(t:t/modified_at%20gt%20'1970-01-01T00:00:00.000Z'%20and%20(t/tag_key%20eq%20'site'))"
        ));
        // Without services and tags, only the device's own writes.
        let q = changed_devices(None, &BASIC, 0, 100, 0);
        assert!(
            q.contains(
                "%20and%20(modified_at%20gt%20'1970-01-01T00:00:00.000Z'))%20and%20id%20gt%200&"
            ),
            "{q}"
        );
        assert_eq!(
            changed_count(None, &BASIC, 0),
            "/v7/device/$count?$filter=(belongs_to__application/any(a:a/is_directly_accessible_by__user/any(dau:1%20eq%201)))\
             %20and%20(modified_at%20gt%20'1970-01-01T00:00:00.000Z')"
        );
        assert_eq!(
            device_count(Some(&[1, 2])),
            "/v7/device/$count?$filter=belongs_to__application%20eq%201%20or%20belongs_to__application%20eq%202"
        );
        assert_eq!(
            device_ids(None, 1000, 5),
            "/v7/device?$select=id&$filter=(belongs_to__application/any(a:a/is_directly_accessible_by__user/any(dau:1%20eq%201)))\
             %20and%20id%20gt%205&$orderby=id%20asc&$top=1000"
        );
    }

    #[test]
    fn url_parsing_keeps_the_reserved_characters_literal() {
        // reqwest parses the URL with the `url` crate; it must not encode what we wrote (but
        // `'`, which the server accepts as %27).
        let all = DeviceReads {
            services: true,
            tags: &TagFilter::All,
            location: true,
        };
        for q in [
            fleets(&TagFilter::All, 5, 0),
            devices(None, &all, 1, 0),
            devices(Some(&[1]), &BASIC, 1, 9),
            changed_devices(None, &all, 1_796_665_364_154, 1, 9),
            changed_count(Some(&[2]), &all, 1_796_665_364_154),
            device_count(None),
            device_ids(Some(&[1]), 1, 9),
            services(7, 0),
        ] {
            let url = reqwest::Url::parse(&format!("https://api.example.com{q}")).unwrap();
            let query = url.query().unwrap();
            assert_eq!(format!("{}?{}", url.path(), query.replace("%27", "'")), q);
            for encoded in ["%24", "%28", "%29", "%2C", "%2F", "%3A", "%3B", "%3D", "+"] {
                assert!(!query.contains(encoded), "{encoded} in {query}");
            }
        }
    }
}
