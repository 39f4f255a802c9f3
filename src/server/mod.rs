//! Turns client requests into raft proposals and reads.

use crate::config::Config;
use crate::error::Result;

/// Runs the server until SIGTERM or SIGINT.
///
/// TODO(server): placeholder so that the binary, its flags and the test harness can be
/// built before the server exists; it binds nothing and only waits for a signal. The real
/// server must keep two things the harness relies on: the signal handlers are installed
/// before it logs "ready to serve client requests" (etcd's line) at info level, and a
/// signal makes `run` return `Ok(())` (exit code 0).
pub async fn run(config: Config) -> Result<()> {
    let signal = shutdown_signal()?;
    tracing::info!(
        name = %config.name,
        member_id = %format!("{:x}", config.member_id()),
        cluster_id = %format!("{:x}", config.cluster_id()),
        "ready to serve client requests"
    );
    signal.await;
    tracing::info!("received a shutdown signal, stopping");
    Ok(())
}

/// Installs SIGTERM and SIGINT handlers now; the future completes at the first signal.
pub fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let install = |kind| {
        signal(kind).map_err(|e| crate::error::Error::Internal(format!("signal handler: {e}")))
    };
    let mut term = install(SignalKind::terminate())?;
    let mut int = install(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}
