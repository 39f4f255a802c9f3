//! The server's error type, and the one place it becomes a gRPC status.
//!
//! Every error an etcd client can see is a variant here, with etcd's gRPC code and its
//! exact message string (clients such as etcdctl and the Go client match on the text).

use std::fmt;

use tonic::{Code, Status};

/// An error returned to a client, or a deterministic rejection produced while applying.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    // Request validation.
    EmptyKey,
    KeyNotFound,
    ValueProvided,
    LeaseProvided,
    TooManyOps,
    DuplicateKey,
    RequestTooLarge,
    // MVCC.
    Compacted,
    FutureRev,
    NoSpace,
    // Leases.
    LeaseNotFound,
    LeaseExist,
    LeaseTtlTooLarge,
    // Lock and Election (etcd's concurrency package: plain errors, code Unknown).
    /// A lock waiter's key was deleted while its lease still exists.
    LockSessionExpired,
    ElectionNotLeader,
    ElectionNoLeader,
    /// Proclaim or Resign without a leader key.
    MissingLeaderKey,
    // Cluster and raft.
    NoLeader,
    NotLeader,
    Timeout,
    Stopped,
    Corrupt,
    Unsupported(&'static str),
    /// A server-side failure (I/O, corruption found on disk); the message is logged and
    /// returned as `Unavailable` like etcd's internal errors.
    Internal(String),
    /// Invalid argument with a message of our own (bad flag combination in a request).
    InvalidArgument(String),
}

impl Error {
    /// etcd's gRPC status code and message for this error.
    pub fn code_and_message(&self) -> (Code, std::borrow::Cow<'static, str>) {
        use std::borrow::Cow::{Borrowed, Owned};
        match self {
            Error::EmptyKey => (
                Code::InvalidArgument,
                Borrowed("etcdserver: key is not provided"),
            ),
            Error::KeyNotFound => (Code::InvalidArgument, Borrowed("etcdserver: key not found")),
            Error::ValueProvided => (
                Code::InvalidArgument,
                Borrowed("etcdserver: value is provided"),
            ),
            Error::LeaseProvided => (
                Code::InvalidArgument,
                Borrowed("etcdserver: lease is provided"),
            ),
            Error::TooManyOps => (
                Code::InvalidArgument,
                Borrowed("etcdserver: too many operations in txn request"),
            ),
            Error::DuplicateKey => (
                Code::InvalidArgument,
                Borrowed("etcdserver: duplicate key given in txn request"),
            ),
            Error::RequestTooLarge => (
                Code::InvalidArgument,
                Borrowed("etcdserver: request is too large"),
            ),
            Error::Compacted => (
                Code::OutOfRange,
                Borrowed("etcdserver: mvcc: required revision has been compacted"),
            ),
            Error::FutureRev => (
                Code::OutOfRange,
                Borrowed("etcdserver: mvcc: required revision is a future revision"),
            ),
            Error::NoSpace => (
                Code::ResourceExhausted,
                Borrowed("etcdserver: mvcc: database space exceeded"),
            ),
            Error::LeaseNotFound => (
                Code::NotFound,
                Borrowed("etcdserver: requested lease not found"),
            ),
            Error::LeaseExist => (
                Code::FailedPrecondition,
                Borrowed("etcdserver: lease already exists"),
            ),
            Error::LeaseTtlTooLarge => (
                Code::OutOfRange,
                Borrowed("etcdserver: too large lease TTL"),
            ),
            Error::LockSessionExpired => (Code::Unknown, Borrowed("mutex: session is expired")),
            Error::ElectionNotLeader => (Code::Unknown, Borrowed("election: not leader")),
            Error::ElectionNoLeader => (Code::Unknown, Borrowed("election: no leader")),
            Error::MissingLeaderKey => {
                (Code::Unknown, Borrowed("\"leader\" field must be provided"))
            }
            Error::NoLeader => (Code::Unavailable, Borrowed("etcdserver: no leader")),
            Error::NotLeader => (Code::FailedPrecondition, Borrowed("etcdserver: not leader")),
            Error::Timeout => (Code::Unavailable, Borrowed("etcdserver: request timed out")),
            Error::Stopped => (Code::Unavailable, Borrowed("etcdserver: server stopped")),
            Error::Corrupt => (Code::DataLoss, Borrowed("etcdserver: corrupt cluster")),
            Error::Unsupported(what) => (
                Code::Unimplemented,
                Owned(format!("mnemo: {what} is not supported")),
            ),
            Error::Internal(msg) => (Code::Unavailable, Owned(format!("etcdserver: {msg}"))),
            Error::InvalidArgument(msg) => (Code::InvalidArgument, Owned(msg.clone())),
        }
    }
}

impl Error {
    /// The status of an error from the Lock or Election service. etcd runs those over its
    /// own client inside the server; that client turns etcd's errors into plain errors,
    /// so they reach the caller with code Unknown and etcd's message, and so do ours.
    pub fn concurrency_status(self) -> Status {
        Status::new(Code::Unknown, self.code_and_message().1)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.code_and_message().1)
    }
}

impl std::error::Error for Error {}

impl From<Error> for Status {
    fn from(e: Error) -> Status {
        let (code, msg) = e.code_and_message();
        Status::new(code, msg)
    }
}

impl From<mnemo_storage::StorageError> for Error {
    fn from(e: mnemo_storage::StorageError) -> Error {
        Error::Internal(e.to_string())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_carry_etcds_codes_and_messages() {
        let s = Status::from(Error::Compacted);
        assert_eq!(s.code(), Code::OutOfRange);
        assert_eq!(
            s.message(),
            "etcdserver: mvcc: required revision has been compacted"
        );
        let s = Status::from(Error::NoSpace);
        assert_eq!(s.code(), Code::ResourceExhausted);
        assert_eq!(s.message(), "etcdserver: mvcc: database space exceeded");
        let s = Status::from(Error::RequestTooLarge);
        assert_eq!(s.code(), Code::InvalidArgument);
        assert_eq!(s.message(), "etcdserver: request is too large");
    }

    #[test]
    fn lock_and_election_errors_reach_callers_as_unknown_with_etcds_text() {
        let s = Error::LeaseNotFound.concurrency_status();
        assert_eq!(
            (s.code(), s.message()),
            (Code::Unknown, "etcdserver: requested lease not found")
        );
        let s = Error::ElectionNotLeader.concurrency_status();
        assert_eq!(
            (s.code(), s.message()),
            (Code::Unknown, "election: not leader")
        );
    }
}
