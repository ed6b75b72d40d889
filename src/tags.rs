//! Tag keys as Prometheus label names. balena allows keys that are not valid label names
//! (`rack.position`, `k8s.io/zone:1`, `höhe`, `2fa`), keys in camelCase (`siteName`) and keys
//! that differ only by case (`env`, `Env`). Names are snake_case, as Prometheus' conventions
//! (and `promtool check metrics`) want: every character outside `[A-Za-z0-9_]` becomes `_` (as
//! Prometheus' own service discoveries sanitise tags), an upper-case letter after a lower-case
//! one or a digit gets a `_` before it, and all is lower-cased. When two keys meet, the one
//! already written that way keeps the name and the others get `_2`, `_3`, ... in key order.

/// `(name, value)` for each `(key, value)` in `tags`, in the same order: the names are unique
/// and valid after any prefix that starts with a letter.
pub fn label_names<K: AsRef<str>, V: AsRef<str>>(tags: &[(K, V)]) -> Vec<(String, &str)> {
    let bases: Vec<String> = tags
        .iter()
        .map(|(key, _)| snake_case(key.as_ref()))
        .collect();
    // Keys already in their final form are named first, so `env` stays `env` beside `Env`.
    let mut order: Vec<usize> = (0..tags.len()).collect();
    order.sort_by_key(|&i| (tags[i].0.as_ref() != bases[i], i));
    let mut names: Vec<Option<String>> = vec![None; tags.len()];
    let mut taken: Vec<String> = Vec::with_capacity(tags.len());
    for i in order {
        let base = &bases[i];
        let mut name = base.clone();
        let mut n = 1;
        while taken.contains(&name) {
            n += 1;
            name = format!("{base}_{n}");
        }
        taken.push(name.clone());
        names[i] = Some(name);
    }
    names
        .into_iter()
        .zip(tags)
        .map(|(name, (_, value))| (name.unwrap_or_default(), value.as_ref()))
        .collect()
}

/// `label_names` with a prefix, remembered for the last list of keys: the devices of a fleet
/// mostly have the same tag keys, so a crawl works the names out once per change of keys
/// rather than once per device.
pub struct Names {
    prefix: &'static str,
    keys: Vec<String>,
    names: Vec<String>,
}

impl Names {
    pub fn new(prefix: &'static str) -> Names {
        Names {
            prefix,
            keys: Vec::new(),
            names: Vec::new(),
        }
    }

    /// The prefixed label name of each tag of `tags`, in order.
    pub fn of<K: AsRef<str>, V: AsRef<str>>(&mut self, tags: &[(K, V)]) -> &[String] {
        let same = self.keys.len() == tags.len()
            && self
                .keys
                .iter()
                .zip(tags)
                .all(|(a, (b, _))| a == b.as_ref());
        if !same {
            self.keys = tags.iter().map(|(k, _)| k.as_ref().to_string()).collect();
            self.names = label_names(tags)
                .into_iter()
                .map(|(name, _)| format!("{}{name}", self.prefix))
                .collect();
        }
        &self.names
    }
}

fn snake_case(key: &str) -> String {
    let mut out = String::with_capacity(key.len() + 4);
    let mut previous: Option<char> = None;
    for c in key.chars() {
        let c = if c.is_ascii_alphanumeric() { c } else { '_' };
        if c.is_ascii_uppercase()
            && previous.is_some_and(|p| p.is_ascii_lowercase() || p.is_ascii_digit())
        {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
        previous = Some(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(keys: &[&str]) -> Vec<String> {
        let mut tags: Vec<(String, String)> = keys
            .iter()
            .map(|k| (k.to_string(), String::new()))
            .collect();
        tags.sort();
        label_names(&tags).into_iter().map(|(n, _)| n).collect()
    }

    #[test]
    fn remembered_names_follow_the_keys() {
        let mut names = Names::new("tag_");
        let tags = |keys: &[&str]| -> Vec<(String, String)> {
            keys.iter().map(|k| (k.to_string(), "v".into())).collect()
        };
        assert_eq!(names.of(&tags(&["Env", "env"])), ["tag_env_2", "tag_env"]);
        assert_eq!(names.of(&tags(&["Env", "env"])), ["tag_env_2", "tag_env"]);
        assert_eq!(names.of(&tags(&["env"])), ["tag_env"]);
        assert!(names.of(&tags(&[])).is_empty());
        assert_eq!(names.of(&tags(&["a.b"])), ["tag_a_b"]);
    }

    #[test]
    fn keys_become_valid_unique_snake_case_names() {
        assert_eq!(
            names(&["rack.position", "k8s.io/zone:1", "höhe", "2fa", "site"]),
            ["2fa", "h_he", "k8s_io_zone_1", "rack_position", "site"]
        );
        assert_eq!(
            names(&["siteName", "HTTPPort", "v2Api"]),
            ["httpport", "site_name", "v2_api"]
        );
        // `Env` sorts before `env`, but `env` keeps its name.
        assert_eq!(names(&["env", "Env"]), ["env_2", "env"]);
        assert_eq!(
            names(&["rack_position", "rack.position", "rack:position"]),
            ["rack_position_2", "rack_position_3", "rack_position"]
        );
        // The suffix itself may be taken by a real key.
        assert_eq!(names(&["a.b", "a_b", "a_b_2"]), ["a_b_3", "a_b", "a_b_2"]);
    }
}
