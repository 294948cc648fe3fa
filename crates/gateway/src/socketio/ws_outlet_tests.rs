//! Tests of the direct WebSocket outlet: what the socket does not take, through the wire as the
//! session writes; the bound on what is kept; the delayed close; the packets' framing.

use super::*;
use switchboard_core::transport::Out;
use tokio::io::AsyncReadExt;

/// The text frames in `bytes` (server frames: unmasked, unfragmented), and what is left.
fn frames(mut bytes: &[u8]) -> (Vec<String>, usize) {
    let mut out = Vec::new();
    loop {
        if bytes.len() < 2 {
            return (out, bytes.len());
        }
        let (len, head) = match bytes[1] {
            126 if bytes.len() >= 4 => (u16::from_be_bytes([bytes[2], bytes[3]]) as usize, 4),
            127 if bytes.len() >= 10 => (
                u64::from_be_bytes(bytes[2..10].try_into().unwrap()) as usize,
                10,
            ),
            126 | 127 => return (out, bytes.len()),
            n => (n as usize, 2),
        };
        if bytes.len() < head + len {
            return (out, bytes.len());
        }
        if bytes[0] == 0x88 {
            out.push("<close>".into());
        } else {
            assert_eq!(bytes[0], 0x81, "a final text frame");
            out.push(String::from_utf8(bytes[head..head + len].to_vec()).unwrap());
        }
        bytes = &bytes[head + len..];
    }
}

/// A connected pair: the outlet on the server's end, and the client's end.
async fn pair() -> (WsOutlet, TcpStream, Arc<Closing>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (server, _) = listener.accept().await.unwrap();
    let closing = Closing::new();
    (WsOutlet::new(server, closing.clone()), client, closing)
}

/// Reads `count` frames (or until the end of the stream, `count` 0).
async fn read_frames(client: &mut TcpStream, count: usize) -> Vec<String> {
    let mut bytes = Vec::new();
    let mut chunk = vec![0u8; 65536];
    loop {
        let n = client.read(&mut chunk).await.unwrap();
        bytes.extend_from_slice(&chunk[..n]);
        let (got, _) = frames(&bytes);
        if n == 0 || (count > 0 && got.len() >= count) {
            return got;
        }
    }
}

/// The session's writes through the wire, as `Conn` makes them: each frame offered until
/// it is written whole, resumed at the reported offset, waiting for room when blocked.
#[tokio::test]
async fn a_frame_the_socket_takes_in_part_is_finished_before_the_next_one() {
    let (outlet, mut client, _) = pair().await;
    let (_, records) = crate::socketio::record::tests::start(false).await;
    let wire = Arc::new(crate::socketio::wire::SioWire::new(
        outlet,
        crate::socketio::offset::Slots::default(),
        records,
        "p".into(),
        1,
        "u".into(),
        1,
    ));
    // More than loopback's socket buffers take at once (a few MB).
    const N: usize = 300;
    let pad = "x".repeat(60_000);
    let out: Vec<Out> = (0..N)
        .map(|i| {
            let frame = format!(
                r#"{{"type":"message","conv":"user:u","seq":{},"body":"{pad}"}}"#,
                i + 1
            );
            Out::Text(bytes::Bytes::from(frame))
        })
        .chain([Out::Ping])
        .collect();
    let reader = tokio::spawn(async move { read_frames(&mut client, 0).await });
    let blocked = crate::wire::tests::write_all(&*wire, &out).await;
    assert!(blocked, "the socket filled");
    // Then the session ends the connection (a kick): its last packets, then the close.
    let last = [
        Out::Text(bytes::Bytes::from_static(
            br#"{"type":"disconnect","reason":"kicked"}"#,
        )),
        Out::Close(1000),
    ];
    crate::wire::tests::write_all(&*wire, &last).await;
    switchboard_core::transport::Wire::shutdown(&*wire);
    // Everything arrives, the tail of the last frame too (nothing waits for a next write).
    let got = tokio::time::timeout(Duration::from_secs(20), reader)
        .await
        .expect("every frame arrives")
        .unwrap();
    assert_eq!(
        got[N + 1..],
        [
            r#"42["switchboard:disconnect",{"reason":"kicked"}]"#,
            "41",
            "<close>"
        ]
    );
    for (i, text) in got[..N].iter().enumerate() {
        let seq = format!(r#""seq":{}"#, i + 1);
        assert!(text.starts_with(r#"42["message",{"#), "frame {i}");
        assert!(
            text.contains(&seq) && text.len() > 60_000,
            "frame {i} whole, in order"
        );
    }
    assert_eq!(got[N], "2", "the heartbeat after them");
    assert!(wire.outlet().flush().is_none(), "nothing kept");
}

#[tokio::test]
async fn what_a_client_that_does_not_read_makes_the_outlet_keep_is_bounded() {
    let (outlet, client, _) = pair().await;
    let pad = vec![b'x'; 1000];
    let mut refused = 0;
    for _ in 0..10_000 {
        if outlet.send(TEXT, &[&pad]).is_err() {
            refused += 1;
            break;
        }
    }
    assert_eq!(refused, 1, "the connection was closed past its bound");
    let kept = outlet.kept.lock();
    assert!(
        kept.closed && kept.buf.capacity() == 0,
        "and nothing is kept"
    );
    drop(client);
}

#[tokio::test]
async fn a_delayed_close_is_counted_and_can_be_hurried() {
    let (outlet, mut client, closing) = pair().await;
    outlet.close_transport_after(Duration::from_secs(60));
    drop(outlet);
    assert_eq!(closing.count(), 1, "open, counted");
    closing.close_all();
    let got = tokio::time::timeout(Duration::from_secs(5), read_frames(&mut client, 0)).await;
    assert_eq!(got.expect("closed at once"), Vec::<String>::new());
    tokio::time::timeout(Duration::from_secs(5), async {
        while closing.count() > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("no longer counted");
}

#[tokio::test]
async fn events_acks_and_the_close() {
    let (outlet, mut client, _) = pair().await;
    outlet
        .emit("switchboard:reconnect", "[{\"delay_ms\":5}]".into())
        .unwrap();
    outlet.emit("bare", "[]".into()).unwrap();
    outlet.ack(9_007_199_254_740_991, "[1,\"two\"]").unwrap();
    outlet.disconnect();
    // The session's end closes (after it wrote out what waited).
    outlet.finish();
    assert!(
        outlet.emit("late", "[]".into()).is_err(),
        "nothing after the close"
    );
    let mut bytes = Vec::new();
    client.read_to_end(&mut bytes).await.unwrap();
    let close_at = bytes.iter().rposition(|&b| b == 0x88).unwrap();
    assert_eq!(
        &bytes[close_at..],
        &[0x88, 2, 0x03, 0xE8],
        "a close frame, 1000"
    );
    let (got, left) = frames(&bytes[..close_at]);
    assert_eq!(left, 0);
    assert_eq!(
        got,
        [
            r#"42["switchboard:reconnect",{"delay_ms":5}]"#,
            r#"42["bare"]"#,
            r#"439007199254740991[1,"two"]"#,
            "41",
        ]
    );
}

/// The packets of one batch leave together: those written while more follow wait in the socket
/// (`MSG_MORE`) for the last one, or for the batch's end when no packet comes after them.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_batch_waits_in_the_socket_for_its_last_packet() {
    let (outlet, mut client, _) = pair().await;
    outlet.more_follows(true);
    outlet.ack(1, "[1]").unwrap();
    let mut chunk = [0u8; 256];
    // Nothing else is in flight on this fresh connection, so no ACK releases the packet, and
    // the kernel's own release comes after about 200 ms.
    let early = tokio::time::timeout(Duration::from_millis(40), client.read(&mut chunk)).await;
    assert!(
        early.is_err(),
        "a packet went before its batch ended: {early:?}"
    );
    // The batch ends without another packet (a frame that made none): what waits is sent now,
    // before the kernel's 200 ms are over.
    outlet.end_batch();
    let pushed = tokio::time::timeout(Duration::from_millis(100), read_frames(&mut client, 1));
    assert_eq!(pushed.await.expect("sent at the end"), ["431[1]"]);
    assert!(!outlet.held.load(Ordering::Relaxed));
    // The last packet of a batch sends what waits: nothing is left to push.
    outlet.more_follows(true);
    outlet.ack(2, "[2]").unwrap();
    assert!(outlet.held.load(Ordering::Relaxed));
    outlet.more_follows(false);
    outlet.ack(3, "[3]").unwrap();
    assert!(
        !outlet.held.load(Ordering::Relaxed),
        "the last packet sent it all"
    );
    assert_eq!(read_frames(&mut client, 2).await, ["432[2]", "433[3]"]);
    outlet.end_batch();
}
