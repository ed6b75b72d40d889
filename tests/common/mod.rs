//! Helpers the test binaries share. Each binary names the modules it uses in an inline
//! `#[path = "../common"] mod common { ... }` (see tests/api/main.rs), so that whatever one of
//! them leaves unused is a warning there, not hidden.
//!
//! This file is only for golden.rs, prop_decode.rs and prop_labels.rs, which are still one
//! binary each and say `mod common;`. Each of them uses a part of these modules; the allow is
//! for those three only and goes with this file once they are modules of a binary.
#![allow(dead_code)]
pub mod child;
pub mod exporter;
pub mod fake;
pub mod net;
pub mod prometheus;
pub mod promtext;
pub mod props;
pub mod tools;
