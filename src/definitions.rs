//! What the words mean: inactive, configuring, offline, updating, failing service and offline
//! since, each defined once here. The fleet and device families, the status page and (through
//! those families) the recording rules, alerts and dashboards all use these, so a fleet has one
//! number of offline devices everywhere. The README's "What the words mean" says the same.

/// Where a device stands, from balena's `overall_status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Presence {
    /// Deactivated (`inactive`): offline on purpose; never offline, never pages.
    Inactive,
    /// Never connected: preregistered or provisioning (`configuring`, `post-provisioning`).
    /// Never offline, never pages; what it last reported is stale.
    Configuring,
    /// What balena calls `disconnected` (`offline` on API v6): neither its heartbeat nor its
    /// VPN is up. A device with its VPN off on purpose and its heartbeat online is not offline.
    Offline,
    /// Expected online and not offline (operational, updating, reduced functionality, ...).
    Connected,
}

impl Presence {
    pub fn of(overall_status: &str) -> Presence {
        match overall_status {
            "inactive" => Presence::Inactive,
            "configuring" | "post-provisioning" => Presence::Configuring,
            "disconnected" | "offline" => Presence::Offline,
            _ => Presence::Connected,
        }
    }

    /// Neither inactive nor configuring: the devices offline shares are taken over.
    pub fn expected_online(self) -> bool {
        matches!(self, Presence::Offline | Presence::Connected)
    }
}

/// Update statuses of an update under way.
const UPDATING: &[&str] = &["downloading", "downloaded", "applying changes"];

/// Updating: not inactive, and the update status is downloading, downloaded or applying
/// changes. A device without an update status (`none`: an older supervisor, or a server
/// without the field) is updating when `overall_status` says so; `done` is not updating,
/// whatever `overall_status` says.
pub fn updating(presence: Presence, update_status: &str, overall_status: &str) -> bool {
    presence != Presence::Inactive
        && match update_status {
            "none" => overall_status == "updating",
            status => UPDATING.contains(&status),
        }
}

/// Service states that are not running as they should (the supervisor reports `exited`,
/// `Dead`, `restarting`; compared ignoring case).
const FAILING: &[&str] = &["exited", "dead", "restarting"];

/// Restart policies under which an exited service ended as designed.
const ENDS_BY_DESIGN: &[&str] = &["no", "on-failure"];

/// A failing service: `exited`, `Dead` or `restarting`, on a device expected online, except
/// an exited service whose release composition gives `restart` `no` or `on-failure` (it ended
/// as designed; balena's default is `always`) and a service the user excluded by name.
pub fn service_failing(
    presence: Presence,
    status: &str,
    restart: Option<&str>,
    excluded: bool,
) -> bool {
    let exited_by_design = status.eq_ignore_ascii_case("exited")
        && restart.is_some_and(|policy| ENDS_BY_DESIGN.contains(&policy));
    presence.expected_online()
        && !excluded
        && !exited_by_design
        && FAILING.iter().any(|s| status.eq_ignore_ascii_case(s))
}

/// When an offline device went offline: the last change of its heartbeat state, else (the
/// heartbeat never changed, or the server does not say) its last connectivity event. None
/// when the device is not offline or neither time is known.
pub fn offline_since(
    presence: Presence,
    heartbeat_changed: Option<f64>,
    last_connectivity: Option<f64>,
) -> Option<f64> {
    (presence == Presence::Offline)
        .then_some(heartbeat_changed.or(last_connectivity))
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presence_follows_balenas_overall_status() {
        let of = |s| Presence::of(s);
        assert_eq!(of("inactive"), Presence::Inactive);
        assert_eq!(of("configuring"), Presence::Configuring);
        assert_eq!(of("post-provisioning"), Presence::Configuring);
        assert_eq!(of("disconnected"), Presence::Offline);
        assert_eq!(of("offline"), Presence::Offline); // API v6
        for s in [
            "operational",
            "updating",
            "reduced-functionality",
            "idle",
            "unknown",
        ] {
            assert_eq!(of(s), Presence::Connected, "{s}");
        }
        assert!(!Presence::Inactive.expected_online());
        assert!(!Presence::Configuring.expected_online());
        assert!(Presence::Offline.expected_online());
    }

    #[test]
    fn updating_is_the_update_status_and_done_is_not() {
        let c = Presence::Connected;
        assert!(updating(c, "downloading", "operational"));
        assert!(updating(c, "applying changes", "updating"));
        assert!(updating(c, "downloaded", "operational"));
        assert!(!updating(c, "done", "updating"));
        assert!(!updating(c, "rejected", "updating"));
        assert!(updating(c, "none", "updating"));
        assert!(!updating(c, "none", "operational"));
        assert!(!updating(Presence::Inactive, "downloading", "inactive"));
    }

    #[test]
    fn exited_one_shot_services_are_not_failing() {
        let c = Presence::Connected;
        assert!(service_failing(c, "exited", None, false));
        assert!(service_failing(c, "exited", Some("always"), false));
        assert!(service_failing(c, "exited", Some("unless-stopped"), false));
        assert!(!service_failing(c, "exited", Some("no"), false));
        assert!(!service_failing(c, "exited", Some("on-failure"), false));
        assert!(service_failing(c, "Dead", Some("no"), false));
        assert!(service_failing(c, "restarting", Some("on-failure"), false));
        assert!(!service_failing(c, "Running", None, false));
        assert!(!service_failing(c, "exited", None, true));
        assert!(!service_failing(Presence::Inactive, "exited", None, false));
        assert!(!service_failing(Presence::Configuring, "Dead", None, false));
        assert!(service_failing(Presence::Offline, "Dead", None, false));
    }

    #[test]
    fn offline_since_falls_back_to_the_last_connectivity_event() {
        let off = Presence::Offline;
        assert_eq!(offline_since(off, Some(5.0), Some(9.0)), Some(5.0));
        assert_eq!(offline_since(off, None, Some(9.0)), Some(9.0));
        assert_eq!(offline_since(off, None, None), None);
        assert_eq!(offline_since(Presence::Connected, Some(5.0), None), None);
    }
}
