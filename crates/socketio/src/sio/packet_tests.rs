//! Unit tests of the Socket.IO packet codec: every packet type and every error case.

use super::*;

fn d(text: &str) -> Result<Packet, DecodeError> {
    decode(text, &Limits::default())
}

fn data(p: &Packet) -> Option<&str> {
    p.data.as_deref().map(RawValue::get)
}

#[test]
fn connect_to_main_and_custom_namespaces() {
    let p = d("0").unwrap();
    assert_eq!(
        (p.kind, p.nsp.as_str(), p.id, data(&p)),
        (PacketType::Connect, "/", None, None)
    );
    let p = d(r#"0{"token":"123"}"#).unwrap();
    assert_eq!(data(&p), Some(r#"{"token":"123"}"#));
    let p = d("0/custom,").unwrap();
    assert_eq!((p.nsp.as_str(), data(&p)), ("/custom", None));
    let p = d("0/random").unwrap();
    assert_eq!(p.nsp, "/random");
    let p = d(r#"0/custom,{"token":"abc"}"#).unwrap();
    assert_eq!(
        (p.nsp.as_str(), data(&p)),
        ("/custom", Some(r#"{"token":"abc"}"#))
    );
}

#[test]
fn disconnect_event_and_ack() {
    assert_eq!(d("1").unwrap().kind, PacketType::Disconnect);
    assert_eq!(d("1/custom,").unwrap().nsp, "/custom");
    let p = d(r#"2["message",1,"2",{"3":[true]}]"#).unwrap();
    assert_eq!(p.kind, PacketType::Event);
    let (name, args) = split_event(p.data.as_deref().unwrap()).unwrap();
    assert_eq!(name, "message");
    assert_eq!(
        args.iter().map(|a| a.get()).collect::<Vec<_>>(),
        vec!["1", "\"2\"", r#"{"3":[true]}"#]
    );
    let p = d(r#"2456["message-with-ack",1]"#).unwrap();
    assert_eq!(p.id, Some(456));
    let p = d(r#"3/custom,12["ok"]"#).unwrap();
    assert_eq!(
        (p.kind, p.nsp.as_str(), p.id),
        (PacketType::Ack, "/custom", Some(12))
    );
    assert_eq!(split_ack(p.data.as_deref().unwrap()).unwrap().len(), 1);
}

#[test]
fn binary_packets() {
    let p =
        d(r#"52-["message",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#).unwrap();
    assert_eq!(
        (p.kind, p.attachments, p.id),
        (PacketType::BinaryEvent, 2, None)
    );
    let p = d(r#"52-789["message-with-ack",{"_placeholder":true,"num":0}]"#).unwrap();
    assert_eq!((p.attachments, p.id), (2, Some(789)));
    let p = d(r#"61-/custom,7[{"_placeholder":true,"num":0}]"#).unwrap();
    assert_eq!(
        (p.kind, p.attachments, p.nsp.as_str(), p.id),
        (PacketType::BinaryAck, 1, "/custom", Some(7))
    );
}

#[test]
fn connect_error() {
    let p = d(r#"4/random,{"message":"Invalid namespace"}"#).unwrap();
    assert_eq!(p.kind, PacketType::ConnectError);
    assert_eq!(d(r#"4"no""#).unwrap().kind, PacketType::ConnectError);
    assert_eq!(d("4").unwrap_err(), DecodeError::BadPayload);
}

#[test]
fn errors() {
    assert_eq!(d("").unwrap_err(), DecodeError::UnknownType);
    assert_eq!(d("abc").unwrap_err(), DecodeError::UnknownType);
    assert_eq!(d("7").unwrap_err(), DecodeError::UnknownType);
    assert_eq!(d("2{}").unwrap_err(), DecodeError::BadPayload);
    assert_eq!(d("2[]").unwrap_err(), DecodeError::BadPayload);
    assert_eq!(d("2[1]").unwrap_err(), DecodeError::BadPayload);
    assert_eq!(d(r#"2[ 1, "a"]"#).unwrap_err(), DecodeError::BadPayload);
    assert_eq!(d(r#"2[{"a":"b"}]"#).unwrap_err(), DecodeError::BadPayload);
    assert_eq!(d(r#"2"a""#).unwrap_err(), DecodeError::BadPayload);
    assert_eq!(d("2").unwrap_err(), DecodeError::BadPayload);
    // Blanks JSON allows before the array and its first element.
    assert_eq!(d("2 [\n\t\"a\" , 1 ]").unwrap().kind, PacketType::Event);
    assert_eq!(
        d(r#"2abc["message-with-ack",1]"#).unwrap_err(),
        DecodeError::BadJson
    );
    assert_eq!(d("2[\"a\"").unwrap_err(), DecodeError::BadJson);
    assert_eq!(
        d(r#"299999999999999999999["a"]"#).unwrap_err(),
        DecodeError::BadAckId
    );
    assert_eq!(
        d(r#"29007199254740992["a"]"#).unwrap_err(),
        DecodeError::BadAckId
    );
    assert!(d(r#"29007199254740991["a"]"#).is_ok());
    assert_eq!(d("3[1]").unwrap_err(), DecodeError::BadPayload);
    assert_eq!(d("31").unwrap_err(), DecodeError::BadPayload);
    assert_eq!(d("1{}").unwrap_err(), DecodeError::BadPayload);
    assert_eq!(d("0[]").unwrap_err(), DecodeError::BadPayload);
    assert_eq!(d("0\"x\"").unwrap_err(), DecodeError::BadPayload);
    assert_eq!(d(r#"5["a"]"#).unwrap_err(), DecodeError::BadAttachments);
    assert_eq!(d(r#"5x-["a"]"#).unwrap_err(), DecodeError::BadAttachments);
    assert_eq!(d(r#"52["a"]"#).unwrap_err(), DecodeError::BadAttachments);
    assert_eq!(
        d(r#"599999999-["a"]"#).unwrap_err(),
        DecodeError::BadAttachments
    );
    assert_eq!(
        d(r#"511-["a"]"#).unwrap_err(),
        DecodeError::TooManyAttachments(10)
    );
    let long = format!("0/{}", "n".repeat(200));
    assert_eq!(d(&long).unwrap_err(), DecodeError::BadNamespace);
    let deep = format!("2[\"a\",{}{}]", "[".repeat(40), "]".repeat(40));
    assert_eq!(d(&deep).unwrap_err(), DecodeError::TooDeep(32));
}

#[test]
fn encoding_is_compact_like_socket_io() {
    assert_eq!(
        encode(PacketType::Connect, "/", None, Some(r#"{"sid":"x"}"#), 0),
        r#"0{"sid":"x"}"#
    );
    assert_eq!(
        encode(
            PacketType::Connect,
            "/custom",
            None,
            Some(r#"{"sid":"x"}"#),
            0
        ),
        r#"0/custom,{"sid":"x"}"#
    );
    assert_eq!(
        encode(PacketType::Disconnect, "/custom", None, None, 0),
        "1/custom,"
    );
    assert_eq!(
        encode(
            PacketType::ConnectError,
            "/random",
            None,
            Some(r#"{"message":"Invalid namespace"}"#),
            0
        ),
        r#"4/random,{"message":"Invalid namespace"}"#
    );
    assert_eq!(
        encode_event("4", "/", None, "auth", "[{}]", 0).unwrap(),
        r#"42["auth",{}]"#
    );
    assert_eq!(
        encode_event("", "/custom", Some(3), "e", "[]", 0).unwrap(),
        r#"2/custom,3["e"]"#
    );
    assert_eq!(
        encode_event("", "/", None, "e", "[1, 2]", 2).unwrap(),
        r#"52-["e",1, 2]"#
    );
    assert_eq!(
        encode_event("", "/", None, "e", "{}", 0).unwrap_err(),
        EncodeError::NotAnArray
    );
    assert_eq!(
        encode_ack("4", "/", 456, r#"[1,"2"]"#, 0).unwrap(),
        r#"43456[1,"2"]"#
    );
    assert_eq!(
        encode_ack("4", "/", 789, "[{}]", 2).unwrap(),
        r#"462-789[{}]"#
    );
    assert_eq!(
        encode_event("", "/", None, "quo\"te", "[]", 0).unwrap(),
        r#"2["quo\"te"]"#
    );
}

#[test]
fn decode_never_panics_on_any_prefix() {
    let samples = [
        r#"52-/custom,789["message-with-ack",{"_placeholder":true,"num":0}]"#,
        r#"0/custom,{"token":"abc"}"#,
        r#"3456[1,"2",{"3":[false]}]"#,
        "2[\"é\",\"\\u00e9\"]",
    ];
    for s in samples {
        for (i, _) in s.char_indices() {
            let _ = d(&s[..i]);
        }
        assert!(d(s).is_ok(), "{s}");
    }
}
