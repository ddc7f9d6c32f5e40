//! The underlay trace (Butterfly's `-t` on the physical side): every frame the underlay
//! NIC receives or sends, VXLAN and ARP/ND alike, recorded into a pcap file.
//!
//! Switched on, a [`Sniffer`] brick goes between each worker's underlay NIC and the brick
//! after it (its steer brick or its VTEP); switched off, it is taken out and the two are
//! linked again. Off, the graph is exactly as without the feature: no cost per packet.
//! Worker 0 writes the file asked; with several workers, worker `i` writes `PATH.w<i>`
//! (`mergecap` merges them by time).

use std::path::{Path, PathBuf};

use brick_core::bricks::{Sniffer, SnifferDirection};
use brick_core::{Brick, BrickId, GraphError, GraphHandle};

/// Why the underlay trace could not be switched.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// `--underlay none`: nothing to trace.
    #[error("underlay trace: there is no underlay (--underlay none)")]
    NoUnderlay,
    /// The pcap file could not be created.
    #[error("underlay trace {path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A worker's graph refused the change (nothing changed).
    #[error("underlay trace: {0}")]
    Graph(#[from] GraphError),
}

/// One worker's underlay: its graph, its NIC brick and the brick after it.
#[derive(Clone)]
pub struct UnderlayLink {
    /// The worker's graph.
    pub handle: GraphHandle,
    /// The underlay NIC brick.
    pub nic: BrickId,
    /// The brick linked to the NIC's west side (steer or VTEP).
    pub next: BrickId,
}

/// The underlay trace of every worker.
pub struct UnderlayTracer {
    links: Vec<UnderlayLink>,
    /// The file when none is named (`--underlay-trace-path`).
    default_path: PathBuf,
    /// While on: the file asked, and each worker's sniffer.
    on: Option<(PathBuf, Vec<BrickId>)>,
}

/// The file of worker `i` for a trace into `path`.
pub fn worker_path(path: &Path, i: usize) -> PathBuf {
    if i == 0 {
        path.to_path_buf()
    } else {
        let mut p = path.as_os_str().to_owned();
        p.push(format!(".w{i}"));
        PathBuf::from(p)
    }
}

impl UnderlayTracer {
    /// A tracer, off, for the workers' underlays (none with `--underlay none`), writing
    /// into `default_path` unless told otherwise.
    pub fn new(links: Vec<UnderlayLink>, default_path: PathBuf) -> UnderlayTracer {
        UnderlayTracer { links, default_path, on: None }
    }

    /// The file when none is named.
    pub fn default_path(&self) -> &Path {
        &self.default_path
    }

    /// The file being written, while on.
    pub fn path(&self) -> Option<&Path> {
        self.on.as_ref().map(|(p, _)| p.as_path())
    }

    /// Starts recording into `path` (created or truncated). Already on into `path`: nothing
    /// changes; into another file: that trace stops first. On failure nothing changes.
    pub fn start(&mut self, path: &Path) -> Result<(), TraceError> {
        if self.links.is_empty() {
            return Err(TraceError::NoUnderlay);
        }
        if self.path() == Some(path) {
            return Ok(());
        }
        // Every file first: a bad path changes nothing.
        let mut sniffers = Vec::with_capacity(self.links.len());
        for i in 0..self.links.len() {
            let p = worker_path(path, i);
            let s = Sniffer::to_file(&p, SnifferDirection::Both)
                .map_err(|source| TraceError::File { path: p, source })?;
            sniffers.push(s);
        }
        self.stop()?;
        let mut ids = Vec::with_capacity(self.links.len());
        for (link, s) in self.links.iter().zip(sniffers) {
            match insert(link, s) {
                Ok(id) => ids.push(id),
                Err(e) => {
                    for (link, id) in self.links.iter().zip(ids) {
                        let _ = take_out(link, id);
                    }
                    return Err(e);
                }
            }
        }
        self.on = Some((path.to_path_buf(), ids));
        Ok(())
    }

    /// Stops recording (the files are flushed and closed). Off already: nothing to do.
    pub fn stop(&mut self) -> Result<(), TraceError> {
        let Some((path, ids)) = self.on.take() else { return Ok(()) };
        let mut first_error = None;
        let mut removed = Vec::new();
        for (link, id) in self.links.iter().zip(ids) {
            match take_out(link, id) {
                Ok(b) => removed.extend(b),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        // Dropped here, off the data-plane threads: the last flush writes the files.
        drop(removed);
        match first_error {
            None => Ok(()),
            Some(e) => {
                tracing::warn!("underlay trace {}: stopping: {e}", path.display());
                Err(e)
            }
        }
    }
}

/// Puts `sniffer` between the worker's underlay NIC and the brick after it.
fn insert(link: &UnderlayLink, sniffer: Sniffer) -> Result<BrickId, TraceError> {
    let (nic, next) = (link.nic, link.next);
    let r = link.handle.exec(move |g| -> Result<BrickId, GraphError> {
        g.unlink_between(nic, next)?;
        let id = match g.add("sniff-underlay", sniffer) {
            Ok(id) => id,
            Err(e) => {
                g.link(nic, next)?;
                return Err(e);
            }
        };
        if let Err(e) = g.chain(&[nic, id, next]) {
            // Removing the sniffer unlinks what was linked of it.
            let _ = g.remove(id);
            g.link(nic, next)?;
            return Err(e);
        }
        Ok(id)
    })?;
    Ok(r?)
}

/// Takes the sniffer out and links the NIC to the brick after it again; returns the
/// sniffer, to be dropped by the caller.
fn take_out(link: &UnderlayLink, sniffer: BrickId) -> Result<Option<Box<dyn Brick>>, TraceError> {
    let (nic, next) = (link.nic, link.next);
    let r = link.handle.exec(move |g| -> Result<Option<Box<dyn Brick>>, GraphError> {
        let b = g.remove(sniffer).ok();
        g.link(nic, next)?;
        Ok(b)
    })?;
    Ok(r?)
}

#[cfg(test)]
mod tests {
    use super::worker_path;
    use std::path::Path;

    #[test]
    fn workers_after_the_first_write_suffixed_files() {
        assert_eq!(worker_path(Path::new("/tmp/u.pcap"), 0), Path::new("/tmp/u.pcap"));
        assert_eq!(worker_path(Path::new("/tmp/u.pcap"), 2), Path::new("/tmp/u.pcap.w2"));
    }
}
