//! The library's own WebSocket framing from a raw client over TCP: the opening handshake,
//! fragmented messages, pings, and the frames that close the connection.

mod common;

use common::*;
use switchboard_socketio::{Config, EventHead, SocketIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A masked client frame.
fn frame(fin: bool, op: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [9u8, 8, 7, 6];
    let mut out = vec![(if fin { 0x80 } else { 0 }) | op];
    assert!(payload.len() < 126);
    out.push(0x80 | payload.len() as u8);
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// Opens a WebSocket by hand; returns the stream after the 101 answer.
async fn open(server: &Server) -> TcpStream {
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    let request = "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8];
        tcp.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap().to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    // RFC 6455's own example key and answer.
    assert!(
        head.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
        "{head}"
    );
    tcp
}

/// Reads one server frame: (opcode, payload), or `None` at the end of the stream.
async fn read_frame(tcp: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    let read = async {
        let mut head = [0u8; 2];
        tcp.read_exact(&mut head).await.ok()?;
        assert_eq!(head[1] & 0x80, 0, "server frames are not masked");
        let len = match head[1] & 0x7f {
            126 => {
                let mut b = [0u8; 2];
                tcp.read_exact(&mut b).await.ok()?;
                u16::from_be_bytes(b) as usize
            }
            127 => panic!("no frame that long here"),
            n => n as usize,
        };
        let mut payload = vec![0u8; len];
        tcp.read_exact(&mut payload).await.ok()?;
        Some((head[0] & 0x0f, payload))
    };
    tokio::time::timeout(std::time::Duration::from_secs(5), read)
        .await
        .expect("a frame within 5 s")
}

#[tokio::test]
async fn fragments_pings_and_close() {
    let server = start(config()).await;
    let mut tcp = open(&server).await;
    let (op, open_packet) = read_frame(&mut tcp).await.unwrap();
    assert_eq!(op, 1);
    assert!(open_packet.starts_with(b"0{\"sid\""));
    // "40" in two fragments, with a ping between them (control frames may interleave).
    let mut bytes = frame(false, 0x1, b"4");
    bytes.extend(frame(true, 0x9, b"hi"));
    bytes.extend(frame(true, 0x0, b"0"));
    tcp.write_all(&bytes).await.unwrap();
    assert_eq!(read_frame(&mut tcp).await, Some((0xA, b"hi".to_vec())));
    let (op, reply) = read_frame(&mut tcp).await.unwrap();
    assert!(
        op == 1 && reply.starts_with(b"40{\"sid\""),
        "{:?}",
        String::from_utf8_lossy(&reply)
    );
    // A binary event with its attachment in three fragments.
    tcp.write_all(&frame(
        true,
        0x1,
        br#"451-["echo",{"_placeholder":true,"num":0}]"#,
    ))
    .await
    .unwrap();
    let mut bytes = frame(false, 0x2, &[1]);
    bytes.extend(frame(false, 0x0, &[2]));
    bytes.extend(frame(true, 0x0, &[3]));
    tcp.write_all(&bytes).await.unwrap();
    assert_eq!(
        read_frame(&mut tcp).await,
        Some((
            1,
            br#"451-["echo-back",{"_placeholder":true,"num":0}]"#.to_vec()
        ))
    );
    assert_eq!(read_frame(&mut tcp).await, Some((2, vec![1, 2, 3])));
    // A close frame is answered with one, then the end of the stream.
    tcp.write_all(&frame(true, 0x8, b"")).await.unwrap();
    assert_eq!(read_frame(&mut tcp).await, Some((8, vec![])));
    assert_eq!(read_frame(&mut tcp).await, None);
}

#[tokio::test]
async fn bad_frames_close_the_connection() {
    let server = start(config()).await;
    let mut unmasked = frame(true, 0x1, b"40");
    unmasked[1] &= 0x7f;
    let mut reserved = frame(true, 0x1, b"40");
    reserved[0] |= 0x20;
    let cases = [
        unmasked,
        reserved,
        frame(true, 0x3, b""),  // unknown opcode
        frame(false, 0x9, b""), // fragmented ping
        [frame(false, 0x1, b"4"), frame(true, 0x1, b"0")].concat(), // new message mid-fragments
        frame(true, 0x0, b"40"), // continuation of nothing
        frame(true, 0x1, &[b'4', 0xff]), // text that is not UTF-8
    ];
    for (i, bytes) in cases.iter().enumerate() {
        let mut tcp = open(&server).await;
        read_frame(&mut tcp).await.unwrap();
        tcp.write_all(bytes).await.unwrap();
        loop {
            match read_frame(&mut tcp).await {
                None => break,
                Some((8, _)) => {}
                Some(other) => panic!("case {i}: unexpected {other:?}"),
            }
        }
    }
}

#[tokio::test]
async fn not_a_websocket_handshake_is_400() {
    let server = start(config()).await;
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    let request = "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 8\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut head = [0u8; 12];
    tcp.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 400");
}

/// A client that does not read fills its socket: the direct writes (and the task's, on hyper's
/// connection) stop part-way through frames, the rest is queued, and once the client reads
/// every frame arrives whole and in order, with a pong answered in its place.
#[tokio::test]
async fn a_full_socket_keeps_every_frame_whole_and_in_order() {
    const FRAMES: usize = 4000;
    for axum in [false, true] {
        let config = Config {
            max_queued_packets: 2 * FRAMES,
            max_queued_bytes: 64 << 20,
            ..config()
        };
        let builder = SocketIo::builder(config);
        let mut server = if axum {
            start_axum(builder).await
        } else {
            start_with(builder).await
        };
        // 8 MB: more than the kernel buffers (4 MB at most for a send buffer by default).
        let mut tcp = open(&server).await;
        read_frame(&mut tcp).await.unwrap();
        tcp.write_all(&frame(true, 0x1, b"40")).await.unwrap();
        assert!(read_frame(&mut tcp).await.unwrap().1.starts_with(b"40{"));
        let socket = server.next_socket().await;
        let head = EventHead::new("/", "n").unwrap();
        let pad = format!("\"{}\"", "x".repeat(2000));
        let mut queued = false;
        for i in 0..FRAMES {
            if i == FRAMES / 2 {
                tcp.write_all(&frame(true, 0x9, b"mid")).await.unwrap();
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            socket.emit_values(&head, &[&i.to_string(), &pad]).unwrap();
            queued |= socket.queue_room() < 2 * FRAMES;
        }
        assert!(queued, "the socket never filled (axum: {axum})");
        let mut pong = false;
        let mut next = 0;
        while next < FRAMES {
            let (op, payload) = read_frame(&mut tcp).await.unwrap();
            if op == 0xA {
                assert_eq!(payload, b"mid");
                pong = true;
                continue;
            }
            let text = String::from_utf8(payload).unwrap();
            assert_eq!(text, format!(r#"42["n",{next},{pad}]"#), "axum: {axum}");
            next += 1;
        }
        assert!(pong || axum, "the pong came");
    }
}
