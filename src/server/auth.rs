//! Auth in the server: who a request comes from, what it may touch (etcd's checks in
//! `v3_server.go` and `apply_auth.go`), and the Auth service's operations.
//!
//! Checks run before a write is proposed, against one snapshot of the auth state; the
//! proposal carries that snapshot's auth revision, and applying refuses it if auth
//! changed in between. Reads compare the revision again after reading, as etcd does.

use std::sync::Arc;

use mnemo_proto::authpb::permission::Type as PermType;
use mnemo_proto::etcdserverpb::{
    request_op, AuthDisableRequest, AuthEnableRequest, AuthRoleAddRequest, AuthRoleDeleteRequest,
    AuthRoleGetResponse, AuthRoleGrantPermissionRequest, AuthRoleListResponse,
    AuthRoleRevokePermissionRequest, AuthStatusResponse, AuthUserAddRequest,
    AuthUserChangePasswordRequest, AuthUserDeleteRequest, AuthUserGetResponse,
    AuthUserGrantRoleRequest, AuthUserListResponse, AuthUserRevokeRoleRequest,
    AuthenticateResponse, DeleteRangeRequest, PutRequest, RangeRequest, ResponseHeader, TxnRequest,
};

use super::{blocking, unexpected, EtcdServer};
use crate::auth::{AuthState, Caller};
use crate::command::{CommandResponse, Op};
use crate::error::{Error, Result};

/// What a request shows of who sends it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Credentials<'a> {
    /// The auth token (gRPC metadata `token`).
    pub token: Option<&'a str>,
    /// The subject CN of the verified client certificate of the request's TLS
    /// connection, if it has one.
    pub common_name: Option<&'a str>,
}

impl<'a> Credentials<'a> {
    /// A token alone (plain connections, and callers that know no certificate).
    pub fn token(token: Option<&'a str>) -> Credentials<'a> {
        Credentials {
            token,
            common_name: None,
        }
    }
}

/// A request's caller together with the auth state its checks use.
#[derive(Debug, Clone)]
pub struct Access {
    caller: Caller,
    state: Arc<AuthState>,
}

impl Access {
    /// The server's own requests, and every request while auth is disabled.
    pub fn unchecked() -> Access {
        Access {
            caller: Caller::Unchecked,
            state: Arc::default(),
        }
    }

    /// The auth revision a write must still see when applied (0: none).
    pub fn guard(&self) -> u64 {
        self.caller.guard()
    }

    pub fn read(&self, key: &[u8], range_end: &[u8]) -> Result<()> {
        self.caller
            .check(&self.state, PermType::Read, key, range_end)
    }

    pub fn write(&self, key: &[u8], range_end: &[u8]) -> Result<()> {
        self.caller
            .check(&self.state, PermType::Write, key, range_end)
    }

    pub fn admin(&self) -> Result<()> {
        self.caller.check_admin(&self.state)
    }

    /// Whether the caller is the user `name`.
    fn is_user(&self, name: &str) -> bool {
        matches!(&self.caller, Caller::Client { user: Some(u), .. } if u == name)
    }

    /// Whether the caller has the role `role`.
    fn has_role(&self, role: &str) -> bool {
        match &self.caller {
            Caller::Client { user: Some(u), .. } => self
                .state
                .users
                .get(u)
                .is_some_and(|u| u.user.roles.iter().any(|r| r == role)),
            _ => false,
        }
    }

    fn is_unchecked(&self) -> bool {
        self.caller == Caller::Unchecked
    }

    pub fn check_range(&self, r: &RangeRequest) -> Result<()> {
        self.read(&r.key, &r.range_end)
    }

    /// etcd's `checkPutPermitted` minus the lease (checked by the server, which knows
    /// the keys attached to it).
    fn check_put(&self, r: &PutRequest) -> Result<()> {
        self.write(&r.key, &[])?;
        if r.prev_kv {
            self.read(&r.key, &[])?;
        }
        Ok(())
    }

    fn check_delete(&self, r: &DeleteRangeRequest) -> Result<()> {
        self.write(&r.key, &r.range_end)?;
        if r.prev_kv {
            self.read(&r.key, &r.range_end)?;
        }
        Ok(())
    }

    /// Every key a txn can touch: its compares, and the requests of both branches,
    /// nested txns included (etcd's `checkTxnAuth`).
    fn check_txn(&self, t: &TxnRequest, leases: &mut Vec<i64>) -> Result<()> {
        for c in &t.compare {
            self.read(&c.key, &c.range_end)?;
        }
        for op in t.success.iter().chain(&t.failure) {
            match &op.request {
                Some(request_op::Request::RequestRange(r)) => self.check_range(r)?,
                Some(request_op::Request::RequestPut(r)) => {
                    self.check_put(r)?;
                    if r.lease != 0 {
                        leases.push(r.lease);
                    }
                }
                Some(request_op::Request::RequestDeleteRange(r)) => self.check_delete(r)?,
                Some(request_op::Request::RequestTxn(t)) => self.check_txn(t, leases)?,
                None => {}
            }
        }
        Ok(())
    }
}

impl EtcdServer {
    /// Who sends a request with `credentials`. A token that is unknown, expired or void
    /// is refused even while auth is disabled, as etcd does (clients then drop it).
    /// Without a token, under `--client-cert-auth`, the caller is the user the client
    /// certificate's CN names (etcd's `AuthInfoFromTLS`; a name no user has is then
    /// denied every permission); otherwise, with auth enabled, a caller without a name.
    pub fn access(&self, credentials: Credentials<'_>) -> Result<Access> {
        let state = self.store.auth();
        let user = match credentials.token {
            Some(t) => Some(self.tokens.user(t, &state)?),
            None if self.options.client_cert_auth => credentials.common_name.map(str::to_string),
            None => None,
        };
        if !state.enabled {
            return Ok(Access::unchecked());
        }
        let revision = state.revision;
        Ok(Access {
            caller: Caller::Client { user, revision },
            state,
        })
    }

    /// After a read checked at `access`: refuse it if auth changed meanwhile.
    pub(super) fn recheck_read(&self, access: &Access) -> Result<()> {
        let guard = access.guard();
        if guard != 0 && guard != self.store.auth().revision {
            return Err(Error::AuthOldRevision);
        }
        Ok(())
    }

    /// etcd's `checkLeasePuts`: writing with (or revoking) a lease needs write
    /// permission on every key already attached to it.
    pub(super) fn check_lease_keys(&self, access: &Access, lease: i64) -> Result<()> {
        if access.is_unchecked() || lease == 0 {
            return Ok(());
        }
        for key in self.store.lease_keys(lease) {
            access.write(&key, &[])?;
        }
        Ok(())
    }

    pub(super) fn check_put(&self, access: &Access, r: &PutRequest) -> Result<()> {
        access.check_put(r)?;
        self.check_lease_keys(access, r.lease)
    }

    pub(super) fn check_delete(&self, access: &Access, r: &DeleteRangeRequest) -> Result<()> {
        access.check_delete(r)
    }

    pub(super) fn check_txn(&self, access: &Access, t: &TxnRequest) -> Result<()> {
        if access.is_unchecked() {
            return Ok(());
        }
        let mut leases = Vec::new();
        access.check_txn(t, &mut leases)?;
        for lease in leases {
            self.check_lease_keys(access, lease)?;
        }
        Ok(())
    }

    /// Lock and Election act on the keys under `name/` for their caller: reading them,
    /// and writing them when `write`.
    pub fn check_concurrency(&self, access: &Access, name: &[u8], write: bool) -> Result<()> {
        let prefix = super::concurrency::waiters_prefix(name);
        let end = super::concurrency::prefix_end(&prefix);
        access.read(&prefix, &end)?;
        if write {
            access.write(&prefix, &end)?;
        }
        Ok(())
    }

    /// Proposes an auth change as `access` (who must be root once auth is enabled).
    async fn propose_auth(&self, access: &Access, op: Op) -> Result<ResponseHeader> {
        access.admin()?;
        match self.propose_guarded(op, access.guard()).await? {
            CommandResponse::Auth(header) => Ok(self.header(header.revision)),
            other => Err(unexpected("auth change", &other)),
        }
    }

    /// The auth state after every change committed so far (etcd serves auth reads
    /// through raft), for a caller that `allowed` (root, or an exception etcd makes).
    async fn auth_state_for(&self, access: &Access, allowed: bool) -> Result<Arc<AuthState>> {
        if !allowed {
            access.admin()?;
        }
        self.raft.read_index().await?;
        Ok(self.store.auth())
    }

    async fn hash_password(&self, password: String) -> Result<String> {
        let cost = self.options.bcrypt_cost;
        blocking(move || {
            bcrypt::hash(password, cost)
                .map_err(|e| Error::Internal(format!("auth: hashing a password: {e}")))
        })
        .await
    }

    pub async fn auth_enable(&self, access: &Access) -> Result<ResponseHeader> {
        self.propose_auth(access, Op::AuthEnable(AuthEnableRequest {}))
            .await
    }

    pub async fn auth_disable(&self, access: &Access) -> Result<ResponseHeader> {
        self.propose_auth(access, Op::AuthDisable(AuthDisableRequest {}))
            .await
    }

    /// etcd 3.5's AuthStatus: open to every caller.
    pub async fn auth_status(&self) -> Result<AuthStatusResponse> {
        self.raft.read_index().await?;
        let state = self.store.auth();
        Ok(AuthStatusResponse {
            header: Some(self.header(0)),
            enabled: state.enabled,
            auth_revision: state.revision,
        })
    }

    /// Checks a user's password and hands out a simple token.
    pub async fn authenticate(
        &self,
        name: String,
        password: String,
    ) -> Result<AuthenticateResponse> {
        if !self.store.auth().enabled {
            return Err(Error::AuthNotEnabled);
        }
        self.raft.read_index().await?;
        let state = self.store.auth();
        let hash = match state.users.get(&name) {
            Some(u) if !u.no_password() => String::from_utf8_lossy(&u.user.password).into_owned(),
            _ => return Err(Error::AuthFailed),
        };
        let ok = blocking(move || Ok(bcrypt::verify(password, &hash).unwrap_or(false))).await?;
        if !ok {
            tracing::info!(user = %name, "authentication failed: wrong password");
            return Err(Error::AuthFailed);
        }
        let token = self.tokens.issue(&name, &state)?;
        Ok(AuthenticateResponse {
            header: Some(self.header(0)),
            token,
        })
    }

    pub async fn user_add(
        &self,
        access: &Access,
        mut r: AuthUserAddRequest,
    ) -> Result<ResponseHeader> {
        access.admin()?;
        if r.name.is_empty() {
            return Err(Error::UserEmpty);
        }
        let no_password = r.options.as_ref().is_some_and(|o| o.no_password);
        let password = std::mem::take(&mut r.password);
        r.hashed_password = if no_password {
            String::new()
        } else {
            self.hash_password(password).await?
        };
        self.propose_auth(access, Op::UserAdd(r)).await
    }

    /// Root may read every user, and a user itself.
    pub async fn user_get(&self, access: &Access, name: &str) -> Result<AuthUserGetResponse> {
        let state = self.auth_state_for(access, access.is_user(name)).await?;
        let user = state.user(name)?;
        Ok(AuthUserGetResponse {
            header: Some(self.header(0)),
            roles: user.user.roles.clone(),
        })
    }

    pub async fn user_list(&self, access: &Access) -> Result<AuthUserListResponse> {
        let state = self.auth_state_for(access, false).await?;
        Ok(AuthUserListResponse {
            header: Some(self.header(0)),
            users: state.users.keys().cloned().collect(),
        })
    }

    pub async fn user_delete(
        &self,
        access: &Access,
        r: AuthUserDeleteRequest,
    ) -> Result<ResponseHeader> {
        self.propose_auth(access, Op::UserDelete(r)).await
    }

    pub async fn user_change_password(
        &self,
        access: &Access,
        mut r: AuthUserChangePasswordRequest,
    ) -> Result<ResponseHeader> {
        access.admin()?;
        let password = std::mem::take(&mut r.password);
        r.hashed_password = self.hash_password(password).await?;
        self.propose_auth(access, Op::UserChangePassword(r)).await
    }

    pub async fn user_grant_role(
        &self,
        access: &Access,
        r: AuthUserGrantRoleRequest,
    ) -> Result<ResponseHeader> {
        self.propose_auth(access, Op::UserGrantRole(r)).await
    }

    pub async fn user_revoke_role(
        &self,
        access: &Access,
        r: AuthUserRevokeRoleRequest,
    ) -> Result<ResponseHeader> {
        self.propose_auth(access, Op::UserRevokeRole(r)).await
    }

    pub async fn role_add(&self, access: &Access, r: AuthRoleAddRequest) -> Result<ResponseHeader> {
        self.propose_auth(access, Op::RoleAdd(r)).await
    }

    /// Root may read every role, and a user the roles it has.
    pub async fn role_get(&self, access: &Access, name: &str) -> Result<AuthRoleGetResponse> {
        let state = self.auth_state_for(access, access.has_role(name)).await?;
        let role = state.role(name)?;
        Ok(AuthRoleGetResponse {
            header: Some(self.header(0)),
            perm: role.key_permission.clone(),
        })
    }

    pub async fn role_list(&self, access: &Access) -> Result<AuthRoleListResponse> {
        let state = self.auth_state_for(access, false).await?;
        Ok(AuthRoleListResponse {
            header: Some(self.header(0)),
            roles: state.roles.keys().cloned().collect(),
        })
    }

    pub async fn role_delete(
        &self,
        access: &Access,
        r: AuthRoleDeleteRequest,
    ) -> Result<ResponseHeader> {
        self.propose_auth(access, Op::RoleDelete(r)).await
    }

    pub async fn role_grant_permission(
        &self,
        access: &Access,
        r: AuthRoleGrantPermissionRequest,
    ) -> Result<ResponseHeader> {
        self.propose_auth(access, Op::RoleGrantPermission(r)).await
    }

    pub async fn role_revoke_permission(
        &self,
        access: &Access,
        r: AuthRoleRevokePermissionRequest,
    ) -> Result<ResponseHeader> {
        self.propose_auth(access, Op::RoleRevokePermission(r)).await
    }
}
