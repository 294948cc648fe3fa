//! Accounts and tokens: registration, login (in constant time whether or not the name
//! exists), token issue and check, logout, revocation of every token of a user, password
//! changes and kicks.

use super::*;
use crate::backend::BackendError;

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
        let username = crate::names::username(username)?;
        validate_password(password)?;
        let hash = self.passwords.hash(password.to_owned()).await?;
        Ok(self.backend.store.create_user(&username, &hash).await?)
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

    /// Revokes every token of `user_id` but the session `except` (a password change keeps the
    /// caller's own), and ends their live connections on every node with `reason`.
    ///
    /// Runs in a task of its own, awaited: a caller that goes away mid-request (a client closing
    /// its HTTP connection) cannot leave the tokens deleted but their connections open.
    pub async fn revoke_sessions(
        self: &Arc<Self>,
        user_id: &str,
        except: Option<&str>,
        reason: DisconnectReason,
    ) -> Result<()> {
        let node = self.clone();
        let (user_id, except) = (user_id.to_owned(), except.map(str::to_owned));
        let task = tokio::spawn(async move {
            let store = &node.backend.store;
            let deleted = store
                .delete_user_sessions(&user_id, except.as_deref())
                .await?;
            let broker = &node.backend.broker;
            if except.is_none() {
                // Every token is gone: every connection of the user goes, whatever it was
                // opened with.
                broker
                    .broadcast(ControlEvent::DisconnectUser {
                        user_id: user_id.clone(),
                        reason,
                    })
                    .await?;
            } else {
                disconnect_sessions(&node, &user_id, &deleted, reason).await?;
            }
            // A connection that looked its token up just before the delete may join the hub
            // just after the broadcast passed: a second pass, for the deleted sessions only
            // (a fresh login's connections are not touched), closes it.
            let again = node.clone();
            tokio::spawn(async move {
                tokio::time::sleep(RESWEEP_AFTER).await;
                if let Err(e) = disconnect_sessions(&again, &user_id, &deleted, reason).await {
                    tracing::debug!(error = %e.message, "second revocation pass failed");
                }
            });
            Ok::<(), Error>(())
        });
        task.await
            .map_err(|e| Error::from(BackendError::Internal(format!("revocation task: {e}"))))?
    }

    /// Changes the password of the principal's user after checking the current one (a wrong one
    /// is `unauthorized`), then revokes every other token of the user and ends their
    /// connections everywhere.
    pub async fn change_password(
        self: &Arc<Self>,
        principal: &Principal,
        password: &str,
        new_password: &str,
    ) -> Result<()> {
        validate_password(new_password)?;
        let store = &self.backend.store;
        let user = self.user(&principal.user_id).await?;
        let creds = match &user.username {
            Some(name) => store.user_by_username(name).await?,
            None => None,
        };
        let hash = match creds {
            Some(c) if c.user.user_id == user.user_id => c.password_hash,
            _ => None,
        };
        let Some(hash) = hash else {
            return Err(Error::bad_request(
                "this user has no password (made by the server API)",
            ));
        };
        if !self.passwords.verify(password.to_owned(), hash).await? {
            return Err(Error::unauthorized("wrong password"));
        }
        let new_hash = self.passwords.hash(new_password.to_owned()).await?;
        store.set_password(&user.user_id, &new_hash).await?;
        self.revoke_sessions(
            &user.user_id,
            Some(&principal.session_id),
            DisconnectReason::LoggedOut,
        )
        .await
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

    /// A user by username (compared as at login); `not_found` when none has it. Names that
    /// could never be registered (too long, control characters) are `not_found` too.
    pub async fn user_by_username(&self, username: &str) -> Result<User> {
        if username.len() > 4 * crate::names::MAX_USERNAME_BYTES {
            return Err(Error::not_found("no such user"));
        }
        self.backend
            .store
            .user_by_username(username)
            .await?
            .map(|c| c.user)
            .ok_or_else(|| Error::not_found("no such user"))
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

/// When revocation sends its second pass (see [`Node::revoke_sessions`]).
const RESWEEP_AFTER: Duration = Duration::from_secs(2);

/// Ends the connections opened with these (deleted) sessions, on every node.
async fn disconnect_sessions(
    node: &Node,
    user_id: &str,
    session_ids: &[String],
    reason: DisconnectReason,
) -> Result<()> {
    for session_id in session_ids {
        node.backend
            .broker
            .broadcast(ControlEvent::DisconnectSession {
                user_id: user_id.to_owned(),
                session_id: session_id.clone(),
                reason,
            })
            .await?;
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
