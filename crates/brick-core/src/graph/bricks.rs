//! Adding and removing bricks, and keeping the list of sources (and their wake fds in
//! the wait set) in step.

use super::*;

impl Graph {
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
    pub(super) fn watch(&mut self, pos: usize, fd: RawFd) {
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
}
