//! Parsing `CLUSTER NODES`.

use std::net::SocketAddr;

use crate::error::TestkitError;

/// One node as `CLUSTER NODES` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterNode {
    /// The node id (40 hex digits).
    pub id: String,
    /// Its client address.
    pub addr: SocketAddr,
    /// Whether it is a master (else a replica).
    pub master: bool,
    /// The id of its master, for a replica.
    pub master_id: Option<String>,
    /// Whether the node is flagged `fail` or `fail?`.
    pub failing: bool,
    /// The slot ranges it serves (inclusive), for a master.
    pub slots: Vec<(u16, u16)>,
}

/// Parses `CLUSTER NODES`: `<id> <ip:port@bus[,hostname]> <flags> <master>
/// <ping> <pong> <epoch> <link> <slot>...`.
pub(super) fn parse_nodes(
    text: &str,
    asked: Option<SocketAddr>,
) -> Result<Vec<ClusterNode>, TestkitError> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let bad = || TestkitError::Protocol(format!("unreadable CLUSTER NODES line {line:?}"));
        let (Some(id), Some(addr), Some(flags), Some(master)) =
            (fields.first(), fields.get(1), fields.get(2), fields.get(3))
        else {
            return Err(bad());
        };
        let client = addr.split(['@', ',']).next().unwrap_or_default();
        let flags: Vec<&str> = flags.split(',').collect();
        let addr = match client.parse::<SocketAddr>() {
            Ok(addr) => addr,
            // A node alone in its cluster may not know its own address
            // (":7000@17000"): it is the node asked.
            Err(_) if flags.contains(&"myself") => match (asked, client.rsplit_once(':')) {
                (Some(asked), Some((_, port)))
                    if port.parse::<u16>().ok() == Some(asked.port()) =>
                {
                    asked
                }
                _ => continue,
            },
            // A node still handshaking has no address yet (":0@0").
            Err(_) => continue,
        };
        if flags.contains(&"handshake") || flags.contains(&"noaddr") {
            continue;
        }
        let mut slots = Vec::new();
        for s in fields.iter().skip(8) {
            if s.starts_with('[') {
                continue; // a slot being imported or migrated
            }
            let (a, b) = s.split_once('-').unwrap_or((s, s));
            let (Ok(a), Ok(b)) = (a.parse::<u16>(), b.parse::<u16>()) else {
                return Err(bad());
            };
            slots.push((a, b));
        }
        out.push(ClusterNode {
            id: (*id).to_owned(),
            addr,
            master: flags.contains(&"master"),
            master_id: (*master != "-").then(|| (*master).to_owned()),
            failing: flags.iter().any(|f| *f == "fail" || *f == "fail?"),
            slots,
        });
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn nodes_lines_parse() {
        let text = "07c3 127.0.0.1:30004@31004,host slave e7d1 0 1426238317239 4 connected\n\
                    e7d1 127.0.0.1:30001@31001 myself,master - 0 0 1 connected 0-5460 [5461->-abc]\n\
                    a1b2 :0@0 handshake - 0 0 0 disconnected\n";
        let nodes = parse_nodes(text, None).unwrap();
        assert_eq!(nodes.len(), 2);
        assert!(!nodes[0].master);
        assert_eq!(nodes[0].master_id.as_deref(), Some("e7d1"));
        assert_eq!(nodes[1].slots, vec![(0, 5460)]);
        assert!(parse_nodes("x 127.0.0.1:1@2 master - 0 0 1 connected 5-y", None).is_err());
        let alone = ":7000@17000 myself,master - 0 0 1 connected 0-16383";
        let asked: SocketAddr = "127.0.0.1:7000".parse().unwrap();
        let nodes = parse_nodes(&format!("a {alone}"), Some(asked)).unwrap();
        assert_eq!(nodes[0].addr, asked);
        assert_eq!(nodes[0].slots, vec![(0, 16383)]);
    }
}
