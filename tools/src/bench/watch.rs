//! Watch workloads. `watch`: open `--streams` streams with `--watch-per-stream` watchers
//! each over `--watched-key-total` keys and measure each creation, then put those keys
//! at `--put-rate` and measure how long each event takes to reach each watcher.
//! `watch-latency`: the delivery part alone, every watcher on one key.
//!
//! A put's value starts with the time it was sent (microseconds since the run began), so
//! a watcher's delivery latency is read from the event itself.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use mnemo_proto::etcdserverpb::kv_client::KvClient;
use mnemo_proto::etcdserverpb::watch_client::WatchClient;
use mnemo_proto::etcdserverpb::{watch_request, PutRequest, WatchCreateRequest, WatchRequest};
use tokio_stream::wrappers::ReceiverStream;

use super::load::{self, connect, histogram, key, record, Budget, Rng};
use super::summary::Summary;
use super::{BenchError, Global, Result};

/// How long delivery may lag behind the last put before missing events count as errors.
const DRAIN: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Args)]
pub struct WatchArgs {
    /// Watch streams.
    #[arg(long, default_value_t = 10)]
    pub streams: usize,
    /// Watchers per stream.
    #[arg(long, default_value_t = 10)]
    pub watch_per_stream: usize,
    /// Distinct keys watched (watcher i watches key i mod this).
    #[arg(long, default_value_t = 1)]
    pub watched_key_total: u64,
    #[command(flatten)]
    pub puts: PutLoad,
}

#[derive(Debug, Clone, Args)]
pub struct WatchLatencyArgs {
    /// Watch streams.
    #[arg(long, default_value_t = 10)]
    pub streams: usize,
    /// Watchers per stream.
    #[arg(long, default_value_t = 10)]
    pub watchers_per_stream: usize,
    #[command(flatten)]
    pub puts: PutLoad,
}

#[derive(Debug, Clone, Args)]
pub struct PutLoad {
    /// Puts of watched keys.
    #[arg(long, default_value_t = 1000)]
    pub put_total: u64,
    /// Puts per second.
    #[arg(long, default_value_t = 100.0)]
    pub put_rate: f64,
    /// Key size in bytes.
    #[arg(long, default_value_t = 32)]
    pub key_size: usize,
    /// Value size in bytes (at least 8: the send time).
    #[arg(long, default_value_t = 32)]
    pub val_size: usize,
}

pub async fn watch(g: &Global, a: &WatchArgs) -> Result<(Summary, Summary)> {
    run(
        g,
        a.streams,
        a.watch_per_stream,
        a.watched_key_total,
        &a.puts,
    )
    .await
}

pub async fn watch_latency(g: &Global, a: &WatchLatencyArgs) -> Result<Summary> {
    run(g, a.streams, a.watchers_per_stream, 1, &a.puts)
        .await
        .map(|(_, delivery)| delivery)
}

async fn run(
    g: &Global,
    streams: usize,
    per_stream: usize,
    keys: u64,
    puts: &PutLoad,
) -> Result<(Summary, Summary)> {
    let channels = connect(&g.endpoints, g.conns, g.target_leader).await?;
    let keys = keys.max(1);
    let key_size = puts.key_size;
    let prefix = move |k: u64| {
        let mut v = b"/mnemo-bench/watch/".to_vec();
        v.extend(key(k, key_size.saturating_sub(19).max(8)));
        v
    };
    let start = Instant::now();
    let created = Arc::new(AtomicU64::new(0));
    let received = Arc::new(AtomicU64::new(0));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut readers = Vec::new();
    let mut senders = Vec::new();
    let mut create_errors = Vec::new();
    let create_started = Instant::now();
    for s in 0..streams {
        let (tx, rx) = tokio::sync::mpsc::channel(per_stream + 1);
        let mut client = WatchClient::new(channels[s % channels.len()].clone());
        let mut sent = Vec::with_capacity(per_stream);
        for w in 0..per_stream {
            let k = ((s * per_stream + w) as u64) % keys;
            sent.push(Instant::now());
            let req = WatchRequest {
                request_union: Some(watch_request::RequestUnion::CreateRequest(
                    WatchCreateRequest {
                        key: prefix(k),
                        ..Default::default()
                    },
                )),
            };
            if tx.send(req).await.is_err() {
                create_errors.push("watch stream closed".to_string());
            }
        }
        // The creates are queued before the stream opens: tonic waits for the server's
        // response headers, which a server may send only once it has a request.
        let opened = tokio::time::timeout(DRAIN, client.watch(ReceiverStream::new(rx))).await;
        let mut resp = match opened {
            Ok(Ok(r)) => r.into_inner(),
            Ok(Err(e)) => return Err(BenchError(format!("opening a watch stream: {e}"))),
            Err(_) => return Err(BenchError("opening a watch stream timed out".into())),
        };
        senders.push(tx);
        let (created_n, received, mut stop) = (created.clone(), received.clone(), stop_rx.clone());
        readers.push(tokio::spawn(async move {
            let (mut create, mut delivery) = (histogram(), histogram());
            let mut created = 0usize;
            let mut errors = Vec::new();
            loop {
                let msg = tokio::select! {
                    m = resp.message() => m,
                    _ = stop.wait_for(|s| *s) => break,
                };
                match msg {
                    Ok(Some(r)) => {
                        if r.created {
                            if let Some(t) = sent.get(created) {
                                record(&mut create, t.elapsed());
                            }
                            created += 1;
                            created_n.fetch_add(1, Ordering::Relaxed);
                        }
                        if r.canceled {
                            errors.push(format!("watch canceled: {}", r.cancel_reason));
                        }
                        let now = start.elapsed().as_micros() as u64;
                        for ev in &r.events {
                            let sent_at = ev
                                .kv
                                .as_ref()
                                .and_then(|kv| kv.value.get(..8))
                                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                                .map(u64::from_le_bytes);
                            if let Some(t) = sent_at {
                                record(&mut delivery, Duration::from_micros(now.saturating_sub(t)));
                            }
                        }
                        received.fetch_add(r.events.len() as u64, Ordering::Relaxed);
                    }
                    Ok(None) => break,
                    Err(e) => {
                        errors.push(format!("watch stream: {e}"));
                        break;
                    }
                }
            }
            (create, delivery, errors)
        }));
    }
    // Every watcher is created before the first put.
    let watchers = (streams * per_stream) as u64;
    let deadline = Instant::now() + DRAIN;
    while created.load(Ordering::Relaxed) < watchers && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let create_elapsed = create_started.elapsed();

    // Expected deliveries: each put reaches every watcher of its key.
    let per_key = |k: u64| (0..watchers).filter(|w| w % keys == k).count() as u64;
    let key_of = move |n: u64| Rng::new(n).below(keys);
    let expected: u64 = (0..puts.put_total).map(|n| per_key(key_of(n))).sum();
    let kv_channels = channels.clone();
    let kvs: Arc<Vec<KvClient<_>>> = Arc::new(
        (0..g.clients.max(1))
            .map(|c| KvClient::new(kv_channels[c % kv_channels.len()].clone()))
            .collect(),
    );
    let val_size = puts.val_size.max(8);
    let budget = Budget {
        clients: g.clients.max(1),
        total: puts.put_total,
        duration: None,
        rate: puts.put_rate,
        progress: !g.no_progress && !g.json,
    };
    let put_summary = load::run("watch puts", &budget, move |c, n| {
        let mut kv = kvs[c].clone();
        let mut value = vec![b'w'; val_size];
        value[..8].copy_from_slice(&(start.elapsed().as_micros() as u64).to_le_bytes());
        let key = prefix(key_of(n));
        async move {
            kv.put(PutRequest {
                key,
                value,
                ..Default::default()
            })
            .await
            .map(|_| ())
            .map_err(|e| format!("put: {}", e.message()))
        }
    })
    .await;
    let drain_deadline = Instant::now() + DRAIN;
    while received.load(Ordering::Relaxed) < expected && Instant::now() < drain_deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let delivery_elapsed = put_summary.elapsed;
    let _ = stop_tx.send(true);
    drop(senders);
    let mut errors = Vec::new();
    let (mut create, mut delivery) = (histogram(), histogram());
    for r in readers {
        match r.await {
            Ok((c, d, e)) => {
                let _ = create.add(&c);
                let _ = delivery.add(&d);
                errors.extend(e);
            }
            Err(e) => errors.push(format!("reader task failed: {e}")),
        }
    }
    let made = created.load(Ordering::Relaxed);
    if made < watchers {
        create_errors.push(format!(
            "{} of {watchers} watchers not created",
            watchers - made
        ));
    }
    let got = received.load(Ordering::Relaxed);
    if got < expected {
        errors.push(format!(
            "{} of {expected} events not delivered",
            expected - got
        ));
    }
    errors.extend(put_summary.error_kinds.keys().cloned());
    let create = Summary::new("watch create", &create, create_elapsed, create_errors);
    let delivery = Summary::new("watch delivery", &delivery, delivery_elapsed, errors);
    Ok((create, delivery))
}
