#!/usr/bin/env bash
# How `sitewatch serve` holds up under hostile clients, in one run:
#   1. generate a synthetic catalogue (SITES sites, OBS observations) into a new database,
#   2. start the release binary on it,
#   3. for each kind of costly request, send N of them at once, and meanwhile ask
#      /healthz every few tenths of a second,
#   4. print a table: per kind, the answers' status codes, /healthz's median and
#      worst time while they ran, and the server's peak and current memory after.
# Everything it starts is stopped at the end.
#
# Settings (environment): SITES (100000), OBS (50000), N (50), PORT (18790),
# BIN (target/release/sitewatch, built if missing), OUT (target/hostile-load.md),
# KEEP=1 keeps the temporary folder.
set -euo pipefail

SITES=${SITES:-100000}
OBS=${OBS:-50000}
N=${N:-50}
PORT=${PORT:-18790}
root=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BIN:-$root/target/release/sitewatch}
OUT=${OUT:-$root/target/hostile-load.md}
base="http://127.0.0.1:$PORT"

log() { printf '== %s\n' "$*" >&2; }

[ -x "$BIN" ] || (cd "$root" && cargo build --release)
command -v curl >/dev/null || { apt-get update && apt-get install -y curl; }
command -v python3 >/dev/null || { apt-get update && apt-get install -y python3; }

work=$(mktemp -d)
server=""
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null || true
  jobs -p | xargs -r kill 2>/dev/null || true
  [ "${KEEP:-0}" = 1 ] && log "kept $work" || rm -rf "$work"
}
trap cleanup EXIT

log "generating $SITES sites and $OBS observations"
"$BIN" gen --sites "$SITES" --observations "$OBS" --out "$work/gen" --db "$work/cat.db" >/dev/null

log "starting the server"
"$BIN" serve --db "$work/cat.db" --bind "127.0.0.1:$PORT" >"$work/serve.log" 2>&1 &
server=$!
until curl -sf "$base/healthz" >/dev/null; do
  kill -0 "$server" 2>/dev/null || { cat "$work/serve.log"; exit 1; }
  sleep 0.1
done
now=$(date -u +%Y-%m-%dT%H:%M:%SZ)

# The request bodies and filters, made once.
python3 - "$work" <<'EOF'
import json, random, sys, urllib.parse
work = sys.argv[1]
rnd = random.Random(7)
pts = ", ".join(f"{rnd.uniform(-170, 170):.5f} {rnd.uniform(-60, 60):.5f}" for _ in range(100))
with open(f"{work}/dwithin.q", "w") as f:
    f.write(urllib.parse.quote(f"S_DWITHIN(geometry, MULTIPOINT({pts}), 1000)"))
nested = "\"a'b\" = 'x' AND " + "(" * 22 + "name = 'x'"
with open(f"{work}/nested.q", "w") as f:
    f.write(urllib.parse.quote(nested))
feats = [{"type": "Feature",
          "geometry": {"type": "Point", "coordinates": [rnd.uniform(-170, 170), rnd.uniform(-60, 60)]},
          "properties": {"observed_at": "2024-05-01T00:00:00Z", "sensor": "WV-3", "finding": "other"}}
         for _ in range(20000)]
with open(f"{work}/batch.json", "w") as f:
    json.dump({"type": "FeatureCollection", "features": feats}, f)
EOF

# One kind: N requests at once, /healthz timed meanwhile; prints a table row.
run_kind() {
  local name=$1; shift
  local dir="$work/$name"
  mkdir -p "$dir"
  local pids=()
  for i in $(seq "$N"); do
    curl -s -o /dev/null -w '%{http_code}\n' --max-time 180 "$@" >"$dir/$i.code" 2>/dev/null &
    pids+=($!)
  done
  local running=1
  : >"$dir/healthz"
  while [ "$running" = 1 ]; do
    curl -s -o /dev/null -w '%{time_total}\n' --max-time 30 "$base/healthz" >>"$dir/healthz" || echo 30 >>"$dir/healthz"
    sleep 0.2
    running=0
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && running=1 && break; done
  done
  wait "${pids[@]}" 2>/dev/null || true
  local codes
  codes=$(cat "$dir"/*.code | sort | uniq -c | awk '{printf "%s×%s ", $1, $2}')
  local hz
  hz=$(sort -n "$dir/healthz" | awk '{a[NR]=$1} END {printf "%.0f | %.0f", a[int((NR+1)/2)]*1000, a[NR]*1000}')
  local hwm rss
  hwm=$(awk '/VmHWM/ {printf "%.0f", $2/1024}' "/proc/$server/status")
  rss=$(awk '/VmRSS/ {printf "%.0f", $2/1024}' "/proc/$server/status")
  printf '| %s | %s | %s | %s | %s |\n' "$name" "$codes" "$hz" "$hwm" "$rss"
}

{
  echo "Hostile load on $SITES sites and $OBS observations, $N requests of each kind at once ($(date -u +%F), $(nproc) cores)."
  echo
  echo "| kind | answers | /healthz p50 ms | /healthz max ms | peak MB so far | RSS MB after |"
  echo "|---|---|---:|---:|---:|---:|"
  run_kind map_world_zoom30 "$base/api/map/sites?bbox=-180,-90,180,90&zoom=30"
  run_kind items_as_of "$base/api/collections/sites/items?as_of=$now&limit=10000"
  run_kind items_10000_slow_reader --limit-rate 20k "$base/api/collections/sites/items?limit=10000"
  run_kind dwithin_100_points "$base/api/collections/sites/items?filter=$(cat "$work/dwithin.q")"
  run_kind cql_nested_quote "$base/api/collections/sites/items?filter=$(cat "$work/nested.q")"
  run_kind changes_world "$base/api/changes?bbox=-180,-90,180,90&since=2000-01-01T00:00:00Z"
  run_kind observations_trickled --limit-rate 2k -H 'Content-Type: application/geo+json' \
    --data-binary "@$work/batch.json" "$base/api/observations"
} | tee "$OUT"
log "table written to $OUT"
