//! The commands that go through raft, and their results.
//!
//! A [`Command`] is the payload of a normal raft log entry: everything that changes the
//! replicated state (keys, leases, alarms, compaction) is one of these, encoded with
//! protobuf so that the log is compact and versionable. Applying a command is a pure
//! function of (state, command): every member computes the same [`CommandResponse`].

use mnemo_proto::etcdserverpb::{request_op, RequestOp};
use mnemo_proto::etcdserverpb::{
    AlarmRequest, AlarmResponse, AuthDisableRequest, AuthEnableRequest, AuthRoleAddRequest,
    AuthRoleDeleteRequest, AuthRoleGrantPermissionRequest, AuthRoleRevokePermissionRequest,
    AuthUserAddRequest, AuthUserChangePasswordRequest, AuthUserDeleteRequest,
    AuthUserGrantRoleRequest, AuthUserRevokeRoleRequest, CompactionRequest, CompactionResponse,
    DeleteRangeRequest, DeleteRangeResponse, LeaseCheckpointRequest, LeaseCheckpointResponse,
    LeaseGrantRequest, LeaseGrantResponse, LeaseRevokeRequest, LeaseRevokeResponse, PutRequest,
    PutResponse, ResponseHeader, TxnRequest, TxnResponse,
};

use crate::error::Error;

// Format: protobuf message; a oneof of etcd's request messages (tags 1-19 below), so a
// log written today decodes with a later mnemo that adds operations; field 30 the auth
// revision the request was checked at (0: not checked); fields 31 and 32 name the member
// that forwarded the command to the leader and its wait id there (0: not forwarded).
/// One state-machine command: the payload of a normal raft entry.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Command {
    #[prost(
        oneof = "Op",
        tags = "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19"
    )]
    pub op: Option<Op>,
    /// The auth revision the proposer checked the caller's permissions at: applying
    /// refuses the command ("revision of auth store is old") if auth changed since.
    #[prost(uint64, tag = "30")]
    pub auth_revision: u64,
    /// The follower that forwarded this command to the leader (0: proposed by the leader
    /// itself). That follower answers its client when it applies the command.
    #[prost(uint64, tag = "31")]
    pub forwarded_by: u64,
    /// The follower's wait id for this command, unique among its forwarded commands.
    #[prost(uint64, tag = "32")]
    pub forward_id: u64,
}

/// The operation a [`Command`] carries.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Op {
    #[prost(message, tag = "1")]
    Put(PutRequest),
    #[prost(message, tag = "2")]
    DeleteRange(DeleteRangeRequest),
    #[prost(message, tag = "3")]
    Txn(TxnRequest),
    #[prost(message, tag = "4")]
    Compaction(CompactionRequest),
    #[prost(message, tag = "5")]
    LeaseGrant(LeaseGrantRequest),
    #[prost(message, tag = "6")]
    LeaseRevoke(LeaseRevokeRequest),
    #[prost(message, tag = "7")]
    LeaseCheckpoint(LeaseCheckpointRequest),
    #[prost(message, tag = "8")]
    Alarm(AlarmRequest),
    #[prost(message, tag = "9")]
    AuthEnable(AuthEnableRequest),
    #[prost(message, tag = "10")]
    AuthDisable(AuthDisableRequest),
    /// Carries the bcrypt hash in `hashed_password`, never the password.
    #[prost(message, tag = "11")]
    UserAdd(AuthUserAddRequest),
    #[prost(message, tag = "12")]
    UserDelete(AuthUserDeleteRequest),
    /// Carries the bcrypt hash in `hashed_password`, never the password.
    #[prost(message, tag = "13")]
    UserChangePassword(AuthUserChangePasswordRequest),
    #[prost(message, tag = "14")]
    UserGrantRole(AuthUserGrantRoleRequest),
    #[prost(message, tag = "15")]
    UserRevokeRole(AuthUserRevokeRoleRequest),
    #[prost(message, tag = "16")]
    RoleAdd(AuthRoleAddRequest),
    #[prost(message, tag = "17")]
    RoleDelete(AuthRoleDeleteRequest),
    #[prost(message, tag = "18")]
    RoleGrantPermission(AuthRoleGrantPermissionRequest),
    #[prost(message, tag = "19")]
    RoleRevokePermission(AuthRoleRevokePermissionRequest),
}

impl Command {
    pub fn new(op: Op) -> Self {
        Self::guarded(op, 0)
    }

    /// A command applied only if the auth revision is still `auth_revision` (0: always).
    pub fn guarded(op: Op, auth_revision: u64) -> Self {
        Self {
            op: Some(op),
            auth_revision,
            forwarded_by: 0,
            forward_id: 0,
        }
    }

    /// Whether applying this command touches only single keys, at most
    /// [`POINT_TXN_OPS`] of them: a put, a one-key delete, or a txn of one-key
    /// operations (compares never scan), so its apply cost is bounded by its size.
    pub fn is_point(&self) -> bool {
        match &self.op {
            Some(Op::Put(_)) => true,
            Some(Op::DeleteRange(d)) => d.range_end.is_empty(),
            Some(Op::Txn(t)) => point_ops(t).is_some_and(|n| n <= POINT_TXN_OPS),
            _ => false,
        }
    }
}

/// The most operations a txn may hold for [`Command::is_point`].
pub const POINT_TXN_OPS: usize = 16;

/// The number of operations in `t` and its nested txns if every one touches a single
/// key; `None` if one may touch a range.
fn point_ops(t: &TxnRequest) -> Option<usize> {
    let one = |op: &RequestOp| match &op.request {
        Some(request_op::Request::RequestRange(r)) => r.range_end.is_empty().then_some(1),
        Some(request_op::Request::RequestPut(_)) => Some(1),
        Some(request_op::Request::RequestDeleteRange(d)) => d.range_end.is_empty().then_some(1),
        Some(request_op::Request::RequestTxn(t)) => point_ops(t).map(|n| n + 1),
        None => Some(0),
    };
    t.success.iter().chain(&t.failure).map(one).sum()
}

/// The result of applying one [`Command`]. Response headers carry the revision the
/// command produced (or saw); cluster id, member id and term are filled in by the server.
#[derive(Debug, Clone, PartialEq)]
pub enum CommandResponse {
    Put(PutResponse),
    DeleteRange(DeleteRangeResponse),
    Txn(TxnResponse),
    Compaction(CompactionResponse),
    LeaseGrant(LeaseGrantResponse),
    LeaseRevoke(LeaseRevokeResponse),
    LeaseCheckpoint(LeaseCheckpointResponse),
    Alarm(AlarmResponse),
    /// An auth change was applied; the header carries the store revision.
    Auth(ResponseHeader),
    /// The command was rejected deterministically (same error on every member), e.g. a
    /// compacted revision, an unknown lease or the space quota.
    Error(Error),
    /// The entry carried no command (a blank or membership entry).
    Empty,
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn command_round_trips_through_protobuf() {
        let cmd = Command::new(Op::Put(PutRequest {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
            lease: 7,
            ..Default::default()
        }));
        let bytes = cmd.encode_to_vec();
        let back = Command::decode(bytes.as_slice()).unwrap();
        assert_eq!(back, cmd);
        // An empty buffer decodes to a command with no operation, which apply rejects.
        assert_eq!(Command::decode(&[][..]).unwrap().op, None);
    }

    #[test]
    fn point_commands_touch_single_keys_only() {
        use mnemo_proto::etcdserverpb::{RangeRequest, RequestOp};
        let put = || PutRequest {
            key: b"k".to_vec(),
            ..Default::default()
        };
        let del = |end: &[u8]| DeleteRangeRequest {
            key: b"k".to_vec(),
            range_end: end.to_vec(),
            ..Default::default()
        };
        let op = |r: request_op::Request| RequestOp { request: Some(r) };
        let get = |end: &[u8]| {
            op(request_op::Request::RequestRange(RangeRequest {
                key: b"k".to_vec(),
                range_end: end.to_vec(),
                ..Default::default()
            }))
        };
        let txn = |success: Vec<RequestOp>, failure: Vec<RequestOp>| TxnRequest {
            success,
            failure,
            ..Default::default()
        };
        let point = |o: Op| Command::new(o).is_point();

        assert!(point(Op::Put(put())));
        assert!(point(Op::DeleteRange(del(b""))));
        assert!(!point(Op::DeleteRange(del(b"l"))));
        assert!(!point(Op::DeleteRange(del(b"\0"))), "from-key delete");
        assert!(!point(Op::Compaction(CompactionRequest::default())));
        assert!(!point(Op::LeaseRevoke(LeaseRevokeRequest::default())));
        assert!(!Command::default().is_point());

        // Kubernetes' write: compare, then put on success, get on failure.
        let k8s = txn(
            vec![op(request_op::Request::RequestPut(put()))],
            vec![get(b"")],
        );
        assert!(point(Op::Txn(k8s.clone())));
        assert!(
            !point(Op::Txn(txn(vec![get(b"l")], vec![]))),
            "a ranged get"
        );
        let nested = |t: TxnRequest| op(request_op::Request::RequestTxn(t));
        assert!(point(Op::Txn(txn(vec![nested(k8s.clone())], vec![]))));
        assert!(!point(Op::Txn(txn(
            vec![nested(txn(
                vec![],
                vec![op(request_op::Request::RequestDeleteRange(del(b"z")))]
            ))],
            vec![]
        ))));
        let puts = |n| {
            (0..n)
                .map(|_| op(request_op::Request::RequestPut(put())))
                .collect()
        };
        assert!(point(Op::Txn(txn(puts(POINT_TXN_OPS), vec![]))));
        assert!(!point(Op::Txn(txn(puts(POINT_TXN_OPS + 1), vec![]))));
    }
}
