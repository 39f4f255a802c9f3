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
    // Auth (etcd's auth store).
    RootUserNotExist,
    RootRoleNotExist,
    UserAlreadyExist,
    UserEmpty,
    UserNotFound,
    RoleAlreadyExist,
    RoleNotFound,
    RoleEmpty,
    AuthFailed,
    PermissionNotGiven,
    PermissionDenied,
    RoleNotGranted,
    PermissionNotGranted,
    AuthNotEnabled,
    InvalidAuthToken,
    InvalidAuthMgmt,
    AuthOldRevision,
    // Cluster and raft.
    NoLeader,
    NotLeader,
    Timeout,
    Stopped,
    Corrupt,
    // Membership.
    MemberExist,
    PeerUrlExist,
    MemberNotFound,
    MemberNotLearner,
    LearnerNotReady,
    TooManyLearners,
    BadLeaderTransferee,
    Unhealthy,
    NotSupportedForLearner,
    Unsupported(&'static str),
    /// An error the leader returned for a request this member forwarded: its gRPC code
    /// and message, passed on unchanged.
    Remote(Code, String),
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
            Error::RootUserNotExist => (
                Code::FailedPrecondition,
                Borrowed("etcdserver: root user does not exist"),
            ),
            Error::RootRoleNotExist => (
                Code::FailedPrecondition,
                Borrowed("etcdserver: root user does not have root role"),
            ),
            Error::UserAlreadyExist => (
                Code::FailedPrecondition,
                Borrowed("etcdserver: user name already exists"),
            ),
            Error::UserEmpty => (
                Code::InvalidArgument,
                Borrowed("etcdserver: user name is empty"),
            ),
            Error::UserNotFound => (
                Code::FailedPrecondition,
                Borrowed("etcdserver: user name not found"),
            ),
            Error::RoleAlreadyExist => (
                Code::FailedPrecondition,
                Borrowed("etcdserver: role name already exists"),
            ),
            Error::RoleNotFound => (
                Code::FailedPrecondition,
                Borrowed("etcdserver: role name not found"),
            ),
            Error::RoleEmpty => (
                Code::InvalidArgument,
                Borrowed("etcdserver: role name is empty"),
            ),
            Error::AuthFailed => (
                Code::InvalidArgument,
                Borrowed("etcdserver: authentication failed, invalid user ID or password"),
            ),
            Error::PermissionNotGiven => (
                Code::InvalidArgument,
                Borrowed("etcdserver: permission not given"),
            ),
            Error::PermissionDenied => (
                Code::PermissionDenied,
                Borrowed("etcdserver: permission denied"),
            ),
            Error::RoleNotGranted => (
                Code::FailedPrecondition,
                Borrowed("etcdserver: role is not granted to the user"),
            ),
            Error::PermissionNotGranted => (
                Code::FailedPrecondition,
                Borrowed("etcdserver: permission is not granted to the role"),
            ),
            Error::AuthNotEnabled => (
                Code::FailedPrecondition,
                Borrowed("etcdserver: authentication is not enabled"),
            ),
            Error::InvalidAuthToken => (
                Code::Unauthenticated,
                Borrowed("etcdserver: invalid auth token"),
            ),
            Error::InvalidAuthMgmt => (
                Code::InvalidArgument,
                Borrowed("etcdserver: invalid auth management"),
            ),
            Error::AuthOldRevision => (
                Code::InvalidArgument,
                Borrowed("etcdserver: revision of auth store is old"),
            ),
            Error::NoLeader => (Code::Unavailable, Borrowed("etcdserver: no leader")),
            Error::NotLeader => (Code::FailedPrecondition, Borrowed("etcdserver: not leader")),
            Error::Timeout => (Code::Unavailable, Borrowed("etcdserver: request timed out")),
            Error::Stopped => (Code::Unavailable, Borrowed("etcdserver: server stopped")),
            Error::Corrupt => (Code::DataLoss, Borrowed("etcdserver: corrupt cluster")),
            Error::MemberExist => (
                Code::FailedPrecondition,
                Borrowed("etcdserver: member ID already exist"),
            ),
            Error::PeerUrlExist => (
                Code::FailedPrecondition,
                Borrowed("etcdserver: Peer URLs already exists"),
            ),
            Error::MemberNotFound => (Code::NotFound, Borrowed("etcdserver: member not found")),
            Error::MemberNotLearner => (
                Code::FailedPrecondition,
                Borrowed("etcdserver: can only promote a learner member"),
            ),
            Error::LearnerNotReady => (
                Code::FailedPrecondition,
                Borrowed(
                    "etcdserver: can only promote a learner member which is in sync with leader",
                ),
            ),
            Error::TooManyLearners => (
                Code::FailedPrecondition,
                Borrowed("etcdserver: too many learner members in cluster"),
            ),
            Error::BadLeaderTransferee => (
                Code::FailedPrecondition,
                Borrowed("etcdserver: bad leader transferee"),
            ),
            Error::Unhealthy => (Code::Unavailable, Borrowed("etcdserver: unhealthy cluster")),
            Error::NotSupportedForLearner => (
                Code::Unavailable,
                Borrowed("etcdserver: rpc not supported for learner"),
            ),
            Error::Remote(code, msg) => (*code, Owned(msg.clone())),
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

impl Error {
    /// The status of an auth error from an admin-only Maintenance call (Defragment,
    /// Snapshot, Hash, HashKV): etcd returns its auth store's own error there, which
    /// reaches the caller with code Unknown and an `auth: ` message.
    pub fn maintenance_status(self) -> Status {
        let (code, msg) = self.code_and_message();
        match msg.strip_prefix("etcdserver: ") {
            Some(rest) if self.is_auth() => Status::new(Code::Unknown, format!("auth: {rest}")),
            _ => Status::new(code, msg),
        }
    }

    fn is_auth(&self) -> bool {
        matches!(
            self,
            Error::UserEmpty
                | Error::UserNotFound
                | Error::PermissionDenied
                | Error::InvalidAuthToken
        )
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
        let s = Status::from(Error::PermissionDenied);
        assert_eq!(s.code(), Code::PermissionDenied);
        assert_eq!(s.message(), "etcdserver: permission denied");
        let s = Status::from(Error::InvalidAuthToken);
        assert_eq!(s.code(), Code::Unauthenticated);
        assert_eq!(s.message(), "etcdserver: invalid auth token");
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
