//! Unit tests of the WAL through the in-memory fault directory: reads, truncation, purge,
//! and the recovery cases (torn tail, corrupt middle, zeroed tail, recycled segments).

use std::sync::Arc;

use super::record::{decode_record, Decoded, SEGMENT_HEADER_LEN};
use super::segment::segment_name;
use super::*;
use crate::backend::{CrashMode, TestRng};

const SEG: u64 = 4096;

fn opts() -> WalOptions {
    WalOptions {
        segment_size: SEG,
        force_pwrite: false,
        max_spare_segments: 2,
    }
}

fn rec(index: u64) -> Record {
    let len = (index * 7 % 50) as usize;
    Record {
        index,
        record_type: (index % 3) as u8,
        payload: vec![index as u8; len],
    }
}

fn open(dir: &FaultDir) -> Result<Wal> {
    Wal::open_dir(Arc::new(dir.clone()), opts())
}

/// Reopens from what is durable now (every write so far was synced, so nothing is lost).
fn reopen(dir: &FaultDir) -> (FaultDir, Result<Wal>) {
    let img = dir.crash_image(CrashMode::DropAll, &mut TestRng::new(0));
    let w = open(&img);
    (img, w)
}

fn all(w: &Wal) -> Vec<Record> {
    w.read_range(0..u64::MAX).unwrap()
}

fn append_each(w: &Wal, range: std::ops::RangeInclusive<u64>) {
    for i in range {
        w.append(vec![rec(i)]).unwrap();
    }
}

#[test]
fn append_read_and_reopen() {
    let dir = FaultDir::new();
    let w = open(&dir).unwrap();
    assert_eq!(
        (w.first_index(), w.last_index(), w.next_index()),
        (None, None, None)
    );
    w.append((5..=9).map(rec).collect()).unwrap();
    append_each(&w, 10..=20);
    assert_eq!(w.read(7).unwrap(), Some(rec(7)));
    assert_eq!(w.read(4).unwrap(), None);
    assert_eq!(w.read(21).unwrap(), None);
    assert_eq!(
        w.read_range(8..12).unwrap(),
        (8..12).map(rec).collect::<Vec<_>>()
    );
    assert_eq!(w.io_path(), IoPath::Pwrite);
    drop(w);
    let (_img, w) = reopen(&dir);
    let w = w.unwrap();
    assert_eq!(all(&w), (5..=20).map(rec).collect::<Vec<_>>());
    assert_eq!(w.next_index(), Some(21));
    assert_eq!(w.recovery_report().records, 16);
    assert_eq!(w.recovery_report().truncated_bytes, 0);
}

#[test]
fn non_contiguous_appends_are_rejected() {
    let dir = FaultDir::new();
    let w = open(&dir).unwrap();
    w.append(vec![rec(1), rec(2)]).unwrap();
    for bad in [
        vec![rec(4)],
        vec![rec(2)],
        vec![rec(3), rec(5)],
        vec![rec(1)],
    ] {
        assert!(matches!(
            w.append(bad),
            Err(StorageError::InvalidArgument(_))
        ));
    }
    let big = Record {
        index: 3,
        record_type: 0,
        payload: vec![0; SEG as usize],
    };
    assert!(matches!(
        w.append(vec![big]),
        Err(StorageError::InvalidArgument(_))
    ));
    w.append(vec![rec(3)]).unwrap();
    assert_eq!(w.last_index(), Some(3));
}

#[test]
fn records_span_many_segments_and_survive_reopen() {
    let dir = FaultDir::new();
    let w = open(&dir).unwrap();
    for chunk in (1..=400u64).collect::<Vec<_>>().chunks(9) {
        w.append(chunk.iter().copied().map(rec).collect()).unwrap();
    }
    let segments = dir.files().keys().filter(|n| n.ends_with(".wal")).count();
    assert!(segments > 3, "{segments}");
    drop(w);
    let (_img, w) = reopen(&dir);
    let w = w.unwrap();
    assert_eq!(all(&w), (1..=400).map(rec).collect::<Vec<_>>());
    assert_eq!(w.recovery_report().segments, segments);
}

#[test]
fn truncate_then_append_replaces_the_tail_and_survives_reopen() {
    let dir = FaultDir::new();
    let w = open(&dir).unwrap();
    append_each(&w, 1..=10);
    w.truncate(6).unwrap();
    assert_eq!(w.last_index(), Some(5));
    assert!(matches!(
        w.append(vec![rec(7)]),
        Err(StorageError::InvalidArgument(_))
    ));
    let new6 = Record {
        index: 6,
        record_type: 9,
        payload: b"new six".to_vec(),
    };
    w.append(vec![new6.clone()]).unwrap();
    w.truncate(100).unwrap(); // past the end: nothing happens
    drop(w);
    let (img, w) = reopen(&dir);
    let w = w.unwrap();
    let mut want: Vec<Record> = (1..=5).map(rec).collect();
    want.push(new6);
    assert_eq!(all(&w), want);
    // Truncating everything leaves an empty log whose next index is the truncation point.
    w.truncate(0).unwrap();
    assert_eq!((w.first_index(), w.next_index()), (None, Some(0)));
    drop(w);
    let (_img, w) = reopen(&img);
    let w = w.unwrap();
    assert_eq!((w.first_index(), w.next_index()), (None, Some(0)));
}

#[test]
fn purge_removes_whole_segments_and_recycles_them() {
    let dir = FaultDir::new();
    let w = open(&dir).unwrap();
    append_each(&w, 1..=300);
    let wal_files = |d: &FaultDir| d.files().keys().filter(|n| n.ends_with(".wal")).count();
    let before = wal_files(&dir);
    let removed = w.purge(150).unwrap();
    assert!(removed >= 2, "{removed}");
    let first = w.first_index().unwrap();
    assert!(first <= 150 && first > 1, "{first}");
    assert_eq!(w.read(first - 1).unwrap(), None);
    assert_eq!(w.read(150).unwrap(), Some(rec(150)));
    let spares = dir.files().keys().filter(|n| n.ends_with(".spare")).count();
    assert_eq!(spares, 2);
    assert_eq!(wal_files(&dir), before - removed);
    // Besides segments and spares there is at most the next segment being preallocated.
    let others: Vec<String> = dir
        .files()
        .into_keys()
        .filter(|n| !n.ends_with(".wal") && !n.ends_with(".spare"))
        .collect();
    assert!(
        others.len() <= 1 && others.iter().all(|n| n.ends_with(".tmp")),
        "{others:?}"
    );
    // Appends continue into recycled segments full of stale records.
    append_each(&w, 301..=600);
    drop(w);
    let (_img, w) = reopen(&dir);
    let w = w.unwrap();
    assert_eq!(w.first_index(), Some(first));
    assert_eq!(all(&w), (first..=600).map(rec).collect::<Vec<_>>());
}

#[test]
fn purge_past_the_end_keeps_the_active_segment_and_the_next_index() {
    let dir = FaultDir::new();
    let w = open(&dir).unwrap();
    append_each(&w, 1..=200);
    w.purge(1000).unwrap();
    let first = w.first_index().unwrap();
    assert!(first > 1);
    drop(w);
    let (_img, w) = reopen(&dir);
    let w = w.unwrap();
    assert_eq!(w.next_index(), Some(201));
    assert_eq!(w.first_index(), Some(first));
}

/// The last segment's file name and bytes, and where its last record starts and ends.
fn last_segment(dir: &FaultDir) -> (String, Vec<u8>, usize, usize) {
    let files = dir.files();
    let (name, bytes) = files
        .into_iter()
        .rfind(|(n, _)| n.ends_with(".wal"))
        .unwrap();
    let mut pos = SEGMENT_HEADER_LEN;
    let mut last = pos;
    while let Decoded::Valid(r) = decode_record(&bytes, pos) {
        last = pos;
        pos += record::framed_len(r.len as usize);
    }
    (name, bytes, last, pos)
}

#[test]
fn torn_last_record_is_cut_at_every_byte() {
    let dir = FaultDir::new();
    let w = open(&dir).unwrap();
    append_each(&w, 1..=6);
    w.append(vec![Record {
        index: 7,
        record_type: 1,
        payload: vec![0xEE; 60],
    }])
    .unwrap();
    drop(w);
    let (name, bytes, start, end) = last_segment(&dir);
    for cut in start..start + record::RECORD_HEADER_LEN + 60 {
        // The torn record keeps only its first `cut - start` bytes; the rest is zeros.
        let mut img = bytes.clone();
        img[cut..end].fill(0);
        let d = FaultDir::from_files([(name.clone(), img)]);
        let w = open(&d).unwrap_or_else(|e| panic!("cut {cut}: {e}"));
        assert_eq!(all(&w), (1..=6).map(rec).collect::<Vec<_>>(), "cut {cut}");
        // Counted once the torn record's seq field (7: one low byte at offset 8) is on disk.
        let counted = w.recovery_report().truncated_bytes > 0;
        assert_eq!(counted, cut > start + 8, "cut {cut}");
        // The log continues at 7 and the new record is read back, not the torn one.
        w.append(vec![rec(7)]).unwrap();
        drop(w);
        let (_img, w) = reopen(&d);
        assert_eq!(
            all(&w.unwrap()),
            (1..=7).map(rec).collect::<Vec<_>>(),
            "cut {cut}"
        );
    }
}

#[test]
fn corrupt_middle_record_is_an_error_naming_segment_and_offset() {
    let dir = FaultDir::new();
    let w = open(&dir).unwrap();
    append_each(&w, 1..=8);
    drop(w);
    let (name, mut bytes, _, _) = last_segment(&dir);
    // Record 3 (separately synced, so records after it vouch for it).
    let mut pos = SEGMENT_HEADER_LEN;
    for _ in 0..2 {
        let Decoded::Valid(r) = decode_record(&bytes, pos) else {
            panic!()
        };
        pos += record::framed_len(r.len as usize);
    }
    bytes[pos + 33] ^= 0x40;
    let d = FaultDir::from_files([(name.clone(), bytes)]);
    match open(&d) {
        Err(StorageError::Corrupted {
            location: Location::Segment { file, offset },
            ..
        }) => {
            assert_eq!(file, name);
            assert_eq!(offset, pos as u64);
        }
        other => panic!("expected corruption, got {other:?}"),
    }
}

#[test]
fn damaged_segment_header_is_an_error() {
    let dir = FaultDir::new();
    let w = open(&dir).unwrap();
    append_each(&w, 1..=3);
    drop(w);
    let (name, mut bytes, _, _) = last_segment(&dir);
    bytes[20] ^= 1;
    let d = FaultDir::from_files([(name, bytes)]);
    assert!(matches!(open(&d), Err(StorageError::Corrupted { .. })));
}

#[test]
fn zeroed_preallocated_tail_is_a_clean_end() {
    let dir = FaultDir::new();
    let w = open(&dir).unwrap();
    append_each(&w, 1..=3);
    drop(w);
    let (name, bytes, _, end) = last_segment(&dir);
    assert!(bytes[end..].iter().all(|&b| b == 0));
    assert_eq!(bytes.len() as u64, SEG);
    let w = open(&FaultDir::from_files([(name, bytes)])).unwrap();
    assert_eq!(w.recovery_report().truncated_bytes, 0);
    assert_eq!(w.last_index(), Some(3));
}

#[test]
fn stale_records_of_a_recycled_segment_are_never_read_as_new() {
    let dir = FaultDir::new();
    let w = open(&dir).unwrap();
    // Large records so that a recycled segment is full of old, well-formed records.
    let big = |i: u64| Record {
        index: i,
        record_type: 0,
        payload: vec![i as u8; 300],
    };
    for i in 1..=60 {
        w.append(vec![big(i)]).unwrap();
    }
    w.purge(61).unwrap();
    // Short records land in a recycled segment, leaving stale records after them.
    append_each(&w, 61..=70);
    let spares_used = dir.files().keys().filter(|n| n.ends_with(".spare")).count() < 2;
    assert!(spares_used || w.purge(71).unwrap() > 0);
    for i in 71..=150 {
        w.append(vec![rec(i)]).unwrap();
    }
    let last = w.last_index().unwrap();
    let first = w.first_index().unwrap();
    drop(w);
    let (_img, w) = reopen(&dir);
    let w = w.unwrap();
    assert_eq!(w.last_index(), Some(last));
    assert_eq!(all(&w).len() as u64, last - first + 1);
}

#[test]
fn unsynced_tail_of_valid_records_after_a_torn_one_is_cut_and_zeroed() {
    // A batch of 3 records, of which the first did not reach the disk but the others
    // did: they were never acknowledged, so the log ends before them, and they are zeroed
    // so that no later append can be followed by them.
    let dir = FaultDir::new();
    let w = open(&dir).unwrap();
    append_each(&w, 1..=2);
    drop(w);
    let (name, bytes, _, end) = last_segment(&dir);
    let (_img, w) = reopen(&dir);
    let w = w.unwrap();
    w.append(vec![rec(3), rec(4), rec(5)]).unwrap();
    drop(w);
    let (_, mut bytes2, _, end2) = last_segment(&_img);
    assert_eq!(bytes[..end], bytes2[..end]);
    bytes2[end..end + 8].fill(0); // record 3's crc and length never written
    let d = FaultDir::from_files([(name, bytes2)]);
    let w = open(&d).unwrap();
    assert_eq!(w.last_index(), Some(2));
    assert_eq!(w.recovery_report().truncated_bytes as usize, end2 - end);
    w.append(vec![rec(3)]).unwrap();
    drop(w);
    let (_img, w) = reopen(&d);
    assert_eq!(w.unwrap().last_index(), Some(3));
}

#[test]
fn a_failed_sync_fails_the_append_and_every_later_one() {
    let dir = FaultDir::new();
    let w = open(&dir).unwrap();
    w.append(vec![rec(1)]).unwrap();
    dir.fail_after(1); // the write succeeds, the fdatasync fails
    assert!(matches!(w.append(vec![rec(2)]), Err(StorageError::Io(_))));
    dir.heal();
    assert!(matches!(w.append(vec![rec(3)]), Err(StorageError::Closed)));
    assert!(matches!(w.truncate(1), Err(StorageError::Closed)));
}

#[test]
fn stray_files_are_ignored_and_temp_files_removed() {
    let dir = FaultDir::new();
    let w = open(&dir).unwrap();
    append_each(&w, 1..=3);
    drop(w);
    let mut files: Vec<(String, Vec<u8>)> = dir.files().into_iter().collect();
    files.push(("README".into(), b"hello".to_vec()));
    files.push((format!("{:016x}.tmp", 9), vec![1; 100]));
    // The first open may have left the next segment's preallocated `.tmp` too.
    let temps = files.iter().filter(|(n, _)| n.ends_with(".tmp")).count();
    assert!(temps >= 1);
    let d = FaultDir::from_files(files);
    let w = open(&d).unwrap();
    assert_eq!(w.last_index(), Some(3));
    assert_eq!(w.recovery_report().removed_files, temps);
    assert!(d.files().contains_key("README"));
    assert!(!d.files().contains_key(&format!("{:016x}.tmp", 9)));
    let _ = segment_name(1);
}

/// While a segment fills, the next one is zero-filled by a helper thread; the rollover
/// then starts it in that file. A crash in the middle of preallocating leaves a `.tmp`
/// that the next open removes, and nothing appended is lost.
#[test]
fn rollovers_start_in_segments_preallocated_ahead() {
    let dir = FaultDir::new();
    let w = open(&dir).unwrap();
    w.append(vec![rec(1)]).unwrap();
    let next_tmp = format!("{:016x}.tmp", 2);
    // Wait (bounded) for the helper thread to finish the file.
    let mut ready = false;
    for _ in 0..500 {
        if dir
            .files()
            .get(&next_tmp)
            .is_some_and(|f| f.len() as u64 == SEG)
        {
            ready = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(ready, "{:?}", dir.files().keys().collect::<Vec<_>>());
    // A crash now may leave the prepared file behind (its directory entry was never
    // synced): the open removes it and the log is intact.
    let img = dir.crash_image(CrashMode::DropAll, &mut TestRng::new(0));
    let left = img.files().contains_key(&next_tmp);
    let crashed = open(&img).unwrap();
    assert_eq!(all(&crashed), vec![rec(1)]);
    assert_eq!(crashed.recovery_report().removed_files, usize::from(left));
    drop(crashed);

    append_each(&w, 2..=300);
    let stats = w.stats();
    assert!(stats.rollovers >= 2, "{stats:?}");
    assert!(stats.preallocated >= 1, "{stats:?}");
    assert!(dir.files().contains_key(&segment_name(2)));
    drop(w);
    let (_img, w) = reopen(&dir);
    assert_eq!(all(&w.unwrap()), (1..=300).map(rec).collect::<Vec<_>>());
}

/// `append_inline` writes on the calling thread when the writer is idle and joins the
/// queue otherwise; either way records stay in order and are durable when acknowledged,
/// across rollovers (a 4 KiB segment holds a few dozen of these records).
#[test]
fn inline_and_queued_appends_keep_order_and_durability() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::mpsc;
    let dir = FaultDir::new();
    let w = open(&dir).unwrap();
    let (tx, rx) = mpsc::channel::<Result<()>>();
    let mut pending = 0;
    let mut ran_inline = 0;
    for i in 1..=300u64 {
        let t = tx.clone();
        let done: AppendCallback = Box::new(move |r| {
            let _ = t.send(r);
        });
        if i % 4 == 0 {
            // Several queued appends in a row: the next inline one finds them queued
            // or in flight and goes behind them.
            w.append_with(vec![rec(i)], done).unwrap();
            pending += 1;
            continue;
        }
        if i % 4 == 1 {
            // Let everything finish and the writer thread park.
            for _ in 0..pending {
                rx.recv().unwrap().unwrap();
            }
            pending = 0;
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let acked = Arc::new(AtomicBool::new(false));
        let a = acked.clone();
        let t = tx.clone();
        let caller = std::thread::current().id();
        w.append_inline(
            vec![rec(i)],
            Box::new(move |r| {
                a.store(std::thread::current().id() == caller, Ordering::SeqCst);
                let _ = t.send(r);
            }),
        )
        .unwrap();
        if acked.load(Ordering::SeqCst) {
            ran_inline += 1;
        }
        pending += 1;
    }
    for _ in 0..pending {
        rx.recv().unwrap().unwrap();
    }
    // Those after a pause find the writer parked (a busy machine may delay it).
    assert!(ran_inline >= 1, "no append ran on the calling thread");
    assert!(w.stats().inline >= ran_inline, "{:?}", w.stats());
    assert!(w.stats().rollovers >= 2, "{:?}", w.stats());
    assert!(
        w.append_inline(vec![rec(7)], Box::new(|_| {})).is_err(),
        "index 7 is taken"
    );
    // Every acknowledged record survives a crash that drops all unsynced writes.
    let img = dir.crash_image(CrashMode::DropAll, &mut TestRng::new(3));
    let crashed = open(&img).unwrap();
    assert_eq!(all(&crashed), (1..=300).map(rec).collect::<Vec<_>>());
    drop(crashed);
    drop(w);
    let (_img, w) = reopen(&dir);
    assert_eq!(all(&w.unwrap()), (1..=300).map(rec).collect::<Vec<_>>());
}

#[test]
fn a_failed_inline_sync_fails_the_append_and_every_later_one() {
    let dir = FaultDir::new();
    let w = open(&dir).unwrap();
    w.append(vec![rec(1)]).unwrap();
    // Let the writer thread park, so the next append is written by this thread.
    std::thread::sleep(std::time::Duration::from_millis(10));
    dir.fail_after(1); // the write succeeds, the fdatasync fails
    let (tx, rx) = std::sync::mpsc::channel();
    w.append_inline(
        vec![rec(2)],
        Box::new(move |r| {
            let _ = tx.send(r);
        }),
    )
    .unwrap();
    assert!(matches!(rx.recv().unwrap(), Err(StorageError::Io(_))));
    assert_eq!(w.stats().inline, 1, "the failed append was written inline");
    dir.heal();
    assert!(matches!(
        w.append_inline(vec![rec(3)], Box::new(|_| {})),
        Err(StorageError::Closed)
    ));
    assert!(matches!(w.append(vec![rec(3)]), Err(StorageError::Closed)));
    drop(w);
    let (_img, w) = reopen(&dir);
    assert_eq!(all(&w.unwrap()), vec![rec(1)]);
}
