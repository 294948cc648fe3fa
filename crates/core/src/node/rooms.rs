//! Rooms and their members, and the access rule for reading a conversation.

use super::*;

impl Node {
    // ----- rooms -----

    /// Creates a room owned by `owner`.
    pub async fn create_room(
        &self,
        owner: &str,
        name: &str,
        visibility: Visibility,
    ) -> Result<Room> {
        let name = crate::names::room_name(name.trim())?;
        self.guards.create_room(owner)?;
        Ok(self
            .backend
            .store
            .create_room(&name, visibility, owner)
            .await?)
    }

    /// A room `user_id` may see: any public room, or a private one it belongs to.
    pub async fn visible_room(&self, user_id: &str, room_id: &str) -> Result<Room> {
        let room = self.room(room_id).await?;
        if room.visibility == Visibility::Private
            && !self.backend.store.is_member(room_id, user_id).await?
        {
            return Err(Error::new(
                ErrorCode::NotMember,
                "this private room is for members only",
            ));
        }
        Ok(room)
    }

    pub(super) async fn room(&self, room_id: &str) -> Result<Room> {
        self.backend
            .store
            .room(room_id)
            .await?
            .ok_or_else(|| Error::not_found("no such room"))
    }

    /// Public rooms and the rooms `user_id` belongs to.
    pub async fn rooms(&self, user_id: &str) -> Result<Vec<Room>> {
        Ok(self.backend.store.rooms_visible_to(user_id).await?)
    }

    /// `actor` adds `user_id` to a room: a self-join of a public room, or the owner adding anyone.
    pub async fn add_member(&self, actor: &str, room_id: &str, user_id: &str) -> Result<()> {
        let room = self.room(room_id).await?;
        let allowed =
            actor == room.owner || (actor == user_id && room.visibility == Visibility::Public);
        if !allowed {
            return Err(
                if room.visibility == Visibility::Private && actor == user_id {
                    Error::new(
                        ErrorCode::NotMember,
                        "only the owner adds members to a private room",
                    )
                } else {
                    Error::forbidden("only the owner adds other users")
                },
            );
        }
        if actor != user_id {
            self.user(user_id).await?;
        }
        Ok(self.backend.store.add_member(room_id, user_id).await?)
    }

    /// `actor` removes `user_id`: leaving, or the owner removing someone. The owner cannot leave.
    pub async fn remove_member(&self, actor: &str, room_id: &str, user_id: &str) -> Result<()> {
        let room = self.room(room_id).await?;
        if user_id == room.owner {
            return Err(Error::forbidden("the owner cannot leave or be removed"));
        }
        if actor != user_id && actor != room.owner {
            return Err(Error::forbidden("only the owner removes other users"));
        }
        self.backend.store.remove_member(room_id, user_id).await?;
        if room.visibility == Visibility::Private {
            // Live subscriptions of a removed member end at once, on every node.
            let conv = Conv::room(room_id);
            let event = ControlEvent::Revoke {
                user_id: user_id.to_owned(),
                conv,
            };
            self.backend.broker.broadcast(event).await?;
        }
        Ok(())
    }

    /// Members of a room `actor` may see.
    pub async fn members(&self, actor: &str, room_id: &str) -> Result<Vec<String>> {
        self.visible_room(actor, room_id).await?;
        Ok(self.backend.store.members(room_id).await?)
    }

    // ----- access -----

    /// Whether `user_id` may subscribe to and read `conv`.
    pub async fn check_read(&self, user_id: &str, conv: &Conv) -> Result<()> {
        match conv.kind() {
            ConvKind::Room => self.visible_room(user_id, conv.id()).await.map(drop),
            ConvKind::User if conv.id() == user_id => Ok(()),
            ConvKind::User => Err(Error::forbidden("only its owner reads a personal stream")),
        }
    }
}
