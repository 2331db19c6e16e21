//! A database seeded by a build from before the seed audit, opened by this one.

use crate::helpers::{BIN, SEED_SITES, seed};
use sitewatch::catalogue::{Catalogue, SEED_OBSERVATIONS, Seed};
use sitewatch::model::{SiteId, Status};
use sitewatch::store::Provenance;
use std::path::Path;
use std::process::Command;

/// The seed as builds before the audit shipped it.
const SEED_BEFORE_AUDIT: Seed<'static> = Seed {
    sites: include_str!("../fixtures/sites/seed-before-audit.geojson"),
    observations: SEED_OBSERVATIONS,
    version: 1,
    corrections: "{}",
};

fn sitewatch(db: &Path, args: &[&str]) -> std::process::Output {
    let out = Command::new(BIN)
        .args(args)
        .arg("--db")
        .arg(db)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run sitewatch");
    assert!(
        out.status.success(),
        "sitewatch {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn id(raw: &str) -> SiteId {
    SiteId::parse("id", raw).unwrap()
}

#[test]
fn a_database_seeded_before_the_audit_gets_the_corrections_as_revisions_and_keeps_an_analysts_edit()
{
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("old.db");
    {
        let (old, opened) = Catalogue::open_with_seed(&db, &SEED_BEFORE_AUDIT).unwrap();
        assert_eq!(opened.seeded, Some(35));
        // An analyst marks Kumchon-ni inactive, which the correction would make active.
        let mut f = old.index().get(&id("kumchon-ni")).unwrap().to_feature();
        f["properties"]["status"] = "inactive".into();
        let by = Provenance {
            actor: "analyst".into(),
            reason: Some("checked on new imagery".into()),
        };
        old.replace_site(&id("kumchon-ni"), &f, &by).unwrap();
    }

    // The new binary, started on the old database, corrects it; check passes.
    sitewatch(
        &db,
        &[
            "nearby", "--lon", "125.88", "--lat", "39.31", "--limit", "1",
        ],
    );
    let check = sitewatch(&db, &["check"]);
    assert!(check.status.success());

    let (cat, again) = Catalogue::open(&db).unwrap();
    assert_eq!(again.seeded, None);
    assert_eq!(again.corrected, None, "a second start changes nothing");
    let index = cat.index();
    assert_eq!(index.len(), SEED_SITES);

    let pyongsong = cat.revisions(&id("pyongsong")).unwrap();
    assert_eq!(pyongsong.len(), 2);
    let fix = &pyongsong[1];
    assert_eq!(fix.actor, "seed");
    let reason = fix.reason.as_deref().unwrap();
    assert!(reason.contains("seed correction 2"), "{reason}");
    assert!(
        reason.contains("armscontrolwonk.com/archive/1204857"),
        "{reason}"
    );
    let fields: Vec<&str> = fix.diff.iter().map(|c| c.field.as_str()).collect();
    assert!(fields.contains(&"geometry"), "{fields:?}");
    assert!(fields.contains(&"position_quality"), "{fields:?}");
    let launch_point = sitewatch::model::LonLat::parse("p", 125.882683, 39.31632).unwrap();
    let hit = index
        .nearest(launch_point, 1, &Default::default())
        .remove(0);
    assert_eq!(
        (hit.site.id.as_str(), hit.distance.get()),
        ("pyongsong", 0.0)
    );

    // The analyst's status stays; the fields they left alone are corrected.
    let kumchon = index.get(&id("kumchon-ni")).unwrap();
    assert_eq!(kumchon.status, Status::Inactive);
    assert_eq!(kumchon.position_quality.as_str(), "single_source");
    let last = cat.revisions(&id("kumchon-ni")).unwrap().pop().unwrap();
    assert!(
        last.reason
            .as_deref()
            .unwrap()
            .contains("edit of status is kept"),
        "{:?}",
        last.reason
    );
    assert_eq!(index.get(&id("punggye-ri")).unwrap().status, Status::Active);

    // Every seed site has a quality now, and the new sites were added.
    for site in index.all(&Default::default()) {
        assert_ne!(site.position_quality.as_str(), "unknown", "{}", site.id);
    }
    let added = cat.revisions(&id("lake-yonpung")).unwrap();
    assert_eq!(added.len(), 1);
    assert!(added[0].reason.as_deref().unwrap().contains("added"));
}

#[test]
fn the_seed_site_count_the_tests_assume_is_the_built_in_seeds() {
    assert_eq!(seed()["features"].as_array().unwrap().len(), SEED_SITES);
}

/// A copy in `dir` of the database the build before the audit made.
fn old_database(dir: &std::path::Path) -> std::path::PathBuf {
    let db = dir.join("old.db");
    std::fs::copy(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/db/seeded-before-audit.db"
        ),
        &db,
    )
    .unwrap();
    db
}

#[test]
fn the_new_binary_corrects_a_database_the_old_one_made_and_check_passes() {
    let dir = tempfile::tempdir().unwrap();
    let db = old_database(dir.path());
    let before = sitewatch(&db, &["check"]);
    assert!(String::from_utf8_lossy(&before.stdout).contains("35 sites"));

    sitewatch(&db, &["export", "sites"]);
    let after = sitewatch(&db, &["check"]);
    let summary = String::from_utf8_lossy(&after.stdout).into_owned();
    // 36 old revisions, one correction for each of the 35 seed sites, 7 new sites.
    assert!(
        summary.contains(&format!("{SEED_SITES} sites")) && summary.contains("78 revisions"),
        "{summary}"
    );

    let (cat, again) = Catalogue::open(&db).unwrap();
    assert_eq!(again.corrected, None, "a second start changes nothing");
    let kumchon = cat.revisions(&id("kumchon-ni")).unwrap();
    let actors: Vec<&str> = kumchon.iter().map(|r| r.actor.as_str()).collect();
    assert_eq!(
        actors,
        ["seed", "cli import kumchon-ni-inactive.geojson", "seed"]
    );
    let reason = kumchon[2].reason.as_deref().unwrap();
    assert!(reason.contains("edit of status is kept"), "{reason}");
    let site = cat.index().get(&id("kumchon-ni")).unwrap().clone();
    assert_eq!(site.status, Status::Inactive);
    assert_eq!(site.position_quality.as_str(), "single_source");
    let inp = cat.revisions(&id("inp-pyongyang")).unwrap();
    let fix = inp.last().unwrap();
    assert_eq!(fix.actor, "seed");
    assert!(
        fix.reason
            .as_deref()
            .unwrap()
            .contains("city-level placeholder"),
        "{:?}",
        fix.reason
    );
    assert!(
        fix.diff
            .iter()
            .any(|c| c.field == "position_quality" && c.old == "unknown" && c.new == "approximate")
    );
}

#[test]
fn an_old_database_that_cannot_be_written_is_read_as_it_is_and_corrected_once_it_can() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let db = old_database(dir.path());
    let count = |out: std::process::Output| {
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        doc["features"].as_array().unwrap().len()
    };
    let mode = |m: u32| std::fs::set_permissions(&db, std::fs::Permissions::from_mode(m)).unwrap();
    mode(0o444);
    let old = sitewatch(&db, &["export", "sites"]);
    assert!(
        String::from_utf8_lossy(&old.stderr).contains("earlier seed"),
        "{}",
        String::from_utf8_lossy(&old.stderr)
    );
    assert_eq!(count(old), 35);
    mode(0o644);
    assert_eq!(count(sitewatch(&db, &["export", "sites"])), SEED_SITES);
}
