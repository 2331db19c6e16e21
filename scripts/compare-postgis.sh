#!/usr/bin/env bash
# sitewatch side by side with PostGIS on one machine, in one run:
#   1. generate one synthetic catalogue (and a busy site's history),
#   2. load it into sitewatch and into PostgreSQL + PostGIS (started here, on
#      loopback, in a temporary folder), timing both,
#   3. check that both give the same answers to random radius and nearest queries,
#   4. run the same query kinds on both (pgbench on PostGIS, `sitewatch bench`
#      over HTTP on sitewatch) and print a table with the ratio per kind,
#   5. measure reads while a large batch imports,
# then stop everything it started.
#
# Settings (environment): SITES (1000000), SECS per query kind (10), QUERIES for
# the answer check (2000), CONCURRENCY for sitewatch (16), PG_CLIENTS (2), SEED
# (42), IMPORT_OBS (200000, the batch imported under load), KEEP=1 keeps the
# temporary folder, OUT (target/compare-postgis.md) receives the table.
set -euo pipefail

SITES=${SITES:-1000000}
SECS=${SECS:-10}
QUERIES=${QUERIES:-2000}
CONCURRENCY=${CONCURRENCY:-16}
PG_CLIENTS=${PG_CLIENTS:-2}
SEED=${SEED:-42}
IMPORT_OBS=${IMPORT_OBS:-200000}
root=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$root/target/compare-postgis.md}
PGPORT=${PGPORT:-55432}
SWPORT=${SWPORT:-18765}

log() { printf '== %s\n' "$*" >&2; }

# --- PostgreSQL + PostGIS from Debian, if missing --------------------------------
. "$root/scripts/pg-cluster.sh"
pg_find_or_install
command -v python3 >/dev/null || { apt-get update && apt-get install -y python3; }

work=$(mktemp -d /tmp/sitewatch-compare.XXXXXX)
chmod 755 "$work"
sw_pid=""
cleanup() {
  set +e
  [ -n "$sw_pid" ] && kill "$sw_pid" 2>/dev/null && wait "$sw_pid" 2>/dev/null
  pg_stop "$work"
  if [ "${KEEP:-0}" = 1 ]; then log "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

log "building sitewatch (release)"
(cd "$root" && cargo build --release --quiet)
sw="$root/target/release/sitewatch"

# --- the same data for both ------------------------------------------------------
log "generating $SITES sites (seed $SEED) and loading them into sitewatch"
"$sw" gen --sites "$SITES" --observations 10000 --busiest-site-events 10000 --seed "$SEED" \
  --postgis --out "$work/gen" --db "$work/sw.db" 2> "$work/gen.log"
cat "$work/gen.log" >&2
sw_load=$(sed -n 's/^imported [0-9]* sites into .* in \([0-9.]*\) s$/\1/p' "$work/gen.log")

log "starting PostgreSQL on 127.0.0.1:$PGPORT"
pg_start "$work" "$PGPORT" -c listen_addresses=127.0.0.1 -c shared_buffers=1GB -c max_connections=20
psql=(as_pg "$pgbin/psql" -X -q -v ON_ERROR_STOP=1 -h "$work" -p "$PGPORT" -U postgres)
"${psql[@]}" -c "CREATE DATABASE bench" >/dev/null
psql=("${psql[@]}" -d bench)
"${psql[@]}" -c "CREATE EXTENSION postgis" >/dev/null
chmod 644 "$work/gen/sites.tsv"

log "loading the same sites into PostGIS: COPY, then a GiST index"
t0=$(date +%s.%N)
"${psql[@]}" -c "CREATE TABLE sites (id text PRIMARY KEY, geog geography(Geometry, 4326) NOT NULL)" \
  -c "\\copy sites FROM '$work/gen/sites.tsv'"
t1=$(date +%s.%N)
"${psql[@]}" -c "CREATE INDEX sites_geog ON sites USING gist (geog)" -c "ANALYZE sites"
t2=$(date +%s.%N)
pg_copy=$(python3 -c "print(f'{$t1 - $t0:.1f}')")
pg_index=$(python3 -c "print(f'{$t2 - $t1:.1f}')")

log "starting sitewatch serve on 127.0.0.1:$SWPORT"
t0=$(date +%s.%N)
RUST_LOG=warn "$sw" serve --db "$work/sw.db" --bind "127.0.0.1:$SWPORT" > "$work/serve.out" 2> "$work/serve.err" &
sw_pid=$!
until curl -sf "http://127.0.0.1:$SWPORT/healthz" >/dev/null; do
  kill -0 "$sw_pid" 2>/dev/null || { cat "$work/serve.err" >&2; exit 1; }
  sleep 0.05
done
t1=$(date +%s.%N)
sw_ready=$(python3 -c "print(f'{$t1 - $t0:.2f}')")
sw_rss_ready=$(awk '/VmHWM/ {print $2}' "/proc/$sw_pid/status")

# --- the same answers ------------------------------------------------------------
log "checking $QUERIES radius (10 km) and $QUERIES nearest (k=10) queries against PostGIS"
python3 - "$QUERIES" "$SEED" > "$work/q.csv" <<'EOF'
import random, sys
n, seed = int(sys.argv[1]), int(sys.argv[2])
rng = random.Random(seed)
for i in range(n):
    print(f"{i},{rng.uniform(-180, 180):.6f},{rng.uniform(-60, 70):.6f}")
EOF
chmod 644 "$work/q.csv"
"${psql[@]}" -c "CREATE TABLE q (qid int, lon float8, lat float8)" -c "\\copy q FROM '$work/q.csv' CSV"
"${psql[@]}" -c "\\copy (SELECT q.qid, s.id, ST_Distance(s.geog, ST_MakePoint(q.lon, q.lat)::geography) FROM q JOIN sites s ON ST_DWithin(s.geog, ST_MakePoint(q.lon, q.lat)::geography, 10000) ORDER BY 1, 3) TO STDOUT CSV" > "$work/pg_radius.csv"
# `<->` on geography orders by sphere distance; taking 30 by it and re-ranking on
# the spheroid keeps sphere/spheroid differences out of the comparison.
"${psql[@]}" -c "\\copy (SELECT q.qid, n.id, n.d FROM q CROSS JOIN LATERAL (SELECT id, d FROM (SELECT id, ST_Distance(geog, ST_MakePoint(q.lon, q.lat)::geography) AS d FROM sites ORDER BY geog <-> ST_MakePoint(q.lon, q.lat)::geography LIMIT 30) c ORDER BY d, id LIMIT 10) n ORDER BY 1, 3) TO STDOUT CSV" > "$work/pg_nearest.csv"
python3 "$root/scripts/compare_answers.py" "http://127.0.0.1:$SWPORT" "$work/q.csv" \
  "$work/pg_radius.csv" "$work/pg_nearest.csv" > "$work/agree.txt" || true
cat "$work/agree.txt" >&2

# --- the same query kinds --------------------------------------------------------
cat > "$work/nearby.sql" <<'EOF'
\set x random(-1800000, 1800000)
\set y random(-600000, 700000)
SELECT id, ST_Distance(geog, ST_MakePoint(:x / 10000.0, :y / 10000.0)::geography) FROM sites WHERE ST_DWithin(geog, ST_MakePoint(:x / 10000.0, :y / 10000.0)::geography, 10000);
EOF
cat > "$work/nearest.sql" <<'EOF'
\set x random(-1800000, 1800000)
\set y random(-600000, 700000)
SELECT id, ST_Distance(geog, ST_MakePoint(:x / 10000.0, :y / 10000.0)::geography) FROM sites ORDER BY geog <-> ST_MakePoint(:x / 10000.0, :y / 10000.0)::geography LIMIT 10;
EOF
cat > "$work/bbox.sql" <<'EOF'
\set x random(-1800000, 1790000)
\set y random(-600000, 690000)
SELECT id, ST_AsGeoJSON(geog) FROM sites WHERE geog && ST_MakeEnvelope(:x / 10000.0, :y / 10000.0, :x / 10000.0 + 1, :y / 10000.0 + 1, 4326)::geography LIMIT 100;
EOF
cat > "$work/item.sql" <<EOF
\\set i random(1, $SITES)
SELECT id, ST_AsGeoJSON(geog) FROM sites WHERE id = 'syn-' || lpad(:i::text, 7, '0');
EOF
chmod 644 "$work"/*.sql

declare -A pg_tps pg_lat sw_rps sw_p50 sw_p99 sw_err
for kind in nearby nearest bbox item; do
  log "PostGIS: $kind for $SECS s with pgbench, $PG_CLIENTS clients"
  as_pg "$pgbin/pgbench" -n -c "$PG_CLIENTS" -j "$PG_CLIENTS" -T "$SECS" -f "$work/$kind.sql" \
    -h "$work" -p "$PGPORT" -U postgres bench > "$work/pgbench-$kind.txt" 2>&1
  pg_tps[$kind]=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$work/pgbench-$kind.txt" | tail -1)
  pg_lat[$kind]=$(sed -n 's/^latency average = \([0-9.]*\) ms/\1/p' "$work/pgbench-$kind.txt")
done
for kind in nearby nearest bbox item history; do
  log "sitewatch: $kind for $SECS s over HTTP, concurrency $CONCURRENCY"
  "$sw" bench --url "http://127.0.0.1:$SWPORT" --mix "$kind" --seconds "$SECS" \
    --concurrency "$CONCURRENCY" --history-site syn-0000001 --json > "$work/bench-$kind.json"
  read -r sw_rps[$kind] sw_p50[$kind] sw_p99[$kind] sw_err[$kind] < <(python3 -c "
import json,sys; k=json.load(open(sys.argv[1]))['kinds'][0]
print(f\"{k['per_second']:.0f} {k['p50_ms']:.2f} {k['p99_ms']:.2f} {k['errors']}\")" "$work/bench-$kind.json")
done

# --- reads while a large batch imports -------------------------------------------
log "reads while a batch of $IMPORT_OBS observations imports over HTTP"
"$sw" gen --sites "$SITES" --seed "$SEED" --observations "$IMPORT_OBS" --batch-size "$IMPORT_OBS" \
  --observations-seed "$((SEED + 1))" \
  --out "$work/big" 2>/dev/null
rm -f "$work/big/sites.geojson"
( t0=$(date +%s.%N)
  curl -sf -o "$work/import.json" -H 'Content-Type: application/geo+json' \
    --data-binary @"$work/big/observations-0001.geojson" "http://127.0.0.1:$SWPORT/api/observations"
  t1=$(date +%s.%N); python3 -c "print(f'{$t1 - $t0:.1f}')" > "$work/import.secs" ) &
import_pid=$!
sleep 1
"$sw" bench --url "http://127.0.0.1:$SWPORT" --mix nearby --seconds "$SECS" --warmup 0 \
  --concurrency "$CONCURRENCY" --json > "$work/bench-under-import.json"
still_importing=$(kill -0 "$import_pid" 2>/dev/null && echo yes || echo no)
wait "$import_pid" || true
under_import=$(python3 -c "import json; print(f\"{json.load(open('$work/bench-under-import.json'))['kinds'][0]['per_second']:.0f}\")")
import_secs=$(cat "$work/import.secs" 2>/dev/null || echo "?")
sw_rss_peak=$(awk '/VmHWM/ {print $2}' "/proc/$sw_pid/status")

# --- the table -------------------------------------------------------------------
mkdir -p "$(dirname "$OUT")"
{
  echo "Measured $(date -u +%Y-%m-%d) on $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM;"
  echo "$SITES synthetic sites (seed $SEED), PostgreSQL $("$pgbin/postgres" --version | awk '{print $3}') + PostGIS $("${psql[@]}" -Atc 'SELECT extversion FROM pg_extension WHERE extname = $$postgis$$'),"
  echo "pgbench with $PG_CLIENTS clients (no HTTP), sitewatch over HTTP at concurrency $CONCURRENCY, $SECS s per kind."
  echo
  echo "| query | PostGIS q/s | PostGIS mean ms | sitewatch q/s (HTTP) | sitewatch p50 ms | sitewatch p99 ms | ratio |"
  echo "|---|---:|---:|---:|---:|---:|---:|"
  for kind in nearby nearest bbox item; do
    ratio=$(python3 -c "print(f'{${sw_rps[$kind]} / ${pg_tps[$kind]}:.1f}x')")
    echo "| $kind | ${pg_tps[$kind]%.*} | ${pg_lat[$kind]} | ${sw_rps[$kind]} | ${sw_p50[$kind]} | ${sw_p99[$kind]} | $ratio |"
  done
  echo "| history (10,000 events, first page) | n/a | n/a | ${sw_rps[history]} | ${sw_p50[history]} | ${sw_p99[history]} | |"
  echo
  echo "| load and memory | PostGIS | sitewatch |"
  echo "|---|---:|---:|"
  echo "| load $SITES sites | COPY ${pg_copy} s + GiST ${pg_index} s | import ${sw_load} s |"
  echo "| ready to answer after start | | ${sw_ready} s |"
  echo "| peak memory at ready / at the end | | $((sw_rss_ready / 1024)) MB / $((sw_rss_peak / 1024)) MB |"
  echo "| nearby q/s idle / while importing $IMPORT_OBS observations (${import_secs} s; still importing at the end: $still_importing) | | ${sw_rps[nearby]} / ${under_import} |"
  echo
  echo "Answers: $(tail -1 "$work/agree.txt")"
} | tee "$OUT"
for kind in nearby nearest bbox item history; do
  [ "${sw_err[$kind]}" = 0 ] || { echo "sitewatch answered ${sw_err[$kind]} $kind request(s) with an error" >&2; exit 1; }
done
grep -q "^agree" "$work/agree.txt" || { echo "the answers disagree; see above" >&2; exit 1; }
