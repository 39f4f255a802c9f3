//! A linearizability checker for a key-value store of registers, after Wing & Gong and
//! Lowe ("Testing for linearizability", 2017) as porcupine implements it.
//!
//! A history is linearizable if each operation can be given a point between its invoke
//! and its completion such that performing the operations one by one in that order, on
//! a store where every key starts absent, gives each operation the result its client
//! saw. Operations on different keys commute, so the history is split by key and each
//! key's part is checked alone (linearizability is compositional).
//!
//! For one key the search walks a list of call and return events ordered by time. At a
//! call it tries to linearize that operation now: the model must allow the result, and
//! the pair (set of linearized operations, register value) must not have been reached
//! before (the memo; reaching the same pair again leads to the same outcome; `Memo`
//! also skips pairs that only spent more unknown operations than a visited one). At a
//! return event the operation returning there should have been linearized already, so
//! the search undoes its last choice and tries the next call instead. It succeeds when
//! only unknown operations are left (they fit in any order, see below) and fails when
//! it must undo with nothing left to undo.
//!
//! ```text
//! client 0 |--put(x,1)--|
//! client 1      |--get(x)->1--|  |--get(x)-><none>--|
//! events: call put, call get1, return put, return get1, call get2, return get2
//! ```
//!
//! Here put then get1 linearize (get1 sees 1), and at get2's call the value is 1, not
//! `<none>`; no other order exists, so the key is not linearizable.
//!
//! An `Unknown` operation (error or timeout) returns at infinity with any result: it can
//! be placed anywhere after its invoke, and placing it after everything else is the same
//! as it never taking effect. `Unknown` gets have no effect and are left out.
//!
//! The search is exponential in the worst case (many overlapping operations, many
//! unknown writes); [`Budget`] bounds it and the verdict is then `Inconclusive`.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::time::{Duration, Instant};

use super::history::{show_value, History, Op, OpResult, Operation, Outcome};

/// Limits of the search, per key.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// Search steps (one step tries one event).
    pub max_steps: u64,
    /// Approximate bytes held by the memo of visited configurations.
    pub max_memo_bytes: usize,
    /// Wall time for the whole history.
    pub max_time: Duration,
}

impl Default for Budget {
    fn default() -> Budget {
        Budget {
            max_steps: 20_000_000,
            max_memo_bytes: 512 << 20,
            max_time: Duration::from_secs(120),
        }
    }
}

/// The checker's answer.
#[derive(Debug, Clone)]
pub enum Verdict {
    Linearizable,
    NotLinearizable(Violation),
    /// The budget ran out on `key` before the search finished.
    Inconclusive {
        key: String,
        reason: String,
    },
}

impl Verdict {
    pub fn is_linearizable(&self) -> bool {
        matches!(self, Verdict::Linearizable)
    }

    pub fn is_violation(&self) -> bool {
        matches!(self, Verdict::NotLinearizable(_))
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Linearizable => write!(f, "linearizable"),
            Verdict::NotLinearizable(v) => write!(f, "{v}"),
            Verdict::Inconclusive { key, reason } => {
                write!(f, "inconclusive: the search on key {key} {reason}")
            }
        }
    }
}

/// Why one key's history is not linearizable: the longest order the search found, and
/// the operation it could not get past.
#[derive(Debug, Clone)]
pub struct Violation {
    pub key: String,
    /// The longest linearized order found (all of it; `Display` shows the tail).
    pub linearized: Vec<Operation>,
    /// The key's value after `linearized`.
    pub value: Option<String>,
    /// The operation that had completed and so had to come next (or earlier), but could
    /// not. `None` when the operations are rejected before the search (see `reason`).
    pub stuck_at: Option<Operation>,
    /// The operations that could come next after `linearized` (invoked before
    /// `stuck_at` completed), each with the reason the model gives against it.
    pub candidates: Vec<(Operation, String)>,
    /// A summary in words.
    pub reason: String,
}

/// How many operations of the linearized order `Display` shows.
const SHOWN_TAIL: usize = 8;

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "not linearizable on key {}: {}", self.key, self.reason)?;
        if self.linearized.is_empty() && self.stuck_at.is_none() {
            return Ok(());
        }
        let skipped = self.linearized.len().saturating_sub(SHOWN_TAIL);
        writeln!(
            f,
            "  longest linearization: {} operations{}",
            self.linearized.len(),
            if skipped > 0 {
                format!(", the last {SHOWN_TAIL}:")
            } else {
                ":".to_string()
            }
        )?;
        for op in &self.linearized[skipped..] {
            writeln!(f, "    {op}")?;
        }
        writeln!(f, "  value after it: {}", show_value(self.value.as_deref()))?;
        if let Some(stuck) = &self.stuck_at {
            writeln!(f, "  had to linearize before it completed: {stuck}")?;
        }
        writeln!(f, "  candidates for the next operation:")?;
        for (op, why) in &self.candidates {
            writeln!(f, "    {op}: {why}")?;
        }
        Ok(())
    }
}

/// Checks `history` with the default budget.
pub fn check(history: &History) -> Verdict {
    check_with(history, Budget::default())
}

/// Checks `history`, key by key (in key order), stopping at the first violation.
pub fn check_with(history: &History, budget: Budget) -> Verdict {
    let mut by_key: BTreeMap<&str, Vec<&Operation>> = BTreeMap::new();
    for op in &history.ops {
        if matches!(op.op, Op::Get { .. }) && op.outcome == Outcome::Unknown {
            continue;
        }
        by_key.entry(op.op.key()).or_default().push(op);
    }
    let deadline = Instant::now() + budget.max_time;
    let mut inconclusive = None;
    for (key, ops) in by_key {
        match check_key(key, &ops, budget, deadline) {
            Verdict::Linearizable => {}
            v @ Verdict::NotLinearizable(_) => return v,
            v @ Verdict::Inconclusive { .. } => {
                inconclusive.get_or_insert(v);
            }
        }
    }
    inconclusive.unwrap_or(Verdict::Linearizable)
}

/// A register value: an index into the key's interned values, `None` if absent.
type Value = Option<u32>;

/// An operation with its values interned.
#[derive(Debug, Clone, Copy)]
enum Step {
    Put(u32),
    Get,
    Delete,
    Cas { expected: Value, new: u32 },
}

/// What the client saw, interned; `None` for `Unknown`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    Put,
    Get(Value),
    Delete(i64),
    Cas(bool),
}

/// Applies `step` to `value`: the new value if `seen` (when known) is what the model
/// answers, else `None`.
fn apply(step: Step, seen: Option<Seen>, value: Value) -> Option<Value> {
    let (answer, next) = match step {
        Step::Put(v) => (Seen::Put, Some(v)),
        Step::Get => (Seen::Get(value), value),
        Step::Delete => (Seen::Delete(i64::from(value.is_some())), None),
        Step::Cas { expected, new } => {
            let holds = value == expected;
            (Seen::Cas(holds), if holds { Some(new) } else { value })
        }
    };
    match seen {
        None => Some(next),
        Some(seen) if seen == answer => Some(next),
        Some(_) => None,
    }
}

/// Interns one key's values and converts its operations.
#[derive(Debug, Default)]
struct Interner {
    ids: HashMap<String, u32>,
    names: Vec<String>,
}

impl Interner {
    fn id(&mut self, value: &str) -> u32 {
        if let Some(&id) = self.ids.get(value) {
            return id;
        }
        let id = u32::try_from(self.names.len()).expect("fewer than 2^32 values per key");
        self.ids.insert(value.to_string(), id);
        self.names.push(value.to_string());
        id
    }

    fn value(&mut self, value: Option<&str>) -> Value {
        value.map(|v| self.id(v))
    }

    fn name(&self, value: Value) -> Option<String> {
        value.map(|id| self.names[id as usize].clone())
    }

    /// Returns `None` for a result of another kind than the operation (a recorder bug).
    fn convert(&mut self, op: &Operation) -> Option<(Step, Option<Seen>)> {
        let step = match &op.op {
            Op::Put { value, .. } => Step::Put(self.id(value)),
            Op::Get { .. } => Step::Get,
            Op::Delete { .. } => Step::Delete,
            Op::Cas { expected, new, .. } => Step::Cas {
                expected: self.value(expected.as_deref()),
                new: self.id(new),
            },
        };
        let seen = match (&op.outcome, step) {
            (Outcome::Unknown, _) => None,
            (Outcome::Ok(OpResult::Put), Step::Put(_)) => Some(Seen::Put),
            (Outcome::Ok(OpResult::Get(v)), Step::Get) => Some(Seen::Get(self.value(v.as_deref()))),
            (Outcome::Ok(OpResult::Delete(n)), Step::Delete) => Some(Seen::Delete(*n)),
            (Outcome::Ok(OpResult::Cas(b)), Step::Cas { .. }) => Some(Seen::Cas(*b)),
            (Outcome::Ok(_), _) => return None,
        };
        Some((step, seen))
    }
}

/// Why the model rejects `op` on `value`, in words.
fn rejection(op: &Operation, value: Option<&str>) -> String {
    let now = show_value(value);
    match (&op.op, &op.outcome) {
        (Op::Get { .. }, Outcome::Ok(OpResult::Get(seen))) => {
            format!(
                "read {} but the value is {now}",
                show_value(seen.as_deref())
            )
        }
        (Op::Delete { .. }, Outcome::Ok(OpResult::Delete(n))) => {
            format!("deleted {n} but the value is {now}")
        }
        (Op::Cas { expected, .. }, Outcome::Ok(OpResult::Cas(ok))) => format!(
            "{} comparing with {} but the value is {now}",
            if *ok { "succeeded" } else { "failed" },
            show_value(expected.as_deref())
        ),
        _ => format!("the model rejects it on value {now}"),
    }
}

/// Whether an event is a call (even) rather than a return (odd).
fn is_call(event: usize) -> bool {
    event.is_multiple_of(2)
}

/// No event: the end of the list.
const NIL: usize = usize::MAX;

/// A set of operation indices.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct BitSet(Vec<u64>);

impl BitSet {
    fn new(n: usize) -> BitSet {
        BitSet(vec![0; n.div_ceil(64)])
    }

    fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }

    fn clear(&mut self, i: usize) {
        self.0[i / 64] &= !(1 << (i % 64));
    }

    fn is_subset(&self, of: &BitSet) -> bool {
        self.0.iter().zip(&of.0).all(|(a, b)| a & !b == 0)
    }
}

/// The configurations the search has visited: for each set of linearized known
/// operations and value, the sets of unknown operations linearized with them.
///
/// Reaching (known, value) with more unknown operations spent than a visited
/// configuration cannot succeed where that one did not, since everything it can do next
/// the visited one could too (and left-over unknown operations can always go last). So
/// a configuration is new only if no visited one with the same known set and value
/// spent a subset of its unknown operations. Without this, each pending unknown write
/// doubles the configurations a failing search goes through.
#[derive(Debug, Default)]
struct Memo {
    visited: HashMap<(BitSet, Value), Vec<BitSet>>,
    bytes: usize,
}

impl Memo {
    /// Records the configuration; false if it is covered by a visited one.
    fn insert(&mut self, known: &BitSet, value: Value, unknown: &BitSet) -> bool {
        let unknown_bytes = unknown.0.len() * 8 + 24;
        match self.visited.get_mut(&(known.clone(), value)) {
            Some(sets) => {
                if sets.iter().any(|seen| seen.is_subset(unknown)) {
                    return false;
                }
                let before = sets.len();
                sets.retain(|seen| !unknown.is_subset(seen));
                self.bytes -= (before - sets.len()) * unknown_bytes;
                sets.push(unknown.clone());
                self.bytes += unknown_bytes;
            }
            None => {
                self.visited
                    .insert((known.clone(), value), vec![unknown.clone()]);
                self.bytes += known.0.len() * 8 + 64 + unknown_bytes;
            }
        }
        true
    }
}

/// The search over one key's operations (none of them an `Unknown` get).
fn check_key(key: &str, ops: &[&Operation], budget: Budget, deadline: Instant) -> Verdict {
    let violation = |reason: String, stuck_at: Option<Operation>| {
        Verdict::NotLinearizable(Violation {
            key: key.to_string(),
            linearized: Vec::new(),
            value: None,
            stuck_at,
            candidates: Vec::new(),
            reason,
        })
    };
    let mut interner = Interner::default();
    let mut steps = Vec::with_capacity(ops.len());
    for op in ops {
        match interner.convert(op) {
            Some(s) => steps.push(s),
            None => return violation(format!("result of another kind: {op}"), Some((*op).clone())),
        }
    }

    // A read of a value nothing wrote cannot be linearized whatever the order; saying so
    // directly is clearer than the search's answer.
    let written: HashSet<&str> = ops.iter().filter_map(|o| o.op.written_value()).collect();
    for op in ops {
        if let Outcome::Ok(OpResult::Get(Some(v))) = &op.outcome {
            if !written.contains(v.as_str()) {
                return violation(
                    format!("get read {v}, which no operation on the key writes"),
                    Some((*op).clone()),
                );
            }
        }
    }

    // Events: 2i is the call of operation i, 2i+1 its return. Unknown operations return
    // at infinity. At equal times calls come first, so touching operations overlap.
    let n = ops.len();
    let mut order: Vec<usize> = (0..2 * n).collect();
    let time = |e: usize| {
        let op = ops[e / 2];
        match (is_call(e), &op.outcome) {
            (true, _) => (op.invoke, 0),
            (_, Outcome::Unknown) => (u64::MAX, 1),
            (_, Outcome::Ok(_)) => (op.complete, 1),
        }
    };
    order.sort_by_key(|&e| (time(e), e));
    // A doubly linked list over the events with a head sentinel at 2n.
    let head = 2 * n;
    let mut next = vec![NIL; 2 * n + 1];
    let mut prev = vec![NIL; 2 * n + 1];
    let mut last = head;
    for &e in &order {
        next[last] = e;
        prev[e] = last;
        last = e;
    }
    let unlink = |next: &mut [usize], prev: &mut [usize], e: usize| {
        next[prev[e]] = next[e];
        if next[e] != NIL {
            prev[next[e]] = prev[e];
        }
    };
    let relink = |next: &mut [usize], prev: &mut [usize], e: usize| {
        next[prev[e]] = e;
        if next[e] != NIL {
            prev[next[e]] = e;
        }
    };

    // Known and unknown operations are tracked in separate sets (see `Memo`): `slot[i]`
    // is operation i's place in its set.
    let unknown: Vec<bool> = steps.iter().map(|(_, seen)| seen.is_none()).collect();
    let mut slot = vec![0; n];
    let (mut known_count, mut unknown_count) = (0, 0);
    for i in 0..n {
        let count = if unknown[i] {
            &mut unknown_count
        } else {
            &mut known_count
        };
        slot[i] = *count;
        *count += 1;
    }
    let mut known_set = BitSet::new(known_count);
    let mut unknown_set = BitSet::new(unknown_count);
    let mut memo = Memo::default();
    let mut value: Value = None;
    // The calls linearized so far, with the value before each.
    let mut stack: Vec<(usize, Value)> = Vec::new();
    let mut best: Option<Best> = None;
    let mut step_count: u64 = 0;
    let mut known_left = known_count;
    let mut entry = next[head];
    // With only unknown operations left, any order of them works.
    while known_left > 0 {
        step_count += 1;
        if step_count > budget.max_steps {
            return inconclusive(key, format!("took more than {} steps", budget.max_steps));
        }
        if step_count.is_multiple_of(4096) && Instant::now() > deadline {
            return inconclusive(
                key,
                format!("ran past the time budget of {:?}", budget.max_time),
            );
        }
        if memo.bytes > budget.max_memo_bytes {
            return inconclusive(
                key,
                format!("memo grew past {} bytes", budget.max_memo_bytes),
            );
        }
        debug_assert!(entry != NIL, "a known operation's return is still listed");
        let i = entry / 2;
        if is_call(entry) {
            let (step, seen) = steps[i];
            let after_unknown = stack.last().filter(|(top, _)| unknown[top / 2]);
            let hides_unknown = after_unknown.is_some_and(|&(_, before)| match step {
                Step::Put(_) => true,
                Step::Delete => unknown[i] || before.is_some() == value.is_some(),
                Step::Get | Step::Cas { .. } => false,
            });
            match apply(step, seen, value) {
                // Two placements that need not be tried, as a linearization with them
                // stays one when the unknown operation moves to the end (where it
                // always fits): an unknown operation that leaves the value as it is,
                // and an unknown operation right before one that overwrites the value
                // with the same result either way (a put, or a delete that sees the key
                // exist or not alike).
                Some(after) if !hides_unknown && (!unknown[i] || after != value) => {
                    let set = if unknown[i] {
                        &mut unknown_set
                    } else {
                        &mut known_set
                    };
                    set.set(slot[i]);
                    if memo.insert(&known_set, after, &unknown_set) {
                        stack.push((entry, value));
                        if !unknown[i] {
                            known_left -= 1;
                        }
                        value = after;
                        unlink(&mut next, &mut prev, entry);
                        unlink(&mut next, &mut prev, entry + 1);
                        entry = next[head];
                        continue;
                    }
                    let set = if unknown[i] {
                        &mut unknown_set
                    } else {
                        &mut known_set
                    };
                    set.clear(slot[i]);
                }
                _ => {}
            }
            entry = next[entry];
        } else {
            if best.as_ref().is_none_or(|b| stack.len() > b.order.len()) {
                best = Some(Best::capture(&stack, value, i, &next, head));
            }
            let Some((call, before)) = stack.pop() else {
                let best = best.expect("captured at this return event");
                return Verdict::NotLinearizable(best.explain(key, ops, &steps, &interner));
            };
            let i = call / 2;
            if unknown[i] {
                unknown_set.clear(slot[i]);
            } else {
                known_set.clear(slot[i]);
                known_left += 1;
            }
            value = before;
            relink(&mut next, &mut prev, call + 1);
            relink(&mut next, &mut prev, call);
            entry = next[call];
        }
    }
    Verdict::Linearizable
}

fn inconclusive(key: &str, reason: String) -> Verdict {
    Verdict::Inconclusive {
        key: key.to_string(),
        reason,
    }
}

/// The deepest point of the search, for the explanation.
#[derive(Debug)]
struct Best {
    /// Operation indices in linearization order.
    order: Vec<usize>,
    value: Value,
    stuck_at: usize,
    /// The operations whose calls were before `stuck_at`'s return in the list.
    candidates: Vec<usize>,
}

impl Best {
    fn capture(
        stack: &[(usize, Value)],
        value: Value,
        stuck_at: usize,
        next: &[usize],
        head: usize,
    ) -> Best {
        let mut candidates = Vec::new();
        let mut e = next[head];
        while e != NIL && e != 2 * stuck_at + 1 {
            if is_call(e) {
                candidates.push(e / 2);
            }
            e = next[e];
        }
        Best {
            order: stack.iter().map(|&(call, _)| call / 2).collect(),
            value,
            stuck_at,
            candidates,
        }
    }

    fn explain(
        &self,
        key: &str,
        ops: &[&Operation],
        steps: &[(Step, Option<Seen>)],
        interner: &Interner,
    ) -> Violation {
        let value = interner.name(self.value);
        let stuck = ops[self.stuck_at];
        let candidates: Vec<(Operation, String)> = self
            .candidates
            .iter()
            .map(|&i| {
                let op = ops[i];
                let (step, seen) = steps[i];
                let why = match apply(step, seen, self.value) {
                    Some(_) => "allowed here, but every order from here fails later".to_string(),
                    None => rejection(op, value.as_deref()),
                };
                (op.clone(), why)
            })
            .collect();
        let reason = format!(
            "no order of its {} operations works (the search got {} deep)",
            ops.len(),
            self.order.len()
        );
        Violation {
            key: key.to_string(),
            linearized: self.order.iter().map(|&i| ops[i].clone()).collect(),
            value,
            stuck_at: Some(stuck.clone()),
            candidates,
            reason,
        }
    }
}
