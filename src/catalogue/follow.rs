//! Following the writes of other processes on a database several nodes
//! share: each node's index, statistics and caches converge with what any
//! node commits. The store says what changed since the node's mark (see
//! [`crate::store::LogMark`]); this applies it as the node's own writes are
//! applied, under the writer's lock, so that the two never interleave.

use super::Catalogue;
use crate::model::{SiteId, SiteStats};
use crate::store::{LogMark, StoreError, Writes};
use serde::Serialize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

/// How long a follower waits for a wake-up before it looks anyway: a
/// notification lost with its connection delays a change by this at most.
const LOOK_EVERY: Duration = Duration::from_millis(500);

/// A node's place in the shared log.
pub(super) struct Following {
    mark: Mutex<LogMark>,
    state: Mutex<FollowState>,
}

#[derive(Debug, Clone)]
struct FollowState {
    applied_seq: i64,
    /// When the snapshot of the last catch-up was taken: everything
    /// committed before then is applied.
    caught_up_at: Instant,
    listening: bool,
}

/// How far a node is behind its database, for `/healthz`.
#[derive(Debug, Clone, Serialize)]
pub struct FollowStatus {
    /// The newest change log entry this node has applied.
    pub applied_seq: i64,
    /// The newest entry in the database.
    pub head_seq: i64,
    /// 0 when every entry is applied; otherwise how long ago the node last
    /// caught up.
    pub lag_ms: u64,
    /// Whether the node is listening for commits (it still looks every
    /// half second if not, and reconnects).
    pub listening: bool,
}

impl Following {
    pub(super) fn new(mark: LogMark, head: i64) -> Self {
        Self {
            mark: Mutex::new(mark),
            state: Mutex::new(FollowState {
                applied_seq: head,
                caught_up_at: Instant::now(),
                listening: false,
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, FollowState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Stops the follower when dropped.
pub struct FollowHandle {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for FollowHandle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Catalogue {
    /// Whether other processes write this catalogue's database too, so that
    /// it must follow them.
    pub fn is_shared(&self) -> bool {
        self.following.is_some()
    }

    /// Applies what others committed since this node last looked: the sites
    /// they wrote and the statistics of the sites they observed. Returns how
    /// many log entries were new. A catalogue that is not shared has none.
    pub fn catch_up(&self) -> Result<usize, StoreError> {
        if self.following.is_none() {
            return Ok(0);
        }
        let store = self.store();
        self.catch_up_with(&**store)
    }

    /// [`Catalogue::catch_up`] by a caller that holds the writer: a write
    /// that reads the index (an import matching observations to sites)
    /// first applies what others committed before it.
    pub(super) fn catch_up_with(&self, store: &dyn Writes) -> Result<usize, StoreError> {
        let Some(following) = &self.following else {
            return Ok(0);
        };
        let started = Instant::now();
        let mut mark = following
            .mark
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut next = mark.clone();
        let news = store.news_since(&mut next)?;
        if !news.sites.is_empty() {
            self.publish(news.sites);
        }
        if !news.stats.is_empty() {
            let mut stats: SiteStats = (**self.stats.load()).clone();
            let observed: Vec<SiteId> = news.stats.iter().map(|(id, _)| id.clone()).collect();
            for (id, s) in news.stats {
                stats.insert(id, s);
            }
            self.set_stats(&observed, stats);
        }
        *mark = next;
        let mut state = following.state();
        state.applied_seq = state.applied_seq.max(news.newest_seq.unwrap_or(0));
        state.caught_up_at = started;
        if news.entries > 0 {
            tracing::debug!(entries = news.entries, "caught up with other nodes");
        }
        Ok(news.entries)
    }

    /// How far this node is behind the database; `None` if it is the only
    /// writer. Asks the database for its newest entry.
    pub fn follow_status(&self) -> Option<Result<FollowStatus, StoreError>> {
        let following = self.following.as_ref()?;
        let head = match self.reader().and_then(|r| r.log_head()) {
            Ok(h) => h,
            Err(e) => return Some(Err(e)),
        };
        let state = following.state().clone();
        let lag_ms = if state.applied_seq >= head {
            0
        } else {
            state.caught_up_at.elapsed().as_millis() as u64
        };
        Some(Ok(FollowStatus {
            applied_seq: state.applied_seq,
            head_seq: head,
            lag_ms,
            listening: state.listening,
        }))
    }

    /// Where reads go when not to the primary, and how far behind it is.
    pub fn read_replica(&self) -> Option<Result<crate::store::ReplicaState, StoreError>> {
        self.backend.read_replica()
    }

    /// Starts following the other writers of a shared database on a thread
    /// of its own: woken by their commits, looking every half second anyway,
    /// and reading what it missed after every reconnection. `None` when the
    /// catalogue is not shared.
    pub fn follow(self: &Arc<Self>) -> Option<FollowHandle> {
        self.following.as_ref()?;
        let stop = Arc::new(AtomicBool::new(false));
        let (weak, stopping) = (Arc::downgrade(self), stop.clone());
        let thread = std::thread::Builder::new()
            .name("follow".into())
            .spawn(move || follow_loop(&weak, &stopping))
            .ok()?;
        Some(FollowHandle {
            stop,
            thread: Some(thread),
        })
    }
}

fn follow_loop(catalogue: &Weak<Catalogue>, stop: &AtomicBool) {
    let mut listener = None;
    while !stop.load(Ordering::Relaxed) {
        let Some(cat) = catalogue.upgrade() else {
            return;
        };
        let Some(following) = cat.following.as_ref() else {
            return;
        };
        if listener.is_none() {
            match cat.backend.listen() {
                Some(Ok(l)) => listener = Some(l),
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "cannot listen for other nodes' commits; looking every half second");
                }
                None => return,
            }
            following.state().listening = listener.is_some();
        }
        // A look after each wake-up, each timeout and each reconnection.
        if let Err(e) = cat.catch_up() {
            tracing::warn!(error = %e, "could not read other nodes' changes; trying again");
        }
        drop(cat);
        match listener.as_mut() {
            Some(l) => {
                if let Err(e) = l.wait(LOOK_EVERY) {
                    tracing::warn!(error = %e, "lost the connection that listens for commits");
                    listener = None;
                    if let Some(cat) = catalogue.upgrade()
                        && let Some(f) = cat.following.as_ref()
                    {
                        f.state().listening = false;
                    }
                }
            }
            // Listening is tried again at the next turn.
            None => std::thread::sleep(LOOK_EVERY),
        }
    }
}
