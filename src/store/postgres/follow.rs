//! Following the writes of other nodes: what changed since a [`LogMark`],
//! read in one snapshot, and the connection that is woken at each commit.
//!
//! A sequence number alone cannot say how far the log has been read: numbers
//! are drawn when a transaction writes, not when it commits, so a reader can
//! see entry 12 while entry 11 is still to commit. Each entry therefore keeps
//! the id of its transaction. Every transaction numbered below a snapshot's
//! `xmin` has finished, so every entry they wrote is visible in it; entries
//! of later transactions are read again at the next look until the horizon
//! passes them, and `seen` keeps them from being taken twice. NOTIFY only
//! says when to look; a follower also looks now and then, and after every
//! reconnection.

use super::sites::{corrupt, parse_stored};
use super::store::{PgStore, from_pg};
use crate::model::{ObservationStats, SiteId};
use crate::store::{LogMark, News, ReplicaState, StoreError, Wakeup};
use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, IsolationLevel};
use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

/// The channel the log's trigger notifies (schema version 5).
const CHANNEL: &str = "sitewatch_changes";

/// The oldest transaction still running anywhere on the server, as a number
/// comparable with the log's `xid` column.
const HORIZON: &str = "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint";

/// Sites or stats read per statement.
const PER_READ: usize = 10_000;

impl PgStore {
    pub(super) fn mark_now(&self) -> Result<LogMark, StoreError> {
        let horizon: i64 = self.client().query_one(HORIZON, &[])?.try_get(0)?;
        Ok(LogMark {
            horizon,
            seen: BTreeSet::new(),
        })
    }

    pub(super) fn read_news(&self, mark: &mut LogMark) -> Result<News, StoreError> {
        let mut client = self.client();
        // One snapshot for the horizon, the entries and what they name.
        let mut tx = client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()?;
        let horizon: i64 = tx.query_one(HORIZON, &[])?.try_get(0)?;
        let rows = tx.query(
            "SELECT seq, xid, kind, site_id, batch_id FROM change_log
             WHERE xid >= $1 ORDER BY seq",
            &[&mark.horizon],
        )?;
        let mut news = News::default();
        let mut sites: Vec<String> = Vec::new();
        let mut batches: Vec<String> = Vec::new();
        let mut seen = BTreeSet::new();
        for r in &rows {
            let (seq, xid): (i64, i64) = (r.try_get(0)?, r.try_get(1)?);
            if xid >= horizon {
                seen.insert(seq);
            }
            if mark.seen.contains(&seq) {
                continue;
            }
            news.entries += 1;
            news.newest_seq = news.newest_seq.max(Some(seq));
            let kind: &str = r.try_get(2)?;
            if kind.starts_with("site_")
                && let Some(id) = r.try_get::<_, Option<String>>(3)?
            {
                sites.push(id);
            }
            if let Some(batch) = r.try_get::<_, Option<String>>(4)? {
                batches.push(batch);
            }
        }
        let mut named = HashSet::new();
        sites.retain(|id| named.insert(id.clone()));
        for chunk in sites.chunks(PER_READ) {
            let rows = tx.query(
                "SELECT n.id, s.feature FROM unnest($1::text[]) n(id)
                 LEFT JOIN sites s ON s.id = n.id AND NOT s.retired",
                &[&chunk],
            )?;
            for r in &rows {
                let id: &str = r.try_get(0)?;
                let site_id = SiteId::parse("site_id", id).map_err(|e| corrupt(id, e))?;
                let site = match r.try_get::<_, Option<serde_json::Value>>(1)? {
                    Some(feature) => Some(Arc::new(parse_stored(id, &feature)?)),
                    None => None,
                };
                news.sites.push((site_id, site));
            }
        }
        // The sites a batch observed, and those written (a promoted
        // candidate brings its observations to its new site).
        let mut observed: Vec<String> = sites;
        if !batches.is_empty() {
            let rows = tx.query(
                "SELECT DISTINCT os.site_id FROM observations o
                 JOIN observation_sites os ON os.observation_id = o.id
                 WHERE o.batch_id = ANY($1)",
                &[&batches],
            )?;
            for r in &rows {
                let id: String = r.try_get(0)?;
                if named.insert(id.clone()) {
                    observed.push(id);
                }
            }
        }
        for chunk in observed.chunks(PER_READ) {
            let rows = tx.query(
                "SELECT site_id, last_observed_at, count FROM site_observation_stats
                 WHERE site_id = ANY($1)",
                &[&chunk],
            )?;
            for r in &rows {
                let id: &str = r.try_get(0)?;
                let site_id = SiteId::parse("site_id", id).map_err(|e| corrupt(id, e))?;
                let count: i64 = r.try_get(2)?;
                news.stats.push((
                    site_id,
                    ObservationStats {
                        last_observed_at: from_pg(r.try_get(1)?),
                        count: count as u64,
                    },
                ));
            }
        }
        tx.commit()?;
        mark.horizon = mark.horizon.max(horizon);
        mark.seen = seen;
        Ok(news)
    }

    /// The state of the database reads go to, when that is a standby.
    pub(super) fn replica_state(&self, location: String) -> Result<ReplicaState, StoreError> {
        let row = self.client().query_one(
            "SELECT pg_is_in_recovery(),
                    (extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp()) * 1000)::bigint",
            &[],
        )?;
        let in_recovery: bool = row.try_get(0)?;
        let lag: Option<i64> = row.try_get(1)?;
        Ok(ReplicaState {
            location,
            in_recovery,
            replay_lag_ms: lag.filter(|_| in_recovery).map(|l| l.max(0) as u64),
        })
    }
}

/// A connection listening on the log's channel.
pub struct PgListener {
    client: Option<Client>,
}

impl PgListener {
    pub fn connect(url: &str) -> Result<Self, StoreError> {
        let mut client = super::connect(url).map_err(|e| StoreError::Backend(Box::new(e)))?;
        client.batch_execute(&format!("LISTEN {CHANNEL}"))?;
        Ok(Self {
            client: Some(client),
        })
    }
}

impl Wakeup for PgListener {
    fn wait(&mut self, timeout: Duration) -> Result<bool, StoreError> {
        let Some(client) = self.client.as_mut() else {
            return Err(StoreError::NotShared);
        };
        let mut notes = client.notifications();
        let woken = notes.timeout_iter(timeout).next()?.is_some();
        // Several commits since the last look are one look.
        while notes.iter().next()?.is_some() {}
        Ok(woken)
    }
}

impl Drop for PgListener {
    /// Closed away from the server's runtime, as a store is (see `PgStore`).
    fn drop(&mut self) {
        let Some(client) = self.client.take() else {
            return;
        };
        if tokio::runtime::Handle::try_current().is_err() {
            return drop(client);
        }
        let _ = std::thread::spawn(move || drop(client)).join();
    }
}
