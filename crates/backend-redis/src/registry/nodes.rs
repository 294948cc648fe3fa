//! The live nodes and what they announced: each lease's value is its node's announcement.

use crate::Shared;
use crate::batch::Batch;
use switchboard_core::backend::{BackendError, NodeAnnouncement};

/// Live nodes with what they announced. The node id is the lease's (whatever the stored JSON
/// says); a lease whose value cannot be read (e.g. `null` from a node that announced nothing)
/// still counts, as an announcement naming the node only.
pub(crate) async fn live_nodes(s: &Shared) -> Result<Vec<NodeAnnouncement>, BackendError> {
    let mut c = redis::cmd("SMEMBERS");
    c.arg(s.keys.nodes());
    let mut nodes: Vec<String> = s.redis.query("listing nodes", &c).await?;
    if nodes.is_empty() {
        return Ok(Vec::new());
    }
    nodes.sort();
    let mut b = Batch::new();
    for n in &nodes {
        b.cmd("GET").arg(s.keys.node(n));
    }
    let leases: Vec<Option<String>> = s.redis.batch("reading node leases", &b).await?;
    Ok(nodes
        .into_iter()
        .zip(leases)
        .filter_map(|(n, lease)| Some(read_announcement(n, &lease?)))
        .collect())
}

/// A lease value as an announcement of `node_id`.
fn read_announcement(node_id: String, lease: &str) -> NodeAnnouncement {
    let announced = serde_json::from_str(lease).unwrap_or_default();
    NodeAnnouncement {
        node_id,
        ..announced
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_proto::Endpoints;

    #[test]
    fn announcements_read_what_earlier_nodes_stored() {
        // As written before the struct (a JSON object built field by field).
        let stored = r#"{"endpoints":{"poll":"http://h:1/v1/poll","tcp":null,"ws":"ws://h:1/v1/ws"},
            "gateway":true,"max_connections":5000,"node_id":"n_1","public_url":"http://h:1","weight":2}"#;
        let a = read_announcement("n_1".into(), stored);
        assert_eq!(
            a,
            NodeAnnouncement {
                node_id: "n_1".into(),
                public_url: Some("http://h:1".into()),
                endpoints: Endpoints {
                    ws: Some("ws://h:1/v1/ws".into()),
                    poll: Some("http://h:1/v1/poll".into()),
                    tcp: None,
                },
                weight: 2,
                max_connections: 5000,
                gateway: true,
            }
        );
        // And back: the same fields, so earlier nodes read this one.
        let again: serde_json::Value =
            serde_json::from_str(&serde_json::to_string(&a).unwrap()).unwrap();
        assert_eq!(
            again,
            serde_json::from_str::<serde_json::Value>(stored).unwrap()
        );
        // No announce data (`null`), or another node id inside: the lease's node, nothing else.
        assert_eq!(
            read_announcement("n_2".into(), "null"),
            NodeAnnouncement::new("n_2")
        );
        let other = read_announcement("n_3".into(), r#"{"node_id":"x","gateway":true}"#);
        assert_eq!((other.node_id.as_str(), other.gateway), ("n_3", true));
    }
}
