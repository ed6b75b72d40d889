//! The API's answers as serde types: the `{"d":[...]}` envelope, fleets (with their tags),
//! devices (with their image installs and tags), services and the whoami actor. Lenient where
//! the API is: unknown keys are ignored, and missing or null values, nulls for lists and
//! coordinates as text all parse. A value of the wrong type (`"is_online":"true"`) fails the
//! page, and so the crawl, which then keeps the last good data (tests/prop_decode.rs).

use serde::{Deserialize, Deserializer};

/// Every read answers `{"d":[...]}`.
#[derive(Debug, Deserialize)]
pub struct Envelope<T> {
    pub d: Vec<T>,
}

/// `GET /actor/v1/whoami`.
#[derive(Debug, Deserialize)]
pub struct Actor {
    #[serde(rename = "actorType", default)]
    pub actor_type: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Fleet {
    pub id: u64,
    pub app_name: String,
    pub slug: String,
    #[serde(default, deserialize_with = "expanded")]
    pub organization: Option<Handle>,
    #[serde(rename = "is_for__device_type", default, deserialize_with = "expanded")]
    pub device_type: Option<Slug>,
    #[serde(
        rename = "should_be_running__release",
        default,
        deserialize_with = "expanded"
    )]
    pub target_release: Option<Release>,
    /// `application_tag`, when expanded.
    #[serde(rename = "application_tag", default, deserialize_with = "list")]
    pub tags: Vec<Tag>,
}

#[derive(Debug, Deserialize)]
pub struct Device {
    pub id: u64,
    #[serde(default)]
    pub uuid: String,
    #[serde(default)]
    pub device_name: Option<String>,
    #[serde(rename = "belongs_to__application", default)]
    pub fleet: Option<Reference>,
    #[serde(rename = "is_of__device_type", default, deserialize_with = "expanded")]
    pub device_type: Option<Slug>,
    #[serde(default)]
    pub is_online: Option<bool>,
    #[serde(default)]
    pub last_connectivity_event: Option<String>,
    #[serde(default)]
    pub api_heartbeat_state: Option<String>,
    #[serde(default)]
    pub overall_status: Option<String>,
    #[serde(default)]
    pub os_version: Option<String>,
    #[serde(default)]
    pub os_variant: Option<String>,
    #[serde(default)]
    pub supervisor_version: Option<String>,
    #[serde(rename = "is_running__release", default, deserialize_with = "expanded")]
    pub running_release: Option<Release>,
    #[serde(rename = "should_be_running__release", default)]
    pub target_release: Option<Reference>,
    /// Percent, integer on the wire.
    #[serde(default)]
    pub cpu_usage: Option<f64>,
    /// Degrees Celsius.
    #[serde(default)]
    pub cpu_temp: Option<f64>,
    /// MiB.
    #[serde(default)]
    pub memory_usage: Option<f64>,
    #[serde(default)]
    pub memory_total: Option<f64>,
    #[serde(default)]
    pub storage_usage: Option<f64>,
    #[serde(default)]
    pub storage_total: Option<f64>,
    #[serde(default)]
    pub is_undervolted: Option<bool>,
    /// The public device URL is on.
    #[serde(default)]
    pub is_web_accessible: Option<bool>,
    /// Local addresses, separated by spaces.
    #[serde(default)]
    pub ip_address: Option<String>,
    /// `rejected`, `downloading`, `downloaded`, `applying changes`, `aborted`, `done`, or null.
    #[serde(default)]
    pub update_status: Option<String>,
    #[serde(default)]
    pub last_update_status_event: Option<String>,
    /// Percent, while an install downloads.
    #[serde(default)]
    pub overall_progress: Option<f64>,
    /// v7: when the heartbeat state last changed.
    #[serde(rename = "changed_api_heartbeat_state_on__date", default)]
    pub heartbeat_changed: Option<String>,
    /// balenaCloud only; a string there (Short Text), a number accepted too.
    #[serde(default, deserialize_with = "number")]
    pub latitude: Option<f64>,
    #[serde(default, deserialize_with = "number")]
    pub longitude: Option<f64>,
    /// `image_install` rows that are not deleted, when expanded.
    #[serde(rename = "image_install", default, deserialize_with = "list")]
    pub installs: Vec<Install>,
    /// `device_tag`, when expanded.
    #[serde(rename = "device_tag", default, deserialize_with = "list")]
    pub tags: Vec<Tag>,
}

/// One `image_install` row: a service's image of one release on the device.
#[derive(Debug, Deserialize)]
pub struct Install {
    #[serde(default)]
    pub status: Option<String>,
    /// Percent, while downloading.
    #[serde(default)]
    pub download_progress: Option<f64>,
    #[serde(rename = "is_provided_by__release", default)]
    pub release: Option<Reference>,
    #[serde(rename = "installs__image", default, deserialize_with = "expanded")]
    pub image: Option<Image>,
}

/// The expanded image of an install: which service it builds.
#[derive(Debug, Deserialize)]
pub struct Image {
    #[serde(rename = "is_a_build_of__service", default)]
    pub service: Option<Reference>,
}

/// A `device_tag` or `application_tag` row.
#[derive(Debug, Deserialize)]
pub struct Tag {
    pub tag_key: String,
    #[serde(default)]
    pub value: Option<String>,
}

/// A `service` row.
#[derive(Debug, Deserialize)]
pub struct Service {
    pub id: u64,
    #[serde(default)]
    pub service_name: String,
}

impl super::Keyed for Fleet {
    fn id(&self) -> u64 {
        self.id
    }
}

impl super::Keyed for Service {
    fn id(&self) -> u64 {
        self.id
    }
}

impl super::Keyed for Device {
    fn id(&self) -> u64 {
        self.id
    }
}

/// A foreign key that is not expanded: `{"__id": 1}`.
#[derive(Debug, Deserialize, PartialEq, Eq)]
pub struct Reference {
    pub __id: u64,
}

#[derive(Debug, Deserialize)]
pub struct Handle {
    pub handle: String,
}

#[derive(Debug, Deserialize)]
pub struct Slug {
    pub slug: String,
}

#[derive(Debug, Deserialize)]
pub struct Release {
    #[serde(default)]
    pub id: Option<u64>,
    pub commit: String,
}

/// An expanded navigation is always an array, also for to-one links (`[]` when null).
/// A bare object or `null` is accepted too, and an unexpanded `{"__id":N}` reads as None.
fn expanded<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany<T> {
        Many(Vec<T>),
        One(T),
        /// An unexpanded reference such as `{"__id":1}`.
        Other(serde::de::IgnoredAny),
    }
    Ok(match Option::<OneOrMany<T>>::deserialize(deserializer)? {
        None => None,
        Some(OneOrMany::One(t)) => Some(t),
        Some(OneOrMany::Many(v)) => v.into_iter().next(),
        Some(OneOrMany::Other(_)) => None,
    })
}

/// A to-many expansion: an array, or null (treated as none).
fn list<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(deserializer)?.unwrap_or_default())
}

/// A number sent as a JSON number or as a string (balenaCloud's coordinates are Short Text);
/// anything else, or text that is not a finite number, reads as None.
fn number<'de, D>(deserializer: D) -> Result<Option<f64>, D::Error>
where
    D: Deserializer<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Loose {
        Number(f64),
        Text(String),
        Other(serde::de::IgnoredAny),
    }
    Ok(match Option::<Loose>::deserialize(deserializer)? {
        Some(Loose::Number(n)) => Some(n),
        Some(Loose::Text(t)) => t.trim().parse::<f64>().ok(),
        _ => None,
    }
    .filter(|n| n.is_finite()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse<T: for<'de> Deserialize<'de>>(body: &str) -> Vec<T> {
        serde_json::from_str::<Envelope<T>>(body).unwrap().d
    }

    #[test]
    fn recorded_v7_fleet_list_parses() {
        let body = include_str!("../../tests/fixtures/recorded/application-v7.json");
        let fleets: Vec<Fleet> = parse(body);
        assert_eq!(fleets.len(), 2);
        assert_eq!(fleets[0].app_name, "testfleet");
        assert_eq!(fleets[0].slug, "admin/testfleet");
        // Unexpanded links are `{"__id":1}`, which does not fit the expanded shape.
        assert!(fleets[0].target_release.is_none());
    }

    #[test]
    fn recorded_v7_device_parses_with_null_hardware() {
        let body = include_str!("../../tests/fixtures/recorded/device-v7.json");
        let devices: Vec<Device> = parse(body);
        let d = &devices[0];
        assert_eq!(d.uuid, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa01");
        assert_eq!(d.fleet, Some(Reference { __id: 1 }));
        assert_eq!(d.overall_status.as_deref(), Some("configuring"));
        assert_eq!(d.is_online, Some(true));
        assert!(d.cpu_usage.is_none() && d.memory_total.is_none() && d.running_release.is_none());
    }

    #[test]
    fn recorded_device_states_parse_in_both_versions() {
        for body in [
            include_str!("../../tests/fixtures/recorded/device-states-v7.json"),
            include_str!("../../tests/fixtures/recorded/device-states-v6.json"),
        ] {
            let devices: Vec<Device> = parse(body);
            assert_eq!(devices.len(), 6);
            assert_eq!(devices[1].is_online, Some(false));
            assert_eq!(devices[4].api_heartbeat_state.as_deref(), Some("online"));
        }
    }

    #[test]
    fn expanded_links_are_arrays_and_empty_when_null() {
        let body = r#"{"d":[{"organization":[{"handle":"acme"}],"is_for__device_type":[{"slug":"raspberrypi4-64"}],
            "should_be_running__release":[],"id":7,"app_name":"a","slug":"acme/a","__metadata":{"uri":"/x"}}]}"#;
        let f: Vec<Fleet> = parse(body);
        assert_eq!(f[0].organization.as_ref().unwrap().handle, "acme");
        assert_eq!(f[0].device_type.as_ref().unwrap().slug, "raspberrypi4-64");
        assert!(f[0].target_release.is_none());
    }

    #[test]
    fn recorded_installs_and_tags_parse() {
        let body =
            include_str!("../../tests/fixtures/recorded/device-image-install-expand-page.json");
        let devices: Vec<Device> = parse(body);
        let installs = &devices[0].installs;
        assert_eq!(installs.len(), 2);
        assert_eq!(installs[0].status.as_deref(), Some("Running"));
        assert_eq!(installs[0].release, Some(Reference { __id: 1 }));
        let service = installs[0].image.as_ref().and_then(|i| i.service.as_ref());
        assert_eq!(service, Some(&Reference { __id: 1 }));
        let body = r#"{"d":[{"device_tag":[{"tag_key":"site","value":"K\u00f6ln"},{"tag_key":"note","value":null}],
            "image_install":null,"id":1,"latitude":"52.5","longitude":13.4}]}"#;
        let d: Vec<Device> = parse(body);
        assert_eq!(d[0].tags.len(), 2);
        assert_eq!(d[0].tags[0].value.as_deref(), Some("Köln"));
        assert!(d[0].installs.is_empty());
        assert_eq!((d[0].latitude, d[0].longitude), (Some(52.5), Some(13.4)));
        let odd: Vec<Device> = parse(r#"{"d":[{"id":2,"latitude":"north","longitude":true}]}"#);
        assert_eq!((odd[0].latitude, odd[0].longitude), (None, None));
    }

    #[test]
    fn whoami_parses() {
        let a: Actor = serde_json::from_str(
            r#"{"id":2,"actorType":"user","actorTypeId":2,"username":"admin","email":"a@b"}"#,
        )
        .unwrap();
        assert_eq!(a.actor_type.as_deref(), Some("user"));
        assert_eq!(a.username.as_deref(), Some("admin"));
    }

    #[test]
    fn truncated_and_malformed_bodies_are_errors() {
        assert!(serde_json::from_str::<Envelope<Device>>(r#"{"d":[{"id":1,"uuid":"#).is_err());
        assert!(serde_json::from_str::<Envelope<Device>>("<html>oops").is_err());
        assert!(serde_json::from_str::<Envelope<Device>>(r#"{"d":4}"#).is_err());
    }
}
