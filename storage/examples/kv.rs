//! Writes, reads, compacts and checks a page file at the path given (default
//! `./default.mnemo/kv.db`), printing what it did. Until the server exists this is the
//! quickest way to see the storage engine work on a real file.

use std::time::Instant;

use mnemo_storage::{Database, DatabaseOptions, Durability, Result};

fn main() -> Result<()> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "default.mnemo/kv.db".to_string());
    if let Some(dir) = std::path::Path::new(&path).parent() {
        std::fs::create_dir_all(dir)?;
    }
    let db = Database::open_path(&path, DatabaseOptions::default())?;
    println!("opened {path} (last commit: txn {})", db.last_txn());

    let start = Instant::now();
    let n = 100_000u64;
    for batch in 0..n / 1000 {
        let mut w = db.begin_write()?;
        {
            let mut t = w.open_table("demo")?;
            for i in batch * 1000..(batch + 1) * 1000 {
                t.insert(format!("key/{i:08}").as_bytes(), &[b'v'; 256])?;
            }
        }
        w.commit(Durability::Durable)?;
    }
    println!(
        "wrote {n} keys in 100 durable commits in {:?}",
        start.elapsed()
    );

    let r = db.begin_read()?;
    let t = r.open_table("demo")?;
    let first: Vec<String> = t
        .range(b"key/00000500".as_slice()..)?
        .take(3)
        .map(|e| e.map(|e| String::from_utf8_lossy(e.key()).into_owned()))
        .collect::<Result<_>>()?;
    println!("{} keys; three from key/00000500: {first:?}", t.len());
    drop(r);

    let mut w = db.begin_write()?;
    let removed = w
        .open_table("demo")?
        .remove_range(b"key/00010000".as_slice()..)?;
    w.commit(Durability::Durable)?;
    let (before, after) = db.compact(64)?;
    println!("removed {removed} keys; compaction: {before} -> {after} bytes");

    let report = db.check()?;
    let s = &report.stats;
    println!(
        "check: {} problems; {} pages ({} leaf, {} branch, {} overflow, {} free), depth {}, fill {:.0}%",
        report.problems.len(),
        s.page_count,
        s.leaf_pages,
        s.branch_pages,
        s.overflow_pages,
        s.free_pages,
        s.max_depth(),
        s.fill_factor() * 100.0
    );
    Ok(())
}
