//! Authentication with its resumed subscriptions, and `subscribe`. Both set a subscription's
//! position and write their reply in one step ([`crate::conn::Conn::subscribe_with`]), then
//! replay what the client missed; live messages that arrive meanwhile wait (see the rules in
//! [`crate::conn`]).

use super::output::SESSION_HIGH_WATER;
use super::resume::decide;
use super::{End, Fail, PreAuth, Session};
use crate::auth::{Principal, now_ms};
use crate::backend::ConnEntry;
use crate::error::Error;
use crate::moment::Moment;
use crate::transport::{Out, Transport};
use std::collections::BTreeMap;
use std::time::Duration;
use switchboard_proto::frame::{RequestId, ResumePosition};
use switchboard_proto::{Conv, ServerFrame};

impl<T: Transport> Session<T> {
    /// Authenticates a client the transport already identified; `welcome` goes out unasked.
    pub(super) async fn pre_authenticated(&mut self, p: PreAuth) -> Result<(), End> {
        match self.authenticate(None, p.principal, p.resume).await {
            Ok(()) => Ok(()),
            Err(Fail::End(e)) => Err(e),
            Err(Fail::Reply(e)) => {
                let _ = Box::pin(self.reply_error(None, e)).await;
                Err(End::Close)
            }
        }
    }

    /// Authenticates, sets up the resumed subscriptions and replays what they missed. Live
    /// messages wait meanwhile (held), so the order is `welcome`, refusals, missed messages,
    /// then live ones.
    pub(super) async fn authenticate(
        &mut self,
        id: Option<RequestId>,
        principal: Principal,
        resume: BTreeMap<Conv, ResumePosition>,
    ) -> Result<(), Fail> {
        let _held = self.subs.conn.hold();
        self.authenticate_held(id, principal, resume).await
    }

    async fn authenticate_held(
        &mut self,
        id: Option<RequestId>,
        principal: Principal,
        resume: BTreeMap<Conv, ResumePosition>,
    ) -> Result<(), Fail> {
        // The ids are shared from here on: the registry, the hub and this session hold one copy.
        let user_id: std::sync::Arc<str> = principal.user_id.into();
        let conn_id: std::sync::Arc<str> = switchboard_proto::ids::new_id("c").into();
        self.subs
            .register(ConnEntry {
                conn_id: conn_id.clone(),
                user_id: user_id.clone(),
                session_id: principal.session_id.into(),
            })
            .await?;
        let left_ms = principal.expires_at_ms.saturating_sub(now_ms());
        self.deadline = Moment::now() + Duration::from_millis(left_ms.min(365 * 24 * 3600 * 1000));
        self.authenticated = true;

        let own = Conv::user(&user_id);
        let mut resume = resume;
        // The transport's own copy of the stream's name when it gave one (a Socket.IO socket's
        // recovery slots hold it): the connection then keeps one copy, not two.
        let (own, own_since) = match resume.remove_entry(&own) {
            Some((given, since)) => (given, Some(since)),
            None => (own, None),
        };
        let mut resumed = BTreeMap::new();
        // (conv, last seq the client has): set in the same step as `welcome` is written.
        let mut subs: Vec<(Conv, u64)> = Vec::new();
        let mut replays = Vec::new();
        let mut refused = Vec::new();

        let (own, pos) = self.subs.attach(&own).await?;
        match own_since {
            Some(p) => {
                let r = decide(&p, &pos);
                subs.push((own.clone(), r.from_seq - 1));
                resumed.insert(own.clone(), r);
                replays.push(own);
            }
            None => subs.push((own, pos.head_seq)),
        }
        for (conv, p) in resume {
            if subs.len() >= self.subs.node.limits.max_subscriptions {
                refused.push((conv, Error::bad_request("too many subscriptions")));
                continue;
            }
            if let Err(e) = self.subs.node.check_read(&user_id, &conv).await {
                refused.push((conv, e));
                continue;
            }
            let (conv, pos) = match self.subs.attach(&conv).await {
                Ok(attached) => attached,
                Err(e) => {
                    refused.push((conv, e));
                    continue;
                }
            };
            let r = decide(&p, &pos);
            subs.push((conv.clone(), r.from_seq - 1));
            resumed.insert(conv.clone(), r);
            replays.push(conv);
        }
        let heartbeat_ms = self.subs.node.limits.heartbeat.as_millis() as u64;
        let welcome = ServerFrame::Welcome {
            id: id.clone(),
            user_id: user_id.to_string(),
            node_id: self.subs.node.id.to_string(),
            conn_id: conn_id.to_string(),
            heartbeat_ms,
            resumed,
        };
        self.subs.conn.subscribe_with(&subs, welcome.encode())?;
        self.make_room(SESSION_HIGH_WATER).await?;
        for (conv, e) in refused {
            // The conversation is named in `conv` (and, for older clients, in the text).
            self.subs.node.metrics.error(e.code);
            let message = format!("{conv}: {}", e.message);
            let frame = ServerFrame::error_for(id.clone(), e.code, message, Some(conv));
            self.reply(frame).await?;
        }
        for conv in replays {
            let last = subs
                .iter()
                .find(|(c, _)| *c == conv)
                .map_or(0, |(_, last)| *last);
            self.replay(&conv, last, None).await?;
        }
        Ok(())
    }

    /// Subscribes to `conv` (or moves an existing subscription to `since`), then replays.
    pub(super) async fn subscribe(
        &mut self,
        id: Option<RequestId>,
        user_id: &str,
        conv: Conv,
        since: Option<u64>,
        epoch: Option<String>,
    ) -> Result<(), Fail> {
        let already = self.subs.conn.is_subscribed(&conv);
        if !already
            && self.subs.conn.subscription_count() >= self.subs.node.limits.max_subscriptions
        {
            let max = self.subs.node.limits.max_subscriptions;
            return Err(Error::bad_request(format!(
                "a connection may hold at most {max} subscriptions"
            ))
            .into());
        }
        self.subs.node.check_read(user_id, &conv).await?;
        let (conv, pos) = if already {
            let pos = self.subs.node.backend.broker.position(&conv).await;
            (conv, pos.map_err(Error::from)?)
        } else {
            self.subs.attach(&conv).await?
        };
        // Where the client stands; `None` keeps an existing subscription where it is.
        let (last, recovered, from_seq) = match since {
            None => ((!already).then_some(pos.head_seq), None, None),
            Some(since) => {
                let r = decide(&ResumePosition::WithEpoch { seq: since, epoch }, &pos);
                (Some(r.from_seq - 1), Some(r.recovered), Some(r.from_seq))
            }
        };
        let reply = ServerFrame::Subscribed {
            id,
            conv: conv.clone(),
            head_seq: pos.head_seq,
            epoch: pos.epoch,
            recovered,
            from_seq,
        }
        .encode();
        match last {
            Some(last) => self
                .subs
                .conn
                .subscribe_with(&[(conv.clone(), last)], reply)?,
            None => self.subs.conn.write(Out::Text(reply))?,
        }
        self.make_room(SESSION_HIGH_WATER).await?;
        if let Some(from) = from_seq {
            self.replay(&conv, from - 1, None).await?;
        }
        Ok(())
    }
}
