//! Maintenance and Cluster services against the real binary.

#![allow(clippy::unwrap_used)]

mod common;

use common::MnemoProcess;
use mnemo_proto::etcdserverpb::alarm_request::AlarmAction;
use mnemo_proto::etcdserverpb::{
    AlarmRequest, AlarmType, CompactionRequest, DefragmentRequest, DeleteRangeRequest,
    HashKvRequest, MemberListRequest, PutRequest, RangeRequest, SnapshotRequest, StatusRequest,
};
use sha2::Digest;
use tonic::Code;

#[tokio::test]
async fn status_member_list_and_hash_kv() {
    let m = MnemoProcess::start(&[]);
    let mut maint = m.maintenance().await;
    let mut kv = m.kv().await;
    for i in 0..20 {
        kv.put(PutRequest {
            key: format!("s{i}").into(),
            value: b"v".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap();
    }
    let s = maint.status(StatusRequest {}).await.unwrap().into_inner();
    let header = s.header.unwrap();
    assert_eq!(s.leader, header.member_id);
    assert!(s.version.starts_with("3.4"));
    assert!(s.db_size > 0 && s.db_size_in_use > 0 && s.db_size_in_use <= s.db_size);
    assert!(s.raft_index >= 21 && s.raft_applied_index >= 21, "{s:?}");
    assert!(s.raft_term >= 1);
    assert!(!s.is_learner);

    let members = m
        .cluster()
        .await
        .member_list(MemberListRequest { linearizable: true })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(members.members.len(), 1);
    assert_eq!(members.members[0].id, header.member_id);
    assert_eq!(members.members[0].name, "default");
    assert_eq!(members.members[0].client_ur_ls, vec![m.client_url()]);

    // The same revision hashes the same; a later write changes the latest hash only.
    let h1 = maint
        .hash_kv(HashKvRequest { revision: 10 })
        .await
        .unwrap()
        .into_inner();
    let h2 = maint
        .hash_kv(HashKvRequest { revision: 10 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(h1.hash, h2.hash);
    let now1 = maint
        .hash_kv(HashKvRequest { revision: 0 })
        .await
        .unwrap()
        .into_inner();
    kv.put(PutRequest {
        key: b"s0".to_vec(),
        value: b"changed".to_vec(),
        ..Default::default()
    })
    .await
    .unwrap();
    let now2 = maint
        .hash_kv(HashKvRequest { revision: 0 })
        .await
        .unwrap()
        .into_inner();
    assert_ne!(now1.hash, now2.hash);
    assert_eq!(
        maint
            .hash_kv(HashKvRequest { revision: 10 })
            .await
            .unwrap()
            .into_inner()
            .hash,
        h1.hash
    );
}

#[tokio::test]
async fn defragment_keeps_data_and_snapshot_streams_the_file_with_its_digest() {
    let m = MnemoProcess::start(&[]);
    let mut maint = m.maintenance().await;
    let mut kv = m.kv().await;
    for i in 0..300 {
        kv.put(PutRequest {
            key: format!("d{i:04}").into(),
            value: vec![b'x'; 1000],
            ..Default::default()
        })
        .await
        .unwrap();
    }
    let r = kv
        .delete_range(DeleteRangeRequest {
            key: b"d0000".to_vec(),
            range_end: b"d0250".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    kv.compact(CompactionRequest {
        revision: r.header.unwrap().revision,
        physical: true,
    })
    .await
    .unwrap();
    let before = maint.status(StatusRequest {}).await.unwrap().into_inner();
    maint.defragment(DefragmentRequest {}).await.unwrap();
    let after = maint.status(StatusRequest {}).await.unwrap().into_inner();
    assert!(
        after.db_size <= before.db_size,
        "{} -> {}",
        before.db_size,
        after.db_size
    );
    let left = kv
        .range(RangeRequest {
            key: b"d".to_vec(),
            range_end: b"e".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(left.count, 50);

    let mut stream = maint
        .snapshot(SnapshotRequest {})
        .await
        .unwrap()
        .into_inner();
    let mut chunks = Vec::new();
    while let Some(msg) = stream.message().await.unwrap() {
        chunks.push(msg);
    }
    assert!(chunks.len() >= 2);
    let (digest, data) = chunks.split_last().unwrap();
    let body: Vec<u8> = data.iter().flat_map(|c| c.blob.clone()).collect();
    assert_eq!(data.last().unwrap().remaining_bytes, 0);
    assert_eq!(
        data[0].remaining_bytes as usize + data[0].blob.len(),
        body.len()
    );
    assert_eq!(digest.blob, sha2::Sha256::digest(&body).to_vec());
    // The snapshot is a page file that opens and holds the same keys.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("snap.db");
    std::fs::write(&path, &body).unwrap();
    let db = mnemo_storage::Database::open_path(&path, Default::default()).unwrap();
    assert!(db.check().unwrap().problems.is_empty());
}

#[tokio::test]
async fn the_space_quota_raises_nospace_until_disarmed() {
    let m = MnemoProcess::start(&["--quota-backend-bytes", "1048576"]);
    let mut kv = m.kv().await;
    let mut maint = m.maintenance().await;
    let mut refused = None;
    for i in 0..400 {
        let r = kv
            .put(PutRequest {
                key: format!("q{i:04}").into(),
                value: vec![b'q'; 8000],
                ..Default::default()
            })
            .await;
        if let Err(e) = r {
            refused = Some(e);
            break;
        }
    }
    let e = refused.expect("the quota was never reached");
    assert_eq!(
        (e.code(), e.message()),
        (
            Code::ResourceExhausted,
            "etcdserver: mvcc: database space exceeded"
        )
    );
    let alarms = maint
        .alarm(AlarmRequest {
            action: AlarmAction::Get as i32,
            member_id: 0,
            alarm: AlarmType::None as i32,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(alarms.alarms.len(), 1);
    assert_eq!(alarms.alarms[0].alarm, AlarmType::Nospace as i32);
    // Small writes fail too while the alarm is raised; deletes still work.
    let e = kv
        .put(PutRequest {
            key: b"tiny".to_vec(),
            value: b"t".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted);
    let status = maint.status(StatusRequest {}).await.unwrap().into_inner();
    assert!(
        status.errors.iter().any(|e| e.contains("NOSPACE")),
        "{:?}",
        status.errors
    );
    let d = kv
        .delete_range(DeleteRangeRequest {
            key: b"q".to_vec(),
            range_end: b"r".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    kv.compact(CompactionRequest {
        revision: d.header.unwrap().revision,
        physical: true,
    })
    .await
    .unwrap();
    maint.defragment(DefragmentRequest {}).await.unwrap();
    let status = maint.status(StatusRequest {}).await.unwrap().into_inner();
    assert!(
        status.db_size < 1048576,
        "defragment left {} bytes",
        status.db_size
    );
    maint
        .alarm(AlarmRequest {
            action: AlarmAction::Deactivate as i32,
            member_id: alarms.alarms[0].member_id,
            alarm: AlarmType::Nospace as i32,
        })
        .await
        .unwrap();
    kv.put(PutRequest {
        key: b"tiny".to_vec(),
        value: b"t".to_vec(),
        ..Default::default()
    })
    .await
    .unwrap();
}
