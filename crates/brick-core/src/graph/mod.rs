//! The graph: owns bricks, links their ports and moves bursts between them.
//!
//! This file holds the graph's types and lookups; adding and removing bricks is in
//! `bricks.rs`, linking ports in `links.rs`, commands from other threads in `handle.rs`,
//! running in `run.rs`, the DOT export in `dot.rs`.

use std::collections::HashMap;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
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
    /// Commands posted so far (bumped by [`GraphHandle::post`] after each send), and how
    /// many of them the graph has seen: a round looks at the channel only when they differ,
    /// because an empty channel's `try_recv` issues a full fence, which waits for every
    /// store of the burst before it (guest memory, owned by another core) to land.
    cmd_posted: Arc<AtomicU64>,
    cmd_seen: u64,
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
            cmd_posted: Arc::new(AtomicU64::new(0)),
            cmd_seen: 0,
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
        GraphHandle {
            tx: self.cmd_tx.clone(),
            posted: Arc::clone(&self.cmd_posted),
            waker: Arc::clone(&self.waker),
        }
    }

    /// How often bricks' [`tick`](Brick::tick) runs (default 100 ms).
    pub fn tick_interval(&self) -> Duration {
        self.tick_interval
    }

    /// Changes how often bricks' [`tick`](Brick::tick) runs.
    pub fn set_tick_interval(&mut self, d: Duration) {
        self.tick_interval = d;
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

mod bricks;
mod dot;
mod handle;
mod links;
mod run;

pub use dot::DOT_STYLE;
pub use handle::{Command, GraphHandle};
