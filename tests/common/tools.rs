//! The Debian programs some tests run (`prometheus`, `promtool`, the node exporter, `chromium`,
//! Alertmanager): a test
//! that needs one calls `require` first. `cargo test` on a machine without them then passes
//! and says, on stderr, which test it skipped and why; `scripts/test` sets
//! `BALENA_EXPORTER_REQUIRE_TOOLS=1`, which makes a missing program a failure instead.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

/// The variable `scripts/test` sets so that nothing is skipped.
pub const REQUIRE: &str = "BALENA_EXPORTER_REQUIRE_TOOLS";

/// Whether every program in `programs` is on PATH. When one is not: panics if `REQUIRE` is
/// set, else prints `skipped: <test>: ...` and returns false (the caller returns).
pub fn require(programs: &[&str]) -> bool {
    let missing: Vec<&str> = programs.iter().copied().filter(|p| !on_path(p)).collect();
    if missing.is_empty() {
        return true;
    }
    let test = std::thread::current()
        .name()
        .unwrap_or("a test")
        .to_string();
    let why = format!(
        "{} not on PATH (Debian packages of the same names; scripts/test installs them)",
        missing.join(", ")
    );
    if std::env::var_os(REQUIRE).is_some_and(|v| v == "1") {
        panic!("{test}: {why}");
    }
    // Straight to the process's stderr: the test harness captures only print! and eprint!,
    // so this line shows in a plain `cargo test` run.
    let _ = writeln!(std::io::stderr(), "skipped: {test}: {why}");
    false
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| Path::new(&dir).join(program).is_file())
    })
}

/// `promtool check metrics` on `text`: Err with promtool's report on any problem or lint.
pub fn promtool_check_metrics(text: &[u8]) -> Result<(), String> {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus; scripts/test installs it)");
    // promtool stops reading at the first error it finds, so on a large text the write can
    // fail (broken pipe): its report then says why, and the text is not accepted.
    let written = child.stdin.take().unwrap().write_all(text);
    let out = child.wait_with_output().unwrap();
    let report =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    match written {
        Ok(()) if out.status.success() && report.trim().is_empty() => Ok(()),
        Err(e) if report.trim().is_empty() => Err(format!("promtool did not read it all: {e}")),
        _ => Err(report),
    }
}
