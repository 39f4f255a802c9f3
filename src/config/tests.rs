use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::*;

fn parse(args: &[&str]) -> Result<Config, ConfigError> {
    parse_env(args, &[])
}

fn parse_env(args: &[&str], env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let argv = std::iter::once("mnemo").chain(args.iter().copied());
    let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
    Config::parse_from(argv, env)
}

fn invalid(args: &[&str]) -> String {
    match parse(args) {
        Err(ConfigError::Invalid(msg)) => msg,
        other => panic!("{args:?}: expected an invalid configuration, got {other:?}"),
    }
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// The flags a test member on 127.0.0.1 needs.
const LOCAL: [&str; 10] = [
    "--listen-client-urls=http://127.0.0.1:12379",
    "--advertise-client-urls=http://127.0.0.1:12379",
    "--listen-peer-urls=http://127.0.0.1:12380",
    "--initial-advertise-peer-urls=http://127.0.0.1:12380",
    "--initial-cluster=default=http://127.0.0.1:12380",
    "--name=default",
    "--data-dir=d",
    "--log-level=info",
    "--initial-cluster-state=new",
    "--initial-cluster-token=etcd-cluster",
];

#[test]
fn backend_cache_size() {
    assert_eq!(parse(&[]).unwrap().backend_cache_bytes, 64 << 20);
    let c = parse(&["--experimental-backend-cache-bytes=67108864"]).unwrap();
    assert_eq!(c.backend_cache_bytes, 64 << 20);
    assert!(matches!(
        parse(&["--experimental-backend-cache-bytes=lots"]),
        Err(ConfigError::Clap(_))
    ));
}

#[test]
fn defaults_are_etcds() {
    let c = Config::default();
    assert_eq!(c.name, "default");
    assert_eq!(c.data_dir, PathBuf::from("default.mnemo"));
    assert_eq!(c.wal_dir, None);
    assert_eq!(c.client_bind_addrs(), [addr("127.0.0.1:2379")]);
    assert_eq!(c.peer_bind_addrs(), [addr("127.0.0.1:2380")]);
    assert!(c.metrics_bind_addrs().is_empty());
    assert_eq!(
        c.advertise_client_urls[0].to_string(),
        "http://localhost:2379"
    );
    assert_eq!(c.member_id(), 0x8e9e_05c5_2164_694d);
    assert_eq!(c.cluster_id(), 0xcdf8_1819_4e3a_8c32);
    assert_eq!(c.heartbeat_interval, Duration::from_millis(100));
    assert_eq!(c.election_timeout, Duration::from_secs(1));
    assert_eq!(c.snapshot_count, 100_000);
    assert_eq!(c.quota_backend_bytes, Some(DEFAULT_QUOTA_BYTES));
    assert_eq!(c.max_request_bytes, 1_572_864);
    assert_eq!(c.max_txn_ops, 128);
    assert_eq!(c.initial_cluster_state, ClusterState::New);
    assert_eq!(c.initial_cluster_token, "etcd-cluster");
    assert_eq!(c.auto_compaction, None);
    assert_eq!(c.log_level, LogLevel::Info);
    assert_eq!(c.log_outputs, [LogOutput::Stderr]);
    assert_eq!(c.grpc_keepalive_min_time, Duration::from_secs(5));
    assert_eq!(c.grpc_keepalive_interval, Some(Duration::from_secs(7200)));
    assert_eq!(c.watch_progress_notify_interval, Duration::from_secs(600));
    assert!(c.strict_reconfig_check);
    assert!(!c.client_tls.is_enabled());
    assert_eq!(c.cors, ["*"]);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn name_sets_data_dir_and_initial_cluster() {
    let c = parse(&["--name", "m1"]).unwrap();
    assert_eq!(c.data_dir, PathBuf::from("m1.mnemo"));
    assert_eq!(c.initial_cluster.len(), 1);
    assert_eq!(c.local_member().name, "m1");
    assert_eq!(
        c.local_member().peer_urls[0].to_string(),
        "http://localhost:2380"
    );
    let c = parse(&["--name=m1", "--data-dir=/var/lib/x"]).unwrap();
    assert_eq!(c.data_dir, PathBuf::from("/var/lib/x"));
}

#[test]
fn a_local_member_parses() {
    let c = parse(&LOCAL).unwrap();
    assert_eq!(c.client_bind_addrs(), [addr("127.0.0.1:12379")]);
    assert_eq!(c.peer_bind_addrs(), [addr("127.0.0.1:12380")]);
    assert_eq!(c.data_dir, PathBuf::from("d"));
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn three_members_agree_on_the_cluster_id() {
    let cluster = "n1=http://127.0.0.1:1,n2=http://127.0.0.1:2,n3=http://127.0.0.1:3";
    let configs: Vec<Config> = (1..=3)
        .map(|i| {
            let name = format!("--name=n{i}");
            let peer = format!("--initial-advertise-peer-urls=http://127.0.0.1:{i}");
            let ic = format!("--initial-cluster={cluster}");
            parse(&[&name, &peer, &ic, "--initial-cluster-token=t"]).unwrap()
        })
        .collect();
    let ids: std::collections::HashSet<u64> = configs.iter().map(Config::member_id).collect();
    assert_eq!(ids.len(), 3);
    assert!(configs
        .iter()
        .all(|c| c.cluster_id() == configs[0].cluster_id()));
}

#[test]
fn timing_rules_and_messages_are_etcds() {
    assert_eq!(
        invalid(&["--heartbeat-interval", "300"]),
        "--election-timeout[1000ms] should be at least as 5 times as --heartbeat-interval[300ms]"
    );
    assert_eq!(
        invalid(&["--election-timeout=60000", "--heartbeat-interval=1000"]),
        "--election-timeout[60000ms] is too long, and should be set less than 50000ms"
    );
    assert_eq!(
        invalid(&["--heartbeat-interval=0"]),
        "--heartbeat-interval must be >0 (set to 0ms)"
    );
    assert_eq!(
        invalid(&["--election-timeout=0"]),
        "--election-timeout must be >0 (set to 0ms)"
    );
    let c = parse(&["--heartbeat-interval=200", "--election-timeout=1000"]).unwrap();
    assert_eq!(c.heartbeat_interval, Duration::from_millis(200));
}

#[test]
fn url_rules_and_messages_are_etcds() {
    assert_eq!(
        invalid(&["--listen-client-urls=http://127.0.0.1:1"]),
        "--advertise-client-urls is required when --listen-client-urls is set explicitly"
    );
    assert_eq!(
        invalid(&[
            "--listen-client-urls=http://example.com:1",
            "--advertise-client-urls=http://example.com:1"
        ]),
        "expected IP in URL for binding (http://example.com:1)"
    );
    assert_eq!(
        invalid(&["--name=foo", "--initial-cluster=bar=http://localhost:2380"]),
        r#"couldn't find local name "foo" in the initial cluster configuration"#
    );
    assert_eq!(
        invalid(&["--initial-cluster=default=http://127.0.0.1:2380"]),
        "--initial-cluster has default=http://127.0.0.1:2380 but missing from \
         --initial-advertise-peer-urls=http://localhost:2380"
    );
    assert_eq!(
        invalid(&[
            "--initial-advertise-peer-urls=http://localhost:2380,http://10.0.0.1:2380",
            "--initial-cluster=default=http://localhost:2380"
        ]),
        "--initial-advertise-peer-urls has http://10.0.0.1:2380 but missing from \
         --initial-cluster=default=http://localhost:2380,default=http://10.0.0.1:2380"
    );
    // Advertising other peer URLs moves the default initial cluster along.
    let c = parse(&["--initial-advertise-peer-urls=http://127.0.0.1:9"]).unwrap();
    assert_eq!(
        c.local_member().peer_urls[0].to_string(),
        "http://127.0.0.1:9"
    );
    // Malformed URLs are clap value errors (exit code 2).
    for bad in [
        "--listen-client-urls=foo",
        "--listen-peer-urls=http://127.0.0.1",
        "--advertise-client-urls=http://127.0.0.1:1/x",
    ] {
        match parse(&[bad]) {
            Err(e @ ConfigError::Clap(_)) => assert_eq!(e.exit_code(), 2),
            other => panic!("{bad}: {other:?}"),
        }
    }
}

#[test]
fn https_needs_a_certificate() {
    assert_eq!(
        invalid(&[
            "--listen-client-urls=https://127.0.0.1:1",
            "--advertise-client-urls=https://127.0.0.1:1"
        ]),
        "TLS key/cert (--cert-file, --key-file) must be provided for client url \
         https://127.0.0.1:1 with HTTPS scheme"
    );
    assert!(invalid(&["--peer-cert-file=c.pem"]).contains("--peer-key-file"));
    assert!(invalid(&["--peer-cert-allowed-cn=peer"]).contains("--peer-client-cert-auth"));
    assert!(invalid(&["--auth-token=opaque"]).contains("auth: invalid auth options"));
    let c = parse(&["--auth-token=jwt,pub-key=a.pub,priv-key=a,sign-method=RS256"]).unwrap();
    assert!(c.warnings.iter().any(|w| w.starts_with("--auth-token=jwt")));
    let c = parse(&["--peer-cert-allowed-cn=peer", "--peer-client-cert-auth"]).unwrap();
    assert_eq!(c.peer_tls.allowed_cn.as_deref(), Some("peer"));
    let c = parse(&[
        "--listen-peer-urls=https://127.0.0.1:2",
        "--initial-advertise-peer-urls=https://127.0.0.1:2",
        "--peer-auto-tls",
    ])
    .unwrap();
    assert!(c.peer_tls.auto_tls && c.listen_peer_urls[0].is_tls());
    let c = parse(&[
        "--listen-client-urls=https://127.0.0.1:1",
        "--advertise-client-urls=https://127.0.0.1:1",
        "--cert-file=c.pem",
        "--key-file=k.pem",
        "--client-cert-auth",
    ])
    .unwrap();
    assert!(c.listen_client_urls[0].is_tls());
    assert!(c.client_tls.client_cert_auth);
    assert_eq!(c.client_tls.cert_file, Some(PathBuf::from("c.pem")));
}

#[test]
fn go_flag_syntax() {
    let c = parse(&["-name", "x", "-quota-backend-bytes", "-1"]).unwrap();
    assert_eq!(c.name, "x");
    assert_eq!(c.quota_backend_bytes, None);
    let c = parse(&[
        "--quota-backend-bytes=1024",
        "--strict-reconfig-check=false",
    ])
    .unwrap();
    assert_eq!(c.quota_backend_bytes, Some(1024));
    assert!(!c.strict_reconfig_check);
    let c = parse(&["--pre-vote", "--initial-election-tick-advance=F"]).unwrap();
    assert!(c.pre_vote);
    assert!(!c.initial_election_tick_advance);
    // The last occurrence wins, as with Go's flag package.
    assert_eq!(parse(&["--name=a", "--name=b"]).unwrap().name, "b");
    // A boolean flag never takes the next argument.
    match parse(&["--pre-vote", "false"]) {
        Err(e @ ConfigError::Clap(_)) => assert_eq!(e.exit_code(), 2),
        other => panic!("{other:?}"),
    }
}

#[test]
fn clap_outcomes_and_exit_codes() {
    match parse(&["--bogus"]) {
        Err(e @ ConfigError::Clap(_)) => {
            assert_eq!(e.exit_code(), 2);
            assert!(e.to_string().contains("--bogus"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    match parse(&["--help"]) {
        Err(e @ ConfigError::Clap(_)) => {
            assert_eq!(e.exit_code(), 0);
            assert!(e.to_string().contains("--initial-cluster-token"));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        parse(&["--version"]),
        Err(ConfigError::VersionRequested)
    ));
    assert!(matches!(
        parse(&["-version"]),
        Err(ConfigError::VersionRequested)
    ));
    // Before the environment and validation, like --help.
    assert!(matches!(
        parse_env(
            &["--version", "--heartbeat-interval=900"],
            &[("MNEMO_NAME", "")]
        ),
        Err(ConfigError::VersionRequested)
    ));
    for bad in [
        &["--initial-cluster-state=foo"][..],
        &["--auto-compaction-mode=foo"],
        &["--log-level=foo"],
        &["--heartbeat-interval=abc"],
        &["--enable-pprof=maybe"],
        &["--grpc-keepalive-min-time=5"],
        &["stray"],
    ] {
        match parse(bad) {
            Err(e @ ConfigError::Clap(_)) => assert_eq!(e.exit_code(), 2, "{bad:?}"),
            other => panic!("{bad:?}: {other:?}"),
        }
    }
}

#[test]
fn auto_compaction() {
    let c = parse(&["--auto-compaction-retention=1"]).unwrap();
    assert_eq!(
        c.auto_compaction,
        Some(AutoCompaction::Periodic(Duration::from_secs(3600)))
    );
    let c = parse(&[
        "--auto-compaction-mode=revision",
        "--auto-compaction-retention=1000",
    ])
    .unwrap();
    assert_eq!(c.auto_compaction, Some(AutoCompaction::Revision(1000)));
    assert_eq!(
        invalid(&["--auto-compaction-retention=abc"]),
        "error parsing CompactionRetention: time: invalid duration \"abc\""
    );
}

#[test]
fn environment_variables() {
    let c = parse_env(&[], &[("MNEMO_NAME", "m"), ("MNEMO_DATA_DIR", "/d")]).unwrap();
    assert_eq!((c.name.as_str(), c.data_dir.to_str()), ("m", Some("/d")));
    // etcd's variables work too, below mnemo's.
    let c = parse_env(&[], &[("ETCD_NAME", "e")]).unwrap();
    assert_eq!(c.name, "e");
    let c = parse_env(&[], &[("ETCD_NAME", "e"), ("MNEMO_NAME", "m")]).unwrap();
    assert_eq!(c.name, "m");
    assert!(c.warnings.iter().any(|w| w.contains("ETCD_NAME")));
    // Flags win, with a warning.
    let c = parse_env(&["--name=f"], &[("MNEMO_NAME", "m")]).unwrap();
    assert_eq!(c.name, "f");
    assert!(c.warnings.iter().any(|w| w.contains("MNEMO_NAME")));
    // A bad value names its variable; a flag that shadows it hides it.
    let msg = match parse_env(&[], &[("MNEMO_HEARTBEAT_INTERVAL", "abc")]) {
        Err(ConfigError::Invalid(msg)) => msg,
        other => panic!("{other:?}"),
    };
    assert!(
        msg.starts_with("invalid value \"abc\" for MNEMO_HEARTBEAT_INTERVAL"),
        "{msg}"
    );
    parse_env(
        &["--heartbeat-interval=100"],
        &[("MNEMO_HEARTBEAT_INTERVAL", "abc")],
    )
    .unwrap();
    // Values that parse feed validation like flags (here, the 5x rule).
    let msg = match parse_env(&[], &[("MNEMO_HEARTBEAT_INTERVAL", "300")]) {
        Err(ConfigError::Invalid(msg)) => msg,
        other => panic!("{other:?}"),
    };
    assert!(msg.contains("--heartbeat-interval[300ms]"), "{msg}");
    // Explicitly set by the environment counts as explicit.
    let msg = match parse_env(&[], &[("MNEMO_LISTEN_CLIENT_URLS", "http://127.0.0.1:1")]) {
        Err(ConfigError::Invalid(msg)) => msg,
        other => panic!("{other:?}"),
    };
    assert!(msg.contains("--advertise-client-urls is required"), "{msg}");
    // Booleans and unknown variables.
    let c = parse_env(&[], &[("MNEMO_PRE_VOTE", "true"), ("MNEMO_BOGUS", "1")]).unwrap();
    assert!(c.pre_vote);
    assert!(c
        .warnings
        .iter()
        .any(|w| w == "unrecognized environment variable MNEMO_BOGUS=1"));
}

#[test]
fn unsupported_and_ignored_flags() {
    for (args, what) in [
        (&["--config-file=/etc/etcd.yml"][..], "--config-file"),
        (&["--enable-v2"], "--enable-v2"),
        (&["--force-new-cluster"], "--force-new-cluster"),
        (&["--discovery=https://d/x"], "--discovery"),
        (&["--proxy=on"], "--proxy"),
    ] {
        let msg = invalid(args);
        assert!(
            msg.starts_with(what) && msg.ends_with("not supported by mnemo"),
            "{msg}"
        );
    }
    let c = parse(&[
        "--enable-v2=false",
        "--enable-pprof",
        "--logger=zap",
        "--max-snapshots=3",
    ])
    .unwrap();
    assert_eq!(c.warnings.len(), 3, "{:?}", c.warnings);
}

#[test]
fn logging_flags() {
    let c = parse(&["--log-level=warn", "--log-outputs=stdout,/tmp/m.log,stdout"]).unwrap();
    assert_eq!(c.log_level, LogLevel::Warn);
    assert_eq!(
        c.log_outputs,
        [
            LogOutput::Stdout,
            LogOutput::File(PathBuf::from("/tmp/m.log"))
        ]
    );
    assert_eq!(parse(&["--debug"]).unwrap().log_level, LogLevel::Debug);
    assert!(invalid(&["--log-outputs=systemd/journal"]).contains("not supported"));
}

#[test]
fn limits() {
    let c = parse(&[
        "--max-request-bytes=100",
        "--max-txn-ops=5",
        "--quota-backend-bytes=9663676416",
    ])
    .unwrap();
    assert_eq!((c.max_request_bytes, c.max_txn_ops), (100, 5));
    assert_eq!(c.quota_backend_bytes, Some(9_663_676_416));
    assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
    assert!(invalid(&["--max-txn-ops=0"]).contains("--max-txn-ops"));
    assert!(invalid(&["--bcrypt-cost=3"]).contains("--bcrypt-cost"));
}

#[test]
fn version_text_names_the_api() {
    let v = version_text();
    assert!(v.starts_with("mnemo Version: "));
    assert!(v.contains("etcd API Version: 3.4\n"));
}
