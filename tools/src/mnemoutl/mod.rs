//! `mnemoutl`: offline tools for a stopped member's data directory or a snapshot file.
//!
//! One module per subcommand, as bbolt's CLI has one file per command. Every command
//! builds a [`Report`]: the same facts as text for people and as JSON (`--json`) for
//! programs. Nothing read from the files is trusted: a damaged or truncated file gives
//! a report or an error naming the page, segment or record and what is wrong, never a
//! panic.
//!
//! Exit codes: 0 success; 1 an error, or problems found (`check`); 2 a bad command line.

mod check;
mod defrag;
mod info;
mod keys;
mod map;
mod page;
mod pages;
mod snapshot;
mod stats;
mod tables;
mod target;
mod wal;

use std::fmt;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "mnemoutl",
    version,
    about = "Inspect, check, defragment and restore mnemo page files offline",
    long_about = "Inspect, check, defragment and restore mnemo page files offline.\n\n\
        PATH is a data directory (--data-dir of a stopped member: its member/db is \
        used), a member directory, or a page file such as a snapshot saved with \
        `etcdctl snapshot save`. A data directory locked by a running member is \
        refused."
)]
pub struct Cli {
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Look inside a page file or a WAL.
    #[command(subcommand)]
    Inspect(Inspect),
    /// Walk the whole page file and the MVCC history; exit 1 if anything is wrong.
    Check {
        /// Data directory, member directory or page file.
        path: PathBuf,
    },
    /// Rewrite the page file compactly into a new file and swap it in atomically.
    Defrag {
        /// Data directory, member directory or page file.
        path: PathBuf,
    },
    /// Draw the page file as an SVG picture: one cell per page, coloured by what it holds.
    Map {
        /// Data directory, member directory or page file.
        path: PathBuf,
        /// Where to write the SVG.
        #[arg(long, short, default_value = "mnemo-map.svg")]
        output: PathBuf,
    },
    /// Snapshot files saved with `etcdctl snapshot save`.
    #[command(subcommand)]
    Snapshot(snapshot::SnapshotCommand),
}

#[derive(Debug, Subcommand)]
pub enum Inspect {
    /// Header, commit slots, transaction ids, high-water mark, file size, free pages.
    Info { path: PathBuf },
    /// One line per page: id, kind, tree, items, overflow values, fill.
    Pages { path: PathBuf },
    /// One page decoded; `--raw` adds a hex dump.
    Page {
        path: PathBuf,
        /// Page number.
        id: u64,
        /// Also print the page's bytes in hex.
        #[arg(long)]
        raw: bool,
    },
    /// Tables with entry counts and pages.
    Tables { path: PathBuf },
    /// Entries of one table; the MVCC tables (kv, meta, lease, alarm) are decoded.
    Keys {
        path: PathBuf,
        /// Table name (`inspect tables` lists them).
        table: String,
        /// Print at most this many entries (0: all).
        #[arg(long, default_value_t = 0)]
        limit: usize,
    },
    /// Tree depth, fill factor and space by table.
    Stats { path: PathBuf },
    /// WAL segments and records: indexes, terms, entry types, checksums.
    Wal {
        /// Data directory, member directory or WAL directory.
        path: PathBuf,
        /// One line per record, not just per segment.
        #[arg(long)]
        records: bool,
    },
}

/// What a command found, as text and as JSON.
#[derive(Debug)]
pub struct Report {
    pub text: String,
    pub json: serde_json::Value,
    /// False when the command found problems (its exit code is then 1).
    pub ok: bool,
}

impl Report {
    pub fn ok(text: String, json: serde_json::Value) -> Report {
        Report {
            text,
            json,
            ok: true,
        }
    }
}

/// Why a command could not run.
#[derive(Debug)]
pub struct ToolError(pub String);

impl fmt::Display for ToolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ToolError {}

impl From<mnemo_storage::StorageError> for ToolError {
    fn from(e: mnemo_storage::StorageError) -> Self {
        ToolError(e.to_string())
    }
}

impl From<mnemo::error::Error> for ToolError {
    fn from(e: mnemo::error::Error) -> Self {
        ToolError(e.to_string())
    }
}

pub type Result<T> = std::result::Result<T, ToolError>;

/// An error with its context: `what: cause`.
pub(crate) fn io_error(what: impl fmt::Display, e: std::io::Error) -> ToolError {
    ToolError(format!("{what}: {e}"))
}

/// Runs one command.
pub fn run(cli: &Cli) -> Result<Report> {
    match &cli.command {
        Command::Inspect(i) => match i {
            Inspect::Info { path } => info::run(path),
            Inspect::Pages { path } => pages::run(path),
            Inspect::Page { path, id, raw } => page::run(path, *id, *raw),
            Inspect::Tables { path } => tables::run(path),
            Inspect::Keys { path, table, limit } => keys::run(path, table, *limit),
            Inspect::Stats { path } => stats::run(path),
            Inspect::Wal { path, records } => wal::run(path, *records),
        },
        Command::Check { path } => check::run(path),
        Command::Defrag { path } => defrag::run(path),
        Command::Map { path, output } => map::run(path, output),
        Command::Snapshot(s) => snapshot::run(s),
    }
}

/// Runs the command line `args` (the program name first), printing to stdout/stderr.
/// Returns the exit code.
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
    match run(&cli) {
        Ok(report) => {
            if cli.json {
                println!("{}", report.json);
            } else {
                print!("{}", report.text);
            }
            if report.ok {
                0
            } else {
                1
            }
        }
        Err(e) => {
            eprintln!("mnemoutl: {e}");
            1
        }
    }
}

/// Bytes as text: printable ASCII as is, everything else (and `\`) escaped as `\xNN`,
/// so any key prints on one line and reads back unambiguously.
pub fn escape(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len());
    for &b in bytes {
        if (0x20..0x7f).contains(&b) && b != b'\\' {
            s.push(b as char);
        } else {
            s.push_str(&format!("\\x{b:02x}"));
        }
    }
    s
}

/// A byte count for people: `1.5 MiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_is_one_line_and_unambiguous() {
        assert_eq!(escape(b"foo/bar"), "foo/bar");
        assert_eq!(escape(b"a\\b\n\x00\xff"), "a\\x5cb\\x0a\\x00\\xff");
    }

    #[test]
    fn human_bytes_units() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
    }

    #[test]
    fn bad_command_lines_exit_2() {
        assert_eq!(main_with(["mnemoutl", "frobnicate"]), 2);
        assert_eq!(
            main_with(["mnemoutl", "inspect", "page", "x", "not-a-number"]),
            2
        );
        assert_eq!(main_with(["mnemoutl", "--help"]), 0);
    }
}
