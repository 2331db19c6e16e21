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
    /// The socket's number, and with TLS the TCP port's on 127.0.0.1.
    port: u16,
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
        Self::start_with(5432, "-c listen_addresses=''", |_| {})
    }

    /// A cluster that also listens on 127.0.0.1, on a free port, to TLS
    /// connections only (plain TCP is refused by `pg_hba.conf`), with this
    /// certificate chain and key in PEM.
    pub fn start_tls(cert_pem: &str, key_pem: &str) -> Option<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Self::start_with(
            port,
            "-c listen_addresses=127.0.0.1 -c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key",
            |data| {
                std::fs::write(data.join("server.crt"), cert_pem).unwrap();
                std::fs::write(data.join("server.key"), key_pem).unwrap();
                std::fs::write(
                    data.join("pg_hba.conf"),
                    "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostnossl all all 127.0.0.1/32 reject\n",
                )
                .unwrap();
                for f in ["server.crt", "server.key", "pg_hba.conf"] {
                    let _ = Command::new("chown")
                        .arg("postgres")
                        .arg(data.join(f))
                        .status();
                }
                Command::new("chmod")
                    .arg("600")
                    .arg(data.join("server.key"))
                    .status()
                    .unwrap();
            },
        )
    }

    /// The server's TCP address, for a cluster from [`Cluster::start_tls`].
    pub fn tcp_port(&self) -> u16 {
        self.port
    }

    fn start_with(port: u16, options: &str, prepare: impl FnOnce(&Path)) -> Option<Self> {
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
        prepare(&data);
        let ok = as_pg(&bin.join("pg_ctl"))
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(dir.path().join("log"))
            .arg("-w")
            .arg("-o")
            .arg(format!(
                "-p {port} -k {} {options} -c fsync=off",
                dir.path().display()
            ))
            .arg("start")
            .output()
            .unwrap();
        assert!(
            ok.status.success(),
            "pg_ctl: {} {}",
            String::from_utf8_lossy(&ok.stderr),
            std::fs::read_to_string(dir.path().join("log")).unwrap_or_default()
        );
        Some(Self { bin, dir, port })
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
            "host={} port={} user=postgres dbname={dbname}",
            self.dir.path().display(),
            self.port
        )
    }

    fn postgres_url_of(&self, dbname: &str) -> String {
        format!(
            "postgresql://postgres@localhost:{}/{dbname}?host={}",
            self.port,
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
            port: 5432,
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}
