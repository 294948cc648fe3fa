//! A Socket.IO CONNECT: the token in its payload, and connection state recovery. Decided
//! before the session starts, so that the CONNECT reply (with its `pid`) is the first thing the
//! client gets, before any event.
//!
//! Recovery (`{pid, offset}` merged into the payload by stock clients): the `pid`'s record must
//! exist (within its window), belong to the same user, and every conversation it holds must
//! still be readable by the user and have history reaching back to where the offset says the
//! client stands (the native resume rule, PROTOCOL.md 6.6). Then the session resumes every
//! conversation from there and keeps the `pid`. Otherwise the client gets a new `pid` and a
//! fresh session with only its own stream: `socket.recovered` is false and the app subscribes
//! again.

use super::offset::{self, Slots};
use super::record::{Loaded, Record, Records};
use serde_json::Value;
use std::collections::BTreeMap;
use switchboard_core::session::{PreAuth, decide_resume};
use switchboard_core::{Error, Node};
use switchboard_proto::frame::ResumePosition;
use switchboard_proto::{Conv, ErrorCode};

/// A CONNECT accepted: the session to start and what the reply says.
pub struct Accepted {
    /// The session's recovery id (the same one when recovered).
    pub pid: String,
    /// Whether this CONNECT recovered an earlier session.
    pub recovered: bool,
    /// The session's owner token for its records (random, its own).
    pub owner: u64,
    /// The authenticated user with the conversations to resume.
    pub pre: PreAuth,
    /// The socket's slots (restored, or the own stream alone).
    pub slots: Slots,
}

/// The CONNECT_ERROR payload for an error: `{"message","data":{"code"}}`.
pub fn connect_error(e: &Error) -> Value {
    let code = e.code.as_str();
    let message = if e.code == ErrorCode::Unauthorized {
        "unauthorized"
    } else {
        code
    };
    serde_json::json!({"message": message, "data": {"code": code}})
}

/// Authenticates the CONNECT payload `auth` and decides on recovery.
pub async fn accept(node: &Node, records: &Records, auth: &Value) -> Result<Accepted, Error> {
    let Some(token) = auth.get("token").and_then(Value::as_str) else {
        return Err(Error::unauthorized("no token in the CONNECT payload"));
    };
    let principal = node.authenticate(token).await.map_err(|e| {
        if e.code == ErrorCode::Unavailable {
            e
        } else {
            Error::unauthorized(e.message)
        }
    })?;
    let pid = auth.get("pid").and_then(Value::as_str);
    let offset = auth.get("offset").and_then(Value::as_str);
    let recovered = match pid {
        Some(pid) => recover(node, records, &principal.user_id, pid, offset)
            .await
            .map(|r| (pid, r)),
        None => None,
    };
    let owner = switchboard_proto::ids::random_u64();
    if let Some((pid, (slots, resume, from))) = recovered {
        let record = Record {
            user_id: principal.user_id.clone(),
            slots: slots.slots().to_vec(),
            full: false,
        };
        // Another CONNECT may have taken the record over since it was loaded (a second client
        // presenting the same `pid`): then this one gets a session of its own.
        if records.begin(pid, owner, &record, Some(&from)).await? {
            return Ok(Accepted {
                pid: pid.to_owned(),
                recovered: true,
                owner,
                pre: PreAuth { principal, resume },
                slots,
            });
        }
    }
    let own = Conv::user(&principal.user_id);
    let pos = node
        .backend
        .broker
        .position(&own)
        .await
        .map_err(Error::from)?;
    let mut slots = Slots::default();
    slots.subscribed(&own, pos.head_seq, &pos.epoch, false);
    let pid = new_pid();
    let record = Record {
        user_id: principal.user_id.clone(),
        slots: slots.slots().to_vec(),
        full: false,
    };
    records.begin(&pid, owner, &record, None).await?;
    let mut resume = BTreeMap::new();
    resume.insert(
        own,
        ResumePosition::WithEpoch {
            seq: pos.head_seq,
            epoch: Some(pos.epoch),
        },
    );
    Ok(Accepted {
        pid,
        recovered: false,
        owner,
        pre: PreAuth { principal, resume },
        slots,
    })
}

/// A fresh `pid`: 128 random bits.
fn new_pid() -> String {
    format!(
        "{:016x}{:016x}",
        switchboard_proto::ids::random_u64(),
        switchboard_proto::ids::random_u64()
    )
}

/// The slots and resume positions of a recoverable `pid` with its record's owner, or `None`.
async fn recover(
    node: &Node,
    records: &Records,
    user_id: &str,
    pid: &str,
    offset: Option<&str>,
) -> Option<(Slots, BTreeMap<Conv, ResumePosition>, String)> {
    let Loaded { record, owner } = records.load(pid).await.ok()??;
    if record.user_id != user_id || record.full {
        return None;
    }
    let deltas = match offset {
        Some(o) => Some(offset::parse(o, record.slots.len())?),
        None => None,
    };
    let slots = Slots::restore(record.slots, deltas);
    let mut resume = BTreeMap::new();
    for (conv, last, epoch) in slots.positions() {
        node.check_read(user_id, conv).await.ok()?;
        let pos = node.backend.broker.position(conv).await.ok()?;
        let p = ResumePosition::WithEpoch {
            seq: last,
            epoch: Some(epoch.to_owned()),
        };
        if !decide_resume(&p, &pos).recovered {
            return None;
        }
        resume.insert(conv.clone(), p);
    }
    Some((slots, resume, owner))
}
