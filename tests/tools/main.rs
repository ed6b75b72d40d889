//! The exporter with the real tools the app ships (Debian's Prometheus, promtool, Alertmanager,
//! the node exporter): the app's Prometheus configuration, alerts, the dashboards (static lints
//! and live queries), and remote write. A test whose program is missing skips itself
//! (`common::tools::require`). One binary: one link step for all of them.

#[path = "../common"]
mod common {
    pub mod dashboards;
    pub mod exporter;
    pub mod fake;
    pub mod generate;
    pub mod prometheus;
    pub mod promql;
    pub mod promtext;
    pub mod tools;
}

mod alerting;
mod app;
mod dashboards_live;
mod dashboards_static;
mod prometheus;
mod remote_write;
