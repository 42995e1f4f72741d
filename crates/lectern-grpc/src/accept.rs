//! The gRPC listener: connections are accepted here (at most `max_connections` at once, TLS
//! handshakes each in their own task, bounded in time) and handed to tonic's HTTP/2 server,
//! with the gate in front of the service and a graceful shutdown.

use crate::gate::{self, GateLayer};
use crate::pb::grpc_inference_service_server::GrpcInferenceServiceServer;
use crate::{GrpcError, GrpcSettings, Inference};
use lectern_server::AppState;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tonic::codec::CompressionEncoding;
use tonic::transport::server::Connected;

/// A client that has not sent its first bytes (plain) or finished its TLS handshake by then
/// is dropped, so that silent connections do not hold slots.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// After the shutdown signal, open calls (a long stream, say) get this long to finish.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Calls in flight on one connection (each may hold a request of up to the body limit).
const MAX_STREAMS_PER_CONNECTION: u32 = 100;

/// Serves the gRPC service on `listener` (over TLS when `tls` is set: the HTTPS certificate,
/// offered with ALPN `h2`) until `shutdown` completes, then lets open calls finish.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<ServerConfig>>,
    state: Arc<AppState>,
    settings: GrpcSettings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), GrpcError> {
    let acceptor = tls.map(|config| {
        let mut config = (*config).clone();
        config.alpn_protocols = vec![b"h2".to_vec()];
        TlsAcceptor::from(Arc::new(config))
    });
    let (connections, incoming) = mpsc::channel(64);
    let slots = Arc::new(Semaphore::new(settings.max_connections.max(1)));
    let accepting = tokio::spawn(accept(listener, acceptor, slots, connections));
    // the signal stops the accept loop (new connections are refused, not left waiting) and
    // starts the drain's clock
    let (stopping, stopped) = tokio::sync::watch::channel(false);
    let shutdown = async move {
        shutdown.await;
        accepting.abort();
        let _ = stopping.send(true);
    };
    let service = GrpcInferenceServiceServer::new(Inference::new(state.clone()))
        .max_decoding_message_size(settings.max_message_bytes)
        .max_encoding_message_size(usize::MAX)
        .accept_compressed(CompressionEncoding::Gzip)
        .accept_compressed(CompressionEncoding::Deflate)
        .send_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Deflate);
    let gate = GateLayer { state, table: Arc::new(gate::table()) };
    let served = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        .max_concurrent_streams(Some(MAX_STREAMS_PER_CONNECTION))
        .layer(gate)
        .add_service(service)
        .serve_with_incoming_shutdown(tokio_stream::wrappers::ReceiverStream::new(incoming), shutdown);
    let drained = async move {
        let mut stopped = stopped;
        let _ = stopped.wait_for(|stopped| *stopped).await;
        tokio::time::sleep(DRAIN_TIMEOUT).await;
    };
    tokio::select! {
        served = served => Ok(served?),
        _ = drained => {
            tracing::warn!(seconds = DRAIN_TIMEOUT.as_secs(), "gRPC calls still open after the drain: closed");
            Ok(())
        }
    }
}

async fn accept(
    listener: TcpListener,
    acceptor: Option<TlsAcceptor>,
    slots: Arc<Semaphore>,
    connections: mpsc::Sender<io::Result<Conn>>,
) {
    loop {
        // a slot first: over the cap, connections wait in the kernel's queue, not in memory
        let Ok(slot) = slots.clone().acquire_owned().await else { return };
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // out of file descriptors and the like: wait, do not spin
                tracing::warn!(error = %e, "gRPC accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let connections = connections.clone();
        let Some(acceptor) = acceptor.clone() else {
            tokio::spawn(async move {
                // HTTP/2 clients speak first (the connection preface)
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, tcp.peek(&mut [0u8; 1])).await {
                    Ok(Ok(n)) if n > 0 => {
                        let _ = connections.send(Ok(Conn { io: Io::Plain(tcp), _slot: slot })).await;
                    }
                    _ => tracing::debug!(%peer, "gRPC client sent nothing: dropped"),
                }
            });
            continue;
        };
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => {
                    let _ = connections.send(Ok(Conn { io: Io::Tls(Box::new(tls)), _slot: slot })).await;
                }
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "gRPC TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "gRPC TLS handshake timed out"),
            }
        });
    }
}

/// One accepted connection, holding its slot until it closes.
struct Conn {
    io: Io,
    _slot: OwnedSemaphorePermit,
}

enum Io {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Connected for Conn {
    type ConnectInfo = ();

    fn connect_info(&self) {}
}

impl AsyncRead for Conn {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Io::Tls(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.io {
            Io::Plain(s) => s.is_write_vectored(),
            Io::Tls(s) => s.is_write_vectored(),
        }
    }
}
