//! Durability of the embedded backend: what was answered survives a close, a drop without close,
//! and a SIGKILL of the process in the middle of appends; seq goes on from where it was.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use switchboard_conformance::RecordingSink;
use switchboard_core::backend::{AuthSession, Backend, HistoryQuery, RecoveryGuard, Visibility};
use switchboard_proto::Conv;

const CRASH_DIR_ENV: &str = "SB_EMBEDDED_CRASH_CHILD_DIR";

async fn all_seqs(b: &Backend, conv: &Conv) -> Vec<u64> {
    all_keys(b, conv)
        .await
        .into_iter()
        .map(|(seq, _)| seq)
        .collect()
}

/// Every stored message of `conv` as (seq, client_msg_id), in order.
async fn all_keys(b: &Backend, conv: &Conv) -> Vec<(u64, Option<String>)> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let q = HistoryQuery {
            after: Some(after),
            before: None,
            limit: 500,
        };
        let page = b.broker.history(conv, q).await.expect("history");
        let Some(last) = page.last() else { break };
        after = last.seq;
        out.extend(page.iter().map(|m| (m.seq, m.client_msg_id.clone())));
    }
    out
}

/// How a test ends the first backend.
enum End {
    Close,
    DropWithoutClose,
}

/// Writes some of everything, then ends the backend, reopens and checks.
async fn survives(end: End) {
    let dir = tempfile::tempdir().expect("tempdir");
    let conv = Conv::room("durable");
    let token = [7u8; 32];
    let session = AuthSession {
        session_id: "s_1".into(),
        user_id: "u_1".into(),
        expires_at_ms: 4_000_000_000_000,
    };

    let eb = common::open(dir.path(), 0, RecordingSink::new());
    let b = eb.backend();
    let epoch = eb.epoch().to_owned();
    let alice = b.store.create_user("alice", "h").await.expect("user");
    let room = b
        .store
        .create_room("room", Visibility::Private, &alice.user_id)
        .await
        .expect("room");
    b.store
        .create_session(token, &session)
        .await
        .expect("session");
    let answers = b
        .broker
        .append_many((1..=300).map(|n| common::keyed(&conv, n)).collect())
        .await;
    let first = answers[0].as_ref().expect("append").receipt.clone();
    assert!(answers.iter().all(|a| a.is_ok()));
    match end {
        End::Close => b.lifecycle.close().await,
        End::DropWithoutClose => {
            drop(b);
            drop(eb);
        }
    }

    let eb = common::open(dir.path(), 0, RecordingSink::new());
    let b = eb.backend();
    assert_eq!(eb.epoch(), epoch, "the epoch survives");
    assert_eq!(all_seqs(&b, &conv).await, (1..=300).collect::<Vec<_>>());
    let page = b
        .broker
        .history(
            &conv,
            HistoryQuery {
                after: Some(41),
                before: None,
                limit: 1,
            },
        )
        .await
        .expect("history");
    assert_eq!(page[0].body.get(), r#"{"n":42}"#);
    assert_eq!(page[0].client_msg_id.as_deref(), Some("k42"));
    let pos = b.broker.position(&conv).await.expect("position");
    assert_eq!((pos.head_seq, pos.oldest_seq), (300, 1));
    let retry = b
        .broker
        .append(common::keyed(&conv, 1))
        .await
        .expect("retry");
    assert_eq!(retry.receipt, first, "idempotency keys survive");
    assert!(retry.stored.is_empty());
    let next = b
        .broker
        .append(common::keyed(&conv, 301))
        .await
        .expect("append");
    assert_eq!(next.receipt.seq, 301, "seq goes on");
    assert!(next.receipt.ts >= first.ts);
    assert_eq!(
        b.store.user(&alice.user_id).await.expect("user"),
        Some(alice.clone())
    );
    assert_eq!(
        b.store.room(&room.room_id).await.expect("room"),
        Some(room.clone())
    );
    assert_eq!(
        b.store.session(token).await.expect("session"),
        Some(session)
    );
    b.lifecycle.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopen_after_close() {
    survives(End::Close).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopen_after_drop_without_close() {
    survives(End::DropWithoutClose).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_checkpoints_the_wal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let eb = common::open(dir.path(), 0, RecordingSink::new());
    let b = eb.backend();
    b.broker
        .append(common::keyed(&Conv::room("x"), 1))
        .await
        .expect("append");
    b.lifecycle.close().await;
    let wal = dir.path().join("switchboard.db-wal");
    let len = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    assert_eq!(len, 0, "the WAL is truncated (or removed) on close");
}

/// Socket.IO recovery records are kept in the process's memory: a reopened backend has none, and
/// the registry says so (the gateway then stores a session's record only once it ends).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_records_die_with_the_process_and_the_registry_says_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let eb = common::open(dir.path(), 0, RecordingSink::new());
    let b = eb.backend();
    assert!(!b.registry.recoveries_outlive_process());
    let minute = std::time::Duration::from_secs(60);
    b.registry
        .put_recovery("p1", "o1", "{}", minute, RecoveryGuard::Always)
        .await
        .expect("put");
    let stored = b.registry.recovery("p1").await.expect("recovery");
    assert_eq!(stored.map(|r| r.value).as_deref(), Some("{}"));
    b.lifecycle.close().await;
    drop((b, eb));

    let eb = common::open(dir.path(), 0, RecordingSink::new());
    let b = eb.backend();
    assert_eq!(b.registry.recovery("p1").await.expect("recovery"), None);
    b.lifecycle.close().await;
}

/// The child half of [`kill_9_loses_nothing_acknowledged`], run in a copy of this test binary
/// that the parent starts with `dir` in [`CRASH_DIR_ENV`]: appends until killed, printing each
/// acknowledged seq. Never returns, so it cannot pass as a test of its own.
fn crash_child(dir: &std::path::Path) -> ! {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let eb = common::open(dir, 0, RecordingSink::new());
        let b = eb.backend();
        let conv = Conv::room("crash");
        let mut tasks = Vec::new();
        for t in 0..8u64 {
            let broker = b.broker.clone();
            let conv = conv.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0.. {
                    let a = broker
                        .append(common::keyed(&conv, t * 1_000_000 + i))
                        .await
                        .expect("append");
                    println!("ack {} {}", a.receipt.seq, t * 1_000_000 + i);
                }
            }));
        }
        for t in tasks {
            t.await.expect("an appending task failed");
        }
    });
    unreachable!("the appending tasks never end");
}

#[test]
fn kill_9_loses_nothing_acknowledged() {
    if let Some(dir) = std::env::var_os(CRASH_DIR_ENV) {
        crash_child(std::path::Path::new(&dir));
    }
    let dir = tempfile::tempdir().expect("tempdir");
    // This same test, in a copy of this binary, with the variable that makes it the child.
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "kill_9_loses_nothing_acknowledged",
            "--exact",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CRASH_DIR_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the child");
    let stdout = child.stdout.take().expect("stdout");
    let mut acked: Vec<(u64, u64)> = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("read the child");
        let mut parts = line.split_whitespace();
        if parts.next() != Some("ack") {
            continue;
        }
        let seq = parts.next().and_then(|s| s.parse().ok()).expect("seq");
        let n = parts.next().and_then(|s| s.parse().ok()).expect("n");
        acked.push((seq, n));
        if acked.len() >= 2_000 {
            child.kill().expect("SIGKILL the child"); // SIGKILL on Unix
            break;
        }
    }
    let status = child.wait().expect("wait for the child");
    assert!(!status.success(), "the child was killed");
    assert!(
        acked.len() >= 2_000,
        "the child acknowledged appends before dying"
    );

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let eb = common::open(dir.path(), 0, RecordingSink::new());
        let b = eb.backend();
        let conv = Conv::room("crash");
        let stored = all_keys(&b, &conv).await;
        let seqs: Vec<u64> = stored.iter().map(|m| m.0).collect();
        let head = b.broker.position(&conv).await.expect("position").head_seq;
        assert_eq!(
            seqs,
            (1..=head).collect::<Vec<_>>(),
            "no gap after the crash"
        );
        let max_acked = acked.iter().map(|a| a.0).max().unwrap_or(0);
        assert!(head >= max_acked, "head {head} < acknowledged {max_acked}");
        // Every acknowledged append is stored at the seq it was acknowledged with.
        for &(seq, n) in &acked {
            let key = stored[(seq - 1) as usize].1.as_deref();
            assert_eq!(
                key,
                Some(format!("k{n}").as_str()),
                "acknowledged seq {seq}"
            );
        }
        // Every acknowledged message is there, with its seq: its key answers with it.
        for &(seq, n) in acked.iter().step_by(97) {
            let retry = b
                .broker
                .append(common::keyed(&conv, n))
                .await
                .expect("retry");
            assert_eq!(
                retry.receipt.seq, seq,
                "acknowledged message {n} kept its seq"
            );
            assert!(retry.stored.is_empty());
        }
        let next = b
            .broker
            .append(common::keyed(&conv, 999_999_999))
            .await
            .expect("append");
        assert_eq!(next.receipt.seq, head + 1, "seq goes on after the crash");
        b.lifecycle.close().await;
    });
}
