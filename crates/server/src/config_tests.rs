//! Tests of the configuration: precedence of flags, file and defaults; refused settings.

use super::*;

#[test]
fn flags_win_over_file_and_defaults_fill_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sb.toml");
    std::fs::write(
        &path,
        "listen = \"127.0.0.1:9\"\nmax_connections = 5\npublish_rate = 7\n",
    )
    .unwrap();
    let args = ServeArgs {
        config: Some(path),
        publish_rate: Some(9),
        ..Default::default()
    };
    let c = args.resolve().unwrap();
    assert_eq!(c.listen, "127.0.0.1:9");
    assert_eq!(c.limits.max_connections, 5);
    assert_eq!(c.limits.publish_rate, 9);
    assert_eq!(c.limits.outbound_queue, 1024);
    assert!(c.roles.gateway && c.roles.api && c.roles.dispatcher);
}

#[test]
fn bad_settings_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sb.toml");
    std::fs::write(&path, "no_such_setting = 1\n").unwrap();
    assert!(
        ServeArgs {
            config: Some(path),
            ..Default::default()
        }
        .resolve()
        .is_err()
    );
    assert!(
        ServeArgs {
            roles: Some("gateway,brain".into()),
            ..Default::default()
        }
        .resolve()
        .is_err()
    );
    let hook = ServeArgs {
        webhook_url: Some("http://127.0.0.1:1".into()),
        ..Default::default()
    };
    assert!(hook.resolve().is_err());
}
