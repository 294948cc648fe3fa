//! Key and channel names. Everything of one conversation shares the hash tag `{<conv>}` so that
//! the layout carries over to Redis Cluster (one slot per conversation); registry and store keys
//! are plain.
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

use switchboard_core::backend::TokenHash;
use switchboard_proto::Conv;

/// Builds every key name from the configured prefix.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    prefix: String,
}

impl Keys {
    /// Keys under `prefix` (e.g. `sb:`).
    pub(crate) fn new(prefix: &str) -> Keys {
        Keys {
            prefix: prefix.to_owned(),
        }
    }

    /// The prefix itself (the sweep script builds registry keys from it).
    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `P{<conv>}`: the conversation's hash-tagged stem. Braces and `%` in the name are escaped so
    /// that the tag always covers the whole name and two conversations never share keys.
    fn conv(&self, conv: &Conv) -> String {
        let mut s = String::with_capacity(self.prefix.len() + conv.as_str().len() + 2);
        s.push_str(&self.prefix);
        s.push('{');
        for c in conv.as_str().chars() {
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
        format!("{}user:{user_id}", self.prefix)
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
        format!("{}usersessions:{user_id}", self.prefix)
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
        format!("{}room:{room_id}", self.prefix)
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
        format!("{}userrooms:{user_id}", self.prefix)
    }

    /// A room's members by join order.
    pub(crate) fn members(&self, room_id: &str) -> String {
        format!("{}members:{room_id}", self.prefix)
    }

    /// A node's lease (its announce JSON, with a TTL).
    pub(crate) fn node(&self, node_id: &str) -> String {
        format!("{}node:{node_id}", self.prefix)
    }

    /// Every node that took a lease and has not been swept.
    pub(crate) fn nodes(&self) -> String {
        format!("{}nodes", self.prefix)
    }

    /// What a node wrote into the registry.
    pub(crate) fn node_entries(&self, node_id: &str) -> String {
        format!("{}nodeentries:{node_id}", self.prefix)
    }

    /// A user's live connections.
    pub(crate) fn conns(&self, user_id: &str) -> String {
        format!("{}conns:{user_id}", self.prefix)
    }

    /// A room's subscribed connections.
    pub(crate) fn room_subs(&self, room_id: &str) -> String {
        format!("{}roomsubs:{room_id}", self.prefix)
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
}
