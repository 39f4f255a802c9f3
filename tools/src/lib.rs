//! mnemo's operator tools:
//!
//! * [`bench`] (`mnemo-bench`): load for any etcd-compatible endpoint, modelled on
//!   etcd's benchmark tool, with a side-by-side `compare` mode.
//! * [`mnemoutl`]: inspects, checks, defragments and restores page files of stopped
//!   members and snapshots.

pub mod bench;
pub mod mnemoutl;
