//! A history of key-value operations as clients saw them: what each client asked, when
//! it asked (invoke), when the answer came (complete), and the answer, or `Unknown` when
//! the client got an error or a timeout and cannot tell whether the operation took effect.
//!
//! Times are nanoseconds since one `Instant` shared by all clients of a history, so that
//! real-time order between clients is meaningful. [`crate::common::linearizability`]
//! checks a history; [`crate::common::workload`] records one against a cluster.

#![allow(dead_code)]

use std::fmt;
use std::time::Instant;

/// What a client asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Put {
        key: String,
        value: String,
    },
    /// A linearizable single-key range.
    Get {
        key: String,
    },
    Delete {
        key: String,
    },
    /// A txn: if the key's value is `expected` (`None`: the key does not exist, etcd's
    /// `create_revision == 0`), put `new`.
    Cas {
        key: String,
        expected: Option<String>,
        new: String,
    },
}

impl Op {
    pub fn key(&self) -> &str {
        match self {
            Op::Put { key, .. } | Op::Get { key } | Op::Delete { key } | Op::Cas { key, .. } => key,
        }
    }

    /// Whether the operation can change the store (a `Get` cannot).
    pub fn is_write(&self) -> bool {
        !matches!(self, Op::Get { .. })
    }

    /// The value this operation may write, if any.
    pub fn written_value(&self) -> Option<&str> {
        match self {
            Op::Put { value, .. } => Some(value),
            Op::Cas { new, .. } => Some(new),
            Op::Get { .. } | Op::Delete { .. } => None,
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Put { key, value } => write!(f, "put({key}, {value})"),
            Op::Get { key } => write!(f, "get({key})"),
            Op::Delete { key } => write!(f, "delete({key})"),
            Op::Cas { key, expected, new } => {
                write!(f, "cas({key}, {}, {new})", show_value(expected.as_deref()))
            }
        }
    }
}

/// What the server answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpResult {
    Put,
    /// The value read, `None` if the key does not exist.
    Get(Option<String>),
    /// The number of keys deleted (0 or 1 for one key).
    Delete(i64),
    /// Whether the compare held and the put was done.
    Cas(bool),
}

impl fmt::Display for OpResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpResult::Put => write!(f, "ok"),
            OpResult::Get(value) => write!(f, "{}", show_value(value.as_deref())),
            OpResult::Delete(n) => write!(f, "deleted {n}"),
            OpResult::Cas(true) => write!(f, "succeeded"),
            OpResult::Cas(false) => write!(f, "failed"),
        }
    }
}

/// How an operation ended for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ok(OpResult),
    /// An error or a timeout: the operation may or may not have taken effect, at any time
    /// after its invocation.
    Unknown,
}

/// One operation of one client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    pub client: usize,
    pub op: Op,
    /// Nanoseconds since the history's start when the client sent the request.
    pub invoke: u64,
    /// Nanoseconds since the history's start when the client had the answer (or gave up).
    pub complete: u64,
    pub outcome: Outcome,
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "client {} {} ", self.client, self.op)?;
        match &self.outcome {
            Outcome::Ok(result) => write!(f, "-> {result}")?,
            Outcome::Unknown => write!(f, "-> unknown")?,
        }
        write!(
            f,
            " [{:.6} .. {:.6} ms]",
            self.invoke as f64 / 1e6,
            self.complete as f64 / 1e6
        )
    }
}

/// `None` as `<none>`, values as themselves.
pub fn show_value(value: Option<&str>) -> String {
    value.map_or_else(|| "<none>".to_string(), str::to_string)
}

/// Operations in no particular order (the checker orders them by time).
#[derive(Debug, Clone, Default)]
pub struct History {
    pub ops: Vec<Operation>,
}

impl History {
    pub fn new() -> History {
        History::default()
    }

    /// Adds an operation with explicit times, for hand-written histories.
    pub fn push(&mut self, client: usize, op: Op, invoke: u64, complete: u64, outcome: Outcome) {
        assert!(
            invoke <= complete,
            "an operation completes after it is invoked"
        );
        self.ops.push(Operation {
            client,
            op,
            invoke,
            complete,
            outcome,
        });
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// How many operations ended `Unknown`.
    pub fn unknown_count(&self) -> usize {
        self.ops
            .iter()
            .filter(|o| o.outcome == Outcome::Unknown)
            .count()
    }

    /// How many gets returned a value (rather than `None`).
    pub fn reads_of_values(&self) -> usize {
        self.ops
            .iter()
            .filter(|o| matches!(o.outcome, Outcome::Ok(OpResult::Get(Some(_)))))
            .count()
    }

    /// A one-line summary: counts by kind and outcome.
    pub fn summary(&self) -> String {
        let count = |f: &dyn Fn(&Operation) -> bool| self.ops.iter().filter(|o| f(o)).count();
        format!(
            "{} ops: {} puts, {} gets ({} saw a value), {} deletes, {} cas ({} succeeded); {} unknown",
            self.len(),
            count(&|o| matches!(o.op, Op::Put { .. })),
            count(&|o| matches!(o.op, Op::Get { .. })),
            self.reads_of_values(),
            count(&|o| matches!(o.op, Op::Delete { .. })),
            count(&|o| matches!(o.op, Op::Cas { .. })),
            count(&|o| o.outcome == Outcome::Ok(OpResult::Cas(true))),
            self.unknown_count(),
        )
    }
}

/// A clock shared by the clients of one history.
#[derive(Debug, Clone, Copy)]
pub struct HistoryClock {
    start: Instant,
}

impl HistoryClock {
    pub fn start() -> HistoryClock {
        HistoryClock {
            start: Instant::now(),
        }
    }

    /// Nanoseconds since the start (saturating at `u64::MAX`, some 584 years).
    pub fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}
