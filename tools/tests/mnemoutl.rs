//! mnemoutl against page files and WALs written by a real member, and against damaged
//! copies of them.

#![allow(clippy::unwrap_used)]

mod member;

use std::path::{Path, PathBuf};

use clap::Parser;
use member::Member;
use mnemo_proto::etcdserverpb::{
    CompactionRequest, DeleteRangeRequest, LeaseGrantRequest, PutRequest, RangeRequest,
    SnapshotRequest,
};
use mnemo_tools::mnemoutl::{run, Cli, Report};
use serde_json::Value;
use tempfile::TempDir;

/// Runs mnemoutl with `args` (after the program name).
fn tool(args: &[&str]) -> Result<Report, String> {
    let cli = Cli::try_parse_from(std::iter::once("mnemoutl").chain(args.iter().copied()))
        .map_err(|e| e.to_string())?;
    run(&cli).map_err(|e| e.to_string())
}

fn tool_ok(args: &[&str]) -> Report {
    match tool(args) {
        Ok(r) => r,
        Err(e) => panic!("mnemoutl {args:?}: {e}"),
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

async fn put(m: &Member, key: &str, value: Vec<u8>, lease: i64) {
    let mut kv = m.kv().await;
    kv.put(PutRequest {
        key: key.as_bytes().to_vec(),
        value,
        lease,
        ..Default::default()
    })
    .await
    .unwrap();
}

const LEASE: i64 = 0x1234;

/// A data directory written by a member: 500 puts, a 20 KB value (overflow pages), a
/// leased key, a range delete of 100 keys, a key put again after its delete, and a
/// physical compaction. Returns the directory and the member's last revision.
async fn populated() -> (TempDir, i64) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let m = Member::start(&data, &[]).await;
    for i in 0..500 {
        put(&m, &format!("k{i:04}"), vec![b'v'; 100], 0).await;
    }
    put(&m, "big", vec![7u8; 20_000], 0).await;
    let mut lease = m.lease().await;
    lease
        .lease_grant(LeaseGrantRequest {
            ttl: 600,
            id: LEASE,
        })
        .await
        .unwrap();
    put(&m, "leased", b"x".to_vec(), LEASE).await;
    let mut kv = m.kv().await;
    kv.delete_range(DeleteRangeRequest {
        key: b"k0000".to_vec(),
        range_end: b"k0100".to_vec(),
        ..Default::default()
    })
    .await
    .unwrap();
    put(&m, "k0001", b"again".to_vec(), 0).await;
    let rev = m.revision().await;
    kv.compact(CompactionRequest {
        revision: rev - 50,
        physical: true,
    })
    .await
    .unwrap();
    m.stop().await;
    (dir, rev)
}

fn data_dir(dir: &TempDir) -> PathBuf {
    dir.path().join("data")
}

fn db_file(dir: &TempDir) -> PathBuf {
    data_dir(dir).join("member").join("db")
}

/// Flips one byte of page `page` of the page file at `path`.
fn damage_page(path: &Path, page: u64, page_size: u64) {
    let mut bytes = std::fs::read(path).unwrap();
    let at = (page * page_size + 200) as usize;
    bytes[at] ^= 0x5a;
    std::fs::write(path, bytes).unwrap();
}

/// The first page of `table` with `kind` in `inspect pages --json`.
fn find_page(pages: &Value, table: &str, kind: &str) -> u64 {
    pages["pages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["tree"] == table && p["kind"] == kind)
        .and_then(|p| p["page"].as_u64())
        .unwrap_or_else(|| panic!("no {kind} page of {table}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_info_pages_tables_stats() {
    let (dir, _) = populated().await;
    let d = data_dir(&dir);

    let info = tool_ok(&["--json", "inspect", "info", s(&d)]);
    assert!(info.ok);
    assert_eq!(info.json["page_size"], 4096);
    let slots = info.json["slots"].as_array().unwrap();
    assert_eq!(slots.len(), 2);
    let newest: Vec<&Value> = slots.iter().filter(|s| s["newest"] == true).collect();
    assert_eq!(newest.len(), 1);
    assert_eq!(newest[0]["txn"], info.json["opens_at_txn"]);
    let file_size = info.json["file_size"].as_u64().unwrap();
    assert_eq!(file_size, std::fs::metadata(db_file(&dir)).unwrap().len());
    assert!(info.text.contains("page size:     4096"), "{}", info.text);

    let pages = tool_ok(&["--json", "inspect", "pages", s(&d)]);
    assert!(pages.ok);
    let rows = pages.json["pages"].as_array().unwrap();
    assert_eq!(
        rows.len() as u64,
        pages.json["page_count"].as_u64().unwrap()
    );
    for r in rows {
        assert!(r["problem"].is_null(), "page problem on a sound file: {r}");
    }
    // 20,000 bytes need five overflow pages of the kv table.
    let overflow = rows
        .iter()
        .filter(|r| r["tree"] == "kv" && r["kind"] == "overflow")
        .count();
    assert!(overflow >= 5, "{overflow} overflow pages");
    assert!(rows
        .iter()
        .any(|r| r["tree"] == "kv" && r["kind"] == "branch"));

    let tables = tool_ok(&["--json", "inspect", "tables", s(&d)]);
    let names: Vec<&str> = tables.json["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["table"].as_str().unwrap())
        .collect();
    for t in ["alarm", "kv", "lease", "meta"] {
        assert!(names.contains(&t), "{names:?}");
    }

    let stats = tool_ok(&["--json", "inspect", "stats", s(&d)]);
    let fill = stats.json["fill_factor"].as_f64().unwrap();
    assert!(fill > 0.2 && fill <= 1.0, "fill {fill}");
    assert!(stats.json["max_depth"].as_u64().unwrap() >= 2);
    let leaf = stats.json["leaf_pages"].as_u64().unwrap();
    let kv_row = stats.json["trees"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["tree"] == "kv")
        .unwrap()
        .clone();
    assert!(kv_row["pages"].as_u64().unwrap() <= leaf + overflow as u64 + 10);
    assert!(stats.text.contains("fill factor"), "{}", stats.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_page_and_keys_decode_mvcc() {
    let (dir, rev) = populated().await;
    let d = data_dir(&dir);
    let pages = tool_ok(&["--json", "inspect", "pages", s(&d)]);
    let leaf = find_page(&pages.json, "kv", "leaf");
    let page = tool_ok(&[
        "--json",
        "inspect",
        "page",
        s(&d),
        &leaf.to_string(),
        "--raw",
    ]);
    assert_eq!(page.json["tree"], "kv");
    let entries = page.json["content"]["entries"].as_array().unwrap();
    assert!(!entries.is_empty());
    assert!(
        entries[0]["key"].as_str().unwrap().starts_with("rev "),
        "{}",
        entries[0]
    );
    assert_eq!(page.json["hex"].as_str().unwrap().len(), 2 * 4096);
    let branch = find_page(&pages.json, "kv", "branch");
    let b = tool_ok(&["inspect", "page", s(&d), &branch.to_string()]);
    assert!(b.text.contains("children:"), "{}", b.text);
    assert!(tool(&["inspect", "page", s(&d), "0"]).is_err());
    assert!(tool(&["inspect", "page", s(&d), "99999999"]).is_err());

    let keys = tool_ok(&["--json", "inspect", "keys", s(&d), "kv"]);
    assert!(keys.ok);
    let rows = keys.json["rows"].as_array().unwrap();
    let k1: Vec<&Value> = rows.iter().filter(|r| r["key"] == "k0001").collect();
    // Compaction keeps the delete of k0001 only if it is above the compacted revision:
    // here it is (50 revisions back), so the key has its tombstone and the new put.
    let last = k1.last().unwrap();
    assert_eq!(last["kind"], "put");
    assert_eq!(last["version"], 1);
    assert_eq!(last["mod_revision"], rev);
    assert_eq!(last["create_revision"], rev);
    let leased = rows.iter().find(|r| r["key"] == "leased").unwrap();
    assert_eq!(leased["lease"], LEASE);
    let big = rows.iter().find(|r| r["key"] == "big").unwrap();
    assert_eq!(big["value_size"], 20_000);

    let leases = tool_ok(&["--json", "inspect", "keys", s(&d), "lease"]);
    assert_eq!(leases.json["rows"][0]["id"], LEASE);
    assert_eq!(leases.json["rows"][0]["ttl"], 600);
    let meta = tool_ok(&["inspect", "keys", s(&d), "meta"]);
    assert!(
        meta.text.contains(&format!("mvcc/current_revision  {rev}")),
        "{}",
        meta.text
    );
    let limited = tool_ok(&["inspect", "keys", s(&d), "kv", "--limit", "3"]);
    assert_eq!(limited.text.lines().count(), 4, "{}", limited.text);
    assert!(tool(&["inspect", "keys", s(&d), "no-such-table"]).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_passes_a_sound_file_and_names_damage() {
    let (dir, rev) = populated().await;
    let d = data_dir(&dir);
    let ok = tool_ok(&["--json", "check", s(&d)]);
    assert!(ok.ok, "{}", ok.text);
    assert_eq!(ok.json["mvcc"]["current_revision"], rev);
    assert_eq!(ok.json["mvcc"]["compact_revision"], rev - 50);
    // 400 k-keys left, k0001 put again, big, leased.
    assert_eq!(ok.json["mvcc"]["live_keys"], 403);

    // A damaged leaf: named by page number.
    let pages = tool_ok(&["--json", "inspect", "pages", s(&d)]);
    let leaf = find_page(&pages.json, "kv", "leaf");
    let copy = dir.path().join("damaged.db");
    std::fs::copy(db_file(&dir), &copy).unwrap();
    damage_page(&copy, leaf, 4096);
    let bad = tool(&["check", s(&copy)]);
    let text = match bad {
        Ok(r) => {
            assert!(!r.ok);
            r.text
        }
        Err(e) => e,
    };
    assert!(text.contains(&format!("page {leaf}")), "{text}");
    let pages = tool_ok(&["--json", "inspect", "pages", s(&copy)]);
    let row = &pages.json["pages"][leaf as usize];
    assert!(
        row["problem"].as_str().unwrap_or("").contains("checksum"),
        "{row}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_finds_history_that_breaks_mvcc_rules() {
    use mnemo::mvcc::record::{Record, KV_TABLE};
    use mnemo::mvcc::Revision;
    use mnemo_storage::{Database, DatabaseOptions, Durability};

    let (dir, rev) = populated().await;
    // A copy with the newest revision's record removed (a gap at the end) and a put whose
    // version does not follow its key's previous one.
    let copy = dir.path().join("edited.db");
    std::fs::copy(db_file(&dir), &copy).unwrap();
    {
        let db = Database::open_path(&copy, DatabaseOptions::default()).unwrap();
        let mut w = db.begin_write().unwrap();
        let mut kv = w.open_table(KV_TABLE).unwrap();
        assert!(kv.remove(&Revision::new(rev, 0).encode()).unwrap());
        let r = Revision::new(rev - 1, 1);
        kv.insert(
            &r.encode(),
            &Record::put(b"k0300", b"z", 3, 99, 0).encode(r),
        )
        .unwrap();
        drop(kv);
        w.commit(Durability::Durable).unwrap();
    }
    let r = tool_ok(&["check", s(&copy)]);
    assert!(!r.ok);
    assert!(
        r.text.contains(&format!(
            "history ends at revision {} but the current revision is {rev}",
            rev - 1
        )),
        "{}",
        r.text
    );
    assert!(r.text.contains("key k0300 at revision"), "{}", r.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn defrag_shrinks_and_the_member_restarts_on_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let m = Member::start(&data, &[]).await;
    for i in 0..3000 {
        put(&m, &format!("key{i:05}"), vec![b'x'; 400], 0).await;
    }
    let mut kv = m.kv().await;
    let del = kv
        .delete_range(DeleteRangeRequest {
            key: b"key00100".to_vec(),
            range_end: b"key99999".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(del.deleted, 2900);
    let rev = del.header.unwrap().revision;
    kv.compact(CompactionRequest {
        revision: rev,
        physical: true,
    })
    .await
    .unwrap();
    let args = m.args.clone();
    m.stop().await;

    let r = tool_ok(&["--json", "defrag", s(&data)]);
    let (before, after) = (
        r.json["size_before"].as_u64().unwrap(),
        r.json["size_after"].as_u64().unwrap(),
    );
    assert!(after * 3 < before, "defrag {before} -> {after}");
    assert_eq!(
        std::fs::metadata(data.join("member/db")).unwrap().len(),
        after
    );
    assert!(!data.join("member/db.defrag").exists());
    assert!(tool_ok(&["check", s(&data)]).ok);

    // The same flags (the member id follows from the peer URLs).
    let m = Member::start_with(&data, args).await;
    let mut kv = m.kv().await;
    let got = kv
        .range(RangeRequest {
            key: b"key".to_vec(),
            range_end: b"kez".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.count, 100);
    assert_eq!(got.header.unwrap().revision, rev);
    put(&m, "after", b"defrag".to_vec(), 0).await;
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_member_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let m = Member::start(&data, &[]).await;
    for args in [
        vec!["check", s(&data)],
        vec!["defrag", s(&data)],
        vec!["inspect", "info", s(&data)],
        vec!["inspect", "wal", s(&data)],
    ] {
        let e = tool(&args).expect_err("refused while the member runs");
        assert!(e.contains("stop the member"), "{args:?}: {e}");
    }
    m.stop().await;
    assert!(tool_ok(&["check", s(&data)]).ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wal_lists_segments_and_entries() {
    let (dir, _) = populated().await;
    let d = data_dir(&dir);
    let r = tool_ok(&["--json", "inspect", "wal", s(&d), "--records"]);
    assert!(r.ok, "{}", r.text);
    let seg = &r.json["segments"][0];
    assert!(seg["entries"].as_u64().unwrap() > 10);
    assert!(
        seg["end"].as_str().unwrap().starts_with("zero-filled"),
        "{seg}"
    );
    assert!(r.text.contains("put k0042 (100 bytes)"), "{}", r.text);
    assert!(r.text.contains("lease grant 1234 ttl 600"), "{}", r.text);
    assert!(r.text.contains("membership: voters"), "{}", r.text);
    let first = &seg["records"][0];
    assert!(first["crc"].as_u64().unwrap() > 0, "{first}");

    // A damaged record in the middle of a copy of the segment.
    let wal = d.join("member/wal");
    let name = std::fs::read_dir(&wal)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.ends_with(".wal"))
        .unwrap();
    let copy = dir.path().join("walcopy");
    std::fs::create_dir(&copy).unwrap();
    let mut bytes = std::fs::read(wal.join(&name)).unwrap();
    bytes[64 + 40] ^= 0xff;
    std::fs::write(copy.join(&name), bytes).unwrap();
    let r = tool_ok(&["inspect", "wal", s(&copy)]);
    assert!(
        r.text.contains("no valid record at offset 64"),
        "{}",
        r.text
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn map_draws_every_page() {
    let (dir, _) = populated().await;
    let out = dir.path().join("map.svg");
    let r = tool_ok(&["--json", "map", s(&data_dir(&dir)), "--output", s(&out)]);
    let svg = std::fs::read_to_string(&out).unwrap();
    assert!(svg.starts_with("<svg"));
    assert!(svg.trim_end().ends_with("</svg>"));
    assert!(
        svg.contains(">kv leaf</text>"),
        "legend names the kv leaves"
    );
    let pages = r.json["pages"].as_u64().unwrap();
    assert_eq!(svg.matches("<title>").count() as u64, pages);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_status_and_restore_into_a_new_member() {
    use futures_util::StreamExt;

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let m = Member::start(&data, &[]).await;
    for i in 0..200 {
        put(
            &m,
            &format!("snap{i:03}"),
            format!("value {i}").into_bytes(),
            0,
        )
        .await;
    }
    let rev = m.revision().await;
    let mut stream = m
        .maintenance()
        .await
        .snapshot(SnapshotRequest {})
        .await
        .unwrap()
        .into_inner();
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        bytes.extend(chunk.unwrap().blob);
    }
    m.stop().await;
    let snap = dir.path().join("snapshot.db");
    std::fs::write(&snap, &bytes).unwrap();

    let st = tool_ok(&["--json", "snapshot", "status", s(&snap)]);
    assert_eq!(st.json["revision"], rev);
    let tables = tool_ok(&["--json", "inspect", "tables", s(&snap)]);
    let entries: u64 = tables.json["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["entries"].as_u64().unwrap())
        .sum();
    assert!(entries > 200, "200 history records and the meta entries");
    assert_eq!(st.json["totalKey"], entries);
    assert_eq!(st.json["totalSize"], bytes.len() as u64);

    let restored = dir.path().join("restored");
    let peer = "http://127.0.0.1:23800";
    let cluster = format!("m1={peer}");
    let args = [
        "snapshot",
        "restore",
        s(&snap),
        "--data-dir",
        s(&restored),
        "--name",
        "m1",
        "--initial-cluster",
        &cluster,
        "--initial-advertise-peer-urls",
        peer,
    ];
    tool_ok(&args);
    // etcdutl's refusal to overwrite.
    let again = tool(&args).expect_err("exists");
    assert!(again.contains("exists"), "{again}");
    // A name not in the cluster is refused before anything is written.
    let other = dir.path().join("other");
    assert!(tool(&[
        "snapshot",
        "restore",
        s(&snap),
        "--data-dir",
        s(&other),
        "--name",
        "m9",
        "--initial-cluster",
        &cluster,
        "--initial-advertise-peer-urls",
        peer,
    ])
    .is_err());
    assert!(!other.exists());

    let client = format!("http://127.0.0.1:{}", {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    });
    let m = Member::start_with(
        &restored,
        vec![
            "mnemo".into(),
            "--name=m1".into(),
            format!("--data-dir={}", restored.display()),
            format!("--listen-client-urls={client}"),
            format!("--advertise-client-urls={client}"),
            format!("--listen-peer-urls={peer}"),
            format!("--initial-advertise-peer-urls={peer}"),
            format!("--initial-cluster={cluster}"),
        ],
    )
    .await;
    let mut kv = m.kv().await;
    let got = kv
        .range(RangeRequest {
            key: b"snap".to_vec(),
            range_end: b"snaq".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.count, 200);
    assert_eq!(got.kvs[7].value, b"value 7");
    assert_eq!(got.header.as_ref().unwrap().revision, rev);
    put(&m, "after-restore", b"1".to_vec(), 0).await;
    let next = kv
        .range(RangeRequest {
            key: b"after-restore".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next.kvs[0].mod_revision, rev + 1);
    m.stop().await;
}

/// Every read-only subcommand on truncated and randomly damaged copies: a report or an
/// error, never a panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_files_never_panic() {
    let (dir, _) = populated().await;
    let original = std::fs::read(db_file(&dir)).unwrap();
    let wal = data_dir(&dir).join("member/wal");
    let segment = std::fs::read_dir(&wal)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "wal"))
        .unwrap();
    let wal_original = std::fs::read(&segment).unwrap();
    let wal_copy = dir.path().join("fuzzed-wal");
    std::fs::create_dir(&wal_copy).unwrap();
    let wal_file = wal_copy.join(segment.file_name().unwrap());
    let copy = dir.path().join("fuzzed.db");
    let out = dir.path().join("fuzzed.svg");
    let mut seed = 0x9e3779b97f4a7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for round in 0..30 {
        let mut bytes = original.clone();
        if round % 4 == 0 {
            let len = (next() as usize) % bytes.len();
            bytes.truncate(len);
        } else {
            for _ in 0..(1 + next() % 8) {
                let at = (next() as usize) % bytes.len();
                bytes[at] = next() as u8;
            }
        }
        std::fs::write(&copy, &bytes).unwrap();
        // The same damage to the WAL segment, within its written part.
        let mut seg = wal_original.clone();
        let used = wal_original.iter().rposition(|&b| b != 0).unwrap_or(0) + 1;
        if round % 4 == 0 {
            seg.truncate((next() as usize) % used);
        } else {
            for _ in 0..(1 + next() % 8) {
                let at = (next() as usize) % used;
                seg[at] = next() as u8;
            }
        }
        std::fs::write(&wal_file, &seg).unwrap();
        let _ = tool(&["inspect", "wal", s(&wal_copy), "--records"]);
        let p = s(&copy);
        for args in [
            vec!["inspect", "info", p],
            vec!["inspect", "pages", p],
            vec!["inspect", "page", p, "1"],
            vec!["inspect", "page", p, "5", "--raw"],
            vec!["inspect", "tables", p],
            vec!["inspect", "keys", p, "kv"],
            vec!["inspect", "stats", p],
            vec!["check", p],
            vec!["snapshot", "status", p],
            vec!["map", p, "--output", s(&out)],
        ] {
            let _ = tool(&args);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_table_is_decoded_without_password_hashes() {
    use mnemo_proto::authpb::{permission::Type, Permission};
    use mnemo_proto::etcdserverpb::auth_client::AuthClient;
    use mnemo_proto::etcdserverpb::{
        AuthRoleAddRequest, AuthRoleGrantPermissionRequest, AuthUserAddRequest,
        AuthUserGrantRoleRequest,
    };

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let m = Member::start(&data, &[]).await;
    let ch = tonic::transport::Channel::from_shared(m.client_url.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut auth = AuthClient::new(ch);
    auth.user_add(AuthUserAddRequest {
        name: "alice".into(),
        password: "secret-pw".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    auth.role_add(AuthRoleAddRequest {
        name: "reader".into(),
    })
    .await
    .unwrap();
    auth.role_grant_permission(AuthRoleGrantPermissionRequest {
        name: "reader".into(),
        perm: Some(Permission {
            perm_type: Type::Read as i32,
            key: b"app/".to_vec(),
            range_end: b"app0".to_vec(),
        }),
    })
    .await
    .unwrap();
    auth.user_grant_role(AuthUserGrantRoleRequest {
        user: "alice".into(),
        role: "reader".into(),
    })
    .await
    .unwrap();
    m.stop().await;

    let r = tool_ok(&["inspect", "keys", s(&data), "auth"]);
    assert!(r.ok, "{}", r.text);
    assert!(
        r.text
            .contains("user alice  roles [reader]  password set (hashed)"),
        "{}",
        r.text
    );
    assert!(
        r.text
            .contains("role reader  permissions [READ [app/, app0)]"),
        "{}",
        r.text
    );
    assert!(r.text.contains("auth enabled false"), "{}", r.text);
    assert!(
        !r.text.contains("secret-pw") && !r.text.contains("$2"),
        "{}",
        r.text
    );
    assert!(tool_ok(&["check", s(&data)]).ok);
}
