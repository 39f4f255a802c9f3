//! The harness for integration tests that run the real `mnemo` binary.
//!
//! ```ignore
//! mod common;
//! let mut m = common::MnemoProcess::start(&[]);       // free ports, temp data dir, ready
//! let mut kv = m.kv().await;                             // tonic client on the client URL
//! m.kill();                                              // SIGKILL
//! m.restart();                                           // same data dir and ports
//! assert!(m.terminate().success());                      // SIGTERM, exit code 0
//! ```
//!
//! Each process gets its own ports on 127.0.0.1 and data directory (a `TempDir` removed
//! on drop); environment variables `MNEMO_*` and `ETCD_*` of the test process are not
//! passed on. Its stderr is captured (`stderr()`), and copied to the test's stderr when
//! `MNEMO_TEST_ECHO=1`. A process still running when dropped is killed.
//! `MNEMO_TEST_SERVER_BIN` replaces the binary (see [`mnemo_bin`]).

#![allow(dead_code, clippy::unwrap_used)]

pub mod certs;
pub mod history;
pub mod linearizability;
pub mod proxy;
pub mod workload;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mnemo_proto::etcdserverpb::auth_client::AuthClient;
use mnemo_proto::etcdserverpb::cluster_client::ClusterClient;
use mnemo_proto::etcdserverpb::kv_client::KvClient;
use mnemo_proto::etcdserverpb::lease_client::LeaseClient;
use mnemo_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use mnemo_proto::etcdserverpb::watch_client::WatchClient;
use mnemo_proto::etcdserverpb::StatusRequest;
use mnemo_proto::v3electionpb::election_client::ElectionClient;
use mnemo_proto::v3lockpb::lock_client::LockClient;
use tempfile::TempDir;
use tonic::transport::{Channel, Endpoint};

/// How long `start`/`restart` wait for the client port to answer Maintenance.Status.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `terminate` waits for the process to exit after SIGTERM.
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(30);

/// The path of the binary under test: this package's `mnemo`, or the binary named by
/// `MNEMO_TEST_SERVER_BIN` (tests that stick to etcd's flags and API can run against
/// etcd itself: `MNEMO_TEST_SERVER_BIN=$(command -v etcd) cargo test …`).
pub fn mnemo_bin() -> String {
    std::env::var("MNEMO_TEST_SERVER_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_mnemo").to_string())
}

/// A `Command` for the binary with the test process's `MNEMO_*`/`ETCD_*` variables
/// removed, for tests that check flag handling without the harness's defaults.
pub fn mnemo_command() -> Command {
    let mut cmd = Command::new(mnemo_bin());
    for (key, _) in std::env::vars_os() {
        let key_text = key.to_string_lossy();
        if key_text.starts_with("MNEMO_") || key_text.starts_with("ETCD_") {
            cmd.env_remove(&key);
        }
    }
    cmd.env_remove("RUST_LOG");
    cmd
}

/// A free TCP port on 127.0.0.1 (free when asked; another process may take it later),
/// never one this test process handed out before: the kernel may offer a port again as
/// soon as the probe closes, which once gave a member the same client and peer port.
pub fn free_port() -> u16 {
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("no free port on 127.0.0.1");
        if claim_port(port) {
            return port;
        }
    }
}

/// Records `port` as taken by this test process; `false` if it already was (by
/// [`free_port`] or by a listener that kept its port, such as a fault proxy's).
pub fn claim_port(port: u16) -> bool {
    static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    HANDED_OUT
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(port)
}

/// A listener on a free port of 127.0.0.1 that no [`free_port`] caller was given (they
/// bind later, so the kernel may offer their port to this listener first).
pub fn bind_unclaimed() -> TcpListener {
    let mut refused = Vec::new();
    loop {
        let l = TcpListener::bind("127.0.0.1:0").expect("no free port on 127.0.0.1");
        let port = l
            .local_addr()
            .expect("a bound listener has an address")
            .port();
        if claim_port(port) {
            return l;
        }
        // Held until a port is found, so the kernel does not offer this one again.
        refused.push(l);
    }
}

/// The ports and URLs of one member.
#[derive(Debug, Clone)]
pub struct MemberAddrs {
    pub name: String,
    pub client_port: u16,
    pub peer_port: u16,
    /// The peer URL is https.
    pub peer_tls: bool,
}

impl MemberAddrs {
    pub fn new(name: &str) -> MemberAddrs {
        MemberAddrs {
            name: name.to_string(),
            client_port: free_port(),
            peer_port: free_port(),
            peer_tls: false,
        }
    }

    /// A member whose peer URL is https.
    pub fn with_peer_tls(name: &str) -> MemberAddrs {
        MemberAddrs {
            peer_tls: true,
            ..MemberAddrs::new(name)
        }
    }

    pub fn client_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    pub fn peer_url(&self) -> String {
        let scheme = if self.peer_tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.peer_port)
    }
}

/// One running (or stopped) `mnemo` process.
#[derive(Debug)]
pub struct MnemoProcess {
    pub addrs: MemberAddrs,
    /// `--initial-cluster`, `name=peer-url,…`.
    initial_cluster: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    dir: TempDir,
    child: Option<Child>,
    stderr: Arc<Mutex<String>>,
}

impl MnemoProcess {
    /// Starts a single member with `args` after the harness's own flags (a later flag
    /// wins, so `args` may override any of them) and waits until it serves.
    pub fn start(args: &[&str]) -> MnemoProcess {
        let mut m = MnemoProcess::spawn(args, &[]);
        m.wait_ready();
        m
    }

    /// Starts a single member without waiting, with extra environment variables.
    pub fn spawn(args: &[&str], env: &[(&str, &str)]) -> MnemoProcess {
        let addrs = MemberAddrs::new("default");
        let initial_cluster = format!("{}={}", addrs.name, addrs.peer_url());
        MnemoProcess::spawn_member(addrs, initial_cluster, args, env)
    }

    /// Starts one member of a cluster described by `initial_cluster`, without waiting.
    pub fn spawn_member(
        addrs: MemberAddrs,
        initial_cluster: String,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> MnemoProcess {
        let dir = tempfile::Builder::new()
            .prefix("mnemo-test-")
            .tempdir()
            .expect("cannot create a temporary directory");
        let mut m = MnemoProcess {
            addrs,
            initial_cluster,
            args: args.iter().map(|s| s.to_string()).collect(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            dir,
            child: None,
            stderr: Arc::new(Mutex::new(String::new())),
        };
        m.spawn_child();
        m
    }

    /// The data directory (inside a temporary directory; not created by the harness).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The temporary directory holding the data directory, for other files of a test.
    pub fn scratch_dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn client_url(&self) -> String {
        self.addrs.client_url()
    }

    pub fn client_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.addrs.client_port))
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Everything the process (and its earlier runs) wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// The flags the harness passes, followed by the test's.
    pub fn command_line(&self) -> Vec<String> {
        let a = &self.addrs;
        let mut line = vec![
            format!("--name={}", a.name),
            format!("--data-dir={}", self.data_dir().display()),
            format!("--listen-client-urls={}", a.client_url()),
            format!("--advertise-client-urls={}", a.client_url()),
            format!("--listen-peer-urls={}", a.peer_url()),
            format!("--initial-advertise-peer-urls={}", a.peer_url()),
            format!("--initial-cluster={}", self.initial_cluster),
            "--log-level=info".to_string(),
        ];
        line.extend(self.args.iter().cloned());
        line
    }

    fn spawn_child(&mut self) {
        assert!(self.child.is_none(), "mnemo is already running");
        let mut cmd = mnemo_command();
        cmd.args(self.command_line())
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("cannot start the mnemo binary");
        let pipe = child.stderr.take().expect("stderr is piped");
        let sink = Arc::clone(&self.stderr);
        let echo = std::env::var("MNEMO_TEST_ECHO").is_ok_and(|v| v == "1");
        let tag = format!("[{} pid {}] ", self.addrs.name, child.id());
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                if echo {
                    eprintln!("{tag}{line}");
                }
                let mut sink = sink.lock().unwrap();
                sink.push_str(&line);
                sink.push('\n');
            }
        });
        self.child = Some(child);
    }

    /// The exit status if the process has exited (and reaps it).
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        match child.try_wait().expect("cannot poll the mnemo process") {
            Some(status) => {
                self.child = None;
                Some(status)
            }
            None => None,
        }
    }

    fn fail(&self, what: &str) -> ! {
        panic!(
            "{what}\n--- mnemo command line: {:?}\n--- mnemo stderr:\n{}",
            self.command_line(),
            self.stderr()
        );
    }

    /// Waits until the client port answers Maintenance.Status; panics with the captured
    /// stderr if the process exits or `READY_TIMEOUT` passes first.
    pub fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        let addr = self.client_addr();
        let url = self.client_url();
        loop {
            if let Some(status) = self.try_wait() {
                self.fail(&format!("mnemo exited before serving: {status}"));
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
                && status_answers(&url)
            {
                return;
            }
            if Instant::now() > deadline {
                self.fail(&format!(
                    "mnemo did not serve {url} within {READY_TIMEOUT:?}"
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until stderr contains `needle`; panics on exit or timeout.
    pub fn wait_for_log(&mut self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.stderr().contains(needle) {
            if let Some(status) = self.try_wait() {
                // The reader thread may still be draining the pipe.
                std::thread::sleep(Duration::from_millis(100));
                if self.stderr().contains(needle) {
                    return;
                }
                self.fail(&format!(
                    "mnemo exited ({status}) before logging {needle:?}"
                ));
            }
            if Instant::now() > deadline {
                self.fail(&format!("mnemo did not log {needle:?} within {timeout:?}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL, then reap. Does nothing if the process is not running.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then wait for the exit; panics (after SIGKILL) if it takes longer than
    /// `EXIT_TIMEOUT`.
    pub fn terminate(&mut self) -> ExitStatus {
        let pid = self.pid().expect("mnemo is not running");
        let sent = Command::new("kill")
            .args(["-s", "TERM", &pid.to_string()])
            .status()
            .expect("cannot run kill(1)");
        assert!(sent.success(), "kill -s TERM {pid} failed");
        let deadline = Instant::now() + EXIT_TIMEOUT;
        loop {
            if let Some(status) = self.try_wait() {
                // Let the reader thread take the last lines.
                std::thread::sleep(Duration::from_millis(50));
                return status;
            }
            if Instant::now() > deadline {
                self.kill();
                self.fail(&format!(
                    "mnemo did not exit within {EXIT_TIMEOUT:?} of SIGTERM"
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the process again on the same data directory, ports and flags (terminating
    /// it first if it runs), and waits until it serves.
    pub fn restart(&mut self) {
        if self.child.is_some() {
            self.terminate();
        }
        self.stderr.lock().unwrap().push_str("--- restart ---\n");
        self.spawn_child();
        self.wait_ready();
    }

    /// A channel to the client URL.
    pub async fn channel(&self) -> Channel {
        Endpoint::from_shared(self.client_url())
            .expect("the client URL is valid")
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
            .unwrap_or_else(|e| self.fail(&format!("cannot connect to {}: {e}", self.client_url())))
    }

    pub async fn kv(&self) -> KvClient<Channel> {
        KvClient::new(self.channel().await)
    }

    pub async fn watch(&self) -> WatchClient<Channel> {
        WatchClient::new(self.channel().await)
    }

    pub async fn lease(&self) -> LeaseClient<Channel> {
        LeaseClient::new(self.channel().await)
    }

    pub async fn maintenance(&self) -> MaintenanceClient<Channel> {
        MaintenanceClient::new(self.channel().await)
    }

    pub async fn cluster(&self) -> ClusterClient<Channel> {
        ClusterClient::new(self.channel().await)
    }

    pub async fn auth(&self) -> AuthClient<Channel> {
        AuthClient::new(self.channel().await)
    }

    pub async fn lock(&self) -> LockClient<Channel> {
        LockClient::new(self.channel().await)
    }

    pub async fn election(&self) -> ElectionClient<Channel> {
        ElectionClient::new(self.channel().await)
    }
}

impl Drop for MnemoProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Whether Maintenance.Status at `url` answers. Runs on a thread of its own with its own
/// runtime, so that it works from synchronous tests and from inside `#[tokio::test]`.
fn status_answers(url: &str) -> bool {
    let url = url.to_string();
    std::thread::spawn(move || {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return false;
        };
        runtime.block_on(async move {
            let Ok(endpoint) = Endpoint::from_shared(url) else {
                return false;
            };
            let endpoint = endpoint
                .connect_timeout(Duration::from_secs(1))
                .timeout(Duration::from_secs(2));
            let Ok(channel) = endpoint.connect().await else {
                return false;
            };
            MaintenanceClient::new(channel)
                .status(StatusRequest {})
                .await
                .is_ok()
        })
    })
    .join()
    .unwrap_or(false)
}

/// An HTTP/1.1 response read by [`http_request`].
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request on a connection of its own (`Connection: close`, as curl sends a
/// single request), for the HTTP endpoints beside gRPC on the client port.
pub fn http_request(addr: SocketAddr, method: &str, path: &str) -> HttpResponse {
    http_request_with(addr, method, path, &[], None)
}

/// A POST with a body (the JSON gateway's requests), and extra headers.
pub fn http_post(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> HttpResponse {
    http_request_with(addr, "POST", path, headers, Some(body))
}

/// [`http_request`] with extra headers and a body (sent with its `Content-Length`).
pub fn http_request_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> HttpResponse {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: mnemo-test\r\nConnection: close\r\n"
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(body) = body {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    if let Some(body) = body {
        // The server may answer (and close) before reading all of a large body.
        let _ = stream.write_all(body.as_bytes());
    }
    let mut raw = Vec::new();
    if let Err(e) = stream.read_to_end(&mut raw) {
        // A server that answered before reading all of a body may reset the connection.
        assert!(
            !raw.is_empty(),
            "reading the response to {method} {path}: {e}"
        );
    }
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("no end of headers");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status = status_line.split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (k, v) = l.split_once(':').unwrap();
            (k.trim().to_ascii_lowercase(), v.trim().to_string())
        })
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    HttpResponse {
        status,
        headers,
        body,
    }
}

fn dechunk(mut rest: &str) -> String {
    let mut body = String::new();
    loop {
        let (size, after) = rest.split_once("\r\n").unwrap();
        let size = usize::from_str_radix(size.split(';').next().unwrap().trim(), 16).unwrap();
        if size == 0 {
            return body;
        }
        body.push_str(&after[..size]);
        rest = &after[size + 2..];
    }
}

/// Adds the user root with `password` and the root role, then enables auth (etcd's
/// order: auth cannot be enabled without root).
pub async fn enable_auth_with_root(auth: &mut AuthClient<Channel>, password: &str) {
    use mnemo_proto::etcdserverpb::{
        AuthEnableRequest, AuthUserAddRequest, AuthUserGrantRoleRequest,
    };
    auth.user_add(AuthUserAddRequest {
        name: "root".into(),
        password: password.into(),
        ..Default::default()
    })
    .await
    .unwrap();
    auth.user_grant_role(AuthUserGrantRoleRequest {
        user: "root".into(),
        role: "root".into(),
    })
    .await
    .unwrap();
    auth.auth_enable(AuthEnableRequest {}).await.unwrap();
}

/// A cluster of `mnemo` processes on 127.0.0.1, bootstrapped together.
#[derive(Debug)]
pub struct MnemoCluster {
    pub members: Vec<MnemoProcess>,
}

impl MnemoCluster {
    /// Starts `n` members named `m1`…`mN` with `args` each, and waits until all serve.
    pub fn start(n: usize, args: &[&str]) -> MnemoCluster {
        let addrs: Vec<MemberAddrs> = (1..=n)
            .map(|i| MemberAddrs::new(&format!("m{i}")))
            .collect();
        let mut cluster =
            MnemoCluster::spawn(addrs, |_| args.iter().map(|a| a.to_string()).collect());
        for m in &mut cluster.members {
            m.wait_ready();
        }
        cluster
    }

    /// Starts the members `addrs` describe, member `i` with `args(i)`, without waiting.
    pub fn spawn(addrs: Vec<MemberAddrs>, args: impl Fn(usize) -> Vec<String>) -> MnemoCluster {
        let initial_cluster = addrs
            .iter()
            .map(|a| format!("{}={}", a.name, a.peer_url()))
            .collect::<Vec<_>>()
            .join(",");
        let token = format!("--initial-cluster-token=mnemo-test-{}", free_port());
        let members = addrs
            .into_iter()
            .enumerate()
            .map(|(i, a)| {
                let mut member_args = vec![token.clone()];
                member_args.extend(args(i));
                let member_args: Vec<&str> = member_args.iter().map(String::as_str).collect();
                MnemoProcess::spawn_member(a, initial_cluster.clone(), &member_args, &[])
            })
            .collect();
        MnemoCluster { members }
    }

    /// The client URLs of all members, comma-separated (etcdctl's `--endpoints`).
    pub fn endpoints(&self) -> String {
        self.members
            .iter()
            .map(MnemoProcess::client_url)
            .collect::<Vec<_>>()
            .join(",")
    }
}
