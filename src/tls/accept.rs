//! The accept loop of a TLS listener: TCP accept, then the handshake in a task of its
//! own (a slow or failed handshake holds up no one and never ends the listener), then
//! the connection goes to tonic through a channel. Tonic stores each connection's
//! [`TlsConnInfo`] in the extensions of every request on it.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Connected;

/// How long a client may take to complete the handshake before it is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The pause after a failed `accept` (e.g. out of file descriptors) before the next.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Connections handshaken and not yet taken by the server.
const READY_QUEUE: usize = 64;

/// What a request learns of its TLS connection (`request.extensions()`).
#[derive(Debug, Clone)]
pub struct TlsConnInfo {
    pub remote_addr: SocketAddr,
    /// The subject CN of the client certificate, when the listener asked for one and it
    /// was verified; `Some("")` for a verified certificate without a CN (etcd then
    /// takes the empty user name, as Go does).
    pub common_name: Option<Arc<str>>,
}

/// A server-side TLS connection, as tonic's `serve_with_incoming` takes it.
#[derive(Debug)]
pub struct TlsConn {
    stream: TlsStream<TcpStream>,
    info: TlsConnInfo,
}

impl TlsConn {
    pub fn info(&self) -> &TlsConnInfo {
        &self.info
    }
}

/// The connections of `listener`, after a TLS handshake under `config`. The loop ends
/// when the stream is dropped (the server stopped); failed handshakes are logged and
/// skipped.
pub fn incoming(
    listener: TcpListener,
    config: Arc<ServerConfig>,
) -> ReceiverStream<io::Result<TlsConn>> {
    incoming_peers(listener, config, None)
}

/// [`incoming`] for the peer port: with `allowed_cn` (`--peer-cert-allowed-cn`), a
/// connection whose client certificate does not carry that Common Name is closed after
/// the handshake, with a log line.
pub fn incoming_peers(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    allowed_cn: Option<Arc<str>>,
) -> ReceiverStream<io::Result<TlsConn>> {
    let (tx, rx) = mpsc::channel(READY_QUEUE);
    tokio::spawn(accept_loop(
        listener,
        TlsAcceptor::from(config),
        allowed_cn,
        tx,
    ));
    ReceiverStream::new(rx)
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    allowed_cn: Option<Arc<str>>,
    tx: mpsc::Sender<io::Result<TlsConn>>,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = tx.closed() => return,
        };
        let (tcp, remote_addr) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "accepting a client connection failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        // Small responses must not wait for delayed ACKs, as on the plain listener.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(remote = %remote_addr, error = %e, "TCP_NODELAY");
        }
        let acceptor = acceptor.clone();
        let allowed_cn = allowed_cn.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    // etcd's wording for the same event.
                    tracing::warn!(remote = %remote_addr, error = %e, "rejected connection");
                    return;
                }
                Err(_) => {
                    tracing::warn!(remote = %remote_addr, "rejected connection: TLS handshake timed out");
                    return;
                }
            };
            let common_name = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .map(|leaf| Arc::from(super::common_name(leaf).unwrap_or_default()));
            if let Some(allowed) = &allowed_cn {
                if common_name.as_deref() != Some(&**allowed) {
                    tracing::warn!(
                        remote = %remote_addr,
                        common_name = common_name.as_deref().unwrap_or("(no certificate)"),
                        allowed = &**allowed,
                        "rejected connection: the certificate's CommonName is not allowed"
                    );
                    return;
                }
            }
            let info = TlsConnInfo {
                remote_addr,
                common_name,
            };
            // A closed channel means the server stopped: the connection is dropped.
            let _ = tx.send(Ok(TlsConn { stream, info })).await;
        });
    }
}

impl Connected for TlsConn {
    type ConnectInfo = TlsConnInfo;

    fn connect_info(&self) -> TlsConnInfo {
        self.info.clone()
    }
}

impl AsyncRead for TlsConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
