//! Rooms and their members, with the embedded backend's semantics.
//!
//! Writes that must check and write together (the join order) are small scripts; the rest are
//! single commands or MULTI pipelines. On a cluster, where a room, the public index and a user's
//! rooms are in different slots, each write says in which order it touches them.

use crate::batch::Batch;
use crate::error::bad_reply;
use crate::{Shared, now_ms};
use std::collections::HashMap;
use switchboard_core::backend::{BackendError, Room, Visibility};

/// Creates a room; the owner is its first member.
pub(crate) async fn create_room(
    s: &Shared,
    name: &str,
    visibility: Visibility,
    owner: &str,
) -> Result<Room, BackendError> {
    let room = Room {
        room_id: switchboard_proto::ids::new_id("r"),
        name: name.to_owned(),
        visibility,
        owner: owner.to_owned(),
        created_at_ms: now_ms(),
    };
    let k = &s.keys;
    let keys = [
        k.room_seq(),
        k.room(&room.room_id),
        k.public_rooms(),
        k.members(&room.room_id),
        k.user_rooms(owner),
    ];
    let args = [
        room.room_id.clone(),
        room.name.clone(),
        visibility.as_str().to_owned(),
        room.owner.clone(),
        room.created_at_ms.to_string(),
    ];
    if s.redis.is_cluster() {
        create_room_cluster(s, &room).await?;
        return Ok(room);
    }
    let _ord: i64 = s
        .redis
        .eval("create_room", &s.scripts.create_room, &keys, &args)
        .await?;
    Ok(room)
}

/// On a cluster: the order from the counter, then the room and its members (its slot, one MULTI),
/// the public index and the owner's rooms (their own slots). The room exists before any index
/// names it; a crash in between leaves a room listed nowhere, never an index without a room.
async fn create_room_cluster(s: &Shared, room: &Room) -> Result<(), BackendError> {
    let k = &s.keys;
    let mut c = redis::cmd("INCR");
    c.arg(k.room_seq());
    let ord: i64 = s.redis.query("create_room", &c).await?;
    let mut b = Batch::new();
    b.atomic();
    b.cmd("HSET")
        .arg(k.room(&room.room_id))
        .arg("name")
        .arg(&room.name)
        .arg("visibility")
        .arg(room.visibility.as_str())
        .arg("owner")
        .arg(&room.owner)
        .arg("created_at")
        .arg(room.created_at_ms)
        .arg("ord")
        .arg(ord)
        .arg("joins")
        .arg(1)
        .ignore();
    b.cmd("ZADD")
        .arg(k.members(&room.room_id))
        .arg(1)
        .arg(&room.owner)
        .ignore();
    s.redis.batch::<()>("create_room", &b).await?;
    let mut b = Batch::new();
    if room.visibility == Visibility::Public {
        b.cmd("ZADD")
            .arg(k.public_rooms())
            .arg(ord)
            .arg(&room.room_id)
            .ignore();
    }
    b.cmd("ZADD")
        .arg(k.user_rooms(&room.owner))
        .arg(ord)
        .arg(&room.room_id)
        .ignore();
    s.redis.batch::<()>("create_room", &b).await
}

fn parse_visibility(v: &str) -> Result<Visibility, BackendError> {
    match v {
        "public" => Ok(Visibility::Public),
        "private" => Ok(Visibility::Private),
        other => Err(bad_reply("room visibility", format!("{other:?}"))),
    }
}

/// A room from its hash (`None` if the hash is empty: no such room).
fn parse_room(room_id: &str, mut h: HashMap<String, String>) -> Result<Option<Room>, BackendError> {
    if h.is_empty() {
        return Ok(None);
    }
    let mut take = |f: &str| {
        h.remove(f)
            .ok_or_else(|| bad_reply("room", format!("room {room_id} has no {f}")))
    };
    Ok(Some(Room {
        room_id: room_id.to_owned(),
        name: take("name")?,
        visibility: parse_visibility(&take("visibility")?)?,
        owner: take("owner")?,
        created_at_ms: take("created_at")?
            .parse()
            .map_err(|e| bad_reply("room created_at", e))?,
    }))
}

/// Finds a room.
pub(crate) async fn room(s: &Shared, room_id: &str) -> Result<Option<Room>, BackendError> {
    let mut c = redis::cmd("HGETALL");
    c.arg(s.keys.room(room_id));
    parse_room(room_id, s.redis.query("room", &c).await?)
}

/// Public rooms and the user's rooms, oldest first (by creation order).
pub(crate) async fn rooms_visible_to(s: &Shared, user_id: &str) -> Result<Vec<Room>, BackendError> {
    // Both indexes are scored by creation order; merged here (they are in different slots on a
    // cluster).
    let mut b = Batch::new();
    for key in [s.keys.public_rooms(), s.keys.user_rooms(user_id)] {
        b.cmd("ZRANGE").arg(key).arg(0).arg(-1).arg("WITHSCORES");
    }
    type Scored = Vec<(String, f64)>;
    let (public, own): (Scored, Scored) = s.redis.batch("rooms_visible_to", &b).await?;
    let mut by_id: HashMap<String, f64> = HashMap::new();
    for (id, score) in public.into_iter().chain(own) {
        let e = by_id.entry(id).or_insert(score);
        *e = e.min(score);
    }
    let mut ordered: Vec<(String, f64)> = by_id.into_iter().collect();
    ordered.sort_by(|a, b| a.1.total_cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
    let ids: Vec<String> = ordered.into_iter().map(|(id, _)| id).collect();
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut p = Batch::new();
    for id in &ids {
        p.cmd("HGETALL").arg(s.keys.room(id));
    }
    let hashes: Vec<HashMap<String, String>> = s.redis.batch("rooms_visible_to", &p).await?;
    let mut out = Vec::with_capacity(ids.len());
    for (id, h) in ids.iter().zip(hashes) {
        if let Some(room) = parse_room(id, h)? {
            out.push(room);
        }
    }
    Ok(out)
}

/// Adds a member at the end of the join order; `NotFound` for an unknown room.
pub(crate) async fn add_member(
    s: &Shared,
    room_id: &str,
    user_id: &str,
) -> Result<(), BackendError> {
    if s.redis.is_cluster() {
        return add_member_cluster(s, room_id, user_id).await;
    }
    let keys = [
        s.keys.room(room_id),
        s.keys.members(room_id),
        s.keys.user_rooms(user_id),
    ];
    let added: i64 = s
        .redis
        .eval(
            "add_member",
            &s.scripts.add_member,
            &keys,
            &[room_id, user_id],
        )
        .await?;
    if added < 0 {
        Err(BackendError::NotFound)
    } else {
        Ok(())
    }
}

/// On a cluster: the membership in the room's slot (a script: the join order), then the
/// user's index of rooms in the user's slot (written again if it was missed before).
async fn add_member_cluster(s: &Shared, room_id: &str, user_id: &str) -> Result<(), BackendError> {
    let keys = [s.keys.room(room_id), s.keys.members(room_id)];
    let ord: i64 = s
        .redis
        .eval(
            "add_member",
            &s.scripts.add_member_room,
            &keys,
            &[room_id, user_id],
        )
        .await?;
    if ord < 0 {
        return Err(BackendError::NotFound);
    }
    let mut c = redis::cmd("ZADD");
    c.arg(s.keys.user_rooms(user_id)).arg(ord).arg(room_id);
    s.redis.query::<i64>("add_member", &c).await?;
    Ok(())
}

/// Removes a member (nothing if not one).
pub(crate) async fn remove_member(
    s: &Shared,
    room_id: &str,
    user_id: &str,
) -> Result<(), BackendError> {
    let mut p = Batch::new();
    p.atomic()
        .cmd("ZREM")
        .arg(s.keys.members(room_id))
        .arg(user_id)
        .ignore()
        .cmd("ZREM")
        .arg(s.keys.user_rooms(user_id))
        .arg(room_id)
        .ignore();
    s.redis.batch::<()>("remove_member", &p).await
}

/// Whether the user is a member of the room.
pub(crate) async fn is_member(
    s: &Shared,
    room_id: &str,
    user_id: &str,
) -> Result<bool, BackendError> {
    let mut c = redis::cmd("ZSCORE");
    c.arg(s.keys.members(room_id)).arg(user_id);
    let score: Option<f64> = s.redis.query("is_member", &c).await?;
    Ok(score.is_some())
}

/// Members in join order.
pub(crate) async fn members(s: &Shared, room_id: &str) -> Result<Vec<String>, BackendError> {
    let mut c = redis::cmd("ZRANGE");
    c.arg(s.keys.members(room_id)).arg(0).arg(-1);
    s.redis.query("members", &c).await
}
