//! The graph: owns bricks, links their ports and moves bursts between them.

use std::collections::HashMap;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam::channel::{self, Receiver, Sender};

use crate::brick::{as_any, as_any_mut, Brick, Output, PortId, Side};
use crate::burst::{Burst, BURST_SIZE};
use crate::stats::{BrickStats, GraphDrop};
use crate::time::{cycles, Timestamp};
use crate::waker::{EpollSet, Waker};

/// Longest path a burst may take in one poll round; beyond it the graph has a loop and the
/// packets are dropped ("graph loop") instead of recursing forever.
pub const MAX_DEPTH: usize = 64;

/// One `process` call in this many is timed for the cycles-per-packet counter.
pub const CYCLE_SAMPLING: u64 = 8;

/// Identifies a brick in its graph. Ids are never reused for another brick: removing a brick
/// makes its id stale, and stale ids are refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BrickId {
    index: u32,
    generation: u32,
}

impl std::fmt::Display for BrickId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "#{}.{}", self.index, self.generation)
    }
}

/// What went wrong with a graph operation. The graph is left unchanged.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum GraphError {
    /// The id names no brick (never did, or the brick was removed).
    #[error("no brick with id {0}")]
    UnknownBrick(BrickId),
    /// No brick has this name.
    #[error("no brick named {0:?}")]
    UnknownName(String),
    /// Names are unique within a graph.
    #[error("a brick named {0:?} already exists")]
    NameTaken(String),
    /// The brick accepts no more ports on that side.
    #[error("brick {brick:?} accepts at most {max} port(s) on its {side} side")]
    PortsExhausted {
        /// Brick name.
        brick: String,
        /// Side.
        side: Side,
        /// Its limit.
        max: usize,
    },
    /// The requested port is already linked.
    #[error("port {port} on the {side} side of {brick:?} is already linked")]
    PortInUse {
        /// Brick name.
        brick: String,
        /// Side.
        side: Side,
        /// Port.
        port: PortId,
    },
    /// The port has no link.
    #[error("port {port} on the {side} side of {brick:?} is not linked")]
    NotLinked {
        /// Brick name.
        brick: String,
        /// Side.
        side: Side,
        /// Port.
        port: PortId,
    },
    /// A brick cannot be linked to itself.
    #[error("cannot link brick {0:?} to itself")]
    SelfLink(String),
    /// The brick is not of the type asked for.
    #[error("brick {0:?} is not of the requested type")]
    WrongType(String),
    /// The graph is gone (its thread stopped).
    #[error("the graph is no longer running")]
    Disconnected,
    /// The graph did not run the command in time.
    #[error("the graph did not answer within {0:?}")]
    Timeout(Duration),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Link {
    peer: u32,
    peer_port: PortId,
}

struct Node {
    name: String,
    generation: u32,
    brick: Box<dyn Brick>,
    links: [Vec<Option<Link>>; 2],
    linked: [Vec<bool>; 2],
    slots: [Vec<Burst>; 2],
    dirty: Vec<(Side, PortId)>,
    stats: Arc<BrickStats>,
}

impl Node {
    fn set_link(&mut self, side: Side, port: PortId, link: Option<Link>) {
        let s = side as usize;
        let p = port as usize;
        if self.links[s].len() <= p {
            self.links[s].resize(p + 1, None);
            self.linked[s].resize(p + 1, false);
            self.slots[s].resize_with(p + 1, Burst::new);
        }
        self.links[s][p] = link;
        self.linked[s][p] = link.is_some();
        if link.is_none() {
            self.slots[s][p].clear();
            // Trailing holes are trimmed so port_count() reflects the highest linked port.
            while self.links[s].last() == Some(&None) {
                self.links[s].pop();
                self.linked[s].pop();
                self.slots[s].pop();
            }
        }
    }

    fn free_port(&self, side: Side) -> Result<PortId, GraphError> {
        let s = side as usize;
        let max = self.brick.max_ports(side).min(PortId::MAX as usize);
        let candidate = self.links[s].iter().position(Option::is_none).unwrap_or(self.links[s].len());
        if candidate >= max {
            return Err(GraphError::PortsExhausted { brick: self.name.clone(), side, max });
        }
        Ok(candidate as PortId)
    }

    fn link_at(&self, side: Side, port: PortId) -> Option<Link> {
        self.links[side as usize].get(port as usize).copied().flatten()
    }
}

/// A control-thread request, run by the graph between two poll rounds.
pub type Command = Box<dyn FnOnce(&mut Graph) + Send>;

/// Sends commands to a graph that runs on another thread. Cheap to clone.
#[derive(Clone)]
pub struct GraphHandle {
    tx: Sender<Command>,
    waker: Arc<Waker>,
}

impl GraphHandle {
    /// Queues `f` to run on the graph's thread, without waiting.
    pub fn post(&self, f: impl FnOnce(&mut Graph) + Send + 'static) -> Result<(), GraphError> {
        self.tx.send(Box::new(f)).map_err(|_| GraphError::Disconnected)?;
        self.waker.wake();
        Ok(())
    }

    /// Runs `f` on the graph's thread between two poll rounds and returns its result.
    /// Traffic on paths that `f` does not touch keeps flowing before and after.
    pub fn exec<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Graph) -> R + Send + 'static,
    ) -> Result<R, GraphError> {
        self.exec_timeout(Duration::from_secs(30), f)
    }

    /// [`exec`](Self::exec) with a deadline: if `f` has not started when `timeout` expires,
    /// it never will (the caller gets [`GraphError::Timeout`] and may undo its own side of
    /// the change knowing the graph is untouched); if it has started, the call waits for it
    /// to finish and returns its result.
    pub fn exec_timeout<R: Send + 'static>(
        &self,
        timeout: Duration,
        f: impl FnOnce(&mut Graph) -> R + Send + 'static,
    ) -> Result<R, GraphError> {
        const PENDING: u8 = 0;
        const STARTED: u8 = 1;
        const ABANDONED: u8 = 2;
        let state = Arc::new(AtomicU8::new(PENDING));
        let (tx, rx) = channel::bounded(1);
        let st = Arc::clone(&state);
        self.post(move |g| {
            if st.compare_exchange(PENDING, STARTED, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                let _ = tx.send(f(g));
            }
        })?;
        match rx.recv_timeout(timeout) {
            Ok(r) => Ok(r),
            Err(channel::RecvTimeoutError::Disconnected) => Err(GraphError::Disconnected),
            Err(channel::RecvTimeoutError::Timeout) => {
                if state.compare_exchange(PENDING, ABANDONED, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                    return Err(GraphError::Timeout(timeout));
                }
                // Too late to call it off: it is running; its result is on the way.
                rx.recv().map_err(|_| GraphError::Disconnected)
            }
        }
    }
}

/// A graph of bricks.
///
/// Scheduling is run-to-completion, depth first: a source is polled, then each burst it
/// emitted is handed to the linked brick, whose output is handed on in turn, before the next
/// source is polled. A burst therefore crosses the whole graph while its packets are hot in
/// cache, and the graph (not the bricks) decides where packets go. See docs/architecture.md.
pub struct Graph {
    name: String,
    nodes: Vec<Option<Node>>,
    generations: Vec<u32>,
    by_name: HashMap<String, BrickId>,
    sources: Vec<u32>,
    cmd_tx: Sender<Command>,
    cmd_rx: Receiver<Command>,
    waker: Arc<Waker>,
    tick_interval: Duration,
    last_tick: Timestamp,
    now: Timestamp,
    spares: Vec<Burst>,
    /// The epoll set of the graph's doorbell and the sources' wake fds (`None` until first
    /// needed, or if the kernel refused one: then the graph polls every source and naps).
    /// Kept up to date as sources come and go (one `epoll_ctl` each): rebuilding it per
    /// change made removing N sources cost N² registrations.
    wait_set: Option<EpollSet>,
    events: Vec<libc::epoll_event>,
    /// Whether the wait set was built yet (it is built the first time it is needed).
    wait_set_built: bool,
    /// Sources without a wake fd.
    no_fd_sources: usize,
    /// Sources whose wake fd is in the wait set.
    fd_sources: usize,
    /// Node index → position in `sources` (`NOT_SOURCE` for other nodes); the wait set
    /// reports sources by node index, which stays put when other sources go.
    pos_of: Vec<u32>,
    /// Per source (same order as `sources`): its wake fd is in the wait set.
    watched: Vec<bool>,
    /// Per source: its wake fd was reported ready by the last wait or scan.
    ready: Vec<bool>,
    /// Per source: it found work the last time it was polled.
    hot: Vec<bool>,
    /// Per source: its last poll asked to be polled again soon ([`Output::retry_soon`]).
    retry: Vec<bool>,
    /// `ready` comes from a wait or scan not yet used by [`Graph::poll_ready`].
    readiness_fresh: bool,
}

/// With at least this many sources that have a wake fd, a busy round asks the kernel which
/// are ready (one `epoll_wait`) instead of polling each (often one system call per source).
const SCAN_MIN_FD_SOURCES: usize = 4;
/// Event data of the graph's own doorbell in the wait set (sources use their node index).
const DOORBELL: u64 = u64::MAX;
/// `pos_of` entry of a node that is not a source.
const NOT_SOURCE: u32 = u32::MAX;

impl Graph {
    /// An empty graph.
    pub fn new(name: impl Into<String>) -> Self {
        let (cmd_tx, cmd_rx) = channel::unbounded();
        Graph {
            name: name.into(),
            nodes: Vec::new(),
            generations: Vec::new(),
            by_name: HashMap::new(),
            sources: Vec::new(),
            cmd_tx,
            cmd_rx,
            waker: Arc::new(Waker::new().expect("eventfd")),
            tick_interval: Duration::from_millis(100),
            last_tick: Timestamp::now(),
            now: Timestamp::now(),
            spares: Vec::new(),
            wait_set: None,
            events: Vec::new(),
            wait_set_built: false,
            no_fd_sources: 0,
            fd_sources: 0,
            pos_of: Vec::new(),
            watched: Vec::new(),
            ready: Vec::new(),
            hot: Vec::new(),
            retry: Vec::new(),
            readiness_fresh: false,
        }
    }

    /// The graph's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A handle to send commands from other threads.
    pub fn handle(&self) -> GraphHandle {
        GraphHandle { tx: self.cmd_tx.clone(), waker: Arc::clone(&self.waker) }
    }

    /// How often bricks' [`tick`](Brick::tick) runs (default 100 ms).
    pub fn tick_interval(&self) -> Duration {
        self.tick_interval
    }

    /// Changes how often bricks' [`tick`](Brick::tick) runs.
    pub fn set_tick_interval(&mut self, d: Duration) {
        self.tick_interval = d;
    }

    /// Adds a brick under a unique name.
    pub fn add(&mut self, name: impl Into<String>, brick: impl Brick) -> Result<BrickId, GraphError> {
        self.add_boxed(name, Box::new(brick))
    }

    /// Adds an already boxed brick under a unique name.
    pub fn add_boxed(
        &mut self,
        name: impl Into<String>,
        brick: Box<dyn Brick>,
    ) -> Result<BrickId, GraphError> {
        let name = name.into();
        if self.by_name.contains_key(&name) {
            return Err(GraphError::NameTaken(name));
        }
        let index = match self.nodes.iter().position(Option::is_none) {
            Some(i) => i,
            None => {
                self.nodes.push(None);
                self.generations.push(0);
                self.nodes.len() - 1
            }
        };
        let generation = self.generations[index];
        let stats = Arc::new(BrickStats::new(brick.drop_reasons()));
        let source = brick.is_source();
        self.nodes[index] = Some(Node {
            name: name.clone(),
            generation,
            brick,
            links: Default::default(),
            linked: Default::default(),
            slots: Default::default(),
            dirty: Vec::with_capacity(8),
            stats,
        });
        let id = BrickId { index: index as u32, generation };
        self.by_name.insert(name, id);
        if source {
            self.add_source(index as u32);
        }
        Ok(id)
    }

    /// Starts polling node `index` as a source: it is polled in the next round (hot), and
    /// its wake fd joins the wait set if the set is built.
    fn add_source(&mut self, index: u32) {
        let pos = self.sources.len();
        self.sources.push(index);
        if self.pos_of.len() <= index as usize {
            self.pos_of.resize(index as usize + 1, NOT_SOURCE);
        }
        self.pos_of[index as usize] = pos as u32;
        self.ready.push(false);
        self.hot.push(true);
        self.retry.push(false);
        self.watched.push(false);
        let fd = self.nodes[index as usize].as_ref().and_then(|n| n.brick.wake_fd());
        match fd {
            None => self.no_fd_sources += 1,
            Some(fd) => self.watch(pos, fd),
        }
        self.readiness_fresh = false;
    }

    /// Puts source `pos`'s wake fd in the wait set, if there is one. A fd that cannot be
    /// watched (shared with another source, say) leaves the source polled every round; it
    /// still counts as having a wake fd for sleeping, since the fd wakes the graph through
    /// its other watcher.
    fn watch(&mut self, pos: usize, fd: RawFd) {
        let Some(set) = &self.wait_set else { return };
        if set.add(fd, self.sources[pos] as u64).is_ok() {
            self.watched[pos] = true;
            self.fd_sources += 1;
        }
    }

    /// Stops polling node `index` (still in `nodes`, so its wake fd is still open).
    fn remove_source(&mut self, index: u32) {
        let Some(&pos) = self.pos_of.get(index as usize).filter(|&&p| p != NOT_SOURCE) else { return };
        let pos = pos as usize;
        let fd = self.nodes[index as usize].as_ref().and_then(|n| n.brick.wake_fd());
        let was_watched = self.watched[pos];
        match (fd, &self.wait_set) {
            (None, _) => self.no_fd_sources -= 1,
            (Some(fd), Some(set)) if was_watched => {
                let _ = set.remove(fd);
                self.fd_sources -= 1;
            }
            _ => {}
        }
        self.sources.remove(pos);
        self.ready.remove(pos);
        self.hot.remove(pos);
        self.retry.remove(pos);
        self.watched.remove(pos);
        self.pos_of[index as usize] = NOT_SOURCE;
        for (p, &i) in self.sources.iter().enumerate().skip(pos) {
            self.pos_of[i as usize] = p as u32;
        }
        if was_watched {
            // A source that shared this fd may be watchable now.
            for p in 0..self.sources.len() {
                if !self.watched[p] {
                    if let Some(fd) =
                        self.nodes[self.sources[p] as usize].as_ref().and_then(|n| n.brick.wake_fd())
                    {
                        self.watch(p, fd);
                    }
                }
            }
        }
        self.readiness_fresh = false;
    }

    /// Removes a brick, unlinking every port first (peers are told through
    /// [`Brick::on_unlink`]), and gives it back.
    pub fn remove(&mut self, id: BrickId) -> Result<Box<dyn Brick>, GraphError> {
        self.node(id)?;
        for side in Side::BOTH {
            let ports = self.node(id)?.links[side as usize].len();
            for port in (0..ports).filter_map(|p| PortId::try_from(p).ok()) {
                if self.node(id)?.link_at(side, port).is_some() {
                    self.unlink(id, side, port)?;
                }
            }
        }
        let index = id.index as usize;
        self.remove_source(id.index);
        let node = self.nodes[index].take().ok_or(GraphError::UnknownBrick(id))?;
        self.generations[index] = self.generations[index].wrapping_add(1);
        self.by_name.remove(&node.name);
        Ok(node.brick)
    }

    fn node(&self, id: BrickId) -> Result<&Node, GraphError> {
        match self.nodes.get(id.index as usize) {
            Some(Some(n)) if n.generation == id.generation => Ok(n),
            _ => Err(GraphError::UnknownBrick(id)),
        }
    }

    fn node_mut(&mut self, id: BrickId) -> Result<&mut Node, GraphError> {
        match self.nodes.get_mut(id.index as usize) {
            Some(Some(n)) if n.generation == id.generation => Ok(n),
            _ => Err(GraphError::UnknownBrick(id)),
        }
    }

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

    /// The id of the brick called `name`.
    pub fn id_of(&self, name: &str) -> Result<BrickId, GraphError> {
        self.by_name.get(name).copied().ok_or_else(|| GraphError::UnknownName(name.to_string()))
    }

    /// The name of a brick.
    pub fn name_of(&self, id: BrickId) -> Result<&str, GraphError> {
        Ok(&self.node(id)?.name)
    }

    /// Every brick id, in insertion-slot order.
    pub fn ids(&self) -> Vec<BrickId> {
        self.nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| n.as_ref().map(|n| BrickId { index: i as u32, generation: n.generation }))
            .collect()
    }

    /// Number of bricks.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// Whether the graph has no brick.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// The counters of a brick; the `Arc` can be read from any thread.
    pub fn stats(&self, id: BrickId) -> Result<Arc<BrickStats>, GraphError> {
        Ok(Arc::clone(&self.node(id)?.stats))
    }

    /// The brick `id` as its concrete type.
    pub fn brick<T: Brick>(&self, id: BrickId) -> Result<&T, GraphError> {
        let node = self.node(id)?;
        as_any(node.brick.as_ref())
            .downcast_ref::<T>()
            .ok_or_else(|| GraphError::WrongType(node.name.clone()))
    }

    /// The brick `id` as its concrete type, writable (for live reconfiguration).
    pub fn brick_mut<T: Brick>(&mut self, id: BrickId) -> Result<&mut T, GraphError> {
        let node = self.node_mut(id)?;
        let name = node.name.clone();
        as_any_mut(node.brick.as_mut()).downcast_mut::<T>().ok_or(GraphError::WrongType(name))
    }

    /// The brick `id` as a trait object.
    pub fn brick_dyn(&self, id: BrickId) -> Result<&dyn Brick, GraphError> {
        Ok(self.node(id)?.brick.as_ref())
    }
}

mod dot;
mod run;

pub use dot::DOT_STYLE;
