//! Starting and stopping a member: open the store, start raft, the watch hub, the lease
//! clock and auto-compaction, serve gRPC until asked to stop, then shut down cleanly.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use mnemo_proto::etcdserverpb::LeaseRevokeRequest;
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;

use super::identity::{self, Identity};
use super::{EtcdServer, ServerOptions};
use crate::config::{ClusterState, Config};
use crate::error::{Error, Result};
use crate::lease::{min_ttl, Lessor, LessorConfig};
use crate::mvcc::watch::WatchHub;
use crate::mvcc::{Applied, History, Store};
use crate::raft::{Member, RaftNode, RaftOptions};

/// Holds the data directory's lock for as long as the member runs: a second member (or
/// an offline tool) on the same directory is refused.
#[derive(Debug)]
pub struct DirLock {
    _file: std::fs::File,
}

impl DirLock {
    pub fn acquire(member_dir: &Path) -> Result<DirLock> {
        let path = member_dir.join("lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Error::Internal(format!("opening {}: {e}", path.display())))?;
        match file.try_lock() {
            Ok(()) => Ok(DirLock { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => Err(Error::Internal(format!(
                "data dir {} is in use by another process",
                member_dir.display()
            ))),
            Err(std::fs::TryLockError::Error(e)) => {
                Err(Error::Internal(format!("locking {}: {e}", path.display())))
            }
        }
    }
}

/// Runs the member `config` describes until SIGTERM or SIGINT.
pub async fn run(config: Config) -> Result<()> {
    let signal = shutdown_signal()?;
    let listeners = client_listeners(&config)?;
    let options = ServerOptions::from_config(&config).with_peer_tls(&config)?;
    serve(options, listeners, signal).await
}

/// One `--listen-client-urls` entry: where to bind, and for an https URL the TLS it
/// serves.
#[derive(Debug, Clone)]
pub struct ClientListener {
    pub addr: SocketAddr,
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

/// The client listeners of `config`, with their TLS loaded (or, for `--auto-tls`
/// without a certificate, generated under `<data-dir>/fixtures/client` as etcd does).
/// Plain http URLs ignore the TLS flags, as etcd's do.
pub fn client_listeners(config: &Config) -> Result<Vec<ClientListener>> {
    let urls = &config.listen_client_urls;
    let tls = if urls.iter().any(|u| u.is_tls()) {
        let mut tls = config.client_tls.clone();
        if !tls.is_enabled() && tls.auto_tls {
            let hosts: Vec<String> = urls.iter().map(|u| u.host().to_string()).collect();
            let dir = config.data_dir.join("fixtures").join("client");
            tls = crate::tls::self_signed(&dir, &hosts, &tls)?;
            tracing::info!(dir = %dir.display(), "client TLS: using a self-signed certificate (--auto-tls)");
        }
        Some(Arc::new(crate::tls::server_config(&tls)?))
    } else {
        None
    };
    Ok(urls
        .iter()
        .zip(config.client_bind_addrs())
        .map(|(url, addr)| ClientListener {
            addr,
            tls: url.is_tls().then(|| tls.clone()).flatten(),
        })
        .collect())
}

impl From<SocketAddr> for ClientListener {
    /// A plain (http) listener.
    fn from(addr: SocketAddr) -> ClientListener {
        ClientListener { addr, tls: None }
    }
}

impl ServerOptions {
    /// The peer TLS of `config`, loaded (or, for `--peer-auto-tls` without a
    /// certificate, generated under `<data-dir>/fixtures/peer` as etcd does). The
    /// listener serves TLS when a `--listen-peer-urls` entry is https; the dialer is set
    /// up when any peer URL this member knows is https.
    pub fn with_peer_tls(mut self, config: &Config) -> Result<ServerOptions> {
        let listen_tls = config.listen_peer_urls.iter().any(|u| u.is_tls());
        let dial_tls = config
            .initial_cluster
            .iter()
            .flat_map(|m| m.peer_urls.iter())
            .chain(config.initial_advertise_peer_urls.iter())
            .any(|u| u.is_tls());
        if !listen_tls && !dial_tls {
            return Ok(self);
        }
        let mut tls = config.peer_tls.clone();
        if !tls.is_enabled() && tls.auto_tls {
            let hosts: Vec<String> = config
                .listen_peer_urls
                .iter()
                .chain(config.initial_advertise_peer_urls.iter())
                .map(|u| u.host().to_string())
                .collect();
            let dir = config.data_dir.join("fixtures").join("peer");
            tls = crate::tls::self_signed(&dir, &hosts, &tls)?;
            tracing::info!(dir = %dir.display(), "peer TLS: using a self-signed certificate (--peer-auto-tls)");
        }
        if listen_tls {
            self.peer_tls.server = Some(Arc::new(crate::tls::server_config(&tls)?));
        }
        if tls.is_enabled() || tls.trusted_ca_file.is_some() {
            self.peer_tls.client = Some(Arc::new(crate::tls::peer_client_config(&tls)?));
        }
        self.peer_tls.allowed_cn = tls.allowed_cn.as_deref().map(Arc::from);
        Ok(self)
    }

    /// What the server takes from a configuration.
    pub fn from_config(config: &Config) -> ServerOptions {
        let local = config.local_member();
        let member = Member {
            name: config.name.clone(),
            peer_urls: local.peer_urls.iter().map(|u| u.to_string()).collect(),
            client_urls: config
                .advertise_client_urls
                .iter()
                .map(|u| u.to_string())
                .collect(),
        };
        // Every member of a new cluster must start from the same membership: raft's first
        // entry is written by each of them, not replicated. Client URLs are not known for
        // the others, so nobody's are in it; each member publishes its own once it runs.
        let initial_members: BTreeMap<u64, Member> = config
            .initial_cluster
            .iter()
            .map(|m| {
                let peer_urls = m.peer_urls.iter().map(|u| u.to_string()).collect();
                (
                    m.id,
                    Member {
                        name: m.name.clone(),
                        peer_urls,
                        client_urls: vec![],
                    },
                )
            })
            .collect();
        ServerOptions {
            member_id: config.member_id(),
            cluster_id: config.cluster_id(),
            cluster_token: config.initial_cluster_token.clone(),
            peer_addrs: config.peer_bind_addrs(),
            member,
            member_dir: config.data_dir.join("member"),
            max_request_bytes: config.max_request_bytes,
            max_txn_ops: config.max_txn_ops,
            quota_backend_bytes: config.quota_backend_bytes.unwrap_or(DEFAULT_QUOTA_BYTES),
            heartbeat_ms: config.heartbeat_interval.as_millis() as u64,
            election_timeout_ms: config.election_timeout.as_millis() as u64,
            snapshot_count: config.snapshot_count,
            snapshot_catchup_entries: config.snapshot_catchup_entries,
            initial_members,
            new_cluster: config.initial_cluster_state == ClusterState::New,
            auto_compaction: config.auto_compaction,
            watch_progress_notify_interval: config.watch_progress_notify_interval,
            wal_force_pwrite: config.wal_force_pwrite,
            backend_cache_bytes: config.backend_cache_bytes,
            bcrypt_cost: config.bcrypt_cost,
            auth_token_ttl: config.auth_token_ttl,
            client_cert_auth: config.client_tls.client_cert_auth,
            peer_tls: crate::tls::PeerTls::default(),
        }
    }
}

/// How long a graceful shutdown waits for client connections to finish.
const SHUTDOWN_DRAIN: std::time::Duration = std::time::Duration::from_secs(2);

/// etcd's default space quota: 2 GiB.
pub const DEFAULT_QUOTA_BYTES: u64 = 2 << 30;

/// Installs SIGTERM and SIGINT handlers now; the future completes at the first signal.
pub fn shutdown_signal() -> Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let install = |kind| signal(kind).map_err(|e| Error::Internal(format!("signal handler: {e}")));
    let mut term = install(SignalKind::terminate())?;
    let mut int = install(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}

/// Runs one member until `shutdown` resolves.
pub async fn serve(
    options: ServerOptions,
    client_listeners: Vec<ClientListener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let member_dir = options.member_dir.clone();
    std::fs::create_dir_all(&member_dir)
        .map_err(|e| Error::Internal(format!("creating {}: {e}", member_dir.display())))?;
    let _lock = DirLock::acquire(&member_dir)?;
    let leftovers = member_dir.join(super::SNAPSHOTS_OUT);
    if let Err(e) = std::fs::remove_dir_all(&leftovers) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(dir = %leftovers.display(), error = %e, "cannot remove old snapshot copies");
        }
    }

    // Bind first: a port already in use fails before anything is written.
    let mut listeners = Vec::new();
    for l in &client_listeners {
        let addr = l.addr;
        let bound = TcpListener::bind(addr)
            .await
            .map_err(|e| Error::Internal(format!("listening on {addr}: {e}")))?;
        listeners.push((bound, l.tls.clone()));
    }
    let mut peer_listeners = Vec::new();
    for addr in &options.peer_addrs {
        let l = TcpListener::bind(addr)
            .await
            .map_err(|e| Error::Internal(format!("listening for peers on {addr}: {e}")))?;
        peer_listeners.push(l);
    }
    let mut options = options;
    let ident = resolve_identity(&options).await?;
    if ident.member_id != options.member_id || ident.cluster_id != options.cluster_id {
        tracing::info!(
            member_id = format_args!("{:x}", ident.member_id),
            cluster_id = format_args!("{:x}", ident.cluster_id),
            "member and cluster ids from the data directory"
        );
    }
    options.member_id = ident.member_id;
    options.cluster_id = ident.cluster_id;
    let client_addrs: Vec<String> = client_listeners
        .iter()
        .map(|l| {
            let scheme = if l.tls.is_some() { "https" } else { "http" };
            format!("{scheme}://{}", l.addr)
        })
        .collect();

    let db_path = member_dir.join("db");
    let db_options = mnemo_storage::DatabaseOptions {
        cache_bytes: options.backend_cache_bytes,
        ..Default::default()
    };
    let store = Arc::new(tokio::task::block_in_place(|| {
        Store::open_with(&db_path, db_options)
    })?);
    let hub = Arc::new(WatchHub::new(store.clone() as Arc<dyn History>));
    let lessor = Arc::new(Lessor::new(LessorConfig {
        min_ttl: min_ttl(options.heartbeat_ms, options.election_timeout_ms),
        ..LessorConfig::default()
    }));
    let on_applied = {
        let hub = hub.clone();
        let lessor = lessor.clone();
        let restored_store = store.clone();
        let on_applied: crate::raft::OnApplied = Arc::new(move |applied: Applied| {
            if applied.restored {
                lessor.reload(restored_store.leases());
                hub.resync_all();
                return;
            }
            lessor.apply(&applied);
            hub.notify(&applied);
        });
        on_applied
    };
    let mut raft_options = RaftOptions::new(
        options.member_id,
        options.member.clone(),
        member_dir.clone(),
    );
    raft_options.cluster_id = options.cluster_id;
    raft_options.heartbeat_ms = options.heartbeat_ms;
    raft_options.election_timeout_ms = options.election_timeout_ms;
    raft_options.snapshot_count = options.snapshot_count;
    raft_options.snapshot_catchup_entries = options.snapshot_catchup_entries;
    raft_options.initial_members = options.initial_members.clone();
    raft_options.new_cluster = options.new_cluster;
    raft_options.wal.force_pwrite = options.wal_force_pwrite;
    raft_options.peer_tls = options.peer_tls.client.clone();
    let raft = RaftNode::start(raft_options, store.clone(), on_applied).await?;
    let io_path = raft.io_path();
    let server = Arc::new(EtcdServer::new(options, store, raft, hub, lessor));

    // Peers first: electing a leader needs them.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut peer_tasks = Vec::new();
    for listener in peer_listeners {
        let service = crate::grpc::peer::PeerService {
            server: server.clone(),
        }
        .into_server();
        let mut stop = stop_rx.clone();
        let stopped = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        let tls = server.options.peer_tls.clone();
        peer_tasks.push(tokio::spawn(async move {
            let router = tonic::transport::Server::builder().add_service(service);
            match tls.server {
                Some(config) => {
                    let incoming = crate::tls::incoming_peers(listener, config, tls.allowed_cn);
                    router.serve_with_incoming_shutdown(incoming, stopped).await
                }
                None => {
                    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
                    router.serve_with_incoming_shutdown(incoming, stopped).await
                }
            }
        }));
    }

    // Like etcd, serve clients once the cluster has a leader (a lone member elects itself
    // within one election timeout); give up waiting after a while and serve anyway, with
    // requests failing "no leader" until one appears.
    let patience = std::time::Duration::from_millis(server.options.election_timeout_ms * 10);
    if let Err(e) = server.raft.wait_for_leader(patience).await {
        tracing::warn!(error = %e, "no leader yet; serving clients anyway");
    }

    tokio::spawn(lease_expiry(Arc::downgrade(&server)));
    tokio::spawn(leadership(Arc::downgrade(&server)));
    if let Some(mode) = server.options.auto_compaction {
        tokio::spawn(super::compactor::run(Arc::downgrade(&server), mode));
    }
    // Like etcd, serve clients once this member's name and client URLs are in the
    // membership, so that a member that answers is listed with its client URLs.
    if tokio::time::timeout(patience, server.publish())
        .await
        .is_err()
    {
        tracing::warn!("could not publish this member yet; serving clients anyway");
        let server = Arc::downgrade(&server);
        tokio::spawn(async move {
            if let Some(s) = server.upgrade() {
                s.publish().await;
            }
        });
    }

    tracing::info!(
        name = %server.options.member.name,
        member_id = format_args!("{:x}", server.options.member_id),
        client_urls = ?client_addrs,
        data_dir = %member_dir.display(),
        wal_io = ?io_path,
        "ready to serve client requests"
    );

    let mut tasks = Vec::new();
    for (listener, tls) in listeners {
        let router = crate::grpc::router(server.clone());
        let mut stop = stop_rx.clone();
        let stopped = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        tasks.push(tokio::spawn(async move {
            match tls {
                // The same router over TLS connections: gRPC on h2, the HTTP endpoints
                // on http/1.1 (ALPN), the client certificate's CN in each request.
                Some(tls) => {
                    let incoming = crate::tls::incoming(listener, tls);
                    router.serve_with_incoming_shutdown(incoming, stopped).await
                }
                None => {
                    // Small responses must not wait for delayed ACKs (Nagle): no delay
                    // on every accepted connection, as etcd's Go server does.
                    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
                    router.serve_with_incoming_shutdown(incoming, stopped).await
                }
            }
        }));
    }
    let removed = tokio::select! {
        _ = shutdown => false,
        _ = server.removed.notified() => true,
    };
    if removed {
        tracing::error!("the member has been permanently removed from the cluster; stopping");
    }
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    // Connections get a moment to finish their requests; streams (watches, keep-alives)
    // and idle clients that do not hang up are then cut.
    let drain = async {
        for t in &mut tasks {
            match t.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "gRPC server ended with an error"),
                Err(e) => tracing::warn!(error = %e, "gRPC server task failed"),
            }
        }
    };
    if tokio::time::timeout(SHUTDOWN_DRAIN, drain).await.is_err() {
        tracing::info!("closing client connections still open");
        for t in &tasks {
            t.abort();
        }
    }
    server.raft.shutdown().await?;
    for t in &peer_tasks {
        t.abort();
    }
    let store = server.store.clone();
    tokio::task::block_in_place(|| store.sync())?;
    tracing::info!("stopped");
    if removed {
        return Err(Error::Internal(
            "the member has been permanently removed from the cluster".into(),
        ));
    }
    Ok(())
}

/// This member's ids: from the data directory, or (first start) from the flags for a new
/// cluster or from the other members for an existing one; stored for later starts.
async fn resolve_identity(options: &ServerOptions) -> Result<Identity> {
    let dir = &options.member_dir;
    if let Some(id) = identity::read(dir)? {
        return Ok(id);
    }
    let has_data = dir.join("wal").exists() || dir.join("db").exists();
    let id = if options.new_cluster || has_data {
        // A data directory from before identities were stored was bootstrapped from its
        // flags too.
        Identity {
            member_id: options.member_id,
            cluster_id: options.cluster_id,
        }
    } else {
        let own = &options.member.peer_urls;
        let others: Vec<String> = options
            .initial_members
            .values()
            .flat_map(|m| m.peer_urls.iter())
            .filter(|u| !own.contains(u))
            .cloned()
            .collect();
        let patience = std::time::Duration::from_millis(options.election_timeout_ms * 10);
        identity::fetch_from_peers(&others, own, options.peer_tls.client.clone(), patience).await?
    };
    identity::write(dir, &id)?;
    Ok(id)
}

/// Proposes a revoke for every lease the leader's clock finds expired.
async fn lease_expiry(server: std::sync::Weak<EtcdServer>) {
    loop {
        let Some(lessor) = server.upgrade().map(|s| s.lessor.clone()) else {
            return;
        };
        let expired = lessor.next_expired().await;
        let Some(server) = server.upgrade() else {
            return;
        };
        // The lessor hands an expired lease out again only after a retry interval, so
        // revokes in flight are not proposed twice.
        for id in expired {
            let server = server.clone();
            tokio::spawn(async move {
                match server
                    .lease_revoke(&super::Access::unchecked(), LeaseRevokeRequest { id })
                    .await
                {
                    Ok(_) | Err(Error::LeaseNotFound) => {}
                    Err(e) => {
                        tracing::warn!(lease = id, error = %e, "revoking an expired lease failed")
                    }
                }
            });
        }
    }
}

/// Starts the lease clock when this member becomes leader, stops it when it stops being;
/// counts the leaders seen.
async fn leadership(server: std::sync::Weak<EtcdServer>) {
    let Some(mut changes) = server.upgrade().map(|s| s.raft.raft().metrics()) else {
        return;
    };
    let mut was_leader = false;
    let mut last_leader = None;
    let mut was_member = false;
    loop {
        let Some(s) = server.upgrade() else {
            return;
        };
        let is_member = {
            // Read before borrowing the metrics: a second borrow while raft waits to
            // publish new metrics would deadlock (the channel's lock prefers writers).
            let commit_index = s.raft.status().commit_index;
            let m = s.raft.raft().metrics();
            let m = m.borrow();
            // Only a committed membership counts: a joint or uncommitted one may be undone.
            let committed = m.membership_config.log_id().map(|l| l.index) <= commit_index;
            let present = m
                .membership_config
                .membership()
                .get_node(&s.options.member_id)
                .is_some();
            if committed {
                present
            } else {
                present || was_member
            }
        };
        if was_member && !is_member {
            // Let requests in flight (the removal itself, when this member led) answer.
            let grace = std::time::Duration::from_millis(s.options.election_timeout_ms);
            drop(s);
            tokio::time::sleep(grace).await;
            if let Some(s) = server.upgrade() {
                s.removed.notify_one();
            }
            return;
        }
        was_member |= is_member;
        let leader = s.raft.raft().metrics().borrow().current_leader;
        if leader.is_some() && leader != last_leader {
            s.counters
                .leader_changes
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            last_leader = leader;
        }
        let is_leader = s.is_leader();
        if is_leader && !was_leader {
            let extend = std::time::Duration::from_millis(s.options.election_timeout_ms);
            s.lessor.promote(s.store.leases(), extend);
        } else if !is_leader && was_leader {
            s.lessor.demote();
        }
        was_leader = is_leader;
        drop(s);
        if changes.changed().await.is_err() {
            return;
        }
    }
}
