//! Credentials for fleet data: a bearer token, basic auth, or both, compared in a time that
//! reveals neither their content nor their length.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use subtle::ConstantTimeEq;

use crate::config::MetricsAuth;

/// True when the `Authorization` header carries credentials that `auth` accepts.
pub fn allows(auth: &MetricsAuth, header: Option<&str>) -> bool {
    let Some((scheme, credentials)) = header.and_then(|h| h.trim().split_once(' ')) else {
        return false;
    };
    let credentials = credentials.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        if let Some(token) = &auth.token {
            return same(credentials.as_bytes(), token.expose().as_bytes());
        }
    }
    if scheme.eq_ignore_ascii_case("basic") {
        if let Some((user, password)) = &auth.basic {
            let Ok(decoded) = STANDARD.decode(credentials) else {
                return false;
            };
            let Some(colon) = decoded.iter().position(|&b| b == b':') else {
                return false;
            };
            let (given_user, given_password) = (&decoded[..colon], &decoded[colon + 1..]);
            // Both compared, always: no early exit that tells which part was wrong.
            return same(given_user, user.as_bytes())
                & same(given_password, password.expose().as_bytes());
        }
    }
    false
}

/// The `WWW-Authenticate` challenge for a 401.
pub fn challenge(auth: &MetricsAuth) -> &'static str {
    if auth.basic.is_some() {
        "Basic realm=\"balena-exporter\", charset=\"UTF-8\""
    } else {
        "Bearer realm=\"balena-exporter\""
    }
}

/// Whether `given` equals `secret`, in a time that depends only on `given`'s length (which the
/// client knows), never on the secret's length or on where the first difference is: every
/// byte of `given` is compared with a byte of the secret, cycling through it.
fn same(given: &[u8], secret: &[u8]) -> bool {
    if secret.is_empty() {
        return false; // not configurable: an empty value counts as unset
    }
    let mut equal = (given.len() as u64).ct_eq(&(secret.len() as u64));
    for (i, byte) in given.iter().enumerate() {
        equal &= byte.ct_eq(&secret[i % secret.len()]);
    }
    equal.into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn both() -> MetricsAuth {
        MetricsAuth {
            token: Some(Secret::new("t0ken")),
            basic: Some(("prom".into(), Secret::new("p:w d"))),
        }
    }

    #[test]
    fn comparison_needs_the_same_bytes_and_length() {
        assert!(same(b"t0ken", b"t0ken"));
        assert!(!same(b"t0ken", b"t0ke"));
        assert!(!same(b"t0ke", b"t0ken"));
        assert!(
            !same(b"t0kent0ken", b"t0ken"),
            "a repeated secret is not the secret"
        );
        assert!(!same(b"", b"t0ken"));
        assert!(!same(b"", b""));
    }

    #[test]
    fn accepts_only_the_configured_credentials() {
        let basic = |s: &str| format!("Basic {}", STANDARD.encode(s));
        let auth = both();
        for (header, want) in [
            (Some("Bearer t0ken".to_string()), true),
            (Some("bearer  t0ken ".to_string()), true),
            (Some("Bearer t0ken2".to_string()), false),
            (Some("Bearer".to_string()), false),
            (Some(basic("prom:p:w d")), true),
            (Some(basic("prom:p:w")), false),
            (Some(basic("Prom:p:w d")), false),
            (Some(basic("promp:w d")), false),
            (Some("Basic !!!".to_string()), false),
            (Some("Digest t0ken".to_string()), false),
            (None, false),
        ] {
            assert_eq!(allows(&auth, header.as_deref()), want, "{header:?}");
        }
        let token_only = MetricsAuth {
            basic: None,
            ..both()
        };
        assert!(!allows(&token_only, Some(&basic("prom:p:w d"))));
        assert_eq!(challenge(&token_only), "Bearer realm=\"balena-exporter\"");
    }
}
