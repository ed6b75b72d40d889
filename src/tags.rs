//! Tag keys as Prometheus label names. balena allows keys that are not valid label names
//! (`rack.position`, `k8s.io/zone:1`, `höhe`, `2fa`) and keys that differ only by case: every
//! character outside `[A-Za-z0-9_]` becomes `_` (as Prometheus' own service discoveries
//! sanitise tags), and a name that is already taken gets `_2`, `_3`, ... in key order.

/// `(name, value)` for each `(key, value)` in `tags`, which are sorted by key: the names are
/// unique and valid after any prefix that starts with a letter.
pub fn label_names(tags: &[(String, String)]) -> Vec<(String, &str)> {
    let mut out: Vec<(String, &str)> = Vec::with_capacity(tags.len());
    for (key, value) in tags {
        let base: String = key
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let mut name = base.clone();
        let mut n = 1;
        while out.iter().any(|(taken, _)| *taken == name) {
            n += 1;
            name = format!("{base}_{n}");
        }
        out.push((name, value.as_str()));
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
    fn keys_become_valid_unique_names() {
        assert_eq!(
            names(&["rack.position", "k8s.io/zone:1", "höhe", "2fa", "site"]),
            ["2fa", "h_he", "k8s_io_zone_1", "rack_position", "site"]
        );
        // Label names are case-sensitive: env and Env stay apart.
        assert_eq!(names(&["env", "Env"]), ["Env", "env"]);
        // rack.position and rack_position would both be rack_position.
        assert_eq!(
            names(&["rack_position", "rack.position", "rack:position"]),
            ["rack_position", "rack_position_2", "rack_position_3"]
        );
        // The suffix itself may be taken by a real key.
        assert_eq!(names(&["a.b", "a_b", "a_b_2"]), ["a_b", "a_b_2", "a_b_2_2"]);
    }
}
