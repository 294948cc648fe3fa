//! What a node's listeners need from the system: a listening socket with a large backlog, and
//! as many open files as the system lets the process have.

/// The listen backlog asked for (the kernel caps it at `net.core.somaxconn`). The standard
/// library's 128 overflowed under a reconnect storm: connects then wait for SYN retransmits.
pub const LISTEN_BACKLOG: u32 = 4096;

/// Binds a listening socket to `addr` (`host:port`, the first address that binds wins) with
/// [`LISTEN_BACKLOG`] and `SO_REUSEADDR`, as the standard library's `bind` would with 128.
pub async fn bind_listener(addr: &str) -> std::io::Result<tokio::net::TcpListener> {
    let mut last = None;
    for a in tokio::net::lookup_host(addr).await? {
        let socket = if a.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        match socket.bind(a).and_then(|()| socket.listen(LISTEN_BACKLOG)) {
            Ok(listener) => return Ok(listener),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{addr} resolves to no address"),
        )
    }))
}

/// Raises the soft limit of open files to the hard limit (every connection and every socket
/// waiting for its refusal is one), and logs both. On failure it logs and goes on with what
/// the system gave.
pub fn raise_open_files_limit() {
    let before = match rlimit::getrlimit(rlimit::Resource::NOFILE) {
        Ok(limits) => limits,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the open-files limit");
            return;
        }
    };
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(soft) => tracing::info!(
            soft_before = before.0,
            soft,
            hard = before.1,
            "open-files limit (RLIMIT_NOFILE)"
        ),
        Err(e) => tracing::warn!(
            error = %e,
            soft = before.0,
            hard = before.1,
            "cannot raise the open-files limit (RLIMIT_NOFILE)"
        ),
    }
}

/// Reloads the TLS certificate and key on every SIGHUP: new handshakes on both listeners get
/// the new ones, open connections keep theirs. A failed reload keeps the old pair and logs why.
pub fn reload_on_sighup(files: std::sync::Arc<switchboard_gateway::tls::TlsFiles>) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::warn!("no SIGHUP handler: the TLS certificate cannot be reloaded");
        return;
    };
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            match files.reload() {
                Ok(()) => tracing::info!("SIGHUP: TLS certificate and key reloaded"),
                Err(e) => {
                    tracing::error!(error = %e, "SIGHUP: TLS reload failed; the old certificate stays")
                }
            }
        }
    });
}
