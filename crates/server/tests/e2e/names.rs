//! Look-alike names (issue 13, finding 7): invisible formatting and bidirectional control
//! characters are refused with `bad_request`; compatibility forms and other cases of a taken
//! username are the same name (`username_taken`); room names are normalized the same way.

use crate::common;
use common::*;
use serde_json::json;

#[tokio::test]
async fn look_alikes_of_alice_are_refused_or_taken() {
    let node = TestNode::start().await;
    let (_, token) = node.user("alice").await;
    let register = |name: &str| {
        let body = json!({"username": name, "password": PASSWORD});
        let http = node.http.clone();
        async move { http.call("POST", "/v1/users", None, Some(body)).await }
    };
    for invisible in [
        "al\u{200B}ice",  // zero-width space
        "\u{FEFF}alice",  // byte-order mark
        "alice\u{202E}",  // right-to-left override
        "ali\u{2066}ce",  // left-to-right isolate
        "al\u{00AD}ice",  // soft hyphen
        "alice\u{E0020}", // tag space
    ] {
        assert_error(register(invisible).await, 400, "bad_request");
    }
    for same in ["alice", "Alice", "ALICE", "ａｌｉｃｅ"] {
        assert_error(register(same).await, 409, "username_taken");
    }
    // Every spelling logs in as alice.
    let (s, v) = node
        .http
        .call(
            "POST",
            "/v1/sessions",
            None,
            Some(json!({"username": "ＡＬＩＣＥ", "password": PASSWORD})),
        )
        .await;
    assert_eq!(s, 201, "{v}");

    let (s, v) = node
        .http
        .post("/v1/rooms", &token, json!({"name": "news\u{202E}gpj.exe"}))
        .await;
    assert_error((s, v), 400, "bad_request");
    let (s, v) = node
        .http
        .post("/v1/rooms", &token, json!({"name": "ｌｏｂｂｙ"}))
        .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["name"], "lobby");
    node.stop().await;
}
