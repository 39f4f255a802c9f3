//! `lease-keepalive`: each client grants a lease and keeps it alive over one
//! LeaseKeepAlive stream; a request is one keep-alive round trip.

use std::sync::Arc;

use clap::Args;
use mnemo_proto::etcdserverpb::lease_client::LeaseClient;
use mnemo_proto::etcdserverpb::{
    LeaseGrantRequest, LeaseKeepAliveRequest, LeaseKeepAliveResponse, LeaseRevokeRequest,
};
use tokio::sync::{mpsc, Mutex};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;

use super::load::{self, connect};
use super::summary::Summary;
use super::{BenchError, BudgetArgs, Global, Result};

#[derive(Debug, Clone, Args)]
pub struct KeepaliveArgs {
    #[command(flatten)]
    pub budget: BudgetArgs,
}

/// One client's lease and its keep-alive stream.
struct KeepAlive {
    id: i64,
    tx: mpsc::Sender<LeaseKeepAliveRequest>,
    rx: Streaming<LeaseKeepAliveResponse>,
}

pub async fn keepalive(g: &Global, a: &KeepaliveArgs) -> Result<Summary> {
    let channels = connect(&g.endpoints, g.conns, g.target_leader).await?;
    let mut sessions = Vec::new();
    let mut leases = Vec::new();
    for c in 0..g.clients.max(1) {
        let mut client = LeaseClient::new(channels[c % channels.len()].clone());
        let id = client
            .lease_grant(LeaseGrantRequest { ttl: 60, id: 0 })
            .await
            .map_err(|e| BenchError(format!("lease grant: {}", e.message())))?
            .into_inner()
            .id;
        // The first keep-alive is queued before the stream opens (tonic waits for response
        // headers, which etcd sends with its first answer) and its answer is not timed.
        let (tx, rx) = mpsc::channel(1);
        let opening = BenchError("lease keep-alive: the stream closed".into());
        tx.send(LeaseKeepAliveRequest { id })
            .await
            .map_err(|_| opening)?;
        let mut rx = client
            .lease_keep_alive(ReceiverStream::new(rx))
            .await
            .map_err(|e| BenchError(format!("lease keep-alive: {e}")))?
            .into_inner();
        rx.message()
            .await
            .map_err(|e| BenchError(format!("lease keep-alive: {e}")))?;
        sessions.push(Mutex::new(KeepAlive { id, tx, rx }));
        leases.push((client, id));
    }
    let sessions = Arc::new(sessions);
    let summary = load::run("lease-keepalive", &a.budget.budget(g), move |c, _| {
        let sessions = sessions.clone();
        async move {
            // A client makes one request at a time: its session is never contended.
            let mut s = sessions[c].lock().await;
            let id = s.id;
            s.tx.send(LeaseKeepAliveRequest { id })
                .await
                .map_err(|_| "keep-alive stream closed".to_string())?;
            match s.rx.message().await {
                Ok(Some(r)) if r.ttl > 0 => Ok(()),
                Ok(Some(_)) => Err("lease expired".to_string()),
                Ok(None) => Err("keep-alive stream ended".to_string()),
                Err(e) => Err(format!("keep-alive: {}", e.message())),
            }
        }
    })
    .await;
    for (mut client, id) in leases {
        let _ = client.lease_revoke(LeaseRevokeRequest { id }).await;
    }
    Ok(summary)
}
