//! Several sitewatch nodes on one PostgreSQL database: what is written
//! through any node, or by a command beside them, reaches every node; a node
//! cut off from the database, or killed, catches up; an import through one
//! node while the others serve loses nothing. A cluster of the test's own, in
//! a temporary folder; without PostgreSQL the test says why and skips, except
//! under CI, where `.ci/run` installs it.

use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

#[path = "support/pg_cluster.rs"]
mod pg_cluster;
use pg_cluster::Cluster;
#[path = "support/node.rs"]
mod node;
use node::Node;

const BIN: &str = env!("CARGO_BIN_EXE_sitewatch");
const ITEMS: &str = "/api/collections/sites/items";

/// Asks `path` of `node` until `ready` holds for the answer, and returns it.
/// The minute is a guard against a hang, not a measure of speed: how fast
/// nodes converge is measured by `scripts/compare-nodes.sh`.
fn wait_for(node: &Node, path: &str, ready: impl Fn(u16, &Value) -> bool) -> Value {
    let give_up = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = node.ask(path);
        if ready(status, &body) {
            return body;
        }
        assert!(
            Instant::now() < give_up,
            "{} never answered {path} as awaited; last {status}: {body}",
            node.base
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn square(id: &str, lon: f64, lat: f64, name: &str) -> Value {
    let d = 0.01;
    json!({"type": "Feature", "id": id,
        "geometry": {"type": "Polygon", "coordinates": [[[lon, lat], [lon + d, lat], [lon + d, lat + d], [lon, lat + d], [lon, lat]]]},
        "properties": {"name": name, "country": "PRK", "kind": "storage",
                       "declaration": "undeclared", "status": "active", "confidence": "low"}})
}

/// Each live site's name and observation count, as a node serves them.
fn catalogue_of(node: &Node) -> BTreeMap<String, (String, u64)> {
    let page = node.get(&format!("{ITEMS}?limit=10000"));
    assert!(
        page["links"]
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["rel"] != "next")
    );
    page["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let p = &f["properties"];
            (
                f["id"].as_str().unwrap().to_owned(),
                (
                    p["name"].as_str().unwrap().to_owned(),
                    p["observation_count"].as_u64().unwrap(),
                ),
            )
        })
        .collect()
}

fn matched(page: &Value) -> u64 {
    page["numberMatched"].as_u64().unwrap()
}

#[test]
fn three_nodes_on_one_database_converge_after_writes_cut_offs_kills_and_imports() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let url = cluster.new_database("nodes");
    let a = Node::start(BIN, &url, &[]);
    let mut b = Node::start(BIN, &url, &[]);
    let c = Node::start(BIN, &url, &[]);
    let seeded = matched(&a.get(&format!("{ITEMS}?limit=1")));
    for n in [&a, &b, &c] {
        let health = n.get("/healthz");
        assert_eq!(health["sites"], seeded, "{health}");
        assert_eq!(health["following"]["lag_ms"], 0, "{health}");
    }

    // A site created through B is found on A and C, by id and by place.
    let (status, created) = b.send(
        reqwest::Method::POST,
        ITEMS,
        &square("node-test", 127.3, 40.7, "Made on B"),
    );
    assert_eq!(status, 201, "{created}");
    for n in [&a, &c] {
        wait_for(n, &format!("{ITEMS}/node-test"), |s, _| s == 200);
        let near = n.get("/api/nearby?lon=127.305&lat=40.705&limit=1");
        assert_eq!(near["features"][0]["id"], "node-test", "{near}");
    }
    // Renamed through C, retired through A: each node ends as the database.
    let mut renamed = created.clone();
    renamed["properties"]["name"] = json!("Renamed on C");
    let (status, body) = c.send(
        reqwest::Method::PUT,
        &format!("{ITEMS}/node-test"),
        &renamed,
    );
    assert_eq!(status, 200, "{body}");
    for n in [&a, &b] {
        wait_for(n, &format!("{ITEMS}/node-test"), |_, f| {
            f["properties"]["name"] == "Renamed on C"
        });
    }
    let (status, body) = a.send(
        reqwest::Method::DELETE,
        &format!("{ITEMS}/node-test"),
        &json!({}),
    );
    assert_eq!(status, 204, "{body}");
    for n in [&b, &c] {
        wait_for(n, &format!("{ITEMS}/node-test"), |s, _| s == 404);
    }

    // An observation batch through C counts on A and B.
    let batch = std::fs::read(format!(
        "{}/tests/fixtures/observations/mixed.geojson",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let resp = reqwest::blocking::Client::new()
        .post(format!("{}/api/observations", c.base))
        .header("content-type", "application/geo+json")
        .body(batch)
        .send()
        .unwrap();
    assert_eq!(resp.status(), 201);
    let on_c = catalogue_of(&c);
    for n in [&a, &b] {
        wait_for(n, "/healthz", |_, h| h["following"]["lag_ms"] == 0);
        assert_eq!(catalogue_of(n), on_c, "{} after the batch", n.base);
    }

    // Every connection the nodes hold is cut, as a restart of the database
    // would: each listens again, reads what it missed, and writes again.
    let mut admin = cluster.client();
    admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = 'nodes' AND pid <> pg_backend_pid()",
            &[],
        )
        .unwrap();
    for n in [&a, &b, &c] {
        wait_for(n, "/healthz", |_, h| h["following"]["listening"] == true);
    }
    let (status, body) = a.send(
        reqwest::Method::POST,
        ITEMS,
        &square("after-the-cut", 126.0, 39.0, "Made on A after the cut"),
    );
    assert_eq!(status, 201, "{body}");
    for n in [&b, &c] {
        wait_for(n, &format!("{ITEMS}/after-the-cut"), |s, _| s == 200);
    }

    // B killed; what is written meanwhile is there when it comes back.
    b.kill();
    let (status, body) = c.send(
        reqwest::Method::POST,
        ITEMS,
        &square("while-b-was-down", 125.0, 38.5, "Made while B was down"),
    );
    assert_eq!(status, 201, "{body}");
    let b = Node::start(BIN, &url, &[]);
    assert_eq!(b.ask(&format!("{ITEMS}/while-b-was-down")).0, 200);

    // A command beside the nodes imports sites, and A takes a batch of
    // observations of them, while B and C answer reads all along.
    let files = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["gen", "--sites", "2000", "--observations", "3000", "--out"])
        .arg(files.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reading = AtomicBool::new(true);
    let reads = AtomicUsize::new(0);
    /// Stops the readers however the import ends, a failed assertion too.
    struct Stop<'a>(&'a AtomicBool);
    impl Drop for Stop<'_> {
        fn drop(&mut self) {
            self.0.store(false, Ordering::Relaxed);
        }
    }
    std::thread::scope(|scope| {
        for n in [&b, &c] {
            let (reading, reads) = (&reading, &reads);
            scope.spawn(move || {
                while reading.load(Ordering::Relaxed) {
                    let (status, body) = n.ask("/api/nearby?lon=127.3&lat=40.7&limit=5");
                    assert_eq!(status, 200, "{body}");
                    reads.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        let _stop = Stop(&reading);
        let out = Command::new(BIN)
            .args(["import", "sites", "--db", &url])
            .arg(files.path().join("sites.geojson"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let batch = std::fs::read(files.path().join("observations-0001.geojson")).unwrap();
        let resp = reqwest::blocking::Client::new()
            .post(format!("{}/api/observations", a.base))
            .header("content-type", "application/geo+json")
            .body(batch)
            .send()
            .unwrap();
        let status = resp.status();
        let report: Value = resp.json().unwrap();
        assert_eq!(status, 201, "{report}");
        assert_eq!(report["accepted"], 3000, "{report}");
    });
    assert!(reads.load(Ordering::Relaxed) > 0);
    let total = seeded + 2 + 2000;
    let on_a = catalogue_of(&a);
    assert_eq!(on_a.len() as u64, total);
    assert!(
        on_a.values().map(|(_, count)| count).sum::<u64>() >= 3000 / 2,
        "most generated observations are on sites"
    );
    for n in [&b, &c] {
        wait_for(n, "/healthz", |_, h| {
            h["following"]["lag_ms"] == 0 && h["sites"] == total
        });
        assert_eq!(catalogue_of(n), on_a, "{} after the imports", n.base);
    }
}

#[test]
fn a_node_reading_from_a_hot_standby_says_so_and_serves_what_the_primary_took() {
    let Some(primary) = Cluster::start() else {
        return;
    };
    let url = primary.new_database("replicated");
    let standby = primary.standby();
    let read_url = url.replace(
        &primary.folder().display().to_string(),
        &standby.folder().display().to_string(),
    );
    let node = Node::start(BIN, &url, &["--db-read", &read_url]);
    let health = node.get("/healthz");
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(health["reads"]["in_recovery"], true, "{health}");
    assert!(
        health["reads"]["location"]
            .as_str()
            .unwrap()
            .contains(&standby.folder().display().to_string()),
        "{health}"
    );

    // The write goes to the primary; the history, read from the standby,
    // shows it once the standby has replayed it.
    let (status, body) = node.send(
        reqwest::Method::POST,
        ITEMS,
        &square("replicated-site", 127.1, 40.1, "Written to the primary"),
    );
    assert_eq!(status, 201, "{body}");
    wait_for(&node, "/api/sites/replicated-site/history", |s, h| {
        s == 200 && h["features"].as_array().is_some_and(|f| f.len() == 1)
    });
    // The standby really is where reads go: it holds the node's readers.
    let mut on_standby = standby.client_of("replicated");
    let readers: i64 = on_standby
        .query_one(
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = 'replicated' AND pid <> pg_backend_pid()",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(readers >= 1, "no reader of the node on the standby");
    let in_recovery: bool = on_standby
        .query_one("SELECT pg_is_in_recovery()", &[])
        .unwrap()
        .get(0);
    assert!(in_recovery);
}

#[test]
fn an_entry_that_commits_after_a_later_one_is_read_not_skipped() {
    use sitewatch::store::ChangeLogReads;
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let url = cluster.new_database("horizon");
    let store = sitewatch::store::postgres::PgStore::connect(&url).unwrap();
    let mut mark = store.log_mark().unwrap();
    let (mut slow, mut fast) = (cluster.client_of("horizon"), cluster.client_of("horizon"));
    let append = "INSERT INTO change_log (at, kind, site_id, revision)
                  VALUES (now(), 'site_updated', $1, 2) RETURNING seq";
    // Two writers that do not take sitewatch's lock: the first draws the
    // lower number but commits last.
    let mut late = slow.transaction().unwrap();
    let early_seq: i64 = late.query_one(append, &[&"slow-site"]).unwrap().get(0);
    let later_seq: i64 = fast.query_one(append, &[&"fast-site"]).unwrap().get(0);
    assert!(early_seq < later_seq);

    let ids = |news: &sitewatch::store::News| -> Vec<String> {
        news.sites
            .iter()
            .map(|(id, _)| id.as_str().to_owned())
            .collect()
    };
    let news = store.news_since(&mut mark).unwrap();
    assert_eq!(ids(&news), ["fast-site"]);
    assert_eq!(news.newest_seq, Some(later_seq));
    late.commit().unwrap();
    let news = store.news_since(&mut mark).unwrap();
    assert_eq!(ids(&news), ["slow-site"], "the late commit is read");
    assert_eq!(news.newest_seq, Some(early_seq));
    let news = store.news_since(&mut mark).unwrap();
    assert_eq!(news.entries, 0, "and nothing twice");
}
