//! etcd 3.4's command line, as clap sees it, and the two things Go's `flag` package does
//! that clap does not: single-dash long flags (`-name x`) and values that start with a
//! dash (`--quota-backend-bytes -1`). Environment variables (`MNEMO_*`, then etcd's
//! `ETCD_*`) are merged here too; flags win over both.

use std::collections::{BTreeMap, HashSet};
use std::ffi::OsString;
use std::path::PathBuf;

use clap::parser::ValueSource;
use clap::{ArgAction, Args, CommandFactory, FromArgMatches, Parser, ValueEnum};

use super::urls::UrlList;
use super::values::{parse_go_bool, parse_go_duration};
use super::ConfigError;

/// Prefixes of the environment variables that set flags, in order of precedence.
pub const ENV_PREFIXES: [&str; 2] = ["MNEMO_", "ETCD_"];

#[derive(Debug, Parser)]
#[command(
    name = "mnemo",
    about = "mnemo: a drop-in replacement for etcd v3 (etcd's gRPC API and flags).\n\n\
             Every flag can also be set with an environment variable MNEMO_<FLAG_NAME> \
             (e.g. MNEMO_DATA_DIR), or etcd's ETCD_<FLAG_NAME>; flags win over both.",
    disable_version_flag = true,
    args_override_self = true,
    max_term_width = 100
)]
pub struct Flags {
    /// Print the version and exit.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true",
          value_parser = parse_go_bool, action = ArgAction::Set)]
    pub version: bool,
    /// etcd's YAML configuration file: not supported; give flags or environment variables.
    #[arg(long, value_name = "PATH")]
    pub config_file: Option<String>,
    #[command(flatten, next_help_heading = "Member")]
    pub member: MemberFlags,
    #[command(flatten, next_help_heading = "Clustering")]
    pub clustering: ClusteringFlags,
    #[command(flatten, next_help_heading = "Security")]
    pub security: SecurityFlags,
    #[command(flatten, next_help_heading = "Auth")]
    pub auth: AuthFlags,
    #[command(flatten, next_help_heading = "Profiling and Monitoring")]
    pub monitoring: MonitoringFlags,
    #[command(flatten, next_help_heading = "Logging")]
    pub logging: LoggingFlags,
    #[command(flatten, next_help_heading = "Experimental feature")]
    pub experimental: ExperimentalFlags,
}

#[derive(Debug, Args)]
pub struct MemberFlags {
    /// Human-readable name for this member.
    #[arg(long, default_value = "default")]
    pub name: String,
    /// Path to the data directory [default: ${name}.mnemo].
    #[arg(long, value_name = "PATH")]
    pub data_dir: Option<PathBuf>,
    /// Path to a dedicated WAL directory [default: inside --data-dir].
    #[arg(long, value_name = "PATH")]
    pub wal_dir: Option<PathBuf>,
    /// Number of committed transactions to trigger a snapshot to disk.
    #[arg(long, value_name = "N", default_value_t = 100_000)]
    pub snapshot_count: u64,
    /// Time (in milliseconds) of a heartbeat interval.
    #[arg(long, value_name = "MS", default_value_t = 100)]
    pub heartbeat_interval: u64,
    /// Time (in milliseconds) for an election to timeout.
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    pub election_timeout: u64,
    /// Whether to fast-forward initial election ticks on boot for faster election.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_value = "true", default_missing_value = "true",
          value_parser = parse_go_bool, action = ArgAction::Set)]
    pub initial_election_tick_advance: bool,
    /// List of URLs to listen on for peer traffic.
    #[arg(long, value_name = "URLS", default_value = "http://localhost:2380",
          value_parser = UrlList::parse)]
    pub listen_peer_urls: UrlList,
    /// List of URLs to listen on for client traffic (localhost binds 127.0.0.1).
    #[arg(long, value_name = "URLS", default_value = "http://localhost:2379",
          value_parser = UrlList::parse)]
    pub listen_client_urls: UrlList,
    /// Accepted for etcd compatibility; mnemo keeps no snapshot files of etcd's kind.
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub max_snapshots: u32,
    /// Maximum number of WAL files to retain (0 is unlimited).
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub max_wals: u32,
    /// Raise alarms when backend size exceeds the given quota (0 defaults to 2 GiB, a
    /// negative value disables the quota).
    #[arg(
        long,
        value_name = "BYTES",
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    pub quota_backend_bytes: i64,
    /// Maximum time before committing the backend transaction (e.g. 100ms).
    #[arg(long, value_name = "DURATION", value_parser = parse_go_duration)]
    pub backend_batch_interval: Option<std::time::Duration>,
    /// Maximum operations before committing the backend transaction (0: mnemo's default).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub backend_batch_limit: u32,
    /// Maximum number of operations permitted in a transaction.
    #[arg(long, value_name = "N", default_value_t = 128)]
    pub max_txn_ops: u32,
    /// Maximum client request size in bytes the server will accept.
    #[arg(long, value_name = "BYTES", default_value_t = 1_572_864)]
    pub max_request_bytes: u32,
    /// Maximum concurrent streams that each client can open at a time.
    #[arg(long, value_name = "N", default_value_t = u32::MAX)]
    pub max_concurrent_streams: u32,
    /// Minimum duration interval that a client should wait before pinging server.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_go_duration)]
    pub grpc_keepalive_min_time: std::time::Duration,
    /// Frequency of server-to-client pings to check if a connection is alive (0 disables).
    #[arg(long, value_name = "DURATION", default_value = "2h", value_parser = parse_go_duration)]
    pub grpc_keepalive_interval: std::time::Duration,
    /// Additional wait before closing a non-responsive connection (0 disables).
    #[arg(long, value_name = "DURATION", default_value = "20s", value_parser = parse_go_duration)]
    pub grpc_keepalive_timeout: std::time::Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ClusterStateFlag {
    New,
    Existing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompactionModeFlag {
    Periodic,
    Revision,
}

#[derive(Debug, Args)]
pub struct ClusteringFlags {
    /// List of this member's peer URLs to advertise to the rest of the cluster.
    #[arg(long, value_name = "URLS", default_value = "http://localhost:2380",
          value_parser = UrlList::parse)]
    pub initial_advertise_peer_urls: UrlList,
    /// Initial cluster configuration for bootstrapping (name=url,...)
    /// [default: ${name}=${initial-advertise-peer-urls}, i.e. default=http://localhost:2380].
    #[arg(long, value_name = "NAME=URL,...")]
    pub initial_cluster: Option<String>,
    /// Initial cluster state ('new' or 'existing').
    #[arg(long, value_name = "STATE", value_enum, default_value = "new")]
    pub initial_cluster_state: ClusterStateFlag,
    /// Initial cluster token for the cluster during bootstrap.
    #[arg(long, value_name = "TOKEN", default_value = "etcd-cluster")]
    pub initial_cluster_token: String,
    /// List of this member's client URLs to advertise to the public (required when
    /// --listen-client-urls is set).
    #[arg(long, value_name = "URLS", default_value = "http://localhost:2379",
          value_parser = UrlList::parse)]
    pub advertise_client_urls: UrlList,
    /// Discovery URL used to bootstrap the cluster: not supported.
    #[arg(long, value_name = "URL", default_value = "")]
    pub discovery: String,
    /// Accepted for etcd compatibility ('exit' or 'proxy'); mnemo has no discovery.
    #[arg(long, value_name = "MODE", default_value = "proxy",
          value_parser = ["exit", "proxy"])]
    pub discovery_fallback: String,
    /// HTTP proxy to use for traffic to discovery service: not supported.
    #[arg(long, value_name = "URL", default_value = "")]
    pub discovery_proxy: String,
    /// DNS srv domain used to bootstrap the cluster: not supported.
    #[arg(long, value_name = "DOMAIN", default_value = "")]
    pub discovery_srv: String,
    /// Suffix to the dns srv name queried when bootstrapping: not supported.
    #[arg(long, value_name = "SUFFIX", default_value = "")]
    pub discovery_srv_name: String,
    /// Reject reconfiguration requests that would cause quorum loss.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_value = "true", default_missing_value = "true",
          value_parser = parse_go_bool, action = ArgAction::Set)]
    pub strict_reconfig_check: bool,
    /// Enable to run an additional Raft election phase.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true",
          value_parser = parse_go_bool, action = ArgAction::Set)]
    pub pre_vote: bool,
    /// Auto compaction retention length. 0 means disable auto compaction.
    #[arg(long, value_name = "RETENTION", default_value = "0")]
    pub auto_compaction_retention: String,
    /// Interpret 'auto-compaction-retention' one of: periodic|revision. 'periodic' for
    /// duration based retention, defaulting to hours if no time unit is provided (e.g.
    /// '5m'). 'revision' for revision number based retention.
    #[arg(long, value_name = "MODE", value_enum, default_value = "periodic")]
    pub auto_compaction_mode: CompactionModeFlag,
    /// Accept etcd V2 client requests: mnemo speaks v3 only, so only 'false' is accepted.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true",
          value_parser = parse_go_bool, action = ArgAction::Set)]
    pub enable_v2: bool,
    /// v2 proxy mode: mnemo has none, so only 'off' is accepted.
    #[arg(long, value_name = "MODE", default_value = "off",
          value_parser = ["off", "readonly", "on"])]
    pub proxy: String,
    /// Force to create a new one-member cluster: not supported.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true",
          value_parser = parse_go_bool, action = ArgAction::Set)]
    pub force_new_cluster: bool,
}

#[derive(Debug, Args)]
pub struct SecurityFlags {
    /// Path to the client server TLS cert file.
    #[arg(long, value_name = "PATH")]
    pub cert_file: Option<PathBuf>,
    /// Path to the client server TLS key file.
    #[arg(long, value_name = "PATH")]
    pub key_file: Option<PathBuf>,
    /// Enable client cert authentication.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true",
          value_parser = parse_go_bool, action = ArgAction::Set)]
    pub client_cert_auth: bool,
    /// Path to the client certificate revocation list file.
    #[arg(long, value_name = "PATH")]
    pub client_crl_file: Option<PathBuf>,
    /// Allowed TLS hostname for client cert authentication.
    #[arg(long, value_name = "HOSTNAME")]
    pub client_cert_allowed_hostname: Option<String>,
    /// Path to the client server TLS trusted CA cert file.
    #[arg(long, value_name = "PATH")]
    pub trusted_ca_file: Option<PathBuf>,
    /// Client TLS using generated certificates.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true",
          value_parser = parse_go_bool, action = ArgAction::Set)]
    pub auto_tls: bool,
    /// Path to the peer server TLS cert file.
    #[arg(long, value_name = "PATH")]
    pub peer_cert_file: Option<PathBuf>,
    /// Path to the peer server TLS key file.
    #[arg(long, value_name = "PATH")]
    pub peer_key_file: Option<PathBuf>,
    /// Enable peer client cert authentication.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true",
          value_parser = parse_go_bool, action = ArgAction::Set)]
    pub peer_client_cert_auth: bool,
    /// Path to the peer server TLS trusted CA file.
    #[arg(long, value_name = "PATH")]
    pub peer_trusted_ca_file: Option<PathBuf>,
    /// Required CN for client certs connecting to the peer endpoint.
    #[arg(long, value_name = "CN")]
    pub peer_cert_allowed_cn: Option<String>,
    /// Allowed TLS hostname for inter peer authentication.
    #[arg(long, value_name = "HOSTNAME")]
    pub peer_cert_allowed_hostname: Option<String>,
    /// Peer TLS using self-generated certificates: not supported.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true",
          value_parser = parse_go_bool, action = ArgAction::Set)]
    pub peer_auto_tls: bool,
    /// Path to the peer certificate revocation list file.
    #[arg(long, value_name = "PATH")]
    pub peer_crl_file: Option<PathBuf>,
    /// Comma-separated list of supported TLS cipher suites between client/server and peers.
    #[arg(long, value_name = "SUITES", default_value = "")]
    pub cipher_suites: String,
    /// Comma-separated whitelist of origins for CORS (empty or * means allow all).
    #[arg(long, value_name = "ORIGINS", default_value = "*")]
    pub cors: String,
    /// Acceptable hostnames from HTTP client requests, if server is not secure (empty or *
    /// means allow all).
    #[arg(long, value_name = "HOSTS", default_value = "*")]
    pub host_whitelist: String,
}

#[derive(Debug, Args)]
pub struct AuthFlags {
    /// Specify a v3 authentication token type and its options ('simple' or 'jwt').
    #[arg(long, value_name = "TOKEN", default_value = "simple")]
    pub auth_token: String,
    /// Specify the cost / strength of the bcrypt algorithm for hashing auth passwords.
    /// Valid values are between 4 and 31.
    #[arg(long, value_name = "COST", default_value_t = 10)]
    pub bcrypt_cost: u32,
    /// Time (in seconds) of the auth-token-ttl.
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    pub auth_token_ttl: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MetricsFlag {
    Basic,
    Extensive,
}

#[derive(Debug, Args)]
pub struct MonitoringFlags {
    /// Accepted for etcd compatibility and ignored: mnemo has no Go profiler.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true",
          value_parser = parse_go_bool, action = ArgAction::Set)]
    pub enable_pprof: bool,
    /// Set level of detail for exported metrics, specify 'extensive' to include histogram
    /// metrics.
    #[arg(long, value_name = "LEVEL", value_enum, default_value = "basic")]
    pub metrics: MetricsFlag,
    /// List of URLs to listen on for the metrics and health endpoints.
    #[arg(long, value_name = "URLS", default_value = "", value_parser = UrlList::parse)]
    pub listen_metrics_urls: UrlList,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogLevelFlag {
    Debug,
    Info,
    Warn,
    Error,
    Panic,
    Fatal,
}

#[derive(Debug, Args)]
pub struct LoggingFlags {
    /// Accepted for etcd compatibility ('zap' or 'capnslog'); mnemo has one log format.
    #[arg(long, value_name = "LOGGER", default_value = "capnslog",
          value_parser = ["zap", "capnslog"])]
    pub logger: String,
    /// Where logs go: 'default' or 'stderr', 'stdout', or file paths, comma-separated.
    #[arg(long, value_name = "OUTPUTS", default_value = "default")]
    pub log_outputs: String,
    /// Configures log level. Only supports debug, info, warn, error, panic, or fatal.
    #[arg(long, value_name = "LEVEL", value_enum, default_value = "info")]
    pub log_level: LogLevelFlag,
    /// Enable debug-level logging (deprecated in etcd; same as --log-level=debug).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true",
          value_parser = parse_go_bool, action = ArgAction::Set)]
    pub debug: bool,
    /// Accepted for etcd compatibility and ignored.
    #[arg(long, value_name = "LEVELS", default_value = "")]
    pub log_package_levels: String,
}

#[derive(Debug, Args)]
pub struct ExperimentalFlags {
    /// Enable to check data corruption before serving any client/peer traffic.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true",
          value_parser = parse_go_bool, action = ArgAction::Set)]
    pub experimental_initial_corrupt_check: bool,
    /// Duration of time between cluster corruption check passes (0 disables).
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = parse_go_duration)]
    pub experimental_corrupt_check_time: std::time::Duration,
    /// Serve v2 requests through the v3 backend under a given prefix: not supported.
    #[arg(long, value_name = "PREFIX", default_value = "")]
    pub experimental_enable_v2v3: String,
    /// Accepted for etcd compatibility and ignored (a bbolt setting).
    #[arg(long, value_name = "TYPE", default_value = "array",
          value_parser = ["array", "map"])]
    pub experimental_backend_bbolt_freelist_type: String,
    /// Persist the remaining TTL of leases so that long-lived leases are not renewed
    /// forever by leader changes.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true",
          value_parser = parse_go_bool, action = ArgAction::Set)]
    pub experimental_enable_lease_checkpoint: bool,
    /// Number of entries for a slow follower to catch up after compacting the raft
    /// storage entries (etcd 3.5's flag).
    #[arg(long, value_name = "N", default_value_t = 5000)]
    pub experimental_snapshot_catchup_entries: u64,
    /// mnemo: how the WAL reaches the disk: `io_uring` (linked write + fdatasync, falling
    /// back to pwrite where io_uring is unavailable) or `pwrite` (pwrite + fdatasync).
    #[arg(long, value_name = "PATH", default_value = "io_uring",
          value_parser = ["io_uring", "pwrite"])]
    pub experimental_wal_io: String,
    /// mnemo: bytes of page-file pages kept in memory (the kernel's page cache holds
    /// more); part of the server's resident memory. Default 64 MiB.
    #[arg(long, value_name = "BYTES", default_value_t = 64 << 20)]
    pub experimental_backend_cache_bytes: u64,
    /// Maximum revisions deleted in each compaction batch.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub experimental_compaction_batch_limit: u32,
    /// Skip verification of SAN field in client certificate for peer connections.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true",
          value_parser = parse_go_bool, action = ArgAction::Set)]
    pub experimental_peer_skip_client_san_verification: bool,
    /// Duration of periodical watch progress notification.
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = parse_go_duration)]
    pub experimental_watch_progress_notify_interval: std::time::Duration,
    /// A warning is logged if a request takes more than this duration to apply.
    #[arg(long, value_name = "DURATION", default_value = "100ms", value_parser = parse_go_duration)]
    pub experimental_warning_apply_duration: std::time::Duration,
}

/// The flags after merging the command line and the environment.
#[derive(Debug)]
pub struct Parsed {
    pub flags: Flags,
    /// Long names (without dashes) given on the command line or by an environment variable.
    pub explicit: HashSet<String>,
    /// Things to log once logging is set up.
    pub warnings: Vec<String>,
}

/// Parses `args` (including the program name) and the environment `env`.
pub fn parse(args: Vec<OsString>, env: BTreeMap<String, String>) -> Result<Parsed, ConfigError> {
    let command = Flags::command();
    let mut warnings = Vec::new();
    let takes_value: HashSet<String> = command
        .get_arguments()
        .filter(|a| a.get_num_args().is_some_and(|n| n.min_values() > 0))
        .filter_map(|a| a.get_long().map(str::to_string))
        .collect();
    let argv = normalise(args.into_iter().skip(1), &takes_value);

    // The command line alone first: its errors come first, and it tells which flags the
    // environment must not override.
    let program = || OsString::from("mnemo");
    let cli = command
        .clone()
        .try_get_matches_from(std::iter::once(program()).chain(argv.iter().cloned()))
        .map_err(ConfigError::Clap)?;
    if cli.get_one::<bool>("version").copied().unwrap_or(false) {
        return Err(ConfigError::VersionRequested);
    }
    let mut explicit = HashSet::new();
    for arg in command.get_arguments() {
        if let (Some(long), Some(ValueSource::CommandLine)) =
            (arg.get_long(), cli.value_source(arg.get_id().as_str()))
        {
            explicit.insert(long.to_string());
        }
    }

    let mut env_args = Vec::new();
    let mut recognised = HashSet::new();
    for arg in command.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if matches!(long, "help" | "version") {
            continue;
        }
        let suffix = long.to_ascii_uppercase().replace('-', "_");
        let mut found: Option<(String, &String)> = None;
        for prefix in ENV_PREFIXES {
            let var = format!("{prefix}{suffix}");
            let Some(value) = env.get(&var) else { continue };
            recognised.insert(var.clone());
            match &found {
                None if explicit.contains(long) => warnings.push(format!(
                    "environment variable {var} is shadowed by the command-line flag --{long}"
                )),
                None => found = Some((var, value)),
                Some((winner, _)) => warnings.push(format!(
                    "environment variable {var} is shadowed by {winner}"
                )),
            }
        }
        let Some((var, value)) = found else { continue };
        let as_flag = OsString::from(format!("--{long}={value}"));
        if let Err(e) = command
            .clone()
            .try_get_matches_from([program(), as_flag.clone()])
        {
            return Err(ConfigError::Invalid(format!(
                "invalid value {value:?} for {var}: {}",
                clap_reason(&e)
            )));
        }
        explicit.insert(long.to_string());
        env_args.push(as_flag);
    }
    for (var, value) in &env {
        if ENV_PREFIXES.iter().any(|p| var.starts_with(p)) && !recognised.contains(var) {
            warnings.push(format!("unrecognized environment variable {var}={value}"));
        }
    }

    // Environment first, command line last: with `args_override_self` the last wins.
    let all = std::iter::once(program()).chain(env_args).chain(argv);
    let matches = command
        .try_get_matches_from(all)
        .map_err(ConfigError::Clap)?;
    let flags = Flags::from_arg_matches(&matches).map_err(ConfigError::Clap)?;
    Ok(Parsed {
        flags,
        explicit,
        warnings,
    })
}

/// Rewrites Go-style arguments into ones clap reads the same way: `-flag` becomes
/// `--flag`, and `--flag value` becomes `--flag=value` for flags that need a value (so a
/// value may start with a dash, as Go allows). Boolean flags never take the next
/// argument, as in Go. Everything after a bare `--` is left alone.
fn normalise(args: impl Iterator<Item = OsString>, takes_value: &HashSet<String>) -> Vec<OsString> {
    let mut out = Vec::new();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let Some(text) = arg.to_str() else {
            out.push(arg);
            continue;
        };
        if text == "--" {
            out.push(arg);
            out.extend(args);
            break;
        }
        let body = match text.strip_prefix("--") {
            Some(body) => body,
            None => match text.strip_prefix('-') {
                Some(body)
                    if body.len() > 1 && body.starts_with(|c: char| c.is_ascii_alphabetic()) =>
                {
                    body
                }
                _ => {
                    out.push(arg);
                    continue;
                }
            },
        };
        if !body.contains('=') && takes_value.contains(body) {
            if let Some(value) = args.next() {
                let mut joined = OsString::from(format!("--{body}="));
                joined.push(value);
                out.push(joined);
                continue;
            }
        }
        out.push(OsString::from(format!("--{body}")));
    }
    out
}

/// The reason inside a clap value error, without clap's framing.
fn clap_reason(e: &clap::Error) -> String {
    if let Some(source) = std::error::Error::source(e) {
        return source.to_string();
    }
    let rendered = e.render().to_string();
    let first = rendered.lines().next().unwrap_or_default();
    first.strip_prefix("error: ").unwrap_or(first).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(args: &[&str]) -> Vec<String> {
        let takes: HashSet<String> = ["name", "quota-backend-bytes"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        normalise(args.iter().map(OsString::from), &takes)
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect()
    }

    #[test]
    fn go_style_arguments() {
        assert_eq!(norm(&["-name", "x"]), ["--name=x"]);
        assert_eq!(norm(&["--name", "-x"]), ["--name=-x"]);
        assert_eq!(norm(&["-name=x"]), ["--name=x"]);
        assert_eq!(
            norm(&["--quota-backend-bytes", "-1"]),
            ["--quota-backend-bytes=-1"]
        );
        assert_eq!(
            norm(&["-enable-pprof", "false"]),
            ["--enable-pprof", "false"]
        );
        assert_eq!(norm(&["-h"]), ["-h"]);
        assert_eq!(norm(&["--", "-name", "x"]), ["--", "-name", "x"]);
        assert_eq!(norm(&["-1"]), ["-1"]);
        assert_eq!(norm(&["--name"]), ["--name"]);
    }
}
