//! The `sitewatch` command line: parses arguments and dispatches to the library.

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::{Map, json};
use sitewatch::catalogue::{Catalogue, CatalogueError, ImportSitesError, Opened};
use sitewatch::import::{ImportError, ImportMode, ImportOptions};
use sitewatch::index::Filter;
use sitewatch::model::{LonLat, Meters};
use sitewatch::store::{Provenance, SqliteStore, StoreError};
use sitewatch::{api, render};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

// Loading and importing a large catalogue makes and frees millions of small
// values on every core; the system allocator spent a third of that time in
// its own bookkeeping.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "sitewatch",
    version,
    about = "A catalogue of nuclear and missile sites: geodesic proximity, history, GeoJSON over HTTP"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct DbArg {
    /// The SQLite catalogue file; created and seeded from the built-in catalogue if it does not
    /// exist. An existing empty file is refused, and so is a read-only one by commands that write.
    /// A `postgres://` URL serves the catalogue from PostgreSQL/PostGIS instead (schema made or
    /// upgraded, a new database seeded).
    #[arg(long, env = "SITEWATCH_DB", default_value = "sitewatch.db")]
    db: PathBuf,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API.
    Serve {
        #[command(flatten)]
        db: DbArg,
        /// Address to listen on (port 0 picks a free port).
        #[arg(long, env = "SITEWATCH_BIND", default_value = "127.0.0.1:8080")]
        bind: String,
        /// Bearer token that writes must carry. Without one, only loopback clients may write.
        #[arg(long, env = "SITEWATCH_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// Allow serving on a non-loopback address with no token: reads are open to
        /// anyone who can reach it, and writes are still taken from loopback only.
        #[arg(long)]
        insecure_open_writes: bool,
        /// Largest request body in bytes (observation batches over HTTP).
        #[arg(long, default_value_t = api::DEFAULT_MAX_BODY)]
        max_body: usize,
        /// A raster tile URL template for the map page, drawn over the built-in
        /// outlines (e.g. https://tile.openstreetmap.org/{z}/{x}/{y}.png).
        #[arg(long, env = "SITEWATCH_TILES")]
        tiles: Option<String>,
        /// The attribution shown with the tiles (default: from the tile host).
        #[arg(long, requires = "tiles")]
        tiles_attribution: Option<String>,
        /// Let pages from this origin call the API (`*` for any; repeat or
        /// separate with commas). Without it only the server's own page can.
        #[arg(long, env = "SITEWATCH_CORS_ORIGIN")]
        cors_origin: Vec<String>,
        /// How long a request may take, in seconds (fractions allowed): one still
        /// working then is answered 503 and its database statement interrupted.
        #[arg(long, env = "SITEWATCH_REQUEST_TIMEOUT", default_value_t = api::DEFAULT_REQUEST_TIMEOUT.as_secs_f64(), value_parser = seconds)]
        request_timeout: f64,
        /// How long, in seconds, an answer may wait for a client that has
        /// stopped reading it before the connection is dropped (0: no limit).
        #[arg(long, env = "SITEWATCH_WRITE_TIMEOUT", default_value_t = api::DEFAULT_WRITE_TIMEOUT.as_secs_f64(), value_parser = seconds_or_zero)]
        write_timeout: f64,
        /// A URL clients reach the server by besides its bound address (a DNS
        /// name, a proxy, a port mapping), like https://sites.example.org; repeat
        /// or separate with commas. Requests naming any other host get 421.
        #[arg(long, env = "SITEWATCH_PUBLIC_URL")]
        public_url: Vec<String>,
        /// The IP address of a reverse proxy whose Forwarded / X-Forwarded-*
        /// headers are believed for links (repeat or separate with commas).
        /// Without a token, writes that come through it are refused.
        #[arg(long, env = "SITEWATCH_TRUSTED_PROXY")]
        trusted_proxy: Vec<String>,
        /// Take site edits (PUT, PATCH, DELETE) only with If-Match naming the
        /// version edited (its ETag); an edit without one gets 428.
        #[arg(long, env = "SITEWATCH_REQUIRE_IF_MATCH")]
        require_if_match: bool,
        /// A streaming hot standby of the PostgreSQL primary named by --db,
        /// for reads (postgres://...). Writes, and following the other
        /// nodes' writes, still go to the primary.
        #[arg(long, env = "SITEWATCH_DB_READ", hide_env_values = true)]
        db_read: Option<String>,
    },
    /// Import a GeoJSON FeatureCollection into the catalogue.
    Import {
        #[command(subcommand)]
        what: ImportWhat,
    },
    /// Sites near a point, nearest first, with geodesic distances in metres.
    Nearby {
        #[command(flatten)]
        db: DbArg,
        #[arg(long, allow_hyphen_values = true)]
        lon: f64,
        #[arg(long, allow_hyphen_values = true)]
        lat: f64,
        /// Every site within this many metres; without it, the `--limit` nearest.
        #[arg(long)]
        radius_m: Option<f64>,
        /// How many sites at most (default 10 nearest, or 1000 within a radius).
        #[arg(long)]
        limit: Option<usize>,
        #[command(flatten)]
        filter: FilterArgs,
        #[arg(long, value_enum, default_value_t = Format::Geojson)]
        format: Format,
    },
    /// Write the catalogue to stdout.
    Export {
        #[command(subcommand)]
        what: ExportWhat,
    },
    /// Generate a synthetic catalogue and observation batches as GeoJSON files,
    /// and optionally load them into a new database.
    Gen(GenArgs),
    /// Load a running server with a fixed mix of requests for a fixed time and
    /// print throughput and p50/p99 latency per kind of request.
    Bench(BenchArgs),
    /// Write a consistent copy of the database, even while a server is writing
    /// to it; the copy appears at PATH whole or not at all.
    Backup {
        /// The database to copy (never created).
        #[arg(long, env = "SITEWATCH_DB", default_value = "sitewatch.db")]
        db: PathBuf,
        /// Where to write the copy.
        path: PathBuf,
        /// Replace PATH if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Move a SQLite catalogue, with its whole history, into an empty
    /// PostgreSQL/PostGIS database: in one transaction there, checked table by
    /// table; the SQLite file is read as of one moment and left as it is.
    Migrate {
        /// The SQLite catalogue to move (never created).
        #[arg(long, env = "SITEWATCH_DB", default_value = "sitewatch.db")]
        from: PathBuf,
        /// The PostgreSQL database: a URL (`postgres://user:password@host/dbname`)
        /// or a `key=value` connection string. PostGIS is created there if missing.
        #[arg(long, env = "SITEWATCH_PG", hide_env_values = true)]
        to: String,
    },
    /// Verify a database: SQLite integrity and foreign keys, revision chains,
    /// observations, and the index against the store. Exits 1 if anything is wrong.
    Check {
        /// The database to check (opened read-only, never created).
        #[arg(long, env = "SITEWATCH_DB", default_value = "sitewatch.db")]
        db: PathBuf,
        /// Instead, compare the catalogue with the one moved into this
        /// PostgreSQL database (`sitewatch migrate`): every table, row by row,
        /// value by value, and the PostGIS footprints against their GeoJSON.
        #[arg(long, value_name = "POSTGRES_URL")]
        against: Option<String>,
    },
}

#[derive(Subcommand)]
enum ImportWhat {
    /// Add or update sites; a changed site gets a new revision, an unchanged one is left alone.
    Sites {
        #[command(flatten)]
        db: DbArg,
        /// A GeoJSON FeatureCollection of sites (`-` for stdin).
        file: PathBuf,
        /// Why these sites are being imported; kept with each revision.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Import an observation batch: all or nothing unless --partial; prints the JSON report.
    Observations {
        #[command(flatten)]
        db: DbArg,
        /// A GeoJSON FeatureCollection of observations (`-` for stdin).
        file: PathBuf,
        /// Store the valid features even if some are invalid.
        #[arg(long)]
        partial: bool,
        /// Check and match everything, report, and store nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        matching: MatchArgs,
    },
}

#[derive(Args)]
struct MatchArgs {
    /// An observation outside every footprint links to the nearest site within this distance.
    #[arg(long, default_value_t = 1000.0)]
    match_radius_m: f64,
    /// Unmatched observations within this distance of each other can form a candidate site.
    #[arg(long, default_value_t = 1000.0)]
    cluster_radius_m: f64,
    /// How many different days of unmatched observations form a candidate site.
    #[arg(long, default_value_t = 2)]
    cluster_min_days: usize,
}

impl MatchArgs {
    fn options(&self, partial: bool, dry_run: bool) -> Result<ImportOptions> {
        Ok(ImportOptions {
            mode: if partial {
                ImportMode::Partial
            } else {
                ImportMode::Atomic
            },
            dry_run,
            match_radius: Meters::parse("--match-radius-m", self.match_radius_m)?,
            cluster_radius: Meters::parse("--cluster-radius-m", self.cluster_radius_m)?,
            cluster_min_days: self.cluster_min_days,
        })
    }
}

#[derive(Args)]
struct GenArgs {
    /// How many sites (footprints of 8-16 vertices, 200 m-3 km across, centres
    /// uniform over longitude and latitude -60..70).
    #[arg(long, default_value_t = 10_000)]
    sites: usize,
    /// How many observations, over 2015-2025, 90 % on sites.
    #[arg(long, default_value_t = 0)]
    observations: usize,
    /// Observations per batch file.
    #[arg(long, default_value_t = 100_000)]
    batch_size: usize,
    /// Observations of the first site (syn-0000001), to measure a busy history.
    #[arg(long, default_value_t = 0)]
    busiest_site_events: usize,
    /// The same seed gives the same files.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// A seed for the observations alone (default: --seed), to draw a further
    /// batch over the same catalogue.
    #[arg(long)]
    observations_seed: Option<u64>,
    /// Folder for sites.geojson and observations-NNNN.geojson.
    #[arg(long, default_value = "gen")]
    out: PathBuf,
    /// Also write sites.tsv (id and EWKT) for PostgreSQL's COPY.
    #[arg(long)]
    postgis: bool,
    /// Load the files into this database (a file that must not exist yet, or
    /// a PostgreSQL database with no catalogue in it), without the built-in
    /// seed, through the same import paths as `sitewatch import`.
    #[arg(long)]
    db: Option<PathBuf>,
}

#[derive(Args)]
struct BenchArgs {
    /// The server's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Kinds of request, sent in equal shares: nearby (10 km), nearest (10),
    /// bbox (1 degree), item, history, as_of, item_as_of, filter,
    /// observed_before, changes, log, observations, observations_bbox,
    /// observations_datetime, collections, timeline, map_config, map_world,
    /// map_view, map_as_of, map_search, edit; `all` for every one.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "nearby,nearest,bbox,item,history"
    )]
    mix: Vec<String>,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Seconds measured.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Seconds sent first and not counted.
    #[arg(long, default_value_t = 1)]
    warmup: u64,
    /// The site whose history is read (default: the server's first site).
    #[arg(long)]
    history_site: Option<String>,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Instead of the mix: rename a site (--history-site, or the first)
    /// through --url this many times, and measure how long each takes to show
    /// through --converge-to.
    #[arg(long, requires = "converge_to", default_value_t = 200)]
    converge_writes: usize,
    /// Another node on the same database, which must see the writes.
    #[arg(long)]
    converge_to: Option<String>,
}

#[derive(Subcommand)]
enum ExportWhat {
    /// Every live site as a GeoJSON FeatureCollection.
    Sites {
        #[command(flatten)]
        db: DbArg,
    },
}

#[derive(Args)]
struct FilterArgs {
    /// Comma-separated declarations (declared, acknowledged, undeclared, unknown).
    #[arg(long)]
    declaration: Option<String>,
    /// Comma-separated kinds (reactor, enrichment, missile_base, ...).
    #[arg(long)]
    kind: Option<String>,
    /// Comma-separated statuses (active, inactive, ...).
    #[arg(long)]
    status: Option<String>,
    /// Comma-separated ISO 3166-1 alpha-3 country codes.
    #[arg(long)]
    country: Option<String>,
    /// Comma-separated position qualities (verified, single_source, unverified,
    /// approximate, unknown).
    #[arg(long)]
    position_quality: Option<String>,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Geojson,
    Table,
}

/// Opens the catalogue for a command that writes; a database it could not
/// write is refused here, not at the first write.
fn open(db: &DbArg) -> Result<Catalogue> {
    if let Some(url) = postgres_url(&db.db) {
        return open_postgres(db, &url);
    }
    opened(db, Catalogue::open(&db.db))
}

/// The `--db` value, if it names a PostgreSQL database rather than a file.
fn postgres_url(db: &std::path::Path) -> Option<String> {
    let db = db.to_string_lossy();
    sitewatch::store::postgres::is_postgres_url(&db).then(|| db.into_owned())
}

/// A catalogue served from PostgreSQL/PostGIS: the schema made or brought up
/// to date, a new database seeded as a new file is.
fn open_postgres(db: &DbArg, url: &str) -> Result<Catalogue> {
    let shown = sitewatch::store::postgres::redacted(url);
    let backend = sitewatch::store::postgres::PgBackend::connect(url)
        .with_context(|| format!("opening {shown}"))?;
    opened(db, Catalogue::from_backend(Box::new(backend)))
}

/// A catalogue on a PostgreSQL primary whose reads go to a standby.
fn open_postgres_with_reads(db: &DbArg, read: &str) -> Result<Catalogue> {
    let (Some(url), true) = (
        postgres_url(&db.db),
        sitewatch::store::postgres::is_postgres_url(read),
    ) else {
        bail!(
            "--db-read names a PostgreSQL standby, and needs --db to name its primary (both postgres://...)"
        );
    };
    let backend = sitewatch::store::postgres::PgBackend::connect_with_reads(&url, read)
        .with_context(|| {
            format!(
                "opening {} with reads from {}",
                sitewatch::store::postgres::redacted(&url),
                sitewatch::store::postgres::redacted(read)
            )
        })?;
    opened(db, Catalogue::from_backend(Box::new(backend)))
}

/// A PostgreSQL URL given where a catalogue is opened: said plainly, rather
/// than taken for a file name.
fn refuse_postgres(db: &std::path::Path) -> Result<()> {
    let db = db.to_string_lossy();
    if sitewatch::store::postgres::is_postgres_url(&db) {
        bail!(
            "{} names a PostgreSQL database; `check` inspects a SQLite file, and \
             `sitewatch check --db FILE --against URL` compares one with a PostgreSQL catalogue",
            sitewatch::store::postgres::redacted(&db)
        );
    }
    Ok(())
}

fn opened(db: &DbArg, result: Result<(Catalogue, Opened), CatalogueError>) -> Result<Catalogue> {
    // A connection string is shown without its password.
    let shown = sitewatch::store::postgres::redacted(&db.db.to_string_lossy());
    let (cat, opened) = result.with_context(|| format!("opening {shown}"))?;
    if let Some(n) = opened.seeded {
        tracing::info!(db = %shown, sites = n, "new catalogue seeded from the built-in data");
    }
    if let Some(c) = &opened.corrected {
        tracing::info!(
            db = %shown,
            version = c.to_version,
            created = c.report.created.len(),
            updated = c.report.updated.len(),
            edits_kept = c.kept_edits.len(),
            "seed corrections applied as revisions"
        );
    }
    Ok(cat)
}

/// Opens the catalogue for a command that only reads: as [`open`], but an
/// existing database that cannot be written is read as it is.
fn open_to_read(db: &DbArg) -> Result<Catalogue> {
    if let Some(url) = postgres_url(&db.db) {
        return open_postgres(db, &url);
    }
    match Catalogue::open(&db.db) {
        Err(CatalogueError::Store(StoreError::ReadOnly { .. })) if db.db.is_file() => {
            let store = SqliteStore::open_to_read(&db.db)
                .with_context(|| format!("opening {} to read", db.db.display()))?;
            let (cat, _) = Catalogue::from_store_as_it_is(store)
                .with_context(|| format!("opening {} to read", db.db.display()))?;
            Ok(cat)
        }
        result => opened(db, result),
    }
}

/// A progress bar on stderr when it is a terminal: bytes read against the file
/// size give the rate and the time left. Piped, there is none.
fn progress_bar(size: Option<u64>) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = match size {
        Some(n) => indicatif::ProgressBar::new(n).with_style(
            indicatif::ProgressStyle::with_template(
                "{msg} {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        ),
        None => indicatif::ProgressBar::new_spinner(),
    };
    Some(bar)
}

/// Turns transparent huge pages off for this process. The allocator asks for
/// them on its large regions, and where the kernel compacts memory to find
/// them on demand (`defrag` set to `madvise`, a common default) the first
/// start after a large import spent over a second doing so: ready in 2.3 s at
/// a million sites, against 1.1-1.2 s without them. The price is a few per
/// cent of query throughput (nearby 35.6k against 34.2k a second, nearest
/// 17.7k against 16.6k), which we take for a start that stays predictable.
fn no_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE takes plain integers and touches no memory
    // of ours; a kernel without it returns an error, which changes nothing.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

fn main() {
    no_transparent_huge_pages();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = run(Cli::parse()) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Serve {
            db,
            bind,
            token,
            insecure_open_writes,
            max_body,
            tiles,
            tiles_attribution,
            cors_origin,
            request_timeout,
            write_timeout,
            public_url,
            trusted_proxy,
            require_if_match,
            db_read,
        } => {
            let cors = api::Cors::parse(&cors_origin).map_err(anyhow::Error::msg)?;
            let tiles = tiles
                .map(|url| api::Tiles::parse(&url, tiles_attribution))
                .transpose()
                .map_err(anyhow::Error::msg)?;
            let auth = api::WriteAuth::new(token);
            cors.check_write_authority(auth.has_token())
                .map_err(anyhow::Error::msg)?;
            let listener =
                std::net::TcpListener::bind(&bind).with_context(|| format!("binding {bind}"))?;
            let addr = listener.local_addr()?;
            if !auth.has_token() && !addr.ip().is_loopback() && !insecure_open_writes {
                bail!(
                    "refusing to serve on {addr} with no write token: set --token (or SITEWATCH_TOKEN), or pass --insecure-open-writes"
                );
            }
            let hosts = api::Hosts::new(addr, &public_url, &trusted_proxy)?;
            let cat = Arc::new(match &db_read {
                None => open(&db)?,
                Some(read) => open_postgres_with_reads(&db, read)?,
            });
            // Other nodes' writes, on a database they share, reach this one's
            // index while it serves; stopped when serving ends.
            let _following = cat.follow();
            if auth.has_token() {
                tracing::info!("writes need the bearer token");
            } else {
                tracing::warn!(
                    "no write token set: writes are accepted from loopback clients only"
                );
                if !cors.origins().is_empty() {
                    tracing::warn!(
                        origins = cors.origins().join(", "),
                        "no write token set: pages from these origins, opened on this machine, can write"
                    );
                }
                if hosts.has_trusted_proxies() {
                    tracing::warn!(
                        "no write token set: writes through the trusted proxies are refused"
                    );
                }
            }
            tracing::info!(
                sites = cat.index().len(),
                db = %sitewatch::store::postgres::redacted(&db.db.to_string_lossy()),
                following = cat.is_shared(),
                "catalogue ready"
            );
            // Tests and scripts read the address from this line when they ask for port 0.
            println!("sitewatch listening on http://{addr}");
            std::io::stdout().flush()?;
            api::serve(
                cat,
                listener,
                api::ServeOptions {
                    auth,
                    max_body,
                    page: api::PageConfig::new(tiles),
                    cors,
                    timeout: api::RequestTimeout(std::time::Duration::from_secs_f64(
                        request_timeout,
                    )),
                    heavy: api::HeavyLimit::for_this_machine(),
                    body_rate: api::BodyRate::default(),
                    hosts,
                    write_timeout: (write_timeout > 0.0)
                        .then(|| std::time::Duration::from_secs_f64(write_timeout)),
                    edits: api::EditRules { require_if_match },
                },
            )?;
        }
        Command::Import {
            what: ImportWhat::Sites { db, file, reason },
        } => {
            let reader: Box<dyn std::io::Read + Send> = if file.as_os_str() == "-" {
                Box::new(std::io::stdin())
            } else {
                Box::new(std::io::BufReader::new(
                    std::fs::File::open(&file)
                        .with_context(|| format!("opening {}", file.display()))?,
                ))
            };
            let cat = open(&db)?;
            let by = Provenance {
                actor: format!("cli import {}", file.display()),
                reason,
            };
            match cat.import_sites_and_close(reader, &by) {
                Ok(report) => println!("{}", serde_json::to_string_pretty(&report)?),
                Err(ImportSitesError::Invalid(ImportError::Invalid(problems))) => {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(
                            &json!({"stored": false, "rejected": problems})
                        )?
                    );
                    bail!(
                        "{} feature(s) are invalid; nothing was stored",
                        problems.len()
                    );
                }
                Err(e) => return Err(e.into()),
            }
        }
        Command::Import {
            what:
                ImportWhat::Observations {
                    db,
                    file,
                    partial,
                    dry_run,
                    matching,
                },
        } => {
            let opts = matching.options(partial, dry_run)?;
            let cat = open(&db)?;
            let (reader, size): (Box<dyn std::io::Read>, Option<u64>) = if file.as_os_str() == "-" {
                (Box::new(std::io::stdin().lock()), None)
            } else {
                let f = std::fs::File::open(&file)
                    .with_context(|| format!("opening {}", file.display()))?;
                let size = f.metadata().ok().map(|m| m.len());
                (Box::new(f), size)
            };
            let bar = progress_bar(size);
            let report = cat
                .import_observations(
                    reader,
                    &file.display().to_string(),
                    &opts,
                    |features, bytes| {
                        if let Some(bar) = &bar {
                            bar.set_position(bytes);
                            bar.set_message(format!("{features} features"));
                        }
                    },
                )
                .with_context(|| format!("importing {}", file.display()))?;
            if let Some(bar) = bar {
                bar.finish_and_clear();
                eprintln!("{}", report.summary);
            }
            println!("{}", serde_json::to_string_pretty(&report)?);
            if opts.mode == ImportMode::Atomic && report.rejected > 0 {
                bail!(
                    "{} feature(s) are invalid; nothing was stored",
                    report.rejected
                );
            }
        }
        Command::Nearby {
            db,
            lon,
            lat,
            radius_m,
            limit,
            filter,
            format,
        } => {
            let point = LonLat::parse("--lon/--lat", lon, lat)?;
            let filter = Filter::from_lists(|name| match name {
                "declaration" => filter.declaration.as_deref(),
                "kind" => filter.kind.as_deref(),
                "status" => filter.status.as_deref(),
                "country" => filter.country.as_deref(),
                "position_quality" => filter.position_quality.as_deref(),
                _ => None,
            })?;
            let cat = open_to_read(&db)?;
            let index = cat.index();
            let hits = match radius_m {
                Some(r) => index.nearby(
                    point,
                    Meters::parse("--radius-m", r)?,
                    &filter,
                    limit.unwrap_or(1000),
                ),
                None => index.nearest(point, limit.unwrap_or(10), &filter),
            };
            match format {
                Format::Geojson => println!("{}", render::hits_collection(&hits, Map::new())),
                Format::Table => {
                    println!(
                        "{:>10}  {:<18}  {:<12}  {:<14}  NAME",
                        "KM", "ID", "DECLARATION", "KIND"
                    );
                    for h in &hits {
                        let s = &h.site;
                        println!(
                            "{:>10.3}  {:<18}  {:<12}  {:<14}  {}",
                            h.distance.get() / 1000.0,
                            s.id,
                            s.declaration,
                            s.kind,
                            s.name
                        );
                    }
                }
            }
        }
        Command::Gen(args) => generate(args)?,
        Command::Bench(args) => bench(args)?,
        Command::Export {
            what: ExportWhat::Sites { db },
        } => {
            let cat = open_to_read(&db)?;
            let index = cat.index();
            let out = std::io::BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
            render::write_sites_collection(out, index.len(), index.all(&Filter::default()))?;
        }
        Command::Backup { db, path, force } => {
            let report = sitewatch::store::backup(&db, &path, force)
                .with_context(|| format!("backing up {} to {}", db.display(), path.display()))?;
            println!(
                "backed up {} to {} ({} pages, {} bytes)",
                db.display(),
                path.display(),
                report.pages,
                report.bytes
            );
        }
        Command::Migrate { from, to } => {
            let started = std::time::Instant::now();
            let target = sitewatch::store::postgres::redacted(&to);
            let mut client = sitewatch::store::postgres::connect(&to)?;
            let moved = sitewatch::store::postgres::transfer(&from, &mut client)
                .with_context(|| format!("moving {} into {target}", from.display()))?;
            println!(
                "moved {} into {target} in {:.1} s; each table holds what SQLite did:",
                from.display(),
                started.elapsed().as_secs_f64()
            );
            for (table, rows) in moved.tables {
                println!("  {table:<24} {rows:>12}");
            }
        }
        Command::Check {
            db,
            against: Some(url),
        } => {
            refuse_postgres(&db)?;
            let target = sitewatch::store::postgres::redacted(&url);
            let mut client = sitewatch::store::postgres::connect(&url)?;
            let comparison = sitewatch::store::postgres::compare(&db, &mut client)
                .with_context(|| format!("comparing {} with {target}", db.display()))?;
            print!("{}", comparison.summary());
            if !comparison.agrees() {
                bail!(
                    "{} and {target} do not hold the same catalogue",
                    db.display()
                );
            }
            println!("{} and {target} hold the same catalogue", db.display());
        }
        Command::Check { db, against: None } => {
            refuse_postgres(&db)?;
            let report =
                sitewatch::catalogue::check_database(&db).context("checking the database")?;
            print!("{}", report.summary());
            if !report.is_clean() {
                bail!(
                    "{} problem(s) found in {}",
                    report.problems().len(),
                    db.display()
                );
            }
        }
    }
    Ok(())
}

/// `sitewatch gen`: writes the files, then loads them if asked, timing each step.
fn generate(args: GenArgs) -> Result<()> {
    use sitewatch::synth::{GenPlan, ObservationPlan, write_files};
    use std::time::Instant;
    if let Some(db) = &args.db {
        refuse_existing(db)?;
    }
    let plan = GenPlan {
        out_dir: args.out.clone(),
        sites: args.sites,
        seed: args.seed,
        observations: ObservationPlan {
            observations: args.observations,
            batch_size: args.batch_size,
            busiest_site_events: args.busiest_site_events,
            off_site_share: 0.1,
            seed: args.observations_seed.unwrap_or(args.seed),
        },
        postgis_tsv: args.postgis,
    };
    let t = Instant::now();
    let report = write_files(&plan).with_context(|| format!("writing {}", args.out.display()))?;
    eprintln!(
        "wrote {} sites and {} observations in {} batch file(s) to {} in {:.1} s",
        report.sites,
        report.observations,
        report.observation_files.len(),
        args.out.display(),
        t.elapsed().as_secs_f64()
    );
    let Some(db) = &args.db else {
        return Ok(());
    };
    let t = Instant::now();
    let shown = sitewatch::store::postgres::redacted(&db.to_string_lossy());
    let cat = open_unseeded(db).with_context(|| format!("creating {shown}"))?;
    let by = Provenance {
        actor: "gen".into(),
        reason: Some(format!("synthetic catalogue, seed {}", args.seed)),
    };
    // Loaded as `import sites` loads them, then opened again for the
    // observations, so that the time printed is the command's.
    let applied = cat.import_sites_and_close(
        std::io::BufReader::new(std::fs::File::open(&report.sites_file)?),
        &by,
    )?;
    eprintln!(
        "imported {} sites into {shown} in {:.1} s",
        applied.created.len(),
        t.elapsed().as_secs_f64()
    );
    if report.observations == 0 {
        return Ok(());
    }
    let cat = open_unseeded(db).with_context(|| format!("opening {shown}"))?;
    let t = Instant::now();
    let opts = sitewatch::import::ImportOptions::default();
    for file in &report.observation_files {
        let reader = std::io::BufReader::new(std::fs::File::open(file)?);
        let r = cat.import_observations(reader, &file.display().to_string(), &opts, |_, _| {})?;
        if !r.stored {
            bail!("{}: {}", file.display(), r.summary);
        }
    }
    if report.observations > 0 {
        let secs = t.elapsed().as_secs_f64();
        eprintln!(
            "imported {} observations in {secs:.1} s ({:.0} a second)",
            report.observations,
            report.observations as f64 / secs
        );
    }
    Ok(())
}

/// Refuses a database `gen` would load into that is not new: a file that
/// exists, or a PostgreSQL database that holds a catalogue.
fn refuse_existing(db: &std::path::Path) -> Result<()> {
    let Some(url) = postgres_url(db) else {
        if db.exists() {
            bail!(
                "{} exists; gen loads only into a new database",
                db.display()
            );
        }
        return Ok(());
    };
    let shown = sitewatch::store::postgres::redacted(&url);
    let store = sitewatch::store::postgres::PgStore::connect(&url)
        .with_context(|| format!("opening {shown}"))?;
    if sitewatch::catalogue::holds_catalogue(&store)? {
        bail!("{shown} already holds a catalogue; gen loads only into a new database");
    }
    Ok(())
}

/// A catalogue without the built-in seed, in a file or in PostgreSQL.
fn open_unseeded(db: &std::path::Path) -> Result<Catalogue> {
    let (cat, _) = match postgres_url(db) {
        Some(url) => Catalogue::from_backend_unseeded(Box::new(
            sitewatch::store::postgres::PgBackend::connect(&url)?,
        ))?,
        None => Catalogue::open_unseeded(db)?,
    };
    Ok(cat)
}

/// `sitewatch bench`: loads a running server and prints what it measured.
fn bench(args: BenchArgs) -> Result<()> {
    use sitewatch::loadgen::{LoadPlan, RequestKind, run, site_ids, spans};
    if let Some(other) = &args.converge_to {
        let base = args.url.trim_end_matches('/');
        let site = match &args.history_site {
            Some(id) => id.clone(),
            None => site_ids(base)?
                .into_iter()
                .next()
                .context("the server has no sites")?,
        };
        let report = sitewatch::loadgen::convergence(
            base,
            other.trim_end_matches('/'),
            &site,
            args.converge_writes.max(1),
        )?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            print!("{report}");
        }
        return Ok(());
    }
    let mut kinds = Vec::new();
    for k in &args.mix {
        match k.trim() {
            "all" => kinds.extend_from_slice(RequestKind::ALL),
            k => kinds.push(RequestKind::parse(k).with_context(|| {
                let names: Vec<&str> = RequestKind::ALL.iter().map(|k| k.as_str()).collect();
                format!("--mix: unknown kind {k:?} ({}, or all)", names.join(", "))
            })?),
        }
    }
    kinds.dedup();
    let base = args.url.trim_end_matches('/').to_owned();
    let needs_ids = kinds.iter().any(|k| k.needs_ids())
        || (kinds.contains(&RequestKind::History) && args.history_site.is_none());
    let ids = if needs_ids {
        site_ids(&base)?
    } else {
        Vec::new()
    };
    let history_site = match args.history_site {
        Some(id) => id,
        None => ids.first().cloned().unwrap_or_default(),
    };
    let (record, observed, log_head) = spans(&base)?;
    let plan = LoadPlan {
        base,
        kinds,
        concurrency: args.concurrency.max(1),
        duration: std::time::Duration::from_secs(args.seconds.max(1)),
        warmup: std::time::Duration::from_secs(args.warmup),
        ids,
        history_site,
        record,
        observed,
        log_head,
        seed: args.seed,
    };
    let report = run(&plan)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{report}");
    }
    let errors: usize = report.kinds.iter().map(|k| k.errors).sum();
    if errors > 0 {
        eprintln!("{errors} request(s) failed or did not answer 200");
    }
    Ok(())
}

/// A duration in seconds: finite, above zero, at most a day.
fn seconds(raw: &str) -> Result<f64, String> {
    let s: f64 = raw
        .parse()
        .map_err(|_| format!("expected a number of seconds, got {raw:?}"))?;
    if s.is_finite() && s > 0.0 && s <= 86_400.0 {
        Ok(s)
    } else {
        Err(format!(
            "expected more than 0 and at most 86400 seconds, got {raw}"
        ))
    }
}

/// [`seconds`], or 0 for no limit.
fn seconds_or_zero(raw: &str) -> Result<f64, String> {
    match raw.trim().parse::<f64>() {
        Ok(0.0) => Ok(0.0),
        _ => seconds(raw),
    }
}
