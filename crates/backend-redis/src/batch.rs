//! [`Batch`]: a pipeline that also runs on Redis Cluster.
//!
//! It is built like a `redis::Pipeline` (`cmd`, `arg`, `ignore`, `atomic`). On one server it is
//! sent as one pipeline. On a cluster, whose nodes refuse a pipeline spanning several hash slots,
//! its commands are grouped by the slot of their first key, each group is sent as one pipeline
//! to its node (all groups at once), and the answers are put back in the batch's order. A MULTI
//! batch is then atomic per slot only: the call sites that write several slots say what that
//! means for them.

use crate::conn::Conn;
use redis::{Cmd, Pipeline, RedisResult, ToRedisArgs, Value};
use std::collections::BTreeMap;

/// One command of a batch.
struct Entry {
    cmd: Cmd,
    /// Its first key (the first argument; the third for `EVALSHA`).
    key: Option<Vec<u8>>,
    /// Arguments seen so far, to find the key.
    args: usize,
    ignored: bool,
}

/// Commands sent together; see the module doc.
#[derive(Default)]
pub(crate) struct Batch {
    entries: Vec<Entry>,
    atomic: bool,
}

impl Batch {
    /// An empty batch.
    pub(crate) fn new() -> Batch {
        Batch::default()
    }

    /// Wraps the batch in MULTI/EXEC (per slot on a cluster).
    pub(crate) fn atomic(&mut self) -> &mut Batch {
        self.atomic = true;
        self
    }

    /// Starts a command.
    pub(crate) fn cmd(&mut self, name: &str) -> &mut Batch {
        self.entries.push(Entry {
            cmd: redis::cmd(name),
            key: None,
            args: 0,
            ignored: false,
        });
        self
    }

    /// Adds an argument to the last command.
    pub(crate) fn arg<T: ToRedisArgs>(&mut self, arg: T) -> &mut Batch {
        if let Some(e) = self.entries.last_mut() {
            let key_at = if is_eval(&e.cmd) { 2 } else { 0 };
            for a in arg.to_redis_args() {
                if e.args == key_at && e.key.is_none() {
                    e.key = Some(a.clone());
                }
                e.cmd.arg(a);
                e.args += 1;
            }
        }
        self
    }

    /// Drops the last command's answer from the batch's reply.
    pub(crate) fn ignore(&mut self) -> &mut Batch {
        if let Some(e) = self.entries.last_mut() {
            e.ignored = true;
        }
        self
    }

    /// Whether the batch has no command.
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The commands at `indexes` as one pipeline.
    fn pipeline(&self, indexes: &[usize]) -> Pipeline {
        let mut p = redis::pipe();
        if self.atomic {
            p.atomic();
        }
        for &i in indexes {
            let e = &self.entries[i];
            p.add_command(e.cmd.clone());
            if e.ignored {
                p.ignore();
            }
        }
        p
    }

    /// Sends the batch; the answers of the commands not ignored, in order.
    pub(crate) async fn run(&self, mut conn: Conn) -> RedisResult<Vec<Value>> {
        let all: Vec<usize> = (0..self.entries.len()).collect();
        if all.is_empty() {
            return Ok(Vec::new());
        }
        let groups = match &conn {
            Conn::Single(_) => vec![all],
            Conn::Cluster(_) => self.by_slot(),
        };
        if groups.len() == 1 {
            return self.pipeline(&groups[0]).query_async(&mut conn).await;
        }
        let sent = groups.iter().map(|g| {
            let p = self.pipeline(g);
            let mut c = conn.clone();
            async move { p.query_async::<Vec<Value>>(&mut c).await }
        });
        let answers = futures_util::future::join_all(sent).await;
        let mut by_index: BTreeMap<usize, Value> = BTreeMap::new();
        for (group, answer) in groups.iter().zip(answers) {
            let mut values = answer?.into_iter();
            for &i in group {
                if !self.entries[i].ignored {
                    by_index.insert(i, values.next().unwrap_or(Value::Nil));
                }
            }
        }
        Ok(by_index.into_values().collect())
    }

    /// Command indexes grouped by hash slot, groups in order of first appearance; commands
    /// without a key join the first group.
    fn by_slot(&self) -> Vec<Vec<usize>> {
        let mut order: Vec<u16> = Vec::new();
        let mut groups: BTreeMap<u16, Vec<usize>> = BTreeMap::new();
        let mut keyless = Vec::new();
        for (i, e) in self.entries.iter().enumerate() {
            match &e.key {
                Some(k) => {
                    let slot = slot(k);
                    if !groups.contains_key(&slot) {
                        order.push(slot);
                    }
                    groups.entry(slot).or_default().push(i);
                }
                None => keyless.push(i),
            }
        }
        let mut out: Vec<Vec<usize>> = order
            .into_iter()
            .filter_map(|s| groups.remove(&s))
            .collect();
        match out.first_mut() {
            Some(first) => {
                first.extend(keyless);
                first.sort_unstable();
            }
            None => out.push(keyless),
        }
        out
    }
}

fn is_eval(cmd: &Cmd) -> bool {
    cmd.args_iter().next().is_some_and(|a| match a {
        redis::Arg::Simple(n) => {
            n.eq_ignore_ascii_case(b"EVALSHA") || n.eq_ignore_ascii_case(b"EVAL")
        }
        _ => false,
    })
}

/// The Redis Cluster hash slot of a key: CRC16 (XMODEM) of its hash tag (the part between the
/// first `{` and the next `}`, if not empty) or of the whole key, modulo 16384.
pub(crate) fn slot(key: &[u8]) -> u16 {
    let tagged = key.iter().position(|&b| b == b'{').and_then(|open| {
        let rest = &key[open + 1..];
        let close = rest.iter().position(|&b| b == b'}')?;
        (close > 0).then(|| &rest[..close])
    });
    crc16(tagged.unwrap_or(key)) % 16384
}

fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in data {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_follow_the_hash_tag() {
        // Values from the Redis Cluster specification and `CLUSTER KEYSLOT`.
        assert_eq!(slot(b"123456789"), 12739);
        assert_eq!(slot(b"foo"), 12182);
        assert_eq!(slot(b"sb:{room:r_1}:log"), slot(b"room:r_1"));
        assert_eq!(slot(b"{}x"), slot(b"{}x"));
        assert_ne!(slot(b"{}a"), slot(b"{}b"));
    }

    #[test]
    fn groups_keep_order_within_a_slot() {
        let mut b = Batch::new();
        b.cmd("GET").arg("{a}1");
        b.cmd("GET").arg("{b}1");
        b.cmd("GET").arg("{a}2").ignore();
        b.cmd("EVALSHA").arg("sha").arg(1).arg("{b}2");
        let groups = b.by_slot();
        assert_eq!(groups, vec![vec![0, 2], vec![1, 3]]);
    }
}
