//! The exporter and its API client, black-box: the fake balena API (and the fake's own
//! behaviour), paging, what the devices run, `/metrics`, `/sd`, gzip, the binary as a user runs
//! it, and the README's tables. One binary: one link step for all of them.

#[path = "../common"]
mod common {
    pub mod exporter;
    pub mod fake;
    pub mod generate;
    pub mod net;
    pub mod promtext;
}

mod cli;
mod exporter;
mod fake_api;
mod paging;
mod plain_gzip;
mod readme;
mod sd;
mod services;
