//! The HTTP surface: who may read what, forwarding to Grafana and Alertmanager, any request a
//! client may send, slow clients, and the status page. One binary: one link step for all of them.

#[path = "../common"]
mod common {
    pub mod exporter;
    pub mod fake;
    pub mod generate;
    pub mod prometheus;
    pub mod promtext;
    pub mod props;
    pub mod tools;
}

mod access;
mod forwarding;
mod prop_http;
mod slow_clients;
mod status_page;
