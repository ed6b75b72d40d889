//! The API's answers as serde types: the `{"d":[...]}` envelope, fleets (with their tags),
//! devices (with their image installs and tags), services and the whoami actor. Lenient where
//! the API is: unknown keys are ignored, and missing or null values, nulls for lists and
//! coordinates as text all parse. A value of the wrong type (`"is_online":"true"`) fails the
//! page, and so the crawl, which then keeps the last good data (tests/api/prop_decode.rs).
//! Fleets, devices and services borrow their text from the page they were read from.

use std::borrow::Cow;

use std::fmt;

use serde::de::{self, IgnoredAny, Visitor};
use serde::{Deserialize, Deserializer};

/// Text borrowed from the page's bytes where it has no escapes, owned where it has: a page
/// decodes with few allocations, and the snapshot interns what repeats. (serde's own `Cow`
/// always copies inside an `Option`; this type borrows wherever it is.)
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Text<'a>(pub Cow<'a, str>);

impl std::ops::Deref for Text<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for Text<'_> {
    fn eq(&self, other: &str) -> bool {
        *self.0 == *other
    }
}

impl PartialEq<&str> for Text<'_> {
    fn eq(&self, other: &&str) -> bool {
        *self.0 == **other
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> Visitor<'de> for Visit {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(Visit)
    }
}

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
pub struct Fleet<'a> {
    pub id: u64,
    #[serde(borrow)]
    pub app_name: Text<'a>,
    #[serde(borrow)]
    pub slug: Text<'a>,
    #[serde(borrow, default, deserialize_with = "expanded")]
    pub organization: Option<Handle<'a>>,
    #[serde(
        rename = "is_for__device_type",
        borrow,
        default,
        deserialize_with = "expanded"
    )]
    pub device_type: Option<Slug<'a>>,
    #[serde(
        rename = "should_be_running__release",
        borrow,
        default,
        deserialize_with = "expanded"
    )]
    pub target_release: Option<Release<'a>>,
    /// `application_tag`, when expanded.
    #[serde(rename = "application_tag", borrow, default, deserialize_with = "list")]
    pub tags: Vec<Tag<'a>>,
}

#[derive(Debug, Deserialize)]
pub struct Device<'a> {
    pub id: u64,
    #[serde(borrow, default)]
    pub uuid: Text<'a>,
    #[serde(borrow, default)]
    pub device_name: Option<Text<'a>>,
    #[serde(rename = "belongs_to__application", default)]
    pub fleet: Option<Reference>,
    #[serde(
        rename = "is_of__device_type",
        borrow,
        default,
        deserialize_with = "expanded"
    )]
    pub device_type: Option<Slug<'a>>,
    #[serde(default)]
    pub is_online: Option<bool>,
    #[serde(borrow, default)]
    pub last_connectivity_event: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub api_heartbeat_state: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub overall_status: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub os_version: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub os_variant: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub supervisor_version: Option<Text<'a>>,
    #[serde(
        rename = "is_running__release",
        borrow,
        default,
        deserialize_with = "expanded"
    )]
    pub running_release: Option<Release<'a>>,
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
    #[serde(borrow, default)]
    pub ip_address: Option<Text<'a>>,
    /// `rejected`, `downloading`, `downloaded`, `applying changes`, `aborted`, `done`, or null.
    #[serde(borrow, default)]
    pub update_status: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub last_update_status_event: Option<Text<'a>>,
    /// Percent, while an install downloads.
    #[serde(default)]
    pub overall_progress: Option<f64>,
    /// v7: when the heartbeat state last changed.
    #[serde(rename = "changed_api_heartbeat_state_on__date", borrow, default)]
    pub heartbeat_changed: Option<Text<'a>>,
    /// balenaCloud only; a string there (Short Text), a number accepted too.
    #[serde(default, deserialize_with = "number")]
    pub latitude: Option<f64>,
    #[serde(default, deserialize_with = "number")]
    pub longitude: Option<f64>,
    /// `image_install` rows that are not deleted, when expanded.
    #[serde(rename = "image_install", borrow, default, deserialize_with = "list")]
    pub installs: Vec<Install<'a>>,
    /// `device_tag`, when expanded.
    #[serde(rename = "device_tag", borrow, default, deserialize_with = "list")]
    pub tags: Vec<Tag<'a>>,
    /// When the row was last written (`YYYY-MM-DDTHH:MM:SS.mmmZ`, the server's clock): the
    /// watermark of incremental crawls.
    #[serde(borrow, default)]
    pub modified_at: Option<Text<'a>>,
}

/// `/$count`: `{"d":N}`.
#[derive(Debug, Deserialize)]
pub struct Count {
    pub d: u64,
}

/// A row of which only the id is read (`$select=id`): which devices exist now.
#[derive(Debug, Deserialize)]
pub struct Id {
    pub id: u64,
}

impl super::Keyed for Id {
    fn id(&self) -> u64 {
        self.id
    }
}

/// One `image_install` row: a service's image of one release on the device.
#[derive(Debug, Deserialize)]
pub struct Install<'a> {
    #[serde(borrow, default)]
    pub status: Option<Text<'a>>,
    /// Percent, while downloading.
    #[serde(default)]
    pub download_progress: Option<f64>,
    #[serde(rename = "is_provided_by__release", default)]
    pub release: Option<Reference>,
    #[serde(rename = "installs__image", default, deserialize_with = "expanded")]
    pub image: Option<Image<'a>>,
    /// Read by incremental crawls: a write to an install leaves its device's as it was.
    #[serde(borrow, default)]
    pub modified_at: Option<Text<'a>>,
}

/// The expanded image of an install: which service it builds.
#[derive(Debug, Deserialize)]
pub struct Image<'a> {
    #[serde(rename = "is_a_build_of__service", default)]
    pub service: Option<Reference>,
    #[serde(skip)]
    _text: std::marker::PhantomData<&'a str>,
}

/// A `device_tag` or `application_tag` row.
#[derive(Debug, Deserialize)]
pub struct Tag<'a> {
    #[serde(borrow)]
    pub tag_key: Text<'a>,
    #[serde(borrow, default)]
    pub value: Option<Text<'a>>,
    /// Read by incremental crawls: a write to a tag leaves its device's as it was.
    #[serde(borrow, default)]
    pub modified_at: Option<Text<'a>>,
}

/// A `service` row.
#[derive(Debug, Deserialize)]
pub struct Service<'a> {
    pub id: u64,
    #[serde(borrow, default)]
    pub service_name: Text<'a>,
}

/// A `release` row read for its composition (the release's docker-compose file as balena stores
/// it) is read only for each service's `restart` policy. A composition of any other shape
/// (null, no services, a policy that is not a string) says nothing: every policy then counts
/// as balena's default, `always`.
#[derive(Debug, Deserialize)]
pub struct ReleasePolicies {
    pub id: u64,
    #[serde(default, deserialize_with = "restart_policies")]
    pub composition: Vec<(String, String)>,
}

/// `{"services":{"main":{"restart":"no",...},...}}` → `[("main","no")]`, leniently.
fn restart_policies<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Vec<(String, String)>, D::Error> {
    let value = serde_json::Value::deserialize(d)?;
    let Some(services) = value.get("services").and_then(|s| s.as_object()) else {
        return Ok(Vec::new());
    };
    Ok(services
        .iter()
        .filter_map(|(name, service)| {
            let restart = service.get("restart")?.as_str()?;
            Some((name.clone(), restart.to_string()))
        })
        .collect())
}

impl super::Keyed for ReleasePolicies {
    fn id(&self) -> u64 {
        self.id
    }
}

impl super::Keyed for Fleet<'_> {
    fn id(&self) -> u64 {
        self.id
    }
}

impl super::Keyed for Service<'_> {
    fn id(&self) -> u64 {
        self.id
    }
}

impl super::Keyed for Device<'_> {
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
pub struct Handle<'a> {
    #[serde(borrow)]
    pub handle: Text<'a>,
}

#[derive(Debug, Deserialize)]
pub struct Slug<'a> {
    #[serde(borrow)]
    pub slug: Text<'a>,
}

#[derive(Debug, Deserialize)]
pub struct Release<'a> {
    #[serde(default)]
    pub id: Option<u64>,
    #[serde(borrow)]
    pub commit: Text<'a>,
}

/// An expanded navigation is always an array, also for to-one links (`[]` when null): its
/// first element, read in place. A bare object or `null` is accepted too, and an unexpanded
/// `{"__id":N}` reads as None.
fn expanded<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct Visit<T>(std::marker::PhantomData<T>);
    impl<'de, T: Deserialize<'de>> Visitor<'de> for Visit<T> {
        type Value = Option<T>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an expanded navigation (an array), an object or null")
        }
        fn visit_unit<E: de::Error>(self) -> Result<Option<T>, E> {
            Ok(None)
        }
        fn visit_none<E: de::Error>(self) -> Result<Option<T>, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Option<T>, D::Error> {
            d.deserialize_any(self)
        }
        fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Option<T>, A::Error> {
            let first = seq.next_element()?;
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(first)
        }
        fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Option<T>, A::Error> {
            // Rare (the API expands into arrays): buffered, to tell a reference from a row.
            let value = serde_json::Value::deserialize(de::value::MapAccessDeserializer::new(map))?;
            let reference = value.as_object().is_some_and(|o| o.contains_key("__id"));
            if reference {
                return Ok(None);
            }
            Ok(T::deserialize(value).ok())
        }
        // Anything else is not an expansion.
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Option<T>, E> {
            Ok(None)
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Option<T>, E> {
            Ok(None)
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Option<T>, E> {
            Ok(None)
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Option<T>, E> {
            Ok(None)
        }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Option<T>, E> {
            Ok(None)
        }
    }
    deserializer.deserialize_option(Visit(std::marker::PhantomData))
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
    struct Visit;
    impl<'de> Visitor<'de> for Visit {
        type Value = Option<f64>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a number, a string or null")
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Option<f64>, E> {
            Ok(Some(v))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Option<f64>, E> {
            Ok(Some(v as f64))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Option<f64>, E> {
            Ok(Some(v as f64))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Option<f64>, E> {
            Ok(v.trim().parse().ok())
        }
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Option<f64>, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Option<f64>, E> {
            Ok(None)
        }
        fn visit_none<E: de::Error>(self) -> Result<Option<f64>, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Option<f64>, D::Error> {
            d.deserialize_any(self)
        }
        fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<Option<f64>, A::Error> {
            IgnoredAny.visit_seq(seq).map(|_| None)
        }
        fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Option<f64>, A::Error> {
            IgnoredAny.visit_map(map).map(|_| None)
        }
    }
    Ok(deserializer
        .deserialize_any(Visit)?
        .filter(|n| n.is_finite()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse<'a, T: Deserialize<'a>>(body: &'a str) -> Vec<T> {
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
    fn text_borrows_from_the_page_and_unescapes_when_it_must() {
        let body = r#"{"d":[{"id":1,"uuid":"u1","device_name":"pi \"one\"","os_version":"balenaOS 6",
            "is_of__device_type":[{"slug":"raspberrypi4-64"}],"device_tag":[{"tag_key":"site","value":"K\u00f6ln"}],
            "is_running__release":[{"id":3,"commit":"abc"},{"id":4,"commit":"ignored"}]}]}"#;
        let d: Vec<Device> = parse(body);
        let borrowed = |t: &Text| matches!(t.0, Cow::Borrowed(_));
        assert!(borrowed(&d[0].uuid));
        assert!(borrowed(d[0].os_version.as_ref().unwrap()));
        assert!(borrowed(&d[0].device_type.as_ref().unwrap().slug));
        assert!(borrowed(&d[0].tags[0].tag_key));
        assert_eq!(d[0].device_name.as_deref(), Some("pi \"one\""));
        assert!(!borrowed(d[0].device_name.as_ref().unwrap()));
        assert_eq!(d[0].tags[0].value.as_deref(), Some("Köln"));
        assert_eq!(d[0].running_release.as_ref().unwrap().commit, "abc");
        // A bare object, a reference, and things that are no expansion at all.
        for (json, slug) in [
            (r#"{"slug":"x"}"#, Some("x")),
            (r#"{"__id":2}"#, None),
            ("null", None),
            ("[]", None),
            ("7", None),
            (r#""x""#, None),
        ] {
            let body = format!(r#"{{"d":[{{"id":1,"is_of__device_type":{json}}}]}}"#);
            let d: Vec<Device> = parse(&body);
            assert_eq!(d[0].device_type.as_ref().map(|s| &*s.slug), slug, "{json}");
        }
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
