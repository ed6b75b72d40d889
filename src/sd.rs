//! Prometheus HTTP service discovery of fleet devices: one target group per device, written
//! device by device as a crawl converts them (so no list of devices is kept), gzipped as it
//! goes, and the file_sd copy written atomically.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;

use crate::config::{SdConfig, SdMode};
use crate::gzip;
use crate::snapshot::{Device, Fleet};
use crate::tags;

/// The target groups of one crawl as a JSON array, one group per line.
pub struct Writer {
    config: Arc<SdConfig>,
    stream: gzip::Stream,
    deflater: gzip::Deflater,
    groups: usize,
    /// Watched devices seen, and whether any had its public device URL on (for the note).
    watched: usize,
    public_url: bool,
    target: String,
    /// The port of `lan` targets, as text.
    port: String,
    device_tags: tags::Names,
    fleet_tags: tags::Names,
}

impl Writer {
    pub fn new(config: Arc<SdConfig>) -> Writer {
        let mut stream = gzip::Stream::new();
        stream.text().push(b'[');
        Writer {
            stream,
            deflater: gzip::Deflater::new(),
            groups: 0,
            watched: 0,
            public_url: false,
            target: String::new(),
            port: match &config.mode {
                SdMode::Lan { port } => port.to_string(),
                SdMode::Public { .. } => String::new(),
            },
            device_tags: tags::Names::new("__meta_balena_device_tag_"),
            fleet_tags: tags::Names::new("__meta_balena_fleet_tag_"),
            config,
        }
    }

    /// The device's target group, if it is selected and has a target.
    pub fn add(&mut self, f: &Fleet, d: &Device) {
        let config = &*self.config;
        if !config.fleets.matches(&f.slug, &f.name) || config.own_uuid.as_deref() == Some(&*d.uuid)
        {
            return;
        }
        self.watched += 1;
        self.public_url |= d.web_accessible;
        if !(d.online || config.include_offline) {
            return;
        }
        let scheme = match &config.mode {
            SdMode::Public { .. } if !d.web_accessible => return,
            SdMode::Lan { .. } if d.addresses.is_empty() => return,
            SdMode::Public { .. } => "https",
            SdMode::Lan { .. } => "http",
        };
        let out = self.stream.text();
        out.extend_from_slice(if self.groups == 0 { b"\n" } else { b",\n" });
        self.groups += 1;
        out.extend_from_slice(b"{\"targets\":[");
        self.targets(d);
        self.stream.text().extend_from_slice(b"],\"labels\":{");
        self.labels(f, d, scheme);
        self.stream.text().extend_from_slice(b"}}");
        self.stream.spill(&mut self.deflater);
    }

    /// The device's targets, as JSON strings separated by commas.
    fn targets(&mut self, d: &Device) {
        let out = self.stream.text();
        match &self.config.mode {
            SdMode::Public { domain } => {
                self.target.clear();
                self.target.push_str(&d.uuid);
                self.target.push('.');
                self.target.push_str(domain);
                self.target.push_str(":443");
                json(out, &self.target);
            }
            SdMode::Lan { .. } => {
                for (i, a) in d.addresses.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    self.target.clear();
                    if a.contains(':') {
                        self.target.push('[');
                        self.target.push_str(a);
                        self.target.push(']');
                    } else {
                        self.target.push_str(a);
                    }
                    self.target.push(':');
                    self.target.push_str(&self.port);
                    json(out, &self.target);
                }
            }
        }
    }

    /// The group's labels, as JSON object members.
    fn labels(&mut self, f: &Fleet, d: &Device, scheme: &str) {
        let out = self.stream.text();
        // Tags as Prometheus' own discoveries offer them (`__meta_ec2_tag_<key>`): for
        // relabelling, dropped after it unless a rule keeps them.
        for (names, tags) in [
            (&mut self.device_tags, &d.tags),
            (&mut self.fleet_tags, &f.tags),
        ] {
            for (name, (_, value)) in names.of(tags).iter().zip(tags) {
                json(out, name);
                out.push(b':');
                json(out, value);
                out.push(b',');
            }
        }
        let labels = [
            ("__metrics_path__", self.config.metrics_path.as_str()),
            ("__scheme__", scheme),
            ("device_name", &d.name),
            ("device_type", &d.device_type),
            ("fleet_name", &f.name),
            ("fleet_slug", &f.slug),
            ("os_variant", &d.os_variant),
            ("os_version", &d.os_version),
            ("release", &d.release),
            ("supervisor_version", &d.supervisor_version),
            ("uuid", &d.uuid),
        ];
        for (i, (name, value)) in labels.into_iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            json(out, name);
            out.push(b':');
            json(out, value);
        }
    }

    /// In `public` mode, when devices are watched but none has its public device URL on,
    /// `/sd` is empty: the line to log once, saying what to do. openBalena has no public
    /// device URLs at all (`is_web_accessible` is read-only and false there), so `lan` is its
    /// only mode.
    pub fn note(&self) -> Option<String> {
        let SdMode::Public { domain } = &self.config.mode else {
            return None;
        };
        (self.watched > 0 && !self.public_url).then(|| {
            format!(
                "sd lists no targets: no device has its public device URL enabled (SD_MODE=public, \
                 domain {domain}); enable it on the devices, or set SD_MODE=lan to scrape their \
                 local addresses (openBalena has no public device URLs: use SD_MODE=lan there)"
            )
        })
    }

    /// The JSON as a stream, and its compressor.
    pub fn finish(mut self) -> (gzip::Stream, gzip::Deflater) {
        let end: &[u8] = if self.groups == 0 { b"]\n" } else { b"\n]\n" };
        self.stream.text().extend_from_slice(end);
        (self.stream, self.deflater)
    }
}

/// `text` as a JSON string.
fn json(out: &mut Vec<u8>, text: &str) {
    // Writing to memory cannot fail.
    let _ = serde_json::to_writer(out, text);
}

/// Writes what `json` reads to `path` through a temporary file in the same directory and a
/// rename, so Prometheus never reads a partial or empty file.
pub fn write_file(path: &Path, json: &mut impl Read) -> std::io::Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("SD_FILE names a directory"))?;
    let mut temporary = path.to_path_buf();
    temporary.set_file_name(format!(".{}.tmp", name.to_string_lossy()));
    let mut file = std::fs::File::create(&temporary)?;
    std::io::copy(json, &mut file)?;
    file.flush()?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::FleetFilter;
    use crate::render::testing;

    type Account = Vec<(Fleet, Vec<Device>)>;

    /// The renderings of `account` with `config`: the `/sd` JSON and the note.
    fn rendered(account: &Account, config: &SdConfig) -> (String, Option<String>) {
        let r = testing::render(&testing::settings(config.clone()), account, 0);
        (String::from_utf8(r.sd.text().unwrap()).unwrap(), r.sd_note)
    }

    fn render(account: &Account, config: &SdConfig) -> String {
        rendered(account, config).0
    }

    fn public_url_note(account: &Account, config: &SdConfig) -> Option<String> {
        rendered(account, config).1
    }

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
        for (_, devices) in &mut s {
            for d in devices {
                d.web_accessible = false;
            }
        }
        let note = public_url_note(&s, &c).unwrap();
        assert!(note.contains("SD_MODE=lan"), "{note}");
        c.mode = SdMode::Lan { port: 80 };
        assert_eq!(public_url_note(&s, &c), None, "lan mode needs no URL");
        assert_eq!(
            public_url_note(&Account::new(), &public()),
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

    fn snapshot() -> Account {
        vec![
            (
                Fleet {
                    name: "sensors".into(),
                    slug: "acme/sensors".into(),
                    ..Fleet::default()
                },
                vec![
                    device(1, true, true, &["192.168.1.10", "10.114.101.2"]),
                    device(2, false, true, &["192.168.1.11"]),
                    device(3, true, false, &[]),
                    device(4, true, false, &["fe80::1"]),
                ],
            ),
            (
                Fleet {
                    name: "gateways".into(),
                    slug: "acme/gateways".into(),
                    ..Fleet::default()
                },
                vec![device(5, true, true, &["192.168.2.5"])],
            ),
        ]
    }

    fn config(mode: SdMode) -> SdConfig {
        testing::sd_config(mode)
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
        assert!(json.contains("\"__scheme__\":\"http\""), "{json}");
    }

    #[test]
    fn tags_are_meta_labels_for_relabelling() {
        let mut s = snapshot();
        s[1].0.tags = vec![("region".into(), "eu".into())];
        s[1].1[0].tags = vec![
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
        assert_eq!(render(&snapshot(), &c), "[]\n");
    }

    #[test]
    fn file_is_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("targets.json");
        write_file(&path, &mut &b"[1]"[..]).unwrap();
        write_file(&path, &mut &b"[2]"[..]).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "[2]");
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["targets.json"]);
        assert!(write_file(&dir.path().join("missing/targets.json"), &mut &b"[]"[..]).is_err());
    }
}
