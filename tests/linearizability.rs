//! The linearizability checker of `tests/common` on hand-written histories, classic
//! violations, unknown outcomes, its budget, random histories generated from a
//! sequential model, and a history recorded from a real member.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::history::{History, Op, OpResult, Outcome};
use common::linearizability::{check, check_with, Budget, Verdict, Violation};
use common::proxy::{Direction, FaultProxy};
use common::workload::{record_history, SplitMix64, Until, Workload};
use common::MnemoProcess;

/// Builds a history of one client per line of the test, with explicit times.
#[derive(Default)]
struct Builder {
    history: History,
}

fn some(v: &str) -> Option<String> {
    Some(v.to_string())
}

impl Builder {
    fn new() -> Builder {
        Builder::default()
    }

    fn put(&mut self, key: &str, value: &str, invoke: u64, complete: u64) -> &mut Builder {
        let op = Op::Put {
            key: key.into(),
            value: value.into(),
        };
        self.op(op, invoke, complete, Outcome::Ok(OpResult::Put))
    }

    fn get(&mut self, key: &str, seen: Option<&str>, invoke: u64, complete: u64) -> &mut Builder {
        let op = Op::Get { key: key.into() };
        let result = OpResult::Get(seen.map(str::to_string));
        self.op(op, invoke, complete, Outcome::Ok(result))
    }

    fn delete(&mut self, key: &str, deleted: i64, invoke: u64, complete: u64) -> &mut Builder {
        let op = Op::Delete { key: key.into() };
        self.op(op, invoke, complete, Outcome::Ok(OpResult::Delete(deleted)))
    }

    fn cas(
        &mut self,
        key: &str,
        expected: Option<&str>,
        new: &str,
        succeeded: bool,
        invoke: u64,
        complete: u64,
    ) -> &mut Builder {
        let op = Op::Cas {
            key: key.into(),
            expected: expected.map(str::to_string),
            new: new.into(),
        };
        self.op(op, invoke, complete, Outcome::Ok(OpResult::Cas(succeeded)))
    }

    fn unknown(&mut self, op: Op, invoke: u64, complete: u64) -> &mut Builder {
        self.op(op, invoke, complete, Outcome::Unknown)
    }

    fn op(&mut self, op: Op, invoke: u64, complete: u64, outcome: Outcome) -> &mut Builder {
        let client = self.history.len();
        self.history.push(client, op, invoke, complete, outcome);
        self
    }

    fn check(&self) -> Verdict {
        check(&self.history)
    }
}

fn assert_linearizable(b: &Builder) {
    let verdict = b.check();
    assert!(
        verdict.is_linearizable(),
        "expected linearizable, got: {verdict}\nhistory: {:#?}",
        b.history
    );
}

fn assert_violation(b: &Builder) -> Violation {
    match b.check() {
        Verdict::NotLinearizable(v) => v,
        other => panic!(
            "expected a violation, got: {other}\nhistory: {:#?}",
            b.history
        ),
    }
}

#[test]
fn sequential_history_is_linearizable() {
    let mut b = Builder::new();
    b.get("x", None, 0, 1)
        .put("x", "1", 10, 20)
        .get("x", Some("1"), 30, 40)
        .cas("x", Some("1"), "2", true, 50, 60)
        .cas("x", Some("1"), "3", false, 70, 80)
        .get("x", Some("2"), 90, 100)
        .delete("x", 1, 110, 120)
        .get("x", None, 130, 140)
        .delete("x", 0, 150, 160)
        .cas("x", None, "4", true, 170, 180)
        .cas("x", None, "5", false, 190, 200)
        .get("x", Some("4"), 210, 220);
    assert_linearizable(&b);
}

#[test]
fn overlapping_operations_may_take_either_order() {
    // A get overlapping a put may see the old or the new value.
    for seen in [None, Some("1")] {
        let mut b = Builder::new();
        b.put("x", "1", 0, 100).get("x", seen, 10, 20);
        assert_linearizable(&b);
    }
    // After two overlapping puts, either may be the last.
    for last in ["1", "2"] {
        let mut b = Builder::new();
        b.put("x", "1", 0, 100)
            .put("x", "2", 50, 150)
            .get("x", Some(last), 200, 210)
            .get("x", Some(last), 220, 230);
        assert_linearizable(&b);
    }
    // A get that completes exactly when a put is invoked overlaps it (calls first).
    let mut b = Builder::new();
    b.get("x", Some("1"), 0, 10).put("x", "1", 10, 20);
    assert_linearizable(&b);
}

#[test]
fn stale_read_after_a_completed_write_is_rejected() {
    let mut b = Builder::new();
    b.put("x", "1", 0, 10)
        .put("x", "2", 20, 30)
        .get("x", Some("1"), 40, 50);
    let v = assert_violation(&b);
    assert_eq!(v.key, "x");
    let stuck = v
        .stuck_at
        .as_ref()
        .expect("the search names the stuck operation");
    assert_eq!(stuck.op, Op::Get { key: "x".into() });
    let text = v.to_string();
    assert!(text.contains("get(x)") && text.contains("read 1"), "{text}");
    // The longest linearization is both puts, leaving 2.
    assert_eq!(v.linearized.len(), 2);
    assert_eq!(v.value.as_deref(), Some("2"));
}

#[test]
fn read_of_a_value_never_written_is_rejected() {
    let mut b = Builder::new();
    b.put("x", "1", 0, 10).get("x", Some("ghost"), 20, 30);
    let v = assert_violation(&b);
    assert!(
        v.to_string().contains("no operation on the key writes"),
        "{v}"
    );
    // A value written only to another key does not count.
    let mut b = Builder::new();
    b.put("y", "1", 0, 10).get("x", Some("1"), 20, 30);
    assert_eq!(assert_violation(&b).key, "x");
}

#[test]
fn reads_out_of_real_time_order_are_rejected() {
    // The second write overlaps both reads; once a read saw it, a later read cannot see
    // the first write, which completed before the second began.
    let mut b = Builder::new();
    b.put("x", "1", 0, 10)
        .put("x", "2", 20, 100)
        .get("x", Some("2"), 30, 40)
        .get("x", Some("1"), 50, 60);
    assert_violation(&b);
    // Seeing them as 1 then 2 is fine; so is 2 then 1 when the writes overlap too.
    let mut b = Builder::new();
    b.put("x", "1", 0, 10)
        .put("x", "2", 20, 100)
        .get("x", Some("1"), 30, 40)
        .get("x", Some("2"), 50, 60);
    assert_linearizable(&b);
    let mut b = Builder::new();
    b.put("x", "1", 0, 100)
        .put("x", "2", 0, 100)
        .get("x", Some("2"), 30, 40)
        .get("x", Some("1"), 50, 60);
    assert_linearizable(&b);
    // A write invoked after a read completed cannot be what it saw.
    let mut b = Builder::new();
    b.get("x", Some("1"), 0, 10).put("x", "1", 20, 30);
    assert_violation(&b);
}

#[test]
fn cas_succeeding_twice_from_the_same_value_is_rejected() {
    let mut b = Builder::new();
    b.put("x", "1", 0, 10)
        .cas("x", Some("1"), "2", true, 20, 100)
        .cas("x", Some("1"), "3", true, 20, 100);
    let v = assert_violation(&b);
    assert!(v.to_string().contains("cas(x, 1,"), "{v}");
    // One of them failing is fine, whichever.
    for first_wins in [true, false] {
        let mut b = Builder::new();
        b.put("x", "1", 0, 10)
            .cas("x", Some("1"), "2", first_wins, 20, 100)
            .cas("x", Some("1"), "3", !first_wins, 20, 100);
        assert_linearizable(&b);
    }
    // Creating a key twice with expected None: one must fail.
    let mut b = Builder::new();
    b.cas("x", None, "1", true, 0, 100)
        .cas("x", None, "2", true, 0, 100);
    assert_violation(&b);
}

#[test]
fn wrong_delete_counts_and_cas_results_are_rejected() {
    let mut b = Builder::new();
    b.put("x", "1", 0, 10).delete("x", 0, 20, 30);
    assert_violation(&b);
    let mut b = Builder::new();
    b.delete("x", 1, 0, 10);
    assert_violation(&b);
    let mut b = Builder::new();
    b.put("x", "1", 0, 10)
        .cas("x", Some("1"), "2", false, 20, 30);
    assert_violation(&b);
}

#[test]
fn unknown_writes_may_or_may_not_take_effect() {
    let put2 = || Op::Put {
        key: "x".into(),
        value: "2".into(),
    };
    // A later read may see the unknown write, or not.
    for seen in ["1", "2"] {
        let mut b = Builder::new();
        b.put("x", "1", 0, 10)
            .unknown(put2(), 20, 30)
            .get("x", Some(seen), 40, 50);
        assert_linearizable(&b);
    }
    // It may take effect long after the client gave up: 1, then 2.
    let mut b = Builder::new();
    b.put("x", "1", 0, 10)
        .unknown(put2(), 20, 30)
        .get("x", Some("1"), 40, 50)
        .get("x", Some("2"), 60, 70);
    assert_linearizable(&b);
    // But it takes effect once: after a read saw 2, no read sees 1 again.
    let mut b = Builder::new();
    b.put("x", "1", 0, 10)
        .unknown(put2(), 20, 30)
        .get("x", Some("2"), 40, 50)
        .get("x", Some("1"), 60, 70);
    assert_violation(&b);
    // And not before it was invoked.
    let mut b = Builder::new();
    b.put("x", "1", 0, 10)
        .get("x", Some("2"), 20, 30)
        .unknown(put2(), 40, 50);
    assert_violation(&b);
    // An unknown cas may have succeeded (or not); an unknown get constrains nothing.
    for seen in ["1", "3"] {
        let mut b = Builder::new();
        b.put("x", "1", 0, 10)
            .unknown(
                Op::Cas {
                    key: "x".into(),
                    expected: some("1"),
                    new: "3".into(),
                },
                20,
                30,
            )
            .unknown(Op::Get { key: "x".into() }, 20, 30)
            .get("x", Some(seen), 40, 50);
        assert_linearizable(&b);
    }
    // An unknown delete may have removed the key.
    let mut b = Builder::new();
    b.put("x", "1", 0, 10)
        .unknown(Op::Delete { key: "x".into() }, 20, 30)
        .get("x", None, 40, 50);
    assert_linearizable(&b);
}

#[test]
fn keys_are_checked_independently_and_the_bad_key_is_named() {
    let mut b = Builder::new();
    b.put("a", "1", 0, 10)
        .put("b", "1", 0, 10)
        .get("a", Some("1"), 20, 30)
        .put("b", "2", 20, 30)
        .get("b", Some("1"), 40, 50)
        .get("c", None, 40, 50);
    let v = assert_violation(&b);
    assert_eq!(v.key, "b");
}

#[test]
fn budget_turns_a_pathological_search_into_inconclusive() {
    // Many overlapping puts and an impossible read after them: the search tries every
    // subset of the puts before it gives up.
    let history = |puts: usize| {
        let mut b = Builder::new();
        for i in 0..puts {
            b.put("x", &format!("v{i}"), 0, 1000);
        }
        b.get("x", None, 2000, 2010);
        b
    };
    let budget = Budget {
        max_steps: 10_000,
        ..Budget::default()
    };
    match check_with(&history(24).history, budget) {
        Verdict::Inconclusive { key, reason } => {
            assert_eq!(key, "x");
            assert!(reason.contains("steps"), "{reason}");
        }
        other => panic!("expected inconclusive, got {other}"),
    }
    // The same shape, small, is decided within the same budget.
    assert!(check_with(&history(4).history, budget).is_violation());
}

#[test]
fn many_pending_unknown_writes_do_not_hide_a_violation() {
    // Thirty writes that may land any time later: a search trying every subset of them
    // could not finish, but none of them can make the stale read right.
    let history = |last_read: &str| {
        let mut b = Builder::new();
        for i in 0..30 {
            let op = Op::Put {
                key: "x".into(),
                value: format!("u{i}"),
            };
            b.unknown(op, 0, 1);
        }
        b.put("x", "a", 10, 20)
            .put("x", "b", 30, 40)
            .get("x", Some(last_read), 50, 60);
        b
    };
    let budget = Budget {
        max_steps: 1_000_000,
        ..Budget::default()
    };
    let verdict = check_with(&history("a").history, budget);
    assert!(verdict.is_violation(), "{verdict}");
    // Reading one of them at the end is fine: it landed after b.
    let verdict = check_with(&history("u17").history, budget);
    assert!(verdict.is_linearizable(), "{verdict}");
}

/// A history made by performing operations one by one on a map, operation `j` at time
/// `10j + 5`, with its invoke and completion up to `window` before and after. One write
/// in `unknown_one_in` ends `Unknown`, and half of those never take effect.
fn random_history(seed: u64, ops: usize, keys: u64, window: u64, unknown_one_in: u64) -> History {
    let mut rng = SplitMix64::new(seed);
    let mut store: BTreeMap<String, String> = BTreeMap::new();
    let mut written: Vec<String> = Vec::new();
    let mut history = History::new();
    for j in 0..ops {
        let at = 10 * j as u64 + 5;
        let invoke = at.saturating_sub(rng.below(window + 1));
        let complete = at + rng.below(window + 1);
        let key = format!("k{}", rng.below(keys));
        let value = format!("v{j}");
        let current = store.get(&key).cloned();
        let unknown = rng.below(unknown_one_in) == 0;
        let takes_effect = !unknown || rng.below(2) == 0;
        let roll = rng.below(100);
        let (op, result) = if roll < 40 {
            (Op::Get { key: key.clone() }, OpResult::Get(current))
        } else if roll < 65 {
            (Op::Put { key, value }, OpResult::Put)
        } else if roll < 85 {
            // Compare with the current value half the time, else with anything.
            let expected = match rng.below(4) {
                0 | 1 => current.clone(),
                2 => None,
                _ if written.is_empty() => None,
                _ => Some(written[rng.below(written.len() as u64) as usize].clone()),
            };
            let holds = expected == current;
            let op = Op::Cas {
                key,
                expected,
                new: value,
            };
            (op, OpResult::Cas(holds))
        } else {
            let deleted = i64::from(current.is_some());
            (Op::Delete { key }, OpResult::Delete(deleted))
        };
        if takes_effect {
            match (&op, &result) {
                (Op::Put { key, value }, _) => {
                    store.insert(key.clone(), value.clone());
                }
                (Op::Cas { key, new, .. }, OpResult::Cas(true)) => {
                    store.insert(key.clone(), new.clone());
                }
                (Op::Delete { key }, _) => {
                    store.remove(key);
                }
                _ => {}
            }
        }
        if let Some(v) = op.written_value() {
            written.push(v.to_string());
        }
        let outcome = if unknown && op.is_write() {
            Outcome::Unknown
        } else {
            Outcome::Ok(result)
        };
        history.push(j % 5, op, invoke, complete, outcome);
    }
    history
}

/// The index of a random successful get of `history`, if there is one.
fn random_get(rng: &mut SplitMix64, history: &History) -> Option<usize> {
    let gets: Vec<usize> = (0..history.len())
        .filter(|&i| matches!(history.ops[i].outcome, Outcome::Ok(OpResult::Get(_))))
        .collect();
    if gets.is_empty() {
        return None;
    }
    Some(gets[rng.below(gets.len() as u64) as usize])
}

const SEEDS: u64 = 300;

#[test]
fn random_histories_from_a_sequential_model_are_linearizable() {
    for seed in 0..SEEDS {
        let ops = 20 + (seed as usize % 8) * 25;
        let keys = 1 + seed % 3;
        let history = random_history(seed, ops, keys, 40, 20);
        let verdict = check(&history);
        assert!(
            verdict.is_linearizable(),
            "seed {seed}: {verdict}\n{}",
            history.summary()
        );
    }
}

#[test]
fn random_histories_with_many_unknown_writes_are_linearizable() {
    // A third of the writes unknown, on one or two keys: the prunings for unknown
    // operations must not lose a linearization.
    for seed in 0..1000 {
        let ops = 20 + (seed as usize % 5) * 20;
        let window = 10 + seed % 50;
        let history = random_history(seed, ops, 1 + seed % 2, window, 3);
        let verdict = check(&history);
        assert!(
            verdict.is_linearizable(),
            "seed {seed}: {verdict}\n{}",
            history.summary()
        );
    }
}

#[test]
fn random_histories_with_a_read_of_an_unwritten_value_are_rejected() {
    for seed in 0..SEEDS {
        let mut history = random_history(seed, 60, 1 + seed % 3, 40, 20);
        let mut rng = SplitMix64::new(!seed);
        let Some(i) = random_get(&mut rng, &history) else {
            continue;
        };
        history.ops[i].outcome = Outcome::Ok(OpResult::Get(some("never-written")));
        assert!(
            check(&history).is_violation(),
            "seed {seed}: corrupted op {i}"
        );
    }
}

#[test]
fn random_histories_with_a_read_from_the_future_are_rejected() {
    // A get that sees the value of a write invoked after the get completed: values are
    // unique, so nothing else wrote it, and the search has to find that out (the value
    // is written, so the shortcut for unwritten values does not apply).
    let mut corrupted = 0;
    for seed in 0..SEEDS {
        let mut history = random_history(seed, 60, 1 + seed % 3, 40, 20);
        let mut rng = SplitMix64::new(!seed);
        let Some(i) = random_get(&mut rng, &history) else {
            continue;
        };
        let get = history.ops[i].clone();
        let future = history.ops.iter().find_map(|o| {
            let later = o.op.key() == get.op.key() && o.invoke > get.complete;
            later
                .then(|| o.op.written_value())
                .flatten()
                .map(str::to_string)
        });
        let Some(value) = future else {
            continue;
        };
        history.ops[i].outcome = Outcome::Ok(OpResult::Get(Some(value.clone())));
        let verdict = check(&history);
        assert!(
            verdict.is_violation(),
            "seed {seed}: get {i} now reads {value}: {verdict}"
        );
        corrupted += 1;
    }
    assert!(
        corrupted > SEEDS / 2,
        "only {corrupted} histories corrupted"
    );
}

#[tokio::test]
async fn history_recorded_from_one_member_is_linearizable() {
    let m = MnemoProcess::start(&[]);
    let history = record_history(
        vec![m.client_url()],
        4,
        Until::Elapsed(Duration::from_secs(2)),
        3,
        0x5eed,
    )
    .await;
    let summary = history.summary();
    eprintln!("recorded {summary}");
    let verdict = check(&history);
    assert!(verdict.is_linearizable(), "{verdict}\n{summary}");
    // Not trivially so: reads saw writes, some compare-and-set succeeded and some failed,
    // and all four clients took part.
    assert!(history.reads_of_values() > 10, "{summary}");
    let cas = |ok| {
        history
            .ops
            .iter()
            .filter(|o| o.outcome == Outcome::Ok(OpResult::Cas(ok)))
            .count()
    };
    assert!(cas(true) > 0 && cas(false) > 0, "{summary}");
    for client in 0..4 {
        assert!(
            history.ops.iter().any(|o| o.client == client),
            "client {client}: {summary}"
        );
    }
    // The same history with one read changed to a value nobody wrote is rejected.
    let mut corrupted = history.clone();
    let read = corrupted
        .ops
        .iter_mut()
        .find(|o| matches!(o.outcome, Outcome::Ok(OpResult::Get(Some(_)))))
        .expect("a read of a value");
    read.outcome = Outcome::Ok(OpResult::Get(some("never-written")));
    assert!(check(&corrupted).is_violation());
}

#[tokio::test]
async fn history_through_faulty_proxies_is_linearizable() {
    // Two proxies in front of one member, both blackholed longer than the request
    // timeout now and then: requests time out (unknown writes), and are then either
    // delivered late (the blackhole passes again) or lost (the connections reset).
    let m = MnemoProcess::start(&[]);
    let proxies = [
        FaultProxy::start(m.client_addr()),
        FaultProxy::start(m.client_addr()),
    ];
    let mut workload = Workload::new(
        proxies.iter().map(FaultProxy::url).collect(),
        4,
        Until::Elapsed(Duration::from_secs(5)),
        2,
        0xfa17,
    );
    workload.request_timeout = Duration::from_millis(500);
    workload.connect_timeout = Duration::from_millis(300);
    let recording = tokio::spawn(workload.record());
    for round in 0..3 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        for p in &proxies {
            p.blackhole(Direction::Both);
        }
        tokio::time::sleep(Duration::from_millis(800)).await;
        for p in &proxies {
            if round % 2 == 1 {
                p.reset();
            }
            p.delay(Direction::Backward, Duration::from_millis(20));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        for p in &proxies {
            p.heal();
        }
    }
    let history = recording.await.expect("the workload finishes");
    let summary = history.summary();
    eprintln!("recorded {summary}");
    let verdict = check(&history);
    assert!(verdict.is_linearizable(), "{verdict}\n{summary}");
    assert!(
        history.unknown_count() > 0,
        "no request timed out: {summary}"
    );
    // The clients came back after the last fault.
    let last_unknown = history
        .ops
        .iter()
        .filter(|o| o.outcome == Outcome::Unknown)
        .map(|o| o.invoke)
        .max()
        .expect("an unknown operation");
    assert!(
        history
            .ops
            .iter()
            .any(|o| o.invoke > last_unknown && matches!(o.outcome, Outcome::Ok(_))),
        "nothing succeeded after the last fault: {summary}"
    );
}
