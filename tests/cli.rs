//! The `mnemo` binary's command line: etcd's flags, exit codes, environment variables,
//! `--help` and `--version`, and a clean stop on SIGTERM.

#![allow(clippy::unwrap_used)]

mod common;

use std::process::Output;
use std::time::Duration;

use common::{mnemo_command, MnemoProcess};

/// Runs the binary to completion with a data directory inside a fresh temporary
/// directory; returns its output and whether the data directory exists afterwards.
fn run(args: &[&str], env: &[(&str, &str)]) -> (Output, bool) {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let out = mnemo_command()
        .arg(format!("--data-dir={}", data_dir.display()))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (out, data_dir.exists())
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Asserts exit code 2, a message on stderr containing `needle`, and no data directory.
fn assert_refused(args: &[&str], env: &[(&str, &str)], needle: &str) {
    let (out, data_dir_exists) = run(args, env);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{args:?} {env:?}: {err}");
    assert!(
        err.contains(needle),
        "{args:?} {env:?}: {needle:?} not in:\n{err}"
    );
    assert!(!data_dir_exists, "{args:?}: the data directory was created");
    assert!(stdout(&out).is_empty(), "{args:?}: wrote to stdout");
}

#[test]
fn unknown_flags_exit_2_and_leave_no_data_dir() {
    assert_refused(&["--bogus"], &[], "--bogus");
    assert_refused(&["-bogus=1"], &[], "--bogus");
    assert_refused(&["stray-argument"], &[], "stray-argument");
}

#[test]
fn bad_values_exit_2() {
    assert_refused(
        &["--listen-client-urls", "foo"],
        &[],
        "URL scheme must be http or https: foo",
    );
    assert_refused(
        &["--listen-peer-urls=http://127.0.0.1"],
        &[],
        r#"URL address does not have the form "host:port": http://127.0.0.1"#,
    );
    assert_refused(
        &["--advertise-client-urls=http://127.0.0.1:2379/v3"],
        &[],
        "URL must not contain a path",
    );
    assert_refused(&["--initial-cluster-state=old"], &[], "old");
    assert_refused(&["--auto-compaction-mode=daily"], &[], "daily");
    assert_refused(&["--log-level=loud"], &[], "loud");
    assert_refused(&["--heartbeat-interval=abc"], &[], "abc");
    assert_refused(&["--enable-pprof", "false"], &[], "false");
    assert_refused(
        &["--auto-compaction-retention=abc"],
        &[],
        "error parsing CompactionRetention",
    );
}

#[test]
fn invalid_combinations_exit_2_with_etcds_messages() {
    assert_refused(
        &["--heartbeat-interval=300"],
        &[],
        "--election-timeout[1000ms] should be at least as 5 times as --heartbeat-interval[300ms]",
    );
    assert_refused(
        &["--election-timeout=60000", "--heartbeat-interval=500"],
        &[],
        "is too long, and should be set less than 50000ms",
    );
    assert_refused(
        &["--listen-client-urls=http://127.0.0.1:1"],
        &[],
        "--advertise-client-urls is required when --listen-client-urls is set explicitly",
    );
    assert_refused(
        &["--name=m1", "--initial-cluster=m2=http://127.0.0.1:2380"],
        &[],
        r#"couldn't find local name "m1" in the initial cluster configuration"#,
    );
    assert_refused(
        &["--force-new-cluster"],
        &[],
        "--force-new-cluster is not supported by mnemo",
    );
    assert_refused(
        &["--config-file=/etc/etcd/etcd.conf.yml"],
        &[],
        "--config-file is not supported by mnemo",
    );
}

#[test]
fn version_prints_mnemo_and_the_etcd_api_version() {
    let (out, data_dir_exists) = run(&["--version"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.starts_with(&format!("mnemo Version: {}\n", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
    assert!(text.contains("etcd API Version: 3.4\n"), "{text}");
    assert!(!data_dir_exists);
}

#[test]
fn help_lists_etcds_flags() {
    let (out, _) = run(&["--help"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    for flag in [
        "--name",
        "--data-dir",
        "--listen-client-urls",
        "--advertise-client-urls",
        "--listen-peer-urls",
        "--initial-advertise-peer-urls",
        "--initial-cluster ",
        "--initial-cluster-state",
        "--initial-cluster-token",
        "--heartbeat-interval",
        "--election-timeout",
        "--snapshot-count",
        "--quota-backend-bytes",
        "--auto-compaction-mode",
        "--auto-compaction-retention",
        "--max-request-bytes",
        "--max-txn-ops",
        "--log-level",
        "--cert-file",
        "--peer-trusted-ca-file",
        "MNEMO_",
    ] {
        assert!(
            text.contains(flag),
            "--help does not mention {flag}:\n{text}"
        );
    }
    let (short, _) = run(&["-h"], &[]);
    assert_eq!(short.status.code(), Some(0));
}

#[test]
fn environment_variables_are_read_and_flags_win() {
    // Honoured: a value that fails validation names the variable or shows the value.
    assert_refused(
        &[],
        &[("MNEMO_HEARTBEAT_INTERVAL", "abc")],
        r#"invalid value "abc" for MNEMO_HEARTBEAT_INTERVAL"#,
    );
    assert_refused(
        &[],
        &[("MNEMO_ELECTION_TIMEOUT", "200")],
        "--election-timeout[200ms] should be at least as 5 times",
    );
    assert_refused(
        &[],
        &[("ETCD_ELECTION_TIMEOUT", "300")],
        "--election-timeout[300ms]",
    );
    // MNEMO_ wins over ETCD_.
    assert_refused(
        &[],
        &[
            ("MNEMO_ELECTION_TIMEOUT", "400"),
            ("ETCD_ELECTION_TIMEOUT", "300"),
        ],
        "--election-timeout[400ms]",
    );
    // A flag shadows the bad variable, so the server starts.
    let mut m = MnemoProcess::spawn(
        &["--heartbeat-interval=100"],
        &[("MNEMO_HEARTBEAT_INTERVAL", "abc")],
    );
    m.wait_for_log("ready to serve client requests", Duration::from_secs(30));
    assert!(
        m.stderr().contains("MNEMO_HEARTBEAT_INTERVAL is shadowed"),
        "{}",
        m.stderr()
    );
    let status = m.terminate();
    assert_eq!(status.code(), Some(0), "{}", m.stderr());
}

#[test]
fn sigterm_stops_the_server_with_exit_code_0() {
    let mut m = MnemoProcess::spawn(&["--enable-pprof"], &[]);
    m.wait_for_log("ready to serve client requests", Duration::from_secs(30));
    assert!(
        m.stderr()
            .contains("--enable-pprof is accepted for etcd compatibility and ignored"),
        "{}",
        m.stderr()
    );
    let status = m.terminate();
    assert_eq!(status.code(), Some(0), "{}", m.stderr());
}

/// The harness end to end: start (ready = Maintenance.Status answers), SIGKILL, restart
/// on the same data directory and ports, SIGTERM.
#[tokio::test]
async fn harness_starts_kills_restarts_and_terminates() {
    use mnemo_proto::etcdserverpb::StatusRequest;

    let mut m = MnemoProcess::start(&[]);
    let status = m
        .maintenance()
        .await
        .status(StatusRequest {})
        .await
        .unwrap()
        .into_inner();
    let header = status.header.unwrap();
    assert_eq!(header.member_id, status.leader);
    m.kill();
    m.restart();
    m.maintenance()
        .await
        .status(StatusRequest {})
        .await
        .unwrap();
    assert_eq!(m.terminate().code(), Some(0), "{}", m.stderr());
}

/// `--experimental-wal-io` picks the WAL's I/O path, and the start-up line says which.
#[test]
fn wal_io_path_is_chosen_by_flag_and_reported() {
    let mut m = MnemoProcess::spawn(&["--experimental-wal-io=pwrite"], &[]);
    m.wait_for_log("wal_io=Pwrite", std::time::Duration::from_secs(30));
    assert_eq!(m.terminate().code(), Some(0), "{}", m.stderr());

    let out = mnemo_command()
        .args(["--experimental-wal-io=mmap", "--data-dir"])
        .arg(tempfile::tempdir().unwrap().path().join("never"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("mmap"));
}
