//! etcd's auth: users, roles, key permissions and tokens.
//!
//! [`AuthState`] is replicated state: it changes only by applying auth commands from the
//! raft log ([`AuthState::apply`], a pure function like the rest of the state machine)
//! and lives in the page file's `auth` table (docs/format.md), so that a restart keeps
//! users, roles and the enabled flag. Every change bumps the auth revision, as etcd's
//! `authRevision`: a write checked against revision `r` is refused at apply with
//! "revision of auth store is old" when auth changed in between.
//!
//! Passwords are hashed with bcrypt by the server before a command is proposed: neither
//! the log nor the page file ever holds a plaintext password.
//!
//! [`tokens::TokenStore`] holds the simple tokens `Authenticate` hands out; they are local
//! to the member and forgotten at restart, as etcd's simple tokens.

pub mod perms;
pub mod tokens;

use std::collections::BTreeMap;

use mnemo_proto::authpb::{permission::Type as PermType, Permission, Role, User, UserAddOptions};
use mnemo_proto::etcdserverpb::{
    AuthRoleAddRequest, AuthRoleDeleteRequest, AuthRoleGrantPermissionRequest,
    AuthRoleRevokePermissionRequest, AuthUserAddRequest, AuthUserChangePasswordRequest,
    AuthUserDeleteRequest, AuthUserGrantRoleRequest, AuthUserRevokeRoleRequest,
};

use crate::error::{Error, Result};

pub const ROOT_USER: &str = "root";
pub const ROOT_ROLE: &str = "root";

/// One user, as stored: the bcrypt hash (empty for a user added with `no_password`) and
/// its roles, sorted.
#[derive(Debug, Clone, PartialEq)]
pub struct UserEntry {
    pub user: User,
    /// Tokens issued before this auth revision are not this user's any more (the user was
    /// added again or its password changed). Not stored: tokens do not survive a restart.
    pub tokens_from: u64,
}

impl UserEntry {
    pub fn name(&self) -> String {
        String::from_utf8_lossy(&self.user.name).into_owned()
    }

    pub fn has_root_role(&self) -> bool {
        self.user.roles.iter().any(|r| r == ROOT_ROLE)
    }

    pub fn no_password(&self) -> bool {
        self.user.options.as_ref().is_some_and(|o| o.no_password)
    }
}

/// What one applied auth command touched, for the applier to write back.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Touched {
    pub flags: bool,
    pub users: Vec<String>,
    pub roles: Vec<String>,
}

/// The replicated auth state.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuthState {
    pub enabled: bool,
    /// etcd's `authRevision`: bumped by every change but AuthEnable.
    pub revision: u64,
    pub users: BTreeMap<String, UserEntry>,
    pub roles: BTreeMap<String, Role>,
    /// Tokens issued before this revision are void (auth was disabled since).
    pub tokens_from: u64,
}

impl AuthState {
    fn commit(&mut self) -> u64 {
        self.revision += 1;
        self.revision
    }

    fn user_mut(&mut self, name: &str) -> Result<&mut UserEntry> {
        self.users.get_mut(name).ok_or(Error::UserNotFound)
    }

    pub fn user(&self, name: &str) -> Result<&UserEntry> {
        self.users.get(name).ok_or(Error::UserNotFound)
    }

    pub fn role(&self, name: &str) -> Result<&Role> {
        self.roles.get(name).ok_or(Error::RoleNotFound)
    }

    pub fn enable(&mut self) -> Result<Touched> {
        if self.enabled {
            return Ok(Touched::default());
        }
        let root = self.users.get(ROOT_USER).ok_or(Error::RootUserNotExist)?;
        if !root.has_root_role() {
            return Err(Error::RootRoleNotExist);
        }
        self.enabled = true;
        Ok(Touched {
            flags: true,
            ..Touched::default()
        })
    }

    pub fn disable(&mut self) -> Touched {
        if !self.enabled {
            return Touched::default();
        }
        self.enabled = false;
        self.tokens_from = self.commit();
        Touched {
            flags: true,
            ..Touched::default()
        }
    }

    /// `r.hashed_password` holds the bcrypt hash; `r.password` must be empty.
    pub fn user_add(&mut self, r: &AuthUserAddRequest) -> Result<Touched> {
        if r.name.is_empty() {
            return Err(Error::UserEmpty);
        }
        if self.users.contains_key(&r.name) {
            return Err(Error::UserAlreadyExist);
        }
        let no_password = r.options.as_ref().is_some_and(|o| o.no_password);
        let rev = self.commit();
        let user = User {
            name: r.name.as_bytes().to_vec(),
            password: if no_password {
                vec![]
            } else {
                r.hashed_password.as_bytes().to_vec()
            },
            roles: vec![],
            options: r.options.filter(|o| *o != UserAddOptions::default()),
        };
        self.users.insert(
            r.name.clone(),
            UserEntry {
                user,
                tokens_from: rev,
            },
        );
        Ok(Touched {
            flags: true,
            users: vec![r.name.clone()],
            ..Touched::default()
        })
    }

    pub fn user_delete(&mut self, r: &AuthUserDeleteRequest) -> Result<Touched> {
        if self.enabled && r.name == ROOT_USER {
            return Err(Error::InvalidAuthMgmt);
        }
        if self.users.remove(&r.name).is_none() {
            return Err(Error::UserNotFound);
        }
        self.commit();
        Ok(Touched {
            flags: true,
            users: vec![r.name.clone()],
            ..Touched::default()
        })
    }

    pub fn user_change_password(&mut self, r: &AuthUserChangePasswordRequest) -> Result<Touched> {
        let rev = self.revision + 1;
        let u = self.user_mut(&r.name)?;
        u.user.password = r.hashed_password.as_bytes().to_vec();
        u.tokens_from = rev;
        self.commit();
        Ok(Touched {
            flags: true,
            users: vec![r.name.clone()],
            ..Touched::default()
        })
    }

    pub fn user_grant_role(&mut self, r: &AuthUserGrantRoleRequest) -> Result<Touched> {
        if !self.users.contains_key(&r.user) {
            return Err(Error::UserNotFound);
        }
        if r.role != ROOT_ROLE && !self.roles.contains_key(&r.role) {
            return Err(Error::RoleNotFound);
        }
        let u = self.user_mut(&r.user)?;
        if let Err(at) = u.user.roles.binary_search(&r.role) {
            u.user.roles.insert(at, r.role.clone());
        } else {
            return Ok(Touched::default());
        }
        self.commit();
        Ok(Touched {
            flags: true,
            users: vec![r.user.clone()],
            ..Touched::default()
        })
    }

    pub fn user_revoke_role(&mut self, r: &AuthUserRevokeRoleRequest) -> Result<Touched> {
        if self.enabled && r.name == ROOT_USER && r.role == ROOT_ROLE {
            return Err(Error::InvalidAuthMgmt);
        }
        let u = self.user_mut(&r.name)?;
        let Ok(at) = u.user.roles.binary_search(&r.role) else {
            return Err(Error::RoleNotGranted);
        };
        u.user.roles.remove(at);
        self.commit();
        Ok(Touched {
            flags: true,
            users: vec![r.name.clone()],
            ..Touched::default()
        })
    }

    pub fn role_add(&mut self, r: &AuthRoleAddRequest) -> Result<Touched> {
        if r.name.is_empty() {
            return Err(Error::RoleEmpty);
        }
        if self.roles.contains_key(&r.name) {
            return Err(Error::RoleAlreadyExist);
        }
        self.roles.insert(
            r.name.clone(),
            Role {
                name: r.name.as_bytes().to_vec(),
                key_permission: vec![],
            },
        );
        self.commit();
        Ok(Touched {
            flags: true,
            roles: vec![r.name.clone()],
            ..Touched::default()
        })
    }

    /// Deleting a role also takes it from every user that had it, as etcd does.
    pub fn role_delete(&mut self, r: &AuthRoleDeleteRequest) -> Result<Touched> {
        if self.enabled && r.role == ROOT_ROLE {
            return Err(Error::InvalidAuthMgmt);
        }
        if self.roles.remove(&r.role).is_none() {
            return Err(Error::RoleNotFound);
        }
        let mut users = Vec::new();
        for (name, u) in &mut self.users {
            if let Ok(at) = u.user.roles.binary_search(&r.role) {
                u.user.roles.remove(at);
                users.push(name.clone());
            }
        }
        self.commit();
        Ok(Touched {
            flags: true,
            users,
            roles: vec![r.role.clone()],
        })
    }

    /// A permission on the same `[key, range_end)` replaces the old one's type; others
    /// are kept sorted by key, then range end.
    pub fn role_grant_permission(&mut self, r: &AuthRoleGrantPermissionRequest) -> Result<Touched> {
        let perm = r.perm.clone().ok_or(Error::PermissionNotGiven)?;
        let role = self.roles.get_mut(&r.name).ok_or(Error::RoleNotFound)?;
        let perms = &mut role.key_permission;
        match perms.binary_search_by(|p| (&p.key, &p.range_end).cmp(&(&perm.key, &perm.range_end)))
        {
            Ok(at) => perms[at].perm_type = perm.perm_type,
            Err(at) => perms.insert(at, perm),
        }
        self.commit();
        Ok(Touched {
            flags: true,
            roles: vec![r.name.clone()],
            ..Touched::default()
        })
    }

    pub fn role_revoke_permission(
        &mut self,
        r: &AuthRoleRevokePermissionRequest,
    ) -> Result<Touched> {
        let role = self.roles.get_mut(&r.role).ok_or(Error::RoleNotFound)?;
        let before = role.key_permission.len();
        role.key_permission
            .retain(|p| p.key != r.key || p.range_end != r.range_end);
        if role.key_permission.len() == before {
            return Err(Error::PermissionNotGranted);
        }
        self.commit();
        Ok(Touched {
            flags: true,
            roles: vec![r.role.clone()],
            ..Touched::default()
        })
    }

    /// Whether `user` may do `want` on `[key, range_end)`: root may do anything, others
    /// what their roles grant. A user that does not exist may do nothing.
    pub fn permitted(&self, user: &str, want: PermType, key: &[u8], range_end: &[u8]) -> bool {
        let Some(u) = self.users.get(user) else {
            return false;
        };
        if u.has_root_role() {
            return true;
        }
        let perms = u
            .user
            .roles
            .iter()
            .filter_map(|r| self.roles.get(r))
            .flat_map(|r| r.key_permission.iter());
        perms::covers(perms, want, key, range_end)
    }
}

/// Who sends a request, once its token was checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// The server itself (lease expiry, auto-compaction), or any caller while auth is
    /// disabled: nothing is checked.
    Unchecked,
    /// A client with auth enabled: `user` is `None` without a token. `revision` is the
    /// auth revision the checks saw.
    Client { user: Option<String>, revision: u64 },
}

impl Caller {
    /// The auth revision a write checked as this caller must still see when applied.
    pub fn guard(&self) -> u64 {
        match self {
            Caller::Unchecked => 0,
            Caller::Client { revision, .. } => *revision,
        }
    }

    /// etcd's `isOpPermitted`.
    pub fn check(
        &self,
        state: &AuthState,
        want: PermType,
        key: &[u8],
        range_end: &[u8],
    ) -> Result<()> {
        match self {
            Caller::Unchecked => Ok(()),
            Caller::Client { user: None, .. } => Err(Error::UserEmpty),
            Caller::Client {
                user: Some(user), ..
            } => {
                if state.permitted(user, want, key, range_end) {
                    Ok(())
                } else {
                    Err(Error::PermissionDenied)
                }
            }
        }
    }

    /// etcd's `IsAdminPermitted`: the caller has the root role.
    pub fn check_admin(&self, state: &AuthState) -> Result<()> {
        match self {
            Caller::Unchecked => Ok(()),
            Caller::Client { user: None, .. } => Err(Error::UserEmpty),
            Caller::Client {
                user: Some(user), ..
            } => match state.users.get(user) {
                None => Err(Error::UserNotFound),
                Some(u) if u.has_root_role() => Ok(()),
                Some(_) => Err(Error::PermissionDenied),
            },
        }
    }
}

/// A permission as etcd's API takes it, for tests and callers.
pub fn permission(perm_type: PermType, key: &[u8], range_end: &[u8]) -> Permission {
    Permission {
        perm_type: perm_type as i32,
        key: key.to_vec(),
        range_end: range_end.to_vec(),
    }
}

#[cfg(test)]
mod tests;
