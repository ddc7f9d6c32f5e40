//! Commands from other threads: [`GraphHandle`] queues closures that the graph runs
//! between two poll rounds.

use super::*;

/// A control-thread request, run by the graph between two poll rounds.
pub type Command = Box<dyn FnOnce(&mut Graph) + Send>;

/// Sends commands to a graph that runs on another thread. Cheap to clone.
#[derive(Clone)]
pub struct GraphHandle {
    pub(super) tx: Sender<Command>,
    /// Bumped after each send: the graph reads it instead of polling the channel.
    pub(super) posted: Arc<AtomicU64>,
    pub(super) waker: Arc<Waker>,
}

impl GraphHandle {
    /// Queues `f` to run on the graph's thread, without waiting.
    pub fn post(&self, f: impl FnOnce(&mut Graph) + Send + 'static) -> Result<(), GraphError> {
        self.tx.send(Box::new(f)).map_err(|_| GraphError::Disconnected)?;
        // Release: the command is in the channel before the graph sees the count move.
        self.posted.fetch_add(1, Ordering::Release);
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
