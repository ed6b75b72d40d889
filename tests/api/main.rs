//! The exporter and its API client, black-box: the fake balena API (and the fake's own
//! behaviour), paging, incremental crawls, what the devices run, `/metrics`, `/sd`, gzip, the golden files of the
//! one render path, the property tests of decoding and labels, the binary as a user runs it,
//! and the README's tables. One binary: one link step for all of them.

#[path = "../common"]
mod common {
    pub mod exporter;
    pub mod fake;
    pub mod generate;
    pub mod net;
    pub mod promtext;
    pub mod props;
    pub mod tools;
}

mod cli;
mod exporter;
mod fake_api;
mod golden;
mod incremental;
mod paging;
mod plain_gzip;
mod prop_decode;
mod prop_labels;
mod readme;
mod sd;
mod services;
