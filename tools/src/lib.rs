//! mnemo's operator tools. `mnemoutl` ([`mnemoutl`]) inspects, checks, defragments and
//! restores page files of stopped members and snapshots.

pub mod mnemoutl;
