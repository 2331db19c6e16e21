//! A PostgreSQL cluster of a test's own, in a temporary folder, for the tests
//! that need the real server. Shared by the test crates through `#[path]`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// A PostgreSQL cluster listening only on a socket in its own folder, stopped
/// when dropped.
pub struct Cluster {
    bin: PathBuf,
    dir: tempfile::TempDir,
}

/// Runs a PostgreSQL program: as the `postgres` user when we are root, since
/// PostgreSQL will not run as root.
fn as_pg(program: &Path) -> Command {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

impl Cluster {
    /// `None`, having said why, where PostgreSQL with PostGIS is not
    /// installed; under CI (where `.ci/run` installs it) that is a failure.
    pub fn start() -> Option<Self> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .and_then(|d| d.filter_map(|e| e.ok()).map(|e| e.path().join("bin")).max())
            .filter(|b| b.join("initdb").is_file());
        let postgis = std::fs::read_dir("/usr/share/postgresql").is_ok_and(|d| {
            d.filter_map(|e| e.ok())
                .any(|e| e.path().join("extension/postgis.control").is_file())
        });
        let Some(bin) = bin.filter(|_| postgis) else {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI runs these tests: .ci/run installs postgresql-15-postgis-3"
            );
            eprintln!(
                "skipped: PostgreSQL with PostGIS is not installed (Debian: postgresql-15-postgis-3)"
            );
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        // The postgres user must reach the folder and own the cluster's.
        Command::new("chmod")
            .arg("755")
            .arg(dir.path())
            .status()
            .unwrap();
        let _ = Command::new("chown")
            .arg("postgres")
            .arg(dir.path())
            .status();
        let ok = as_pg(&bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust"])
            .output()
            .unwrap();
        assert!(
            ok.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&ok.stderr)
        );
        let ok = as_pg(&bin.join("pg_ctl"))
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(dir.path().join("log"))
            .arg("-w")
            .arg("-o")
            .arg(format!(
                "-p 5432 -k {} -c listen_addresses='' -c fsync=off",
                dir.path().display()
            ))
            .arg("start")
            .output()
            .unwrap();
        assert!(
            ok.status.success(),
            "pg_ctl: {}",
            String::from_utf8_lossy(&ok.stderr)
        );
        Some(Self { bin, dir })
    }

    /// A connection string for the cluster's `postgres` database.
    pub fn url(&self) -> String {
        self.conninfo("postgres")
    }

    /// The same database as a `postgres://` URL, the form `--db` takes.
    pub fn postgres_url(&self) -> String {
        self.postgres_url_of("postgres")
    }

    pub fn client(&self) -> postgres::Client {
        self.client_of("postgres")
    }

    /// A connection to another database of the cluster.
    pub fn client_of(&self, dbname: &str) -> postgres::Client {
        postgres::Client::connect(&self.conninfo(dbname), postgres::NoTls).unwrap()
    }

    fn conninfo(&self, dbname: &str) -> String {
        format!(
            "host={} port=5432 user=postgres dbname={dbname}",
            self.dir.path().display()
        )
    }

    fn postgres_url_of(&self, dbname: &str) -> String {
        format!(
            "postgresql://postgres@localhost:5432/{dbname}?host={}",
            self.dir.path().display()
        )
    }
}

impl Cluster {
    /// Stops the server at once; its folder goes with the `Cluster`.
    pub fn stop(&self) {
        let _ = as_pg(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "stop"])
            .output();
    }

    /// A new, empty database in the cluster, as a `postgres://` URL.
    pub fn new_database(&self, name: &str) -> String {
        self.client()
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap();
        self.postgres_url_of(name)
    }

    pub fn folder(&self) -> &Path {
        self.dir.path()
    }

    /// A streaming hot standby of this cluster, made with `pg_basebackup`,
    /// in a folder of its own; stopped when dropped.
    pub fn standby(&self) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        Command::new("chmod")
            .arg("755")
            .arg(dir.path())
            .status()
            .unwrap();
        let _ = Command::new("chown")
            .arg("postgres")
            .arg(dir.path())
            .status();
        let ok = as_pg(&self.bin.join("pg_basebackup"))
            .arg("-h")
            .arg(self.dir.path())
            .args([
                "-p", "5432", "-U", "postgres", "-X", "stream", "-R", "-c", "fast", "-D",
            ])
            .arg(&data)
            .output()
            .unwrap();
        assert!(
            ok.status.success(),
            "pg_basebackup: {}",
            String::from_utf8_lossy(&ok.stderr)
        );
        let ok = as_pg(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(dir.path().join("log"))
            .arg("-w")
            .arg("-o")
            .arg(format!(
                "-p 5432 -k {} -c listen_addresses='' -c fsync=off -c hot_standby=on",
                dir.path().display()
            ))
            .arg("start")
            .output()
            .unwrap();
        assert!(
            ok.status.success(),
            "pg_ctl (standby): {}",
            String::from_utf8_lossy(&ok.stderr)
        );
        Cluster {
            bin: self.bin.clone(),
            dir,
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}
