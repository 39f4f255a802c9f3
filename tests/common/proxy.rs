//! A TCP proxy that injects network faults between a client and a target, without root:
//! point a client (or a peer, by advertising the proxy's address) at [`FaultProxy::addr`]
//! instead of the target.
//!
//! ```ignore
//! let proxy = FaultProxy::start(member.client_addr());
//! let kv = KvClient::connect(proxy.url()).await?;
//! proxy.blackhole(Direction::Both);                 // requests hang
//! proxy.delay(Direction::Forward, ms(200));         // requests arrive 200 ms late
//! proxy.drop_all(Direction::Backward);              // answers are lost
//! proxy.reset();                                    // every connection closes now
//! proxy.set_down(true);                             // and new ones close at once
//! proxy.heal();                                     // all back to normal
//! ```
//!
//! Each direction of each connection has a fault, changeable while running: `Forward` is
//! client to target, `Backward` target to client.
//! - `Pass`: bytes are forwarded as read.
//! - `Drop`: bytes are read and thrown away (a one-way partition; the sender sees its
//!   writes succeed).
//! - `Delay(d)`: each chunk is forwarded `d` after it was read, in order.
//! - `Blackhole`: nothing is read or forwarded; the sender's buffers fill and its writes
//!   stall, and nothing is closed. When the direction passes again, what was held
//!   (in the socket buffers) flows on.
//!
//! `reset()` closes all open connections with a TCP reset, and `set_down(true)` also
//! closes every new one as soon as it is accepted, until `set_down(false)` (a client may
//! then see its connect fail, or the connection reset right after). A connection whose
//! target refuses it is closed the same way. "Open" means accepted by the proxy: a
//! connection the kernel completed but the proxy has not accepted yet counts as new.
//!
//! All proxies of a test process share one background tokio runtime on threads of its
//! own, so a proxy works the same from synchronous tests and from `#[tokio::test]`, and
//! toggling a fault is a single store into a `watch` channel. Dropping the proxy closes
//! its port and its connections.

#![allow(dead_code)]

use std::io;
use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// Which way the bytes go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Client to target.
    Forward,
    /// Target to client.
    Backward,
    Both,
}

/// What happens to one direction's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Pass,
    Drop,
    Delay(Duration),
    Blackhole,
}

/// The settings all tasks of one proxy watch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Control {
    forward: Fault,
    backward: Fault,
    down: bool,
    /// Incremented by each reset; a connection closes when it changes.
    epoch: u64,
    /// The proxy was dropped.
    closed: bool,
}

impl Control {
    fn fault(&self, dir: Direction) -> Fault {
        match dir {
            Direction::Forward | Direction::Both => self.forward,
            Direction::Backward => self.backward,
        }
    }
}

/// How long the proxy waits to connect to the target before closing the client's
/// connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A running proxy; see the module documentation.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    target: SocketAddr,
    control: watch::Sender<Control>,
    open: Arc<AtomicUsize>,
}

/// The runtime shared by all proxies of the process; never shut down.
fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("fault-proxy")
            .enable_all()
            .build()
            .expect("cannot build the proxy runtime")
    })
}

impl FaultProxy {
    /// Listens on a free port of 127.0.0.1 and forwards each connection to `target`,
    /// all directions passing.
    pub fn start(target: SocketAddr) -> FaultProxy {
        let listener = super::bind_unclaimed();
        listener
            .set_nonblocking(true)
            .expect("cannot make the proxy's listener non-blocking");
        let addr = listener
            .local_addr()
            .expect("the proxy's listener has an address");
        let (control, watch) = watch::channel(Control {
            forward: Fault::Pass,
            backward: Fault::Pass,
            down: false,
            epoch: 0,
            closed: false,
        });
        let open = Arc::new(AtomicUsize::new(0));
        runtime().spawn(accept_loop(listener, target, watch, Arc::clone(&open)));
        FaultProxy {
            addr,
            target,
            control,
            open,
        }
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://` and the address, for gRPC clients and peer URLs.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn target(&self) -> SocketAddr {
        self.target
    }

    /// Sets the fault of one direction or both, for open and future connections.
    pub fn set(&self, dir: Direction, fault: Fault) {
        self.control.send_modify(|c| {
            if matches!(dir, Direction::Forward | Direction::Both) {
                c.forward = fault;
            }
            if matches!(dir, Direction::Backward | Direction::Both) {
                c.backward = fault;
            }
        });
    }

    /// The fault of one direction (`Both` answers for `Forward`).
    pub fn fault(&self, dir: Direction) -> Fault {
        self.control.borrow().fault(dir)
    }

    pub fn pass(&self, dir: Direction) {
        self.set(dir, Fault::Pass);
    }

    pub fn drop_all(&self, dir: Direction) {
        self.set(dir, Fault::Drop);
    }

    pub fn delay(&self, dir: Direction, delay: Duration) {
        self.set(dir, Fault::Delay(delay));
    }

    pub fn blackhole(&self, dir: Direction) {
        self.set(dir, Fault::Blackhole);
    }

    /// Closes every open connection (new ones are accepted as usual unless down).
    pub fn reset(&self) {
        self.control.send_modify(|c| c.epoch += 1);
    }

    /// Down: closes every open connection, and each new one as soon as it is accepted.
    pub fn set_down(&self, down: bool) {
        self.control.send_modify(|c| {
            if down {
                c.epoch += 1;
            }
            c.down = down;
        });
    }

    /// Both directions pass and the proxy is up; open connections stay open.
    pub fn heal(&self) {
        self.control.send_modify(|c| {
            c.forward = Fault::Pass;
            c.backward = Fault::Pass;
            c.down = false;
        });
    }

    /// How many client connections are open through the proxy.
    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        // The tasks also stop when the sender is gone; this says so explicitly.
        self.control.send_modify(|c| c.closed = true);
    }
}

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionAborted, "the proxy was dropped")
}

async fn accept_loop(
    listener: StdTcpListener,
    target: SocketAddr,
    mut watch: watch::Receiver<Control>,
    open: Arc<AtomicUsize>,
) {
    let Ok(listener) = TcpListener::from_std(listener) else {
        return;
    };
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((client, _)) = accepted else {
                    // Out of file descriptors or the like: try again shortly.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let control = *watch.borrow();
                if control.down {
                    abort(&client);
                    continue;
                }
                tokio::spawn(connection(client, target, watch.clone(), control.epoch, Arc::clone(&open)));
            }
            changed = watch.changed() => {
                if changed.is_err() || watch.borrow().closed {
                    return;
                }
            }
        }
    }
}

/// Closes with a TCP reset when the stream is dropped.
fn abort(stream: &TcpStream) {
    let _ = stream.set_zero_linger();
}

/// Decrements the open-connection count when the connection task ends.
struct OpenGuard(Arc<AtomicUsize>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn connection(
    mut client: TcpStream,
    target: SocketAddr,
    mut watch: watch::Receiver<Control>,
    epoch: u64,
    open: Arc<AtomicUsize>,
) {
    open.fetch_add(1, Ordering::SeqCst);
    let _guard = OpenGuard(open);
    let _ = client.set_nodelay(true);
    let connected = tokio::select! {
        c = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target)) => c.ok().and_then(Result::ok),
        () = reset(&mut watch, epoch) => None,
    };
    let Some(mut server) = connected else {
        abort(&client);
        return;
    };
    let _ = server.set_nodelay(true);
    let aborted = {
        let (client_read, client_write) = client.split();
        let (server_read, server_write) = server.split();
        let forward = pump(client_read, server_write, Direction::Forward, watch.clone());
        let backward = pump(
            server_read,
            client_write,
            Direction::Backward,
            watch.clone(),
        );
        tokio::select! {
            done = async { tokio::try_join!(forward, backward) } => done.is_err(),
            () = reset(&mut watch, epoch) => true,
        }
    };
    if aborted {
        abort(&client);
        abort(&server);
    }
}

/// Returns when the connection opened at `epoch` must close.
async fn reset(watch: &mut watch::Receiver<Control>, epoch: u64) {
    loop {
        {
            let c = watch.borrow_and_update();
            if c.closed || c.epoch != epoch {
                return;
            }
        }
        if watch.changed().await.is_err() {
            return;
        }
    }
}

/// Waits while `dir` is blackholed.
async fn while_blackholed(watch: &mut watch::Receiver<Control>, dir: Direction) -> io::Result<()> {
    loop {
        {
            let c = watch.borrow_and_update();
            if c.closed {
                return Err(closed());
            }
            if c.fault(dir) != Fault::Blackhole {
                return Ok(());
            }
        }
        watch.changed().await.map_err(|_| closed())?;
    }
}

/// Forwards one direction until the end of the stream (passed on as a shutdown of the
/// write side) or an error. Chunks go through a queue with the time each may be
/// written, so that a delay adds latency without limiting throughput.
async fn pump(
    mut from: ReadHalf<'_>,
    mut to: WriteHalf<'_>,
    dir: Direction,
    watch: watch::Receiver<Control>,
) -> io::Result<()> {
    let (queue, mut queued) = mpsc::unbounded_channel::<(Instant, Option<Vec<u8>>)>();
    let mut read_watch = watch.clone();
    let mut write_watch = watch;
    let reading = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            while_blackholed(&mut read_watch, dir).await?;
            let n = tokio::select! {
                n = from.read(&mut buf) => n?,
                changed = read_watch.changed() => {
                    changed.map_err(|_| closed())?;
                    continue;
                }
            };
            let now = Instant::now();
            let at = match read_watch.borrow().fault(dir) {
                Fault::Drop if n > 0 => continue,
                Fault::Delay(d) => now + d,
                // A chunk read just before a blackhole is held by the writer.
                Fault::Pass | Fault::Drop | Fault::Blackhole => now,
            };
            let chunk = (n > 0).then(|| buf[..n].to_vec());
            let end = chunk.is_none();
            if queue.send((at, chunk)).is_err() || end {
                return Ok::<(), io::Error>(());
            }
        }
    };
    let writing = async move {
        while let Some((at, chunk)) = queued.recv().await {
            tokio::time::sleep_until(at).await;
            while_blackholed(&mut write_watch, dir).await?;
            match chunk {
                Some(bytes) => to.write_all(&bytes).await?,
                None => {
                    to.shutdown().await?;
                    return Ok(());
                }
            }
        }
        Ok(())
    };
    tokio::try_join!(reading, writing).map(|_| ())
}
