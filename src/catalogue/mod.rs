//! The catalogue as a service, independent of any front end: the store as truth,
//! the index as a snapshot derived from it and swapped in after each commit.

mod check;
mod edits;
mod follow;
mod history;
mod observations;
mod observed;
mod ogc;
mod seed;

pub use check::{CheckReport, check_database};
pub use edits::EditError;
pub use follow::{FollowHandle, FollowStatus};
pub use history::{ChangesQuery, Cursor, EventKind, HistoryQuery, Order, Page};

pub use observations::{ObservationImportError, PromoteError, Promotion};
pub use observed::{DENSE, Observed, ObservedKeeper};
pub use seed::{Corrected, SEED_CORRECTIONS, SEED_OBSERVATIONS, SEED_SITES, Seed};

use crate::import::{ImportError, parse_sites};
use crate::index::{SiteChange, SiteIndex};
use crate::model::SiteStats;
use crate::model::{IdPolicy, Site, SiteId, Timestamp};
use crate::store::{
    Abandoned, ApplyReport, Backend, Provenance, Reader, Revision, SqliteBackend, SqliteStore,
    StoreError, Writer,
};
use arc_swap::ArcSwap;
use std::path::Path;
use std::sync::Arc;

use seed::SEEDED_KEY;

#[derive(Debug, thiserror::Error)]
pub enum CatalogueError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the built-in seed catalogue is invalid: {0}")]
    Seed(ImportError),
    #[error("the built-in seed observations could not be imported: {0}")]
    SeedObservations(String),
    #[error("the built-in seed corrections cannot be read: {0}")]
    SeedCorrections(String),
}

/// An open catalogue. Reads take the current index snapshot and never wait for a
/// writer; writes are serialised and become visible all at once after commit.
pub struct Catalogue {
    backend: Box<dyn Backend>,
    index: ArcSwap<SiteIndex>,
    /// When each site was last observed and how often; replaced after each batch.
    stats: ArcSwap<SiteStats>,
    /// The first and last of the sites' last observation times, kept with `stats`.
    observed_span: ArcSwap<Option<(Timestamp, Timestamp)>>,
    /// The sites by last observation time, kept with `stats` and the index.
    observed: Arc<ObservedKeeper>,
    /// Where this node is in a log that other nodes write too.
    following: Option<follow::Following>,
}

/// What opening a catalogue did, for the caller to report.
#[derive(Debug, Clone, PartialEq)]
pub struct Opened {
    /// Sites created from the built-in seed, when the database was new.
    pub seeded: Option<usize>,
    /// What correcting a database seeded by an earlier build did.
    pub corrected: Option<Corrected>,
    pub live_sites: usize,
}

impl Catalogue {
    /// Opens the database (creating it if needed), seeds a new one from the
    /// built-in catalogue, and builds the index.
    pub fn open(path: &Path) -> Result<(Self, Opened), CatalogueError> {
        Self::from_store(SqliteStore::open(path)?)
    }

    /// [`Catalogue::open`] with another seed than the built-in one: an older
    /// one, say, to make the database an earlier build would have made.
    pub fn open_with_seed(path: &Path, seed: &Seed) -> Result<(Self, Opened), CatalogueError> {
        Self::with_seed(
            Box::new(SqliteBackend::new(SqliteStore::open(path)?)),
            seed,
            Seeding::Apply,
        )
    }

    /// Opens a database without the built-in seed, for a catalogue that is to
    /// hold only what is imported (a generated one, say). A database that was
    /// seeded before keeps its sites.
    pub fn open_unseeded(path: &Path) -> Result<(Self, Opened), CatalogueError> {
        Self::from_backend_unseeded(Box::new(SqliteBackend::new(SqliteStore::open(path)?)))
    }

    /// [`Catalogue::open_unseeded`] on any backend.
    pub fn from_backend_unseeded(
        backend: Box<dyn Backend>,
    ) -> Result<(Self, Opened), CatalogueError> {
        {
            let store = backend.writer();
            if store.meta(SEEDED_KEY)?.is_none() {
                store.set_meta(SEEDED_KEY, "never: opened without the built-in seed")?;
            }
        }
        Self::from_backend(backend)
    }

    /// A catalogue on an open SQLite database.
    pub fn from_store(store: SqliteStore) -> Result<(Self, Opened), CatalogueError> {
        Self::from_backend(Box::new(SqliteBackend::new(store)))
    }

    /// A catalogue on a database opened only to read: neither seeded nor
    /// corrected, since nothing may be written; one seeded by an earlier build
    /// is read with its old seed sites, and a warning says so.
    pub fn from_store_as_it_is(store: SqliteStore) -> Result<(Self, Opened), CatalogueError> {
        Self::with_seed(
            Box::new(SqliteBackend::new(store)),
            &Seed::BUILT_IN,
            Seeding::Leave,
        )
    }

    /// A catalogue on any backend: seeds a new database and builds the index.
    pub fn from_backend(backend: Box<dyn Backend>) -> Result<(Self, Opened), CatalogueError> {
        Self::with_seed(backend, &Seed::BUILT_IN, Seeding::Apply)
    }

    /// A catalogue on any backend: seeds a new database with `seed`, brings
    /// one seeded with an earlier version up to it, and builds the index.
    fn with_seed(
        backend: Box<dyn Backend>,
        seed: &Seed,
        seeding: Seeding,
    ) -> Result<(Self, Opened), CatalogueError> {
        let mut store = backend.writer();
        let (seeded, corrected) = match seeding {
            Seeding::Apply => (
                seed::seed_new(&mut **store, seed)?,
                seed::correct(&mut **store, seed)?,
            ),
            Seeding::Leave => {
                if let Some(from) = seed::pending(&**store, seed)? {
                    tracing::warn!(
                        from,
                        to = seed.version,
                        "the database holds an earlier seed; it is read as it is, and corrected when next opened to write"
                    );
                }
                (None, None)
            }
        };
        if let Some(c) = &corrected {
            tracing::info!(
                from = c.from_version,
                to = c.to_version,
                created = c.report.created.len(),
                updated = c.report.updated.len(),
                kept_edits = c.kept_edits.len(),
                "seed sites corrected"
            );
        }
        // A database others write too is followed from before the load, so
        // that what they commit while it runs is applied after it.
        let following = match store.log_mark() {
            Ok(mark) => Some(follow::Following::new(mark, store.log_head()?)),
            Err(StoreError::NotShared) => None,
            Err(e) => return Err(e.into()),
        };
        let started = std::time::Instant::now();
        // The observation counts are read on a second connection while the
        // sites are read and indexed; in memory there is only the one.
        let (read, index, built, stats) = std::thread::scope(|scope| {
            let beside = backend
                .location()
                .map(|_| scope.spawn(|| backend.reader().and_then(|r| r.observation_stats())));
            let sites = store.live_sites()?;
            let read = started.elapsed();
            let index = SiteIndex::build(sites);
            let built = started.elapsed();
            let stats = match beside {
                Some(h) => h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))?,
                None => store.observation_stats()?,
            };
            Ok::<_, StoreError>((read, index, built, stats))
        })?;
        tracing::info!(
            sites = index.len(),
            read_ms = read.as_millis() as u64,
            index_ms = (built - read).as_millis() as u64,
            stats_ms = (started.elapsed() - built).as_millis() as u64,
            "catalogue loaded"
        );
        let (index, stats) = (Arc::new(index), Arc::new(stats));
        let opened = Opened {
            seeded,
            corrected,
            live_sites: index.len(),
        };
        drop(store);
        let catalogue = Self {
            backend,
            observed: ObservedKeeper::start(stats.clone(), index.clone()),
            index: ArcSwap::new(index),
            observed_span: ArcSwap::from_pointee(span_of(&stats)),
            stats: ArcSwap::new(stats),
            following,
        };
        if seeded.is_some() {
            let opts = crate::import::ImportOptions::default();
            let report = catalogue
                .import_observations(
                    seed.observations.as_bytes(),
                    "seed: data/observations.geojson",
                    &opts,
                    |_, _| {},
                )
                .map_err(|e| CatalogueError::SeedObservations(e.to_string()))?;
            if !report.stored {
                return Err(CatalogueError::SeedObservations(report.summary));
            }
        }
        Ok((catalogue, opened))
    }

    /// The current snapshot of live sites. Cheap; hold it for one request.
    pub fn index(&self) -> Arc<SiteIndex> {
        self.index.load_full()
    }

    /// The one writer; writes wait for each other here.
    fn store(&self) -> Writer<'_> {
        self.backend.writer()
    }

    /// A connection for reads that need not wait for a write in progress.
    pub(crate) fn reader(&self) -> Result<Reader<'_>, StoreError> {
        self.backend.reader()
    }

    /// Parses a FeatureCollection of sites and applies it in one transaction; the
    /// index is rebuilt from the store and swapped in only after the commit.
    pub fn import_sites(
        &self,
        json: &str,
        by: &Provenance,
    ) -> Result<ApplyReport, ImportSitesError> {
        let sites = parse_sites(json, IdPolicy::Required)?;
        self.apply_sites(sites, by)
    }

    /// [`Catalogue::import_sites`] from a reader, without holding the text.
    pub fn import_sites_from<R: std::io::Read>(
        &self,
        reader: R,
        by: &Provenance,
    ) -> Result<ApplyReport, ImportSitesError> {
        let sites = crate::import::read_sites(reader, IdPolicy::Required)?;
        self.apply_sites(sites, by)
    }

    /// [`Catalogue::import_sites_from`] as the last thing a command does: the
    /// index is not brought up to date, since nothing will read it again. At a
    /// million sites that saves rebuilding it, several seconds.
    ///
    /// The file is read on a thread of its own while the sites read so far
    /// are written, in one transaction that is rolled back if any feature
    /// turns out bad: the error lists every bad feature, as when the whole
    /// file is checked first, and nothing is stored.
    pub fn import_sites_and_close<R: std::io::Read + Send>(
        self,
        reader: R,
        by: &Provenance,
    ) -> Result<ApplyReport, ImportSitesError> {
        // A few chunks in flight: the reader stays just ahead of the writer.
        // `Ok(None)` says the file was read to its end and every feature was
        // good; without it nothing is committed, even if the reader dies.
        let (to_writer, chunks) = std::sync::mpsc::sync_channel(2);
        std::thread::scope(|scope| {
            let reading = scope.spawn(move || {
                let read = crate::import::stream_sites(reader, IdPolicy::Required, |chunk| {
                    to_writer.send(Ok(Some(chunk))).is_ok()
                });
                let _ = to_writer.send(match read {
                    Ok(()) => Ok(None),
                    Err(_) => Err(Abandoned),
                });
                read
            });
            // Nothing reads while this command writes: the write may then
            // have the file to itself (see the SQLite bulk write's journal).
            self.backend.close_idle_readers();
            let mut chunks_to_end = std::iter::from_fn(move || match chunks.recv() {
                Ok(Ok(Some(chunk))) => Some(Ok(chunk)),
                Ok(Ok(None)) => None,
                Ok(Err(Abandoned)) | Err(_) => Some(Err(Abandoned)),
            });
            let written = self.store().apply_site_chunks(&mut chunks_to_end, by);
            // A writer that stopped early stops the reader at its next chunk.
            drop(chunks_to_end);
            let read = reading
                .join()
                .unwrap_or_else(|e| std::panic::resume_unwind(e));
            read?;
            Ok(written?)
        })
    }

    /// Stores parsed sites in one transaction, then brings the index up to date
    /// with the sites that were created or changed.
    fn apply_sites(
        &self,
        sites: Vec<Site>,
        by: &Provenance,
    ) -> Result<ApplyReport, ImportSitesError> {
        let mut store = self.store();
        let report = store.apply_sites(&sites, by)?;
        if !report.created.is_empty() || !report.updated.is_empty() {
            let written: std::collections::HashSet<&SiteId> =
                report.created.iter().chain(&report.updated).collect();
            // A file may name an id twice; the last one is what was stored.
            let changes: Vec<SiteChange> = sites
                .into_iter()
                .filter(|s| written.contains(&s.id))
                .map(|s| (s.id.clone(), Some(Arc::new(s))))
                .collect();
            self.publish(changes);
        }
        Ok(report)
    }

    /// Applies the changes of a commit to the index and swaps the new snapshot
    /// in; called after each commit while the store is still locked, so
    /// snapshots follow commit order. Costs the change, not the catalogue.
    fn publish(&self, changes: Vec<SiteChange>) {
        self.observed.sites(
            changes
                .iter()
                .map(|(id, site)| (id.clone(), site.is_some()))
                .collect(),
            self.stats.load_full(),
        );
        let next = self.index.load().with_changes(changes);
        self.index.store(Arc::new(next));
    }

    /// Every revision of a site, oldest first.
    pub fn revisions(&self, id: &SiteId) -> Result<Vec<Revision>, StoreError> {
        self.reader()?.revisions(id)
    }
}

/// Whether a database already holds a catalogue: sites, or the mark that it
/// was seeded (or opened to stay without the seed).
pub fn holds_catalogue(store: &dyn crate::store::Reads) -> Result<bool, StoreError> {
    Ok(store.site_count()? > 0 || store.meta(SEEDED_KEY)?.is_some())
}

/// Whether opening a catalogue may seed and correct the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seeding {
    Apply,
    /// The database is only read.
    Leave,
}

/// The first and last of the sites' last observation times.
fn span_of(stats: &SiteStats) -> Option<(Timestamp, Timestamp)> {
    stats.values().fold(None, |acc, s| {
        let t = s.last_observed_at;
        Some(match acc {
            None => (t, t),
            Some((a, b)) => (a.min(t), b.max(t)),
        })
    })
}

impl Catalogue {
    /// Replaces the observation statistics after a commit of a batch that
    /// observed `sites`, with their span and the sites by time. The span
    /// grows by the sites observed, at the cost of the batch: a site whose
    /// later observation lifts the earliest last time leaves the span's
    /// start where it was, too wide until the next start but never too narrow.
    fn set_stats(&self, sites: &[SiteId], stats: SiteStats) {
        let (before, after) = (self.stats.load_full(), Arc::new(stats));
        let span = sites
            .iter()
            .filter_map(|id| after.get(id))
            .map(|s| s.last_observed_at)
            .fold(**self.observed_span.load(), |acc, t| {
                Some(match acc {
                    None => (t, t),
                    Some((a, b)) => (a.min(t), b.max(t)),
                })
            });
        self.observed_span.store(Arc::new(span));
        self.stats.store(after.clone());
        let index = self.index.load();
        let sites = sites
            .iter()
            .map(|id| (id.clone(), index.get(id).is_some()))
            .collect();
        self.observed.batch(sites, before, after);
    }

    /// The sites by when they were last observed, once made (see
    /// [`ObservedKeeper`]).
    pub fn observed(&self) -> Option<Arc<Observed>> {
        self.observed.get()
    }

    /// The first and last of the sites' last observation times: the temporal
    /// extent of the sites collection.
    pub fn observed_span(&self) -> Option<(Timestamp, Timestamp)> {
        **self.observed_span.load()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ImportSitesError {
    #[error(transparent)]
    Invalid(#[from] ImportError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::ImportOptions;

    /// Serves `text`, then panics after `fail_at` bytes, as a reader with a
    /// bug would.
    struct Breaks {
        text: Vec<u8>,
        at: usize,
        fail_at: usize,
    }

    impl std::io::Read for Breaks {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            assert!(self.at < self.fail_at, "the reader broke");
            let end = (self.at + buf.len()).min(self.fail_at).min(self.text.len());
            let n = end - self.at;
            buf[..n].copy_from_slice(&self.text[self.at..end]);
            self.at = end;
            Ok(n)
        }
    }

    #[test]
    fn an_import_whose_reading_dies_halfway_stores_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        let (cat, opened) = Catalogue::open(&path).unwrap();
        let text = crate::synth::feature_collection(30_000, 3)
            .to_string()
            .into_bytes();
        // Far enough in that the first sites are being written in bulk.
        let fail_at = text.len() * 3 / 4;
        let by = Provenance {
            actor: "test".into(),
            reason: None,
        };
        let reader = Breaks {
            text,
            at: 0,
            fail_at,
        };
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            cat.import_sites_and_close(reader, &by)
        }));
        assert!(outcome.is_err(), "the reader's panic reaches the caller");
        let (again, _) = Catalogue::open(&path).unwrap();
        assert_eq!(again.index().len(), opened.seeded.unwrap());
    }

    #[test]
    fn a_new_database_is_seeded_once_with_the_built_in_catalogue() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        let (cat, opened) = Catalogue::open(&path).unwrap();
        assert!(opened.seeded.unwrap() >= 35);
        assert_eq!(cat.index().len(), opened.seeded.unwrap());
        drop(cat);
        let (_, again) = Catalogue::open(&path).unwrap();
        assert_eq!(again.seeded, None);
        assert_eq!(again.live_sites, opened.live_sites);
    }

    #[test]
    fn an_invalid_batch_changes_neither_the_store_nor_the_index() {
        let (cat, _) = Catalogue::from_store(SqliteStore::open_in_memory().unwrap()).unwrap();
        let before = cat.index().len();
        let bad = r#"{"type":"FeatureCollection","features":[{"type":"Feature","id":"x","geometry":null,"properties":{"name":"x","country":"ZZZ","kind":"other"}}]}"#;
        let by = Provenance {
            actor: "t".into(),
            reason: None,
        };
        assert!(matches!(
            cat.import_sites(bad, &by),
            Err(ImportSitesError::Invalid(_))
        ));
        assert_eq!(cat.index().len(), before);
    }

    #[test]
    fn each_batch_updates_the_stats_and_widens_the_observed_span_to_cover_them() {
        let (cat, _) = Catalogue::from_store(SqliteStore::open_in_memory().unwrap()).unwrap();
        let yongbyon = SiteId::parse("id", "yongbyon").unwrap();
        let sohae = SiteId::parse("id", "sohae").unwrap();
        let anchor = |id: &SiteId| {
            let s = cat.index().get(id).cloned().expect("a seed site");
            let [w, so, e, n] = s.footprint.lonlat_bounds();
            ((w + e) / 2.0, (so + n) / 2.0)
        };
        let batch = |points: &[(&SiteId, &str)]| {
            let features: Vec<String> = points
                .iter()
                .map(|(id, at)| {
                    let (lon, lat) = anchor(id);
                    format!(
                        r#"{{"type":"Feature","geometry":{{"type":"Point","coordinates":[{lon},{lat}]}},"properties":{{"observed_at":"{at}","sensor":"WV-3","finding":"vehicle_activity"}}}}"#
                    )
                })
                .collect();
            let body = format!(
                r#"{{"type":"FeatureCollection","features":[{}]}}"#,
                features.join(",")
            );
            let report = cat
                .import_observations(body.as_bytes(), "t", &ImportOptions::default(), |_, _| {})
                .unwrap();
            assert_eq!(report.rejected, 0, "{report:?}");
        };
        let t = |s: &str| Timestamp::parse("t", s).unwrap();
        let before = cat.observation_stats();
        batch(&[
            (&yongbyon, "2026-10-01T00:00:00Z"),
            (&sohae, "2026-10-15T00:00:00Z"),
        ]);
        let stats = cat.observation_stats();
        assert_eq!(stats[&yongbyon].last_observed_at, t("2026-10-01T00:00:00Z"));
        let first = before.get(&yongbyon).map_or(0, |s| s.count);
        assert_eq!(stats[&yongbyon].count, first + 1);
        let (start, end) = cat.observed_span().unwrap();
        assert!(start <= t("2026-10-01T00:00:00Z"));
        assert_eq!(
            end,
            stats.values().map(|s| s.last_observed_at).max().unwrap()
        );

        batch(&[(&yongbyon, "2026-11-15T00:00:00Z")]);
        let later = cat.observation_stats();
        assert_eq!(later[&yongbyon].last_observed_at, t("2026-11-15T00:00:00Z"));
        assert_eq!(later[&yongbyon].count, first + 2);
        // The stats the first batch published are unchanged by the second.
        assert_eq!(stats[&yongbyon].count, first + 1);
        let (start, end) = cat.observed_span().unwrap();
        let truth_start = later.values().map(|s| s.last_observed_at).min().unwrap();
        assert!(start <= truth_start, "the span never starts too late");
        assert_eq!(end, t("2026-11-15T00:00:00Z"));
    }

    #[test]
    fn a_panic_while_the_store_is_locked_does_not_stop_later_writes() {
        let (cat, _) = Catalogue::from_store(SqliteStore::open_in_memory().unwrap()).unwrap();
        let cat = Arc::new(cat);
        let holder = cat.clone();
        let crashed = std::thread::spawn(move || {
            let _store = holder.store();
            panic!("a request fails while it holds the store");
        })
        .join();
        assert!(crashed.is_err());
        let site = r#"{"type":"FeatureCollection","features":[{"type":"Feature","id":"after-the-panic","geometry":{"type":"Polygon","coordinates":[[[10,10],[10.01,10],[10.01,10.01],[10,10]]]},"properties":{"name":"x","country":"ZZZ","kind":"other"}}]}"#;
        let by = Provenance {
            actor: "t".into(),
            reason: None,
        };
        let before = cat.index().len();
        let report = cat.import_sites(site, &by).unwrap();
        assert_eq!(report.created.len(), 1);
        assert_eq!(cat.index().len(), before + 1);
    }
}
