//! Dialing an https peer URL: TCP, then a TLS handshake under the member's
//! [`ClientConfig`](rustls::ClientConfig) (ALPN `h2`), handed to tonic as the channel's
//! connection. tonic's own TLS is not used: it cannot present mnemo's verifier for
//! self-signed peers, and it takes its certificates as PEM rather than a built config.
//!
//! The channel's endpoint is the peer URL with the scheme `http`, so tonic does not try
//! TLS of its own on top; [`PeerConnector`] knows the real host for the handshake.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use tonic::codegen::http::Uri;
use tonic::codegen::Service;

use super::{Result, TlsError};

/// A TLS connection to a peer, as tonic's connector service returns it.
pub type PeerStream = TokioIo<TlsStream<TcpStream>>;

/// Connects to one peer over TLS (see the module documentation).
#[derive(Clone)]
pub struct PeerConnector {
    tls: TlsConnector,
    server_name: ServerName<'static>,
}

impl std::fmt::Debug for PeerConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerConnector")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl PeerConnector {
    /// A connector for the peer URL `https://host:port`; also returns the `http://` URL
    /// the channel's endpoint takes.
    pub fn new(config: Arc<ClientConfig>, url: &str) -> Result<(PeerConnector, String)> {
        let rest = url
            .strip_prefix("https://")
            .ok_or_else(|| TlsError(format!("peer URL {url:?} is not https")))?;
        let authority = rest.split('/').next().unwrap_or(rest);
        let plain = format!("http://{authority}");
        let uri: Uri = plain
            .parse()
            .map_err(|e| TlsError(format!("peer URL {url:?}: {e}")))?;
        let host = uri
            .host()
            .ok_or_else(|| TlsError(format!("peer URL {url:?} has no host")))?;
        // `[::1]` is an IPv6 address; ServerName wants it without brackets.
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let server_name = ServerName::try_from(host.to_string())
            .map_err(|e| TlsError(format!("peer URL {url:?}: host {host:?}: {e}")))?;
        Ok((
            PeerConnector {
                tls: TlsConnector::from(config),
                server_name,
            },
            plain,
        ))
    }
}

impl Service<Uri> for PeerConnector {
    type Response = PeerStream;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<PeerStream>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let tls = self.tls.clone();
        let server_name = self.server_name.clone();
        Box::pin(async move {
            let authority = uri
                .authority()
                .ok_or_else(|| io::Error::other(format!("peer address {uri} has no host")))?;
            let tcp = TcpStream::connect(authority.as_str()).await?;
            tcp.set_nodelay(true)?;
            let stream = tls.connect(server_name, tcp).await?;
            Ok(TokioIo::new(stream))
        })
    }
}
