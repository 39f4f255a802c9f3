//! Who this member is: its member id and cluster id, fixed when the data directory is
//! first used and read from it on every later start. As in etcd, `--initial-cluster`,
//! `--initial-cluster-token` and `--initial-cluster-state` matter only to a member
//! without data: afterwards a member is what its data directory says it is.
//!
//! A member of a new cluster derives both ids from the flags. A member joining an
//! existing cluster (`--initial-cluster-state existing`, added with MemberAdd) asks the
//! other members listed in `--initial-cluster` and finds itself by its peer URLs.
//!
//! The file is written once, atomically (tmp file, fsync, rename, directory fsync).

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;
use std::time::Duration;

use mnemo_proto::mnemopeerpb::PeerHeader;

use crate::error::{Error, Result};
use crate::raft::codec::Reader;
use crate::raft::hard_state::sync_dir;
use crate::raft::network::Peers;

pub const IDENTITY_FILE: &str = "identity";
const MAGIC: &[u8; 8] = b"MNEMOIDN";
const VERSION: u32 = 1;
const LEN: usize = 8 + 4 + 8 + 8 + 4;

/// A member's ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    pub member_id: u64,
    pub cluster_id: u64,
}

// Format: { magic "MNEMOIDN" | version u32 | member id u64 | cluster id u64 | crc32c u32 }
fn encode(id: &Identity) -> Vec<u8> {
    let mut out = Vec::with_capacity(LEN);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&id.member_id.to_le_bytes());
    out.extend_from_slice(&id.cluster_id.to_le_bytes());
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

fn decode(bytes: &[u8]) -> std::result::Result<Identity, String> {
    if bytes.len() != LEN {
        return Err(format!("{} bytes, expected {LEN}", bytes.len()));
    }
    let (body, crc) = bytes.split_at(LEN - 4);
    if crc32c::crc32c(body).to_le_bytes() != crc {
        return Err("checksum mismatch".into());
    }
    let mut r = Reader::new(body);
    let magic = r.bytes(8).map_err(|e| e.0)?;
    if magic != MAGIC {
        return Err("not a mnemo identity file".into());
    }
    let version = r.u32().map_err(|e| e.0)?;
    if version != VERSION {
        return Err(format!("unknown version {version}"));
    }
    let member_id = r.u64().map_err(|e| e.0)?;
    let cluster_id = r.u64().map_err(|e| e.0)?;
    Ok(Identity {
        member_id,
        cluster_id,
    })
}

/// The identity stored in `member_dir`, if any.
pub fn read(member_dir: &Path) -> Result<Option<Identity>> {
    let path = member_dir.join(IDENTITY_FILE);
    match fs::read(&path) {
        Ok(bytes) => decode(&bytes)
            .map(Some)
            .map_err(|e| Error::Internal(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::Internal(format!("reading {}: {e}", path.display()))),
    }
}

/// Stores `id` in `member_dir` durably.
pub fn write(member_dir: &Path, id: &Identity) -> Result<()> {
    let io = |e: io::Error| Error::Internal(format!("writing the member identity: {e}"));
    let tmp = member_dir.join(format!("{IDENTITY_FILE}.tmp"));
    {
        let mut f = File::create(&tmp).map_err(io)?;
        f.write_all(&encode(id)).map_err(io)?;
        f.sync_all().map_err(io)?;
    }
    fs::rename(&tmp, member_dir.join(IDENTITY_FILE)).map_err(io)?;
    sync_dir(member_dir).map_err(io)
}

/// Asks the members at `peer_urls` for the cluster and finds the member whose peer URLs
/// are `own_peer_urls`: how a member added with MemberAdd learns its ids.
pub async fn fetch_from_peers(
    peer_urls: &[String],
    own_peer_urls: &[String],
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    patience: Duration,
) -> Result<Identity> {
    let mut peers = Peers::new(0, 0);
    peers.tls = tls;
    let deadline = tokio::time::Instant::now() + patience;
    let mut last_error = String::from("no peer URLs to ask");
    loop {
        for url in peer_urls {
            let mut client = match peers.client(url) {
                Ok(c) => c,
                Err(e) => {
                    last_error = e;
                    continue;
                }
            };
            let mut req = tonic::Request::new(PeerHeader::default());
            req.set_timeout(Duration::from_secs(2));
            match client.members(req).await {
                Err(s) => last_error = format!("{url}: {}", s.message()),
                Ok(resp) => {
                    let resp = resp.into_inner();
                    let mut mine = own_peer_urls.to_vec();
                    mine.sort();
                    let me = resp.members.iter().find(|m| {
                        let mut urls = m.peer_urls.clone();
                        urls.sort();
                        urls == mine
                    });
                    match me {
                        Some(m) => {
                            return Ok(Identity {
                                member_id: m.id,
                                cluster_id: resp.cluster_id,
                            })
                        }
                        None => {
                            last_error = format!(
                                "{url}: no member of cluster {:x} has peer URLs {own_peer_urls:?} (add it with member add first)",
                                resp.cluster_id
                            )
                        }
                    }
                }
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::Internal(format!(
                "cannot fetch cluster info from peer urls: {last_error}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage() {
        let id = Identity {
            member_id: 0x8e9e05c52164694d,
            cluster_id: 0xcdf818194e3a8c32,
        };
        let bytes = encode(&id);
        assert_eq!(decode(&bytes).unwrap(), id);
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x10;
            assert!(decode(&b).is_err(), "flipped byte {i}");
        }
        assert!(decode(&bytes[..LEN - 1]).is_err());
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()).unwrap(), None);
        write(dir.path(), &id).unwrap();
        assert_eq!(read(dir.path()).unwrap(), Some(id));
    }
}
