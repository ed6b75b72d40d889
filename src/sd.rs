//! Prometheus HTTP service discovery of fleet devices: one target group per device, built
//! from the same snapshot as `/metrics`, and the file_sd copy written atomically.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use serde::Serialize;

use crate::config::{SdConfig, SdMode};
use crate::snapshot::{Device, Fleet, Snapshot};
use crate::tags;

#[derive(Serialize)]
struct Group<'a> {
    targets: Vec<String>,
    labels: BTreeMap<Cow<'static, str>, &'a str>,
}

/// The target groups as JSON: `[]` when no device is selected.
pub fn render(snapshot: &Snapshot, config: &SdConfig) -> String {
    let groups: Vec<Group> = snapshot
        .fleets
        .iter()
        .filter(|f| config.fleets.matches(&f.slug, &f.name))
        .flat_map(|f| f.devices.iter().map(move |d| (f, d)))
        .filter(|(_, d)| d.online || config.include_offline)
        .filter(|(_, d)| config.own_uuid.as_deref() != Some(&*d.uuid))
        .filter_map(|(f, d)| group(config, f, d))
        .collect();
    serde_json::to_string_pretty(&groups).unwrap_or_else(|_| "[]".into())
}

fn group<'a>(config: &'a SdConfig, f: &'a Fleet, d: &'a Device) -> Option<Group<'a>> {
    let (scheme, targets) = match &config.mode {
        SdMode::Public { domain } if d.web_accessible => {
            ("https", vec![format!("{}.{domain}:443", d.uuid)])
        }
        SdMode::Public { .. } => return None,
        SdMode::Lan { port } => {
            let targets: Vec<String> = d
                .addresses
                .iter()
                .map(|a| {
                    if a.contains(':') {
                        format!("[{a}]:{port}")
                    } else {
                        format!("{a}:{port}")
                    }
                })
                .collect();
            if targets.is_empty() {
                return None;
            }
            ("http", targets)
        }
    };
    let mut labels: BTreeMap<Cow<'static, str>, &str> = [
        ("__scheme__", scheme),
        ("__metrics_path__", config.metrics_path.as_str()),
        ("uuid", &*d.uuid),
        ("device_name", &*d.name),
        ("fleet_name", &*f.name),
        ("fleet_slug", &*f.slug),
        ("device_type", &*d.device_type),
        ("os_version", &*d.os_version),
        ("os_variant", &*d.os_variant),
        ("supervisor_version", &*d.supervisor_version),
        ("release", &*d.release),
    ]
    .into_iter()
    .map(|(k, v)| (Cow::Borrowed(k), v))
    .collect();
    // Tags as Prometheus' own discoveries offer them (`__meta_ec2_tag_<key>`): for relabelling,
    // dropped after it unless a rule keeps them.
    for (prefix, tags) in [
        ("__meta_balena_device_tag_", &d.tags),
        ("__meta_balena_fleet_tag_", &f.tags),
    ] {
        for (name, value) in tags::label_names(tags) {
            labels.insert(Cow::Owned(format!("{prefix}{name}")), value);
        }
    }
    Some(Group { targets, labels })
}

/// In `public` mode, when devices are watched but none has its public device URL on, `/sd` is
/// empty: the line to log once, saying what to do. openBalena has no public device URLs at
/// all (`is_web_accessible` is read-only and false there), so `lan` is its only mode.
pub fn public_url_note(snapshot: &Snapshot, config: &SdConfig) -> Option<String> {
    let SdMode::Public { domain } = &config.mode else {
        return None;
    };
    let mut devices = snapshot
        .fleets
        .iter()
        .filter(|f| config.fleets.matches(&f.slug, &f.name))
        .flat_map(|f| &f.devices)
        .filter(|d| config.own_uuid.as_deref() != Some(&*d.uuid));
    let first = devices.next()?;
    let none = !first.web_accessible && devices.all(|d| !d.web_accessible);
    none.then(|| {
        format!(
            "sd lists no targets: no device has its public device URL enabled (SD_MODE=public, \
             domain {domain}); enable it on the devices, or set SD_MODE=lan to scrape their \
             local addresses (openBalena has no public device URLs: use SD_MODE=lan there)"
        )
    })
}

/// Writes `json` to `path` through a temporary file in the same directory and a rename, so
/// Prometheus never reads a partial or empty file.
pub fn write_file(path: &Path, json: &str) -> std::io::Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("SD_FILE names a directory"))?;
    let mut temporary = path.to_path_buf();
    temporary.set_file_name(format!(".{}.tmp", name.to_string_lossy()));
    let mut file = std::fs::File::create(&temporary)?;
    file.write_all(json.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::FleetFilter;

    #[test]
    fn a_note_when_no_device_has_a_public_url() {
        let public = || {
            config(SdMode::Public {
                domain: "balena-devices.com".into(),
            })
        };
        let mut c = public();
        let mut s = snapshot();
        assert_eq!(public_url_note(&s, &c), None, "devices 1 and 5 have one");
        for f in &mut s.fleets {
            for d in &mut f.devices {
                d.web_accessible = false;
            }
        }
        let note = public_url_note(&s, &c).unwrap();
        assert!(note.contains("SD_MODE=lan"), "{note}");
        c.mode = SdMode::Lan { port: 80 };
        assert_eq!(public_url_note(&s, &c), None, "lan mode needs no URL");
        assert_eq!(
            public_url_note(&Snapshot::default(), &public()),
            None,
            "no devices"
        );
    }

    fn device(n: u64, online: bool, web: bool, addresses: &[&str]) -> Device {
        Device {
            id: n,
            uuid: format!("uuid{n}").into(),
            name: format!("dev-{n}").into(),
            device_type: "raspberrypi4-64".into(),
            online,
            web_accessible: web,
            addresses: addresses.iter().map(|a| (*a).into()).collect(),
            os_version: "balenaOS 6.0.13".into(),
            release: "abc".into(),
            ..Device::default()
        }
    }

    fn snapshot() -> Snapshot {
        Snapshot {
            fleets: vec![
                Fleet {
                    name: "sensors".into(),
                    slug: "acme/sensors".into(),
                    devices: vec![
                        device(1, true, true, &["192.168.1.10", "10.114.101.2"]),
                        device(2, false, true, &["192.168.1.11"]),
                        device(3, true, false, &[]),
                        device(4, true, false, &["fe80::1"]),
                    ],
                    ..Fleet::default()
                },
                Fleet {
                    name: "gateways".into(),
                    slug: "acme/gateways".into(),
                    devices: vec![device(5, true, true, &["192.168.2.5"])],
                    ..Fleet::default()
                },
            ],
            ..Snapshot::default()
        }
    }

    fn config(mode: SdMode) -> SdConfig {
        SdConfig {
            mode,
            fleets: FleetFilter::default(),
            include_offline: false,
            metrics_path: "/metrics".into(),
            file: None,
            own_uuid: None,
        }
    }

    fn targets(json: &str) -> Vec<Vec<String>> {
        let groups: Vec<serde_json::Value> = serde_json::from_str(json).unwrap();
        groups
            .iter()
            .map(|g| {
                g["targets"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|t| t.as_str().unwrap().to_string())
                    .collect()
            })
            .collect()
    }

    #[test]
    fn public_mode_lists_online_devices_with_the_public_url_on() {
        let json = render(
            &snapshot(),
            &config(SdMode::Public {
                domain: "balena-devices.com".into(),
            }),
        );
        assert_eq!(
            targets(&json),
            [
                ["uuid1.balena-devices.com:443"],
                ["uuid5.balena-devices.com:443"]
            ]
        );
        let groups: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap();
        let labels = &groups[0]["labels"];
        assert_eq!(labels["__scheme__"], "https");
        assert_eq!(labels["__metrics_path__"], "/metrics");
        for (k, v) in [
            ("uuid", "uuid1"),
            ("device_name", "dev-1"),
            ("fleet_name", "sensors"),
            ("fleet_slug", "acme/sensors"),
            ("device_type", "raspberrypi4-64"),
            ("os_version", "balenaOS 6.0.13"),
            ("release", "abc"),
        ] {
            assert_eq!(labels[k], v, "{k}");
        }
    }

    #[test]
    fn lan_mode_lists_every_address_and_skips_devices_without_one() {
        let json = render(&snapshot(), &config(SdMode::Lan { port: 9100 }));
        assert_eq!(
            targets(&json),
            [
                vec!["192.168.1.10:9100", "10.114.101.2:9100"],
                vec!["[fe80::1]:9100"],
                vec!["192.168.2.5:9100"]
            ]
        );
        assert!(json.contains("\"__scheme__\": \"http\""));
    }

    #[test]
    fn tags_are_meta_labels_for_relabelling() {
        let mut s = snapshot();
        s.fleets[1].tags = vec![("region".into(), "eu".into())];
        s.fleets[1].devices[0].tags = vec![
            ("Env".into(), "prod".into()),
            ("env".into(), "staging".into()),
            ("rack.position".into(), "A/3".into()),
        ];
        let json = render(&s, &config(SdMode::Lan { port: 80 }));
        let groups: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap();
        let labels = &groups.last().unwrap()["labels"];
        assert_eq!(labels["__meta_balena_device_tag_env_2"], "prod");
        assert_eq!(labels["__meta_balena_device_tag_env"], "staging");
        assert_eq!(labels["__meta_balena_device_tag_rack_position"], "A/3");
        assert_eq!(labels["__meta_balena_fleet_tag_region"], "eu");
    }

    #[test]
    fn the_monitor_device_itself_is_left_out() {
        let mut c = config(SdMode::Public {
            domain: "balena-devices.com".into(),
        });
        c.own_uuid = Some("uuid1".into());
        assert_eq!(
            targets(&render(&snapshot(), &c)),
            [["uuid5.balena-devices.com:443"]]
        );
    }

    #[test]
    fn offline_devices_and_fleet_filters() {
        let mut c = config(SdMode::Lan { port: 80 });
        c.include_offline = true;
        c.fleets = FleetFilter::new(vec!["sensors".into()]);
        assert_eq!(
            targets(&render(&snapshot(), &c)),
            [
                vec!["192.168.1.10:80", "10.114.101.2:80"],
                vec!["192.168.1.11:80"],
                vec!["[fe80::1]:80"]
            ]
        );
        c.fleets = FleetFilter::new(vec!["nobody/nothing".into()]);
        assert_eq!(render(&snapshot(), &c), "[]");
    }

    #[test]
    fn file_is_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("targets.json");
        write_file(&path, "[1]").unwrap();
        write_file(&path, "[2]").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "[2]");
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["targets.json"]);
        assert!(write_file(&dir.path().join("missing/targets.json"), "[]").is_err());
    }
}
