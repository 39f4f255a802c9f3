//! mnemo's configuration: etcd 3.4's flags, with etcd's names, defaults, meaning and
//! validation messages, so that a command line or unit file written for etcd starts mnemo.
//!
//! Sources, strongest first: the command line (`--flag value`, `--flag=value`, Go-style
//! `-flag`), `MNEMO_<FLAG_NAME>` variables (e.g. `MNEMO_DATA_DIR`), then etcd's
//! `ETCD_<FLAG_NAME>`, then the defaults. Differences from etcd (data directory
//! `${name}.mnemo`, exit code 2 for every bad flag, flags shadowing the environment
//! instead of conflicting with it, the flags mnemo refuses) are listed in docs/compat.md.
//!
//! ```
//! let config = mnemo::config::Config::parse_from(["mnemo", "--name", "m1"], []).unwrap();
//! assert_eq!(config.data_dir, std::path::PathBuf::from("m1.mnemo"));
//! assert_eq!(config.initial_cluster[0].peer_urls[0].to_string(), "http://localhost:2380");
//! ```

mod cluster;
mod flags;
mod urls;
mod values;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use cluster::{cluster_id, member_id, InitialMember};
pub use urls::{Scheme, Url};
pub use values::{AutoCompaction, CompactionMode};

use flags::{ClusterStateFlag, CompactionModeFlag, LogLevelFlag, MetricsFlag, Parsed};

/// The etcd API version mnemo speaks.
pub const ETCD_API_VERSION: &str = "3.4";
/// `--quota-backend-bytes=0` means this (etcd's `DefaultQuotaBytes`).
pub const DEFAULT_QUOTA_BYTES: u64 = 2 * 1024 * 1024 * 1024;
/// etcd warns above this quota (`MaxQuotaBytes`).
pub const MAX_RECOMMENDED_QUOTA_BYTES: u64 = 8 * 1024 * 1024 * 1024;
/// etcd's upper bound for `--election-timeout`, in milliseconds.
pub const MAX_ELECTION_TIMEOUT_MS: u64 = 50_000;
/// etcd warns above this request size limit.
const RECOMMENDED_MAX_REQUEST_BYTES: u32 = 10 * 1024 * 1024;

/// A validated configuration. Built by [`Config::from_env_and_args`] (the process) or
/// [`Config::parse_from`] (tests); never touches the file system.
#[derive(Debug, Clone)]
pub struct Config {
    // Member.
    pub name: String,
    /// `--data-dir`, default `${name}.mnemo`.
    pub data_dir: PathBuf,
    /// `--wal-dir`: a dedicated WAL directory, if given.
    pub wal_dir: Option<PathBuf>,
    pub snapshot_count: u64,
    /// `--experimental-snapshot-catchup-entries`: entries kept after a snapshot.
    pub snapshot_catchup_entries: u64,
    pub heartbeat_interval: Duration,
    pub election_timeout: Duration,
    pub initial_election_tick_advance: bool,
    pub listen_peer_urls: Vec<Url>,
    pub listen_client_urls: Vec<Url>,
    /// WAL files to keep; 0 keeps all.
    pub max_wals: u32,
    /// The backend quota in bytes (`0` on the command line resolves to
    /// [`DEFAULT_QUOTA_BYTES`]); `None` when a negative value turned the quota off.
    pub quota_backend_bytes: Option<u64>,
    /// `--backend-batch-interval`, if given.
    pub backend_batch_interval: Option<Duration>,
    /// `--backend-batch-limit`, if not 0.
    pub backend_batch_limit: Option<u32>,
    pub max_txn_ops: usize,
    pub max_request_bytes: usize,
    pub max_concurrent_streams: u32,
    pub grpc_keepalive_min_time: Duration,
    /// `None` when 0 (off).
    pub grpc_keepalive_interval: Option<Duration>,
    /// `None` when 0 (off).
    pub grpc_keepalive_timeout: Option<Duration>,

    // Clustering.
    pub initial_advertise_peer_urls: Vec<Url>,
    /// Sorted by name; contains [`Config::name`].
    pub initial_cluster: Vec<InitialMember>,
    pub initial_cluster_state: ClusterState,
    pub initial_cluster_token: String,
    pub advertise_client_urls: Vec<Url>,
    pub strict_reconfig_check: bool,
    pub pre_vote: bool,
    /// `None` when auto-compaction is off (retention 0).
    pub auto_compaction: Option<AutoCompaction>,

    // Security.
    pub client_tls: TlsConfig,
    pub peer_tls: TlsConfig,
    pub cipher_suites: Vec<String>,
    /// Allowed CORS origins; `["*"]` allows all.
    pub cors: Vec<String>,
    /// Accepted `Host` headers on plain HTTP; `["*"]` allows all.
    pub host_whitelist: Vec<String>,

    // Auth.
    /// `--auth-token`, e.g. `simple` or `jwt,pub-key=…,priv-key=…,sign-method=RS256`.
    pub auth_token: String,
    pub bcrypt_cost: u32,
    pub auth_token_ttl: Duration,

    // Profiling and monitoring.
    pub metrics: MetricsLevel,
    pub listen_metrics_urls: Vec<Url>,

    // Logging.
    pub log_level: LogLevel,
    pub log_outputs: Vec<LogOutput>,

    // Experimental.
    pub initial_corrupt_check: bool,
    /// `None` when 0 (off).
    pub corrupt_check_time: Option<Duration>,
    pub enable_lease_checkpoint: bool,
    pub compaction_batch_limit: usize,
    pub watch_progress_notify_interval: Duration,
    pub warning_apply_duration: Duration,
    /// `--experimental-wal-io=pwrite`: the WAL never uses io_uring.
    pub wal_force_pwrite: bool,
    /// `--experimental-backend-cache-bytes`: the page-file cache.
    pub backend_cache_bytes: usize,

    /// Notes to log once logging is up: ignored flags, shadowed environment variables.
    pub warnings: Vec<String>,
}

/// `--initial-cluster-state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterState {
    /// Bootstrap a new cluster from `--initial-cluster`.
    New,
    /// Join a cluster that already runs (this member was added with `member add`).
    Existing,
}

/// `--log-level`. etcd's `panic` and `fatal` log as errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
    Panic,
    Fatal,
}

/// One of `--log-outputs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogOutput {
    /// `default` or `stderr`.
    Stderr,
    Stdout,
    /// A file, appended to.
    File(PathBuf),
}

/// `--metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsLevel {
    Basic,
    /// Adds histogram metrics.
    Extensive,
}

/// TLS settings of the client or the peer URLs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsConfig {
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub trusted_ca_file: Option<PathBuf>,
    /// Require and verify client certificates.
    pub client_cert_auth: bool,
    pub crl_file: Option<PathBuf>,
    pub allowed_hostname: Option<String>,
    /// Peer only: the CN a peer's certificate must carry.
    pub allowed_cn: Option<String>,
    /// Peer only.
    pub skip_client_san_verification: bool,
    /// `--auto-tls` / `--peer-auto-tls`: without a certificate, generate a self-signed
    /// one at start ([`crate::tls::self_signed`]). Ignored when a certificate is given.
    pub auto_tls: bool,
}

impl TlsConfig {
    /// Whether a certificate is configured.
    pub fn is_enabled(&self) -> bool {
        self.cert_file.is_some()
    }

    /// Whether https URLs can be served: a certificate is given or will be generated.
    pub fn can_serve(&self) -> bool {
        self.is_enabled() || self.auto_tls
    }
}

/// Why the configuration could not be built. [`ConfigError::print`] writes it where etcd
/// would; [`ConfigError::exit_code`] is 0 for `--help` and `--version`, 2 otherwise.
#[derive(Debug)]
pub enum ConfigError {
    /// clap's outcome: the help text, or a malformed command line (unknown flag,
    /// unparsable value).
    Clap(clap::Error),
    /// `--version` was given: print [`version_text`].
    VersionRequested,
    /// Values that parsed but do not make a valid configuration.
    Invalid(String),
}

impl ConfigError {
    pub fn exit_code(&self) -> u8 {
        match self {
            ConfigError::Clap(e) if !e.use_stderr() => 0,
            ConfigError::VersionRequested => 0,
            ConfigError::Clap(_) | ConfigError::Invalid(_) => 2,
        }
    }

    /// Writes the help or version text to stdout, an error to stderr.
    pub fn print(&self) {
        match self {
            ConfigError::Clap(e) => {
                let _ = e.print();
            }
            ConfigError::VersionRequested => print!("{}", version_text()),
            ConfigError::Invalid(_) => eprintln!("{self}"),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Clap(e) => write!(f, "{e}"),
            ConfigError::VersionRequested => f.write_str(&version_text()),
            ConfigError::Invalid(msg) => {
                write!(
                    f,
                    "mnemo: error verifying flags, {msg}. See 'mnemo --help'."
                )
            }
        }
    }
}

impl std::error::Error for ConfigError {}

/// What `mnemo --version` prints, in the shape of `etcd --version`.
pub fn version_text() -> String {
    format!(
        "mnemo Version: {}\netcd API Version: {}\nOS/Arch: {}/{}\n",
        env!("CARGO_PKG_VERSION"),
        ETCD_API_VERSION,
        std::env::consts::OS,
        std::env::consts::ARCH,
    )
}

impl Config {
    /// The process's configuration: its arguments and its environment.
    pub fn from_env_and_args() -> Result<Config, ConfigError> {
        let env = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)));
        Config::parse_from(std::env::args_os(), env)
    }

    /// Parses `args` (the first is the program name) with the environment `env`.
    pub fn parse_from<A, T, E>(args: A, env: E) -> Result<Config, ConfigError>
    where
        A: IntoIterator<Item = T>,
        T: Into<OsString>,
        E: IntoIterator<Item = (String, String)>,
    {
        let args = args.into_iter().map(Into::into).collect();
        let env: BTreeMap<String, String> = env.into_iter().collect();
        Config::from_parsed(flags::parse(args, env)?).map_err(ConfigError::Invalid)
    }

    fn from_parsed(parsed: Parsed) -> Result<Config, String> {
        let Parsed {
            flags: f,
            explicit,
            mut warnings,
        } = parsed;
        let set = |long: &str| explicit.contains(long);
        let (m, c, s, a, mon, l, x) = (
            f.member,
            f.clustering,
            f.security,
            f.auth,
            f.monitoring,
            f.logging,
            f.experimental,
        );

        // Flags mnemo refuses rather than pretend to honour.
        let unsupported = [
            (f.config_file.is_some(), "--config-file"),
            (!c.discovery.is_empty(), "--discovery"),
            (!c.discovery_proxy.is_empty(), "--discovery-proxy"),
            (!c.discovery_srv.is_empty(), "--discovery-srv"),
            (!c.discovery_srv_name.is_empty(), "--discovery-srv-name"),
            (c.enable_v2, "--enable-v2 (the v2 API)"),
            (c.proxy != "off", "--proxy (the v2 proxy)"),
            (c.force_new_cluster, "--force-new-cluster"),
            (
                !x.experimental_enable_v2v3.is_empty(),
                "--experimental-enable-v2v3",
            ),
        ];
        if let Some((_, what)) = unsupported.iter().find(|(given, _)| *given) {
            return Err(format!("{what} is not supported by mnemo"));
        }
        let ignored = [
            (set("max-snapshots"), "--max-snapshots"),
            (set("discovery-fallback"), "--discovery-fallback"),
            (mon.enable_pprof, "--enable-pprof"),
            (set("logger"), "--logger"),
            (!l.log_package_levels.is_empty(), "--log-package-levels"),
            (
                set("experimental-backend-bbolt-freelist-type"),
                "--experimental-backend-bbolt-freelist-type",
            ),
        ];
        for (_, flag) in ignored.iter().filter(|(given, _)| *given) {
            warnings.push(format!(
                "{flag} is accepted for etcd compatibility and ignored"
            ));
        }

        // Timing, as etcd's embed.Config.Validate checks it.
        let (hb, el) = (m.heartbeat_interval, m.election_timeout);
        if hb == 0 {
            return Err(format!("--heartbeat-interval must be >0 (set to {hb}ms)"));
        }
        if el == 0 {
            return Err(format!("--election-timeout must be >0 (set to {el}ms)"));
        }
        if hb.saturating_mul(5) > el {
            return Err(format!(
                "--election-timeout[{el}ms] should be at least as 5 times as \
                 --heartbeat-interval[{hb}ms]"
            ));
        }
        if el > MAX_ELECTION_TIMEOUT_MS {
            return Err(format!(
                "--election-timeout[{el}ms] is too long, and should be set less than \
                 {MAX_ELECTION_TIMEOUT_MS}ms"
            ));
        }

        // URLs.
        let listen_peer_urls = non_empty("--listen-peer-urls", m.listen_peer_urls.0)?;
        let listen_client_urls = non_empty("--listen-client-urls", m.listen_client_urls.0)?;
        let listen_metrics_urls = mon.listen_metrics_urls.0;
        for url in listen_peer_urls
            .iter()
            .chain(&listen_client_urls)
            .chain(&listen_metrics_urls)
        {
            url.bind_addr()?;
        }
        if set("listen-client-urls") && !set("advertise-client-urls") {
            return Err(
                "--advertise-client-urls is required when --listen-client-urls is set \
                 explicitly"
                    .to_string(),
            );
        }
        let advertise_client_urls =
            non_empty("--advertise-client-urls", c.advertise_client_urls.0)?;
        let initial_advertise_peer_urls = non_empty(
            "--initial-advertise-peer-urls",
            c.initial_advertise_peer_urls.0,
        )?;
        for (flag, urls) in [
            ("--advertise-client-urls", &advertise_client_urls),
            (
                "--initial-advertise-peer-urls",
                &initial_advertise_peer_urls,
            ),
        ] {
            if let Some(url) = urls.iter().find(|u| u.host().is_empty()) {
                return Err(format!("{flag} has a URL with an empty host ({url})"));
            }
        }

        // TLS.
        let client_tls = TlsConfig {
            cert_file: s.cert_file,
            key_file: s.key_file,
            trusted_ca_file: s.trusted_ca_file,
            client_cert_auth: s.client_cert_auth,
            crl_file: s.client_crl_file,
            allowed_hostname: s.client_cert_allowed_hostname,
            allowed_cn: None,
            skip_client_san_verification: false,
            auto_tls: s.auto_tls,
        };
        let peer_tls = TlsConfig {
            cert_file: s.peer_cert_file,
            key_file: s.peer_key_file,
            trusted_ca_file: s.peer_trusted_ca_file,
            client_cert_auth: s.peer_client_cert_auth,
            crl_file: s.peer_crl_file,
            allowed_hostname: s.peer_cert_allowed_hostname,
            allowed_cn: s.peer_cert_allowed_cn,
            skip_client_san_verification: x.experimental_peer_skip_client_san_verification,
            auto_tls: s.peer_auto_tls,
        };
        check_tls("", "client", &client_tls, &listen_client_urls)?;
        check_tls("peer-", "peer", &peer_tls, &listen_peer_urls)?;
        if peer_tls.allowed_cn.is_some() && !peer_tls.client_cert_auth {
            return Err(
                "--peer-cert-allowed-cn needs --peer-client-cert-auth (peers must present a \
                 certificate for its CommonName to be checked)"
                    .into(),
            );
        }
        // etcd's token providers: `simple`, or `jwt` with its options.
        match a.auth_token.split(',').next().unwrap_or_default() {
            "simple" => {}
            "jwt" => warnings.push(
                "--auth-token=jwt: JWT tokens are not implemented by mnemo; simple tokens \
                 are handed out instead (clients treat both as opaque)"
                    .to_string(),
            ),
            other => {
                return Err(format!(
                    "--auth-token={}: auth: invalid auth options (unknown token type {other:?}; \
                     'simple' or 'jwt')",
                    a.auth_token
                ))
            }
        }
        // etcd's warnings for TLS settings that an http URL does not use.
        if client_tls.auto_tls && client_tls.is_enabled() {
            warnings.push("ignoring client auto TLS since certs given".to_string());
        }
        if let Some(url) = listen_client_urls.iter().find(|u| !u.is_tls()) {
            if client_tls.is_enabled() {
                warnings.push(format!(
                    "scheme is HTTP while key and cert files are present; ignoring key and \
                     cert files (client url {url})"
                ));
            }
            if client_tls.client_cert_auth {
                warnings.push(format!(
                    "scheme is HTTP while --client-cert-auth is enabled; ignoring client \
                     cert auth for this URL (client url {url})"
                ));
            }
        }

        // Cluster. Unlike etcd, which only does so for a non-default --name, the default
        // initial cluster is always this member at its advertised peer URLs.
        let name = m.name;
        let token = c.initial_cluster_token;
        let initial_cluster_text = match c.initial_cluster {
            Some(text) => text,
            None => initial_advertise_peer_urls
                .iter()
                .map(|u| format!("{name}={u}"))
                .collect::<Vec<_>>()
                .join(","),
        };
        let initial_cluster = cluster::parse_initial_cluster(&initial_cluster_text, &token)?;
        if initial_cluster.is_empty() {
            return Err("initial cluster unset and no discovery URL found".to_string());
        }
        let me = initial_cluster
            .iter()
            .find(|member| member.name == name)
            .ok_or_else(|| {
                format!("couldn't find local name {name:?} in the initial cluster configuration")
            })?;
        check_advertised_peers(&name, &me.peer_urls, &initial_advertise_peer_urls)?;

        let mode = match c.auto_compaction_mode {
            CompactionModeFlag::Periodic => CompactionMode::Periodic,
            CompactionModeFlag::Revision => CompactionMode::Revision,
        };
        let auto_compaction = values::parse_retention(mode, &c.auto_compaction_retention)?;

        // Limits.
        let quota_backend_bytes = match m.quota_backend_bytes {
            q if q < 0 => None,
            0 => Some(DEFAULT_QUOTA_BYTES),
            q => Some(q.unsigned_abs()),
        };
        if quota_backend_bytes.is_some_and(|q| q > MAX_RECOMMENDED_QUOTA_BYTES) {
            warnings.push(format!(
                "--quota-backend-bytes={} exceeds the recommended maximum of {} bytes",
                m.quota_backend_bytes, MAX_RECOMMENDED_QUOTA_BYTES
            ));
        }
        if m.max_request_bytes > RECOMMENDED_MAX_REQUEST_BYTES {
            warnings.push(format!(
                "--max-request-bytes={} exceeds the recommended request limit of {} bytes",
                m.max_request_bytes, RECOMMENDED_MAX_REQUEST_BYTES
            ));
        }
        if m.max_txn_ops == 0 {
            return Err("--max-txn-ops must be >0".to_string());
        }
        if m.max_request_bytes == 0 {
            return Err("--max-request-bytes must be >0".to_string());
        }
        if !(4..=31).contains(&a.bcrypt_cost) {
            return Err(format!(
                "--bcrypt-cost must be between 4 and 31 (set to {})",
                a.bcrypt_cost
            ));
        }

        let log_level = match l.log_level {
            _ if l.debug => LogLevel::Debug,
            LogLevelFlag::Debug => LogLevel::Debug,
            LogLevelFlag::Info => LogLevel::Info,
            LogLevelFlag::Warn => LogLevel::Warn,
            LogLevelFlag::Error => LogLevel::Error,
            LogLevelFlag::Panic => LogLevel::Panic,
            LogLevelFlag::Fatal => LogLevel::Fatal,
        };
        let log_outputs = parse_log_outputs(&l.log_outputs)?;

        let data_dir = match m.data_dir {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => PathBuf::from(format!("{name}.mnemo")),
        };
        let nonzero = |d: Duration| (!d.is_zero()).then_some(d);
        Ok(Config {
            data_dir,
            wal_dir: m.wal_dir.filter(|d| !d.as_os_str().is_empty()),
            snapshot_count: m.snapshot_count,
            snapshot_catchup_entries: x.experimental_snapshot_catchup_entries,
            heartbeat_interval: Duration::from_millis(hb),
            election_timeout: Duration::from_millis(el),
            initial_election_tick_advance: m.initial_election_tick_advance,
            listen_peer_urls,
            listen_client_urls,
            max_wals: m.max_wals,
            quota_backend_bytes,
            backend_batch_interval: m.backend_batch_interval.and_then(nonzero),
            backend_batch_limit: (m.backend_batch_limit != 0).then_some(m.backend_batch_limit),
            max_txn_ops: m.max_txn_ops as usize,
            max_request_bytes: m.max_request_bytes as usize,
            max_concurrent_streams: m.max_concurrent_streams,
            grpc_keepalive_min_time: m.grpc_keepalive_min_time,
            grpc_keepalive_interval: nonzero(m.grpc_keepalive_interval),
            grpc_keepalive_timeout: nonzero(m.grpc_keepalive_timeout),
            initial_advertise_peer_urls,
            initial_cluster,
            initial_cluster_state: match c.initial_cluster_state {
                ClusterStateFlag::New => ClusterState::New,
                ClusterStateFlag::Existing => ClusterState::Existing,
            },
            initial_cluster_token: token,
            advertise_client_urls,
            strict_reconfig_check: c.strict_reconfig_check,
            pre_vote: c.pre_vote,
            auto_compaction,
            client_tls,
            peer_tls,
            cipher_suites: comma_list(&s.cipher_suites),
            cors: comma_list(&s.cors),
            host_whitelist: comma_list(&s.host_whitelist),
            auth_token: a.auth_token,
            bcrypt_cost: a.bcrypt_cost,
            auth_token_ttl: Duration::from_secs(a.auth_token_ttl),
            metrics: match mon.metrics {
                MetricsFlag::Basic => MetricsLevel::Basic,
                MetricsFlag::Extensive => MetricsLevel::Extensive,
            },
            listen_metrics_urls,
            log_level,
            log_outputs,
            initial_corrupt_check: x.experimental_initial_corrupt_check,
            corrupt_check_time: nonzero(x.experimental_corrupt_check_time),
            enable_lease_checkpoint: x.experimental_enable_lease_checkpoint,
            compaction_batch_limit: x.experimental_compaction_batch_limit as usize,
            watch_progress_notify_interval: x.experimental_watch_progress_notify_interval,
            warning_apply_duration: x.experimental_warning_apply_duration,
            wal_force_pwrite: x.experimental_wal_io == "pwrite",
            backend_cache_bytes: usize::try_from(x.experimental_backend_cache_bytes)
                .unwrap_or(usize::MAX),
            name,
            warnings,
        })
    }

    /// This member's id as etcd derives it when bootstrapping: see [`member_id`].
    ///
    /// With `--initial-cluster-state=existing` the id is the one the cluster assigned at
    /// `member add` (etcd salts it with the time), which the server learns from the
    /// cluster by matching peer URLs; this value is then only a fallback.
    pub fn member_id(&self) -> u64 {
        self.local_member().id
    }

    /// The cluster id of a cluster bootstrapped from `--initial-cluster`.
    pub fn cluster_id(&self) -> u64 {
        cluster_id(self.initial_cluster.iter().map(|m| m.id))
    }

    /// This member's entry in `--initial-cluster`.
    pub fn local_member(&self) -> &InitialMember {
        // `from_parsed` refuses a configuration whose initial cluster lacks `name`.
        self.initial_cluster
            .iter()
            .find(|m| m.name == self.name)
            .unwrap_or(&self.initial_cluster[0])
    }

    /// Socket addresses to bind for client traffic (gRPC and HTTP), one per
    /// `--listen-client-urls` entry, with [`Url::is_tls`] on the matching URL.
    pub fn client_bind_addrs(&self) -> Vec<SocketAddr> {
        bind_addrs(&self.listen_client_urls)
    }

    /// Socket addresses to bind for peer traffic.
    pub fn peer_bind_addrs(&self) -> Vec<SocketAddr> {
        bind_addrs(&self.listen_peer_urls)
    }

    /// Socket addresses to bind for `/metrics` and `/health` only (may be empty).
    pub fn metrics_bind_addrs(&self) -> Vec<SocketAddr> {
        bind_addrs(&self.listen_metrics_urls)
    }
}

impl Default for Config {
    /// etcd's defaults: member `default` on localhost:2379/2380, data in
    /// `./default.mnemo`.
    fn default() -> Config {
        Config::parse_from(["mnemo"], []).expect("the defaults are a valid configuration")
    }
}

fn bind_addrs(urls: &[Url]) -> Vec<SocketAddr> {
    // Every listen URL was checked with `bind_addr` in `from_parsed`.
    urls.iter().filter_map(|u| u.bind_addr().ok()).collect()
}

fn non_empty(flag: &str, urls: Vec<Url>) -> Result<Vec<Url>, String> {
    if urls.is_empty() {
        return Err(format!("{flag}: no valid URLs given"));
    }
    Ok(urls)
}

fn comma_list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn check_tls(prefix: &str, what: &str, tls: &TlsConfig, listen: &[Url]) -> Result<(), String> {
    if tls.cert_file.is_some() != tls.key_file.is_some() {
        return Err(format!(
            "--{prefix}cert-file and --{prefix}key-file must be given together"
        ));
    }
    if let Some(url) = listen.iter().find(|u| u.is_tls()) {
        if !tls.can_serve() {
            return Err(format!(
                "TLS key/cert (--{prefix}cert-file, --{prefix}key-file) must be provided for \
                 {what} url {url} with HTTPS scheme"
            ));
        }
    }
    Ok(())
}

/// etcd's `advertiseMatchesCluster`, comparing URL strings (etcd would also resolve host
/// names; mnemo does not, so `localhost` and `127.0.0.1` differ, as they do for etcd when
/// resolution fails).
fn check_advertised_peers(
    name: &str,
    in_cluster: &[Url],
    advertised: &[Url],
) -> Result<(), String> {
    let cluster: Vec<String> = in_cluster.iter().map(Url::to_string).collect();
    let adv: Vec<String> = advertised.iter().map(Url::to_string).collect();
    let missing: Vec<String> = cluster
        .iter()
        .filter(|u| !adv.contains(u))
        .map(|u| format!("{name}={u}"))
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "--initial-cluster has {} but missing from --initial-advertise-peer-urls={}",
            missing.join(","),
            adv.join(",")
        ));
    }
    let extra: Vec<&String> = adv.iter().filter(|u| !cluster.contains(u)).collect();
    if !extra.is_empty() {
        let joined: Vec<&str> = extra.iter().map(|s| s.as_str()).collect();
        let mine: Vec<String> = adv.iter().map(|u| format!("{name}={u}")).collect();
        return Err(format!(
            "--initial-advertise-peer-urls has {} but missing from --initial-cluster={}",
            joined.join(","),
            mine.join(",")
        ));
    }
    Ok(())
}

fn parse_log_outputs(text: &str) -> Result<Vec<LogOutput>, String> {
    let mut outputs = Vec::new();
    for part in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let output = match part {
            "default" | "stderr" => LogOutput::Stderr,
            "stdout" => LogOutput::Stdout,
            "systemd/journal" => {
                return Err("--log-outputs=systemd/journal is not supported by mnemo".into())
            }
            path => LogOutput::File(PathBuf::from(path)),
        };
        if !outputs.contains(&output) {
            outputs.push(output);
        }
    }
    if outputs.is_empty() {
        outputs.push(LogOutput::Stderr);
    }
    Ok(outputs)
}

#[cfg(test)]
mod tests;
