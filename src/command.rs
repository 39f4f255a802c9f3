//! The commands that go through raft, and their results.
//!
//! A [`Command`] is the payload of a normal raft log entry: everything that changes the
//! replicated state (keys, leases, alarms, compaction) is one of these, encoded with
//! protobuf so that the log is compact and versionable. Applying a command is a pure
//! function of (state, command): every member computes the same [`CommandResponse`].

use mnemo_proto::etcdserverpb::{
    AlarmRequest, AlarmResponse, CompactionRequest, CompactionResponse, DeleteRangeRequest,
    DeleteRangeResponse, LeaseCheckpointRequest, LeaseCheckpointResponse, LeaseGrantRequest,
    LeaseGrantResponse, LeaseRevokeRequest, LeaseRevokeResponse, PutRequest, PutResponse,
    TxnRequest, TxnResponse,
};

use crate::error::Error;

// Format: protobuf message; field 1 a oneof of etcd's request messages (tags below), so a
// log written today decodes with a later mnemo that adds operations.
/// One state-machine command: the payload of a normal raft entry.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Command {
    #[prost(oneof = "Op", tags = "1, 2, 3, 4, 5, 6, 7, 8")]
    pub op: Option<Op>,
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
}

impl Command {
    pub fn new(op: Op) -> Self {
        Self { op: Some(op) }
    }
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
}
