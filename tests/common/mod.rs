#![allow(dead_code)]
pub mod dashboards;
pub mod exporter;
pub mod fake;
pub mod generate;
pub mod prometheus;
pub mod promql;
pub mod promtext;
pub mod props;
pub mod tools;
