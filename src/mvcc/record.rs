//! The MVCC store's records in the page file (layout diagrams: docs/format.md, "MVCC
//! tables").
//!
//! Every value the store writes, in every table, is *sealed*: `{ crc32c u32 LE | payload }`
//! where the checksum covers the table key followed by the payload. The page file already
//! checksums every page (and every overflow value), so the seal adds one thing: a value is
//! bound to the key it was written under, and a bug in this module's encoders is caught
//! on the next read instead of being served.

use mnemo_proto::authpb::{Role, User};
use mnemo_proto::mvccpb::KeyValue;
use prost::Message;

use super::revision::{Revision, REVISION_LEN};
use crate::error::{Error, Result};

/// Table names, shared by the store's reader and writer.
pub const KV_TABLE: &str = "kv";
pub const META_TABLE: &str = "meta";
pub const LEASE_TABLE: &str = "lease";
pub const ALARM_TABLE: &str = "alarm";
pub const AUTH_TABLE: &str = "auth";
pub const TABLES: [&str; 5] = [KV_TABLE, META_TABLE, LEASE_TABLE, ALARM_TABLE, AUTH_TABLE];

/// Meta keys owned by the store; raft metadata lives under [`RAFT_META_PREFIX`].
pub const META_CURRENT_REV: &[u8] = b"mvcc/current_revision";
pub const META_COMPACT_REV: &[u8] = b"mvcc/compact_revision";
pub const RAFT_META_PREFIX: &[u8] = b"raft/";

const CRC_LEN: usize = 4;

fn corrupt(table: &str, at: impl std::fmt::Display, why: &str) -> Error {
    Error::Internal(format!(
        "mvcc: corrupt record in table {table} at {at}: {why}"
    ))
}

fn crc(key: &[u8], payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(key), payload)
}

/// `{ crc32c(key || payload) | payload }`.
pub fn seal(key: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(CRC_LEN + payload.len());
    v.extend_from_slice(&crc(key, payload).to_le_bytes());
    v.extend_from_slice(payload);
    v
}

/// Checks a sealed value and returns its payload.
pub fn unseal<'a>(table: &str, key: &[u8], value: &'a [u8]) -> Result<&'a [u8]> {
    let Some((c, payload)) = value.split_first_chunk::<CRC_LEN>() else {
        return Err(corrupt(
            table,
            show_key(key),
            "value shorter than its checksum",
        ));
    };
    if u32::from_le_bytes(*c) != crc(key, payload) {
        return Err(corrupt(table, show_key(key), "checksum mismatch"));
    }
    Ok(payload)
}

fn show_key(key: &[u8]) -> String {
    match Revision::decode(key) {
        Some(r) if key.len() == REVISION_LEN => format!("revision {r}"),
        _ => format!("key {:?}", String::from_utf8_lossy(key)),
    }
}

/// What a history record says happened to its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    Put = 1,
    Tombstone = 2,
}

// Format (payload, after the seal):
// { kind u8 | create_revision i64 | version i64 | lease i64 | key_len u32 | key | value }
// The mod revision is the table key. Tombstones have zero create/version/lease and no value.
const KIND: usize = 0;
const CREATE: usize = 1;
const VERSION: usize = 9;
const LEASE: usize = 17;
const KEY_LEN: usize = 25;
const KEY: usize = 29;

/// Bytes of a sealed history record before its key (the fixed part).
pub const RECORD_HEADER_LEN: usize = CRC_LEN + KEY;

/// One decoded history record, borrowing its key and value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    pub kind: RecordKind,
    pub create_revision: i64,
    pub version: i64,
    pub lease: i64,
    pub key: &'a [u8],
    pub value: &'a [u8],
}

impl<'a> Record<'a> {
    pub fn put(key: &'a [u8], value: &'a [u8], create: i64, version: i64, lease: i64) -> Self {
        Record {
            kind: RecordKind::Put,
            create_revision: create,
            version,
            lease,
            key,
            value,
        }
    }

    pub fn tombstone(key: &'a [u8]) -> Self {
        Record {
            kind: RecordKind::Tombstone,
            create_revision: 0,
            version: 0,
            lease: 0,
            key,
            value: &[],
        }
    }

    /// The sealed bytes stored under `rev`.
    pub fn encode(&self, rev: Revision) -> Vec<u8> {
        let mut p = Vec::with_capacity(KEY + self.key.len() + self.value.len());
        p.push(self.kind as u8);
        p.extend_from_slice(&self.create_revision.to_le_bytes());
        p.extend_from_slice(&self.version.to_le_bytes());
        p.extend_from_slice(&self.lease.to_le_bytes());
        p.extend_from_slice(&(self.key.len() as u32).to_le_bytes());
        p.extend_from_slice(self.key);
        p.extend_from_slice(self.value);
        seal(&rev.encode(), &p)
    }

    /// Decodes and verifies the record stored under the table key `rev_key`.
    pub fn decode(rev_key: &[u8], sealed: &'a [u8]) -> Result<Record<'a>> {
        let at = show_key(rev_key);
        let p = unseal(KV_TABLE, rev_key, sealed)?;
        if p.len() < KEY {
            return Err(corrupt(KV_TABLE, at, "record shorter than its header"));
        }
        let kind = match p[KIND] {
            1 => RecordKind::Put,
            2 => RecordKind::Tombstone,
            k => return Err(corrupt(KV_TABLE, at, &format!("unknown record kind {k}"))),
        };
        let i64_at = |o: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&p[o..o + 8]);
            i64::from_le_bytes(b)
        };
        let mut kl = [0u8; 4];
        kl.copy_from_slice(&p[KEY_LEN..KEY]);
        let key_len = u32::from_le_bytes(kl) as usize;
        let Some(key) = p.get(KEY..KEY + key_len) else {
            return Err(corrupt(KV_TABLE, at, "key length runs past the record"));
        };
        Ok(Record {
            kind,
            create_revision: i64_at(CREATE),
            version: i64_at(VERSION),
            lease: i64_at(LEASE),
            key,
            value: &p[KEY + key_len..],
        })
    }

    /// The etcd key-value this record describes at `rev` (tombstones carry only the key
    /// and mod revision, as in etcd's delete events).
    pub fn to_kv(&self, rev: Revision) -> KeyValue {
        KeyValue {
            key: self.key.to_vec(),
            create_revision: self.create_revision,
            mod_revision: rev.main,
            version: self.version,
            value: self.value.to_vec(),
            lease: self.lease,
        }
    }
}

/// Lease table key: the id as 8 big-endian bytes.
pub fn lease_key(id: i64) -> [u8; 8] {
    (id as u64).to_be_bytes()
}

// Format (payload): { ttl i64 LE | remaining_ttl i64 LE }
pub fn encode_lease(id: i64, ttl: i64, remaining_ttl: i64) -> Vec<u8> {
    let mut p = [0u8; 16];
    p[..8].copy_from_slice(&ttl.to_le_bytes());
    p[8..].copy_from_slice(&remaining_ttl.to_le_bytes());
    seal(&lease_key(id), &p)
}

/// Decodes a lease entry into (id, ttl, remaining_ttl).
pub fn decode_lease(key: &[u8], value: &[u8]) -> Result<(i64, i64, i64)> {
    let p = unseal(LEASE_TABLE, key, value)?;
    let (Ok(k), true) = (<[u8; 8]>::try_from(key), p.len() == 16) else {
        return Err(corrupt(
            LEASE_TABLE,
            show_key(key),
            "wrong key or value size",
        ));
    };
    let mut a = [0u8; 8];
    let mut b = [0u8; 8];
    a.copy_from_slice(&p[..8]);
    b.copy_from_slice(&p[8..]);
    Ok((
        u64::from_be_bytes(k) as i64,
        i64::from_le_bytes(a),
        i64::from_le_bytes(b),
    ))
}

/// Alarm table key: { member_id u64 BE | alarm type u32 BE }; the value is an empty sealed payload.
pub fn alarm_key(member_id: u64, alarm: i32) -> [u8; 12] {
    let mut k = [0u8; 12];
    k[..8].copy_from_slice(&member_id.to_be_bytes());
    k[8..].copy_from_slice(&(alarm as u32).to_be_bytes());
    k
}

/// Decodes an alarm entry into (member_id, alarm type).
pub fn decode_alarm(key: &[u8], value: &[u8]) -> Result<(u64, i32)> {
    let p = unseal(ALARM_TABLE, key, value)?;
    if key.len() != 12 || !p.is_empty() {
        return Err(corrupt(
            ALARM_TABLE,
            show_key(key),
            "wrong key or value size",
        ));
    }
    let mut m = [0u8; 8];
    let mut a = [0u8; 4];
    m.copy_from_slice(&key[..8]);
    a.copy_from_slice(&key[8..]);
    Ok((u64::from_be_bytes(m), u32::from_be_bytes(a) as i32))
}

/// Auth table keys: the flags, and users and roles by name.
pub const AUTH_FLAGS_KEY: &[u8] = b"flags";
pub const AUTH_USER_PREFIX: &[u8] = b"user/";
pub const AUTH_ROLE_PREFIX: &[u8] = b"role/";

pub fn auth_user_key(name: &str) -> Vec<u8> {
    [AUTH_USER_PREFIX, name.as_bytes()].concat()
}

pub fn auth_role_key(name: &str) -> Vec<u8> {
    [AUTH_ROLE_PREFIX, name.as_bytes()].concat()
}

// Format (payload): { enabled u8 (0 or 1) | auth revision u64 LE }
pub fn encode_auth_flags(enabled: bool, revision: u64) -> Vec<u8> {
    let mut p = [0u8; 9];
    p[0] = u8::from(enabled);
    p[1..].copy_from_slice(&revision.to_le_bytes());
    seal(AUTH_FLAGS_KEY, &p)
}

/// Decodes the auth flags into (enabled, auth revision).
pub fn decode_auth_flags(value: &[u8]) -> Result<(bool, u64)> {
    let p = unseal(AUTH_TABLE, AUTH_FLAGS_KEY, value)?;
    match p {
        [e @ (0 | 1), rev @ ..] if rev.len() == 8 => {
            let mut b = [0u8; 8];
            b.copy_from_slice(rev);
            Ok((*e == 1, u64::from_le_bytes(b)))
        }
        _ => Err(corrupt(AUTH_TABLE, "key flags", "malformed auth flags")),
    }
}

// Format (payload): etcd's authpb.User protobuf (name, bcrypt hash, sorted roles, options).
pub fn encode_auth_user(user: &User) -> Vec<u8> {
    let key = [AUTH_USER_PREFIX, &user.name].concat();
    seal(&key, &user.encode_to_vec())
}

/// Decodes a user entry; its name must be the one in the key.
pub fn decode_auth_user(key: &[u8], value: &[u8]) -> Result<User> {
    let p = unseal(AUTH_TABLE, key, value)?;
    let user = User::decode(p).map_err(|e| corrupt(AUTH_TABLE, show_key(key), &e.to_string()))?;
    if key.strip_prefix(AUTH_USER_PREFIX) != Some(user.name.as_slice()) {
        return Err(corrupt(
            AUTH_TABLE,
            show_key(key),
            "user name differs from key",
        ));
    }
    Ok(user)
}

// Format (payload): etcd's authpb.Role protobuf (name, permissions sorted by key).
pub fn encode_auth_role(role: &Role) -> Vec<u8> {
    let key = [AUTH_ROLE_PREFIX, &role.name].concat();
    seal(&key, &role.encode_to_vec())
}

/// Decodes a role entry; its name must be the one in the key.
pub fn decode_auth_role(key: &[u8], value: &[u8]) -> Result<Role> {
    let p = unseal(AUTH_TABLE, key, value)?;
    let role = Role::decode(p).map_err(|e| corrupt(AUTH_TABLE, show_key(key), &e.to_string()))?;
    if key.strip_prefix(AUTH_ROLE_PREFIX) != Some(role.name.as_slice()) {
        return Err(corrupt(
            AUTH_TABLE,
            show_key(key),
            "role name differs from key",
        ));
    }
    Ok(role)
}

/// A sealed i64 (meta revisions).
pub fn encode_i64(key: &[u8], v: i64) -> Vec<u8> {
    seal(key, &v.to_le_bytes())
}

pub fn decode_i64(key: &[u8], value: &[u8]) -> Result<i64> {
    let p = unseal(META_TABLE, key, value)?;
    let b: [u8; 8] = p
        .try_into()
        .map_err(|_| corrupt(META_TABLE, show_key(key), "expected 8 bytes"))?;
    Ok(i64::from_le_bytes(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trips() {
        let rev = Revision::new(7, 2);
        let r = Record::put(b"key", b"value", 5, 3, 99);
        let bytes = r.encode(rev);
        assert_eq!(bytes.len(), RECORD_HEADER_LEN + 3 + 5);
        let back = Record::decode(&rev.encode(), &bytes).unwrap();
        assert_eq!(back, r);
        let kv = back.to_kv(rev);
        assert_eq!(kv.mod_revision, 7);
        assert_eq!(kv.create_revision, 5);

        let t = Record::tombstone(b"key");
        let bytes = t.encode(rev);
        assert_eq!(Record::decode(&rev.encode(), &bytes).unwrap(), t);
    }

    #[test]
    fn record_is_bound_to_its_revision_and_checked() {
        let rev = Revision::new(7, 2);
        let bytes = Record::put(b"k", b"v", 7, 1, 0).encode(rev);
        // Read under another revision: the seal does not match.
        let e = Record::decode(&Revision::new(7, 3).encode(), &bytes).unwrap_err();
        assert!(e.to_string().contains("checksum mismatch"), "{e}");
        assert!(e.to_string().contains("revision 7_3"), "{e}");
        // Any flipped bit is caught.
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x10;
            assert!(Record::decode(&rev.encode(), &b).is_err(), "byte {i}");
        }
        assert!(Record::decode(&rev.encode(), &bytes[..3]).is_err());
    }

    #[test]
    fn malformed_payloads_are_errors_not_panics() {
        let key = Revision::new(1, 0).encode();
        // Valid seal, nonsense inside.
        for payload in [&b""[..], &[9u8; 40][..], &[1u8; 29][..]] {
            let mut p = payload.to_vec();
            if p.len() >= KEY {
                p[KEY_LEN..KEY].copy_from_slice(&1000u32.to_le_bytes());
            }
            assert!(Record::decode(&key, &seal(&key, &p)).is_err());
        }
    }

    #[test]
    fn lease_alarm_and_meta_round_trip() {
        let v = encode_lease(-5, 60, 42);
        assert_eq!(decode_lease(&lease_key(-5), &v).unwrap(), (-5, 60, 42));
        assert!(decode_lease(&lease_key(6), &v).is_err());
        let k = alarm_key(3, 1);
        assert_eq!(decode_alarm(&k, &seal(&k, &[])).unwrap(), (3, 1));
        let m = encode_i64(META_CURRENT_REV, 12);
        assert_eq!(decode_i64(META_CURRENT_REV, &m).unwrap(), 12);
        assert!(decode_i64(META_COMPACT_REV, &m).is_err());
    }

    #[test]
    fn auth_records_round_trip_and_are_checked() {
        let f = encode_auth_flags(true, 42);
        assert_eq!(decode_auth_flags(&f).unwrap(), (true, 42));
        assert!(decode_auth_flags(&seal(AUTH_FLAGS_KEY, &[2; 9])).is_err());
        assert!(decode_auth_flags(&seal(AUTH_FLAGS_KEY, &[1; 3])).is_err());
        let user = User {
            name: b"alice".to_vec(),
            password: b"$2b$04$hash".to_vec(),
            roles: vec!["r1".into()],
            options: None,
        };
        let v = encode_auth_user(&user);
        assert_eq!(decode_auth_user(&auth_user_key("alice"), &v).unwrap(), user);
        assert!(decode_auth_user(&auth_user_key("bob"), &v).is_err());
        let bad = seal(&auth_user_key("alice"), &[0xff, 0xff]);
        assert!(decode_auth_user(&auth_user_key("alice"), &bad).is_err());
        let role = Role {
            name: b"r1".to_vec(),
            key_permission: vec![],
        };
        let v = encode_auth_role(&role);
        assert_eq!(decode_auth_role(&auth_role_key("r1"), &v).unwrap(), role);
        assert!(decode_auth_role(&auth_role_key("r2"), &v).is_err());
    }
}
