//! etcd's Watch service (`etcdserverpb.Watch/Watch`) over the watch hub.
//!
//! One task per call reads the client's requests (create, cancel, progress), reads
//! the hub's queue for the call and writes responses, and ticks the periodic progress
//! notification; etcd splits this into a receive loop and a send loop
//! (api/v3rpc/watch.go). When the client goes away the task ends and dropping the
//! hub stream removes every watcher of the call. A client that only half-closes its
//! side keeps its watchers, as in etcd.

#[cfg(test)]
mod tests;

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::Duration;

use mnemo_proto::etcdserverpb::watch_request::RequestUnion;
use mnemo_proto::etcdserverpb::watch_server::{Watch, WatchServer};
use mnemo_proto::etcdserverpb::{ResponseHeader, WatchRequest, WatchResponse};
use prost::Message;
use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::mvcc::watch::{
    StreamItem, WatchHub, WatchReceiver, WatchStream, WatchUpdate, INVALID_WATCH_ID,
};
use crate::server::Credentials;

/// Fills in what a response header needs besides the revision: cluster id, member id
/// and raft term.
pub trait HeaderSource: Send + Sync + 'static {
    fn header(&self, revision: i64) -> ResponseHeader;
}

impl<F> HeaderSource for F
where
    F: Fn(i64) -> ResponseHeader + Send + Sync + 'static,
{
    fn header(&self, revision: i64) -> ResponseHeader {
        self(revision)
    }
}

/// Decides whether the caller with `credentials` may watch `[key, range_end)`.
pub trait WatchAuthorizer: Send + Sync + 'static {
    fn check(
        &self,
        credentials: Credentials<'_>,
        key: &[u8],
        range_end: &[u8],
    ) -> crate::error::Result<()>;
}

impl<F> WatchAuthorizer for F
where
    F: Fn(Credentials<'_>, &[u8], &[u8]) -> crate::error::Result<()> + Send + Sync + 'static,
{
    fn check(
        &self,
        credentials: Credentials<'_>,
        key: &[u8],
        range_end: &[u8],
    ) -> crate::error::Result<()> {
        self(credentials, key, range_end)
    }
}

/// etcd's `--watch-progress-notify-interval` default.
pub const DEFAULT_PROGRESS_INTERVAL: Duration = Duration::from_secs(10 * 60);
/// etcd's floor for the progress interval.
pub const MIN_PROGRESS_INTERVAL: Duration = Duration::from_millis(100);
/// What etcd adds to `--max-request-bytes` for the fragmentation limit.
pub const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;

/// Field number of `WatchResponse.events`.
const EVENTS_FIELD: u32 = 11;
/// Responses buffered between the call's task and tonic.
const SEND_BUFFER: usize = 16;

#[derive(Debug, Clone)]
pub struct WatchServiceConfig {
    /// Period of progress notifications for watchers that asked for them (a tenth
    /// of it is added at random per call, as etcd does).
    pub progress_interval: Duration,
    /// Responses of watchers that asked for fragments are split when at least this
    /// large: `--max-request-bytes` + [`GRPC_OVERHEAD_BYTES`] in etcd.
    pub max_response_bytes: usize,
}

impl Default for WatchServiceConfig {
    fn default() -> Self {
        WatchServiceConfig {
            progress_interval: DEFAULT_PROGRESS_INTERVAL,
            max_response_bytes: 1024 * 1024 * 3 / 2 + GRPC_OVERHEAD_BYTES,
        }
    }
}

#[derive(Clone)]
pub struct WatchService {
    hub: Arc<WatchHub>,
    header: Arc<dyn HeaderSource>,
    config: WatchServiceConfig,
    /// `None`: every caller may watch everything.
    authorizer: Option<Arc<dyn WatchAuthorizer>>,
}

impl fmt::Debug for WatchService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WatchService")
            .field("hub", &self.hub)
            .field("config", &self.config)
            .finish()
    }
}

impl WatchService {
    pub fn new(
        hub: Arc<WatchHub>,
        header: Arc<dyn HeaderSource>,
        config: WatchServiceConfig,
    ) -> WatchService {
        let mut config = config;
        if config.progress_interval < MIN_PROGRESS_INTERVAL {
            config.progress_interval = MIN_PROGRESS_INTERVAL;
        }
        WatchService {
            hub,
            header,
            config,
            authorizer: None,
        }
    }

    /// Checks every create request against the caller's permissions.
    pub fn with_authorizer(mut self, authorizer: Arc<dyn WatchAuthorizer>) -> WatchService {
        self.authorizer = Some(authorizer);
        self
    }

    pub fn into_server(self) -> WatchServer<WatchService> {
        WatchServer::new(self)
    }
}

#[tonic::async_trait]
impl Watch for WatchService {
    type WatchStream = ReceiverStream<Result<WatchResponse, Status>>;

    async fn watch(
        &self,
        request: Request<Streaming<WatchRequest>>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let token = super::token(&request).map(str::to_string);
        let common_name = super::common_name(&request).map(str::to_string);
        let inbound = request.into_inner();
        let (control, receiver) = self.hub.new_stream();
        let (tx, rx) = mpsc::channel(SEND_BUFFER);
        let call = Call {
            control,
            receiver,
            tx,
            header: Arc::clone(&self.header),
            config: self.config.clone(),
            authorizer: self.authorizer.clone(),
            token,
            common_name,
        };
        tokio::spawn(call.run(inbound));
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// One Watch call.
struct Call {
    control: WatchStream,
    receiver: WatchReceiver,
    tx: mpsc::Sender<Result<WatchResponse, Status>>,
    header: Arc<dyn HeaderSource>,
    config: WatchServiceConfig,
    authorizer: Option<Arc<dyn WatchAuthorizer>>,
    /// The call's auth token, checked again at each create request.
    token: Option<String>,
    /// The CN of the connection's client certificate (see [`super::common_name`]).
    common_name: Option<String>,
}

impl Call {
    async fn run(mut self, mut inbound: Streaming<WatchRequest>) {
        let period = jittered(self.config.progress_interval);
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut reading = true;
        loop {
            tokio::select! {
                () = self.tx.closed() => return,
                msg = inbound.message(), if reading => match msg {
                    Ok(Some(req)) => self.handle(req),
                    // Half-closed: etcd keeps the watchers and goes on sending.
                    Ok(None) => reading = false,
                    Err(status) => {
                        let _ = self.tx.send(Err(status)).await;
                        return;
                    }
                },
                item = self.receiver.recv() => {
                    let Some(item) = item else { return };
                    for resp in render(item, self.header.as_ref(), self.config.max_response_bytes) {
                        if self.tx.send(Ok(resp)).await.is_err() {
                            return;
                        }
                    }
                }
                _ = ticker.tick() => self.control.progress_tick(),
            }
        }
    }

    fn handle(&self, req: WatchRequest) {
        match req.request_union {
            // Refusals are queued by the hub in order with everything else.
            Some(RequestUnion::CreateRequest(create)) => {
                if let Some(a) = &self.authorizer {
                    // etcd refuses a watch on keys the caller may not read with a
                    // created-and-canceled response naming the error.
                    let credentials = Credentials {
                        token: self.token.as_deref(),
                        common_name: self.common_name.as_deref(),
                    };
                    if let Err(e) = a.check(credentials, &create.key, &create.range_end) {
                        let (code, message) = e.code_and_message();
                        self.control
                            .reject(format!("rpc error: code = {code:?} desc = {message}"));
                        return;
                    }
                }
                let _ = self.control.watch(&create);
            }
            Some(RequestUnion::CancelRequest(cancel)) => {
                self.control.cancel(cancel.watch_id);
            }
            Some(RequestUnion::ProgressRequest(_)) => self.control.request_progress(),
            // etcd ignores requests it does not know rather than ending the stream.
            None => {}
        }
    }
}

/// The period plus up to a tenth of it at random, so that watchers created together
/// do not all report together.
fn jittered(period: Duration) -> Duration {
    let tenth = u64::try_from(period.as_nanos() / 10).unwrap_or(u64::MAX);
    if tenth == 0 {
        return period;
    }
    let random = RandomState::new().hash_one(std::time::Instant::now());
    period + Duration::from_nanos(random % tenth)
}

/// The wire responses for one hub item.
fn render(item: StreamItem, header: &dyn HeaderSource, max_bytes: usize) -> Vec<WatchResponse> {
    let resp = match item {
        StreamItem::Created { watch_id, revision } => WatchResponse {
            header: Some(header.header(revision)),
            watch_id,
            created: true,
            ..WatchResponse::default()
        },
        StreamItem::Rejected { reason, revision } => WatchResponse {
            header: Some(header.header(revision)),
            watch_id: INVALID_WATCH_ID,
            created: true,
            canceled: true,
            cancel_reason: reason,
            ..WatchResponse::default()
        },
        StreamItem::Canceled {
            watch_id,
            revision,
            reason,
        } => WatchResponse {
            header: Some(header.header(revision)),
            watch_id,
            canceled: true,
            cancel_reason: reason,
            ..WatchResponse::default()
        },
        // etcd's header carries revision 0 here.
        StreamItem::Compacted {
            watch_id,
            compact_revision,
        } => WatchResponse {
            header: Some(header.header(0)),
            watch_id,
            canceled: true,
            compact_revision,
            ..WatchResponse::default()
        },
        StreamItem::Update(WatchUpdate {
            watch_id,
            revision,
            events,
            fragment,
        }) => {
            let resp = WatchResponse {
                header: Some(header.header(revision)),
                watch_id,
                events,
                ..WatchResponse::default()
            };
            if fragment {
                return fragments(resp, max_bytes);
            }
            resp
        }
    };
    vec![resp]
}

/// etcd's fragmentation: a response of at least `limit` bytes with two or more events
/// goes out in pieces, each below `limit` unless it holds a single event, all but the
/// last with `fragment` set. Events of one revision may be split this way; the client
/// joins the pieces.
fn fragments(resp: WatchResponse, limit: usize) -> Vec<WatchResponse> {
    if resp.encoded_len() < limit || resp.events.len() < 2 {
        return vec![resp];
    }
    let mut template = resp;
    let events = std::mem::take(&mut template.events);
    template.fragment = true;
    let base = template.encoded_len();
    let mut out = Vec::new();
    let mut piece = Vec::new();
    let mut size = base;
    for ev in events {
        let len = prost::encoding::message::encoded_len(EVENTS_FIELD, &ev);
        if !piece.is_empty() && size + len >= limit {
            out.push(WatchResponse {
                events: std::mem::take(&mut piece),
                ..template.clone()
            });
            size = base;
        }
        size += len;
        piece.push(ev);
    }
    out.push(WatchResponse {
        events: piece,
        fragment: false,
        ..template
    });
    out
}
