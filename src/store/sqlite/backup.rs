//! Online backups with SQLite's backup API: a consistent copy of a database
//! that a server may be writing meanwhile, which appears at its destination
//! whole or not at all.

use super::check::open_query_only;
use super::schema::CURRENT_VERSION;
use rusqlite::Connection;
use rusqlite::backup::{Backup, StepResult};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Pages copied per step. Between steps the copy sleeps, so on a busy machine
/// it yields to the server instead of competing with it for the disk.
const PAGES_PER_STEP: i32 = 256;
const PAUSE: Duration = Duration::from_millis(2);
/// How long to keep retrying while the source is locked (it never is in WAL
/// mode, except during a checkpoint or a recovery) before giving up.
const BUSY_LIMIT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{0} does not exist")]
    Missing(PathBuf),
    #[error("{0} already exists; pass --force to replace it")]
    Exists(PathBuf),
    #[error(
        "{0} has a write-ahead log beside it, so a program may have it open; stop that program first"
    )]
    InUse(PathBuf),
    #[error("the backup would overwrite the database itself")]
    SameFile,
    #[error(
        "{path} is not a sitewatch database (schema version {found}, this program knows 1 to {known})"
    )]
    NotACatalogue {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error("the source stayed locked for {0:?}; try again")]
    Busy(Duration),
    #[error("the copy failed its integrity check: {0}")]
    CopyDamaged(String),
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What a finished backup wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupReport {
    pub pages: i64,
    pub bytes: u64,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Copies the database at `source` to `dest`. The copy is the database as of
/// one moment: it is read inside one read transaction, which in WAL mode does
/// not hold up writers. It is written to a temporary file beside `dest`,
/// checked, synced and then renamed over `dest`, so a crash at any point leaves
/// either no file or a whole backup at `dest`. An existing `dest` is replaced
/// only when `force` is set.
pub fn backup(source: &Path, dest: &Path, force: bool) -> Result<BackupReport, BackupError> {
    if dest.exists() {
        if !force {
            return Err(BackupError::Exists(dest.to_owned()));
        }
        if same_file(source, dest) {
            return Err(BackupError::SameFile);
        }
        // A log left beside the old file would be replayed into the new one
        // when it is next opened.
        let wal = sibling(dest, "-wal");
        if std::fs::metadata(&wal).is_ok_and(|m| m.len() > 0) {
            return Err(BackupError::InUse(dest.to_owned()));
        }
    }
    let src = open_query_only(source)?.ok_or_else(|| BackupError::Missing(source.to_owned()))?;
    // The read transaction pins one snapshot for every step; without it a
    // commit between steps would restart the copy, and a busy server could
    // keep it from ever finishing.
    src.execute_batch("BEGIN")?;
    let found: i64 = src.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if !(1..=CURRENT_VERSION).contains(&found) {
        return Err(BackupError::NotACatalogue {
            path: source.to_owned(),
            found,
            known: CURRENT_VERSION,
        });
    }
    src.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
        r.get::<_, i64>(0)
    })?;

    let temp = temp_path(dest);
    let result = copy_to(&src, &temp);
    src.execute_batch("COMMIT")?;
    let report = match result.and_then(|r| finish(&temp, dest).map(|()| r)) {
        Ok(r) => r,
        Err(e) => {
            let _ = std::fs::remove_file(&temp);
            let _ = std::fs::remove_file(sibling(&temp, "-journal"));
            return Err(e);
        }
    };
    Ok(report)
}

/// Writes the snapshot `src` is reading into a new file at `temp` and checks it.
fn copy_to(src: &Connection, temp: &Path) -> Result<BackupReport, BackupError> {
    let _ = std::fs::remove_file(temp);
    let mut dst = Connection::open(temp)?;
    {
        let copy = Backup::new(src, &mut dst)?;
        let mut busy_since: Option<Instant> = None;
        loop {
            match copy.step(PAGES_PER_STEP)? {
                StepResult::Done => break,
                StepResult::Busy | StepResult::Locked => {
                    let since = *busy_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > BUSY_LIMIT {
                        return Err(BackupError::Busy(BUSY_LIMIT));
                    }
                }
                _ => busy_since = None,
            }
            std::thread::sleep(PAUSE);
        }
    }
    let verdict: String = dst.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
    if verdict != "ok" {
        return Err(BackupError::CopyDamaged(verdict));
    }
    let pages: i64 = dst.query_row("PRAGMA page_count", [], |r| r.get(0))?;
    dst.close().map_err(|(_, e)| e)?;
    let bytes = std::fs::metadata(temp).map_err(io(temp))?.len();
    Ok(BackupReport { pages, bytes })
}

/// Makes the copy durable, then moves it into place and makes the move durable.
fn finish(temp: &Path, dest: &Path) -> Result<(), BackupError> {
    std::fs::File::open(temp)
        .and_then(|f| f.sync_all())
        .map_err(io(temp))?;
    std::fs::rename(temp, dest).map_err(io(dest))?;
    let dir = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    // Directories cannot be opened for syncing everywhere; where they can, this
    // makes the rename itself survive a power cut.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// A name beside `dest`, on the same file system so the rename is atomic.
fn temp_path(dest: &Path) -> PathBuf {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "backup".into());
    dest.with_file_name(format!(".{name}.partial-{}", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Meta, SqliteStore};

    fn seeded(dir: &Path) -> PathBuf {
        let path = dir.join("c.db");
        let s = SqliteStore::open(&path).unwrap();
        s.set_meta("marker", "before the backup").unwrap();
        path
    }

    #[test]
    fn a_backup_holds_what_the_source_held_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let src = seeded(dir.path());
        let dest = dir.path().join("copy.db");
        let report = backup(&src, &dest, false).unwrap();
        assert!(report.pages > 0 && report.bytes > 0);
        let copy = SqliteStore::open(&dest).unwrap();
        assert_eq!(
            copy.meta("marker").unwrap().as_deref(),
            Some("before the backup")
        );
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(!names.iter().any(|n| n.contains("partial")), "{names:?}");
    }

    #[test]
    fn an_existing_destination_is_kept_unless_forced() {
        let dir = tempfile::tempdir().unwrap();
        let src = seeded(dir.path());
        let dest = dir.path().join("copy.db");
        std::fs::write(&dest, b"precious").unwrap();
        assert!(matches!(
            backup(&src, &dest, false),
            Err(BackupError::Exists(_))
        ));
        assert_eq!(std::fs::read(&dest).unwrap(), b"precious");
        backup(&src, &dest, true).unwrap();
        assert!(
            SqliteStore::open(&dest)
                .unwrap()
                .meta("marker")
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn a_backup_over_its_own_source_is_refused_even_when_forced() {
        let dir = tempfile::tempdir().unwrap();
        let src = seeded(dir.path());
        assert!(matches!(
            backup(&src, &src, true),
            Err(BackupError::SameFile)
        ));
    }

    #[test]
    fn a_missing_source_is_an_error_and_nothing_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("copy.db");
        assert!(backup(&dir.path().join("absent.db"), &dest, false).is_err());
        assert!(!dest.exists());
        assert!(!dir.path().join("absent.db").exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
