//! Sites by when they were last observed, so that "not observed since" and
//! "observed since" are answered from the sites that match rather than by a
//! pass over the catalogue. Persistent sets: a batch changes a copy in time
//! proportional to the sites it observed, and readers keep their snapshot.

use crate::index::SiteIndex;
use crate::model::SiteStats;
use crate::model::{Site, SiteId, Timestamp};
use arc_swap::ArcSwapOption;
use imbl::OrdSet;
use std::ops::Bound;
use std::sync::{Arc, Mutex, PoisonError};

/// Beyond this many matching sites a page is found faster by walking the
/// catalogue in id order, where matches are then at least this dense.
pub const DENSE: usize = 100_000;

/// Every site with observations, by its last observation time, and the live
/// sites never observed.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    by_time: OrdSet<(Timestamp, SiteId)>,
    never: OrdSet<SiteId>,
}

impl Observed {
    pub fn new(stats: &SiteStats, index: &SiteIndex) -> Self {
        let mut by_time: Vec<(Timestamp, SiteId)> = stats
            .iter()
            .map(|(id, s)| (s.last_observed_at, id.clone()))
            .collect();
        by_time.sort_unstable();
        let all = crate::index::Filter::default();
        Self {
            by_time: by_time.into_iter().collect(),
            never: index
                .all(&all)
                .filter(|s| !stats.contains_key(&s.id))
                .map(|s| s.id.clone())
                .collect(),
        }
    }

    /// This with a batch's sites observed: `before` holds their statistics
    /// before the batch, `after` after it.
    pub fn with_batch<'a>(
        &self,
        observed: impl IntoIterator<Item = &'a SiteId>,
        before: &SiteStats,
        after: &SiteStats,
    ) -> Self {
        let mut next = self.clone();
        for id in observed {
            if let Some(old) = before.get(id) {
                next.by_time.remove(&(old.last_observed_at, id.clone()));
            }
            if let Some(new) = after.get(id) {
                next.by_time.insert((new.last_observed_at, id.clone()));
            }
            next.never.remove(id);
        }
        next
    }

    /// This with a commit's site changes: a site that became live with no
    /// observation is never observed; a site that left is no longer live.
    pub fn with_sites<'a>(
        &self,
        changes: impl IntoIterator<Item = (&'a SiteId, bool)>,
        stats: &SiteStats,
    ) -> Self {
        let mut next = self.clone();
        for (id, live) in changes {
            if live && !stats.contains_key(id) {
                next.never.insert(id.clone());
            } else {
                next.never.remove(id);
            }
        }
        next
    }

    /// The ids of the sites last observed before `before` (or never, if
    /// live) and at or after `since`, in id order; `None` when more than
    /// [`DENSE`] may match. Some may no longer be live: the caller's index
    /// decides, for only as many as it reads.
    pub fn ids(&self, before: Option<Timestamp>, since: Option<Timestamp>) -> Option<Vec<&SiteId>> {
        // "0" is the least id there can be, so `(t, "0")` sorts before every
        // site observed at `t`.
        let least = |t: Timestamp| {
            (
                t,
                SiteId::parse("id", "0").unwrap_or_else(|_| unreachable!()),
            )
        };
        let lower = since.map_or(Bound::Unbounded, |t| Bound::Included(least(t)));
        let upper = before.map_or(Bound::Unbounded, |t| Bound::Excluded(least(t)));
        let mut ids: Vec<&SiteId> = self
            .by_time
            .range((lower, upper))
            .map(|(_, id)| id)
            .take(DENSE + 1)
            .collect();
        let never = if since.is_none() { self.never.len() } else { 0 };
        if ids.len() + never > DENSE {
            return None;
        }
        if since.is_none() {
            ids.extend(self.never.iter());
        }
        ids.sort_unstable();
        Some(ids)
    }

    /// The live sites of [`Observed::ids`].
    pub fn sites<'a>(
        &self,
        index: &'a SiteIndex,
        before: Option<Timestamp>,
        since: Option<Timestamp>,
    ) -> Option<Vec<&'a Arc<Site>>> {
        let ids = self.ids(before, since)?;
        Some(ids.into_iter().filter_map(|id| index.get(id)).collect())
    }
}

/// A change to keep the sites by time up to date with.
enum Update {
    Batch {
        sites: Vec<SiteId>,
        before: Arc<SiteStats>,
        after: Arc<SiteStats>,
    },
    Sites {
        changes: Vec<(SiteId, bool)>,
        stats: Arc<SiteStats>,
    },
}

impl Update {
    fn apply(&self, to: &Observed) -> Observed {
        match self {
            Update::Batch {
                sites,
                before,
                after,
            } => to.with_batch(sites, before, after),
            Update::Sites { changes, stats } => {
                to.with_sites(changes.iter().map(|(id, live)| (id, *live)), stats)
            }
        }
    }
}

/// The sites by time, made on a thread of its own when the catalogue opens so
/// that serving need not wait for it: until it is ready, the queries it
/// answers walk the catalogue instead, and commits are kept to be replayed.
pub struct ObservedKeeper {
    /// The commits since the thread started, until it is done; `None` after.
    pending: Mutex<Option<Vec<Update>>>,
    ready: ArcSwapOption<Observed>,
}

impl ObservedKeeper {
    /// Starts making the sites by time from this state of the catalogue.
    pub fn start(stats: Arc<SiteStats>, index: Arc<SiteIndex>) -> Arc<Self> {
        let keeper = Arc::new(Self {
            pending: Mutex::new(Some(Vec::new())),
            ready: ArcSwapOption::empty(),
        });
        let k = keeper.clone();
        std::thread::spawn(move || {
            let started = std::time::Instant::now();
            let mut built = Observed::new(&stats, &index);
            let mut pending = k.pending.lock().unwrap_or_else(PoisonError::into_inner);
            for update in pending.take().unwrap_or_default() {
                built = update.apply(&built);
            }
            k.ready.store(Some(Arc::new(built)));
            tracing::debug!(
                ms = started.elapsed().as_millis() as u64,
                "sites by time ready"
            );
        });
        keeper
    }

    /// The sites by time, once made.
    pub fn get(&self) -> Option<Arc<Observed>> {
        self.ready.load_full()
    }

    fn update(&self, u: Update) {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        match pending.as_mut() {
            Some(later) => later.push(u),
            None => {
                if let Some(now) = self.ready.load_full() {
                    self.ready.store(Some(Arc::new(u.apply(&now))));
                }
            }
        }
    }

    /// After a batch that observed `sites`.
    pub fn batch(&self, sites: Vec<SiteId>, before: Arc<SiteStats>, after: Arc<SiteStats>) {
        self.update(Update::Batch {
            sites,
            before,
            after,
        });
    }

    /// After a commit that made sites live (`true`) or took them out.
    pub fn sites(&self, changes: Vec<(SiteId, bool)>, stats: Arc<SiteStats>) {
        self.update(Update::Sites { changes, stats });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ObservationStats;
    use proptest::prelude::*;

    fn day(d: i64) -> Timestamp {
        Timestamp::from_epoch_micros((1_577_836_800 + d * 86_400) * 1_000_000)
    }

    /// What a scan of the live catalogue answers.
    fn scan(
        index: &SiteIndex,
        stats: &SiteStats,
        before: Option<Timestamp>,
        since: Option<Timestamp>,
    ) -> Vec<SiteId> {
        index
            .all(&crate::index::Filter::default())
            .filter(|s| {
                let last = stats.get(&s.id).map(|st| st.last_observed_at);
                before.is_none_or(|b| last.is_none_or(|l| l < b))
                    && since.is_none_or(|t| last.is_some_and(|l| l >= t))
            })
            .map(|s| s.id.clone())
            .collect()
    }

    proptest! {
        #[test]
        fn the_sites_by_time_kept_up_to_date_answer_like_a_scan(
            seed in 0u64..500,
            batches in proptest::collection::vec(proptest::collection::vec((0usize..60, 0i64..40), 1..8), 0..6),
            retire in proptest::collection::vec(0usize..60, 0..6),
            before in proptest::option::of(0i64..45),
            since in proptest::option::of(0i64..45),
        ) {
            let sites: Vec<Arc<Site>> = crate::synth::sites(60, seed).into_iter().map(Arc::new).collect();
            let mut index = SiteIndex::build(sites[..40].to_vec());
            let mut stats: SiteStats = SiteStats::new();
            let mut observed = Observed::new(&stats, &index);
            // Sites come and go, and batches observe live and retired ones alike.
            let added: Vec<(SiteId, Option<Arc<Site>>)> =
                sites[40..].iter().map(|s| (s.id.clone(), Some(s.clone()))).collect();
            observed = observed.with_sites(added.iter().map(|(id, s)| (id, s.is_some())), &stats);
            index = index.with_changes(added);
            for batch in &batches {
                let mut next = stats.clone();
                let ids: Vec<SiteId> = batch.iter().map(|(i, _)| sites[*i].id.clone()).collect();
                for (i, d) in batch {
                    let e = next.entry(sites[*i].id.clone()).or_insert(ObservationStats { last_observed_at: day(*d), count: 0 });
                    e.count += 1;
                    e.last_observed_at = e.last_observed_at.max(day(*d));
                }
                observed = observed.with_batch(&ids, &stats, &next);
                stats = next;
            }
            let gone: Vec<(SiteId, Option<Arc<Site>>)> = retire.iter().map(|i| (sites[*i].id.clone(), None)).collect();
            observed = observed.with_sites(gone.iter().map(|(id, s)| (id, s.is_some())), &stats);
            index = index.with_changes(gone);

            let (before, since) = (before.map(day), since.map(day));
            let want = scan(&index, &stats, before, since);
            let got: Vec<SiteId> = observed.sites(&index, before, since).unwrap().iter().map(|s| s.id.clone()).collect();
            prop_assert_eq!(&got, &want);
            let fresh: Vec<SiteId> = Observed::new(&stats, &index).sites(&index, before, since).unwrap().iter().map(|s| s.id.clone()).collect();
            prop_assert_eq!(fresh, want);
        }
    }

    #[test]
    fn the_keeper_replays_the_commits_made_while_it_was_building() {
        let sites: Vec<Arc<Site>> = crate::synth::sites(50, 3)
            .into_iter()
            .map(Arc::new)
            .collect();
        let index = Arc::new(SiteIndex::build(sites[..40].to_vec()));
        let keeper = ObservedKeeper::start(Arc::new(SiteStats::new()), index.clone());
        // Commits land whether or not the thread is done; either way they count.
        let mut stats: Arc<SiteStats> = Arc::new(SiteStats::new());
        for (k, site) in sites[..40].iter().enumerate().step_by(3) {
            let mut next = (*stats).clone();
            next.insert(
                site.id.clone(),
                ObservationStats {
                    last_observed_at: day(k as i64),
                    count: 1,
                },
            );
            let next = Arc::new(next);
            keeper.batch(vec![site.id.clone()], stats.clone(), next.clone());
            stats = next;
        }
        let added: Vec<(SiteId, Option<Arc<Site>>)> = sites[40..]
            .iter()
            .map(|s| (s.id.clone(), Some(s.clone())))
            .collect();
        keeper.sites(
            added.iter().map(|(id, _)| (id.clone(), true)).collect(),
            stats.clone(),
        );
        let index = index.with_changes(added);
        let ready = loop {
            match keeper.get() {
                Some(o) => break o,
                None => std::thread::yield_now(),
            }
        };
        let t = Some(day(20));
        let got: Vec<SiteId> = ready
            .sites(&index, t, None)
            .unwrap()
            .iter()
            .map(|s| s.id.clone())
            .collect();
        assert_eq!(got, scan(&index, &stats, t, None));
    }
}
