//! `mnemo-bench`: load for any etcd-compatible endpoint (mnemo or etcd itself), with
//! subcommands and flags modelled on etcd's benchmark tool so that figures compare with
//! etcd's published ones, and a `compare` mode that runs one workload against two
//! endpoint sets in one run and prints the ratio of every figure.
//!
//! Each workload module turns its flags into requests; [`load`] runs them from
//! concurrent clients within a budget and [`summary`] reports them.

mod kv;
mod lease;
pub mod load;
mod mvcc;
pub mod summary;
mod watch;

use std::fmt;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde_json::{json, Value};

use load::Budget;
use summary::Summary;

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "mnemo-bench",
    version,
    about = "Benchmark an etcd-compatible endpoint (mnemo or etcd)",
    long_about = "Benchmark an etcd-compatible endpoint (mnemo or etcd).\n\n\
        Subcommands and flags follow etcd's benchmark tool. Every run prints etcd's \
        summary (throughput, latency histogram, percentiles up to p99.9, errors); \
        --json prints the same figures for programs. `compare` runs one workload \
        against two endpoint sets in the same run and prints each figure's ratio."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub workload: Workload,
}

/// Flags of every workload.
#[derive(Debug, Clone, Args)]
pub struct Global {
    /// gRPC endpoints, comma-separated.
    #[arg(long, global = true, default_value = "127.0.0.1:2379")]
    pub endpoints: String,
    /// Total number of gRPC connections.
    #[arg(long, global = true, default_value_t = 1)]
    pub conns: usize,
    /// Total number of concurrent clients.
    #[arg(long, global = true, default_value_t = 1)]
    pub clients: usize,
    /// Send requests to the leader only.
    #[arg(long, global = true)]
    pub target_leader: bool,
    /// Print the figures as JSON.
    #[arg(long, global = true)]
    pub json: bool,
    /// Do not draw a progress bar.
    #[arg(long, global = true)]
    pub no_progress: bool,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Workload {
    #[command(flatten)]
    Job(Job),
    /// The storage layer alone, in this process (no server, no network).
    #[command(subcommand)]
    Mvcc(mvcc::MvccCommand),
    /// One workload against two endpoint sets, one after the other, with ratios.
    Compare(CompareArgs),
}

/// The workloads that run against endpoints.
#[derive(Debug, Clone, Subcommand)]
pub enum Job {
    /// Puts of random (or sequential) keys.
    Put(kv::PutArgs),
    /// Ranges over a key or a range.
    Range(kv::RangeArgs),
    /// Txns of several puts each.
    TxnPut(kv::TxnPutArgs),
    /// A mix of read and write txns; read and write latencies reported apart.
    TxnMixed(kv::TxnMixedArgs),
    /// Watch creation latency, then event delivery latency while keys are put.
    Watch(watch::WatchArgs),
    /// Delivery latency of puts of one key to many watchers.
    WatchLatency(watch::WatchLatencyArgs),
    /// Lease keep-alive round trips.
    LeaseKeepalive(lease::KeepaliveArgs),
}

#[derive(Debug, Clone, Args)]
pub struct CompareArgs {
    /// Endpoints of the first server (the baseline of the ratios).
    #[arg(long)]
    pub a: String,
    /// Endpoints of the second server.
    #[arg(long)]
    pub b: String,
    /// Name of the first server in the report.
    #[arg(long, default_value = "a")]
    pub a_name: String,
    /// Name of the second server in the report.
    #[arg(long, default_value = "b")]
    pub b_name: String,
    #[command(subcommand)]
    pub workload: Job,
}

/// Request budget flags shared by the request-response workloads.
#[derive(Debug, Clone, Args)]
pub struct BudgetArgs {
    /// Total number of requests.
    #[arg(long, default_value_t = 10_000)]
    pub total: u64,
    /// Run for this long instead (e.g. `30s`, `2m`, `500ms`), ignoring --total.
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Maximum requests per second over all clients (0: unlimited).
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
}

impl BudgetArgs {
    pub fn budget(&self, g: &Global) -> Budget {
        Budget {
            clients: g.clients.max(1),
            total: self.total,
            duration: self.duration,
            rate: self.rate,
            progress: !g.no_progress && !g.json,
        }
    }
}

/// `500ms`, `30s`, `2m`, `1h`, or plain seconds.
pub fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s
        .find(|c: char| c.is_ascii_alphabetic())
        .map_or((s, "s"), |i| (&s[..i], &s[i..]));
    let v: f64 = num
        .parse()
        .map_err(|_| format!("invalid duration {s:?}: expected e.g. 30s, 500ms, 2m"))?;
    let secs = match unit {
        "ms" => v / 1000.0,
        "s" => v,
        "m" => v * 60.0,
        "h" => v * 3600.0,
        _ => return Err(format!("invalid duration unit in {s:?}: use ms, s, m or h")),
    };
    if !(secs.is_finite() && secs > 0.0) {
        return Err(format!("duration {s:?} must be positive"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Why a run could not be made.
#[derive(Debug)]
pub struct BenchError(pub String);

impl fmt::Display for BenchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BenchError {}

pub type Result<T> = std::result::Result<T, BenchError>;

/// What a run measured: one summary per figure set (most workloads have one; txn-mixed
/// has reads and writes; watch has creation and delivery).
#[derive(Debug)]
pub struct Outcome {
    pub summaries: Vec<Summary>,
    /// Extra text (e.g. the ratio table of `compare`).
    pub extra: Option<(String, Value)>,
}

impl Outcome {
    fn one(s: Summary) -> Outcome {
        Outcome {
            summaries: vec![s],
            extra: None,
        }
    }

    pub fn text(&self) -> String {
        let mut t: Vec<String> = self.summaries.iter().map(Summary::text).collect();
        if let Some((extra, _)) = &self.extra {
            t.push(extra.clone());
        }
        t.join("\n")
    }

    pub fn json(&self) -> Value {
        let mut v = json!({ "runs": self.summaries.iter().map(Summary::json).collect::<Vec<_>>() });
        if let Some((_, extra)) = &self.extra {
            v["compare"] = extra.clone();
        }
        v
    }
}

/// Runs `workload`.
pub async fn run(global: &Global, workload: &Workload) -> Result<Outcome> {
    match workload {
        Workload::Job(j) => run_job(global, j).await,
        Workload::Mvcc(m) => mvcc::run(global, m).await.map(Outcome::one),
        Workload::Compare(c) => compare(global, c).await,
    }
}

/// Runs `job` against `global.endpoints`.
pub async fn run_job(global: &Global, job: &Job) -> Result<Outcome> {
    match job {
        Job::Put(a) => kv::put(global, a).await.map(Outcome::one),
        Job::Range(a) => kv::range(global, a).await.map(Outcome::one),
        Job::TxnPut(a) => kv::txn_put(global, a).await.map(Outcome::one),
        Job::TxnMixed(a) => kv::txn_mixed(global, a).await.map(|(r, w)| Outcome {
            summaries: vec![r, w],
            extra: None,
        }),
        Job::Watch(a) => watch::watch(global, a).await.map(|(c, d)| Outcome {
            summaries: vec![c, d],
            extra: None,
        }),
        Job::WatchLatency(a) => watch::watch_latency(global, a).await.map(Outcome::one),
        Job::LeaseKeepalive(a) => lease::keepalive(global, a).await.map(Outcome::one),
    }
}

async fn compare(global: &Global, c: &CompareArgs) -> Result<Outcome> {
    let mut outcomes = Vec::new();
    for (name, eps) in [(&c.a_name, &c.a), (&c.b_name, &c.b)] {
        let g = Global {
            endpoints: eps.clone(),
            ..global.clone()
        };
        let mut o = run_job(&g, &c.workload).await?;
        for s in &mut o.summaries {
            s.name = format!("{name}: {}", s.name);
        }
        outcomes.push(o);
    }
    let (b, a) = (outcomes.pop(), outcomes.pop());
    let (Some(a), Some(b)) = (a, b) else {
        return Err(BenchError("compare made no runs".into()));
    };
    let mut text = String::from("Comparison:\n");
    let mut json_rows = Vec::new();
    for (sa, sb) in a.summaries.iter().zip(&b.summaries) {
        let (t, j) = summary::compare(&c.a_name, sa, &c.b_name, sb);
        let _ = std::fmt::Write::write_fmt(&mut text, format_args!("{}\n{t}", sa.name));
        json_rows.push(j);
    }
    let mut summaries = a.summaries;
    summaries.extend(b.summaries);
    Ok(Outcome {
        summaries,
        extra: Some((text, Value::Array(json_rows))),
    })
}

/// Runs the command line `args` (the program name first). Returns the exit code: 0
/// when every request succeeded, 1 when some failed or the run could not be made, 2 for
/// a bad command line.
pub fn main_with<I, T>(args: I) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("mnemo-bench: cannot start the async runtime: {e}");
            return 1;
        }
    };
    match runtime.block_on(run(&cli.global, &cli.workload)) {
        Ok(outcome) => {
            if cli.global.json {
                println!("{}", outcome.json());
            } else {
                print!("{}", outcome.text());
            }
            u8::from(outcome.summaries.iter().any(|s| s.errors > 0))
        }
        Err(e) => {
            eprintln!("mnemo-bench: {e}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_like_etcd_flags() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("5 parsecs").is_err());
    }

    #[test]
    fn bad_command_lines_exit_2() {
        assert_eq!(main_with(["mnemo-bench", "put", "--total", "many"]), 2);
        assert_eq!(main_with(["mnemo-bench", "warp"]), 2);
        assert_eq!(main_with(["mnemo-bench", "put", "--help"]), 0);
    }

    #[test]
    fn an_unreachable_endpoint_is_an_error_not_a_hang() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or(1);
        let ep = format!("127.0.0.1:{port}");
        assert_eq!(
            main_with(["mnemo-bench", "--endpoints", &ep, "put", "--total", "5"]),
            1
        );
    }
}
