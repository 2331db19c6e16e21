//! Sites by when they were last observed, so that "not observed since" and
//! "observed since" are answered from the sites that match rather than by a
//! pass over the catalogue. Persistent sets: a batch changes a copy in time
//! proportional to the sites it observed, and readers keep their snapshot.

use crate::index::SiteIndex;
use crate::model::SiteStats;
use crate::model::{Site, SiteId, Timestamp};
use arc_swap::ArcSwapOption;
use imbl::OrdSet;
use std::collections::BinaryHeap;
use std::ops::Bound;
use std::sync::{Arc, Mutex, PoisonError};

/// Beyond this many matching sites a page is found faster by walking the
/// catalogue in id order, where matches are then at least this dense.
pub const DENSE: usize = 100_000;

/// A site by its last observation time.
type TimeKey = (Timestamp, SiteId);

/// Every live site with observations, by its last observation time, and the
/// live sites never observed: so the sites that match a time are exactly
/// those listed, and counting them needs no look-up.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    by_time: OrdSet<TimeKey>,
    never: OrdSet<SiteId>,
}

impl Observed {
    pub fn new(stats: &SiteStats, index: &SiteIndex) -> Self {
        let mut by_time: Vec<(Timestamp, SiteId)> = stats
            .iter()
            .filter(|(id, _)| index.get(id).is_some())
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

    /// This with a batch's sites observed, each with whether it is live:
    /// `before` holds their statistics before the batch, `after` after it.
    pub fn with_batch<'a>(
        &self,
        observed: impl IntoIterator<Item = (&'a SiteId, bool)>,
        before: &SiteStats,
        after: &SiteStats,
    ) -> Self {
        let mut next = self.clone();
        for (id, live) in observed {
            if let Some(old) = before.get(id) {
                next.by_time.remove(&(old.last_observed_at, id.clone()));
            }
            if let Some(new) = after.get(id).filter(|_| live) {
                next.by_time.insert((new.last_observed_at, id.clone()));
            }
            next.never.remove(id);
        }
        next
    }

    /// This with a commit's site changes: a site that is live is listed by
    /// its last observation, or as never observed; a site that left is not
    /// listed at all.
    pub fn with_sites<'a>(
        &self,
        changes: impl IntoIterator<Item = (&'a SiteId, bool)>,
        stats: &SiteStats,
    ) -> Self {
        let mut next = self.clone();
        for (id, live) in changes {
            match stats.get(id) {
                Some(s) if live => {
                    next.by_time.insert((s.last_observed_at, id.clone()));
                }
                Some(s) => {
                    next.by_time.remove(&(s.last_observed_at, id.clone()));
                }
                None if live => {
                    next.never.insert(id.clone());
                }
                None => {
                    next.never.remove(id);
                }
            }
        }
        next
    }

    /// The ids of the live sites last observed before `before` (or never)
    /// and at or after `since`, in id order; `None` when more than [`DENSE`]
    /// match.
    pub fn ids(&self, before: Option<Timestamp>, since: Option<Timestamp>) -> Option<Vec<&SiteId>> {
        let (lower, upper) = Self::bounds(before, since);
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

    /// How many live sites were last observed before `before` (or never)
    /// and at or after `since`, and the first `n` of them in id order after
    /// `after`; `None` when more than [`DENSE`] match. One pass over the
    /// matches and none over the catalogue: the page is picked with a heap of
    /// `n`, not by sorting every match, and the count is exact.
    pub fn page(
        &self,
        before: Option<Timestamp>,
        since: Option<Timestamp>,
        after: Option<&SiteId>,
        n: usize,
    ) -> Option<(Vec<&SiteId>, usize)> {
        let never = if since.is_none() { self.never.len() } else { 0 };
        let (lower, upper) = Self::bounds(before, since);
        let mut total = 0;
        let mut heap: BinaryHeap<&SiteId> = BinaryHeap::with_capacity(n + 1);
        for (_, id) in self.by_time.range((lower, upper)) {
            total += 1;
            if total + never > DENSE {
                return None;
            }
            if after.is_none_or(|a| id > a) {
                keep_least(&mut heap, n, id);
            }
        }
        if since.is_none() {
            total += self.never.len();
            let from: Bound<&SiteId> = after.map_or(Bound::Unbounded, Bound::Excluded);
            for id in self
                .never
                .range::<_, SiteId>((from, Bound::<&SiteId>::Unbounded))
                .take(n)
            {
                // In id order: once one is not kept, none after it is.
                if !keep_least(&mut heap, n, id) {
                    break;
                }
            }
        }
        Some((heap.into_sorted_vec(), total))
    }

    /// How many live sites [`Observed::page`] counts, for where too many
    /// match for it: found by counting the observed sites that do not match,
    /// `None` when more than [`DENSE`] do not either.
    pub fn count(&self, before: Option<Timestamp>, since: Option<Timestamp>) -> Option<usize> {
        self.count_within(before, since, DENSE)
    }

    fn count_within(
        &self,
        before: Option<Timestamp>,
        since: Option<Timestamp>,
        dense: usize,
    ) -> Option<usize> {
        let never = if since.is_none() { self.never.len() } else { 0 };
        let (lower, upper) = Self::bounds(before, since);
        let counted = |r: imbl::ordset::RangedIter<'_, TimeKey, _>| {
            let n = r.take(dense + 1).count();
            (n <= dense).then_some(n)
        };
        let below = match lower {
            Bound::Included(t) => counted(self.by_time.range(..t))?,
            _ => 0,
        };
        let above = match upper {
            Bound::Excluded(t) => counted(self.by_time.range(t..))?,
            _ => 0,
        };
        // With `since` at or after `before` the two overlap and none match.
        (below + above <= dense).then(|| self.by_time.len().saturating_sub(below + above) + never)
    }

    fn bounds(
        before: Option<Timestamp>,
        since: Option<Timestamp>,
    ) -> (Bound<TimeKey>, Bound<TimeKey>) {
        // "0" is the least id there can be, so `(t, "0")` sorts before every
        // site observed at `t`.
        let least = |t: Timestamp| {
            (
                t,
                SiteId::parse("id", "0").unwrap_or_else(|_| unreachable!()),
            )
        };
        (
            since.map_or(Bound::Unbounded, |t| Bound::Included(least(t))),
            before.map_or(Bound::Unbounded, |t| Bound::Excluded(least(t))),
        )
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

/// Keeps `id` among the `n` least ids of the heap; whether it was kept.
fn keep_least<'a>(heap: &mut BinaryHeap<&'a SiteId>, n: usize, id: &'a SiteId) -> bool {
    if heap.len() < n {
        heap.push(id);
    } else if heap.peek().is_some_and(|top| id < *top) {
        heap.pop();
        heap.push(id);
    } else {
        return false;
    }
    true
}

/// A change to keep the sites by time up to date with.
enum Update {
    Batch {
        sites: Vec<(SiteId, bool)>,
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
            } => to.with_batch(sites.iter().map(|(id, live)| (id, *live)), before, after),
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

    /// After a batch that observed `sites`, each with whether it is live.
    pub fn batch(&self, sites: Vec<(SiteId, bool)>, before: Arc<SiteStats>, after: Arc<SiteStats>) {
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
                    next.record(sites[*i].id.clone(), day(*d), 1);
                }
                observed = observed.with_batch(ids.iter().map(|id| (id, index.get(id).is_some())), &stats, &next);
                stats = next;
            }
            let gone: Vec<(SiteId, Option<Arc<Site>>)> = retire.iter().map(|i| (sites[*i].id.clone(), None)).collect();
            observed = observed.with_sites(gone.iter().map(|(id, s)| (id, s.is_some())), &stats);
            index = index.with_changes(gone);
            // Retired sites observed again stay out; restored ones come back
            // with their last observation.
            let mut next = stats.clone();
            for (k, i) in retire.iter().enumerate() {
                next.record(sites[*i].id.clone(), day(3 * k as i64), 1);
            }
            let ids: Vec<SiteId> = retire.iter().map(|i| sites[*i].id.clone()).collect();
            observed = observed.with_batch(ids.iter().map(|id| (id, index.get(id).is_some())), &stats, &next);
            stats = next;
            let back: Vec<(SiteId, Option<Arc<Site>>)> = retire.iter().step_by(2).map(|i| (sites[*i].id.clone(), Some(sites[*i].clone()))).collect();
            observed = observed.with_sites(back.iter().map(|(id, s)| (id, s.is_some())), &stats);
            index = index.with_changes(back);

            let (before, since) = (before.map(day), since.map(day));
            let want = scan(&index, &stats, before, since);
            let got: Vec<SiteId> = observed.sites(&index, before, since).unwrap().iter().map(|s| s.id.clone()).collect();
            prop_assert_eq!(&got, &want);
            // Page by page, with the count, as the items are read.
            let mut paged: Vec<SiteId> = Vec::new();
            loop {
                let (page, total) = observed.page(before, since, paged.last(), 7).unwrap();
                prop_assert_eq!(total, want.len());
                let done = page.len() < 7;
                paged.extend(page.into_iter().cloned());
                if done {
                    break;
                }
            }
            prop_assert_eq!(&paged, &want);
            prop_assert_eq!(observed.count(before, since), Some(want.len()));
            // Where most match, the count comes from those that do not.
            let observed_live = index.all(&crate::index::Filter::default()).filter(|s| stats.contains_key(&s.id)).count();
            let never = index.len() - observed_live;
            let matching_observed = want.len() - if since.is_none() { never } else { 0 };
            let small = 4;
            let got = observed.count_within(before, since, small);
            let disjoint = since.is_none_or(|s| before.is_none_or(|b| s < b));
            if disjoint {
                prop_assert_eq!(got.is_some(), observed_live - matching_observed <= small);
            }
            prop_assert!(got.is_none_or(|c| c == want.len()), "{:?} against {}", got, want.len());
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
            keeper.batch(vec![(site.id.clone(), true)], stats.clone(), next.clone());
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
