//! The PostgreSQL store's observations and candidates answer as the SQLite
//! store's do: the same batches, written in step to both, then every read with
//! boxes, windows, findings and cursors, compared answer by answer. The ids
//! each store makes differ, so PostgreSQL's are translated to SQLite's first.
//! Needs PostgreSQL with PostGIS; without them the tests say why and skip,
//! except under CI.

#[path = "support/pg_cluster.rs"]
mod pg_cluster;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};
use sitewatch::model::{
    Candidate, CandidateState, ClusterCell, IdPolicy, LinkHow, LonLat, Observation, Site, SiteLink,
    StoredObservation, Timestamp,
};
use sitewatch::store::postgres::PgStore;
use sitewatch::store::{
    BatchRecord, Before, CandidateReads, CandidateWrites, ChangeLogReads, ObservationReads,
    ObservationWrites, Provenance, SitePage, SiteWrites, SqliteStore, Unmatched,
};
use std::collections::{BTreeMap, BTreeSet, HashMap};

fn t(raw: &str) -> Timestamp {
    Timestamp::parse("t", raw).unwrap()
}

fn by() -> Provenance {
    Provenance {
        actor: "test".into(),
        reason: Some("conformance".into()),
    }
}

/// The first seed sites, as link targets.
fn seed_sites(n: usize) -> Vec<Site> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/data/sites.geojson"))
        .unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    v["features"].as_array().unwrap()[..n]
        .iter()
        .map(|f| Site::from_feature(f, IdPolicy::Required).unwrap())
        .collect()
}

/// A new site at `[lon, lat]`, for a promotion.
fn new_site(id: &str, lon: f64, lat: f64) -> Site {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/data/sites.geojson"))
        .unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    let mut f = v["features"][0].clone();
    f["id"] = json!(id);
    f["properties"]["id"] = json!(id);
    let d = 0.01;
    f["geometry"] = json!({"type": "Polygon", "coordinates": [[
        [lon - d, lat - d], [lon + d, lat - d], [lon + d, lat + d], [lon - d, lat + d], [lon - d, lat - d]
    ]]});
    Site::from_feature(&f, IdPolicy::Required).unwrap()
}

/// Both stores, and the ids PostgreSQL gave to rows SQLite gave other ids.
struct Pair {
    lite: SqliteStore,
    pg: PgStore,
    ids: HashMap<String, String>,
}

/// One observation to write, with its links.
struct Planned {
    obs: Observation,
    links: Vec<SiteLink>,
}

/// Random observations around `[lon, lat]`, at one of a few times each (so
/// that many share a time and the id decides their order).
fn planned(
    rng: &mut ChaCha8Rng,
    n: usize,
    centre: [f64; 2],
    spread: f64,
    days: &[&str],
    sites: &[Site],
    tag: &str,
) -> Vec<Planned> {
    const FINDINGS: &[&str] = &[
        "excavation",
        "new_construction",
        "vehicle_activity",
        "other",
    ];
    (0..n)
        .map(|i| {
            let lon = (centre[0] + rng.random_range(-spread..spread)).clamp(-180.0, 180.0);
            let lat = (centre[1] + rng.random_range(-spread..spread)).clamp(-90.0, 90.0);
            let geometry = if rng.random_bool(0.25) {
                let d = rng.random_range(0.001..0.05);
                let (w, e) = ((lon - d).max(-180.0), (lon + d).min(180.0));
                let (s, n) = ((lat - d).max(-90.0), (lat + d).min(90.0));
                json!({"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]})
            } else {
                json!({"type": "Point", "coordinates": [lon, lat]})
            };
            let mut props = json!({
                "observed_at": days[rng.random_range(0..days.len())],
                "sensor": "optical",
                "finding": FINDINGS[rng.random_range(0..FINDINGS.len())],
                "confidence": "medium",
            });
            if rng.random_bool(0.4) {
                props["source"] = json!(if rng.random_bool(0.5) { "agency" } else { "press" });
            }
            if rng.random_bool(0.5) {
                props["external_id"] = json!(format!("{tag}-{i}"));
                props["description"] = json!(format!("observation {tag} {i}"));
            }
            let obs = Observation::from_feature(
                &json!({"type": "Feature", "geometry": geometry, "properties": props}),
            )
            .unwrap();
            let links = if !sites.is_empty() && i % 3 == 0 {
                let mut picked: Vec<&Site> = vec![&sites[rng.random_range(0..sites.len())]];
                if rng.random_bool(0.5) {
                    let other = &sites[rng.random_range(0..sites.len())];
                    if other.id != picked[0].id {
                        picked.push(other);
                    }
                }
                picked
                    .into_iter()
                    .map(|s| SiteLink {
                        site_id: s.id.clone(),
                        how: [LinkHow::Named, LinkHow::Intersects, LinkHow::Nearest]
                            [rng.random_range(0..3)],
                        distance_m: rng.random_range(0.0..5_000.0),
                    })
                    .collect()
            } else {
                Vec::new()
            };
            Planned { obs, links }
        })
        .collect()
}

/// An unmatched observation as a comparable value.
type Near = (
    String,
    [f64; 2],
    Timestamp,
    Option<String>,
    bool,
    Option<i64>,
);

impl Pair {
    fn lite_id(&self, pg: &str) -> String {
        self.ids.get(pg).cloned().unwrap_or_else(|| pg.to_owned())
    }

    fn pg_id(&self, lite: &str) -> String {
        self.ids
            .iter()
            .find(|(_, l)| l.as_str() == lite)
            .map_or_else(|| lite.to_owned(), |(p, _)| p.clone())
    }

    fn obs(&self, mut o: StoredObservation) -> StoredObservation {
        o.id = self.lite_id(&o.id);
        o.candidate_id = o.candidate_id.map(|c| self.lite_id(&c));
        o
    }

    fn observations(&self, found: Vec<StoredObservation>) -> Vec<StoredObservation> {
        found.into_iter().map(|o| self.obs(o)).collect()
    }
}

/// Link distances to ten significant digits: SQLite's store reads them back
/// through its JSON text, which can move the last digit of the double.
fn rounded(mut found: Vec<StoredObservation>) -> Vec<StoredObservation> {
    for o in &mut found {
        for l in &mut o.sites {
            l.distance_m = format!("{:.9e}", l.distance_m).parse().unwrap();
        }
    }
    found
}

impl Pair {
    /// A candidate with PostgreSQL's ids translated; the decision time,
    /// which is the clock's, only as whether there is one.
    fn candidate(&self, mut c: Candidate, translate: bool) -> Candidate {
        if translate {
            c.id = self.lite_id(&c.id);
            c.observation_ids = c.observation_ids.iter().map(|o| self.lite_id(o)).collect();
        }
        c.decided_at = c.decided_at.map(|_| Timestamp::from_epoch_micros(0));
        c
    }
}

/// A batch's record as a comparable value. The report is compared as JSON
/// values, whose members have no order: `jsonb` keeps its own.
fn batch_view(b: &BatchRecord) -> (String, Value) {
    (
        format!(
            "{} {} {} {} {} {}",
            b.id, b.received_at, b.origin, b.content_hash, b.mode, b.stored
        ),
        b.report.clone(),
    )
}

/// Writes one batch to both stores in step, translating ids; candidates are
/// made of `groups` (indexes into the batch's observations, then more
/// members for the first of `extend` candidates ids of earlier batches).
#[allow(clippy::too_many_arguments)]
fn write_batch(
    pair: &mut Pair,
    batch: &str,
    at: Timestamp,
    plan: &[Planned],
    groups: &[Vec<usize>],
    extend: Option<(&str, Vec<usize>)>,
    probes: &[(LonLat, f64)],
    commit: bool,
) -> Vec<String> {
    let Pair { lite, pg, ids } = pair;
    let lite_unit = lite.begin_batch(batch, at).unwrap();
    let pg_unit = pg.begin_batch(batch, at).unwrap();
    let mut written = Vec::new();
    for (i, p) in plan.iter().enumerate() {
        let l = lite_unit.insert_observation(i, &p.obs, &p.links).unwrap();
        let g = pg_unit.insert_observation(i, &p.obs, &p.links).unwrap();
        ids.insert(g, l.clone());
        written.push(l);
        // Ids are made from the clock's milliseconds first: a new one for
        // each observation orders them the same way in both stores.
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let pg_of = |ids: &HashMap<String, String>, l: &str| {
        ids.iter()
            .find(|(_, v)| v.as_str() == l)
            .map(|(k, _)| k.clone())
            .unwrap()
    };
    let member = |i: usize| {
        let cell = ClusterCell::of(plan[i].obs.place.anchor());
        (written[i].clone(), cell)
    };
    for g in groups {
        let at = plan[g[0]].obs.place.anchor();
        let lite_members: Vec<(String, ClusterCell)> = g.iter().map(|&i| member(i)).collect();
        let pg_members: Vec<(String, ClusterCell)> = lite_members
            .iter()
            .map(|(l, c)| (pg_of(ids, l), *c))
            .collect();
        let l = lite_unit.create_candidate(at, &lite_members).unwrap();
        let p = pg_unit.create_candidate(at, &pg_members).unwrap();
        ids.insert(p, l);
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    if let Some((candidate, more)) = &extend {
        let lite_members: Vec<(String, ClusterCell)> = more.iter().map(|&i| member(i)).collect();
        let pg_members: Vec<(String, ClusterCell)> = lite_members
            .iter()
            .map(|(l, c)| (pg_of(ids, l), *c))
            .collect();
        lite_unit
            .add_to_candidate(candidate, &lite_members)
            .unwrap();
        pg_unit
            .add_to_candidate(&pg_of(ids, candidate), &pg_members)
            .unwrap();
        // The cube of the first new member holds at least that member.
        let cell = lite_members[0].1;
        let lite_found = lite_unit.candidate_members_in(candidate, cell).unwrap();
        let pg_found = pg_unit
            .candidate_members_in(&pg_of(ids, candidate), cell)
            .unwrap();
        let tr = Pair::near_with(ids);
        assert!(!lite_found.is_empty());
        assert_eq!(tr(pg_found, true), tr(lite_found, false));
    }
    // The unit sees what it wrote, and earlier batches.
    let tr = Pair::near_with(ids);
    for &(p, radius) in probes {
        let lite_found = lite_unit.unmatched_near(p, radius).unwrap();
        let pg_found = pg_unit.unmatched_near(p, radius).unwrap();
        assert_eq!(
            tr(pg_found, true),
            tr(lite_found, false),
            "unmatched near {p:?} within {radius} m"
        );
    }
    for p in plan
        .iter()
        .filter_map(|p| p.obs.external_id.as_ref().map(|e| (p, e)))
    {
        let (p, e) = p;
        let l = lite_unit
            .existing_external(p.obs.source.as_deref(), e)
            .unwrap();
        let g = pg_unit
            .existing_external(p.obs.source.as_deref(), e)
            .unwrap();
        assert!(l.is_some());
        assert_eq!(g.map(|g| ids[&g].clone()), l);
        let other = if p.obs.source.is_some() {
            None
        } else {
            Some("elsewhere")
        };
        assert_eq!(pg_unit.existing_external(other, e).unwrap(), None);
        assert_eq!(lite_unit.existing_external(other, e).unwrap(), None);
    }
    assert_eq!(
        pg_unit.stored_batch_with_hash("hash-1").unwrap(),
        lite_unit.stored_batch_with_hash("hash-1").unwrap()
    );
    if commit {
        let report =
            json!({"features": plan.len(), "accepted": plan.len(), "summary": "ok", "ratio": 0.1});
        let hash = format!("hash-{}", &batch[6..]);
        lite_unit
            .commit("test.geojson", &hash, "atomic", &report)
            .unwrap();
        pg_unit
            .commit("test.geojson", &hash, "atomic", &report)
            .unwrap();
    } else {
        lite_unit.rollback().unwrap();
        pg_unit.rollback().unwrap();
    }
    written
}

impl Pair {
    /// [`Pair::near`] with only the id map at hand.
    fn near_with(
        ids: &HashMap<String, String>,
    ) -> impl Fn(Vec<Unmatched>, bool) -> BTreeSet<String> + '_ {
        move |found, translate| {
            found
                .into_iter()
                .map(|u| {
                    let id = |s: String| {
                        if translate {
                            ids.get(&s).cloned().unwrap_or(s)
                        } else {
                            s
                        }
                    };
                    let n: Near = (
                        id(u.id),
                        u.anchor.to_array(),
                        u.observed_at,
                        u.candidate_id.map(id),
                        u.candidate_open,
                        u.cell.map(ClusterCell::key),
                    );
                    format!("{n:?}")
                })
                .collect()
        }
    }
}

/// Pages through `read` in both stores, each with its own cursor, and checks
/// each page is the same; returns every row.
fn same_pages(
    pair: &Pair,
    what: &str,
    read: impl Fn(&dyn ObservationReads, Option<&Before>) -> Vec<StoredObservation>,
) -> Vec<StoredObservation> {
    let (mut lite_after, mut pg_after): (Option<Before>, Option<Before>) = (None, None);
    let mut all = Vec::new();
    for _ in 0..200 {
        let lite = rounded(read(&pair.lite, lite_after.as_ref()));
        let pg = rounded(pair.observations(read(&pair.pg, pg_after.as_ref())));
        if pg != lite {
            let i = (0..lite.len().max(pg.len()))
                .find(|&i| pg.get(i) != lite.get(i))
                .unwrap_or_default();
            panic!(
                "{what}, after {lite_after:?}: {} rows in PostgreSQL, {} in SQLite; first differing, #{i}:\n{:?}\n{:?}",
                pg.len(),
                lite.len(),
                pg.get(i),
                lite.get(i)
            );
        }
        let (Some(l), Some(p)) = (lite.last(), pg.last()) else {
            return all;
        };
        lite_after = Some(Before {
            time: l.observed_at.to_rfc3339(),
            id: l.id.clone(),
        });
        pg_after = Some(Before {
            time: p.observed_at.to_rfc3339(),
            id: pair.pg_id(&p.id),
        });
        all.extend(lite);
    }
    panic!("{what}: the pages never ended");
}

#[test]
fn the_postgres_store_answers_every_observation_read_as_the_sqlite_store_does() {
    let Some(cluster) = pg_cluster::Cluster::start() else {
        return;
    };
    let mut pair = Pair {
        lite: SqliteStore::open_in_memory().unwrap(),
        pg: PgStore::connect(&cluster.url()).unwrap(),
        ids: HashMap::new(),
    };
    let sites = seed_sites(5);
    pair.lite.apply_sites(&sites, &by()).unwrap();
    pair.pg.apply_sites(&sites, &by()).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let days1 = [
        "2024-01-01T00:00:00Z",
        "2024-01-02T06:00:00Z",
        "2024-01-05T12:30:00.5Z",
        "2024-02-01T00:00:00Z",
    ];
    let days3 = [
        "2024-02-01T00:00:00Z",
        "2024-03-10T00:00:00Z",
        "2024-03-11T23:59:59.999999Z",
    ];

    // The first batch: links, two candidates, and one extended in the third.
    let plan1 = planned(&mut rng, 36, [125.8, 39.8], 0.6, &days1, &sites, "a");
    let free: Vec<usize> = (0..plan1.len())
        .filter(|&i| plan1[i].links.is_empty())
        .collect();
    let probes: Vec<(LonLat, f64)> = (0..8)
        .map(|i| {
            let a = plan1[free[i]].obs.place.anchor();
            (a, [500.0, 5_000.0, 30_000.0, 80_000.0][i % 4])
        })
        .collect();
    let groups = vec![free[0..3].to_vec(), free[3..5].to_vec()];
    let written1 = write_batch(
        &mut pair,
        "batch-1",
        t("2024-04-01T00:00:00Z"),
        &plan1,
        &groups,
        None,
        &probes,
        true,
    );
    let cand_a = pair.lite.observation(&written1[free[0]]).unwrap().unwrap();
    let cand_a = cand_a.candidate_id.unwrap();
    let cand_b = pair
        .lite
        .observation(&written1[free[3]])
        .unwrap()
        .unwrap()
        .candidate_id
        .unwrap();

    // A batch rolled back leaves nothing behind.
    let plan2 = planned(&mut rng, 5, [125.8, 39.8], 0.6, &days1, &sites, "b");
    let written2 = write_batch(
        &mut pair,
        "batch-2",
        t("2024-04-02T00:00:00Z"),
        &plan2,
        &[vec![0, 1]],
        None,
        &[],
        false,
    );
    for id in &written2 {
        assert!(pair.lite.observation(id).unwrap().is_none());
        assert!(pair.pg.observation(&pair.pg_id(id)).unwrap().is_none());
    }

    // A rejected batch is recorded, and stores nothing.
    let rejected = BatchRecord {
        id: "batch-rejected".into(),
        received_at: t("2024-04-03T00:00:00Z"),
        origin: "bad.geojson".into(),
        content_hash: "hash-bad".into(),
        mode: "partial".into(),
        stored: false,
        report: json!({"features": 3, "rejected": 3, "errors": [{"feature": 1, "reason": "bad"}]}),
    };
    pair.lite.record_batch(&rejected).unwrap();
    pair.pg.record_batch(&rejected).unwrap();

    // The third batch: far-off places (across the antimeridian, near a
    // pole), more members for the first candidate, probes everywhere.
    let mut plan3 = planned(&mut rng, 12, [125.8, 39.8], 0.6, &days3, &sites, "c");
    plan3.extend(planned(&mut rng, 6, [179.99, 10.0], 0.02, &days3, &[], "d"));
    plan3.extend(planned(
        &mut rng,
        6,
        [-179.99, 10.0],
        0.02,
        &days3,
        &[],
        "e",
    ));
    plan3.extend(planned(&mut rng, 6, [30.0, 89.95], 0.04, &days3, &[], "f"));
    let free3: Vec<usize> = (0..12).filter(|&i| plan3[i].links.is_empty()).collect();
    let mut probes3: Vec<(LonLat, f64)> = probes.clone();
    for (lon, lat) in [
        (180.0, 10.0),
        (-179.995, 10.01),
        (30.0, 90.0),
        (-150.0, 89.99),
    ] {
        for radius in [1_000.0, 4_000.0, 20_000.0] {
            probes3.push((LonLat::parse("p", lon, lat).unwrap(), radius));
        }
    }
    write_batch(
        &mut pair,
        "batch-3",
        t("2024-04-04T00:00:00.000001Z"),
        &plan3,
        &[vec![12, 13], vec![24, 25, 26]],
        Some((&cand_a, free3[..2].to_vec())),
        &probes3,
        true,
    );

    // Decisions: one dismissed, one promoted to a new site.
    assert!(
        pair.lite
            .dismiss_candidate(&cand_b, Some("a shadow"))
            .unwrap()
    );
    assert!(
        pair.pg
            .dismiss_candidate(&pair.pg_id(&cand_b), Some("a shadow"))
            .unwrap()
    );
    assert!(!pair.lite.dismiss_candidate(&cand_b, None).unwrap());
    assert!(
        !pair
            .pg
            .dismiss_candidate(&pair.pg_id(&cand_b), None)
            .unwrap()
    );
    let members = pair.lite.candidate_members(&cand_a).unwrap();
    let lite_links: Vec<(String, f64)> = members
        .iter()
        .enumerate()
        .map(|(i, (id, _))| (id.clone(), 10.0 * i as f64))
        .collect();
    let pg_links: Vec<(String, f64)> = lite_links
        .iter()
        .map(|(id, d)| (pair.pg_id(id), *d))
        .collect();
    let site = new_site("promoted-site", 125.8, 39.8);
    let lite_rev = pair
        .lite
        .promote_candidate(&cand_a, &site, &lite_links, &by())
        .unwrap()
        .unwrap();
    let pg_rev = pair
        .pg
        .promote_candidate(&pair.pg_id(&cand_a), &site, &pg_links, &by())
        .unwrap()
        .unwrap();
    assert_eq!(
        (pg_rev.revision, pg_rev.change, &pg_rev.diff, &pg_rev.actor),
        (
            lite_rev.revision,
            lite_rev.change,
            &lite_rev.diff,
            &lite_rev.actor
        )
    );
    assert!(
        pair.pg
            .promote_candidate(&pair.pg_id(&cand_a), &site, &pg_links, &by())
            .unwrap()
            .is_none()
    );
    assert!(
        pair.pg
            .promote_candidate("cand-none", &new_site("other", 1.0, 1.0), &[], &by())
            .unwrap()
            .is_none()
    );

    check_reads(&pair, &sites, &site);
}

/// Every read, with several filters, in both stores.
fn check_reads(pair: &Pair, sites: &[Site], promoted: &Site) {
    let (lite, pg) = (&pair.lite, &pair.pg);

    // Batches, paged by time, and with a bound that is not a stored time's text.
    let all: Vec<(String, Value)> = lite
        .batches(100, None)
        .unwrap()
        .iter()
        .map(batch_view)
        .collect();
    assert_eq!(all.len(), 3, "{all:?}");
    assert_eq!(
        pg.batches(100, None)
            .unwrap()
            .iter()
            .map(batch_view)
            .collect::<Vec<_>>(),
        all
    );
    for limit in [1, 2] {
        let (mut lb, mut pb): (Option<String>, Option<String>) = (None, None);
        loop {
            let l = lite.batches(limit, lb.as_deref()).unwrap();
            let p = pg.batches(limit, pb.as_deref()).unwrap();
            assert_eq!(
                p.iter().map(batch_view).collect::<Vec<_>>(),
                l.iter().map(batch_view).collect::<Vec<_>>()
            );
            let Some(last) = l.last() else { break };
            lb = Some(last.received_at.to_rfc3339());
            pb = Some(p.last().unwrap().received_at.to_rfc3339());
        }
    }
    for before in ["2024-04-02", "2024-04-03T00:00:00+00:00", "zzz", ""] {
        assert_eq!(
            pg.batches(10, Some(before))
                .unwrap()
                .iter()
                .map(batch_view)
                .collect::<Vec<_>>(),
            lite.batches(10, Some(before))
                .unwrap()
                .iter()
                .map(batch_view)
                .collect::<Vec<_>>(),
            "before {before:?}"
        );
    }
    for hash in ["hash-1", "hash-3", "hash-2", "hash-bad", "nothing"] {
        assert_eq!(
            pg.stored_batch_with_hash(hash).unwrap(),
            lite.stored_batch_with_hash(hash).unwrap(),
            "{hash}"
        );
    }
    assert_eq!(
        lite.stored_batch_with_hash("hash-3").unwrap().as_deref(),
        Some("batch-3")
    );

    // Statistics and extents.
    let stats = |s: &dyn ObservationReads| -> BTreeMap<String, (Timestamp, u64)> {
        s.observation_stats()
            .unwrap()
            .iter()
            .map(|(id, st)| (id.to_string(), (st.last_observed_at, st.count)))
            .collect()
    };
    let lite_stats = stats(lite);
    assert!(lite_stats.contains_key(promoted.id.as_str()));
    assert_eq!(stats(pg), lite_stats);
    assert_eq!(
        pg.first_event_times().unwrap().0,
        lite.first_event_times().unwrap().0
    );
    assert!(pg.first_event_times().unwrap().1.is_some());
    assert_eq!(
        pg.observation_extent().unwrap(),
        lite.observation_extent().unwrap()
    );
    assert_eq!(
        pg.candidate_extent().unwrap(),
        lite.candidate_extent().unwrap()
    );

    // Every observation by id, through the newest-first listing of all.
    let everything = same_pages(pair, "all observations", |s, after| {
        s.observations_in(None, None, None, &[], after, 1000)
            .unwrap()
    });
    assert_eq!(everything.len(), 36 + 30);
    for o in &everything {
        let p = pg.observation(&pair.pg_id(&o.id)).unwrap();
        assert_eq!(
            rounded(p.into_iter().map(|p| pair.obs(p)).collect()),
            std::slice::from_ref(o)
        );
    }

    // Boxes, windows and findings, paged by cursor, and counted.
    let first = &everything[everything.len() / 2];
    let [fw, fs, fe, fn_] = first.place.lonlat_bounds();
    let rects: Vec<Option<[f64; 4]>> = vec![
        None,
        Some([-180.0, -90.0, 180.0, 90.0]),
        Some([125.5, 39.5, 126.0, 40.0]),
        Some([125.0, 39.0, 125.8, 39.8]),
        Some([170.0, 0.0, 180.0, 20.0]),
        Some([-180.0, 80.0, 180.0, 90.0]),
        // Edges on an observation's box, and just beyond it: SQLite's R*Tree
        // holds boxes a little wider than the observations'.
        Some([fe, fs, fe + 0.1, fn_]),
        Some([fe + 1e-9, fs, fe + 0.1, fn_]),
        Some([fw - 0.1, fn_ + 1e-9, fw, fn_ + 0.1]),
    ];
    let windows = [
        (None, None),
        (Some(t("2024-01-02T06:00:00Z")), None),
        (None, Some(t("2024-02-01T00:00:00Z"))),
        (
            Some(t("2024-01-05T12:30:00.5Z")),
            Some(t("2024-03-10T00:00:00Z")),
        ),
    ];
    let findings: [Vec<String>; 3] = [
        vec![],
        vec!["excavation".into()],
        vec!["other".into(), "new_construction".into()],
    ];
    // Both stores keep the box a hair wider than the observation: a query
    // box that starts just past its east edge still finds it.
    let past_east = Some([fe + 1e-9, fs, fe + 0.1, fn_]);
    for s in [lite as &dyn ObservationReads, pg] {
        let found = s
            .observations_in(past_east, None, None, &[], None, 1000)
            .unwrap();
        assert!(
            found.iter().any(|o| pair.lite_id(&o.id) == first.id),
            "{past_east:?}"
        );
    }
    let mut nonempty = 0;
    for rect in &rects {
        for (since, until) in windows {
            for f in &findings {
                let what = format!("{rect:?} {since:?}..{until:?} {f:?}");
                let rows = same_pages(pair, &what, |s, after| {
                    s.observations_in(*rect, since, until, f, after, 4).unwrap()
                });
                nonempty += usize::from(!rows.is_empty());
                for cap in [0, 3, 1000] {
                    let n = lite
                        .count_observations(*rect, since, until, f, cap)
                        .unwrap();
                    assert_eq!(
                        pg.count_observations(*rect, since, until, f, cap).unwrap(),
                        n,
                        "count {what} up to {cap}"
                    );
                    if rect.is_none() || *rect == Some([-180.0, -90.0, 180.0, 90.0]) {
                        assert_eq!(n, rows.len().min(cap), "count {what} up to {cap}");
                    }
                }
            }
        }
    }
    assert!(nonempty > 40, "only {nonempty} listings found anything");

    // Each site's observations, both ways, in windows, paged.
    let mut linked = 0;
    for site in sites.iter().chain([promoted]) {
        for (from, to) in windows {
            for newest_first in [false, true] {
                let what = format!("{} {from:?}..{to:?} newest first {newest_first}", site.id);
                let rows = same_pages(pair, &what, |s, after| {
                    let page = SitePage {
                        newest_first,
                        after,
                        limit: 3,
                    };
                    s.site_observations(&site.id, from, to, page).unwrap()
                });
                linked += rows.len();
            }
        }
    }
    assert!(linked > 20, "only {linked} linked observations listed");

    // Candidates in every state, one by one, and their members.
    let candidates = |s: &dyn CandidateReads, state, translate| -> Vec<Candidate> {
        s.candidates(state)
            .unwrap()
            .into_iter()
            .map(|c| pair.candidate(c, translate))
            .collect()
    };
    for state in [
        None,
        Some(CandidateState::Open),
        Some(CandidateState::Promoted),
        Some(CandidateState::Dismissed),
    ] {
        let l = candidates(lite, state, false);
        assert!(!l.is_empty(), "{state:?}");
        assert_eq!(candidates(pg, state, true), l, "{state:?}");
    }
    for c in lite.candidates(None).unwrap() {
        let p = pg.candidate(&pair.pg_id(&c.id)).unwrap().unwrap();
        assert_eq!(pair.candidate(p, true), pair.candidate(c.clone(), false));
        let members = |s: &dyn CandidateReads, id: &str| -> Vec<(String, [f64; 2])> {
            s.candidate_members(id)
                .unwrap()
                .into_iter()
                .map(|(m, at)| (pair.lite_id(&m), at.to_array()))
                .collect()
        };
        let mut pg_members = members(pg, &pair.pg_id(&c.id));
        pg_members.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(pg_members, members(lite, &c.id));
    }
    assert!(pg.candidate("cand-none").unwrap().is_none());
    assert_eq!(
        pg.candidate(
            &pair.pg_id(
                &pair
                    .lite
                    .candidates(Some(CandidateState::Promoted))
                    .unwrap()[0]
                    .id
            )
        )
        .unwrap()
        .unwrap()
        .site_id
        .as_ref(),
        Some(&promoted.id)
    );

    // The change log holds the same entries in the same order.
    let log = |s: &dyn ChangeLogReads, translate: bool| -> Vec<String> {
        s.log_after(0, 1000)
            .unwrap()
            .into_iter()
            .map(|e| {
                let c = e
                    .candidate_id
                    .map(|c| if translate { pair.lite_id(&c) } else { c });
                format!(
                    "{:?} {:?} {:?} {:?} {c:?} {:?}",
                    e.kind, e.site_id, e.revision, e.batch_id, e.bbox
                )
            })
            .collect()
    };
    let lite_log = log(lite, false);
    assert!(lite_log.iter().any(|e| e.starts_with("CandidateDismissed")));
    assert_eq!(log(pg, true), lite_log);
}

#[test]
fn a_batch_that_fails_midway_stores_nothing_and_the_next_one_lands() {
    let Some(cluster) = pg_cluster::Cluster::start() else {
        return;
    };
    let mut pg = PgStore::connect(&cluster.url()).unwrap();
    let obs = |ext: &str| {
        Observation::from_feature(&json!({"type": "Feature",
            "geometry": {"type": "Point", "coordinates": [10.0, 20.0]},
            "properties": {"observed_at": "2024-05-01T00:00:00Z", "sensor": "s",
                "finding": "other", "source": "x", "external_id": ext}}))
        .unwrap()
    };
    {
        let unit = pg
            .begin_batch("batch-a", t("2024-05-02T00:00:00Z"))
            .unwrap();
        // More than one sending's worth, so that some have reached the
        // server when the batch breaks.
        for i in 0..10_000 {
            unit.insert_observation(i, &obs(&format!("n{i}")), &[])
                .unwrap();
        }
        // The same sender's id twice breaks the unique index (as a sender
        // repeating itself would not: the importer asks `existing_external`
        // first): the unit's transaction fails when they are sent, and is
        // rolled back whole.
        unit.insert_observation(10_000, &obs("n0"), &[]).unwrap();
        assert!(
            unit.commit("a.geojson", "hash-a", "atomic", &json!({}))
                .is_err()
        );
    }
    assert!(pg.batches(10, None).unwrap().is_empty());
    assert_eq!(pg.count_observations(None, None, None, &[], 10).unwrap(), 0);
    let unit = pg
        .begin_batch("batch-b", t("2024-05-03T00:00:00Z"))
        .unwrap();
    assert_eq!(unit.existing_external(Some("x"), "one").unwrap(), None);
    let id = unit.insert_observation(0, &obs("one"), &[]).unwrap();
    assert_eq!(
        unit.existing_external(Some("x"), "one").unwrap(),
        Some(id.clone())
    );
    unit.commit("b.geojson", "hash-b", "atomic", &json!({}))
        .unwrap();
    let stored = pg.observation(&id).unwrap().unwrap();
    assert_eq!(stored.batch_id, "batch-b");
    assert_eq!(stored.place.anchor().to_array(), [10.0, 20.0]);
    let batches = pg.batches(10, None).unwrap();
    assert_eq!(batches.len(), 1);
    assert!(batches[0].stored);
    assert_eq!(
        pg.observation_extent().unwrap(),
        Some((
            [10.0, 20.0, 10.0, 20.0],
            t("2024-05-01T00:00:00Z"),
            t("2024-05-01T00:00:00Z")
        ))
    );
}
