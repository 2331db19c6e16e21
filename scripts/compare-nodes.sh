#!/usr/bin/env bash
# Several sitewatch nodes on one PostgreSQL database, measured in one run:
#   1. generate a synthetic catalogue and a batch of observations,
#   2. load the sites into PostgreSQL through `sitewatch import sites`, and the
#      same rows by plain COPY + GiST index into a second database, timing both;
#      then every row sitewatch stored (sites, revisions, change log) restored
#      by pg_restore (COPY, then the indexes and keys) into a third,
#   3. import the observations through a node, and the same rows by plain COPY
#      + indexes, timing both; then the whole database restored again, the
#      difference being what restoring the rows the import added costs,
#   4. the query mix against one node, then against two nodes at once,
#   5. how long a write through one node takes to show through the other
#      (`sitewatch bench --converge-to`),
#   6. the answers of a node on PostgreSQL against a node on SQLite holding
#      the same sites, on QUERIES radius and nearest queries,
# then stop everything it started.
#
# Settings (environment): SITES (1000000), OBS (1000000), SECS per measure
# (10), QUERIES (2000), CONCURRENCY per node (16), WRITES for convergence
# (200), SEED (42), SW (a sitewatch binary; built here if unset), LOAD (import; migrate loads the sites into SQLite and
# moves them, for when the import is too slow to wait for), KEEP=1 keeps the temporary folder, OUT
# (target/compare-nodes.md) receives the table.
set -euo pipefail

SITES=${SITES:-1000000}
OBS=${OBS:-1000000}
SECS=${SECS:-10}
QUERIES=${QUERIES:-2000}
CONCURRENCY=${CONCURRENCY:-16}
WRITES=${WRITES:-200}
SEED=${SEED:-42}
LOAD=${LOAD:-import}
root=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$root/target/compare-nodes.md}
PGPORT=${PGPORT:-55433}
PORT_A=${PORT_A:-18771}
PORT_B=${PORT_B:-18772}
PORT_S=${PORT_S:-18773}

log() { printf '== %s\n' "$*" >&2; }
secs() { python3 -c "print(f'{$2 - $1:.1f}')"; }

. "$root/scripts/pg-cluster.sh"
pg_find_or_install

work=$(mktemp -d /tmp/sitewatch-nodes.XXXXXX)
chmod 755 "$work"
pids=()
cleanup() {
  set +e
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
  pg_stop "$work"
  if [ "${KEEP:-0}" = 1 ]; then log "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

if [ -n "${SW:-}" ]; then
  sw=$SW
else
  log "building sitewatch (release)"
  (cd "$root" && cargo build --release --quiet)
  sw="$root/target/release/sitewatch"
fi

log "generating $SITES sites and $OBS observations (seed $SEED)"
"$sw" gen --sites "$SITES" --observations "$OBS" --batch-size "$OBS" --seed "$SEED" \
  --postgis --out "$work/gen" 2> "$work/gen.log"
chmod 644 "$work/gen/"*

log "starting PostgreSQL (socket in $work, port $PGPORT)"
pg_start "$work" "$PGPORT" -c "listen_addresses=''" -c shared_buffers=1GB -c max_connections=60
psql=(as_pg "$pgbin/psql" -X -q -v ON_ERROR_STOP=1 -h "$work" -p "$PGPORT" -U postgres)
"${psql[@]}" -c "CREATE DATABASE sites" -c "CREATE DATABASE copied" >/dev/null
url="postgresql://postgres@localhost:$PGPORT/sites?host=$work"

if [ "$LOAD" = migrate ]; then
  log "loading the sites into SQLite, then moving them with sitewatch migrate"
  "$sw" import sites --db "$work/same.db" "$work/gen/sites.geojson" > /dev/null 2>&1
  t0=$(date +%s.%N)
  RUST_LOG=warn "$sw" migrate --from "$work/same.db" --to "$url" > /dev/null
  t1=$(date +%s.%N)
  load_how="\`sitewatch migrate\` from SQLite"
else
  log "loading the sites through sitewatch"
  t0=$(date +%s.%N)
  RUST_LOG=warn "$sw" import sites --db "$url" "$work/gen/sites.geojson" > /dev/null
  t1=$(date +%s.%N)
  load_how="\`sitewatch import sites\`"
fi
sw_load=$(secs "$t0" "$t1")

log "loading the same sites by COPY, then a GiST index"
"${psql[@]}" -d copied -c "CREATE EXTENSION postgis" >/dev/null
t0=$(date +%s.%N)
"${psql[@]}" -d copied -c "CREATE TABLE sites (id text PRIMARY KEY, geog geography(Geometry, 4326) NOT NULL)" \
  -c "\\copy sites FROM '$work/gen/sites.tsv'"
"${psql[@]}" -d copied -c "CREATE INDEX sites_geog ON sites USING gist (geog)"
t1=$(date +%s.%N)
pg_copy=$(secs "$t0" "$t1")

# restored DUMP DB: pg_restore of DUMP into a new database DB, in seconds.
restored() {
  "${psql[@]}" -c "CREATE DATABASE $2" >/dev/null
  local t0; t0=$(date +%s.%N)
  as_pg "$pgbin/pg_restore" -h "$work" -p "$PGPORT" -U postgres -d "$2" "$1"
  secs "$t0" "$(date +%s.%N)"
}
log "every row sitewatch stored, by pg_dump and a timed pg_restore"
as_pg "$pgbin/pg_dump" -h "$work" -p "$PGPORT" -U postgres -Fc -f "$work/sites.dump" sites
sites_restore=$(restored "$work/sites.dump" restored_sites)
rm -f "$work/sites.dump"

start_node() { # port, then more arguments; sets `ready` to the seconds it took
  local port=$1; shift
  local t0; t0=$(date +%s.%N)
  RUST_LOG=warn "$sw" serve --bind "127.0.0.1:$port" "$@" > "$work/node-$port.out" 2> "$work/node-$port.err" &
  pids+=($!)
  until curl -sf "http://127.0.0.1:$port/healthz" >/dev/null; do
    kill -0 "${pids[-1]}" 2>/dev/null || { cat "$work/node-$port.err" >&2; exit 1; }
    sleep 0.05
  done
  ready=$(secs "$t0" "$(date +%s.%N)")
}

log "node A"
# The batch goes in as one request, which may be larger than the default body limit.
batch_bytes=$(stat -c %s "$work/gen/observations-0001.geojson")
start_node "$PORT_A" --db "$url" --max-body $((batch_bytes + 1048576)); ready_a=$ready

log "importing $OBS observations through node A"
t0=$(date +%s.%N)
curl -sS --fail-with-body -o "$work/import.json" -H 'Content-Type: application/geo+json' \
  --data-binary @"$work/gen/observations-0001.geojson" "http://127.0.0.1:$PORT_A/api/observations" \
  || { cat "$work/import.json" >&2; exit 1; }
t1=$(date +%s.%N)
obs_load=$(secs "$t0" "$t1")
accepted=$(python3 -c "import json; print(json.load(open('$work/import.json'))['accepted'])")

log "the same observations by COPY, then a GiST index and one by time"
python3 - "$work/gen/observations-0001.geojson" "$work/observations.tsv" <<'PY'
import json, sys
with open(sys.argv[1]) as src, open(sys.argv[2], "w") as out:
    for line in src:
        line = line.strip().rstrip(",")
        if not line.startswith('{"type":"Feature"'):
            continue
        f = json.loads(line)
        p = f["properties"]
        lon, lat = f["geometry"]["coordinates"]
        cells = [p["external_id"], p["observed_at"], p["sensor"], p["finding"], p["confidence"],
                 p.get("site_id") or "\\N", f"SRID=4326;POINT({lon!r} {lat!r})"]
        out.write("\t".join(cells) + "\n")
PY
chmod 644 "$work/observations.tsv"
t0=$(date +%s.%N)
"${psql[@]}" -d copied -c "CREATE TABLE observations (id text PRIMARY KEY, observed_at timestamptz NOT NULL,
    sensor text NOT NULL, finding text NOT NULL, confidence text NOT NULL, site_id text,
    geog geography(Point, 4326) NOT NULL)" \
  -c "\\copy observations FROM '$work/observations.tsv'"
"${psql[@]}" -d copied -c "CREATE INDEX observations_geog ON observations USING gist (geog)" \
  -c "CREATE INDEX observations_time ON observations (observed_at, id)"
t1=$(date +%s.%N)
obs_copy=$(secs "$t0" "$t1")

log "the database with the observations, by pg_dump and a timed pg_restore"
as_pg "$pgbin/pg_dump" -h "$work" -p "$PGPORT" -U postgres -Fc -f "$work/all.dump" sites
all_restore=$(restored "$work/all.dump" restored_all)
rm -f "$work/all.dump"
obs_restore=$(secs "$sites_restore" "$all_restore")

mix=nearby,nearest,bbox,item
bench() { # port, output
  "$sw" bench --url "http://127.0.0.1:$1" --mix "$mix" --seconds "$SECS" \
    --concurrency "$CONCURRENCY" --json > "$2"
}
total() { python3 -c "
import json, sys
print(f\"{sum(sum(k['per_second'] for k in json.load(open(f))['kinds']) for f in sys.argv[1:]):.0f}\")" "$@"; }
p99() { python3 -c "
import json, sys
print(f\"{max(k['p99_ms'] for f in sys.argv[1:] for k in json.load(open(f))['kinds']):.2f}\")" "$@"; }

log "the mix ($mix) on node A alone"
bench "$PORT_A" "$work/one.json"

log "node B, and the mix on both at once"
start_node "$PORT_B" --db "$url"; ready_b=$ready
bench "$PORT_A" "$work/two-a.json" & ba=$!
bench "$PORT_B" "$work/two-b.json"
wait "$ba"

log "convergence: $WRITES renames through A, read through B"
"$sw" bench --url "http://127.0.0.1:$PORT_A" --converge-to "http://127.0.0.1:$PORT_B" \
  --converge-writes "$WRITES" --json > "$work/converge.json"
read -r conv_p50 conv_p99 conv_max write_p50 < <(python3 -c "
import json; c = json.load(open('$work/converge.json'))
print(f\"{c['p50_ms']:.1f} {c['p99_ms']:.1f} {c['max_ms']:.1f} {c['write_p50_ms']:.1f}\")")

log "a node on SQLite with the same sites, and the same answers"
[ -f "$work/same.db" ] || "$sw" import sites --db "$work/same.db" "$work/gen/sites.geojson" > /dev/null 2>&1
start_node "$PORT_S" --db "$work/same.db"
agree=$(python3 - "$QUERIES" "$SEED" "http://127.0.0.1:$PORT_B" "http://127.0.0.1:$PORT_S" <<'EOF'
import json, random, sys, urllib.request
n, seed, pg, lite = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
rng = random.Random(seed)
def answer(base, q):
    with urllib.request.urlopen(f"{base}/api/nearby?{q}") as r:
        return [(f["id"], f["properties"]["distance_m"]) for f in json.load(r)["features"]]
differ, hits = 0, 0
for i in range(n):
    lon, lat = rng.uniform(-180, 180), rng.uniform(-60, 70)
    for q in (f"lon={lon:.6f}&lat={lat:.6f}&radius_m=10000", f"lon={lon:.6f}&lat={lat:.6f}&limit=10"):
        a, b = answer(pg, q), answer(lite, q)
        hits += len(a)
        if a != b:
            differ += 1
            print(f"differ: {q}: {a[:3]} against {b[:3]}", file=sys.stderr)
print(f"{'agree' if differ == 0 else 'DISAGREE'}: {2 * n - differ} of {2 * n} queries alike ({hits} sites in the answers)")
EOF
)
log "$agree"

mkdir -p "$(dirname "$OUT")"
{
  echo "Measured $(date -u +%Y-%m-%d) on $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM;"
  echo "$SITES synthetic sites and $OBS observations (seed $SEED), PostgreSQL $("$pgbin/postgres" --version | awk '{print $3}') on the same machine;"
  echo "\`sitewatch bench\` over HTTP at concurrency $CONCURRENCY per node, mix $mix, $SECS s."
  echo
  echo "| measure | figure |"
  echo "|---|---:|"
  echo "| load $SITES sites through $load_how | ${sw_load} s |"
  echo "| the same sites by plain COPY + GiST index (id and footprint only) | ${pg_copy} s |"
  echo "| every row the load stored (sites, revisions, change log), by pg_restore | ${sites_restore} s |"
  echo "| import $OBS observations through a node ($accepted accepted) | ${obs_load} s |"
  echo "| the same observations by plain COPY + GiST and time indexes (one table) | ${obs_copy} s |"
  echo "| every row the import added (observations, links, statistics, candidates), by pg_restore | ${obs_restore} s |"
  echo "| node ready after start (A / B) | ${ready_a} s / ${ready_b} s |"
  echo "| the mix, one node | $(total "$work/one.json") q/s, p99 ≤ $(p99 "$work/one.json") ms |"
  echo "| the mix, two nodes at once | $(total "$work/two-a.json" "$work/two-b.json") q/s, p99 ≤ $(p99 "$work/two-a.json" "$work/two-b.json") ms |"
  echo "| write through A to visible through B, $WRITES renames | p50 ${conv_p50} ms, p99 ${conv_p99} ms, max ${conv_max} ms (the write: p50 ${write_p50} ms) |"
  echo
  echo "Answers of the PostgreSQL node against a SQLite node: $agree"
} | tee "$OUT"
case "$agree" in agree*) ;; *) echo "the answers disagree; see above" >&2; exit 1 ;; esac
