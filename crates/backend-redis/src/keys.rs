//! Key and channel names. Everything of one conversation shares the hash tag `{<conv>}` so that
//! its append touches one slot on Redis Cluster; on one server registry and store keys are
//! plain, on a cluster they are tagged by owner (see the second table).
//!
//! | key | type | holds |
//! | --- | --- | --- |
//! | `P{<conv>}:meta` | hash | `seq` (head), `ts` (latest message time), `epoch` |
//! | `P{<conv>}:log` | stream | entry `<seq>-1`: `m` = message JSON, `t` = ts |
//! | `P{<conv>}:idem:<len>:<owner>:<client_msg_id>` | string | receipt JSON (expires) |
//! | `P{<conv>}:ch` | channel | message JSON, published by the append script |
//! | `Pcontrol` | channel | [`ControlEvent`](switchboard_core::backend::ControlEvent) JSON |
//! | `Pconvs` | zset | conversations whose history may need age trimming, score = oldest ts |
//! | `Puser:<id>`, `Pusername:<key>` | hash, string | users; name key -> id (see below) |
//! | `Psession:<hex sha256>` | hash | auth session (expires with it) |
//! | `Pusersessions:<user>` | zset | a user's token hashes (hex), score = expiry |
//! | `Pmeta:username_keys` | string | set once names written before keys were indexed |
//! | `Pmeta:user_sessions` | string | set once sessions written before the index are in it |
//!
//! A username is stored under its key (`switchboard_core::names::username_key`: NFKC,
//! lowercased). Names written by older versions sit under their exact spelling; the first start
//! of this version adds their key too (accounts module).
//! | `Proom:<id>`, `Proomseq` | hash, counter | rooms; creation order |
//! | `Prooms:public`, `Puserrooms:<user>` | zset | rooms by creation order |
//! | `Pmembers:<room>` | zset | members by join order |
//! | `Pnode:<node>`, `Pnodes` | string (PX lease), set | node leases with announce JSON |
//! | `Pnodeentries:<node>` | set | what a node wrote into the registry (for cleanup) |
//! | `Pconns:<user>` | hash | conn id -> node id |
//! | `Proomsubs:<room>` | hash | conn id -> `<user>\t<node>` |
//! | `Precovery:<key>` | string (PX) | a connection-state recovery record (Socket.IO `pid`) |
//!
//! **Redis Cluster layout** ([`Keys::cluster`]): the conversation keys above are unchanged (the
//! channel is a shard channel, and the head also holds `rseq`, the last seq published, see
//! `replicated`). A user's, a room's and a node's keys share their owner's hash tag, so each
//! owner lives in one slot, the user's next to its direct-message stream and the room's next to
//! its conversation:
//!
//! | one server | Redis Cluster |
//! | --- | --- |
//! | `Puser:<id>`, `Pusersessions:<id>`, `Puserrooms:<id>`, `Pconns:<id>` | `P{user:<id>}:user`, `:sessions`, `:rooms`, `:conns` |
//! | `Proom:<id>`, `Pmembers:<id>`, `Proomsubs:<id>` | `P{room:<id>}:room`, `:members`, `:subs` |
//! | `Pnode:<id>`, `Pnodeentries:<id>` | `P{node:<id>}:lease`, `:entries` |
//!
//! The rest stays one key each, spread over slots by their own names: `Pusername:<key>` and
//! `Psession:<hex>` (one per name and token, so the hottest reads, token checks, spread evenly),
//! and the few global keys `Pnodes`, `Proomseq`, `Prooms:public`, `Pconvs` (small, rarely
//! written). Writes that span owners (a new user's name, a room's indexes, a membership) are
//! ordered so that no reader finds an index entry without its object (store and rooms modules).

use switchboard_core::backend::TokenHash;
use switchboard_proto::Conv;

/// Builds every key name from the configured prefix.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    prefix: String,
    /// Redis Cluster layout: a user's, a room's and a node's keys carry the hash tag
    /// `{user:<id>}`, `{room:<id>}`, `{node:<id>}` (see the module doc).
    cluster: bool,
}

impl Keys {
    /// Keys under `prefix` (e.g. `sb:`), in the one-server layout.
    pub(crate) fn new(prefix: &str) -> Keys {
        Keys {
            prefix: prefix.to_owned(),
            cluster: false,
        }
    }

    /// Keys under `prefix` in the Redis Cluster layout.
    pub(crate) fn cluster(prefix: &str) -> Keys {
        Keys {
            prefix: prefix.to_owned(),
            cluster: true,
        }
    }

    /// `P{<tag>}:<what>` in the cluster layout, `P<plain>` otherwise.
    fn owned(&self, plain: &str, kind: &str, id: &str, what: &str) -> String {
        if self.cluster {
            let mut s = self.tagged(&format!("{kind}:{id}"));
            s.push(':');
            s.push_str(what);
            s
        } else {
            format!("{}{plain}{id}", self.prefix)
        }
    }

    /// The prefix itself (the sweep script builds registry keys from it).
    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `P{<conv>}`: the conversation's hash-tagged stem. Braces and `%` in the name are escaped so
    /// that the tag always covers the whole name and two conversations never share keys.
    fn conv(&self, conv: &Conv) -> String {
        self.tagged(conv.as_str())
    }

    /// `P{<name>}` with braces and `%` in the name escaped.
    fn tagged(&self, name: &str) -> String {
        let mut s = String::with_capacity(self.prefix.len() + name.len() + 2);
        s.push_str(&self.prefix);
        s.push('{');
        for c in name.chars() {
            match c {
                '%' => s.push_str("%25"),
                '{' => s.push_str("%7B"),
                '}' => s.push_str("%7D"),
                c => s.push(c),
            }
        }
        s.push('}');
        s
    }

    /// The conversation's head hash.
    pub(crate) fn meta(&self, conv: &Conv) -> String {
        self.conv(conv) + ":meta"
    }

    /// The conversation's history stream.
    pub(crate) fn log(&self, conv: &Conv) -> String {
        self.conv(conv) + ":log"
    }

    /// The conversation's pub/sub channel.
    pub(crate) fn channel(&self, conv: &Conv) -> String {
        self.conv(conv) + ":ch"
    }

    /// The idempotency record of `(owner, client_msg_id)` in `conv`. The owner's length makes
    /// the split between owner and key unambiguous whatever characters they hold.
    pub(crate) fn idem(&self, conv: &Conv, owner: &str, client_msg_id: &str) -> String {
        format!(
            "{}:idem:{}:{owner}:{client_msg_id}",
            self.conv(conv),
            owner.len()
        )
    }

    /// The control channel every node subscribes to.
    pub(crate) fn control(&self) -> String {
        format!("{}control", self.prefix)
    }

    /// Conversations to look at for age trimming.
    pub(crate) fn convs(&self) -> String {
        format!("{}convs", self.prefix)
    }

    /// A user.
    pub(crate) fn user(&self, user_id: &str) -> String {
        self.owned("user:", "user", user_id, "user")
    }

    /// Login name -> user id.
    pub(crate) fn username(&self, username: &str) -> String {
        format!("{}username:{username}", self.prefix)
    }

    /// An auth session.
    pub(crate) fn session(&self, token_hash: &TokenHash) -> String {
        self.session_hex(&hex::encode(token_hash))
    }

    /// An auth session, by the hex of its token hash.
    pub(crate) fn session_hex(&self, hex: &str) -> String {
        format!("{}session:{hex}", self.prefix)
    }

    /// A user's token hashes (hex), scored by expiry.
    pub(crate) fn user_sessions(&self, user_id: &str) -> String {
        self.owned("usersessions:", "user", user_id, "sessions")
    }

    /// Set once the sessions of older versions are in their users' indexes.
    pub(crate) fn user_sessions_done(&self) -> String {
        format!("{}meta:user_sessions", self.prefix)
    }

    /// Set once the usernames of older versions have their keys.
    pub(crate) fn username_keys_done(&self) -> String {
        format!("{}meta:username_keys", self.prefix)
    }

    /// A room.
    pub(crate) fn room(&self, room_id: &str) -> String {
        self.owned("room:", "room", room_id, "room")
    }

    /// The counter giving rooms their creation order.
    pub(crate) fn room_seq(&self) -> String {
        format!("{}roomseq", self.prefix)
    }

    /// Public rooms by creation order.
    pub(crate) fn public_rooms(&self) -> String {
        format!("{}rooms:public", self.prefix)
    }

    /// Rooms a user belongs to, by creation order.
    pub(crate) fn user_rooms(&self, user_id: &str) -> String {
        self.owned("userrooms:", "user", user_id, "rooms")
    }

    /// A room's members by join order.
    pub(crate) fn members(&self, room_id: &str) -> String {
        self.owned("members:", "room", room_id, "members")
    }

    /// A node's lease (its announce JSON, with a TTL).
    pub(crate) fn node(&self, node_id: &str) -> String {
        self.owned("node:", "node", node_id, "lease")
    }

    /// Every node that took a lease and has not been swept.
    pub(crate) fn nodes(&self) -> String {
        format!("{}nodes", self.prefix)
    }

    /// What a node wrote into the registry.
    pub(crate) fn node_entries(&self, node_id: &str) -> String {
        self.owned("nodeentries:", "node", node_id, "entries")
    }

    /// A user's live connections.
    pub(crate) fn conns(&self, user_id: &str) -> String {
        self.owned("conns:", "user", user_id, "conns")
    }

    /// A room's subscribed connections.
    pub(crate) fn room_subs(&self, room_id: &str) -> String {
        self.owned("roomsubs:", "room", room_id, "subs")
    }

    /// A connection-state recovery record.
    pub(crate) fn recovery(&self, key: &str) -> String {
        format!("{}recovery:{key}", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversation_keys_share_one_hash_tag() {
        let k = Keys::new("sb:");
        let c = Conv::room("r1");
        assert_eq!(k.meta(&c), "sb:{room:r1}:meta");
        assert_eq!(k.log(&c), "sb:{room:r1}:log");
        assert_eq!(k.channel(&c), "sb:{room:r1}:ch");
        assert_eq!(k.idem(&c, "u_1", "c:1"), "sb:{room:r1}:idem:3:u_1:c:1");
        let odd = Conv::parse("room:a}b{%").unwrap();
        assert_eq!(k.meta(&odd), "sb:{room:a%7Db%7B%25}:meta");
    }

    #[test]
    fn cluster_layout_tags_users_rooms_and_nodes() {
        let k = Keys::cluster("sb:");
        let slot = |s: &str| crate::batch::slot(s.as_bytes());
        let dm = slot(&k.log(&Conv::user("u_1")));
        for key in [
            k.user("u_1"),
            k.user_sessions("u_1"),
            k.user_rooms("u_1"),
            k.conns("u_1"),
        ] {
            assert_eq!(slot(&key), dm, "{key}");
        }
        let room = slot(&k.log(&Conv::room("r_1")));
        for key in [k.room("r_1"), k.members("r_1"), k.room_subs("r_1")] {
            assert_eq!(slot(&key), room, "{key}");
        }
        assert_eq!(k.room("r_1"), "sb:{room:r_1}:room");
        assert_eq!(slot(&k.node("n")), slot(&k.node_entries("n")));
        assert_eq!(Keys::new("sb:").conns("u_1"), "sb:conns:u_1");
    }
}
