//! Binary encodings of raft's values: log entries (WAL records), log ids, votes and
//! memberships. docs/format.md ("Raft log entries") has the byte diagrams.
//!
//! Every decoder takes bytes that came from disk (or, later, the network) and returns
//! [`CodecError`] for anything it does not recognise: short input, trailing bytes, counts
//! larger than the input could hold, invalid UTF-8, an unknown entry kind. No decoder
//! allocates more than its input could describe.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, Membership, StoredMembership, Vote};
use prost::Message;

use super::{Member, Proposal, TypeConfig};

/// WAL record type of a blank entry (a new leader's first entry).
pub const ENTRY_BLANK: u8 = 1;
/// WAL record type of a normal entry: the body is a protobuf [`Proposal`].
pub const ENTRY_NORMAL: u8 = 2;
/// WAL record type of a membership entry: the body is an encoded [`Membership`].
pub const ENTRY_MEMBERSHIP: u8 = 3;

/// Bytes of an encoded [`LogId`]: term, leader node id, index.
pub const LOG_ID_LEN: usize = 24;
/// Bytes before the body in an entry payload: the log id's term and leader.
pub const ENTRY_HEADER_LEN: usize = 16;

/// Bytes that do not decode as the value they should hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodecError(pub String);

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "undecodable raft data: {}", self.0)
    }
}

impl std::error::Error for CodecError {}

fn err<T>(msg: impl Into<String>) -> Result<T, CodecError> {
    Err(CodecError(msg.into()))
}

/// Encodes `entry` as a WAL record's `(record_type, payload)`; the index is the record's.
// Format: { term u64 | leader u64 | body }, record type = kind
pub fn encode_entry(entry: &Entry<TypeConfig>) -> (u8, Vec<u8>) {
    let mut out = Vec::with_capacity(ENTRY_HEADER_LEN + 64);
    out.extend_from_slice(&entry.log_id.leader_id.term.to_le_bytes());
    out.extend_from_slice(&entry.log_id.leader_id.node_id.to_le_bytes());
    let kind = match &entry.payload {
        EntryPayload::Blank => ENTRY_BLANK,
        EntryPayload::Normal(p) => {
            out.reserve(p.encoded_len());
            p.encode_raw(&mut out);
            ENTRY_NORMAL
        }
        EntryPayload::Membership(m) => {
            encode_membership(m, &mut out);
            ENTRY_MEMBERSHIP
        }
    };
    (kind, out)
}

/// Decodes the entry at `index` from its WAL record type and payload.
pub fn decode_entry(index: u64, kind: u8, payload: &[u8]) -> Result<Entry<TypeConfig>, CodecError> {
    let mut r = Reader::new(payload);
    let term = r.u64()?;
    let leader = r.u64()?;
    let log_id = LogId::new(CommittedLeaderId::new(term, leader), index);
    let payload = match kind {
        ENTRY_BLANK => EntryPayload::Blank,
        ENTRY_NORMAL => {
            let p = Proposal::decode(r.rest())
                .map_err(|e| CodecError(format!("entry {index}: proposal: {e}")))?;
            EntryPayload::Normal(p)
        }
        ENTRY_MEMBERSHIP => EntryPayload::Membership(decode_membership_from(&mut r)?),
        other => return err(format!("entry {index}: unknown entry kind {other}")),
    };
    r.finish()?;
    Ok(Entry { log_id, payload })
}

/// The log id of an encoded entry, read from its header only.
pub fn decode_entry_log_id(index: u64, payload: &[u8]) -> Result<LogId<u64>, CodecError> {
    let mut r = Reader::new(payload);
    let term = r.u64()?;
    let leader = r.u64()?;
    Ok(LogId::new(CommittedLeaderId::new(term, leader), index))
}

// Format: { term u64 | leader u64 | index u64 }
pub fn put_log_id(id: &LogId<u64>, out: &mut Vec<u8>) {
    out.extend_from_slice(&id.leader_id.term.to_le_bytes());
    out.extend_from_slice(&id.leader_id.node_id.to_le_bytes());
    out.extend_from_slice(&id.index.to_le_bytes());
}

pub fn encode_log_id(id: &LogId<u64>) -> Vec<u8> {
    let mut out = Vec::with_capacity(LOG_ID_LEN);
    put_log_id(id, &mut out);
    out
}

pub fn decode_log_id(bytes: &[u8]) -> Result<LogId<u64>, CodecError> {
    let mut r = Reader::new(bytes);
    let id = r.log_id()?;
    r.finish()?;
    Ok(id)
}

// Format: { configs u32 | per config: { n u32 | n × id u64 } | nodes u32 | per node: { id u64 | member } }
// member = { name str | peer urls u32 | each str | client urls u32 | each str }, str = { len u32 | utf-8 }
pub fn encode_membership(m: &Membership<u64, Member>, out: &mut Vec<u8>) {
    let configs = m.get_joint_config();
    put_len(configs.len(), out);
    for c in configs {
        put_len(c.len(), out);
        for id in c {
            out.extend_from_slice(&id.to_le_bytes());
        }
    }
    let nodes: Vec<(&u64, &Member)> = m.nodes().collect();
    put_len(nodes.len(), out);
    for (id, member) in nodes {
        out.extend_from_slice(&id.to_le_bytes());
        put_str(&member.name, out);
        put_len(member.peer_urls.len(), out);
        for u in &member.peer_urls {
            put_str(u, out);
        }
        put_len(member.client_urls.len(), out);
        for u in &member.client_urls {
            put_str(u, out);
        }
    }
}

pub fn decode_membership(bytes: &[u8]) -> Result<Membership<u64, Member>, CodecError> {
    let mut r = Reader::new(bytes);
    let m = decode_membership_from(&mut r)?;
    r.finish()?;
    Ok(m)
}

fn decode_membership_from(r: &mut Reader<'_>) -> Result<Membership<u64, Member>, CodecError> {
    let n_configs = r.count(4)?;
    let mut configs = Vec::with_capacity(n_configs);
    for _ in 0..n_configs {
        let n = r.count(8)?;
        let mut set = BTreeSet::new();
        for _ in 0..n {
            set.insert(r.u64()?);
        }
        configs.push(set);
    }
    let n_nodes = r.count(8 + 12)?;
    let mut nodes = BTreeMap::new();
    for _ in 0..n_nodes {
        let id = r.u64()?;
        let name = r.string()?;
        let n = r.count(4)?;
        let mut peer_urls = Vec::with_capacity(n);
        for _ in 0..n {
            peer_urls.push(r.string()?);
        }
        let n = r.count(4)?;
        let mut client_urls = Vec::with_capacity(n);
        for _ in 0..n {
            client_urls.push(r.string()?);
        }
        let member = Member {
            name,
            peer_urls,
            client_urls,
        };
        if nodes.insert(id, member).is_some() {
            return err(format!("membership lists node {id} twice"));
        }
    }
    Ok(Membership::new(configs, nodes))
}

// Format: { 0 } or { 1 | log id (24 B) }, then membership
pub fn encode_stored_membership(m: &StoredMembership<u64, Member>) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    put_opt_log_id(m.log_id().as_ref(), &mut out);
    encode_membership(m.membership(), &mut out);
    out
}

pub fn decode_stored_membership(bytes: &[u8]) -> Result<StoredMembership<u64, Member>, CodecError> {
    let mut r = Reader::new(bytes);
    let log_id = r.opt_log_id()?;
    let m = decode_membership_from(&mut r)?;
    r.finish()?;
    Ok(StoredMembership::new(log_id, m))
}

pub fn put_opt_log_id(id: Option<&LogId<u64>>, out: &mut Vec<u8>) {
    match id {
        None => out.push(0),
        Some(id) => {
            out.push(1);
            put_log_id(id, out);
        }
    }
}

/// Bytes of an encoded [`Vote`].
pub const VOTE_LEN: usize = 17;

// Format: { term u64 | node u64 | committed u8 }
pub fn put_vote(v: &Vote<u64>, out: &mut Vec<u8>) {
    out.extend_from_slice(&v.leader_id.term.to_le_bytes());
    out.extend_from_slice(&v.leader_id.node_id.to_le_bytes());
    out.push(u8::from(v.committed));
}

pub fn put_len(n: usize, out: &mut Vec<u8>) {
    // Counts and lengths come from memberships and URLs, far below 4 GiB.
    out.extend_from_slice(&(n as u32).to_le_bytes());
}

pub fn put_str(s: &str, out: &mut Vec<u8>) {
    put_len(s.len(), out);
    out.extend_from_slice(s.as_bytes());
}

/// A bounds-checked cursor over bytes being decoded.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        let Some(end) = end else {
            return err(format!(
                "need {n} bytes at offset {}, have {}",
                self.pos,
                self.buf.len() - self.pos
            ));
        };
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    pub fn u8(&mut self) -> Result<u8, CodecError> {
        Ok(self.bytes(1)?[0])
    }

    pub fn u32(&mut self) -> Result<u32, CodecError> {
        let b = self.bytes(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn u64(&mut self) -> Result<u64, CodecError> {
        let b = self.bytes(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    /// A count of items each at least `min_item` bytes long, checked against what is left.
    pub fn count(&mut self, min_item: usize) -> Result<usize, CodecError> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min_item) > self.remaining() {
            return err(format!(
                "count {n} at offset {} exceeds the {} bytes left",
                self.pos - 4,
                self.remaining()
            ));
        }
        Ok(n)
    }

    pub fn string(&mut self) -> Result<String, CodecError> {
        let n = self.u32()? as usize;
        let b = self.bytes(n)?;
        String::from_utf8(b.to_vec()).map_err(|_| CodecError("string is not UTF-8".into()))
    }

    pub fn log_id(&mut self) -> Result<LogId<u64>, CodecError> {
        let term = self.u64()?;
        let node = self.u64()?;
        let index = self.u64()?;
        Ok(LogId::new(CommittedLeaderId::new(term, node), index))
    }

    pub fn opt_log_id(&mut self) -> Result<Option<LogId<u64>>, CodecError> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(self.log_id()?)),
            t => err(format!("optional log id tag {t}")),
        }
    }

    pub fn vote(&mut self) -> Result<Vote<u64>, CodecError> {
        let term = self.u64()?;
        let node = self.u64()?;
        let committed = match self.u8()? {
            0 => false,
            1 => true,
            t => return err(format!("vote committed flag {t}")),
        };
        Ok(if committed {
            Vote::new_committed(term, node)
        } else {
            Vote::new(term, node)
        })
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn rest(&mut self) -> &'a [u8] {
        let s = &self.buf[self.pos..];
        self.pos = self.buf.len();
        s
    }

    /// Errors if bytes are left over.
    pub fn finish(&self) -> Result<(), CodecError> {
        if self.remaining() != 0 {
            return err(format!("{} trailing bytes", self.remaining()));
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::command::{Command, Op};
    use mnemo_proto::etcdserverpb::PutRequest;
    use proptest::prelude::*;

    fn member(name: &str) -> Member {
        Member {
            name: name.into(),
            peer_urls: vec![format!("http://{name}:2380")],
            client_urls: vec![format!("http://{name}:2379"), "unix:///x".into()],
        }
    }

    fn joint() -> Membership<u64, Member> {
        let nodes: BTreeMap<u64, Member> = [(1, member("a")), (2, member("b")), (9, member("l"))]
            .into_iter()
            .collect();
        Membership::new(vec![BTreeSet::from([1, 2]), BTreeSet::from([2])], nodes)
    }

    fn entries() -> Vec<Entry<TypeConfig>> {
        let id = |t, n, i| LogId::new(CommittedLeaderId::new(t, n), i);
        vec![
            Entry {
                log_id: id(0, 0, 0),
                payload: EntryPayload::Blank,
            },
            Entry {
                log_id: id(3, 7, 12),
                payload: EntryPayload::Normal(Proposal {
                    commands: vec![
                        Command::new(Op::Put(PutRequest {
                            key: b"k".to_vec(),
                            value: vec![0xff; 300],
                            lease: 5,
                            ..Default::default()
                        })),
                        Command::default(),
                    ],
                }),
            },
            Entry {
                log_id: id(3, 7, 13),
                payload: EntryPayload::Normal(Proposal::default()),
            },
            Entry {
                log_id: id(u64::MAX, u64::MAX, u64::MAX - 1),
                payload: EntryPayload::Membership(joint()),
            },
            Entry {
                log_id: id(1, 1, 1),
                payload: EntryPayload::Membership(Membership::new(vec![], ())),
            },
        ]
    }

    #[test]
    fn entries_round_trip() {
        for e in entries() {
            let (kind, bytes) = encode_entry(&e);
            let back = decode_entry(e.log_id.index, kind, &bytes).unwrap();
            assert_eq!(back, e);
            assert_eq!(
                decode_entry_log_id(e.log_id.index, &bytes).unwrap(),
                e.log_id
            );
        }
    }

    #[test]
    fn entry_header_layout() {
        let e = &entries()[1];
        let (kind, bytes) = encode_entry(e);
        assert_eq!(kind, ENTRY_NORMAL);
        assert_eq!(&bytes[0..8], &3u64.to_le_bytes());
        assert_eq!(&bytes[8..16], &7u64.to_le_bytes());
        let EntryPayload::Normal(p) = &e.payload else {
            unreachable!()
        };
        assert_eq!(&bytes[ENTRY_HEADER_LEN..], p.encode_to_vec().as_slice());
    }

    #[test]
    fn garbage_is_rejected() {
        let (kind, bytes) = encode_entry(&entries()[3]);
        // Every strict prefix of a membership entry is short somewhere.
        for cut in 0..bytes.len() {
            assert!(
                decode_entry(1, kind, &bytes[..cut]).is_err(),
                "prefix {cut}"
            );
        }
        let mut long = bytes.clone();
        long.push(0);
        assert!(decode_entry(1, kind, &long).is_err());
        assert!(decode_entry(1, 0, &bytes).is_err());
        assert!(decode_entry(1, 9, &bytes).is_err());
        // A count claiming more items than the input holds is refused before allocating.
        let mut huge = vec![0u8; 16];
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode_entry(1, ENTRY_MEMBERSHIP, &huge).is_err());
        // Non-UTF-8 names.
        let mut m = Vec::new();
        encode_membership(&Membership::new(vec![BTreeSet::from([1])], ()), &mut m);
        let name_at = m.len() - 12; // { len | bytes } of the empty name, then two counts
        m[name_at..name_at + 4].copy_from_slice(&1u32.to_le_bytes());
        m.insert(name_at + 4, 0xff);
        assert!(decode_membership(&m).is_err());
        // A blank entry with a body, a normal entry whose body is not protobuf.
        let mut blank = encode_entry(&entries()[0]).1;
        blank.push(1);
        assert!(decode_entry(0, ENTRY_BLANK, &blank).is_err());
        let mut normal = vec![0u8; 16];
        normal.extend_from_slice(&[0x0a, 0xff]);
        assert!(decode_entry(0, ENTRY_NORMAL, &normal).is_err());
        assert!(decode_log_id(&[0; 23]).is_err());
        assert!(decode_log_id(&[0; 25]).is_err());
    }

    #[test]
    fn stored_membership_round_trips() {
        let id = LogId::new(CommittedLeaderId::new(4, 2), 99);
        for sm in [
            StoredMembership::new(Some(id), joint()),
            StoredMembership::new(None, Membership::new(vec![], ())),
        ] {
            let bytes = encode_stored_membership(&sm);
            assert_eq!(decode_stored_membership(&bytes).unwrap(), sm);
        }
        assert!(decode_stored_membership(&[2]).is_err());
    }

    proptest! {
        #[test]
        fn decoders_never_panic(kind in 0u8..5, bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_entry(3, kind, &bytes);
            let _ = decode_stored_membership(&bytes);
            let _ = decode_log_id(&bytes);
        }

        #[test]
        fn memberships_round_trip(
            voters in proptest::collection::btree_set(0u64..20, 0..5),
            learners in proptest::collection::btree_set(20u64..40, 0..3),
            name in "[a-z]{0,8}",
        ) {
            let nodes: BTreeMap<u64, Member> = voters
                .iter()
                .chain(learners.iter())
                .map(|&id| (id, member(&format!("{name}{id}"))))
                .collect();
            let m = Membership::new(vec![voters.clone()], nodes);
            let mut bytes = Vec::new();
            encode_membership(&m, &mut bytes);
            prop_assert_eq!(decode_membership(&bytes).unwrap(), m);
        }
    }
}
