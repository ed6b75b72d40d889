//! Programs a test runs beside it (Prometheus, Alertmanager, the node exporter, the binary):
//! killed when the test is done with them, passed or failed.

use std::process::{Child, Command, Stdio};

/// A child process, killed and reaped when dropped.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `command` with its output discarded; panics saying `what` could not start.
pub fn quiet(command: &mut Command, what: &str) -> Killed {
    let child = command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    Killed(child)
}
