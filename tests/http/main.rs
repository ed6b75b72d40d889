//! The HTTP surface: who may read what, forwarding to Grafana and Alertmanager, any request a
//! client may send, and slow clients. One binary: one link step for all of them.

#[path = "../common"]
mod common {
    pub mod child;
    pub mod exporter;
    pub mod fake;
    pub mod net;
    pub mod promtext;
    pub mod props;
}

mod access;
mod forwarding;
mod prop_http;
mod slow_clients;
