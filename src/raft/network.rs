//! The peer network: how openraft (and the server's forwarding) reach other members, over
//! mnemo's own gRPC service on the peer URLs (proto/proto/mnemopeerpb/peer.proto).
//!
//! Two HTTP/2 channels per peer URL: one for raft (replication, heartbeats, votes) and
//! one for requests forwarded on behalf of clients, so that client load (many streams,
//! cancelled requests) never holds up or closes raft's connection. Each connects lazily
//! and reconnects by itself. Every RPC
//! has a deadline: raft's (from the heartbeat interval and election timeout, given by
//! openraft in [`RPCOption`]) or the caller's.
//!
//! An https peer URL is dialed over TLS with the member's peer client configuration
//! ([`crate::tls::peer_client_config`], through [`crate::tls::PeerConnector`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use mnemo_proto::mnemopeerpb::peer_client::PeerClient as PeerRpcClient;
use mnemo_proto::mnemopeerpb::{PeerHeader, RaftRequest};
use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use parking_lot::Mutex;
use tonic::transport::{Channel, Endpoint};

use super::codec::CodecError;
use super::{wire, Member, TypeConfig};

/// How long connecting to a peer may take before the attempt counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// Largest peer message: a snapshot chunk or a batch of entries, with room to spare.
pub const MAX_PEER_MESSAGE: usize = 64 << 20;

/// Channels to peers, by URL, shared by everyone on this member who talks to peers.
#[derive(Debug, Clone)]
pub struct Peers {
    pub cluster_id: u64,
    pub member_id: u64,
    /// How long raft waits before it tries an unreachable peer again.
    pub retry: Duration,
    /// How https peer URLs are dialed; `None`: they cannot be.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    channels: Arc<Mutex<HashMap<(String, Lane), Channel>>>,
}

/// Which of a peer's two channels a call uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lane {
    /// openraft's RPCs.
    Raft,
    /// Requests forwarded for clients, membership changes, lookups.
    Forward,
}

impl Peers {
    pub fn new(cluster_id: u64, member_id: u64) -> Peers {
        Peers {
            cluster_id,
            member_id,
            retry: Duration::from_millis(100),
            tls: None,
            channels: Arc::default(),
        }
    }

    /// A header for a request to `to` (0: whoever answers).
    pub fn header(&self, to: u64) -> Option<PeerHeader> {
        Some(PeerHeader {
            cluster_id: self.cluster_id,
            from: self.member_id,
            to,
        })
    }

    /// A client of the peer service at `url`, on the forwarding lane.
    pub fn client(&self, url: &str) -> Result<PeerRpcClient<Channel>, String> {
        self.client_on(url, Lane::Forward)
    }

    /// A client of the peer service at `url` on `lane`.
    pub fn client_on(&self, url: &str, lane: Lane) -> Result<PeerRpcClient<Channel>, String> {
        let channel = {
            let mut channels = self.channels.lock();
            match channels.get(&(url.to_string(), lane)) {
                Some(c) => c.clone(),
                None => {
                    let c = self.connect_lazy(url)?;
                    channels.insert((url.to_string(), lane), c.clone());
                    c
                }
            }
        };
        Ok(PeerRpcClient::new(channel)
            .max_decoding_message_size(MAX_PEER_MESSAGE)
            .max_encoding_message_size(MAX_PEER_MESSAGE))
    }

    /// A channel to `url` that connects on first use (over TLS for https).
    fn connect_lazy(&self, url: &str) -> Result<Channel, String> {
        let endpoint = |url: String| {
            Endpoint::from_shared(url.clone())
                .map(|e| {
                    e.connect_timeout(CONNECT_TIMEOUT)
                        .tcp_nodelay(true)
                        .http2_keep_alive_interval(Duration::from_secs(5))
                        .keep_alive_timeout(Duration::from_secs(5))
                })
                .map_err(|e| format!("peer URL {url:?}: {e}"))
        };
        if !url.starts_with("https://") {
            return Ok(endpoint(url.to_string())?.connect_lazy());
        }
        let tls = self.tls.clone().ok_or_else(|| {
            format!(
                "peer URL {url}: https needs peer TLS (--peer-cert-file, --peer-key-file \
                 and --peer-trusted-ca-file, or --peer-auto-tls)"
            )
        })?;
        let (connector, plain) =
            crate::tls::PeerConnector::new(tls, url).map_err(|e| e.to_string())?;
        Ok(endpoint(plain)?.connect_with_connector_lazy(connector))
    }

    /// A client of `member`'s peer service (its first peer URL), on the forwarding lane.
    pub fn member_client(&self, member: &Member) -> Result<PeerRpcClient<Channel>, String> {
        self.member_client_on(member, Lane::Forward)
    }

    fn member_client_on(
        &self,
        member: &Member,
        lane: Lane,
    ) -> Result<PeerRpcClient<Channel>, String> {
        let url = member
            .peer_urls
            .first()
            .ok_or_else(|| format!("member {:?} has no peer URL", member.name))?;
        self.client_on(url, lane)
    }
}

impl RaftNetworkFactory<TypeConfig> for Peers {
    type Network = PeerClient;

    async fn new_client(&mut self, target: u64, node: &Member) -> PeerClient {
        PeerClient {
            target,
            client: self.member_client_on(node, Lane::Raft),
            peers: self.clone(),
        }
    }
}

/// Sends raft RPCs to one peer.
#[derive(Debug)]
pub struct PeerClient {
    target: u64,
    client: Result<PeerRpcClient<Channel>, String>,
    peers: Peers,
}

/// What can go wrong sending one raft RPC, before openraft's error types.
enum SendError {
    /// Not connected, connection refused, deadline passed: back off and retry.
    Unreachable(String),
    /// The peer answered with an error or with bytes that do not decode.
    Network(String),
}

impl SendError {
    fn into_rpc<E: std::error::Error>(self) -> RPCError<u64, Member, E> {
        match self {
            SendError::Unreachable(m) => {
                RPCError::Unreachable(Unreachable::new(&std::io::Error::other(m)))
            }
            SendError::Network(m) => {
                RPCError::Network(NetworkError::new(&std::io::Error::other(m)))
            }
        }
    }
}

impl From<CodecError> for SendError {
    fn from(e: CodecError) -> Self {
        SendError::Network(format!("undecodable peer response: {e}"))
    }
}

impl PeerClient {
    async fn call(
        &mut self,
        kind: RaftRpc,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, SendError> {
        let target = self.target;
        let mut client = self.client.clone().map_err(SendError::Unreachable)?;
        let mut req = tonic::Request::new(RaftRequest {
            header: self.peers.header(target),
            body,
        });
        req.set_timeout(timeout);
        let call = async {
            match kind {
                RaftRpc::Append => client.append_entries(req).await,
                RaftRpc::Vote => client.vote(req).await,
                RaftRpc::Snapshot => client.install_snapshot(req).await,
            }
        };
        // A peer that is slow to answer is retried at once (openraft's deadline for an
        // append is one heartbeat, easily exceeded under load); one that cannot be
        // reached waits for the backoff.
        match tokio::time::timeout(timeout, call).await {
            Err(_) => Err(SendError::Network(format!(
                "member {target:x}: no answer within {timeout:?}"
            ))),
            Ok(Ok(resp)) => Ok(resp.into_inner().body),
            Ok(Err(status)) => {
                let msg = format!("member {target:x}: {}", status.message());
                match status.code() {
                    tonic::Code::Unavailable | tonic::Code::Unknown => {
                        Err(SendError::Unreachable(msg))
                    }
                    _ => Err(SendError::Network(msg)),
                }
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum RaftRpc {
    Append,
    Vote,
    Snapshot,
}

impl RaftNetwork<TypeConfig> for PeerClient {
    /// An unreachable peer is tried again every heartbeat interval (openraft's default
    /// waits 500 ms, longer than a heartbeat-paced follower should go unserved).
    fn backoff(&self) -> openraft::network::Backoff {
        openraft::network::Backoff::new(std::iter::repeat(self.peers.retry))
    }

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, Member, RaftError<u64>>> {
        let body = wire::encode_append(&rpc);
        let resp = self
            .call(RaftRpc::Append, body, option.hard_ttl())
            .await
            .map_err(SendError::into_rpc)?;
        wire::decode_append_response(&resp).map_err(|e| SendError::from(e).into_rpc())
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, Member, RaftError<u64, InstallSnapshotError>>,
    > {
        let body = wire::encode_install(&rpc);
        let resp = self
            .call(RaftRpc::Snapshot, body, option.hard_ttl())
            .await
            .map_err(SendError::into_rpc)?;
        wire::decode_install_response(&resp).map_err(|e| SendError::from(e).into_rpc())
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, Member, RaftError<u64>>> {
        let body = wire::encode_vote(&rpc);
        let resp = self
            .call(RaftRpc::Vote, body, option.hard_ttl())
            .await
            .map_err(SendError::into_rpc)?;
        wire::decode_vote_response(&resp).map_err(|e| SendError::from(e).into_rpc())
    }
}
