//! Driving a workload: connections to the endpoints, concurrent clients, a request
//! budget (a total or a duration), an optional rate limit, latency recording and a
//! progress bar.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use mnemo_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use mnemo_proto::etcdserverpb::StatusRequest;
use tonic::transport::{Channel, Endpoint};

use super::summary::Summary;
use super::{BenchError, Result};

/// How many requests a workload makes and how fast.
#[derive(Debug, Clone)]
pub struct Budget {
    /// Concurrent clients.
    pub clients: usize,
    /// Stop after this many requests in all (when `duration` is not set).
    pub total: u64,
    /// Stop after this long instead of after `total` requests.
    pub duration: Option<Duration>,
    /// Requests per second over all clients; 0 is unlimited.
    pub rate: f64,
    /// Draw a progress bar on stderr (hidden when stderr is not a terminal).
    pub progress: bool,
}

/// Normalizes `host:port` to `http://host:port`; URLs pass unchanged.
pub fn endpoint_url(ep: &str) -> String {
    if ep.contains("://") {
        ep.to_string()
    } else {
        format!("http://{ep}")
    }
}

/// `conns` gRPC connections spread over `endpoints` (comma-separated). With
/// `target_leader`, only the endpoint whose member is the leader is used.
pub async fn connect(endpoints: &str, conns: usize, target_leader: bool) -> Result<Vec<Channel>> {
    let mut eps: Vec<String> = endpoints
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(endpoint_url)
        .collect();
    if eps.is_empty() {
        return Err(BenchError("no endpoints given".into()));
    }
    if target_leader {
        eps = vec![find_leader(&eps).await?];
    }
    let mut channels = Vec::with_capacity(conns.max(1));
    for i in 0..conns.max(1) {
        let url = &eps[i % eps.len()];
        channels.push(dial(url).await?);
    }
    Ok(channels)
}

async fn dial(url: &str) -> Result<Channel> {
    Endpoint::from_shared(url.to_string())
        .map_err(|e| BenchError(format!("bad endpoint {url}: {e}")))?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .connect()
        .await
        .map_err(|e| BenchError(format!("cannot connect to {url}: {e}")))
}

/// The endpoint whose member reports itself as the leader.
async fn find_leader(eps: &[String]) -> Result<String> {
    for url in eps {
        let Ok(ch) = dial(url).await else { continue };
        let Ok(st) = MaintenanceClient::new(ch).status(StatusRequest {}).await else {
            continue;
        };
        let st = st.into_inner();
        let member = st.header.map(|h| h.member_id).unwrap_or(0);
        if st.leader != 0 && st.leader == member {
            return Ok(url.clone());
        }
    }
    Err(BenchError(format!(
        "no endpoint of {} is the leader",
        eps.join(",")
    )))
}

/// A latency histogram in microseconds, up to an hour.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("constant bounds are valid")
}

/// Records one latency.
pub fn record(h: &mut Histogram<u64>, d: Duration) {
    let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1);
    h.saturating_record(us);
}

/// Runs `op(client, n)` for every request number `n` the budget allows, from
/// `budget.clients` concurrent clients, and summarizes latencies and errors.
pub async fn run<F, Fut>(name: &str, budget: &Budget, op: F) -> Summary
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = std::result::Result<(), String>> + Send,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicU64::new(0));
    let bar = progress_bar(name, budget);
    let start = Instant::now();
    let deadline = budget.duration.map(|d| start + d);
    let mut tasks = Vec::new();
    for c in 0..budget.clients.max(1) {
        let (op, next, bar) = (op.clone(), next.clone(), bar.clone());
        let (total, rate) = (budget.total, budget.rate);
        tasks.push(tokio::spawn(async move {
            let mut h = histogram();
            let mut errors = Vec::new();
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                match deadline {
                    Some(d) if Instant::now() >= d => break,
                    None if n >= total => break,
                    _ => {}
                }
                if rate > 0.0 {
                    let due = start + Duration::from_secs_f64(n as f64 / rate);
                    tokio::time::sleep_until(due.into()).await;
                }
                let t = Instant::now();
                match op(c, n).await {
                    Ok(()) => record(&mut h, t.elapsed()),
                    Err(e) => errors.push(e),
                }
                bar.inc(1);
            }
            (h, errors)
        }));
    }
    let mut all = histogram();
    let mut errors = Vec::new();
    for t in tasks {
        match t.await {
            Ok((h, e)) => {
                let _ = all.add(&h);
                errors.extend(e);
            }
            Err(e) => errors.push(format!("client task failed: {e}")),
        }
    }
    bar.finish_and_clear();
    Summary::new(name, &all, start.elapsed(), errors)
}

fn progress_bar(name: &str, budget: &Budget) -> ProgressBar {
    if !budget.progress {
        return ProgressBar::hidden();
    }
    let bar = match budget.duration {
        Some(_) => ProgressBar::new_spinner(),
        None => ProgressBar::new(budget.total),
    };
    let style = match budget.duration {
        Some(_) => ProgressStyle::with_template("{prefix} {spinner} {pos} requests, {per_sec}"),
        None => ProgressStyle::with_template("{prefix} [{bar:40}] {pos}/{len} {per_sec} eta {eta}"),
    };
    if let Ok(style) = style {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(name.to_string());
    bar
}

/// A fast deterministic random stream per client (xorshift64*), so runs repeat.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// A key of `size` bytes naming `n`, as etcd's benchmark makes them: `n` as a varint at
/// the start, zero bytes after.
pub fn key(n: u64, size: usize) -> Vec<u8> {
    let mut k = vec![0u8; size.max(1)];
    // Zig-zag then LEB128, as Go's binary.PutVarint writes a non-negative int64.
    let mut v = n << 1;
    let mut i = 0;
    while i < k.len() {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            k[i] = b;
            break;
        }
        k[i] = b | 0x80;
        i += 1;
    }
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_distinct_in_the_key_space() {
        let keys: std::collections::BTreeSet<Vec<u8>> = (0..10_000).map(|n| key(n, 8)).collect();
        assert_eq!(keys.len(), 10_000);
        assert_eq!(key(1, 4), vec![2, 0, 0, 0]);
        assert_eq!(key(300, 2), vec![0xd8, 0x04]);
    }

    #[test]
    fn endpoints_get_a_scheme() {
        assert_eq!(endpoint_url("127.0.0.1:2379"), "http://127.0.0.1:2379");
        assert_eq!(endpoint_url("https://h:1"), "https://h:1");
    }

    #[tokio::test]
    async fn a_budget_of_requests_is_spent_exactly() {
        let seen = Arc::new(AtomicU64::new(0));
        let s = seen.clone();
        let budget = Budget {
            clients: 4,
            total: 103,
            duration: None,
            rate: 0.0,
            progress: false,
        };
        let summary = run("t", &budget, move |_, n| {
            let s = s.clone();
            async move {
                s.fetch_add(1, Ordering::Relaxed);
                if n % 10 == 0 {
                    Err("boom".to_string())
                } else {
                    Ok(())
                }
            }
        })
        .await;
        assert_eq!(seen.load(Ordering::Relaxed), 103);
        assert_eq!(summary.requests, 92);
        assert_eq!(summary.errors, 11);
    }
}
