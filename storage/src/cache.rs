//! A sharded cache of validated pages, shared by all transactions.
//!
//! Committed pages are immutable until freed and reused, and a page is reused only when
//! no reader can reach it, so entries never go stale for anyone who may look them up; the
//! commit that reuses an id replaces its entry before publishing the new snapshot.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::page::PageId;

const SHARDS: usize = 16;

/// Page ids are already well spread; a multiply is enough to hash them.
#[derive(Debug, Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8 | *b as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type Map = HashMap<PageId, Arc<[u8]>, BuildHasherDefault<IdHasher>>;

#[derive(Debug)]
pub(crate) struct PageCache {
    shards: Vec<Mutex<Map>>,
    /// Pages each shard may hold.
    shard_pages: usize,
}

impl PageCache {
    pub(crate) fn new(capacity_bytes: usize, page_size: usize) -> Self {
        let pages = (capacity_bytes / page_size).max(SHARDS * 4);
        PageCache {
            shards: (0..SHARDS).map(|_| Mutex::new(Map::default())).collect(),
            shard_pages: pages / SHARDS,
        }
    }

    /// The shard is chosen by the id's low bits. It must not reuse the top bits of the
    /// map's own hash (`IdHasher`): the map stores those as its per-bucket tags, and keys
    /// of one shard sharing them makes every probe compare more keys.
    fn shard(&self, id: PageId) -> &Mutex<Map> {
        &self.shards[(id % SHARDS as u64) as usize]
    }

    pub(crate) fn get(&self, id: PageId) -> Option<Arc<[u8]>> {
        self.shard(id).lock().get(&id).cloned()
    }

    pub(crate) fn insert(&self, id: PageId, page: Arc<[u8]>) {
        let mut m = self.shard(id).lock();
        if m.len() >= self.shard_pages && !m.contains_key(&id) {
            // Evict an arbitrary entry: cheap, and good enough with hot branch pages
            // being re-read right away.
            if let Some(&victim) = m.keys().next() {
                m.remove(&victim);
            }
        }
        m.insert(id, page);
    }

    /// Forgets a page no reader can reach any more.
    pub(crate) fn remove(&self, id: PageId) {
        self.shard(id).lock().remove(&id);
    }
}
