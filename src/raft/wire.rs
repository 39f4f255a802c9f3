//! Raft's RPC messages as bytes for the peer transport, in the raft codec
//! ([`super::codec`]): the same encodings of log ids, votes, entries and memberships the
//! WAL uses. docs/format.md ("Peer messages") has the byte diagrams.
//!
//! The bytes come from the network: every decoder is bounds-checked and rejects trailing
//! bytes, unknown tags and counts larger than the input could hold.

use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{Entry, SnapshotMeta, Vote};

use super::codec::{
    decode_entry, decode_stored_membership, encode_entry, encode_stored_membership, put_len,
    put_opt_log_id, put_str, put_vote, CodecError, Reader,
};
use super::{Member, TypeConfig};

/// Smallest encoded entry: index, kind, payload length, the payload's term and leader.
const MIN_ENTRY_LEN: usize = 8 + 1 + 4 + 16;

fn put_entry(e: &Entry<TypeConfig>, out: &mut Vec<u8>) {
    let (kind, payload) = encode_entry(e);
    out.extend_from_slice(&e.log_id.index.to_le_bytes());
    out.push(kind);
    put_len(payload.len(), out);
    out.extend_from_slice(&payload);
}

fn read_entry(r: &mut Reader<'_>) -> Result<Entry<TypeConfig>, CodecError> {
    let index = r.u64()?;
    let kind = r.u8()?;
    let len = r.u32()? as usize;
    decode_entry(index, kind, r.bytes(len)?)
}

// Format: { vote (17 B) | prev opt log id | leader commit opt log id | n u32 | n × entry }
// entry = { index u64 | kind u8 | len u32 | WAL entry payload (len B) }
pub fn encode_append(req: &AppendEntriesRequest<TypeConfig>) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + req.entries.len() * 64);
    put_vote(&req.vote, &mut out);
    put_opt_log_id(req.prev_log_id.as_ref(), &mut out);
    put_opt_log_id(req.leader_commit.as_ref(), &mut out);
    put_len(req.entries.len(), &mut out);
    for e in &req.entries {
        put_entry(e, &mut out);
    }
    out
}

pub fn decode_append(bytes: &[u8]) -> Result<AppendEntriesRequest<TypeConfig>, CodecError> {
    let mut r = Reader::new(bytes);
    let vote = r.vote()?;
    let prev_log_id = r.opt_log_id()?;
    let leader_commit = r.opt_log_id()?;
    let n = r.count(MIN_ENTRY_LEN)?;
    let mut entries = Vec::with_capacity(n);
    for _ in 0..n {
        entries.push(read_entry(&mut r)?);
    }
    r.finish()?;
    Ok(AppendEntriesRequest {
        vote,
        prev_log_id,
        leader_commit,
        entries,
    })
}

const APPEND_SUCCESS: u8 = 0;
const APPEND_PARTIAL: u8 = 1;
const APPEND_CONFLICT: u8 = 2;
const APPEND_HIGHER_VOTE: u8 = 3;

// Format: { 0 } success | { 1 | opt log id } partial | { 2 } conflict | { 3 | vote } higher vote
pub fn encode_append_response(resp: &AppendEntriesResponse<u64>) -> Vec<u8> {
    let mut out = Vec::with_capacity(32);
    match resp {
        AppendEntriesResponse::Success => out.push(APPEND_SUCCESS),
        AppendEntriesResponse::PartialSuccess(id) => {
            out.push(APPEND_PARTIAL);
            put_opt_log_id(id.as_ref(), &mut out);
        }
        AppendEntriesResponse::Conflict => out.push(APPEND_CONFLICT),
        AppendEntriesResponse::HigherVote(v) => {
            out.push(APPEND_HIGHER_VOTE);
            put_vote(v, &mut out);
        }
    }
    out
}

pub fn decode_append_response(bytes: &[u8]) -> Result<AppendEntriesResponse<u64>, CodecError> {
    let mut r = Reader::new(bytes);
    let resp = match r.u8()? {
        APPEND_SUCCESS => AppendEntriesResponse::Success,
        APPEND_PARTIAL => AppendEntriesResponse::PartialSuccess(r.opt_log_id()?),
        APPEND_CONFLICT => AppendEntriesResponse::Conflict,
        APPEND_HIGHER_VOTE => AppendEntriesResponse::HigherVote(r.vote()?),
        t => return Err(CodecError(format!("append entries response tag {t}"))),
    };
    r.finish()?;
    Ok(resp)
}

// Format: { vote (17 B) | last opt log id }
pub fn encode_vote(req: &VoteRequest<u64>) -> Vec<u8> {
    let mut out = Vec::with_capacity(48);
    put_vote(&req.vote, &mut out);
    put_opt_log_id(req.last_log_id.as_ref(), &mut out);
    out
}

pub fn decode_vote(bytes: &[u8]) -> Result<VoteRequest<u64>, CodecError> {
    let mut r = Reader::new(bytes);
    let vote = r.vote()?;
    let last_log_id = r.opt_log_id()?;
    r.finish()?;
    Ok(VoteRequest { vote, last_log_id })
}

// Format: { vote (17 B) | granted u8 | last opt log id }
pub fn encode_vote_response(resp: &VoteResponse<u64>) -> Vec<u8> {
    let mut out = Vec::with_capacity(48);
    put_vote(&resp.vote, &mut out);
    out.push(u8::from(resp.vote_granted));
    put_opt_log_id(resp.last_log_id.as_ref(), &mut out);
    out
}

pub fn decode_vote_response(bytes: &[u8]) -> Result<VoteResponse<u64>, CodecError> {
    let mut r = Reader::new(bytes);
    let vote = r.vote()?;
    let vote_granted = match r.u8()? {
        0 => false,
        1 => true,
        t => return Err(CodecError(format!("vote granted flag {t}"))),
    };
    let last_log_id = r.opt_log_id()?;
    r.finish()?;
    Ok(VoteResponse {
        vote,
        vote_granted,
        last_log_id,
    })
}

// Format: { vote (17 B) | last opt log id | membership len u32 | stored membership |
//           snapshot id str | offset u64 | done u8 | data len u32 | data }
pub fn encode_install(req: &InstallSnapshotRequest<TypeConfig>) -> Vec<u8> {
    let membership = encode_stored_membership(&req.meta.last_membership);
    let mut out = Vec::with_capacity(96 + membership.len() + req.data.len());
    put_vote(&req.vote, &mut out);
    put_opt_log_id(req.meta.last_log_id.as_ref(), &mut out);
    put_len(membership.len(), &mut out);
    out.extend_from_slice(&membership);
    put_str(&req.meta.snapshot_id, &mut out);
    out.extend_from_slice(&req.offset.to_le_bytes());
    out.push(u8::from(req.done));
    put_len(req.data.len(), &mut out);
    out.extend_from_slice(&req.data);
    out
}

pub fn decode_install(bytes: &[u8]) -> Result<InstallSnapshotRequest<TypeConfig>, CodecError> {
    let mut r = Reader::new(bytes);
    let vote = r.vote()?;
    let last_log_id = r.opt_log_id()?;
    let len = r.u32()? as usize;
    let last_membership = decode_stored_membership(r.bytes(len)?)?;
    let snapshot_id = r.string()?;
    let offset = r.u64()?;
    let done = match r.u8()? {
        0 => false,
        1 => true,
        t => return Err(CodecError(format!("snapshot done flag {t}"))),
    };
    let len = r.u32()? as usize;
    let data = r.bytes(len)?.to_vec();
    r.finish()?;
    Ok(InstallSnapshotRequest {
        vote,
        meta: SnapshotMeta::<u64, Member> {
            last_log_id,
            last_membership,
            snapshot_id,
        },
        offset,
        data,
        done,
    })
}

// Format: { vote (17 B) }
pub fn encode_install_response(resp: &InstallSnapshotResponse<u64>) -> Vec<u8> {
    let mut out = Vec::with_capacity(17);
    put_vote(&resp.vote, &mut out);
    out
}

pub fn decode_install_response(bytes: &[u8]) -> Result<InstallSnapshotResponse<u64>, CodecError> {
    let mut r = Reader::new(bytes);
    let vote: Vote<u64> = r.vote()?;
    r.finish()?;
    Ok(InstallSnapshotResponse { vote })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use openraft::{CommittedLeaderId, EntryPayload, LogId, Membership, StoredMembership};

    use super::*;
    use crate::command::{Command, Op};
    use crate::raft::Proposal;
    use mnemo_proto::etcdserverpb::PutRequest;

    fn log_id(term: u64, index: u64) -> LogId<u64> {
        LogId::new(CommittedLeaderId::new(term, 7), index)
    }

    fn membership() -> Membership<u64, Member> {
        let nodes = BTreeMap::from([
            (
                7,
                Member {
                    name: "a".into(),
                    peer_urls: vec!["http://127.0.0.1:1".into()],
                    client_urls: vec![],
                },
            ),
            (9, Member::default()),
        ]);
        Membership::new(vec![BTreeSet::from([7])], nodes)
    }

    fn sample_append() -> AppendEntriesRequest<TypeConfig> {
        let put = Command::new(Op::Put(PutRequest {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
            ..Default::default()
        }));
        AppendEntriesRequest {
            vote: Vote::new_committed(3, 7),
            prev_log_id: Some(log_id(2, 10)),
            leader_commit: Some(log_id(3, 11)),
            entries: vec![
                Entry {
                    log_id: log_id(3, 11),
                    payload: EntryPayload::Blank,
                },
                Entry {
                    log_id: log_id(3, 12),
                    payload: EntryPayload::Normal(Proposal::one(put)),
                },
                Entry {
                    log_id: log_id(3, 13),
                    payload: EntryPayload::Membership(membership()),
                },
            ],
        }
    }

    #[test]
    fn append_entries_round_trip() {
        let req = sample_append();
        let back = decode_append(&encode_append(&req)).unwrap();
        assert_eq!(back.vote, req.vote);
        assert_eq!(back.prev_log_id, req.prev_log_id);
        assert_eq!(back.leader_commit, req.leader_commit);
        assert_eq!(back.entries, req.entries);
        for resp in [
            AppendEntriesResponse::Success,
            AppendEntriesResponse::PartialSuccess(Some(log_id(3, 12))),
            AppendEntriesResponse::PartialSuccess(None),
            AppendEntriesResponse::Conflict,
            AppendEntriesResponse::HigherVote(Vote::new(5, 9)),
        ] {
            assert_eq!(
                decode_append_response(&encode_append_response(&resp)).unwrap(),
                resp
            );
        }
    }

    #[test]
    fn vote_and_snapshot_round_trip() {
        let req = VoteRequest {
            vote: Vote::new(4, 9),
            last_log_id: Some(log_id(3, 13)),
        };
        assert_eq!(decode_vote(&encode_vote(&req)).unwrap(), req);
        let resp = VoteResponse {
            vote: Vote::new(4, 9),
            vote_granted: true,
            last_log_id: None,
        };
        assert_eq!(
            decode_vote_response(&encode_vote_response(&resp)).unwrap(),
            resp
        );
        let snap = InstallSnapshotRequest::<TypeConfig> {
            vote: Vote::new_committed(3, 7),
            meta: SnapshotMeta {
                last_log_id: Some(log_id(3, 13)),
                last_membership: StoredMembership::new(Some(log_id(3, 13)), membership()),
                snapshot_id: "3-13-1".into(),
            },
            offset: 4096,
            data: vec![1, 2, 3, 4],
            done: true,
        };
        let back = decode_install(&encode_install(&snap)).unwrap();
        assert_eq!(back, snap);
        let resp = InstallSnapshotResponse {
            vote: Vote::new(4, 9),
        };
        assert_eq!(
            decode_install_response(&encode_install_response(&resp)).unwrap(),
            resp
        );
    }

    #[test]
    fn every_truncation_and_extension_is_rejected() {
        let bytes = encode_append(&sample_append());
        for cut in 0..bytes.len() {
            assert!(decode_append(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode_append(&longer).is_err());
        // A count far larger than the input is refused before allocating.
        let mut huge = bytes[..17 + 25 + 25].to_vec();
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode_append(&huge).is_err());
    }
}
