//! Byte layout of a WAL segment: the segment header and the record framing.
//!
//! docs/wal.md has the diagrams; the offset consts below are the single source of truth
//! and `layout_matches_docs` keeps them honest. All integers are little-endian.

/// Segment header magic.
pub const SEGMENT_MAGIC: [u8; 8] = *b"MNEMOWAL";
/// Format version written into every segment header.
pub const SEGMENT_VERSION: u32 = 1;
/// Size of the segment header; the first record starts here.
pub const SEGMENT_HEADER_LEN: usize = 64;
/// `first_index` value meaning "no entry has ever been appended" (a fresh WAL).
pub const NO_INDEX: u64 = u64::MAX;

// Segment header offsets.
const SH_MAGIC: usize = 0;
const SH_VERSION: usize = 8;
const SH_SEGMENT_ID: usize = 16;
const SH_FIRST_INDEX: usize = 24;
const SH_FIRST_SEQ: usize = 32;
const SH_CRC: usize = 60;

/// Size of a record header; the payload follows it.
pub const RECORD_HEADER_LEN: usize = 32;
/// Records start at multiples of this (the payload is zero-padded up to it).
pub const RECORD_ALIGN: usize = 8;

// Record header offsets.
const RH_CRC: usize = 0;
const RH_LEN: usize = 4;
const RH_SEQ: usize = 8;
const RH_INDEX: usize = 16;
const RH_LAG: usize = 24;
const RH_KIND: usize = 28;
const RH_TYPE: usize = 29;

/// What a record means to the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    // Format: { crc32c | len | seq | index | synced lag | kind=1 | entry type | 0u16 | payload | pad }
    /// A log entry with Raft index `index`; it must be the log's next index.
    Entry = 1,
    // Format: { crc32c | len=0 | seq | index | synced lag | kind=2 | 0 | 0u16 }
    /// Discards every entry with index >= `index`; the next entry has index `index`.
    Truncate = 2,
}

impl RecordKind {
    fn from_byte(b: u8) -> Option<Self> {
        match b {
            1 => Some(RecordKind::Entry),
            2 => Some(RecordKind::Truncate),
            _ => None,
        }
    }
}

/// The header fields of a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Matches the number in the file name.
    pub segment_id: u64,
    /// The log's next index when the segment was started ([`NO_INDEX`] if none yet).
    pub first_index: u64,
    /// The sequence number of the segment's first record.
    pub first_seq: u64,
}

impl SegmentHeader {
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_LEN] {
        let mut b = [0u8; SEGMENT_HEADER_LEN];
        b[SH_MAGIC..SH_MAGIC + 8].copy_from_slice(&SEGMENT_MAGIC);
        put_u32(&mut b, SH_VERSION, SEGMENT_VERSION);
        put_u64(&mut b, SH_SEGMENT_ID, self.segment_id);
        put_u64(&mut b, SH_FIRST_INDEX, self.first_index);
        put_u64(&mut b, SH_FIRST_SEQ, self.first_seq);
        let crc = crc32c::crc32c(&b[..SH_CRC]);
        put_u32(&mut b, SH_CRC, crc);
        b
    }

    /// Decodes a header; `Err` carries the reason it is not one.
    pub fn decode(bytes: &[u8]) -> Result<Self, &'static str> {
        let b = bytes
            .get(..SEGMENT_HEADER_LEN)
            .ok_or("file shorter than a segment header")?;
        if b[SH_MAGIC..SH_MAGIC + 8] != SEGMENT_MAGIC {
            return Err("bad segment magic");
        }
        if get_u32(b, SH_CRC) != crc32c::crc32c(&b[..SH_CRC]) {
            return Err("segment header checksum mismatch");
        }
        if get_u32(b, SH_VERSION) != SEGMENT_VERSION {
            return Err("unsupported segment version");
        }
        Ok(SegmentHeader {
            segment_id: get_u64(b, SH_SEGMENT_ID),
            first_index: get_u64(b, SH_FIRST_INDEX),
            first_seq: get_u64(b, SH_FIRST_SEQ),
        })
    }
}

/// A decoded record header whose checksum matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    pub kind: RecordKind,
    pub entry_type: u8,
    /// Payload length in bytes.
    pub len: u32,
    /// Position in the log: +1 per record for the life of the WAL, never reused by a
    /// record that was acknowledged.
    pub seq: u64,
    pub index: u64,
    /// Every record with a lower or equal seq was durable when this one was written.
    pub synced_seq: u64,
}

/// Bytes a record with a payload of `payload_len` occupies in a segment.
pub fn framed_len(payload_len: usize) -> usize {
    (RECORD_HEADER_LEN + payload_len).div_ceil(RECORD_ALIGN) * RECORD_ALIGN
}

/// Appends one framed record to `buf` (which must be `RECORD_ALIGN`-aligned in the file).
pub fn encode_record(buf: &mut Vec<u8>, h: &RecordHeader, payload: &[u8]) {
    debug_assert_eq!(h.len as usize, payload.len());
    debug_assert!(h.synced_seq < h.seq);
    let start = buf.len();
    let total = framed_len(payload.len());
    buf.resize(start + total, 0);
    let b = &mut buf[start..start + total];
    put_u32(b, RH_LEN, h.len);
    put_u64(b, RH_SEQ, h.seq);
    put_u64(b, RH_INDEX, h.index);
    let lag = u32::try_from(h.seq - h.synced_seq).unwrap_or(u32::MAX);
    put_u32(b, RH_LAG, lag);
    b[RH_KIND] = h.kind as u8;
    b[RH_TYPE] = h.entry_type;
    b[RECORD_HEADER_LEN..RECORD_HEADER_LEN + payload.len()].copy_from_slice(payload);
    let crc = crc32c::crc32c(&b[RH_LEN..RECORD_HEADER_LEN + payload.len()]);
    put_u32(b, RH_CRC, crc);
}

/// What sits at a record position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoded {
    /// A well-formed record; the payload is `bytes[pos + RECORD_HEADER_LEN..][..len]`.
    Valid(RecordHeader),
    /// The first 8 bytes (crc and len) are zero: never-written space, the end of the log.
    Zero,
    /// Anything else: torn, stale garbage or corruption. Callers decide which.
    Invalid,
}

/// Decodes the record at `pos` of `bytes` (a whole segment or a record read alone).
pub fn decode_record(bytes: &[u8], pos: usize) -> Decoded {
    let Some(h) = bytes.get(pos..).and_then(|b| b.get(..RECORD_HEADER_LEN)) else {
        return Decoded::Invalid;
    };
    if h[..8].iter().all(|&x| x == 0) {
        return Decoded::Zero;
    }
    let len = get_u32(h, RH_LEN);
    let Some(kind) = RecordKind::from_byte(h[RH_KIND]) else {
        return Decoded::Invalid;
    };
    let end = (pos + RECORD_HEADER_LEN).checked_add(len as usize);
    let Some(body) = end.and_then(|end| bytes.get(pos + RH_LEN..end)) else {
        return Decoded::Invalid;
    };
    if crc32c::crc32c(body) != get_u32(h, RH_CRC) {
        return Decoded::Invalid;
    }
    if kind == RecordKind::Truncate && len != 0 {
        return Decoded::Invalid;
    }
    let seq = get_u64(h, RH_SEQ);
    let lag = u64::from(get_u32(h, RH_LAG));
    if lag == 0 || lag > seq {
        return Decoded::Invalid;
    }
    Decoded::Valid(RecordHeader {
        kind,
        entry_type: h[RH_TYPE],
        len,
        seq,
        index: get_u64(h, RH_INDEX),
        synced_seq: seq - lag,
    })
}

fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// `b` must hold `at + 4` bytes (callers slice a header of known length first).
fn get_u32(b: &[u8], at: usize) -> u32 {
    let mut x = [0u8; 4];
    x.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(x)
}

fn get_u64(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn entry(seq: u64, index: u64, payload: &[u8]) -> RecordHeader {
        RecordHeader {
            kind: RecordKind::Entry,
            entry_type: 7,
            len: payload.len() as u32,
            seq,
            index,
            synced_seq: seq - 1,
        }
    }

    #[test]
    fn layout_matches_docs() {
        // docs/wal.md draws these offsets; change both together.
        assert_eq!(SEGMENT_HEADER_LEN, 64);
        assert_eq!(
            (SH_SEGMENT_ID, SH_FIRST_INDEX, SH_FIRST_SEQ, SH_CRC),
            (16, 24, 32, 60)
        );
        assert_eq!(RECORD_HEADER_LEN, 32);
        assert_eq!(
            (RH_CRC, RH_LEN, RH_SEQ, RH_INDEX, RH_LAG, RH_KIND, RH_TYPE),
            (0, 4, 8, 16, 24, 28, 29)
        );
        assert_eq!(framed_len(0), 32);
        assert_eq!(framed_len(1), 40);
        assert_eq!(framed_len(8), 40);
        assert_eq!(framed_len(256), 288);
    }

    #[test]
    fn record_round_trips_and_is_aligned() {
        let mut buf = Vec::new();
        let h = entry(5, 100, b"hello");
        encode_record(&mut buf, &h, b"hello");
        assert_eq!(buf.len() % RECORD_ALIGN, 0);
        assert_eq!(decode_record(&buf, 0), Decoded::Valid(h));
        assert_eq!(&buf[RECORD_HEADER_LEN..RECORD_HEADER_LEN + 5], b"hello");
    }

    #[test]
    fn all_zero_bytes_are_end_of_log_not_a_record() {
        let zeros = [0u8; 64];
        assert_eq!(decode_record(&zeros, 0), Decoded::Zero);
        // A zero crc/len with other bytes set is not a valid record either.
        let mut b = [0u8; 64];
        b[RH_KIND] = 1;
        b[RH_SEQ] = 1;
        assert_eq!(decode_record(&b, 0), Decoded::Zero);
        b[RH_LEN] = 0;
        b[RH_CRC] = 1;
        assert_eq!(decode_record(&b, 0), Decoded::Invalid);
    }

    #[test]
    fn every_single_bit_flip_is_detected() {
        let mut buf = Vec::new();
        encode_record(&mut buf, &entry(9, 3, b"payload!"), b"payload!");
        let used = RECORD_HEADER_LEN + 8;
        for byte in 0..used {
            for bit in 0..8 {
                let mut b = buf.clone();
                b[byte] ^= 1 << bit;
                assert!(
                    !matches!(decode_record(&b, 0), Decoded::Valid(_)),
                    "flip of byte {byte} bit {bit} accepted"
                );
            }
        }
    }

    #[test]
    fn every_truncation_is_detected() {
        let mut buf = Vec::new();
        encode_record(&mut buf, &entry(2, 1, &[0xAB; 50]), &[0xAB; 50]);
        for cut in 0..RECORD_HEADER_LEN + 50 {
            assert!(
                !matches!(decode_record(&buf[..cut], 0), Decoded::Valid(_)),
                "cut {cut}"
            );
        }
    }

    #[test]
    fn segment_header_round_trips_and_rejects_damage() {
        let h = SegmentHeader {
            segment_id: 3,
            first_index: 77,
            first_seq: 1000,
        };
        let b = h.encode();
        assert_eq!(SegmentHeader::decode(&b), Ok(h));
        for i in 0..SEGMENT_HEADER_LEN {
            let mut d = b;
            d[i] ^= 0x10;
            assert!(SegmentHeader::decode(&d).is_err(), "byte {i}");
        }
        assert!(SegmentHeader::decode(&b[..10]).is_err());
        assert!(SegmentHeader::decode(&[0u8; 64]).is_err());
    }
}
