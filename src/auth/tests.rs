use super::*;

fn add_user(a: &mut AuthState, name: &str) {
    a.user_add(&AuthUserAddRequest {
        name: name.into(),
        hashed_password: format!("hash-of-{name}"),
        ..Default::default()
    })
    .unwrap();
}

fn grant(a: &mut AuthState, user: &str, role: &str) -> Result<Touched> {
    a.user_grant_role(&AuthUserGrantRoleRequest {
        user: user.into(),
        role: role.into(),
    })
}

#[test]
fn enable_needs_root_with_the_root_role() {
    let mut a = AuthState::default();
    assert_eq!(a.enable(), Err(Error::RootUserNotExist));
    add_user(&mut a, ROOT_USER);
    assert_eq!(a.enable(), Err(Error::RootRoleNotExist));
    // The root role need not exist as a role to be granted.
    grant(&mut a, ROOT_USER, ROOT_ROLE).unwrap();
    let rev = a.revision;
    a.enable().unwrap();
    assert!(a.enabled);
    assert_eq!(a.revision, rev, "enabling does not bump the revision");
    // Root cannot be taken apart while auth is on.
    let del = AuthUserDeleteRequest {
        name: ROOT_USER.into(),
    };
    assert_eq!(a.user_delete(&del), Err(Error::InvalidAuthMgmt));
    let revoke = AuthUserRevokeRoleRequest {
        name: ROOT_USER.into(),
        role: ROOT_ROLE.into(),
    };
    assert_eq!(a.user_revoke_role(&revoke), Err(Error::InvalidAuthMgmt));
    a.disable();
    assert!(!a.enabled);
    assert_eq!(a.tokens_from, a.revision);
    a.user_revoke_role(&revoke).unwrap();
    a.user_delete(&del).unwrap();
}

#[test]
fn users_and_roles_errors() {
    let mut a = AuthState::default();
    let empty = AuthUserAddRequest::default();
    assert_eq!(a.user_add(&empty), Err(Error::UserEmpty));
    add_user(&mut a, "u");
    assert_eq!(
        a.user_add(&AuthUserAddRequest {
            name: "u".into(),
            ..Default::default()
        }),
        Err(Error::UserAlreadyExist)
    );
    assert_eq!(grant(&mut a, "nobody", "r"), Err(Error::UserNotFound));
    assert_eq!(grant(&mut a, "u", "r"), Err(Error::RoleNotFound));
    let role = |n: &str| AuthRoleAddRequest { name: n.into() };
    assert_eq!(a.role_add(&role("")), Err(Error::RoleEmpty));
    a.role_add(&role("r")).unwrap();
    assert_eq!(a.role_add(&role("r")), Err(Error::RoleAlreadyExist));
    grant(&mut a, "u", "r").unwrap();
    // Granting again changes nothing.
    let rev = a.revision;
    assert_eq!(grant(&mut a, "u", "r"), Ok(Touched::default()));
    assert_eq!(a.revision, rev);
    let revoke = AuthUserRevokeRoleRequest {
        name: "u".into(),
        role: "other".into(),
    };
    assert_eq!(a.user_revoke_role(&revoke), Err(Error::RoleNotGranted));
    let perm = AuthRoleRevokePermissionRequest {
        role: "r".into(),
        key: b"k".to_vec(),
        range_end: vec![],
    };
    assert_eq!(
        a.role_revoke_permission(&perm),
        Err(Error::PermissionNotGranted)
    );
    // Deleting a role takes it from its users.
    a.role_delete(&AuthRoleDeleteRequest { role: "r".into() })
        .unwrap();
    assert!(a.users["u"].user.roles.is_empty());
    assert_eq!(
        a.role_delete(&AuthRoleDeleteRequest { role: "r".into() }),
        Err(Error::RoleNotFound)
    );
}

#[test]
fn permissions_follow_roles_and_root_has_all() {
    let mut a = AuthState::default();
    add_user(&mut a, "u");
    add_user(&mut a, ROOT_USER);
    grant(&mut a, ROOT_USER, ROOT_ROLE).unwrap();
    a.role_add(&AuthRoleAddRequest { name: "r".into() })
        .unwrap();
    let grant_perm = |a: &mut AuthState, t: PermType| {
        a.role_grant_permission(&AuthRoleGrantPermissionRequest {
            name: "r".into(),
            perm: Some(permission(t, b"p/", b"p0")),
        })
        .unwrap();
    };
    grant_perm(&mut a, PermType::Read);
    grant(&mut a, "u", "r").unwrap();
    assert!(a.permitted("u", PermType::Read, b"p/x", b""));
    assert!(!a.permitted("u", PermType::Write, b"p/x", b""));
    // The same range again replaces the type.
    grant_perm(&mut a, PermType::Readwrite);
    assert_eq!(a.roles["r"].key_permission.len(), 1);
    assert!(a.permitted("u", PermType::Write, b"p/x", b""));
    assert!(a.permitted(ROOT_USER, PermType::Write, b"anything", b"\0"));
    assert!(!a.permitted("ghost", PermType::Read, b"p/x", b""));
    let caller = Caller::Client {
        user: None,
        revision: a.revision,
    };
    assert_eq!(
        caller.check(&a, PermType::Read, b"p/x", b""),
        Err(Error::UserEmpty)
    );
    let u = Caller::Client {
        user: Some("u".into()),
        revision: a.revision,
    };
    assert_eq!(
        u.check(&a, PermType::Read, b"q", b""),
        Err(Error::PermissionDenied)
    );
    assert_eq!(u.check_admin(&a), Err(Error::PermissionDenied));
}

#[test]
fn tokens_die_with_password_changes_and_disable() {
    let mut a = AuthState::default();
    add_user(&mut a, "u");
    add_user(&mut a, "v");
    let store = tokens::TokenStore::new(tokens::DEFAULT_TOKEN_TTL);
    let tu = store.issue("u", &a).unwrap();
    let tv = store.issue("v", &a).unwrap();
    assert_ne!(tu, tv);
    assert_eq!(store.user(&tu, &a).unwrap(), "u");
    assert_eq!(store.user("nonsense.1", &a), Err(Error::InvalidAuthToken));
    a.user_change_password(&AuthUserChangePasswordRequest {
        name: "u".into(),
        hashed_password: "new".into(),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(store.user(&tu, &a), Err(Error::InvalidAuthToken));
    assert_eq!(store.user(&tv, &a).unwrap(), "v");
    let tu = store.issue("u", &a).unwrap();
    assert_eq!(store.user(&tu, &a).unwrap(), "u");
    a.disable();
    // (disable is a no-op while disabled; force the state as if it had been on)
    a.enabled = true;
    a.disable();
    assert_eq!(store.user(&tu, &a), Err(Error::InvalidAuthToken));
    assert_eq!(store.user(&tv, &a), Err(Error::InvalidAuthToken));
}

mod applied {
    //! Auth commands through the store's apply batches and the page file.

    use mnemo_proto::etcdserverpb::{AuthEnableRequest, PutRequest};
    use mnemo_storage::Durability;

    use super::*;
    use crate::command::{Command, CommandResponse, Op};
    use crate::mvcc::Store;

    fn apply(s: &Store, cmd: Command) -> CommandResponse {
        let mut a = s.begin_apply().unwrap();
        let r = a.apply(&cmd);
        a.commit(Durability::Deferred).unwrap();
        r
    }

    fn ok(s: &Store, op: Op) {
        let r = apply(s, Command::new(op));
        assert!(matches!(r, CommandResponse::Auth(_)), "{r:?}");
    }

    #[test]
    fn auth_state_is_applied_persisted_and_guards_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let s = Store::open(&path).unwrap();
        ok(
            &s,
            Op::UserAdd(AuthUserAddRequest {
                name: "root".into(),
                hashed_password: "$2b$04$not-a-real-hash".into(),
                ..Default::default()
            }),
        );
        ok(
            &s,
            Op::UserGrantRole(AuthUserGrantRoleRequest {
                user: "root".into(),
                role: ROOT_ROLE.into(),
            }),
        );
        let checked_at = s.auth().revision;
        ok(&s, Op::RoleAdd(AuthRoleAddRequest { name: "r".into() }));
        ok(
            &s,
            Op::RoleGrantPermission(AuthRoleGrantPermissionRequest {
                name: "r".into(),
                perm: Some(permission(PermType::Read, b"a", b"b")),
            }),
        );
        ok(&s, Op::AuthEnable(AuthEnableRequest {}));
        // A rejected change changes nothing.
        let before = s.auth();
        let r = apply(
            &s,
            Command::new(Op::RoleAdd(AuthRoleAddRequest { name: "r".into() })),
        );
        assert_eq!(r, CommandResponse::Error(Error::RoleAlreadyExist));
        assert_eq!(*s.auth(), *before);

        // A write checked before the last auth change is refused; one checked now is not.
        let put = || {
            Op::Put(PutRequest {
                key: b"k".to_vec(),
                value: b"v".to_vec(),
                ..Default::default()
            })
        };
        let r = apply(&s, Command::guarded(put(), checked_at));
        assert_eq!(r, CommandResponse::Error(Error::AuthOldRevision));
        let r = apply(&s, Command::guarded(put(), s.auth().revision));
        assert!(matches!(r, CommandResponse::Put(_)), "{r:?}");

        let state = AuthState::clone(&s.auth());
        assert!(state.enabled);
        assert_eq!(state.revision, 4);
        s.sync().unwrap();
        drop(s);
        let s = Store::open(&path).unwrap();
        let back = s.auth();
        assert!(back.enabled);
        assert_eq!(back.revision, state.revision);
        assert_eq!(back.roles, state.roles);
        let users: Vec<_> = back.users.values().map(|u| u.user.clone()).collect();
        let want: Vec<_> = state.users.values().map(|u| u.user.clone()).collect();
        assert_eq!(users, want);
        assert_eq!(users[0].password, b"$2b$04$not-a-real-hash");
    }
}
