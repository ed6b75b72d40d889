//! The API's answers as serde types: the `{"d":[...]}` envelope, fleets, devices and the
//! whoami actor. Lenient by design: unknown keys are ignored, and a device with odd or
//! missing values still parses, so one strange record cannot stop the whole crawl.

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
}

impl super::Keyed for Fleet {
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
