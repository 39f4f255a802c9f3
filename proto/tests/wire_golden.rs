//! Golden wire-format tests.
//!
//! Each expected byte string below was written by hand from etcd's field
//! numbers and protobuf wire types (tag byte = field_number << 3 | wire_type;
//! wire type 0 = varint, 2 = length-delimited). A wrong field number, a wrong
//! scalar type (e.g. sint64 instead of int64) or a wrong enum value in the
//! .proto files makes these fail.

use mnemo_proto::etcdserverpb::{
    compare, range_request, request_op, watch_create_request, watch_request, Compare,
    DeleteRangeRequest, LeaseTimeToLiveResponse, PutRequest, RangeRequest, RequestOp,
    ResponseHeader, StatusResponse, TxnRequest, WatchCancelRequest, WatchCreateRequest,
    WatchProgressRequest, WatchRequest,
};
use mnemo_proto::mvccpb::{event, Event, KeyValue};
use mnemo_proto::{authpb, v3electionpb, v3lockpb};
use prost::Message;

/// Encodes `msg`, checks the bytes, and checks that the bytes decode back to `msg`.
fn assert_wire<M: Message + Default + PartialEq + std::fmt::Debug>(msg: &M, expected: &[u8]) {
    let encoded = msg.encode_to_vec();
    assert_eq!(
        encoded, expected,
        "encoding of {msg:?}\n got:  {encoded:02x?}\n want: {expected:02x?}"
    );
    assert_eq!(msg.encoded_len(), expected.len());
    let decoded = M::decode(expected).expect("golden bytes decode");
    assert_eq!(&decoded, msg);
}

#[test]
fn put_request_with_lease_and_prev_kv() {
    let msg = PutRequest {
        key: b"foo".to_vec(),
        value: b"bar".to_vec(),
        lease: 0x1234,
        prev_kv: true,
        ignore_value: false,
        ignore_lease: true,
    };
    #[rustfmt::skip]
    let expected = [
        0x0a, 0x03, b'f', b'o', b'o', // 1 key: bytes, len 3
        0x12, 0x03, b'b', b'a', b'r', // 2 value: bytes, len 3
        0x18, 0xb4, 0x24,             // 3 lease: varint 0x1234 = 4660
        0x20, 0x01,                   // 4 prev_kv: true
                                      // 5 ignore_value: false, omitted
        0x30, 0x01,                   // 6 ignore_lease: true
    ];
    assert_wire(&msg, &expected);
}

#[test]
fn put_request_ignore_value() {
    let msg = PutRequest {
        key: b"k".to_vec(),
        ignore_value: true,
        ..Default::default()
    };
    #[rustfmt::skip]
    let expected = [
        0x0a, 0x01, b'k', // 1 key
        0x28, 0x01,       // 5 ignore_value: true
    ];
    assert_wire(&msg, &expected);
}

#[test]
fn range_request_with_sort_limit_revision_keys_only() {
    let msg = RangeRequest {
        key: b"a".to_vec(),
        range_end: b"b".to_vec(),
        limit: 10,
        revision: 300,
        sort_order: range_request::SortOrder::Descend as i32,
        sort_target: range_request::SortTarget::Mod as i32,
        serializable: true,
        keys_only: true,
        count_only: false,
        min_mod_revision: 5,
        max_mod_revision: 0,
        min_create_revision: 0,
        max_create_revision: 7,
    };
    #[rustfmt::skip]
    let expected = [
        0x0a, 0x01, b'a', // 1 key
        0x12, 0x01, b'b', // 2 range_end
        0x18, 0x0a,       // 3 limit: 10
        0x20, 0xac, 0x02, // 4 revision: 300 (0x2c | 0x80, 300 >> 7 = 2)
        0x28, 0x02,       // 5 sort_order: DESCEND = 2
        0x30, 0x03,       // 6 sort_target: MOD = 3
        0x38, 0x01,       // 7 serializable: true
        0x40, 0x01,       // 8 keys_only: true
                          // 9 count_only: false, omitted
        0x50, 0x05,       // 10 min_mod_revision: 5 (10 << 3 = 0x50)
                          // 11, 12 zero, omitted
        0x68, 0x07,       // 13 max_create_revision: 7 (13 << 3 = 0x68)
    ];
    assert_wire(&msg, &expected);
}

#[test]
fn range_request_count_only_and_other_filters() {
    let msg = RangeRequest {
        key: vec![0],
        range_end: vec![0],
        sort_order: range_request::SortOrder::Ascend as i32,
        sort_target: range_request::SortTarget::Value as i32,
        count_only: true,
        max_mod_revision: 1,
        min_create_revision: 2,
        ..Default::default()
    };
    #[rustfmt::skip]
    let expected = [
        0x0a, 0x01, 0x00, // 1 key: "\0"
        0x12, 0x01, 0x00, // 2 range_end: "\0"
        0x28, 0x01,       // 5 sort_order: ASCEND = 1
        0x30, 0x04,       // 6 sort_target: VALUE = 4
        0x48, 0x01,       // 9 count_only: true
        0x58, 0x01,       // 11 max_mod_revision: 1
        0x60, 0x02,       // 12 min_create_revision: 2
    ];
    assert_wire(&msg, &expected);
}

fn cmp(
    result: compare::CompareResult,
    target: compare::CompareTarget,
    union: compare::TargetUnion,
) -> Compare {
    Compare {
        result: result as i32,
        target: target as i32,
        key: b"k".to_vec(),
        range_end: Vec::new(),
        target_union: Some(union),
    }
}

fn op(request: request_op::Request) -> RequestOp {
    RequestOp {
        request: Some(request),
    }
}

#[test]
fn txn_request_with_every_compare_target_and_nested_txn() {
    use compare::{CompareResult as R, CompareTarget as T, TargetUnion as U};
    let mut with_range = cmp(R::Equal, T::Lease, U::Lease(5));
    with_range.range_end = b"l".to_vec();
    let msg = TxnRequest {
        compare: vec![
            // version == 0 ("key does not exist"): a oneof arm is sent even when zero.
            cmp(R::Equal, T::Version, U::Version(0)),
            cmp(R::Greater, T::Create, U::CreateRevision(2)),
            cmp(R::Less, T::Mod, U::ModRevision(3)),
            cmp(R::NotEqual, T::Value, U::Value(b"v".to_vec())),
            with_range,
        ],
        success: vec![
            op(request_op::Request::RequestPut(PutRequest {
                key: b"k".to_vec(),
                value: b"v".to_vec(),
                ..Default::default()
            })),
            op(request_op::Request::RequestTxn(TxnRequest {
                compare: vec![],
                success: vec![op(request_op::Request::RequestRange(RangeRequest {
                    key: b"k".to_vec(),
                    ..Default::default()
                }))],
                failure: vec![op(request_op::Request::RequestDeleteRange(
                    DeleteRangeRequest {
                        key: b"k".to_vec(),
                        range_end: Vec::new(),
                        prev_kv: true,
                    },
                ))],
            })),
        ],
        failure: vec![op(request_op::Request::RequestRange(RangeRequest {
            key: b"k".to_vec(),
            range_end: b"l".to_vec(),
            ..Default::default()
        }))],
    };
    #[rustfmt::skip]
    let expected = [
        // TxnRequest.compare (1), Compare #1, len 5
        0x0a, 0x05,
            // result EQUAL (0) and target VERSION (0) are defaults, omitted
            0x1a, 0x01, b'k',   // 3 key
            0x20, 0x00,         // 4 version: 0 (oneof arm present)
        // compare (1), Compare #2, len 9
        0x0a, 0x09,
            0x08, 0x01,         // 1 result: GREATER = 1
            0x10, 0x01,         // 2 target: CREATE = 1
            0x1a, 0x01, b'k',   // 3 key
            0x28, 0x02,         // 5 create_revision: 2
        // compare (1), Compare #3, len 9
        0x0a, 0x09,
            0x08, 0x02,         // 1 result: LESS = 2
            0x10, 0x02,         // 2 target: MOD = 2
            0x1a, 0x01, b'k',   // 3 key
            0x30, 0x03,         // 6 mod_revision: 3
        // compare (1), Compare #4, len 10
        0x0a, 0x0a,
            0x08, 0x03,         // 1 result: NOT_EQUAL = 3
            0x10, 0x03,         // 2 target: VALUE = 3
            0x1a, 0x01, b'k',   // 3 key
            0x3a, 0x01, b'v',   // 7 value: bytes
        // compare (1), Compare #5, len 11
        0x0a, 0x0b,
            0x10, 0x04,         // 2 target: LEASE = 4
            0x1a, 0x01, b'k',   // 3 key
            // Fields go out in field-number order, as etcd's Go encoder
            // writes them: the oneof arm (8) before range_end (64).
            0x40, 0x05,         // 8 lease: 5
            0x82, 0x04, 0x01, b'l', // 64 range_end: tag (64 << 3 | 2) = 514 = varint 82 04
        // TxnRequest.success (2), RequestOp, len 8
        0x12, 0x08,
            0x12, 0x06,         // RequestOp 2 request_put, PutRequest len 6
                0x0a, 0x01, b'k', // 1 key
                0x12, 0x01, b'v', // 2 value
        // success (2), RequestOp, len 18
        0x12, 0x12,
            0x22, 0x10,         // RequestOp 4 request_txn, TxnRequest len 16
                0x12, 0x05,     // TxnRequest 2 success, RequestOp len 5
                    0x0a, 0x03, // RequestOp 1 request_range, RangeRequest len 3
                        0x0a, 0x01, b'k', // 1 key
                0x1a, 0x07,     // TxnRequest 3 failure, RequestOp len 7
                    0x1a, 0x05, // RequestOp 3 request_delete_range, len 5
                        0x0a, 0x01, b'k', // 1 key
                        0x18, 0x01,       // 3 prev_kv: true
        // TxnRequest.failure (3), RequestOp, len 8
        0x1a, 0x08,
            0x0a, 0x06,         // RequestOp 1 request_range, RangeRequest len 6
                0x0a, 0x01, b'k', // 1 key
                0x12, 0x01, b'l', // 2 range_end
    ];
    assert_wire(&msg, &expected);
}

#[test]
fn compare_fields_out_of_order_decode() {
    // Protobuf decoders must accept fields in any order; some encoders write
    // range_end before the oneof arm.
    #[rustfmt::skip]
    let shuffled = [
        0x82, 0x04, 0x01, b'l', // 64 range_end
        0x1a, 0x01, b'k',       // 3 key
        0x40, 0x05,             // 8 lease: 5
        0x10, 0x04,             // 2 target: LEASE
        0x08, 0x01,             // 1 result: GREATER
    ];
    let decoded = Compare::decode(&shuffled[..]).expect("decode");
    assert_eq!(
        decoded,
        Compare {
            result: compare::CompareResult::Greater as i32,
            target: compare::CompareTarget::Lease as i32,
            key: b"k".to_vec(),
            range_end: b"l".to_vec(),
            target_union: Some(compare::TargetUnion::Lease(5)),
        }
    );
}

#[test]
fn watch_request_create_with_filters() {
    use watch_create_request::FilterType;
    let msg = WatchRequest {
        request_union: Some(watch_request::RequestUnion::CreateRequest(
            WatchCreateRequest {
                key: b"a".to_vec(),
                range_end: b"b".to_vec(),
                start_revision: 2,
                progress_notify: true,
                filters: vec![FilterType::Noput as i32, FilterType::Nodelete as i32],
                prev_kv: true,
                watch_id: 7,
                fragment: true,
            },
        )),
    };
    #[rustfmt::skip]
    let expected = [
        0x0a, 0x14,             // WatchRequest 1 create_request, len 20
            0x0a, 0x01, b'a',   // 1 key
            0x12, 0x01, b'b',   // 2 range_end
            0x18, 0x02,         // 3 start_revision: 2
            0x20, 0x01,         // 4 progress_notify: true
            0x2a, 0x02, 0x00, 0x01, // 5 filters: packed [NOPUT = 0, NODELETE = 1]
            0x30, 0x01,         // 6 prev_kv: true
            0x38, 0x07,         // 7 watch_id: 7
            0x40, 0x01,         // 8 fragment: true
    ];
    assert_wire(&msg, &expected);
}

#[test]
fn watch_request_cancel_and_progress() {
    let cancel = WatchRequest {
        request_union: Some(watch_request::RequestUnion::CancelRequest(
            WatchCancelRequest { watch_id: 7 },
        )),
    };
    // 2 cancel_request, len 2 { 1 watch_id: 7 }
    assert_wire(&cancel, &[0x12, 0x02, 0x08, 0x07]);

    let progress = WatchRequest {
        request_union: Some(watch_request::RequestUnion::ProgressRequest(
            WatchProgressRequest {},
        )),
    };
    // 3 progress_request, len 0: the empty message is still sent.
    assert_wire(&progress, &[0x1a, 0x00]);
}

#[test]
fn response_header() {
    let msg = ResponseHeader {
        cluster_id: 1 << 63,
        member_id: 150,
        revision: 42,
        raft_term: 3,
    };
    #[rustfmt::skip]
    let expected = [
        0x08,                   // 1 cluster_id (uint64): 2^63, ten-byte varint
            0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01,
        0x10, 0x96, 0x01,       // 2 member_id: 150
        0x18, 0x2a,             // 3 revision: 42
        0x20, 0x03,             // 4 raft_term: 3
    ];
    assert_wire(&msg, &expected);
}

#[test]
fn key_value_and_event() {
    let kv = KeyValue {
        key: b"foo".to_vec(),
        create_revision: 2,
        mod_revision: 5,
        version: 3,
        value: b"bar".to_vec(),
        lease: 128,
    };
    #[rustfmt::skip]
    let kv_bytes = [
        0x0a, 0x03, b'f', b'o', b'o', // 1 key
        0x10, 0x02,                   // 2 create_revision: 2
        0x18, 0x05,                   // 3 mod_revision: 5
        0x20, 0x03,                   // 4 version: 3
        0x2a, 0x03, b'b', b'a', b'r', // 5 value
        0x30, 0x80, 0x01,             // 6 lease: 128
    ];
    assert_wire(&kv, &kv_bytes);

    let event = Event {
        r#type: event::EventType::Delete as i32,
        kv: Some(KeyValue {
            key: b"foo".to_vec(),
            mod_revision: 6,
            ..Default::default()
        }),
        prev_kv: Some(kv),
    };
    let mut expected = vec![
        0x08, 0x01, // 1 type: DELETE = 1
        0x12, 0x07, // 2 kv, len 7
        0x0a, 0x03, b'f', b'o', b'o', // 1 key
        0x18, 0x06, // 3 mod_revision: 6
        0x1a, 0x13, // 3 prev_kv, len 19
    ];
    expected.extend_from_slice(&kv_bytes);
    assert_wire(&event, &expected);
}

#[test]
fn lease_time_to_live_negative_ttl_is_int64() {
    let msg = LeaseTimeToLiveResponse {
        header: None,
        id: 5,
        ttl: -1,
        granted_ttl: 60,
        keys: vec![b"a".to_vec()],
    };
    #[rustfmt::skip]
    let expected = [
        0x10, 0x05,             // 2 ID: 5
        0x18,                   // 3 TTL: -1 as int64 = ten-byte varint (sint64 would be 0x01)
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
        0x20, 0x3c,             // 4 grantedTTL: 60
        0x2a, 0x01, b'a',       // 5 keys
    ];
    assert_wire(&msg, &expected);
}

#[test]
fn status_response_fields() {
    let msg = StatusResponse {
        header: Some(ResponseHeader {
            revision: 1,
            ..Default::default()
        }),
        version: "3.5.0".to_owned(),
        db_size: 4096,
        leader: 2,
        raft_index: 8,
        raft_term: 1,
        raft_applied_index: 9,
        errors: vec!["x".to_owned()],
        db_size_in_use: 4096,
        is_learner: true,
        storage_version: String::new(),
        db_size_quota: 0,
        downgrade_info: None,
    };
    #[rustfmt::skip]
    let expected = [
        0x0a, 0x02, 0x18, 0x01,       // 1 header, len 2 { 3 revision: 1 }
        0x12, 0x05, b'3', b'.', b'5', b'.', b'0', // 2 version
        0x18, 0x80, 0x20,             // 3 dbSize: 4096
        0x20, 0x02,                   // 4 leader: 2
        0x28, 0x08,                   // 5 raftIndex: 8
        0x30, 0x01,                   // 6 raftTerm: 1
        0x38, 0x09,                   // 7 raftAppliedIndex: 9
        0x42, 0x01, b'x',             // 8 errors
        0x48, 0x80, 0x20,             // 9 dbSizeInUse: 4096
        0x50, 0x01,                   // 10 isLearner: true
    ];
    assert_wire(&msg, &expected);
}

#[test]
fn auth_permission_and_lock_and_election() {
    let perm = authpb::Permission {
        perm_type: authpb::permission::Type::Readwrite as i32,
        key: b"a".to_vec(),
        range_end: b"b".to_vec(),
    };
    #[rustfmt::skip]
    let perm_bytes = [
        0x08, 0x02,       // 1 permType: READWRITE = 2
        0x12, 0x01, b'a', // 2 key
        0x1a, 0x01, b'b', // 3 range_end
    ];
    assert_wire(&perm, &perm_bytes);

    let lock = v3lockpb::LockRequest {
        name: b"n".to_vec(),
        lease: 9,
    };
    // 1 name, 2 lease: 9
    assert_wire(&lock, &[0x0a, 0x01, b'n', 0x10, 0x09]);

    let leader = v3electionpb::LeaderKey {
        name: b"e".to_vec(),
        key: b"e/1".to_vec(),
        rev: 4,
        lease: 9,
    };
    #[rustfmt::skip]
    let leader_bytes = [
        0x0a, 0x01, b'e',             // 1 name
        0x12, 0x03, b'e', b'/', b'1', // 2 key
        0x18, 0x04,                   // 3 rev
        0x20, 0x09,                   // 4 lease
    ];
    assert_wire(&leader, &leader_bytes);

    let proclaim = v3electionpb::ProclaimRequest {
        leader: Some(leader),
        value: b"v".to_vec(),
    };
    let mut expected = vec![0x0a, 0x0c]; // 1 leader, len 12
    expected.extend_from_slice(&leader_bytes);
    expected.extend_from_slice(&[0x12, 0x01, b'v']); // 2 value
    assert_wire(&proclaim, &expected);
}
