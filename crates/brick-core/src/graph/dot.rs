//! The graph in Graphviz DOT.

use super::*;

impl Graph {
    /// The graph in Graphviz DOT: bricks with their type, ports and counters; links labelled
    /// with their port numbers.
    pub fn to_dot(&self) -> String {
        let mut s = format!("digraph \"{}\" {{\n", escape(&self.name));
        s.push_str(DOT_STYLE);
        self.write_dot_body(&mut s, "", "  ");
        s.push_str("}\n");
        s
    }

    /// The graph as a DOT `subgraph cluster_<id>` labelled with its name, its node ids
    /// prefixed with `<id>_`: several graphs (one per worker thread) then fit in one
    /// `digraph` that Graphviz draws side by side. `id` must be a DOT identifier
    /// (letters, digits, `_`).
    pub fn to_dot_cluster(&self, id: &str) -> String {
        let mut s = format!("  subgraph cluster_{id} {{\n    label=\"{}\";\n", escape(&self.name));
        self.write_dot_body(&mut s, &format!("{id}_"), "    ");
        s.push_str("  }\n");
        s
    }

    fn write_dot_body(&self, s: &mut String, prefix: &str, indent: &str) {
        use std::fmt::Write;
        for (i, node) in self.nodes.iter().enumerate() {
            let Some(node) = node else { continue };
            let st = &node.stats;
            let mut rows = vec![format!("{}", escape(&node.name)), format!("({})", node.brick.kind())];
            for side in Side::BOTH {
                let c = st.side(side);
                rows.push(format!(
                    "{} ports:{} in:{}p/{}B out:{}p/{}B",
                    side,
                    node.linked[side as usize].iter().filter(|l| **l).count(),
                    c.pkts_in.get(),
                    c.bytes_in.get(),
                    c.pkts_out.get(),
                    c.bytes_out.get()
                ));
            }
            for (reason, n) in st.drops().filter(|(_, n)| *n > 0) {
                rows.push(format!("drop {}: {}", escape(reason), n));
            }
            if let Some(cpp) = st.cycles_per_packet() {
                rows.push(format!("{cpp:.1} cycles/pkt"));
            }
            rows.extend(node.brick.describe().iter().map(|l| escape(l)));
            let _ = writeln!(s, "{indent}{prefix}n{i} [label=\"{{{}}}\"];", rows.join("|"));
        }
        for (i, node) in self.nodes.iter().enumerate() {
            let Some(node) = node else { continue };
            for (port, link) in node.links[Side::East as usize].iter().enumerate() {
                if let Some(l) = link {
                    let _ = writeln!(
                        s,
                        "{indent}{prefix}n{i} -> {prefix}n{} [dir=both, taillabel=\"{port}\", headlabel=\"{}\"];",
                        l.peer, l.peer_port
                    );
                }
            }
        }
    }
}

/// Graph attributes of every DOT export (after the `digraph` line).
pub const DOT_STYLE: &str = "  rankdir=LR;\n  node [shape=record, fontname=\"monospace\", fontsize=10];\n";

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '{' | '}' | '|' | '<' | '>' | '"' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
