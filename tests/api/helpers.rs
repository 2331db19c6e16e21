//! Starting the real server on port 0 with a fresh database, and talking to it.

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use crate::pg_cluster::Cluster;

pub const BIN: &str = env!("CARGO_BIN_EXE_sitewatch");

/// How many sites the built-in seed holds (checked against it in `seed.rs`).
pub const SEED_SITES: usize = 42;

/// Where a new server keeps its catalogue: a new SQLite file in `dir`, or,
/// with `SITEWATCH_TEST_BACKEND=postgres`, a new database in a PostgreSQL
/// cluster that this test run starts for itself, so that the same tests run
/// on both backends.
fn new_database(dir: &std::path::Path) -> std::ffi::OsString {
    if std::env::var("SITEWATCH_TEST_BACKEND").as_deref() != Ok("postgres") {
        return dir.join("catalogue.db").into_os_string();
    }
    static CLUSTER: std::sync::OnceLock<Cluster> = std::sync::OnceLock::new();
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    /// A static is never dropped: the cluster is stopped, and its folder
    /// removed, when the test process exits.
    extern "C" fn stop_cluster() {
        if let Some(cluster) = CLUSTER.get() {
            cluster.stop();
            let _ = std::fs::remove_dir_all(cluster.folder());
        }
    }
    let cluster = CLUSTER.get_or_init(|| {
        let cluster = Cluster::start()
            .expect("SITEWATCH_TEST_BACKEND=postgres needs PostgreSQL with PostGIS installed");
        // SAFETY: registers a plain function with no arguments, called once
        // by the C library at exit.
        unsafe { libc::atexit(stop_cluster) };
        cluster
    });
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    cluster.new_database(&format!("test_{n}")).into()
}

pub struct Server {
    child: Child,
    pub base: String,
    _dir: tempfile::TempDir,
}

impl Server {
    /// Starts `sitewatch serve` on a free port with a new database seeded from the built-in data.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts the server with extra `serve` arguments (e.g. `--token`).
    pub fn start_with(extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = new_database(dir.path());
        let mut child = Command::new(BIN)
            .args(["serve", "--bind", "127.0.0.1:0", "--db"])
            .arg(&db)
            .args(extra)
            .env("RUST_LOG", "error")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn sitewatch serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read address line");
        let base = line.trim().rsplit(' ').next().expect("address").to_string();
        assert!(
            base.starts_with("http://127.0.0.1:"),
            "unexpected first line {line:?}"
        );
        Self {
            child,
            base,
            _dir: dir,
        }
    }

    pub fn get(&self, path_and_query: &str) -> reqwest::blocking::Response {
        reqwest::blocking::get(format!("{}{path_and_query}", self.base)).expect("request")
    }

    /// GET that must succeed with `content_type`; returns the JSON body.
    pub fn get_json(&self, path_and_query: &str, content_type: &str) -> Value {
        let resp = self.get(path_and_query);
        assert_eq!(resp.status(), 200, "GET {path_and_query}");
        assert_eq!(
            resp.headers()["content-type"],
            content_type,
            "GET {path_and_query}"
        );
        resp.json().expect("json body")
    }

    pub fn geojson(&self, path_and_query: &str) -> Value {
        self.get_json(path_and_query, "application/geo+json")
    }

    /// Sends SIGTERM and waits for the process to exit, at most `limit`;
    /// returns the exit status, or `None` if it was still running then.
    pub fn terminate(&mut self, limit: std::time::Duration) -> Option<std::process::ExitStatus> {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM failed");
        let start = std::time::Instant::now();
        while start.elapsed() < limit {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn ids(collection: &Value) -> Vec<String> {
    collection["features"]
        .as_array()
        .expect("features")
        .iter()
        .map(|f| f["id"].as_str().expect("id").to_string())
        .collect()
}

/// The seed catalogue as shipped in `data/`.
pub fn seed() -> Value {
    serde_json::from_str(include_str!("../../data/sites.geojson")).expect("seed parses")
}
