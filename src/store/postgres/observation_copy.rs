//! The observations of a batch on their way to the server: held in memory,
//! then sent through binary COPY into staging tables and moved into
//! `observations` and `observation_sites` by one statement each, instead of
//! a round trip and a statement (with its generated columns' functions set
//! up again) per observation.

use super::boxes::index_box;
use super::wkb::Geography;
use crate::model::{Observation, SiteId, SiteLink};
use crate::store::StoreError;
use chrono::{DateTime, Utc};
use postgres::Transaction;
use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::{ToSql, Type};
use std::collections::HashMap;

/// How many observations are held before they go out: enough that a COPY's
/// set-up is nothing beside it, few enough that memory stays flat.
pub(super) const HOLD: usize = 8_192;

/// Created once per transaction, dropped with it.
const STAGE: &str = "CREATE TEMP TABLE IF NOT EXISTS observation_stage (
        n bigint NOT NULL, id text NOT NULL, feature_index bigint NOT NULL,
        observed_at timestamptz NOT NULL, sensor text NOT NULL, finding text NOT NULL,
        confidence text NOT NULL, geometry geography NOT NULL, lon float8 NOT NULL, lat float8 NOT NULL,
        site_id text, description text, image_ref text, source text, external_id text,
        matched boolean NOT NULL, bounds real[] NOT NULL
    ) ON COMMIT DROP;
    CREATE TEMP TABLE IF NOT EXISTS observation_link_stage (
        n bigint NOT NULL, observation_id text NOT NULL, site_id text NOT NULL, how text NOT NULL,
        distance_m float8 NOT NULL, observed_at timestamptz NOT NULL
    ) ON COMMIT DROP";

const COPY_OBSERVATIONS: &str = "COPY observation_stage (n, id, feature_index, observed_at, sensor,
    finding, confidence, geometry, lon, lat, site_id, description, image_ref, source, external_id,
    matched, bounds) FROM STDIN (FORMAT binary)";

/// The types of `COPY_OBSERVATIONS`' columns, `geography` being the
/// database's own.
fn observation_types(geography: Type) -> Vec<Type> {
    vec![
        Type::INT8,
        Type::TEXT,
        Type::INT8,
        Type::TIMESTAMPTZ,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        geography,
        Type::FLOAT8,
        Type::FLOAT8,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::BOOL,
        Type::FLOAT4_ARRAY,
    ]
}

const COPY_LINKS: &str = "COPY observation_link_stage (n, observation_id, site_id, how, distance_m,
    observed_at) FROM STDIN (FORMAT binary)";

const LINK_TYPES: &[Type] = &[
    Type::INT8,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::FLOAT8,
    Type::TIMESTAMPTZ,
];

/// The same expressions as a single observation's insert, so that the rows
/// come out the same; in the order the batch gave them.
const MOVE_OBSERVATIONS: &str = "INSERT INTO observations (id, batch_id, feature_index,
        observed_at, recorded_at, sensor, finding, confidence, geometry, anchor, site_id,
        description, image_ref, source, external_id, matched, bounds)
    SELECT id, $1::text, feature_index, observed_at, $2::timestamptz, sensor, finding, confidence,
        geometry,
        ST_SetSRID(ST_MakePoint(lon, lat), 4326)::geography, site_id, description, image_ref,
        source, external_id, matched, bounds
    FROM observation_stage ORDER BY n";

const MOVE_LINKS: &str = "INSERT INTO observation_sites (observation_id, site_id, how,
        distance_m, observed_at)
    SELECT observation_id, site_id, how, distance_m, observed_at
    FROM observation_link_stage ORDER BY n";

/// One observation held for the next flush.
struct Held {
    id: String,
    feature_index: i64,
    observed_at: DateTime<Utc>,
    sensor: String,
    finding: &'static str,
    confidence: &'static str,
    geometry: Geography,
    lon: f64,
    lat: f64,
    site_id: Option<String>,
    description: Option<String>,
    image_ref: Option<String>,
    source: Option<String>,
    external_id: Option<String>,
    matched: bool,
    bounds: Vec<f32>,
}

struct HeldLink {
    observation_id: String,
    site_id: String,
    how: &'static str,
    distance_m: f64,
    observed_at: DateTime<Utc>,
}

/// What a batch has written but not yet sent.
#[derive(Default)]
pub(super) struct Pending {
    observations: Vec<Held>,
    links: Vec<HeldLink>,
    /// Every observation of the batch with an external id, sent or not, by
    /// `(source or "", external id)`: a later feature naming it again is a
    /// duplicate of it whether or not it has reached the server.
    externals: HashMap<(String, String), String>,
    /// The COPY's column types, once the staging tables exist.
    staged: Option<Vec<Type>>,
}

impl Pending {
    /// The batch's own observation with this source's external id.
    pub(super) fn external(&self, source: Option<&str>, external_id: &str) -> Option<&str> {
        self.externals
            .get(&(source.unwrap_or("").to_owned(), external_id.to_owned()))
            .map(String::as_str)
    }

    /// Holds one observation and its links; whether it is time to flush.
    pub(super) fn hold(
        &mut self,
        id: &str,
        feature_index: usize,
        obs: &Observation,
        links: &[SiteLink],
        observed_at: DateTime<Utc>,
    ) -> bool {
        let anchor = obs.place.anchor();
        if let Some(ext) = &obs.external_id {
            let key = (obs.source.clone().unwrap_or_default(), ext.clone());
            self.externals.entry(key).or_insert_with(|| id.to_owned());
        }
        self.observations.push(Held {
            id: id.to_owned(),
            feature_index: feature_index as i64,
            observed_at,
            sensor: obs.sensor.clone(),
            finding: obs.finding.as_str(),
            confidence: obs.confidence.as_str(),
            geometry: Geography::of_place(&obs.place),
            lon: anchor.lon(),
            lat: anchor.lat(),
            site_id: obs.site_id.as_ref().map(SiteId::as_str).map(str::to_owned),
            description: obs.description.clone(),
            image_ref: obs.image_ref.clone(),
            source: obs.source.clone(),
            external_id: obs.external_id.clone(),
            matched: !links.is_empty(),
            bounds: index_box(obs.place.lonlat_bounds()),
        });
        for l in links {
            self.links.push(HeldLink {
                observation_id: id.to_owned(),
                site_id: l.site_id.as_str().to_owned(),
                how: l.how.as_str(),
                distance_m: l.distance_m,
                observed_at,
            });
        }
        self.observations.len() >= HOLD
    }

    /// Sends everything held, in order, inside `tx`.
    pub(super) fn flush(
        &mut self,
        tx: &mut Transaction<'_>,
        batch_id: &str,
        recorded_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if self.observations.is_empty() {
            return Ok(());
        }
        let types = match &self.staged {
            Some(t) => t.clone(),
            None => {
                tx.batch_execute(STAGE)?;
                let geography = tx.prepare("SELECT NULL::geography")?.columns()[0]
                    .type_()
                    .clone();
                self.staged.insert(observation_types(geography)).clone()
            }
        };
        let mut w = BinaryCopyInWriter::new(tx.copy_in(COPY_OBSERVATIONS)?, &types);
        for (n, o) in (0i64..).zip(&self.observations) {
            let row: [&(dyn ToSql + Sync); 17] = [
                &n,
                &o.id,
                &o.feature_index,
                &o.observed_at,
                &o.sensor,
                &o.finding,
                &o.confidence,
                &o.geometry,
                &o.lon,
                &o.lat,
                &o.site_id,
                &o.description,
                &o.image_ref,
                &o.source,
                &o.external_id,
                &o.matched,
                &o.bounds,
            ];
            w.write(&row)?;
        }
        w.finish()?;
        let mut w = BinaryCopyInWriter::new(tx.copy_in(COPY_LINKS)?, LINK_TYPES);
        for (n, l) in (0i64..).zip(&self.links) {
            let row: [&(dyn ToSql + Sync); 6] = [
                &n,
                &l.observation_id,
                &l.site_id,
                &l.how,
                &l.distance_m,
                &l.observed_at,
            ];
            w.write(&row)?;
        }
        w.finish()?;
        tx.execute(MOVE_OBSERVATIONS, &[&batch_id, &recorded_at])?;
        tx.execute(MOVE_LINKS, &[])?;
        tx.batch_execute("TRUNCATE observation_stage, observation_link_stage")?;
        self.observations.clear();
        self.links.clear();
        Ok(())
    }
}
