//! etcd's auth against the real binary: users and roles and their errors, enabling and
//! disabling, tokens, permission checks on KV, Watch, Lease and Maintenance calls, and
//! auth state across a restart. Runs against etcd 3.4 as well
//! (`MNEMO_TEST_SERVER_BIN=/usr/bin/etcd`).

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::MnemoProcess;
use mnemo_proto::authpb::permission::Type as PermType;
use mnemo_proto::authpb::Permission;
use mnemo_proto::etcdserverpb::auth_client::AuthClient;
use mnemo_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use mnemo_proto::etcdserverpb::request_op::Request as Op;
use mnemo_proto::etcdserverpb::watch_request::RequestUnion;
use mnemo_proto::etcdserverpb::*;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

/// Flags for a quick bcrypt in tests (etcd has the same flag).
const FLAGS: &[&str] = &["--bcrypt-cost=4"];

/// Whether the tests run against etcd itself (`MNEMO_TEST_SERVER_BIN`).
fn against_etcd() -> bool {
    common::mnemo_bin() != env!("CARGO_BIN_EXE_mnemo")
}

fn with_token<T>(msg: T, token: &str) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut().insert("token", token.parse().unwrap());
    r
}

/// `token` of `None`: no token at all.
fn req<T>(msg: T, token: Option<&str>) -> Request<T> {
    match token {
        Some(t) => with_token(msg, t),
        None => Request::new(msg),
    }
}

fn status<T: std::fmt::Debug>(r: Result<T, Status>) -> (Code, String) {
    let s = r.unwrap_err();
    (s.code(), s.message().to_string())
}

fn err(code: Code, msg: &str) -> (Code, String) {
    (code, msg.to_string())
}

fn denied() -> (Code, String) {
    err(Code::PermissionDenied, "etcdserver: permission denied")
}

fn user_empty() -> (Code, String) {
    err(Code::InvalidArgument, "etcdserver: user name is empty")
}

async fn add_user(auth: &mut AuthClient<Channel>, token: Option<&str>, name: &str, pw: &str) {
    let r = AuthUserAddRequest {
        name: name.into(),
        password: pw.into(),
        ..Default::default()
    };
    auth.user_add(req(r, token)).await.unwrap();
}

async fn grant_role(auth: &mut AuthClient<Channel>, token: Option<&str>, user: &str, role: &str) {
    let r = AuthUserGrantRoleRequest {
        user: user.into(),
        role: role.into(),
    };
    auth.user_grant_role(req(r, token)).await.unwrap();
}

async fn add_role(
    auth: &mut AuthClient<Channel>,
    token: Option<&str>,
    role: &str,
    perms: &[(PermType, &str, &[u8])],
) {
    auth.role_add(req(AuthRoleAddRequest { name: role.into() }, token))
        .await
        .unwrap();
    for (t, key, end) in perms {
        let r = AuthRoleGrantPermissionRequest {
            name: role.into(),
            perm: Some(Permission {
                perm_type: *t as i32,
                key: key.as_bytes().to_vec(),
                range_end: end.to_vec(),
            }),
        };
        auth.role_grant_permission(req(r, token)).await.unwrap();
    }
}

async fn login(auth: &mut AuthClient<Channel>, name: &str, pw: &str) -> String {
    auth.authenticate(AuthenticateRequest {
        name: name.into(),
        password: pw.into(),
    })
    .await
    .unwrap()
    .into_inner()
    .token
}

/// Adds root (with the root role) and enables auth; returns root's token.
async fn enable_with_root(auth: &mut AuthClient<Channel>) -> String {
    common::enable_auth_with_root(auth, "rootpw").await;
    login(auth, "root", "rootpw").await
}

fn get(key: &str) -> RangeRequest {
    RangeRequest {
        key: key.into(),
        ..Default::default()
    }
}

fn range(key: &str, end: &[u8]) -> RangeRequest {
    RangeRequest {
        key: key.into(),
        range_end: end.to_vec(),
        ..Default::default()
    }
}

fn put(key: &str, value: &str) -> PutRequest {
    PutRequest {
        key: key.into(),
        value: value.into(),
        ..Default::default()
    }
}

fn delete(key: &str, end: &[u8]) -> DeleteRangeRequest {
    DeleteRangeRequest {
        key: key.into(),
        range_end: end.to_vec(),
        ..Default::default()
    }
}

fn version_is(key: &str, v: i64) -> Compare {
    Compare {
        result: CompareResult::Equal as i32,
        target: CompareTarget::Version as i32,
        key: key.into(),
        target_union: Some(TargetUnion::Version(v)),
        ..Default::default()
    }
}

fn put_op(key: &str, value: &str) -> RequestOp {
    RequestOp {
        request: Some(Op::RequestPut(put(key, value))),
    }
}

#[tokio::test]
async fn users_and_roles_are_managed_with_etcds_errors() {
    let m = MnemoProcess::start(FLAGS);
    let mut auth = m.auth().await;
    add_user(&mut auth, None, "u", "pw").await;
    let again = AuthUserAddRequest {
        name: "u".into(),
        password: "x".into(),
        ..Default::default()
    };
    assert_eq!(
        status(auth.user_add(again).await),
        err(
            Code::FailedPrecondition,
            "etcdserver: user name already exists"
        )
    );
    let empty = AuthUserAddRequest {
        password: "x".into(),
        ..Default::default()
    };
    assert_eq!(status(auth.user_add(empty).await), user_empty());
    let missing = AuthUserGetRequest {
        name: "ghost".into(),
    };
    assert_eq!(
        status(auth.user_get(missing).await),
        err(Code::FailedPrecondition, "etcdserver: user name not found")
    );

    add_role(
        &mut auth,
        None,
        "r",
        &[
            (PermType::Read, "k1", b""),
            (PermType::Readwrite, "p/", b"p0"),
        ],
    )
    .await;
    let dup = AuthRoleAddRequest { name: "r".into() };
    assert_eq!(
        status(auth.role_add(dup).await),
        err(
            Code::FailedPrecondition,
            "etcdserver: role name already exists"
        )
    );
    let empty = AuthRoleAddRequest { name: "".into() };
    assert_eq!(
        status(auth.role_add(empty).await),
        err(Code::InvalidArgument, "etcdserver: role name is empty")
    );
    let no_role = AuthUserGrantRoleRequest {
        user: "u".into(),
        role: "nope".into(),
    };
    assert_eq!(
        status(auth.user_grant_role(no_role).await),
        err(Code::FailedPrecondition, "etcdserver: role name not found")
    );
    let no_user = AuthUserGrantRoleRequest {
        user: "ghost".into(),
        role: "r".into(),
    };
    assert_eq!(
        status(auth.user_grant_role(no_user).await),
        err(Code::FailedPrecondition, "etcdserver: user name not found")
    );
    grant_role(&mut auth, None, "u", "r").await;
    // Granting a role twice is not an error.
    grant_role(&mut auth, None, "u", "r").await;

    let roles = auth
        .user_get(AuthUserGetRequest { name: "u".into() })
        .await
        .unwrap()
        .into_inner()
        .roles;
    assert_eq!(roles, ["r"]);
    let perms = auth
        .role_get(AuthRoleGetRequest { role: "r".into() })
        .await
        .unwrap()
        .into_inner()
        .perm;
    let got: Vec<(i32, &[u8], &[u8])> = perms
        .iter()
        .map(|p| (p.perm_type, &p.key[..], &p.range_end[..]))
        .collect();
    assert_eq!(
        got,
        [
            (PermType::Read as i32, &b"k1"[..], &b""[..]),
            (PermType::Readwrite as i32, &b"p/"[..], &b"p0"[..]),
        ]
    );
    add_user(&mut auth, None, "a", "pw").await;
    let users = auth
        .user_list(AuthUserListRequest {})
        .await
        .unwrap()
        .into_inner()
        .users;
    assert_eq!(users, ["a", "u"]);
    let roles = auth
        .role_list(AuthRoleListRequest {})
        .await
        .unwrap()
        .into_inner()
        .roles;
    assert_eq!(roles, ["r"]);

    let not_granted = AuthUserRevokeRoleRequest {
        name: "a".into(),
        role: "r".into(),
    };
    assert_eq!(
        status(auth.user_revoke_role(not_granted).await),
        err(
            Code::FailedPrecondition,
            "etcdserver: role is not granted to the user"
        )
    );
    let no_perm = AuthRoleRevokePermissionRequest {
        role: "r".into(),
        key: b"zz".to_vec(),
        range_end: vec![],
    };
    assert_eq!(
        status(auth.role_revoke_permission(no_perm).await),
        err(
            Code::FailedPrecondition,
            "etcdserver: permission is not granted to the role"
        )
    );
    let revoke = AuthRoleRevokePermissionRequest {
        role: "r".into(),
        key: b"k1".to_vec(),
        range_end: vec![],
    };
    auth.role_revoke_permission(revoke).await.unwrap();

    // Deleting a role takes it from its users.
    auth.role_delete(AuthRoleDeleteRequest { role: "r".into() })
        .await
        .unwrap();
    let roles = auth
        .user_get(AuthUserGetRequest { name: "u".into() })
        .await
        .unwrap()
        .into_inner()
        .roles;
    assert!(roles.is_empty(), "{roles:?}");
    auth.user_delete(AuthUserDeleteRequest { name: "u".into() })
        .await
        .unwrap();
    assert_eq!(
        status(
            auth.user_delete(AuthUserDeleteRequest { name: "u".into() })
                .await
        ),
        err(Code::FailedPrecondition, "etcdserver: user name not found")
    );
}

#[tokio::test]
async fn enabling_needs_root_and_then_every_request_needs_a_user() {
    let m = MnemoProcess::start(FLAGS);
    let mut auth = m.auth().await;
    let mut kv = m.kv().await;
    assert_eq!(
        status(auth.auth_enable(AuthEnableRequest {}).await),
        err(
            Code::FailedPrecondition,
            "etcdserver: root user does not exist"
        )
    );
    add_user(&mut auth, None, "root", "rootpw").await;
    assert_eq!(
        status(auth.auth_enable(AuthEnableRequest {}).await),
        err(
            Code::FailedPrecondition,
            "etcdserver: root user does not have root role"
        )
    );
    // Authenticate needs auth enabled.
    let r = AuthenticateRequest {
        name: "root".into(),
        password: "rootpw".into(),
    };
    assert_eq!(
        status(auth.authenticate(r).await),
        err(
            Code::FailedPrecondition,
            "etcdserver: authentication is not enabled"
        )
    );
    grant_role(&mut auth, None, "root", "root").await;
    add_user(&mut auth, None, "u", "upw").await;
    auth.auth_enable(AuthEnableRequest {}).await.unwrap();
    // AuthStatus is etcd 3.5's; 3.4 does not have it.
    if !against_etcd() {
        let st = auth
            .auth_status(AuthStatusRequest {})
            .await
            .unwrap()
            .into_inner();
        assert!(st.enabled);
        // Two user adds and a grant.
        assert_eq!(st.auth_revision, 3);
    }

    assert_eq!(status(kv.range(get("k")).await), user_empty());
    assert_eq!(status(kv.put(put("k", "v")).await), user_empty());
    for (name, pw) in [("root", "wrong"), ("nobody", "x")] {
        let r = AuthenticateRequest {
            name: name.into(),
            password: pw.into(),
        };
        assert_eq!(
            status(auth.authenticate(r).await),
            err(
                Code::InvalidArgument,
                "etcdserver: authentication failed, invalid user ID or password"
            )
        );
    }
    assert_eq!(
        status(kv.range(with_token(get("k"), "bogus.1")).await),
        err(Code::Unauthenticated, "etcdserver: invalid auth token")
    );

    // Root may do anything.
    let root = login(&mut auth, "root", "rootpw").await;
    kv.put(with_token(put("k", "v"), &root)).await.unwrap();
    let r = kv.range(with_token(get("k"), &root)).await.unwrap();
    assert_eq!(r.into_inner().kvs[0].value, b"v");
    let txn = TxnRequest {
        compare: vec![version_is("k", 1)],
        success: vec![put_op("k", "w")],
        ..Default::default()
    };
    assert!(
        kv.txn(with_token(txn, &root))
            .await
            .unwrap()
            .into_inner()
            .succeeded
    );
    kv.delete_range(with_token(delete("k", b""), &root))
        .await
        .unwrap();
    let mut maint = m.maintenance().await;
    maint
        .defragment(with_token(DefragmentRequest {}, &root))
        .await
        .unwrap();
    let users = auth
        .user_list(with_token(AuthUserListRequest {}, &root))
        .await
        .unwrap()
        .into_inner()
        .users;
    assert_eq!(users, ["root", "u"]);

    // Others may not manage auth or the member.
    let u = login(&mut auth, "u", "upw").await;
    assert_eq!(
        status(auth.user_list(with_token(AuthUserListRequest {}, &u)).await),
        denied()
    );
    assert_eq!(
        status(
            auth.auth_disable(with_token(AuthDisableRequest {}, &u))
                .await
        ),
        denied()
    );
    assert_eq!(
        status(maint.defragment(with_token(DefragmentRequest {}, &u)).await),
        err(Code::Unknown, "auth: permission denied")
    );
    assert_eq!(
        status(maint.hash_kv(HashKvRequest { revision: 0 }).await),
        err(Code::Unknown, "auth: user name is empty")
    );
    // A user may read itself.
    auth.user_get(with_token(AuthUserGetRequest { name: "u".into() }, &u))
        .await
        .unwrap();
    // Root stays root while auth is on.
    let del = AuthUserDeleteRequest {
        name: "root".into(),
    };
    assert_eq!(
        status(auth.user_delete(with_token(del, &root)).await),
        err(Code::InvalidArgument, "etcdserver: invalid auth management")
    );
    let del = AuthRoleDeleteRequest {
        role: "root".into(),
    };
    assert_eq!(
        status(auth.role_delete(with_token(del, &root)).await),
        err(Code::InvalidArgument, "etcdserver: invalid auth management")
    );

    // Disabling restores open access and voids every token (a request that still
    // carries one is refused, as etcd does).
    auth.auth_disable(with_token(AuthDisableRequest {}, &root))
        .await
        .unwrap();
    kv.put(put("k", "open")).await.unwrap();
    assert_eq!(
        status(kv.range(with_token(get("k"), &u)).await),
        err(Code::Unauthenticated, "etcdserver: invalid auth token")
    );
    maint.defragment(DefragmentRequest {}).await.unwrap();
    // Enabling again voids the tokens handed out before.
    auth.auth_enable(AuthEnableRequest {}).await.unwrap();
    assert_eq!(
        status(kv.range(with_token(get("k"), &root)).await),
        err(Code::Unauthenticated, "etcdserver: invalid auth token")
    );
}

/// A user with read on a prefix, one with read-write on one key, one with nothing.
async fn three_users(m: &MnemoProcess) -> (String, String, String, String) {
    let mut auth = m.auth().await;
    add_role(&mut auth, None, "reader", &[(PermType::Read, "p/", b"p0")]).await;
    add_role(
        &mut auth,
        None,
        "writer",
        &[(PermType::Readwrite, "k1", b"")],
    )
    .await;
    for (user, role) in [
        ("reader", Some("reader")),
        ("writer", Some("writer")),
        ("none", None),
    ] {
        add_user(&mut auth, None, user, "pw").await;
        if let Some(role) = role {
            grant_role(&mut auth, None, user, role).await;
        }
    }
    let root = enable_with_root(&mut auth).await;
    (
        root,
        login(&mut auth, "reader", "pw").await,
        login(&mut auth, "writer", "pw").await,
        login(&mut auth, "none", "pw").await,
    )
}

#[tokio::test]
async fn keys_and_ranges_need_the_matching_permission() {
    let m = MnemoProcess::start(FLAGS);
    let (root, reader, writer, none) = three_users(&m).await;
    let mut kv = m.kv().await;
    kv.put(with_token(put("p/a", "1"), &root)).await.unwrap();
    kv.put(with_token(put("k2", "x"), &root)).await.unwrap();

    // Read on a prefix: get and range inside it, nothing more.
    let r = kv.range(with_token(get("p/a"), &reader)).await.unwrap();
    assert_eq!(r.into_inner().kvs.len(), 1);
    kv.range(with_token(range("p/", b"p0"), &reader))
        .await
        .unwrap();
    kv.range(with_token(range("p/a", b"p/z"), &reader))
        .await
        .unwrap();
    for denied_req in [get("k1"), range("p/", b"\0"), range("a", b"p0")] {
        assert_eq!(
            status(kv.range(with_token(denied_req, &reader)).await),
            denied()
        );
    }
    assert_eq!(
        status(kv.put(with_token(put("p/a", "2"), &reader)).await),
        denied()
    );
    assert_eq!(
        status(
            kv.delete_range(with_token(delete("p/a", b""), &reader))
                .await
        ),
        denied()
    );

    // Read-write on one key.
    kv.put(with_token(put("k1", "v"), &writer)).await.unwrap();
    kv.range(with_token(get("k1"), &writer)).await.unwrap();
    assert_eq!(
        status(kv.put(with_token(put("k2", "v"), &writer)).await),
        denied()
    );
    assert_eq!(
        status(
            kv.delete_range(with_token(delete("k1", b"k3"), &writer))
                .await
        ),
        denied()
    );
    let ok = TxnRequest {
        compare: vec![version_is("k1", 1)],
        success: vec![put_op("k1", "w")],
        ..Default::default()
    };
    kv.txn(with_token(ok, &writer)).await.unwrap();
    // A txn is refused for any key it could touch: compares and both branches.
    let compare_other = TxnRequest {
        compare: vec![version_is("k2", 1)],
        success: vec![put_op("k1", "w")],
        ..Default::default()
    };
    let other_branch = TxnRequest {
        compare: vec![version_is("k1", 2)],
        success: vec![put_op("k1", "w")],
        failure: vec![put_op("k2", "w")],
    };
    let nested = TxnRequest {
        success: vec![RequestOp {
            request: Some(Op::RequestTxn(TxnRequest {
                success: vec![RequestOp {
                    request: Some(Op::RequestRange(get("k2"))),
                }],
                ..Default::default()
            })),
        }],
        ..Default::default()
    };
    for t in [compare_other, other_branch] {
        assert_eq!(status(kv.txn(with_token(t, &writer)).await), denied());
    }
    // etcd 3.4 does not look into nested txns (a hole mnemo does not copy).
    if !against_etcd() {
        assert_eq!(status(kv.txn(with_token(nested, &writer)).await), denied());
    }
    kv.delete_range(with_token(delete("k1", b""), &writer))
        .await
        .unwrap();

    // No role: nothing.
    assert_eq!(
        status(kv.range(with_token(get("k1"), &none)).await),
        denied()
    );
    assert_eq!(
        status(kv.put(with_token(put("k1", "v"), &none)).await),
        denied()
    );
    assert_eq!(
        status(kv.delete_range(with_token(delete("k1", b""), &none)).await),
        denied()
    );
    let t = TxnRequest {
        success: vec![RequestOp {
            request: Some(Op::RequestRange(get("k1"))),
        }],
        ..Default::default()
    };
    assert_eq!(status(kv.txn(with_token(t, &none)).await), denied());
}

#[tokio::test]
async fn watches_and_lease_revokes_are_checked() {
    let m = MnemoProcess::start(FLAGS);
    let (root, reader, writer, none) = three_users(&m).await;

    // A watch on keys the caller may not read is created and canceled at once.
    let denied_reason = "rpc error: code = PermissionDenied desc = etcdserver: permission denied";
    let empty_reason = "rpc error: code = InvalidArgument desc = etcdserver: user name is empty";
    for (token, reason) in [
        (Some(none.as_str()), denied_reason),
        (Some(reader.as_str()), denied_reason),
        (None, empty_reason),
    ] {
        let (_tx, mut stream) = watch_k1(&m, token).await;
        let r = tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert!(r.created && r.canceled, "{r:?}");
        assert_eq!(r.cancel_reason, reason);
    }
    // The writer may watch its key and sees its own put.
    let (_tx, mut stream) = watch_k1(&m, Some(&writer)).await;
    let r = next(&mut stream).await;
    assert!(r.created && !r.canceled, "{r:?}");
    let mut kv = m.kv().await;
    kv.put(with_token(put("k1", "seen"), &writer))
        .await
        .unwrap();
    let r = next(&mut stream).await;
    assert_eq!(r.events[0].kv.as_ref().unwrap().value, b"seen");

    // Anyone with a valid token may grant a lease; revoking it needs write permission
    // on its keys.
    let mut lease = m.lease().await;
    let id = lease
        .lease_grant(with_token(
            LeaseGrantRequest {
                ttl: 60,
                ..Default::default()
            },
            &reader,
        ))
        .await
        .unwrap()
        .into_inner()
        .id;
    let mut p = put("k1", "leased");
    p.lease = id;
    kv.put(with_token(p, &writer)).await.unwrap();
    assert_eq!(
        status(
            lease
                .lease_revoke(with_token(LeaseRevokeRequest { id }, &reader))
                .await
        ),
        denied()
    );
    lease
        .lease_revoke(with_token(LeaseRevokeRequest { id }, &writer))
        .await
        .unwrap();
    let r = kv.range(with_token(get("k1"), &root)).await.unwrap();
    assert!(r.into_inner().kvs.is_empty());
}

#[tokio::test]
async fn a_new_password_voids_that_users_tokens_only() {
    let m = MnemoProcess::start(FLAGS);
    let (root, reader, writer, _none) = three_users(&m).await;
    let mut auth = m.auth().await;
    let mut kv = m.kv().await;
    let change = AuthUserChangePasswordRequest {
        name: "reader".into(),
        password: "new".into(),
        ..Default::default()
    };
    auth.user_change_password(with_token(change, &root))
        .await
        .unwrap();
    assert_eq!(
        status(kv.range(with_token(get("p/a"), &reader)).await),
        err(Code::Unauthenticated, "etcdserver: invalid auth token")
    );
    kv.range(with_token(get("k1"), &writer)).await.unwrap();
    let old = AuthenticateRequest {
        name: "reader".into(),
        password: "pw".into(),
    };
    assert_eq!(
        status(auth.authenticate(old).await).0,
        Code::InvalidArgument
    );
    let reader = login(&mut auth, "reader", "new").await;
    kv.range(with_token(get("p/a"), &reader)).await.unwrap();

    // A role change keeps the token and applies at once.
    assert_eq!(
        status(kv.range(with_token(get("k1"), &reader)).await),
        denied()
    );
    grant_role(&mut auth, Some(&root), "reader", "writer").await;
    kv.range(with_token(get("k1"), &reader)).await.unwrap();
    let revoke = AuthUserRevokeRoleRequest {
        name: "reader".into(),
        role: "writer".into(),
    };
    auth.user_revoke_role(with_token(revoke, &root))
        .await
        .unwrap();
    assert_eq!(
        status(kv.range(with_token(get("k1"), &reader)).await),
        denied()
    );
}

#[tokio::test]
async fn auth_state_survives_a_restart() {
    let mut m = MnemoProcess::start(FLAGS);
    let (root, _reader, writer, _none) = three_users(&m).await;
    let mut kv = m.kv().await;
    kv.put(with_token(put("k1", "before"), &writer))
        .await
        .unwrap();
    m.restart();

    let mut kv = m.kv().await;
    let mut auth = m.auth().await;
    assert_eq!(status(kv.range(get("k1")).await), user_empty());
    // Simple tokens do not survive a restart.
    assert_eq!(
        status(kv.range(with_token(get("k1"), &root)).await),
        err(Code::Unauthenticated, "etcdserver: invalid auth token")
    );
    let writer = login(&mut auth, "writer", "pw").await;
    let reader = login(&mut auth, "reader", "pw").await;
    let r = kv.range(with_token(get("k1"), &writer)).await.unwrap();
    assert_eq!(r.into_inner().kvs[0].value, b"before");
    assert_eq!(
        status(kv.range(with_token(get("k1"), &reader)).await),
        denied()
    );
    let perms = auth
        .role_get(with_token(
            AuthRoleGetRequest {
                role: "reader".into(),
            },
            &reader,
        ))
        .await
        .unwrap()
        .into_inner()
        .perm;
    assert_eq!(perms.len(), 1);
    assert_eq!(perms[0].key, b"p/");

    let root = login(&mut auth, "root", "rootpw").await;
    auth.auth_disable(with_token(AuthDisableRequest {}, &root))
        .await
        .unwrap();
    m.restart();
    let mut kv = m.kv().await;
    let r = kv.range(get("k1")).await.unwrap();
    assert_eq!(r.into_inner().kvs[0].value, b"before");
}

async fn next(s: &mut tonic::Streaming<WatchResponse>) -> WatchResponse {
    tokio::time::timeout(Duration::from_secs(10), s.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap()
}

/// Opens a watch stream as `token` with one create request for `k1` already sent; the
/// sender keeps the call open.
async fn watch_k1(
    m: &MnemoProcess,
    token: Option<&str>,
) -> (mpsc::Sender<WatchRequest>, tonic::Streaming<WatchResponse>) {
    let (tx, rx) = mpsc::channel(4);
    let create = WatchCreateRequest {
        key: b"k1".to_vec(),
        ..Default::default()
    };
    tx.send(WatchRequest {
        request_union: Some(RequestUnion::CreateRequest(create)),
    })
    .await
    .unwrap();
    let mut client = m.watch().await;
    let call = client.watch(req(ReceiverStream::new(rx), token));
    let resp = tokio::time::timeout(Duration::from_secs(10), call)
        .await
        .expect("no watch stream within 10 s")
        .unwrap();
    (tx, resp.into_inner())
}

#[tokio::test]
async fn lock_needs_permission_on_its_keys() {
    use mnemo_proto::v3lockpb::{LockRequest, UnlockRequest};
    let m = MnemoProcess::start(FLAGS);
    let mut auth = m.auth().await;
    add_role(
        &mut auth,
        None,
        "locker",
        &[(PermType::Readwrite, "l/", b"l0")],
    )
    .await;
    add_user(&mut auth, None, "locker", "pw").await;
    grant_role(&mut auth, None, "locker", "locker").await;
    add_user(&mut auth, None, "none", "pw").await;
    let root = enable_with_root(&mut auth).await;
    let locker = login(&mut auth, "locker", "pw").await;
    let none = login(&mut auth, "none", "pw").await;
    let lease = m
        .lease()
        .await
        .lease_grant(with_token(
            LeaseGrantRequest {
                ttl: 60,
                ..Default::default()
            },
            &root,
        ))
        .await
        .unwrap()
        .into_inner()
        .id;
    let mut lock = m.lock().await;
    let r = LockRequest {
        name: b"l".to_vec(),
        lease,
    };
    let (code, msg) = status(lock.lock(with_token(r.clone(), &none)).await);
    assert_eq!(msg, "etcdserver: permission denied", "{code:?}");
    let key = lock
        .lock(with_token(r, &locker))
        .await
        .unwrap()
        .into_inner()
        .key;
    assert!(key.starts_with(b"l/"));
    lock.unlock(with_token(UnlockRequest { key }, &locker))
        .await
        .unwrap();
}
