#!/usr/bin/env python3
"""Compares sitewatch's proximity answers with PostGIS's for the same points.

Usage: compare_answers.py BASE_URL QUERIES_CSV PG_RADIUS_CSV PG_NEAREST_CSV

QUERIES_CSV holds `qid,lon,lat`; the PostGIS files hold `qid,site_id,distance_m`
for every site within 10 km, and for the 10 nearest. Two answers agree when the
same sites come back with distances within 1 m or 0.1 %, whichever is larger; a
site only one side lists must lie that close to the 10 km edge (or, for nearest,
to the tenth distance), where a rounding difference decides. Prints the
disagreements, then a summary line starting with `agree` or `disagree`.
"""

import csv
import json
import sys
import urllib.request
from collections import defaultdict

RADIUS_M = 10_000.0
K = 10


def tolerance(d):
    return max(1.0, 0.001 * d)


def read_pg(path):
    answers = defaultdict(dict)
    with open(path, newline="") as f:
        for qid, site, d in csv.reader(f):
            answers[int(qid)][site] = float(d)
    return answers


def ask(base, query):
    with urllib.request.urlopen(f"{base}/api/nearby?{query}", timeout=60) as r:
        doc = json.load(r)
    return {f["id"]: f["properties"]["distance_m"] for f in doc["features"]}


def main():
    base, queries_csv, radius_csv, nearest_csv = sys.argv[1:5]
    points = [(int(q), float(x), float(y)) for q, x, y in csv.reader(open(queries_csv))]
    pg_radius, pg_nearest = read_pg(radius_csv), read_pg(nearest_csv)
    problems = []
    worst = (0.0, 0.0)
    hits = 0

    def compare_shared(kind, qid, lon, lat, ours, theirs):
        nonlocal worst
        for site in ours.keys() & theirs.keys():
            diff = abs(ours[site] - theirs[site])
            worst = max(worst, (diff, diff / max(theirs[site], 1e-9)))
            if diff > tolerance(theirs[site]):
                problems.append(
                    f"{kind} at ({lon}, {lat}) #{qid}: {site} at {ours[site]:.2f} m here, "
                    f"{theirs[site]:.2f} m in PostGIS"
                )

    for qid, lon, lat in points:
        ours = ask(base, f"lon={lon}&lat={lat}&radius_m={RADIUS_M:.0f}&limit=10000")
        theirs = pg_radius.get(qid, {})
        hits += len(theirs)
        compare_shared("radius", qid, lon, lat, ours, theirs)
        for site in ours.keys() ^ theirs.keys():
            d = ours.get(site, theirs.get(site))
            if abs(d - RADIUS_M) > tolerance(RADIUS_M):
                side = "only here" if site in ours else "only in PostGIS"
                problems.append(f"radius at ({lon}, {lat}) #{qid}: {site} at {d:.2f} m {side}")

        ours = ask(base, f"lon={lon}&lat={lat}&limit={K}")
        theirs = pg_nearest.get(qid, {})
        compare_shared("nearest", qid, lon, lat, ours, theirs)
        if len(ours) != len(theirs):
            problems.append(f"nearest at ({lon}, {lat}) #{qid}: {len(ours)} sites here, {len(theirs)} in PostGIS")
            continue
        edge = max(theirs.values(), default=0.0)
        for site in ours.keys() ^ theirs.keys():
            d = ours.get(site, theirs.get(site))
            if abs(d - edge) > tolerance(edge):
                side = "only here" if site in ours else "only in PostGIS"
                problems.append(f"nearest at ({lon}, {lat}) #{qid}: {site} at {d:.2f} m {side}")

    for p in problems[:50]:
        print(p)
    if len(problems) > 50:
        print(f"... and {len(problems) - 50} more")
    summary = (
        f"{len(points)} radius queries ({hits} sites within 10 km) and {len(points)} nearest-10 "
        f"queries; largest distance difference {worst[0]:.3f} m ({worst[1]:.2e} relative)"
    )
    if problems:
        print(f"disagree: {len(problems)} difference(s) over {summary}")
        sys.exit(1)
    print(f"agree: {summary}")


if __name__ == "__main__":
    main()
