//! The observation import pipeline: stream, validate, de-duplicate, match,
//! cluster the unmatched into candidates, and report. Everything is written
//! through one [`ImportUnit`]; the caller commits or rolls back on the report.

use super::FeatureProblem;
use super::cluster::Clustering;
use super::matching::match_place;
use super::stream::{StreamError, for_each_feature};
use crate::index::SiteIndex;
use crate::model::{BatchStats, ObservationStats};
use crate::model::{FieldError, Meters, Observation, SiteLink};
use crate::store::{ImportUnit, StoreError};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::cell::Cell;
use std::io::Read;

/// All or nothing, or whatever is valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ImportMode {
    /// Any invalid feature and nothing is stored.
    Atomic,
    /// Valid features are stored, invalid ones reported.
    Partial,
}

impl ImportMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ImportMode::Atomic => "atomic",
            ImportMode::Partial => "partial",
        }
    }
}

/// How an import behaves.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    pub mode: ImportMode,
    pub dry_run: bool,
    /// An unmatched observation links to the nearest site within this distance.
    pub match_radius: Meters,
    /// Unmatched observations this close together may form a candidate.
    pub cluster_radius: Meters,
    /// How many different days of unmatched observations make a candidate.
    pub cluster_min_days: usize,
}

impl Default for ImportOptions {
    fn default() -> Self {
        Self {
            mode: ImportMode::Atomic,
            dry_run: false,
            match_radius: Meters::from_computed(1_000.0),
            cluster_radius: Meters::from_computed(1_000.0),
            cluster_min_days: 2,
        }
    }
}

/// Lists in a report stop growing here, so a huge bad batch still gets a
/// bounded answer; the counts stay exact.
pub const MAX_LISTED: usize = 10_000;

/// A feature that was already stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Duplicate {
    pub index: usize,
    pub source: Option<String>,
    pub external_id: String,
    pub existing: String,
}

/// What an import did (or, in a dry run, would do).
#[derive(Debug, Clone, Serialize)]
pub struct ImportReport {
    pub batch_id: String,
    pub origin: String,
    pub content_hash: String,
    pub mode: ImportMode,
    pub dry_run: bool,
    /// Whether anything was committed.
    pub stored: bool,
    /// When the same content was stored before: that batch's id.
    pub already_imported_as: Option<String>,
    pub features: usize,
    pub accepted: usize,
    pub rejected: usize,
    pub duplicates: usize,
    pub matched: usize,
    pub unmatched: usize,
    pub candidates_created: Vec<String>,
    pub problems: Vec<FeatureProblem>,
    pub duplicate_features: Vec<Duplicate>,
    /// True when `problems` or `duplicate_features` hold only the first [`MAX_LISTED`].
    pub lists_truncated: bool,
    pub summary: String,
}

/// A report and what the caller needs to finish the batch.
pub struct ImportOutcome {
    pub report: ImportReport,
    /// Whether the caller should commit the transaction.
    pub commit: bool,
    /// Per site, the batch's latest observation time and count, to merge into
    /// the live statistics after commit.
    pub site_stats: BatchStats,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    Stream(#[from] StreamError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("reading the batch failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Hashes every byte read through it and counts them where progress can see.
struct Hashing<'a, R> {
    inner: R,
    hash: Sha256,
    bytes: &'a Cell<u64>,
}

impl<R: Read> Read for Hashing<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        self.bytes.set(self.bytes.get() + n as u64);
        Ok(n)
    }
}

fn push_capped<T>(list: &mut Vec<T>, truncated: &mut bool, item: T) {
    if list.len() < MAX_LISTED {
        list.push(item);
    } else {
        *truncated = true;
    }
}

/// How many features are read ahead, so that the store can look up their
/// external ids together rather than one round trip each.
const BLOCK: usize = 1_024;

type Parsed = Result<(Observation, Vec<SiteLink>), FieldError>;

/// What storing the features of a batch, a block at a time, changes.
struct Block<'r, 'u> {
    tx: &'u dyn ImportUnit,
    r: &'r mut ImportReport,
    site_stats: &'r mut BatchStats,
    clustering: &'r mut Clustering<'u>,
}

impl Block<'_, '_> {
    /// Stores the features of `block`, in order, and empties it.
    fn store(&mut self, block: &mut Vec<(usize, Parsed)>) -> Result<(), RunError> {
        let keys: Vec<(Option<&str>, &str)> = block
            .iter()
            .filter_map(|(_, p)| p.as_ref().ok())
            .filter_map(|(o, _)| Some((o.source.as_deref(), o.external_id.as_deref()?)))
            .collect();
        if !keys.is_empty() {
            self.tx.look_up_externals(&keys)?;
        }
        for (i, parsed) in block.drain(..) {
            self.feature(i, parsed)?;
        }
        Ok(())
    }

    fn feature(&mut self, i: usize, parsed: Parsed) -> Result<(), RunError> {
        let r = &mut *self.r;
        let (obs, links) = match parsed {
            Ok(x) => x,
            Err(e) => {
                r.rejected += 1;
                push_capped(
                    &mut r.problems,
                    &mut r.lists_truncated,
                    FeatureProblem {
                        index: i,
                        field: e.field,
                        reason: e.reason,
                    },
                );
                return Ok(());
            }
        };
        if let Some(ext) = &obs.external_id
            && let Some(existing) = self.tx.existing_external(obs.source.as_deref(), ext)?
        {
            r.duplicates += 1;
            let dup = Duplicate {
                index: i,
                source: obs.source.clone(),
                external_id: ext.clone(),
                existing,
            };
            push_capped(&mut r.duplicate_features, &mut r.lists_truncated, dup);
            return Ok(());
        }
        let id = self.tx.insert_observation(i, &obs, &links)?;
        r.accepted += 1;
        if links.is_empty() {
            r.unmatched += 1;
            self.clustering
                .add(&id, obs.place.anchor(), obs.observed_at)?;
        } else {
            r.matched += 1;
            for l in links {
                let before = self.site_stats.get(&l.site_id);
                let next = ObservationStats::of(before, obs.observed_at, 1);
                self.site_stats.insert(l.site_id, next);
            }
        }
        Ok(())
    }
}

/// Streams a batch into `tx`. `seen_hash` tells whether content with a given
/// hash was stored before; `progress(features, bytes)` is called as features arrive.
pub fn run_import<R: Read>(
    reader: R,
    tx: &dyn ImportUnit,
    index: &SiteIndex,
    opts: &ImportOptions,
    origin: &str,
    seen_hash: impl FnOnce(&str) -> Result<Option<String>, StoreError>,
    mut progress: impl FnMut(usize, u64),
) -> Result<ImportOutcome, RunError> {
    let bytes = Cell::new(0u64);
    let mut hashing = Hashing {
        inner: reader,
        hash: Sha256::new(),
        bytes: &bytes,
    };
    let mut r = ImportReport {
        batch_id: tx.batch_id().to_owned(),
        origin: origin.to_owned(),
        content_hash: String::new(),
        mode: opts.mode,
        dry_run: opts.dry_run,
        stored: false,
        already_imported_as: None,
        features: 0,
        accepted: 0,
        rejected: 0,
        duplicates: 0,
        matched: 0,
        unmatched: 0,
        candidates_created: Vec::new(),
        problems: Vec::new(),
        duplicate_features: Vec::new(),
        lists_truncated: false,
        summary: String::new(),
    };
    let mut site_stats = BatchStats::new();
    let mut clustering = Clustering::new(tx, opts.cluster_radius.get(), opts.cluster_min_days);
    let mut block: Vec<(usize, Parsed)> = Vec::with_capacity(BLOCK);
    let mut state = Block {
        tx,
        r: &mut r,
        site_stats: &mut site_stats,
        clustering: &mut clustering,
    };
    let streamed = for_each_feature(&mut hashing, |i, feature| -> Result<(), RunError> {
        state.r.features = i + 1;
        if i % 1024 == 0 {
            progress(i, bytes.get());
        }
        let parsed = Observation::from_feature(&feature)
            .and_then(|o| match_place(index, &o, opts.match_radius).map(|links| (o, links)));
        block.push((i, parsed));
        if block.len() == BLOCK {
            state.store(&mut block)?;
        }
        Ok(())
    });
    match streamed {
        Ok(n) => state.r.features = n,
        Err(Ok(stream)) => return Err(stream.into()),
        Err(Err(run)) => return Err(run),
    }
    state.store(&mut block)?;
    progress(r.features, bytes.get());
    r.candidates_created = clustering.finish()?;
    r.content_hash = hex::encode(hashing.hash.finalize());
    let mut commit = !opts.dry_run && (opts.mode == ImportMode::Partial || r.rejected == 0);
    if let Some(earlier) = seen_hash(&r.content_hash)? {
        // Same bytes as a stored batch: the sender's retry, not new findings.
        r.already_imported_as = Some(earlier);
        r.duplicates = r.features - r.rejected;
        r.accepted = 0;
        r.matched = 0;
        r.unmatched = 0;
        r.candidates_created.clear();
        site_stats.clear();
        commit = false;
    }
    r.stored = commit;
    r.summary = summary(&r);
    Ok(ImportOutcome {
        report: r,
        commit,
        site_stats,
    })
}

fn summary(r: &ImportReport) -> String {
    let counts = format!(
        "{} features: {} accepted ({} matched to sites, {} unmatched), {} rejected, {} duplicates, {} candidates created",
        r.features,
        r.accepted,
        r.matched,
        r.unmatched,
        r.rejected,
        r.duplicates,
        r.candidates_created.len()
    );
    let outcome = if let Some(b) = &r.already_imported_as {
        format!("this batch was already imported as {b}; nothing stored")
    } else if r.dry_run {
        "dry run; nothing stored".to_string()
    } else if r.stored {
        "stored".to_string()
    } else {
        format!(
            "{} invalid feature(s); nothing stored (use partial mode to store the valid ones)",
            r.rejected
        )
    };
    format!("{counts}; {outcome}")
}
