//! The storage boundary: what the catalogue needs from a database, as traits,
//! and the backend-neutral values that cross it. The catalogue, the importer
//! and the query engine speak only these; [`sqlite`] is the embedded backend,
//! and a server database implements the same traits.

pub(crate) mod packed;
pub mod postgres;
pub mod sqlite;

use crate::model::SiteStats;
use crate::model::{
    Candidate, CandidateState, ClusterCell, FieldChange, LonLat, Observation, Site, SiteId,
    SiteLink, StoredObservation, Timestamp,
};
use serde::Serialize;
use serde_json::Value;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

pub use sqlite::{
    BackupError, BackupReport, CURRENT_VERSION, CheckError, Inspection, MigrationError, Problem,
    SqliteBackend, SqliteStore, backup, inspect,
};

/// Why a storage operation failed, whatever the backend.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend failed; the cause is kept for the log, never shown to clients.
    #[error("database error: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The statement was stopped because the deadline of the work it ran for
    /// had passed (see [`crate::deadline`]).
    #[error("database error: the statement was interrupted at its deadline")]
    Interrupted,
    #[error("schema migration failed: {0}")]
    Migration(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("stored site {id} cannot be read back: {reason}")]
    Corrupt { id: String, reason: String },
    /// The database file exists but is empty. SQLite would make it a new
    /// database, dropping a `-wal` beside it that may hold the real data.
    #[error(
        "{path} is an empty file (0 bytes), not a catalogue{}; refusing to make it a new one: point at the right database, or remove the file to create a new catalogue there",
        wal_note(.path, *.wal_bytes)
    )]
    EmptyFile { path: String, wal_bytes: u64 },
    /// The sites being written stopped before their end (see
    /// [`SiteWrites::apply_site_chunks`]); the transaction was rolled back.
    #[error("the input stopped before its end; nothing was stored")]
    Abandoned,
    /// The database cannot be written: its file, or the folder where SQLite
    /// keeps the journal beside it.
    #[error("{path} is read-only ({why}); the catalogue cannot be written there")]
    ReadOnly { path: String, why: String },
    /// Following other writers was asked of a database only this process
    /// writes.
    #[error("this database is written by this process alone; there is nothing to follow")]
    NotShared,
}

fn wal_note(path: &str, wal_bytes: u64) -> String {
    if wal_bytes == 0 {
        String::new()
    } else {
        format!(", though {path}-wal beside it holds {wal_bytes} bytes that may be its data")
    }
}

impl StoreError {
    /// Whether a statement was stopped because its deadline had passed.
    pub fn is_interrupted(&self) -> bool {
        matches!(self, StoreError::Interrupted)
    }
}

/// Metres in a degree of latitude, at least: a radius turned into degrees
/// with it is never too small.
const MIN_METRES_PER_DEGREE: f64 = 110_500.0;

/// The latitude band and the longitude ranges (one, or two across the
/// antimeridian) that hold every point within `radius_m` of `p`: the box a
/// store searches before distances are measured, the same on every backend.
pub(crate) fn radius_search_box(p: LonLat, radius_m: f64) -> (f64, f64, Vec<(f64, f64)>) {
    let dlat = radius_m / MIN_METRES_PER_DEGREE + 1e-9;
    let (south, north) = ((p.lat() - dlat).max(-90.0), (p.lat() + dlat).min(90.0));
    let max_abs_lat = south.abs().max(north.abs());
    if max_abs_lat >= 89.0 {
        return (south, north, vec![(-180.0, 180.0)]);
    }
    let dlon = dlat / max_abs_lat.to_radians().cos();
    let (w, e) = (p.lon() - dlon, p.lon() + dlon);
    let ranges = if dlon >= 180.0 {
        vec![(-180.0, 180.0)]
    } else if w < -180.0 {
        vec![(w + 360.0, 180.0), (-180.0, e)]
    } else if e > 180.0 {
        vec![(w, 180.0), (-180.0, e - 360.0)]
    } else {
        vec![(w, e)]
    };
    (south, north, ranges)
}

/// Who or what records a change, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provenance {
    pub actor: String,
    pub reason: Option<String>,
}

/// What a revision did to its site.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    Created,
    Updated,
    Retired,
    Restored,
}

impl Change {
    pub fn as_str(self) -> &'static str {
        match self {
            Change::Created => "created",
            Change::Updated => "updated",
            Change::Retired => "retired",
            Change::Restored => "restored",
        }
    }

    /// The kind of this change in the change log.
    pub fn log_kind(self) -> LogKind {
        match self {
            Change::Created => LogKind::SiteCreated,
            Change::Updated => LogKind::SiteUpdated,
            Change::Retired => LogKind::SiteRetired,
            Change::Restored => LogKind::SiteRestored,
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "created" => Change::Created,
            "updated" => Change::Updated,
            "retired" => Change::Retired,
            "restored" => Change::Restored,
            _ => return None,
        })
    }
}

/// One recorded version of a site.
#[derive(Debug, Clone, Serialize)]
pub struct Revision {
    pub site_id: SiteId,
    pub revision: i64,
    pub recorded_at: Timestamp,
    pub actor: String,
    pub reason: Option<String>,
    pub change: Change,
    pub diff: Vec<FieldChange>,
}

/// What applying a set of sites did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ApplyReport {
    pub created: Vec<SiteId>,
    pub updated: Vec<SiteId>,
    pub unchanged: usize,
}

/// A position in a newest-first listing: events strictly after it come next.
/// `id` compares within one kind of event at the same time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Before {
    pub time: String,
    pub id: String,
}

/// One page of a site's observations: the order, the position the page starts
/// strictly after (in that order), and how many at most.
#[derive(Debug, Clone, Copy)]
pub struct SitePage<'a> {
    pub newest_first: bool,
    pub after: Option<&'a Before>,
    pub limit: usize,
}

/// The diff a store keeps for a revision that created its site. That diff is
/// every field of the feature from nothing ([`crate::model::creation_diff`]),
/// which the revision's feature already holds: kept in full it was the largest
/// column of a catalogue that is mostly first revisions. JSON `null`, so that a
/// backend that types the column as JSON takes it as it is.
pub const CREATION_DIFF: &str = "null";

/// A revision as an event: the site's id, revision number, when and by whom,
/// the change and diff, and the feature as recorded.
#[derive(Debug, Clone)]
pub struct RevisionRow {
    pub site_id: String,
    pub revision: i64,
    pub recorded_at: Timestamp,
    pub actor: String,
    pub reason: Option<String>,
    pub change: String,
    pub diff: Value,
    pub feature: Value,
}

impl RevisionRow {
    /// The key that orders revisions recorded at the same instant.
    pub fn key(&self) -> String {
        revision_key(&self.site_id, self.revision)
    }
}

/// Orders revisions of the same instant: by site, then revision number.
pub fn revision_key(site_id: &str, revision: i64) -> String {
    format!("{site_id}#{revision:010}")
}

/// The kinds of entry the log holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LogKind {
    SiteCreated,
    SiteUpdated,
    SiteRetired,
    SiteRestored,
    BatchStored,
    CandidateDismissed,
}

impl LogKind {
    pub const ALL: &[LogKind] = &[
        LogKind::SiteCreated,
        LogKind::SiteUpdated,
        LogKind::SiteRetired,
        LogKind::SiteRestored,
        LogKind::BatchStored,
        LogKind::CandidateDismissed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LogKind::SiteCreated => "site_created",
            LogKind::SiteUpdated => "site_updated",
            LogKind::SiteRetired => "site_retired",
            LogKind::SiteRestored => "site_restored",
            LogKind::BatchStored => "batch_stored",
            LogKind::CandidateDismissed => "candidate_dismissed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|k| k.as_str() == s)
    }
}

/// One entry as it is read back.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LogEntry {
    pub seq: i64,
    pub at: String,
    pub kind: LogKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub site_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub candidate_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bbox: Option<[f64; 4]>,
}

/// The record of one import attempt.
#[derive(Debug, Clone, Serialize)]
pub struct BatchRecord {
    pub id: String,
    pub received_at: Timestamp,
    pub origin: String,
    pub content_hash: String,
    pub mode: String,
    pub stored: bool,
    pub report: Value,
}

/// An unmatched observation near a place, for clustering.
#[derive(Debug, Clone)]
pub struct Unmatched {
    pub id: String,
    pub anchor: LonLat,
    pub observed_at: Timestamp,
    pub candidate_id: Option<String>,
    /// Whether the candidate it belongs to is still open.
    pub candidate_open: bool,
    /// The cube it was grouped in when it joined its candidate.
    pub cell: Option<ClusterCell>,
}

/// Sites as they are now and as they were: the current state, every revision,
/// and area and time queries that an index answers.
pub trait SiteReads {
    /// Every live site, in id order.
    fn live_sites(&self) -> Result<Vec<Arc<Site>>, StoreError>;
    /// Every retired site, in id order.
    fn retired_sites(&self) -> Result<Vec<Arc<Site>>, StoreError>;
    fn retired_site(&self, id: &SiteId) -> Result<Option<Site>, StoreError>;
    /// The sites live at `t`.
    fn sites_as_of(&self, t: Timestamp) -> Result<Vec<Arc<Site>>, StoreError>;
    /// The sites retired at `t`.
    fn retired_sites_as_of(&self, t: Timestamp) -> Result<Vec<Arc<Site>>, StoreError>;
    /// The sites (live, or retired if `retired`) at `t` (now if `None`) whose
    /// footprint box meets one of the `[west, south, east, north]` boxes.
    fn sites_in_area_at(
        &self,
        t: Option<Timestamp>,
        retired: bool,
        rects: &[[f64; 4]],
    ) -> Result<Vec<Arc<Site>>, StoreError>;
    fn site_as_of(&self, id: &SiteId, t: Timestamp) -> Result<Option<Site>, StoreError>;
    fn retired_site_as_of(&self, id: &SiteId, t: Timestamp) -> Result<Option<Site>, StoreError>;
    /// A site's revisions, oldest first.
    fn revisions(&self, id: &SiteId) -> Result<Vec<Revision>, StoreError>;
    /// How many sites are live.
    fn site_count(&self) -> Result<i64, StoreError>;
}

/// The record in time order: revisions and candidate decisions in a window,
/// newest first and paged by keyset, so pages stay stable while writes land.
pub trait HistoryReads {
    /// The sites (live, or retired if `retired`) as recorded at `t` (now if
    /// `None`) whose id is after `after`, in id order, at most `limit`.
    fn sites_at_from(
        &self,
        t: Option<Timestamp>,
        retired: bool,
        after: Option<&SiteId>,
        limit: usize,
    ) -> Result<Vec<Arc<Site>>, StoreError>;
    /// Whether a site with this id was ever recorded, live or retired.
    fn site_known(&self, id: &str) -> Result<bool, StoreError>;
    /// Revisions whose footprint box meets the box, newest first, strictly
    /// after `before`.
    fn revisions_in_area(
        &self,
        rect: [f64; 4],
        since: Option<Timestamp>,
        until: Option<Timestamp>,
        before: Option<&Before>,
        limit: usize,
    ) -> Result<Vec<RevisionRow>, StoreError>;
    /// Revisions of one site or of all, newest first, strictly after `before`.
    fn revisions_between(
        &self,
        site: Option<&str>,
        since: Option<Timestamp>,
        until: Option<Timestamp>,
        before: Option<&Before>,
        limit: usize,
    ) -> Result<Vec<RevisionRow>, StoreError>;
    /// Every revision of one site in the window, newest first.
    fn site_revisions_between(
        &self,
        site: &str,
        since: Option<Timestamp>,
        until: Option<Timestamp>,
    ) -> Result<Vec<RevisionRow>, StoreError>;
    /// Candidates created or decided in the window (and near the box), newest
    /// first, strictly after `before`: each id with its stored `created_at`,
    /// the time a cursor continues from.
    fn candidate_ids_between(
        &self,
        rect: Option<[f64; 4]>,
        since: Option<Timestamp>,
        until: Option<Timestamp>,
        before: Option<&Before>,
        limit: usize,
    ) -> Result<Vec<(String, String)>, StoreError>;
}

/// Sent in place of a chunk of sites when their source turns out bad.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Abandoned;

/// Writing sites: each call is one transaction that records a revision per
/// change and appends to the change log.
pub trait SiteWrites {
    fn apply_sites(&mut self, sites: &[Site], by: &Provenance) -> Result<ApplyReport, StoreError>;
    /// [`SiteWrites::apply_sites`] for sites that arrive in chunks, in file
    /// order, still being read while the first are written: one transaction
    /// all the same. A chunk that is `Err(Abandoned)` means the input turned
    /// out bad; nothing is stored and the answer is [`StoreError::Abandoned`].
    fn apply_site_chunks(
        &mut self,
        chunks: &mut (dyn Iterator<Item = Result<Vec<Site>, Abandoned>> + Send),
        by: &Provenance,
    ) -> Result<ApplyReport, StoreError>;
    /// Writes each site with its own provenance and sets the meta `key` to
    /// `value`, in one transaction: a set of corrections lands whole, together
    /// with the record that it landed, or not at all.
    fn apply_sites_marked(
        &mut self,
        sites: &[(Site, Provenance)],
        key: &str,
        value: &str,
    ) -> Result<ApplyReport, StoreError>;
    /// Creates a site; `None` if the id is taken.
    fn create_site(&mut self, site: &Site, by: &Provenance)
    -> Result<Option<Revision>, StoreError>;
    /// Replaces a live site. Returns its revision after the write (the
    /// previous one when nothing differs), or `None`, writing nothing, if no
    /// live site has the id.
    fn replace_site(
        &mut self,
        site: &Site,
        by: &Provenance,
    ) -> Result<Option<Revision>, StoreError> {
        Ok(self.replace_site_if(site, by, None)?.written())
    }
    /// Retires a live site: its record and history stay. Returns the retiring
    /// revision, or `None`, writing nothing, if the site is unknown or
    /// already retired.
    fn retire_site(
        &mut self,
        id: &SiteId,
        by: &Provenance,
    ) -> Result<Option<Revision>, StoreError> {
        Ok(self.retire_site_if(id, by, None)?.written())
    }
    /// Replaces a live site only if its stored content has one of `tags`
    /// ([`Site::tag`]); `None` takes any. Checked in the write's transaction.
    fn replace_site_if(
        &mut self,
        site: &Site,
        by: &Provenance,
        tags: Option<&[String]>,
    ) -> Result<Conditional, StoreError>;
    /// Retires a live site only if its stored content has one of `tags`.
    fn retire_site_if(
        &mut self,
        id: &SiteId,
        by: &Provenance,
        tags: Option<&[String]>,
    ) -> Result<Conditional, StoreError>;
}

/// What a conditional write did.
#[derive(Debug, Clone)]
pub enum Conditional {
    Written(Revision),
    /// No live site has the id (for a create: one does); nothing was written.
    NotFound,
    /// The live site is at none of the versions the writer named; nothing was
    /// written.
    Stale,
}

impl Conditional {
    /// The revision written, if there was one.
    pub fn written(self) -> Option<Revision> {
        match self {
            Conditional::Written(r) => Some(r),
            Conditional::NotFound | Conditional::Stale => None,
        }
    }
}

/// Observation batches and observations.
pub trait ObservationReads {
    /// The stored batch with this content hash, if one was stored before.
    fn stored_batch_with_hash(&self, hash: &str) -> Result<Option<String>, StoreError>;
    /// Import attempts, newest first, strictly before the batch id `before`.
    fn batches(&self, limit: usize, before: Option<&str>) -> Result<Vec<BatchRecord>, StoreError>;
    /// When each site was last observed and how often.
    fn observation_stats(&self) -> Result<SiteStats, StoreError>;
    fn observation(&self, id: &str) -> Result<Option<StoredObservation>, StoreError>;
    /// The first observation and the first revision times.
    fn first_event_times(&self) -> Result<(Option<Timestamp>, Option<Timestamp>), StoreError>;
    /// The box and time span of every stored observation.
    fn observation_extent(&self) -> Result<Option<([f64; 4], Timestamp, Timestamp)>, StoreError>;
    /// A page of one site's observations in the window.
    fn site_observations(
        &self,
        site: &SiteId,
        from: Option<Timestamp>,
        to: Option<Timestamp>,
        page: SitePage<'_>,
    ) -> Result<Vec<StoredObservation>, StoreError>;
    /// Observations in a box and window, newest first, strictly after `before`.
    fn observations_in(
        &self,
        rect: Option<[f64; 4]>,
        since: Option<Timestamp>,
        until: Option<Timestamp>,
        findings: &[String],
        before: Option<&Before>,
        limit: usize,
    ) -> Result<Vec<StoredObservation>, StoreError>;
    /// How many observations match, counting no further than `cap`.
    fn count_observations(
        &self,
        rect: Option<[f64; 4]>,
        since: Option<Timestamp>,
        until: Option<Timestamp>,
        findings: &[String],
        cap: usize,
    ) -> Result<usize, StoreError>;
}

/// Writing observation batches.
pub trait ObservationWrites {
    /// Opens the unit of work for one batch: everything written through it
    /// lands on commit, or not at all.
    fn begin_batch(
        &mut self,
        batch_id: &str,
        received_at: Timestamp,
    ) -> Result<Box<dyn ImportUnit + '_>, StoreError>;
    /// Records an attempt that stored nothing (a rejected or repeated batch).
    fn record_batch(&mut self, rec: &BatchRecord) -> Result<(), StoreError>;
}

/// Candidate undeclared sites.
pub trait CandidateReads {
    fn candidates(&self, state: Option<CandidateState>) -> Result<Vec<Candidate>, StoreError>;
    fn candidate(&self, id: &str) -> Result<Option<Candidate>, StoreError>;
    /// A candidate's member observations and their positions.
    fn candidate_members(&self, id: &str) -> Result<Vec<(String, LonLat)>, StoreError>;
    /// The box and time span of every candidate.
    fn candidate_extent(&self) -> Result<Option<([f64; 4], Timestamp, Timestamp)>, StoreError>;
}

/// Deciding candidates.
pub trait CandidateWrites {
    /// Dismisses an open candidate; `false` if there is no open one.
    fn dismiss_candidate(&mut self, id: &str, note: Option<&str>) -> Result<bool, StoreError>;
    /// Makes an open candidate a site, linking its observations to it.
    fn promote_candidate(
        &mut self,
        id: &str,
        site: &Site,
        links: &[(String, f64)],
        by: &Provenance,
    ) -> Result<Option<Revision>, StoreError>;
}

/// The change log, in commit order.
pub trait ChangeLogReads {
    /// Up to `limit` entries with a sequence number above `after`.
    fn log_after(&self, after: i64, limit: usize) -> Result<Vec<LogEntry>, StoreError>;
    /// The last sequence number written; 0 when the log is empty.
    fn log_head(&self) -> Result<i64, StoreError>;
    /// Where a follower starts: taken before the live sites are read, so
    /// that whatever commits after that read is news to it.
    fn log_mark(&self) -> Result<LogMark, StoreError> {
        Err(StoreError::NotShared)
    }
    /// What was committed since `mark`, by anyone, as it stands now, read in
    /// one snapshot; moves `mark` past it. Whatever commits while this reads
    /// is in the next answer; nothing is skipped, though an entry may come
    /// twice (its sites are then read twice, which changes nothing).
    fn news_since(&self, mark: &mut LogMark) -> Result<News, StoreError> {
        let _ = mark;
        Err(StoreError::NotShared)
    }
}

/// How far a follower has read the change log: every entry written by a
/// transaction numbered below `horizon` (all of which have finished), and
/// of the later ones those in `seen`. Only a database that several
/// processes write gives marks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogMark {
    pub horizon: i64,
    pub seen: std::collections::BTreeSet<i64>,
}

/// What others committed since a [`LogMark`]: the sites they wrote, each as
/// it is now (`None` if it is no longer live), and the statistics of every
/// site they observed or wrote.
#[derive(Debug, Clone, Default)]
pub struct News {
    /// The entries read, and the newest sequence number among them.
    pub entries: usize,
    pub newest_seq: Option<i64>,
    pub sites: Vec<(SiteId, Option<Arc<Site>>)>,
    pub stats: Vec<(SiteId, crate::model::ObservationStats)>,
}

/// Small named settings kept with the catalogue.
pub trait Meta {
    fn meta(&self, key: &str) -> Result<Option<String>, StoreError>;
    fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError>;
}

/// One observation batch being written: the import's unit of work.
pub trait ImportUnit {
    fn batch_id(&self) -> &str;
    /// The stored batch with this content hash, seen from inside the unit.
    fn stored_batch_with_hash(&self, hash: &str) -> Result<Option<String>, StoreError>;
    /// Told the `(source, external id)` keys of the next features, before
    /// [`existing_external`](Self::existing_external) is asked about each:
    /// a store across a network looks them up in one round trip. The
    /// answers must still count the unit's own writes made in between.
    fn look_up_externals(&self, keys: &[(Option<&str>, &str)]) -> Result<(), StoreError> {
        let _ = keys;
        Ok(())
    }
    /// The observation already stored under this source's external id.
    fn existing_external(
        &self,
        source: Option<&str>,
        external_id: &str,
    ) -> Result<Option<String>, StoreError>;
    /// Stores one observation with its links; returns its id.
    fn insert_observation(
        &self,
        feature_index: usize,
        obs: &Observation,
        links: &[SiteLink],
    ) -> Result<String, StoreError>;
    /// The unmatched observations that may lie within `radius_m` of `p`:
    /// every free one, and of each candidate's members there only the
    /// representative of each cube (see [`ClusterCell`]).
    fn unmatched_near(&self, p: LonLat, radius_m: f64) -> Result<Vec<Unmatched>, StoreError>;
    /// Every member of `candidate` grouped in `cell`.
    fn candidate_members_in(
        &self,
        candidate: &str,
        cell: ClusterCell,
    ) -> Result<Vec<Unmatched>, StoreError>;
    /// Creates a candidate of the given observations, each with its cube.
    fn create_candidate(
        &self,
        at: LonLat,
        members: &[(String, ClusterCell)],
    ) -> Result<String, StoreError>;
    /// Adds observations, each with its cube, to a stored candidate; the
    /// first of a cube becomes its representative.
    fn add_to_candidate(
        &self,
        candidate: &str,
        members: &[(String, ClusterCell)],
    ) -> Result<(), StoreError>;
    /// Makes everything written through the unit durable, with the batch's record.
    fn commit(
        self: Box<Self>,
        origin: &str,
        content_hash: &str,
        mode: &str,
        report: &Value,
    ) -> Result<(), StoreError>;
    /// Discards everything written through the unit.
    fn rollback(self: Box<Self>) -> Result<(), StoreError>;
}

/// Everything a reader may ask.
pub trait Reads:
    SiteReads + HistoryReads + ObservationReads + CandidateReads + ChangeLogReads + Meta
{
}
impl<T: SiteReads + HistoryReads + ObservationReads + CandidateReads + ChangeLogReads + Meta> Reads
    for T
{
}

/// Everything the one writer may do.
pub trait Writes: Reads + SiteWrites + ObservationWrites + CandidateWrites {}
impl<T: Reads + SiteWrites + ObservationWrites + CandidateWrites> Writes for T {}

/// A read session: a pooled connection or whatever the backend reads through.
pub type Reader<'a> = Box<dyn Deref<Target = dyn Reads> + 'a>;
/// The writer, held exclusively until dropped: writes are serialised.
pub type Writer<'a> = Box<dyn DerefMut<Target = dyn Writes> + 'a>;

/// A backend's writer behind its lock, seen through the boundary: whatever
/// store a backend keeps there, callers see [`Writes`].
pub(crate) struct WriterGuard<'a, S>(pub(crate) std::sync::MutexGuard<'a, S>);

impl<S: Writes + 'static> Deref for WriterGuard<'_, S> {
    type Target = dyn Writes;

    fn deref(&self) -> &(dyn Writes + 'static) {
        &*self.0
    }
}

impl<S: Writes + 'static> DerefMut for WriterGuard<'_, S> {
    fn deref_mut(&mut self) -> &mut (dyn Writes + 'static) {
        &mut *self.0
    }
}

/// A catalogue database: hands out readers, which never wait for the writer,
/// and the one writer.
pub trait Backend: Send + Sync {
    fn reader(&self) -> Result<Reader<'_>, StoreError>;
    fn writer(&self) -> Writer<'_>;
    /// Where the data lives, for messages and for a second connection.
    fn location(&self) -> Option<String>;
    /// Closes the read connections kept for reuse. Called before a command's
    /// one large write, which a backend may run faster with the database to
    /// itself.
    fn close_idle_readers(&self) {}
    /// For a database that other processes write too, a connection that is
    /// woken when they commit; `None` where this process is the only writer.
    fn listen(&self) -> Option<Result<Box<dyn Wakeup>, StoreError>> {
        None
    }
    /// Where reads go when not to the writer's database (a standby), for
    /// `/healthz`: its name and how far behind the primary it is.
    fn read_replica(&self) -> Option<Result<ReplicaState, StoreError>> {
        None
    }
}

/// A connection that waits for other processes' commits.
pub trait Wakeup: Send {
    /// Waits until something may have been committed, or `timeout` has
    /// passed (`Ok(false)`). An error means the connection is lost: make a
    /// new one, and read what was missed meanwhile.
    fn wait(&mut self, timeout: std::time::Duration) -> Result<bool, StoreError>;
}

/// A read replica as a node sees it.
#[derive(Debug, Clone, Serialize)]
pub struct ReplicaState {
    /// The replica, with no password.
    pub location: String,
    /// Whether it is a standby still replaying the primary's log.
    pub in_recovery: bool,
    /// How long ago the last transaction it replayed committed on the
    /// primary; nothing when nothing was replayed since it started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replay_lag_ms: Option<u64>,
}
