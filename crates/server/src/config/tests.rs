//! Tests of the configuration: precedence of flags, file and defaults; refused settings.

use super::*;

#[test]
fn flags_win_over_file_and_defaults_fill_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sb.toml");
    std::fs::write(
        &path,
        "listen = \"127.0.0.1:9\"\nmax_connections = 5\npublish_rate = 7\n\
         http_header_timeout_ms = 1500\nmax_connections_per_ip = 3\n",
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
    assert_eq!(c.http.header_timeout, Duration::from_millis(1500));
    assert_eq!(c.http.max_connections_per_ip, 3);
    assert_eq!(c.tcp_max_connections_per_ip, 3);
    assert_eq!(c.http.max_body_bytes, c.limits.max_frame_bytes);
    assert_eq!(c.http.write_timeout, HttpLimits::default().write_timeout);
    assert_eq!(c.metrics_listen, None);
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
    for short in ["", "s", &"k".repeat(31)] {
        let hook = ServeArgs {
            webhook_url: Some("http://127.0.0.1:1".into()),
            webhook_secret: Some(short.into()),
            ..Default::default()
        };
        let err = hook
            .resolve()
            .expect_err("a short webhook secret is refused");
        assert!(err.0.contains("at least 32 bytes"), "{}", err.0);
    }
    let hook = ServeArgs {
        webhook_url: Some("http://127.0.0.1:1".into()),
        webhook_secret: Some("k".repeat(32)),
        ..Default::default()
    };
    assert!(hook.resolve().is_ok());
}

#[test]
fn abuse_limits_come_from_flags_and_http_publishing_follows_the_publish_rate() {
    let c = ServeArgs::default().resolve().unwrap();
    assert_eq!(c.limits.max_body_depth, 64);
    assert_eq!(c.limits.abuse.http_publish_rate, None);
    assert_eq!(c.limits.abuse.messages_per_day, 0);
    assert_eq!(c.poll_buffer_bytes, 4 << 20);
    let c = ServeArgs {
        http_publish_rate: Some(3),
        login_backoff_max_ms: Some(5_000),
        poll_sessions_per_user: Some(0),
        register_per_ip_per_min: Some(0),
        ..Default::default()
    }
    .resolve()
    .unwrap();
    assert_eq!(c.limits.abuse.http_publish_rate, Some(3));
    assert_eq!(c.limits.abuse.login_backoff_max, Duration::from_secs(5));
    assert_eq!(c.limits.abuse.poll_sessions_per_user, 1);
    assert_eq!(c.limits.abuse.register_per_ip_per_min, 0);
}

#[test]
fn origins_and_tls_settings_are_checked() {
    let resolve = |a: ServeArgs| a.resolve().map_err(|e| e.0);
    let e = resolve(ServeArgs {
        allowed_origins: Some("example.com".into()),
        ..Default::default()
    })
    .unwrap_err();
    assert!(e.contains("not an origin"), "{e}");
    let c = resolve(ServeArgs {
        allowed_origins: Some("*".into()),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(c.allowed_origins, Some(OriginPolicy::Any));
    let e = resolve(ServeArgs {
        tls_cert: Some("cert.pem".into()),
        ..Default::default()
    })
    .unwrap_err();
    assert!(e.contains("go together"), "{e}");
}

#[test]
fn durability_is_disk_unless_asked_and_only_for_the_embedded_backend() {
    use switchboard_backend_embedded::Durability;
    let resolve = |a: ServeArgs| a.resolve().map_err(|e| e.0);
    assert_eq!(
        resolve(ServeArgs::default()).unwrap().durability,
        Durability::Disk
    );
    let process = || ServeArgs {
        durability: Some("process".into()),
        ..Default::default()
    };
    assert_eq!(resolve(process()).unwrap().durability, Durability::Process);
    let bad = resolve(ServeArgs {
        durability: Some("fsync".into()),
        ..Default::default()
    })
    .unwrap_err();
    assert!(bad.contains("--durability"), "{bad}");
    let with_redis = resolve(ServeArgs {
        redis: Some("redis://127.0.0.1:1/".into()),
        ..process()
    })
    .unwrap_err();
    assert!(with_redis.contains("embedded backend"), "{with_redis}");
    let disk_with_redis = ServeArgs {
        redis: Some("redis://127.0.0.1:1/".into()),
        durability: Some("disk".into()),
        ..Default::default()
    };
    assert!(resolve(disk_with_redis).is_ok());
}

#[test]
fn the_index_cycle_defaults_to_four_seconds_and_is_capped_at_a_minute() {
    let resolve = |ms: Option<u64>| {
        ServeArgs {
            index_cycle_ms: ms,
            ..ServeArgs::default()
        }
        .resolve()
        .unwrap()
        .index_cycle
    };
    assert_eq!(resolve(None), Duration::from_secs(4));
    assert_eq!(resolve(Some(0)), Duration::ZERO);
    assert_eq!(resolve(Some(250)), Duration::from_millis(250));
    assert_eq!(resolve(Some(3_600_000)), Duration::from_secs(60));
}

#[test]
fn the_commit_delay_is_off_by_default_and_capped() {
    let resolve = |us: Option<u64>| {
        ServeArgs {
            commit_delay_us: us,
            ..ServeArgs::default()
        }
        .resolve()
        .unwrap()
        .commit_delay
    };
    assert_eq!(resolve(None), Duration::ZERO);
    assert_eq!(resolve(Some(1000)), Duration::from_millis(1));
    assert_eq!(resolve(Some(250)), Duration::from_micros(250));
    assert_eq!(resolve(Some(10_000_000)), Duration::from_millis(100));
}
