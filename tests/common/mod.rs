#![allow(dead_code)]
pub mod exporter;
pub mod fake;
pub mod generate;
pub mod prometheus;
pub mod promtext;
