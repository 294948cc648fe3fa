//! CI's quick check of the fuzz targets (fuzz/, which CI does not build): each target's
//! function over every input of its committed corpus, `fuzz/corpus/<target>/`. A fuzz finding
//! fixed is added there, so this is also its regression test.

use std::path::PathBuf;

#[path = "../../../fuzz/shared/sio.rs"]
mod sio;

/// Calls `check` on every file of `fuzz/corpus/<target>/`; returns how many there were.
fn over_corpus(target: &str, check: impl Fn(&[u8]) -> usize) -> (usize, usize) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut files = 0;
    let mut accepted = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&data)));
        match result {
            Ok(n) => accepted += n.min(1),
            Err(_) => panic!("{target}: {} panicked", path.display()),
        }
        files += 1;
    }
    assert!(files >= 10, "{target}: only {files} corpus inputs");
    (files, accepted)
}

/// Each corpus holds valid inputs as well as broken ones: some must be accepted, or the
/// target no longer reaches past its first error.
fn some_accepted(target: &str, check: impl Fn(&[u8]) -> usize) {
    let (files, accepted) = over_corpus(target, check);
    assert!(
        accepted > 0,
        "{target}: none of {files} inputs was accepted"
    );
}

#[test]
fn ws_frames() {
    some_accepted("ws_frames", switchboard_gateway::decode::check_ws);
}

#[test]
fn tcp_frames() {
    some_accepted("tcp_frames", switchboard_gateway::decode::check_tcp);
}

#[test]
fn client_frame() {
    some_accepted("client_frame", |d| {
        let (client, server) = switchboard_proto::frame::check_frames(d);
        usize::from(client || server)
    });
}

#[test]
fn poll_body() {
    some_accepted(
        "poll_body",
        switchboard_gateway::poll::body::parse_any_poll_body,
    );
}

#[test]
fn api_body() {
    some_accepted("api_body", switchboard_api::bodies::parse_any_api_body);
}

#[test]
fn sio_packets() {
    some_accepted("sio_packets", sio::check_sio);
}

#[test]
fn sio_ws() {
    some_accepted(
        "sio_ws",
        switchboard_gateway::socketio::ws_read::check_reading,
    );
}
