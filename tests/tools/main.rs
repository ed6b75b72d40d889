//! The exporter with the real programs the app ships or a user runs (Debian's Prometheus,
//! promtool, Alertmanager, the node exporter, chromium): the app's Prometheus configuration,
//! alerts, the dashboards (static lints and live queries), remote write, and the status page.
//! A test whose program is missing skips itself (`common::tools::require`). One binary: one
//! link step for all of them.

#[path = "../common"]
mod common {
    pub mod child;
    pub mod dashboards;
    pub mod exporter;
    pub mod fake;
    pub mod generate;
    pub mod net;
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
mod status_page;
