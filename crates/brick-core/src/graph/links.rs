//! Wiring the graph: linking and unlinking bricks' ports, and finding a port's peer.

use super::*;

impl Graph {
    /// Links the east side of `west` to the west side of `east`, on the first free port of
    /// each. Returns the two port numbers.
    pub fn link(&mut self, west: BrickId, east: BrickId) -> Result<(PortId, PortId), GraphError> {
        self.link_ports(west, None, east, None)
    }

    /// Links the east side of `west` (on `west_port`, or the first free one) to the west side
    /// of `east` (on `east_port`, or the first free one).
    pub fn link_ports(
        &mut self,
        west: BrickId,
        west_port: Option<PortId>,
        east: BrickId,
        east_port: Option<PortId>,
    ) -> Result<(PortId, PortId), GraphError> {
        if west == east {
            return Err(GraphError::SelfLink(self.node(west)?.name.clone()));
        }
        let wp = Self::pick_port(self.node(west)?, Side::East, west_port)?;
        let ep = Self::pick_port(self.node(east)?, Side::West, east_port)?;
        self.node_mut(west)?.set_link(Side::East, wp, Some(Link { peer: east.index, peer_port: ep }));
        self.node_mut(east)?.set_link(Side::West, ep, Some(Link { peer: west.index, peer_port: wp }));
        self.node_mut(west)?.brick.on_link(Side::East, wp);
        self.node_mut(east)?.brick.on_link(Side::West, ep);
        Ok((wp, ep))
    }

    fn pick_port(node: &Node, side: Side, wanted: Option<PortId>) -> Result<PortId, GraphError> {
        match wanted {
            None => node.free_port(side),
            Some(p) => {
                // As free_port: a port table never outgrows PortId (remove walks it by PortId).
                let max = node.brick.max_ports(side).min(PortId::MAX as usize);
                if p as usize >= max {
                    return Err(GraphError::PortsExhausted { brick: node.name.clone(), side, max });
                }
                if node.link_at(side, p).is_some() {
                    return Err(GraphError::PortInUse { brick: node.name.clone(), side, port: p });
                }
                Ok(p)
            }
        }
    }

    /// Links every brick of `ids` to the next one, west to east.
    pub fn chain(&mut self, ids: &[BrickId]) -> Result<(), GraphError> {
        for pair in ids.windows(2) {
            self.link(pair[0], pair[1])?;
        }
        Ok(())
    }

    /// Removes the link on `port` of `side` of `id` (both ends). Other ports keep their
    /// numbers and stay reachable.
    pub fn unlink(&mut self, id: BrickId, side: Side, port: PortId) -> Result<(), GraphError> {
        let node = self.node(id)?;
        let link = node.link_at(side, port).ok_or_else(|| GraphError::NotLinked {
            brick: node.name.clone(),
            side,
            port,
        })?;
        self.node_mut(id)?.set_link(side, port, None);
        let peer_side = side.opposite();
        if let Some(Some(peer)) = self.nodes.get_mut(link.peer as usize) {
            peer.set_link(peer_side, link.peer_port, None);
            peer.brick.on_unlink(peer_side, link.peer_port);
        }
        self.node_mut(id)?.brick.on_unlink(side, port);
        Ok(())
    }

    /// Removes every link between the east side of `west` and the west side of `east`;
    /// returns how many there were.
    pub fn unlink_between(&mut self, west: BrickId, east: BrickId) -> Result<usize, GraphError> {
        self.node(east)?;
        let ports: Vec<PortId> = self.node(west)?.links[Side::East as usize]
            .iter()
            .enumerate()
            .filter(|(_, l)| matches!(l, Some(l) if l.peer == east.index))
            .map(|(p, _)| p as PortId)
            .collect();
        for &p in &ports {
            self.unlink(west, Side::East, p)?;
        }
        Ok(ports.len())
    }

    /// The brick and port linked to `port` of `side` of `id`, if any.
    pub fn peer(
        &self,
        id: BrickId,
        side: Side,
        port: PortId,
    ) -> Result<Option<(BrickId, PortId)>, GraphError> {
        Ok(self.node(id)?.link_at(side, port).map(|l| {
            let generation = self.nodes[l.peer as usize].as_ref().map_or(0, |n| n.generation);
            (BrickId { index: l.peer, generation }, l.peer_port)
        }))
    }
}
