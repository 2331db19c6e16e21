//! The PostgreSQL store against the SQLite one, which is its specification:
//! the same writes go to both, and every read of sites, history, the change
//! log and the meta values must give the same answer. Each test starts a
//! PostgreSQL cluster of its own; without PostgreSQL and PostGIS they say why
//! and skip, except under CI.
//!
//! The two stores record their own clocks, so a time is compared as the step
//! of the script it fell in: after each step both stores have written it, and
//! a moment is taken before the next one starts.

#[path = "support/pg_cluster.rs"]
mod pg_cluster;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};
use sitewatch::model::{IdPolicy, Site, SiteId, Timestamp};
use sitewatch::store::postgres::PgStore;
use sitewatch::store::{
    Abandoned, Before, ChangeLogReads, Conditional, HistoryReads, Meta, Provenance, Revision,
    RevisionRow, SiteReads, SiteWrites, SqliteStore, StoreError,
};
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

/// What both stores implement and these tests exercise.
trait Store: SiteReads + HistoryReads + SiteWrites + ChangeLogReads + Meta {}
impl<T: SiteReads + HistoryReads + SiteWrites + ChangeLogReads + Meta> Store for T {}

/// The same catalogue in SQLite and in PostgreSQL, and the moments between
/// the steps written to both.
struct Pair {
    sqlite: SqliteStore,
    pg: PgStore,
    moments: Vec<Timestamp>,
    _cluster: pg_cluster::Cluster,
}

impl Pair {
    fn start() -> Option<Self> {
        let cluster = pg_cluster::Cluster::start()?;
        let pg = PgStore::connect(&cluster.url()).unwrap();
        Some(Self {
            sqlite: SqliteStore::open_in_memory().unwrap(),
            pg,
            moments: Vec::new(),
            _cluster: cluster,
        })
    }

    /// Runs one step of the script on both stores, asserts that they
    /// answered the same (as `norm` sees it), and marks the moment after it.
    fn step<T, N: PartialEq + Debug>(
        &mut self,
        what: &str,
        f: impl Fn(&mut dyn Store) -> T,
        norm: impl Fn(&Self, T) -> N,
    ) -> N {
        let a = f(&mut self.sqlite);
        let b = f(&mut self.pg);
        let (a, b) = (norm(self, a), norm(self, b));
        assert_eq!(b, a, "{what}: PostgreSQL (left) and SQLite (right) differ");
        std::thread::sleep(Duration::from_millis(2));
        self.moments.push(Timestamp::now());
        std::thread::sleep(Duration::from_millis(2));
        b
    }

    /// Asks both stores the same question and asserts the same answer.
    fn same<T: PartialEq + Debug>(&self, what: &str, f: impl Fn(&dyn Store) -> T) -> T {
        let a = f(&self.sqlite);
        let b = f(&self.pg);
        assert_eq!(b, a, "{what}: PostgreSQL (left) and SQLite (right) differ");
        b
    }

    /// Which step of the script a recorded time fell in.
    fn step_of(&self, t: Timestamp) -> usize {
        self.moments.iter().filter(|m| **m < t).count()
    }
}

fn by(actor: &str) -> Provenance {
    Provenance {
        actor: actor.into(),
        reason: Some(format!("{actor} says so")),
    }
}

fn feature(id: &str, status: &str, ring: &[[f64; 2]]) -> Value {
    json!({"type": "Feature", "id": id,
        "geometry": {"type": "Polygon", "coordinates": [ring]},
        "properties": {"name": format!("Site {id}"), "country": "PRK", "kind": "reactor",
            "status": status, "sources": [{"title": "A report", "url": "https://example.org/r", "date": "2024-05-01"}]}})
}

fn site_from(f: &Value) -> Site {
    Site::from_feature(f, IdPolicy::Required).unwrap()
}

/// Seven decimals (about a centimetre), as catalogue files give positions:
/// serde_json, as the crate builds it, reads a number of 16 or more
/// significant digits back to within a unit in the last place, not always
/// exactly, and a feature stored as text is read back by it in both stores.
fn round7(x: f64) -> f64 {
    (x * 1e7).round() / 1e7
}

/// A small square site with its south-west corner at `(lon, lat)`.
fn square(id: &str, status: &str, lon: f64, lat: f64) -> Site {
    let d = 0.05;
    let (w, s, e, n) = (round7(lon), round7(lat), round7(lon + d), round7(lat + d));
    site_from(&feature(
        id,
        status,
        &[[w, s], [e, s], [e, n], [w, n], [w, s]],
    ))
}

/// A site whose footprint crosses the antimeridian.
fn across_the_dateline(id: &str) -> Site {
    site_from(&feature(
        id,
        "active",
        &[
            [179.9, -16.0],
            [-179.9, -16.0],
            [-179.9, -15.9],
            [179.9, -15.9],
            [179.9, -16.0],
        ],
    ))
}

fn id(s: &str) -> SiteId {
    SiteId::parse("id", s).unwrap()
}

fn ids(sites: &[Arc<Site>]) -> Vec<String> {
    sites.iter().map(|s| s.id.to_string()).collect()
}

/// A written revision as it can be compared across stores: its time as the
/// step it was written in.
#[derive(Debug, PartialEq)]
struct Rev {
    site: String,
    revision: i64,
    step: usize,
    actor: String,
    reason: Option<String>,
    change: String,
    /// Serialised, so that the members' order is compared too.
    diff: String,
}

impl Rev {
    fn of(p: &Pair, r: &Revision) -> Self {
        Rev {
            site: r.site_id.to_string(),
            revision: r.revision,
            step: p.step_of(r.recorded_at),
            actor: r.actor.clone(),
            reason: r.reason.clone(),
            change: r.change.as_str().to_owned(),
            diff: serde_json::to_string(&r.diff).unwrap(),
        }
    }
}

/// A [`RevisionRow`] as it can be compared across stores.
#[derive(Debug, PartialEq)]
struct Row {
    key: String,
    step: usize,
    actor: String,
    reason: Option<String>,
    change: String,
    diff: String,
    feature: String,
}

impl Row {
    fn of(p: &Pair, r: &RevisionRow) -> Self {
        Row {
            key: r.key(),
            step: p.step_of(r.recorded_at),
            actor: r.actor.clone(),
            reason: r.reason.clone(),
            change: r.change.clone(),
            diff: r.diff.to_string(),
            feature: r.feature.to_string(),
        }
    }
}

fn conditional(p: &Pair, c: Result<Conditional, StoreError>) -> String {
    match c.unwrap() {
        Conditional::Written(r) => format!("written {:?}", Rev::of(p, &r)),
        Conditional::NotFound => "not found".into(),
        Conditional::Stale => "stale".into(),
    }
}

fn written(p: &Pair, r: Result<Option<Revision>, StoreError>) -> Option<Rev> {
    r.unwrap().map(|r| Rev::of(p, &r))
}

/// Every page of a newest-first listing, each continued from the last row
/// of the one before, as the API's cursors continue it.
fn walk(
    p: &Pair,
    store: &dyn Store,
    page: usize,
    read: impl Fn(&dyn Store, Option<&Before>, usize) -> Vec<RevisionRow>,
) -> Vec<Vec<Row>> {
    let mut pages = Vec::new();
    let mut before: Option<Before> = None;
    loop {
        let rows = read(store, before.as_ref(), page);
        before = rows.last().map(|r| Before {
            time: r.recorded_at.to_rfc3339(),
            id: r.key(),
        });
        let done = rows.len() < page;
        pages.push(rows.iter().map(|r| Row::of(p, r)).collect());
        if done {
            return pages;
        }
    }
}

/// Asserts that both stores page through a listing alike.
fn same_pages(
    p: &Pair,
    what: &str,
    page: usize,
    read: impl Fn(&dyn Store, Option<&Before>, usize) -> Vec<RevisionRow>,
) -> usize {
    let a = walk(p, &p.sqlite, page, &read);
    let b = walk(p, &p.pg, page, &read);
    assert_eq!(b, a, "{what}: PostgreSQL (left) and SQLite (right) differ");
    b.iter().map(Vec::len).sum()
}

/// Every answer the reads give about the catalogue, at every moment.
fn assert_same_reads(p: &Pair, known: &[&str], rects: &[[f64; 4]]) {
    let live = p.same("live sites", |s| s.live_sites().unwrap());
    p.same("retired sites", |s| s.retired_sites().unwrap());
    p.same("site count", |s| s.site_count().unwrap());
    assert!(!live.is_empty());
    let mut times: Vec<Option<Timestamp>> = p.moments.iter().copied().map(Some).collect();
    times.push(None);
    for &t in &times {
        if let Some(t) = t {
            p.same("sites as of", |s| s.sites_as_of(t).unwrap());
            p.same("retired sites as of", |s| s.retired_sites_as_of(t).unwrap());
            for i in known {
                p.same("one site as of", |s| s.site_as_of(&id(i), t).unwrap());
                p.same("one retired site as of", |s| {
                    s.retired_site_as_of(&id(i), t).unwrap()
                });
            }
        }
        for retired in [false, true] {
            for rect in rects {
                p.same(&format!("sites in {rect:?} at {t:?}"), |s| {
                    let mut found = ids(&s.sites_in_area_at(t, retired, &[*rect]).unwrap());
                    // SQLite gives them in its R*Tree's order.
                    found.sort();
                    found
                });
            }
            p.same("sites in several boxes", |s| {
                let mut found = ids(&s.sites_in_area_at(t, retired, rects).unwrap());
                found.sort();
                found
            });
            // Paged by id, three at a time, to the end.
            p.same("sites at, paged", |s| {
                let mut all = Vec::new();
                let mut after: Option<SiteId> = None;
                loop {
                    let page = s.sites_at_from(t, retired, after.as_ref(), 3).unwrap();
                    after = page.last().map(|s| s.id.clone());
                    let done = page.len() < 3;
                    all.push(page);
                    if done {
                        return all;
                    }
                }
            });
        }
    }
    for i in known.iter().chain(&["nowhere"]) {
        p.same("retired site", |s| s.retired_site(&id(i)).unwrap());
        p.same("site known", |s| s.site_known(i).unwrap());
        let a: Vec<Rev> = p
            .sqlite
            .revisions(&id(i))
            .unwrap()
            .iter()
            .map(|r| Rev::of(p, r))
            .collect();
        let b: Vec<Rev> =
            p.pg.revisions(&id(i))
                .unwrap()
                .iter()
                .map(|r| Rev::of(p, r))
                .collect();
        assert_eq!(b, a, "revisions of {i}");
    }

    // History, in windows between the moments, paged small.
    let n = p.moments.len();
    let windows = [
        (None, None),
        (Some(p.moments[0]), None),
        (None, Some(p.moments[n / 2])),
        (Some(p.moments[1]), Some(p.moments[n - 2])),
    ];
    for (since, until) in windows {
        same_pages(p, "revisions between", 4, |s, b, l| {
            s.revisions_between(None, since, until, b, l).unwrap()
        });
        for i in known {
            same_pages(p, "one site's revisions between", 2, |s, b, l| {
                s.revisions_between(Some(i), since, until, b, l).unwrap()
            });
            let a: Vec<Row> = p
                .sqlite
                .site_revisions_between(i, since, until)
                .unwrap()
                .iter()
                .map(|r| Row::of(p, r))
                .collect();
            let b: Vec<Row> =
                p.pg.site_revisions_between(i, since, until)
                    .unwrap()
                    .iter()
                    .map(|r| Row::of(p, r))
                    .collect();
            assert_eq!(b, a, "site revisions between, {i}");
        }
        for rect in rects {
            same_pages(p, &format!("revisions in {rect:?}"), 3, |s, b, l| {
                s.revisions_in_area(*rect, since, until, b, l).unwrap()
            });
        }
    }

    // The change log, paged, and its head.
    let log = |s: &dyn Store| {
        let mut all = Vec::new();
        let mut after = 0;
        loop {
            let page = s.log_after(after, 5).unwrap();
            let Some(last) = page.last() else {
                return all;
            };
            after = last.seq;
            for e in page {
                let at = Timestamp::parse("at", &e.at).unwrap();
                all.push((e.seq, p.step_of(at), e.kind, e.site_id, e.revision, e.bbox));
            }
        }
    };
    let entries = p.same("the change log", log);
    let head = p.same("the log head", |s| s.log_head().unwrap());
    assert_eq!(head, entries.last().unwrap().0);
}

#[test]
fn a_scripted_history_reads_back_from_postgres_as_it_does_from_sqlite() {
    let Some(mut p) = Pair::start() else { return };
    p.same("an empty log", |s| s.log_head().unwrap());
    p.same("no meta", |s| s.meta("corrections").unwrap());
    let mut batch = sitewatch::synth::sites(12, 5);
    batch.extend([
        square("a", "active", 125.0, 39.0),
        square("b", "active", 125.1, 39.1),
        square("c", "active", -70.0, -33.0),
        across_the_dateline("dateline"),
    ]);
    let report = p.step(
        "a first import",
        |s| s.apply_sites(&batch, &by("import")).unwrap(),
        |_, r| r,
    );
    assert_eq!(report.created.len(), 16);
    p.step(
        "the same import again",
        |s| s.apply_sites(&batch, &by("import")).unwrap(),
        |_, r| r,
    );

    // An update, named twice in one batch, and a site new to the catalogue.
    let renamed = {
        let mut f = square("a", "inactive", 125.0, 39.0).to_feature();
        f["properties"]["name"] = json!("Site a, renamed");
        site_from(&f)
    };
    let moved = square("a", "inactive", 125.3, 39.2);
    p.step(
        "updates",
        |s| {
            s.apply_sites(
                &[
                    renamed.clone(),
                    moved.clone(),
                    square("d", "active", 10.0, 50.0),
                ],
                &by("editor"),
            )
            .unwrap()
        },
        |_, r| r,
    );
    let replaced = square("b", "abandoned", 125.1, 39.1);
    p.step(
        "a replacement",
        |s| s.replace_site(&replaced, &by("editor")),
        written,
    );
    p.step(
        "a replacement that changes nothing",
        |s| s.replace_site(&replaced, &by("someone else")),
        written,
    );
    p.step(
        "a retirement",
        |s| s.retire_site(&id("c"), &by("editor")),
        written,
    );
    p.step(
        "a retirement of a retired site",
        |s| s.retire_site(&id("c"), &by("editor")),
        written,
    );
    p.step(
        "a replacement of a retired site",
        |s| s.replace_site(&square("c", "active", -70.0, -33.0), &by("editor")),
        written,
    );
    p.step(
        "a creation over a live site",
        |s| s.create_site(&square("a", "active", 0.0, 0.0), &by("editor")),
        written,
    );
    p.step(
        "a retirement across the dateline",
        |s| s.retire_site(&id("dateline"), &by("editor")),
        written,
    );
    p.step(
        "a restoration",
        |s| s.create_site(&square("c", "active", -70.5, -33.0), &by("editor")),
        written,
    );

    // Conditional writes against the version a client read.
    let tag_of_b = p.same("b as read", |s| {
        s.live_sites()
            .unwrap()
            .iter()
            .find(|x| x.id.as_str() == "b")
            .unwrap()
            .tag()
    });
    let stale = vec!["0123456789abcdef".to_owned()];
    let current = vec![tag_of_b.clone()];
    let b2 = square("b", "active", 125.1, 39.1);
    let stale_answer = p.step(
        "a replacement of a stale version",
        |s| s.replace_site_if(&b2, &by("editor"), Some(&stale)),
        conditional,
    );
    assert_eq!(stale_answer, "stale");
    p.step(
        "a replacement of the current version",
        |s| s.replace_site_if(&b2, &by("editor"), Some(&current)),
        conditional,
    );
    p.step(
        "a second replacement of the version now gone",
        |s| s.replace_site_if(&b2, &by("editor"), Some(&current)),
        conditional,
    );
    p.step(
        "a retirement of a stale version",
        |s| s.retire_site_if(&id("b"), &by("editor"), Some(&stale)),
        conditional,
    );
    p.step(
        "a conditional retirement of an unknown site",
        |s| s.retire_site_if(&id("nowhere"), &by("editor"), None),
        conditional,
    );

    // Writes that land with a mark, and writes that are abandoned.
    p.step(
        "corrections with their mark",
        |s| {
            s.apply_sites_marked(
                &[
                    (square("d", "inactive", 10.0, 50.0), by("corrector")),
                    (square("e", "active", 10.2, 50.0), by("corrector")),
                ],
                "corrections",
                "2024-06",
            )
            .unwrap()
        },
        |_, r| r,
    );
    let abandoned = p.step(
        "an abandoned import",
        |s| {
            let mut chunks = vec![
                Ok(vec![square("f", "active", 20.0, 20.0)]),
                Err(Abandoned),
                Ok(vec![square("g", "active", 21.0, 20.0)]),
            ]
            .into_iter();
            s.apply_site_chunks(&mut chunks, &by("import")).map(|_| ())
        },
        |_, r| format!("{r:?}"),
    );
    assert!(abandoned.contains("Abandoned"), "{abandoned}");
    p.step(
        "an import in chunks",
        |s| {
            let mut chunks = vec![
                Ok(vec![
                    square("f", "active", 20.0, 20.0),
                    square("a", "active", 125.3, 39.2),
                ]),
                Ok(vec![
                    square("f", "inactive", 20.0, 20.0),
                    across_the_dateline("dateline"),
                ]),
            ]
            .into_iter();
            s.apply_site_chunks(&mut chunks, &by("import")).unwrap()
        },
        |_, r| r,
    );
    p.same("meta", |s| s.meta("corrections").unwrap());
    p.same("set meta", |s| {
        s.set_meta("corrections", "2024-07").unwrap()
    });
    assert_eq!(
        p.same("meta again", |s| s.meta("corrections").unwrap()),
        Some("2024-07".to_owned())
    );
    p.same("a site that never was", |s| s.site_known("g").unwrap());

    let rects = [
        [124.9, 38.9, 125.2, 39.2],
        [125.0, 39.0, 125.0, 39.0],
        [125.35, 39.25, 126.0, 40.0],
        [-180.0, -16.5, -179.95, -15.5],
        [179.95, -16.5, 180.0, -15.5],
        [0.0, 0.0, 1.0, 1.0],
        [-180.0, -90.0, 180.0, 90.0],
        [9.0, 49.0, 10.2, 51.0],
    ];
    assert_same_reads(&p, &["a", "b", "c", "d", "e", "f", "dateline"], &rects);
    // Both halves of a box split at the antimeridian find the site across it.
    for rect in &rects[3..5] {
        let found = p.same("by the dateline", |s| {
            ids(&s.sites_in_area_at(None, false, &[*rect]).unwrap())
        });
        assert_eq!(found, ["dateline"]);
    }
    let all = same_pages(&p, "every revision", 1_000, |s, b, l| {
        s.revisions_between(None, None, None, b, l).unwrap()
    });
    // The import, the updates, b, two retirements, the restoration, the
    // conditional replacement, the corrections and the import in chunks.
    assert_eq!(all, 16 + 3 + 1 + 2 + 1 + 1 + 2 + 4);
}

/// The 32-bit float SQLite's R*Tree keeps for a lower edge.
fn below(v: f64) -> f64 {
    let f = v as f32;
    f64::from(if f64::from(f) > v { f.next_down() } else { f })
}

/// The same for an upper edge.
fn above(v: f64) -> f64 {
    let f = v as f32;
    f64::from(if f64::from(f) < v { f.next_up() } else { f })
}

#[test]
fn box_edges_between_a_coordinate_and_its_32_bit_rounding_meet_as_in_sqlite() {
    let Some(mut p) = Pair::start() else { return };
    // Edges that 32-bit floats cannot hold, on both sides of zero, and one
    // just below a power of two.
    let corners = [
        (125.123_456_7, 39.765_432_1),
        (-70.333_333_3, -33.111_111_1),
        (63.999_999_9, 0.000_123_4),
    ];
    let sites: Vec<Site> = corners
        .iter()
        .enumerate()
        .map(|(i, &(lon, lat))| square(&format!("s{i}"), "active", lon, lat))
        .collect();
    p.step(
        "the sites",
        |s| s.apply_sites(&sites, &by("import")).unwrap(),
        |_, r| r,
    );
    for site in &sites {
        let [w, s, e, n] = site.footprint.lonlat_bounds();
        assert!(below(w) < w || below(s) < s || above(e) > e || above(n) > n);
        // Query edges at the coordinate, at its rounding, and between.
        let near = |v: f64, r: f64| [v, r, (v + r) / 2.0, r - (v - r).abs()];
        for qe in near(w, below(w)) {
            let rect = [qe - 1.0, s, qe, n];
            let found = p.same(&format!("east edge {qe} against west {w}"), |st| {
                ids(&st.sites_in_area_at(None, false, &[rect]).unwrap())
            });
            assert_eq!(found.contains(&site.id.to_string()), below(w) <= qe);
            p.same("revisions there", |st| {
                st.revisions_in_area(rect, None, None, None, 10)
                    .unwrap()
                    .len()
            });
        }
        for qw in near(e, above(e)) {
            let rect = [qw, s, qw + 1.0, n];
            let found = p.same(&format!("west edge {qw} against east {e}"), |st| {
                ids(&st.sites_in_area_at(None, false, &[rect]).unwrap())
            });
            assert_eq!(found.contains(&site.id.to_string()), above(e) >= qw);
        }
        for qn in near(s, below(s)) {
            let rect = [w, qn - 1.0, e, qn];
            p.same(&format!("north edge {qn} against south {s}"), |st| {
                ids(&st.sites_in_area_at(None, false, &[rect]).unwrap())
            });
        }
        for qs in near(n, above(n)) {
            let rect = [w, qs, e, qs + 1.0];
            p.same(&format!("south edge {qs} against north {n}"), |st| {
                ids(&st.sites_in_area_at(None, false, &[rect]).unwrap())
            });
        }
    }
}

#[test]
fn seeded_random_edits_read_back_from_postgres_as_they_do_from_sqlite() {
    let Some(mut p) = Pair::start() else { return };
    let mut rng = ChaCha8Rng::seed_from_u64(17);
    let pool: Vec<String> = (0..12).map(|i| format!("r{i:02}")).collect();
    let statuses = ["active", "inactive", "abandoned", "under_construction"];
    for round in 0..40 {
        let target = pool[rng.random_range(0..pool.len())].clone();
        // Some sites sit by the antimeridian, on either side or across it.
        let lon = match rng.random_range(0..4) {
            0 => 179.97,
            1 => -179.99,
            _ => rng.random_range(-60.0..60.0_f64),
        };
        let lat = rng.random_range(-60.0..60.0_f64);
        let status = statuses[rng.random_range(0..statuses.len())];
        let site = if lon > 179.9 {
            let mut f = across_the_dateline(&target).to_feature();
            f["properties"]["status"] = json!(status);
            site_from(&f)
        } else {
            square(&target, status, lon, lat)
        };
        let what = format!("round {round} on {target}");
        match rng.random_range(0..5) {
            0 => {
                p.step(&what, |s| s.create_site(&site, &by("r")), written);
            }
            1 => {
                p.step(&what, |s| s.replace_site(&site, &by("r")), written);
            }
            2 => {
                p.step(&what, |s| s.retire_site(&site.id, &by("r")), written);
            }
            _ => {
                p.step(
                    &what,
                    |s| s.apply_sites(std::slice::from_ref(&site), &by("r")),
                    |_, r| r.unwrap(),
                );
            }
        }
    }
    let mut rects: Vec<[f64; 4]> = (0..6)
        .map(|_| {
            let (w, s) = (
                rng.random_range(-80.0..50.0_f64),
                rng.random_range(-80.0..50.0_f64),
            );
            [
                w,
                s,
                w + rng.random_range(1.0..40.0),
                s + rng.random_range(1.0..40.0),
            ]
        })
        .collect();
    rects.push([179.98, -90.0, 180.0, 90.0]);
    rects.push([-180.0, -90.0, -179.995, 90.0]);
    let known: Vec<&str> = pool.iter().map(String::as_str).collect();
    assert_same_reads(&p, &known, &rects);
}

#[test]
fn a_catalogue_moved_from_sqlite_reads_back_and_goes_on_as_it_did_there() {
    let Some(cluster) = pg_cluster::Cluster::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    let mut sqlite = SqliteStore::open(&path).unwrap();
    let mut moments = Vec::new();
    let mut mark = || {
        std::thread::sleep(Duration::from_millis(2));
        moments.push(Timestamp::now());
        std::thread::sleep(Duration::from_millis(2));
    };
    let mut batch = sitewatch::synth::sites(20, 8);
    batch.push(across_the_dateline("dateline"));
    sqlite.apply_sites(&batch, &by("import")).unwrap();
    mark();
    sqlite
        .replace_site(&square("syn-0000003", "inactive", 1.0, 2.0), &by("editor"))
        .unwrap();
    mark();
    sqlite
        .retire_site(&id("syn-0000004"), &by("editor"))
        .unwrap();
    mark();
    sqlite.set_meta("corrections", "2024-06").unwrap();
    sitewatch::store::postgres::transfer(&path, &mut cluster.client()).unwrap();
    let pg = PgStore::connect(&cluster.url()).unwrap();
    let mut p = Pair {
        sqlite,
        pg,
        moments,
        _cluster: cluster,
    };
    p.same("meta", |s| s.meta("corrections").unwrap());
    // The moved revisions have their boxes, and new writes continue the log.
    p.step(
        "a write after the move",
        |s| s.create_site(&square("syn-0000004", "active", 3.0, 4.0), &by("editor")),
        written,
    );
    let rects = [
        [-180.0, -90.0, 180.0, 90.0],
        [0.5, 1.5, 1.5, 2.5],
        [179.95, -16.5, 180.0, -15.5],
        [-30.0, -30.0, 30.0, 30.0],
    ];
    assert_same_reads(&p, &["syn-0000003", "syn-0000004", "dateline"], &rects);
    assert_eq!(
        p.same("the log head", |s| s.log_head().unwrap()),
        21 + 1 + 1 + 1
    );
}
