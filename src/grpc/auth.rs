//! etcd's Auth service.

use std::sync::Arc;

use mnemo_proto::etcdserverpb::auth_server::Auth;
use mnemo_proto::etcdserverpb::*;
use tonic::{Request, Response, Status};

use super::credentials;
use crate::error::Result;
use crate::server::{Access, EtcdServer};

#[derive(Debug, Clone)]
pub struct AuthService {
    pub server: Arc<EtcdServer>,
}

impl AuthService {
    fn access<T>(&self, req: &Request<T>) -> Result<Access> {
        self.server.access(credentials(req))
    }
}

/// A response that carries only a header.
macro_rules! header_only {
    ($resp:ident, $result:expr) => {{
        let header = $result.await?;
        Ok(Response::new($resp {
            header: Some(header),
        }))
    }};
}

#[tonic::async_trait]
impl Auth for AuthService {
    async fn auth_enable(
        &self,
        req: Request<AuthEnableRequest>,
    ) -> Result<Response<AuthEnableResponse>, Status> {
        let access = self.access(&req)?;
        header_only!(AuthEnableResponse, self.server.auth_enable(&access))
    }

    async fn auth_disable(
        &self,
        req: Request<AuthDisableRequest>,
    ) -> Result<Response<AuthDisableResponse>, Status> {
        let access = self.access(&req)?;
        header_only!(AuthDisableResponse, self.server.auth_disable(&access))
    }

    async fn auth_status(
        &self,
        _req: Request<AuthStatusRequest>,
    ) -> Result<Response<AuthStatusResponse>, Status> {
        Ok(Response::new(self.server.auth_status().await?))
    }

    async fn authenticate(
        &self,
        req: Request<AuthenticateRequest>,
    ) -> Result<Response<AuthenticateResponse>, Status> {
        let r = req.into_inner();
        Ok(Response::new(
            self.server.authenticate(r.name, r.password).await?,
        ))
    }

    async fn user_add(
        &self,
        req: Request<AuthUserAddRequest>,
    ) -> Result<Response<AuthUserAddResponse>, Status> {
        let access = self.access(&req)?;
        header_only!(
            AuthUserAddResponse,
            self.server.user_add(&access, req.into_inner())
        )
    }

    async fn user_get(
        &self,
        req: Request<AuthUserGetRequest>,
    ) -> Result<Response<AuthUserGetResponse>, Status> {
        let access = self.access(&req)?;
        Ok(Response::new(
            self.server.user_get(&access, &req.get_ref().name).await?,
        ))
    }

    async fn user_list(
        &self,
        req: Request<AuthUserListRequest>,
    ) -> Result<Response<AuthUserListResponse>, Status> {
        let access = self.access(&req)?;
        Ok(Response::new(self.server.user_list(&access).await?))
    }

    async fn user_delete(
        &self,
        req: Request<AuthUserDeleteRequest>,
    ) -> Result<Response<AuthUserDeleteResponse>, Status> {
        let access = self.access(&req)?;
        header_only!(
            AuthUserDeleteResponse,
            self.server.user_delete(&access, req.into_inner())
        )
    }

    async fn user_change_password(
        &self,
        req: Request<AuthUserChangePasswordRequest>,
    ) -> Result<Response<AuthUserChangePasswordResponse>, Status> {
        let access = self.access(&req)?;
        header_only!(
            AuthUserChangePasswordResponse,
            self.server.user_change_password(&access, req.into_inner())
        )
    }

    async fn user_grant_role(
        &self,
        req: Request<AuthUserGrantRoleRequest>,
    ) -> Result<Response<AuthUserGrantRoleResponse>, Status> {
        let access = self.access(&req)?;
        header_only!(
            AuthUserGrantRoleResponse,
            self.server.user_grant_role(&access, req.into_inner())
        )
    }

    async fn user_revoke_role(
        &self,
        req: Request<AuthUserRevokeRoleRequest>,
    ) -> Result<Response<AuthUserRevokeRoleResponse>, Status> {
        let access = self.access(&req)?;
        header_only!(
            AuthUserRevokeRoleResponse,
            self.server.user_revoke_role(&access, req.into_inner())
        )
    }

    async fn role_add(
        &self,
        req: Request<AuthRoleAddRequest>,
    ) -> Result<Response<AuthRoleAddResponse>, Status> {
        let access = self.access(&req)?;
        header_only!(
            AuthRoleAddResponse,
            self.server.role_add(&access, req.into_inner())
        )
    }

    async fn role_get(
        &self,
        req: Request<AuthRoleGetRequest>,
    ) -> Result<Response<AuthRoleGetResponse>, Status> {
        let access = self.access(&req)?;
        Ok(Response::new(
            self.server.role_get(&access, &req.get_ref().role).await?,
        ))
    }

    async fn role_list(
        &self,
        req: Request<AuthRoleListRequest>,
    ) -> Result<Response<AuthRoleListResponse>, Status> {
        let access = self.access(&req)?;
        Ok(Response::new(self.server.role_list(&access).await?))
    }

    async fn role_delete(
        &self,
        req: Request<AuthRoleDeleteRequest>,
    ) -> Result<Response<AuthRoleDeleteResponse>, Status> {
        let access = self.access(&req)?;
        header_only!(
            AuthRoleDeleteResponse,
            self.server.role_delete(&access, req.into_inner())
        )
    }

    async fn role_grant_permission(
        &self,
        req: Request<AuthRoleGrantPermissionRequest>,
    ) -> Result<Response<AuthRoleGrantPermissionResponse>, Status> {
        let access = self.access(&req)?;
        header_only!(
            AuthRoleGrantPermissionResponse,
            self.server.role_grant_permission(&access, req.into_inner())
        )
    }

    async fn role_revoke_permission(
        &self,
        req: Request<AuthRoleRevokePermissionRequest>,
    ) -> Result<Response<AuthRoleRevokePermissionResponse>, Status> {
        let access = self.access(&req)?;
        header_only!(
            AuthRoleRevokePermissionResponse,
            self.server
                .role_revoke_permission(&access, req.into_inner())
        )
    }
}
