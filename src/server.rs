//! The listeners: accept connections up to a cap and serve each with HTTP/1.1 under limits a
//! public port needs, so that slow or hostile clients cannot starve scrapes: a deadline for
//! the request head (which is also the idle keep-alive timeout), a bounded head, a deadline
//! for writes that make no progress (a client that does not read), and a maximum connection
//! age. Beyond the cap, new connections wait in the kernel's accept queue, in arrival order,
//! until a slot frees up. What was closed, and why, is counted in `ConnStats`.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Sleep;
use tower_service::Service;

/// Connections the kernel completes and holds for a listener until they are accepted (capped
/// by `net.core.somaxconn`). tokio's `TcpListener::bind` asks for 128, like the standard
/// library: with the connection cap reached, the 129th waiting client's handshake was dropped
/// and retried with backoff, so it waited far longer than the clients ahead of it.
pub const ACCEPT_BACKLOG: u32 = 1024;

/// A listener on `addr` whose accept queue holds `ACCEPT_BACKLOG` connections.
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(ACCEPT_BACKLOG)
}

/// The connection limits of a listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once; more wait to be accepted.
    pub max_connections: usize,
    /// The whole request head must arrive within this, counted from when the server starts
    /// waiting for it: on a new connection and between requests (the idle keep-alive timeout).
    pub head_timeout: Duration,
    /// A write that makes no progress for this long closes the connection.
    pub stall_timeout: Duration,
    /// A connection is closed this long after it was accepted, whatever it does.
    pub max_age: Duration,
    /// Largest request head (request line and headers), in bytes.
    pub max_head_bytes: usize,
}

impl Limits {
    /// The defaults, with `max_connections` lowered to fit the process's open-files limit.
    pub fn new(max_connections: usize) -> Limits {
        Limits {
            max_connections: fit_open_files(max_connections, open_files_limit()),
            head_timeout: Duration::from_secs(10),
            stall_timeout: Duration::from_secs(30),
            max_age: Duration::from_secs(600),
            max_head_bytes: 16 * 1024,
        }
    }
}

/// Connections need a file descriptor each, and a forwarded request a second one: at most
/// half of what the limit leaves after a reserve for the crawler, the log and the listeners.
fn fit_open_files(wanted: usize, limit: Option<u64>) -> usize {
    const RESERVE: u64 = 64;
    match limit {
        Some(limit) => wanted.min((limit.saturating_sub(RESERVE) / 2).max(1) as usize),
        None => wanted,
    }
}

/// The soft limit on open files (`RLIMIT_NOFILE`), from /proc/self/limits; None when
/// unlimited or unknown.
fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Why the server closed a connection before the client did.
pub const CLOSE_REASONS: &[&str] = &[
    "head_timeout",
    "head_too_large",
    "stalled",
    "max_age",
    "error",
];

/// What one listener did, read by the metrics at scrape time.
#[derive(Debug, Default)]
pub struct ConnStats {
    open: AtomicU64,
    accepted: AtomicU64,
    limit_reached: AtomicU64,
    closed: [AtomicU64; CLOSE_REASONS.len()],
}

impl ConnStats {
    pub fn open(&self) -> u64 {
        self.open.load(Ordering::Relaxed)
    }
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }
    /// Times a connection had to wait because `max_connections` were open.
    pub fn limit_reached(&self) -> u64 {
        self.limit_reached.load(Ordering::Relaxed)
    }
    /// (reason, connections closed for it) for every reason.
    pub fn closed(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        CLOSE_REASONS
            .iter()
            .zip(&self.closed)
            .map(|(r, n)| (*r, n.load(Ordering::Relaxed)))
    }
    fn close(&self, reason: &str) {
        if let Some(i) = CLOSE_REASONS.iter().position(|r| *r == reason) {
            self.closed[i].fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The TCP peer of a request, for handlers (`warp::ext::get::<Peer>()`).
#[derive(Clone, Copy, Debug)]
pub struct Peer(pub SocketAddr);

/// Serves `filter` on `listener` under `limits` until `shutdown` completes, then lets open
/// connections finish their requests.
pub async fn serve<F>(
    listener: TcpListener,
    filter: F,
    limits: Limits,
    stats: Arc<ConnStats>,
    name: &'static str,
    shutdown: impl Future<Output = ()>,
) where
    F: warp::Filter + Clone + Send + Sync + 'static,
    F::Extract: warp::Reply,
{
    let service = warp::service(filter);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    let mut last_warning: Option<Instant> = None;
    loop {
        let permit = match slots.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                stats.limit_reached.fetch_add(1, Ordering::Relaxed);
                if last_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
                    last_warning = Some(Instant::now());
                    log::warn!(
                        "connection limit reached listener={name} max_connections={}: new connections wait until one closes",
                        limits.max_connections
                    );
                }
                tokio::select! {
                    permit = slots.clone().acquire_owned() => match permit {
                        Ok(permit) => permit,
                        Err(_) => break,
                    },
                    () = &mut shutdown => break,
                }
            }
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors, or the peer gave up: wait a little, go on.
                    log::debug!("accept failed listener={name} error=\"{e}\"");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let connection = Connection {
            stream,
            peer,
            limits,
            stats: stats.clone(),
            name,
        };
        tokio::spawn(connection.serve(service.clone(), permit, graceful.watcher()));
    }
    drop(listener);
    graceful.shutdown().await;
}

/// One accepted connection and what serving it needs.
struct Connection {
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    limits: Limits,
    stats: Arc<ConnStats>,
    name: &'static str,
}

impl Connection {
    /// Serves requests until the client closes, a limit ends the connection, or shutdown;
    /// holds one of the `max_connections` slots meanwhile.
    async fn serve<S>(
        self,
        service: S,
        _permit: tokio::sync::OwnedSemaphorePermit,
        watcher: hyper_util::server::graceful::Watcher,
    ) where
        S: Service<hyper::Request<Incoming>, Response = warp::reply::Response, Error = Infallible>
            + Clone
            + Send
            + 'static,
        S::Future: Send,
    {
        let Connection {
            stream,
            peer,
            limits,
            stats,
            name,
        } = self;
        // A response leaves in several writes (the body's parts, the exporter's own families):
        // with Nagle's algorithm on, each later write waits for the client's delayed ACK, about
        // 40 ms per response on Linux.
        if let Err(e) = stream.set_nodelay(true) {
            log::debug!("TCP_NODELAY failed listener={name} error=\"{e}\"");
        }
        stats.accepted.fetch_add(1, Ordering::Relaxed);
        stats.open.fetch_add(1, Ordering::Relaxed);
        let handler = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(Peer(peer));
            let mut service = service.clone();
            async move {
                Ok::<_, Infallible>(service.call(request).await.unwrap_or_else(|e| match e {}))
            }
        });
        let io = TokioIo::new(Watchdog::new(stream, limits.stall_timeout));
        let connection = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.head_timeout)
            .max_buf_size(limits.max_head_bytes)
            .serve_connection(io, handler);
        match tokio::time::timeout(limits.max_age, watcher.watch(connection)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => stats.close(reason(&e)),
            Err(_) => stats.close("max_age"),
        }
        stats.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Why hyper ended a connection with an error.
fn reason(error: &hyper::Error) -> &'static str {
    if error.is_timeout() {
        return "head_timeout";
    }
    if error.is_parse_too_large() {
        return "head_too_large";
    }
    let mut source = std::error::Error::source(error);
    while let Some(e) = source {
        if e.downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::TimedOut)
        {
            return "stalled";
        }
        source = e.source();
    }
    "error"
}

/// A connection whose writes fail once they have made no progress for `timeout`: a client
/// that stops reading cannot hold a response, and its connection, forever.
struct Watchdog {
    stream: TcpStream,
    timeout: Duration,
    stalled: Option<Pin<Box<Sleep>>>,
}

impl Watchdog {
    fn new(stream: TcpStream, timeout: Duration) -> Watchdog {
        Watchdog {
            stream,
            timeout,
            stalled: None,
        }
    }

    /// On a pending write: fails once the write has waited `timeout`.
    fn pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let timeout = self.timeout;
        let sleep = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        ready!(sleep.as_mut().poll(cx));
        Poll::Ready(io::Error::new(
            io::ErrorKind::TimedOut,
            "the client read nothing for too long",
        ))
    }

    fn watch<T>(
        &mut self,
        cx: &mut Context<'_>,
        result: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        match result {
            Poll::Ready(r) => {
                self.stalled = None;
                Poll::Ready(r)
            }
            Poll::Pending => self.pending(cx).map(Err),
        }
    }
}

impl AsyncRead for Watchdog {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Watchdog {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.stream).poll_write(cx, buf);
        self.watch(cx, result)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        self.watch(cx, result)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let result = Pin::new(&mut self.stream).poll_flush(cx);
        self.watch(cx, result)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 600 clients connect to a listener that accepts none of them (as when the connection cap
    /// is reached): every handshake completes at once, none is dropped to be retried a second
    /// or more later (which a backlog of 128 does, from the 130th client on).
    #[tokio::test]
    async fn waiting_clients_are_queued_not_dropped() {
        let listener = bind(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
        let addr = listener.local_addr().unwrap();
        // The kernel caps the queue at net.core.somaxconn (4096 since Linux 5.4, 128 before).
        let somaxconn = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .ok()
            .and_then(|s| s.trim().parse::<usize>().ok())
            .unwrap_or(4096);
        let mut clients = Vec::new();
        for _ in 0..600.min(somaxconn) {
            let connect = TcpStream::connect(addr);
            let client = tokio::time::timeout(Duration::from_millis(900), connect).await;
            clients.push(client.expect("handshake dropped").unwrap());
        }
        drop(listener);
    }

    #[test]
    fn the_cap_fits_the_open_files_limit() {
        assert_eq!(fit_open_files(512, None), 512);
        assert_eq!(fit_open_files(512, Some(1_048_576)), 512);
        assert_eq!(fit_open_files(512, Some(1024)), 480);
        assert_eq!(fit_open_files(512, Some(100)), 18);
        assert_eq!(fit_open_files(512, Some(10)), 1);
    }

    #[test]
    fn the_open_files_limit_is_read() {
        // Linux always has one; it is a positive number or "unlimited" (None).
        if let Some(limit) = open_files_limit() {
            assert!(limit > 0);
        }
    }
}
