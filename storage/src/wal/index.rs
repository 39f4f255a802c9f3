//! The in-memory index: Raft index → where the record is (still in memory, or in a
//! segment at an offset).

use std::collections::VecDeque;
use std::sync::Arc;

use super::Record;

/// Where a record written to a segment lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskLoc {
    pub segment: u64,
    /// Offset of the record header in the segment.
    pub offset: u64,
    /// Payload length.
    pub len: u32,
    pub seq: u64,
}

#[derive(Debug, Clone)]
pub enum Slot {
    /// Accepted but not yet durable; readable from memory.
    Pending { seq: u64, record: Arc<Record> },
    /// Durable in a segment.
    Disk(DiskLoc),
}

impl Slot {
    pub fn seq(&self) -> u64 {
        match self {
            Slot::Pending { seq, .. } => *seq,
            Slot::Disk(l) => l.seq,
        }
    }
}

/// Contiguous entries `first .. first + slots.len()`.
///
/// Invariant: slots are in seq order, and `Disk` slots are in segment order (a record is
/// never placed in an older segment than the one before it).
#[derive(Debug, Clone, Default)]
pub struct LogIndex {
    first: u64,
    slots: VecDeque<Slot>,
    /// False only for a WAL that has never seen an entry or truncation: then any index
    /// may come first.
    started: bool,
}

impl LogIndex {
    /// An index whose next entry must be `next` (`None`: any).
    pub fn new(next: Option<u64>) -> Self {
        Self {
            first: next.unwrap_or(0),
            slots: VecDeque::new(),
            started: next.is_some(),
        }
    }

    /// The index the next entry must have (`None`: any).
    pub fn next(&self) -> Option<u64> {
        self.started.then(|| self.first + self.slots.len() as u64)
    }

    pub fn first(&self) -> Option<u64> {
        (!self.slots.is_empty()).then_some(self.first)
    }

    pub fn last(&self) -> Option<u64> {
        (!self.slots.is_empty()).then(|| self.first + self.slots.len() as u64 - 1)
    }

    /// Whether `index` may be appended next.
    pub fn accepts(&self, index: u64) -> bool {
        index != u64::MAX && self.next().is_none_or(|n| n == index)
    }

    /// Appends `slot` as entry `index`; the caller checked [`LogIndex::accepts`].
    pub fn push(&mut self, index: u64, slot: Slot) {
        debug_assert!(self.accepts(index));
        if !self.started {
            self.first = index;
            self.started = true;
        }
        self.slots.push_back(slot);
    }

    /// Drops entries `>= from`; the next entry must be `from`. `from` at or below the
    /// first entry empties the log.
    pub fn truncate(&mut self, from: u64) {
        if from <= self.first || !self.started {
            self.slots.clear();
            self.first = from;
            self.started = true;
        } else {
            self.slots.truncate((from - self.first) as usize);
        }
    }

    pub fn get(&self, index: u64) -> Option<&Slot> {
        let i = index.checked_sub(self.first)?;
        self.slots.get(usize::try_from(i).ok()?)
    }

    pub fn get_mut(&mut self, index: u64) -> Option<&mut Slot> {
        let i = index.checked_sub(self.first)?;
        self.slots.get_mut(usize::try_from(i).ok()?)
    }

    /// Removes leading entries stored in segments below `segment`.
    pub fn drop_segments_below(&mut self, segment: u64) {
        while let Some(Slot::Disk(l)) = self.slots.front() {
            if l.segment >= segment {
                break;
            }
            self.slots.pop_front();
            self.first += 1;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn disk(segment: u64, seq: u64) -> Slot {
        Slot::Disk(DiskLoc {
            segment,
            offset: 0,
            len: 0,
            seq,
        })
    }

    #[test]
    fn fresh_index_accepts_any_first_index_then_only_the_next() {
        let mut ix = LogIndex::new(None);
        assert!(ix.accepts(17));
        ix.push(17, disk(1, 1));
        assert!(!ix.accepts(17));
        assert!(!ix.accepts(19));
        assert!(ix.accepts(18));
        assert_eq!(
            (ix.first(), ix.last(), ix.next()),
            (Some(17), Some(17), Some(18))
        );
    }

    #[test]
    fn truncate_and_drop_segments() {
        let mut ix = LogIndex::new(Some(1));
        for i in 1..=6 {
            ix.push(i, disk(i.div_ceil(2), i));
        }
        ix.truncate(5);
        assert_eq!(ix.last(), Some(4));
        ix.drop_segments_below(2);
        assert_eq!((ix.first(), ix.last()), (Some(3), Some(4)));
        ix.truncate(2);
        assert_eq!((ix.first(), ix.next()), (None, Some(2)));
    }
}
