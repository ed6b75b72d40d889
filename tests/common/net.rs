//! Loopback ports for the processes a test starts (Prometheus, Alertmanager, the binary).

/// A loopback port that was free a moment ago, for a child process to listen on.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}
