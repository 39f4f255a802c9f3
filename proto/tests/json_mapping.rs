//! The serde impls follow etcd's grpc-gateway JSON (JSONPb with `OrigName`): proto
//! field names, 64-bit integers as strings, bytes as base64, enums by name, defaults
//! omitted; input takes proto or lowerCamelCase names, numbers or strings, enum names
//! or numbers, and ignores unknown fields.

#![allow(clippy::unwrap_used)]

use mnemo_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use mnemo_proto::etcdserverpb::watch_request::RequestUnion;
use mnemo_proto::etcdserverpb::{
    Compare, RangeResponse, ResponseHeader, StatusResponse, WatchCreateRequest, WatchRequest,
};
use mnemo_proto::mvccpb::{event::EventType, Event, KeyValue};

#[test]
fn output_uses_proto_names_strings_for_64_bit_and_base64() {
    let resp = RangeResponse {
        header: Some(ResponseHeader {
            cluster_id: 14841639068965178418,
            member_id: 10276657743932975437,
            revision: 2,
            raft_term: 3,
        }),
        kvs: vec![KeyValue {
            key: b"foo".to_vec(),
            create_revision: 2,
            mod_revision: 2,
            version: 1,
            value: b"bar".to_vec(),
            lease: 0,
        }],
        more: false,
        count: 1,
    };
    assert_eq!(
        serde_json::to_string(&resp).unwrap(),
        concat!(
            r#"{"header":{"cluster_id":"14841639068965178418","member_id":"10276657743932975437","#,
            r#""revision":"2","raft_term":"3"},"kvs":[{"key":"Zm9v","create_revision":"2","#,
            r#""mod_revision":"2","version":"1","value":"YmFy"}],"count":"1"}"#
        )
    );
    // etcd's own camelCase proto names stay as they are.
    let status = StatusResponse {
        version: "3.4.0".into(),
        db_size: 20480,
        is_learner: false,
        ..Default::default()
    };
    assert_eq!(
        serde_json::to_string(&status).unwrap(),
        r#"{"version":"3.4.0","dbSize":"20480"}"#
    );
    // PUT is the zero value of the enum: omitted, as Go omits it.
    let ev = Event {
        r#type: EventType::Delete as i32,
        kv: None,
        prev_kv: None,
    };
    assert_eq!(serde_json::to_string(&ev).unwrap(), r#"{"type":"DELETE"}"#);
    assert_eq!(serde_json::to_string(&Event::default()).unwrap(), "{}");
}

#[test]
fn input_takes_either_name_numbers_or_strings_and_enum_names_or_numbers() {
    let a: Compare = serde_json::from_str(
        r#"{"key":"Zm9v","result":"EQUAL","target":"VALUE","value":"YmFy","unknown":1}"#,
    )
    .unwrap();
    let b: Compare =
        serde_json::from_str(r#"{"key":"Zm9v","result":0,"target":3,"value":"YmFy"}"#).unwrap();
    assert_eq!(a, b);
    assert_eq!(a.result, CompareResult::Equal as i32);
    assert_eq!(a.target, CompareTarget::Value as i32);
    assert_eq!(a.target_union, Some(TargetUnion::Value(b"bar".to_vec())));

    let w: WatchRequest = serde_json::from_str(
        r#"{"create_request":{"key":"Zm9v","startRevision":"5","prev_kv":true}}"#,
    )
    .unwrap();
    let w2: WatchRequest = serde_json::from_str(
        r#"{"createRequest":{"key":"Zm9v","start_revision":5,"prevKv":true}}"#,
    )
    .unwrap();
    assert_eq!(w, w2);
    assert_eq!(
        w.request_union,
        Some(RequestUnion::CreateRequest(WatchCreateRequest {
            key: b"foo".to_vec(),
            start_revision: 5,
            prev_kv: true,
            ..Default::default()
        }))
    );
}

#[test]
fn bad_input_is_an_error() {
    assert!(serde_json::from_str::<Compare>(r#"{"key":"not base64!"}"#).is_err());
    assert!(serde_json::from_str::<Compare>(r#"{"result":"NO_SUCH"}"#).is_err());
    assert!(
        serde_json::from_str::<WatchRequest>(r#"{"create_request":{"start_revision":"x"}}"#)
            .is_err()
    );
    assert!(serde_json::from_str::<Compare>("[1,2]").is_err());
}
