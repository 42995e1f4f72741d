//! The accept loop of both listeners, plain HTTP and HTTPS: at most `max_connections`
//! connections at once (past that, new ones wait in the listen queue until one closes), each
//! served by hyper (HTTP/1.1) behind [`lectern_server::conn::guard`] (request heads checked,
//! header-read and idle timeouts), with a graceful shutdown: on the signal the loop stops
//! accepting and waits for the open connections (idle ones close at once, busy ones after their
//! response).

use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use lectern_server::conn::{self, Timeouts};
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

/// A client that has not finished its TLS handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How connections are accepted and kept.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConnectionLimits {
    pub timeouts: Timeouts,
    /// Connections served at once.
    pub max_connections: usize,
}

/// Serves `app` on `listener` (over TLS when `tls` is set) until `shutdown` completes, then
/// waits for the open connections.
pub async fn serve<S>(
    listener: TcpListener,
    tls: Option<Arc<ServerConfig>>,
    app: S,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    S: tower_service::Service<
            hyper::Request<conn::Tracked<hyper::body::Incoming>>,
            Response = axum::response::Response,
            Error = Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let acceptor = tls.map(TlsAcceptor::from);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        // A slot first: over the cap, connections wait in the kernel's queue, not in memory.
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            _ = &mut shutdown => break,
        };
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_error(e).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = tcp.set_nodelay(true);
        let app = app.clone();
        // Taken before a handshake, so a shutdown during it still waits for this connection.
        let watcher = graceful.watcher();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let served = match acceptor {
                None => serve_connection(tcp, app, limits.timeouts, watcher).await,
                Some(acceptor) => match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => serve_connection(tls, app, limits.timeouts, watcher).await,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "TLS handshake timed out");
                        return;
                    }
                },
            };
            if let Err(e) = served {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tracing::debug!(connections = graceful.count(), "waiting for open connections");
    graceful.shutdown().await;
    Ok(())
}

async fn serve_connection<IO, S>(
    io: IO,
    app: S,
    timeouts: Timeouts,
    watcher: hyper_util::server::graceful::Watcher,
) -> hyper::Result<()>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: tower_service::Service<
            hyper::Request<conn::Tracked<hyper::body::Incoming>>,
            Response = axum::response::Response,
            Error = Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let (io, service) = conn::guard(io, app, timeouts);
    // The guard keeps the time limits (hyper's own header timeout would also cut idle
    // keep-alive connections) and refuses bad heads before hyper's limits are reached.
    let connection = hyper::server::conn::http1::Builder::new()
        .header_read_timeout(None)
        .serve_connection(TokioIo::new(io), service);
    watcher.watch(connection).await
}

/// Per-connection accept errors are skipped; others (too many open files) pause the loop a
/// little, as axum does, instead of spinning.
async fn accept_error(e: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(e.kind(), ConnectionRefused | ConnectionAborted | ConnectionReset) {
        return;
    }
    tracing::error!(error = %e, "cannot accept a connection");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// Raises this process's soft limit on open files to its hard limit; returns the soft limit
/// in force afterwards (`None` where there is no such limit to read).
pub fn raise_open_files_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit/setrlimit only read and write the struct passed.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
            return None;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
            if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
                limit.rlim_cur = limit.rlim_max;
            }
        }
        // `rlim_t` is u64 on Linux but not on every unix.
        #[allow(clippy::unnecessary_cast)]
        Some(limit.rlim_cur as u64)
    }
    #[cfg(not(unix))]
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    fn limits(max_connections: usize) -> ConnectionLimits {
        ConnectionLimits {
            timeouts: Timeouts { header_read: Duration::from_millis(300), idle: Duration::from_millis(600) },
            max_connections,
        }
    }

    async fn start(limits: ConnectionLimits) -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let app = axum::Router::new().route("/hello", get(|| async { "hello" }));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(serve(listener, None, app, limits, async move {
            let _ = stopped.await;
        }));
        (address, stop)
    }

    /// Reads until the server closes; None when it did not close within `wait`.
    async fn closed_within(stream: &mut TcpStream, wait: Duration) -> Option<Vec<u8>> {
        let mut got = Vec::new();
        match tokio::time::timeout(wait, stream.read_to_end(&mut got)).await {
            Ok(_) => Some(got),
            Err(_) => None,
        }
    }

    async fn get_hello(address: std::net::SocketAddr) -> String {
        let mut s = TcpStream::connect(address).await.unwrap();
        s.write_all(b"GET /hello HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn silent_and_half_sent_heads_are_closed_after_the_header_timeout() {
        let (address, _stop) = start(limits(100)).await;
        let mut silent = TcpStream::connect(address).await.unwrap();
        let mut half = TcpStream::connect(address).await.unwrap();
        half.write_all(b"GET /hello HTTP/1.1\r\nhost: x\r\n").await.unwrap();
        // A head sent a byte at a time does not earn more time.
        let mut trickle = TcpStream::connect(address).await.unwrap();
        let trickling = tokio::spawn(async move {
            for b in b"GET /hello HTTP/1.1\r\nx-slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaa" {
                if trickle.write_all(&[*b]).await.is_err() {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            closed_within(&mut trickle, Duration::from_secs(5)).await.is_some()
        });
        assert!(get_hello(address).await.ends_with("hello"), "others are served meanwhile");
        for s in [&mut silent, &mut half] {
            let got = closed_within(s, Duration::from_secs(5)).await.expect("closed");
            assert!(got.is_empty(), "{}", String::from_utf8_lossy(&got));
        }
        assert!(trickling.await.unwrap(), "the trickling head was cut off");
    }

    #[tokio::test]
    async fn keep_alive_connections_close_after_the_idle_time_not_the_header_time() {
        let (address, _stop) = start(limits(100)).await;
        let mut s = TcpStream::connect(address).await.unwrap();
        s.write_all(b"GET /hello HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
        let mut buf = [0u8; 256];
        let n = s.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).ends_with("hello"));
        // Past the header timeout (300 ms) but within the idle one (600 ms): still open.
        tokio::time::sleep(Duration::from_millis(400)).await;
        s.write_all(b"GET /hello HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
        let n = s.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).ends_with("hello"));
        let started = std::time::Instant::now();
        closed_within(&mut s, Duration::from_secs(5)).await.expect("closed when idle");
        assert!(started.elapsed() >= Duration::from_millis(500), "{:?}", started.elapsed());
    }

    #[tokio::test]
    async fn past_the_cap_new_connections_wait_for_a_free_slot() {
        let (address, _stop) = start(limits(2)).await;
        let mut a = TcpStream::connect(address).await.unwrap();
        let _b = TcpStream::connect(address).await.unwrap();
        a.write_all(b"GET /hello HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
        let mut buf = [0u8; 256];
        let n = a.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).ends_with("hello"), "a served connection keeps working");
        // The third waits until the silent ones time out, then is served.
        let started = std::time::Instant::now();
        assert!(get_hello(address).await.ends_with("hello"));
        assert!(started.elapsed() >= Duration::from_millis(200), "{:?}", started.elapsed());
    }
}
