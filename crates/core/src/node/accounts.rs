//! Accounts and tokens: registration, login (in constant time whether or not the name
//! exists), token issue and check, logout and kicks.

use super::*;

impl Node {
    // ----- accounts and tokens -----

    /// Registers a user with a password, for a client at `ip` (limited per address; `None`
    /// is not limited).
    pub async fn register_from(
        &self,
        ip: Option<std::net::IpAddr>,
        username: &str,
        password: &str,
    ) -> Result<User> {
        self.guards.register(ip)?;
        self.register(username, password).await
    }

    /// Checks a password and issues a login token, for a client at `ip`: attempts are limited
    /// per address, and failures slow further attempts for the username and the address.
    pub async fn login_from(
        &self,
        ip: Option<std::net::IpAddr>,
        username: &str,
        password: &str,
    ) -> Result<IssuedToken> {
        self.guards.login_attempt(ip, username)?;
        let result = self.login(username, password).await;
        match &result {
            Ok(_) => self.guards.login_result(ip, username, true),
            Err(e) if e.code == ErrorCode::Unauthorized => {
                self.guards.login_result(ip, username, false)
            }
            Err(_) => {}
        }
        result
    }

    /// Registers a user with a password.
    pub async fn register(&self, username: &str, password: &str) -> Result<User> {
        validate_username(username)?;
        validate_password(password)?;
        let hash = self.passwords.hash(password.to_owned()).await?;
        Ok(self.backend.store.create_user(username, &hash).await?)
    }

    /// Checks a password and issues a login token.
    pub async fn login(&self, username: &str, password: &str) -> Result<IssuedToken> {
        let creds = self.backend.store.user_by_username(username).await?;
        let (user_id, hash) = match creds {
            Some(c) if c.password_hash.is_some() => {
                (Some(c.user.user_id), c.password_hash.unwrap_or_default())
            }
            _ => (None, self.dummy_hash().await?),
        };
        let ok = self.passwords.verify(password.to_owned(), hash).await?;
        match user_id {
            Some(user_id) if ok => self.issue_token(&user_id, self.limits.session_ttl).await,
            _ => Err(Error::unauthorized("wrong username or password")),
        }
    }

    async fn dummy_hash(&self) -> Result<String> {
        self.dummy_hash
            .get_or_try_init(|| self.passwords.hash("not a real password".into()))
            .await
            .cloned()
    }

    /// Issues a token for a user (creating the user if unknown): the server API's
    /// bring-your-own-auth.
    pub async fn issue_server_token(
        &self,
        user_id: &str,
        ttl: Option<Duration>,
    ) -> Result<IssuedToken> {
        validate_external_id(user_id)?;
        self.backend.store.ensure_user(user_id).await?;
        self.issue_token(user_id, ttl.unwrap_or(self.limits.server_token_ttl))
            .await
    }

    async fn issue_token(&self, user_id: &str, ttl: Duration) -> Result<IssuedToken> {
        let token = switchboard_proto::ids::new_token();
        let expires_at = now_ms().saturating_add(ttl.as_millis() as u64);
        let session = AuthSession {
            session_id: switchboard_proto::ids::new_id("s"),
            user_id: user_id.to_owned(),
            expires_at_ms: expires_at,
        };
        self.backend
            .store
            .create_session(token_hash(&token), &session)
            .await?;
        Ok(IssuedToken {
            token,
            user_id: user_id.to_owned(),
            expires_at,
        })
    }

    /// Resolves a bearer token.
    pub async fn authenticate(&self, token: &str) -> Result<Principal> {
        if token.is_empty() || token.len() > 256 {
            return Err(Error::unauthorized("invalid token"));
        }
        let session = self.backend.store.session(token_hash(token)).await?;
        match session {
            Some(s) if s.expires_at_ms > now_ms() => Ok(Principal {
                user_id: s.user_id,
                session_id: s.session_id,
                expires_at_ms: s.expires_at_ms,
            }),
            Some(_) => Err(Error::unauthorized("token expired")),
            None => Err(Error::unauthorized("invalid token")),
        }
    }

    /// Revokes a token and ends every connection opened with it, on every node.
    pub async fn logout(&self, token: &str) -> Result<()> {
        if let Some(s) = self.backend.store.delete_session(token_hash(token)).await? {
            self.backend
                .broker
                .broadcast(ControlEvent::DisconnectSession {
                    user_id: s.user_id,
                    session_id: s.session_id,
                    reason: DisconnectReason::LoggedOut,
                })
                .await?;
        }
        Ok(())
    }

    /// Ends every connection of a user, on every node.
    pub async fn disconnect_user(&self, user_id: &str, reason: DisconnectReason) -> Result<()> {
        Ok(self
            .backend
            .broker
            .broadcast(ControlEvent::DisconnectUser {
                user_id: user_id.to_owned(),
                reason,
            })
            .await?)
    }

    /// A user by id.
    pub async fn user(&self, user_id: &str) -> Result<User> {
        self.backend
            .store
            .user(user_id)
            .await?
            .ok_or_else(|| Error::not_found("no such user"))
    }
}

fn validate_username(u: &str) -> Result<()> {
    if u.is_empty() || u.len() > 64 || u.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(Error::bad_request(
            "username must be 1 to 64 characters without spaces",
        ));
    }
    Ok(())
}

fn validate_password(p: &str) -> Result<()> {
    if p.len() < 8 || p.len() > 1024 {
        return Err(Error::bad_request("password must be 8 to 1024 bytes"));
    }
    Ok(())
}

fn validate_external_id(id: &str) -> Result<()> {
    if id.is_empty()
        || id.len() > 128
        || id == SERVER_IDEMPOTENCY_OWNER
        || id == "me"
        || id
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || c == ':')
    {
        return Err(Error::bad_request(
            "user_id must be 1 to 128 characters without spaces or ':', and not the reserved `me` or `@server`",
        ));
    }
    Ok(())
}
