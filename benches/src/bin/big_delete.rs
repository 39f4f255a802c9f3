//! Memory and time of one DeleteRange over many keys, as `etcdctl check perf` ends:
//! `cargo run --release -p mnemo-benches --bin big_delete` (MNEMO_DELETE_KEYS, default
//! 300000). Keys and values are shaped like check perf's: the prefix and 256 bytes, and
//! 1024-byte values. A watch hub without watchers is attached, as in the server.

use std::sync::Arc;
use std::time::Instant;

use mnemo::command::{Command, CommandResponse, Op};
use mnemo::mvcc::watch::WatchHub;
use mnemo::mvcc::{History, Store};
use mnemo_proto::etcdserverpb::{DeleteRangeRequest, PutRequest};
use mnemo_storage::Durability;

fn status() -> String {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .filter(|l| l.starts_with("VmRSS") || l.starts_with("VmHWM"))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join(", ")
}

/// check perf's key: the prefix, then a varint of a random number in 256 bytes.
fn perf_key(i: usize) -> Vec<u8> {
    let mut key = b"/etcdctl-check-perf/".to_vec();
    let mut tail = [0u8; 256];
    tail[..8].copy_from_slice(&(i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15).to_be_bytes());
    key.extend_from_slice(&tail);
    key
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: usize = std::env::var("MNEMO_DELETE_KEYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300_000);
    let dir = std::env::temp_dir().join(format!("mnemo-big-delete-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let store = Arc::new(Store::open(&dir.join("db"))?);
    let hub = WatchHub::new(Arc::clone(&store) as Arc<dyn History>);
    let value = vec![0u8; 1024];
    for chunk in 0..n.div_ceil(1000) {
        let mut a = store.begin_apply()?;
        for i in chunk * 1000..((chunk + 1) * 1000).min(n) {
            let r = a.apply(&Command::new(Op::Put(PutRequest {
                key: perf_key(i),
                value: value.clone(),
                ..Default::default()
            })));
            assert!(matches!(r, CommandResponse::Put(_)));
        }
        hub.notify(&a.commit(Durability::Deferred)?);
    }
    store.sync()?;
    println!("{n} keys put: {}", status());
    let t = Instant::now();
    let mut a = store.begin_apply()?;
    let r = a.apply(&Command::new(Op::DeleteRange(DeleteRangeRequest {
        key: b"/etcdctl-check-perf/".to_vec(),
        range_end: b"/etcdctl-check-perf0".to_vec(),
        prev_kv: false,
    })));
    let applied_at = t.elapsed();
    println!("applied in {applied_at:?}: {}", status());
    let applied = a.commit(Durability::Deferred)?;
    let committed_at = t.elapsed();
    println!("committed in {committed_at:?}: {}", status());
    hub.notify(&applied);
    drop(applied);
    store.sync()?;
    println!("notified and synced in {:?}: {}", t.elapsed(), status());
    match r {
        CommandResponse::DeleteRange(d) => assert_eq!(d.deleted, n as i64),
        other => panic!("delete failed: {other:?}"),
    }
    drop(hub);
    drop(store);
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
