//! Builds the map page (`web/`) with npm and esbuild into `OUT_DIR/web`, where
//! the server embeds it. Without Node.js the build goes on and embeds a page
//! that says why the map is missing, so the API never depends on a front-end
//! toolchain.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What `web/build.mjs` writes; each is embedded by `src/api/page.rs`.
const ASSETS: [&str; 5] = [
    "index.html",
    "app.js",
    "app.css",
    "outlines.json",
    "licenses.txt",
];

/// A copy of the lockfile that `npm ci` last installed, so that an unchanged
/// lockfile costs no install.
const STAMP: &str = ".sitewatch-lockfile";

fn main() {
    for path in [
        "web/src",
        "web/index.html",
        "web/build.mjs",
        "web/package.json",
        "web/package-lock.json",
    ] {
        println!("cargo:rerun-if-changed={path}");
    }
    let root =
        PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("web");
    fs::create_dir_all(&out).expect("create OUT_DIR/web");
    let status = match build(&root.join("web"), &out) {
        Ok(()) => "built".to_string(),
        Err(why) => {
            println!("cargo:warning=the map page was not built: {why}");
            write_placeholder(&out, &why);
            why
        }
    };
    // The server tells the page (and its operator) whether the map is real.
    println!(
        "cargo:rustc-env=SITEWATCH_WEB_STATUS={}",
        status.replace('\n', " ")
    );
}

fn build(web: &Path, out: &Path) -> Result<(), String> {
    let lockfile = fs::read(web.join("package-lock.json"))
        .map_err(|e| format!("web/package-lock.json cannot be read: {e}"))?;
    let npm = if cfg!(windows) { "npm.cmd" } else { "npm" };
    let stamp = web.join("node_modules").join(STAMP);
    if fs::read(&stamp).ok().as_deref() != Some(&lockfile[..]) {
        run(
            Command::new(npm)
                .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
                .current_dir(web),
            "npm ci",
        )?;
        fs::write(&stamp, &lockfile).map_err(|e| format!("writing {}: {e}", stamp.display()))?;
    }
    run(
        Command::new("node")
            .arg("build.mjs")
            .arg(out)
            .current_dir(web),
        "node build.mjs",
    )?;
    for name in ASSETS {
        if !out.join(name).is_file() {
            return Err(format!("web/build.mjs did not write {name}"));
        }
    }
    Ok(())
}

fn run(cmd: &mut Command, what: &str) -> Result<(), String> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let output = cmd.output().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            format!(
                "`{program}` was not found; install Node.js 20 or later (with npm), then `touch web/package.json` and build again"
            )
        } else {
            format!("{what} could not start: {e}")
        }
    })?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let tail: Vec<&str> = stderr.lines().rev().take(8).collect();
    Err(format!(
        "{what} failed ({}): {}",
        output.status,
        tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
    ))
}

/// Empty assets and a page that explains itself, so the server still builds.
fn write_placeholder(out: &Path, why: &str) {
    let escaped = why
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    let page = format!(
        "<!doctype html><html lang=\"en\"><meta charset=\"utf-8\"><title>sitewatch</title>\
         <h1>sitewatch</h1><p>The map page was not built into this binary: {escaped}.</p>\
         <p>The HTTP API works: try <a href=\"/api/collections/sites/items\">/api/collections/sites/items</a>.</p></html>\n"
    );
    let files = [
        ("index.html", page.as_str()),
        ("app.js", ""),
        ("app.css", ""),
        ("outlines.json", "{}"),
        ("licenses.txt", ""),
    ];
    for (name, body) in files {
        fs::write(out.join(name), body).expect("write placeholder asset");
    }
}
