//! The `mnemo` binary: etcd's flags → [`Config`] → logging → [`mnemo::server::run`].
//!
//! Exit codes: 0 after a clean shutdown (SIGTERM, SIGINT) or for `--help`/`--version`;
//! 2 for a bad command line or configuration (nothing is written to the data directory);
//! 1 when the server fails at run time.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Duration;

use mnemo::config::{Config, LogLevel, LogOutput};
use tracing_subscriber::fmt::writer::{BoxMakeWriter, MakeWriterExt};
use tracing_subscriber::EnvFilter;

/// How long blocking work may hold up the exit after `run` returned.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

fn main() -> ExitCode {
    let config = match Config::from_env_and_args() {
        Ok(config) => config,
        Err(e) => {
            e.print();
            return ExitCode::from(e.exit_code());
        }
    };
    if let Err(e) = init_logging(&config) {
        eprintln!("mnemo: error verifying flags, {e}. See 'mnemo --help'.");
        return ExitCode::from(2);
    }
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        etcd_api = mnemo::config::ETCD_API_VERSION,
        data_dir = %config.data_dir.display(),
        "starting mnemo"
    );

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("mnemo")
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("mnemo: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(mnemo::server::run(config));
    runtime.shutdown_timeout(SHUTDOWN_GRACE);
    match result {
        Ok(()) => {
            tracing::info!("mnemo stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!("mnemo failed: {e}");
            eprintln!("mnemo: {e}");
            ExitCode::from(1)
        }
    }
}

/// Plain-text log lines to `--log-outputs`, at `--log-level` for mnemo's own crates (and
/// no more than warnings from its libraries). `RUST_LOG`, when set, replaces the filter.
fn init_logging(config: &Config) -> Result<(), String> {
    let level = match config.log_level {
        LogLevel::Debug => "debug",
        LogLevel::Info => "info",
        LogLevel::Warn => "warn",
        LogLevel::Error | LogLevel::Panic | LogLevel::Fatal => "error",
    };
    let libraries = if config.log_level >= LogLevel::Error {
        "error"
    } else {
        "warn"
    };
    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.is_empty() => {
            EnvFilter::try_new(directives).map_err(|e| format!("invalid RUST_LOG: {e}"))?
        }
        _ => EnvFilter::new(format!("{libraries},mnemo={level},mnemo_storage={level}")),
    };

    let mut writer: Option<BoxMakeWriter> = None;
    let mut ansi = true;
    for output in &config.log_outputs {
        let next = match output {
            LogOutput::Stderr => {
                ansi &= std::io::stderr().is_terminal();
                BoxMakeWriter::new(std::io::stderr)
            }
            LogOutput::Stdout => {
                ansi &= std::io::stdout().is_terminal();
                BoxMakeWriter::new(std::io::stdout)
            }
            LogOutput::File(path) => {
                ansi = false;
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| format!("cannot open log output {}: {e}", path.display()))?;
                BoxMakeWriter::new(Mutex::new(file))
            }
        };
        writer = Some(match writer {
            None => next,
            Some(previous) => BoxMakeWriter::new(previous.and(next)),
        });
    }
    let writer = writer.unwrap_or_else(|| BoxMakeWriter::new(std::io::stderr));

    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(ansi)
        .try_init()
        .map_err(|e| format!("cannot set up logging: {e}"))
}
