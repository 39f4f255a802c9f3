//! End-to-end put and range load against any etcd-compatible endpoint, over gRPC.
//!
//! ```text
//! e2e --endpoint 127.0.0.1:2379 --op put --total 10000 --clients 1 --val-size 256
//! e2e --endpoint 127.0.0.1:2379 --op range --total 20000 --clients 16 [--serializable]
//! ```
//!
//! Prints one line: operation, clients, requests, throughput and latency percentiles.
//! `benches/e2e.sh` runs it against mnemo and etcd side by side.

use std::time::{Duration, Instant};

use mnemo_proto::etcdserverpb::kv_client::KvClient;
use mnemo_proto::etcdserverpb::{PutRequest, RangeRequest};

struct Args {
    endpoint: String,
    op: String,
    total: usize,
    clients: usize,
    val_size: usize,
    key_space: usize,
    serializable: bool,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        endpoint: "127.0.0.1:2379".into(),
        op: "put".into(),
        total: 10_000,
        clients: 1,
        val_size: 256,
        key_space: 10_000,
        serializable: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--serializable" {
            a.serializable = true;
            continue;
        }
        let v = it.next().ok_or(format!("{flag} needs a value"))?;
        let num = |v: &str| v.parse::<usize>().map_err(|e| format!("{flag} {v}: {e}"));
        match flag.as_str() {
            "--endpoint" => a.endpoint = v,
            "--op" => a.op = v,
            "--total" => a.total = num(&v)?,
            "--clients" => a.clients = num(&v)?.max(1),
            "--val-size" => a.val_size = num(&v)?,
            "--key-space" => a.key_space = num(&v)?.max(1),
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    Ok(a)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("e2e: {e}");
            std::process::exit(2);
        }
    };
    let url = format!("http://{}", args.endpoint);
    let per_client = args.total / args.clients;
    let value = vec![b'x'; args.val_size];
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..args.clients {
        let url = url.clone();
        let value = value.clone();
        let op = args.op.clone();
        let (key_space, serializable) = (args.key_space, args.serializable);
        tasks.push(tokio::spawn(async move {
            let mut client = KvClient::connect(url).await.map_err(|e| e.to_string())?;
            let mut lat = Vec::with_capacity(per_client);
            for i in 0..per_client {
                let key = format!("bench/{:08}", (c * per_client + i) % key_space).into_bytes();
                let t = Instant::now();
                let r = if op == "put" {
                    client
                        .put(PutRequest {
                            key,
                            value: value.clone(),
                            ..Default::default()
                        })
                        .await
                        .map(|_| ())
                } else {
                    client
                        .range(RangeRequest {
                            key,
                            serializable,
                            ..Default::default()
                        })
                        .await
                        .map(|_| ())
                };
                r.map_err(|e| e.to_string())?;
                lat.push(t.elapsed());
            }
            Ok::<_, String>(lat)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        match t.await {
            Ok(Ok(l)) => all.extend(l),
            Ok(Err(e)) => {
                eprintln!("e2e: request failed: {e}");
                std::process::exit(1);
            }
            Err(e) => {
                eprintln!("e2e: client task failed: {e}");
                std::process::exit(1);
            }
        }
    }
    let elapsed = start.elapsed();
    all.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "op={} clients={} requests={} throughput={:.0}/s p50={:.3}ms p90={:.3}ms p99={:.3}ms max={:.3}ms",
        args.op,
        args.clients,
        all.len(),
        all.len() as f64 / elapsed.as_secs_f64(),
        ms(percentile(&all, 0.50)),
        ms(percentile(&all, 0.90)),
        ms(percentile(&all, 0.99)),
        ms(all.last().copied().unwrap_or_default()),
    );
}
