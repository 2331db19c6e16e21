// Bundles the map page into one folder that the server embeds: index.html,
// app.js, app.css, the Natural Earth outlines and the bundled libraries'
// licences. Usage: node build.mjs OUT_DIR
import * as esbuild from 'esbuild';
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { feature as topoFeature, mesh as topoMesh } from 'topojson-client';

const here = dirname(fileURLToPath(import.meta.url));
const out = resolve(process.argv[2] ?? join(here, 'dist'));
mkdirSync(out, { recursive: true });

const result = await esbuild.build({
  entryPoints: { app: join(here, 'src', 'main.js') },
  bundle: true,
  minify: true,
  format: 'esm',
  target: ['es2022'],
  outdir: out,
  legalComments: 'eof',
  logLevel: 'warning',
  metafile: true,
});

copyFileSync(join(here, 'index.html'), join(out, 'index.html'));
writeFileSync(join(out, 'outlines.json'), JSON.stringify(outlines()));

/**
 * Land and country borders from Natural Earth 1:50m (world-atlas), prepared
 * here rather than in the page: stitched from TopoJSON, projected to Web
 * Mercator, rounded to 50 m and delta-encoded, so the page turns them into
 * two geometries in a few milliseconds. Coastlines are the land's outline.
 */
function outlines() {
  const unit = 50;
  const R = 6378137;
  const maxLat = 85.05112878;
  const topo = JSON.parse(
    readFileSync(join(here, 'node_modules', 'world-atlas', 'countries-50m.json'), 'utf8'),
  );
  const encoder = () => {
    let px = 0;
    let py = 0;
    const coords = [];
    const push = ([lon, lat]) => {
      const phi = (Math.max(-maxLat, Math.min(maxLat, lat)) * Math.PI) / 180;
      const qx = Math.round((R * lon * Math.PI) / 180 / unit);
      const qy = Math.round((R * Math.log(Math.tan(Math.PI / 4 + phi / 2))) / unit);
      coords.push(qx - px, qy - py);
      px = qx;
      py = qy;
    };
    return { coords, push };
  };
  // world-atlas is made for spherical rendering: Eurasia, Wrangel Island and
  // Fiji step from +180 to -180 and back, and Antarctica closes across the
  // antimeridian. On a flat map those steps would be lines across the world,
  // so each ring is unwrapped to run continuously past ±180 (the map repeats
  // the world on both sides), and rings entirely beyond Mercator's latitudes
  // (a degenerate one at the pole) are left out.
  const unwrap = (ring) => {
    let offset = 0;
    return ring.map(([lon, lat], i) => {
      if (i > 0) {
        const step = lon - ring[i - 1][0];
        if (step > 180) offset -= 360;
        else if (step < -180) offset += 360;
      }
      return [lon + offset, lat];
    });
  };
  const land = encoder();
  const polygons = [];
  for (const f of topoFeature(topo, topo.objects.land).features) {
    const g = f.geometry;
    const parts = g.type === 'Polygon' ? [g.coordinates] : g.coordinates;
    for (const rings of parts) {
      const ends = rings
        .filter((ring) => ring.some(([, lat]) => Math.abs(lat) < maxLat))
        .map((ring) => {
          unwrap(ring).forEach(land.push);
          return land.coords.length;
        });
      if (ends.length) polygons.push(ends);
    }
  }
  const borders = encoder();
  const lines = topoMesh(topo, topo.objects.countries, (a, b) => a !== b).coordinates.map((line) => {
    line.forEach(borders.push);
    return borders.coords.length;
  });
  return {
    unit,
    land: { coords: land.coords, polygons },
    borders: { coords: borders.coords, lines },
  };
}

// The bundled libraries' licences ask for their notices to travel with the
// code: every package the bundle drew from, plus the outlines, with its
// licence text, in one file the page links to.
const packages = new Set(['world-atlas']);
for (const input of Object.keys(result.metafile.inputs)) {
  const m = input.match(/node_modules\/((?:@[^/]+\/)?[^/]+)\//);
  if (m) packages.add(m[1]);
}
const notices = [...packages].sort().map((name) => {
  const dir = join(here, 'node_modules', name);
  const file = ['LICENSE', 'LICENSE.md', 'LICENSE.txt', 'license']
    .map((f) => join(dir, f))
    .find((f) => existsSync(f));
  const { version, license } = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
  const text = file ? readFileSync(file, 'utf8').trim() : `License: ${license}`;
  return `== ${name} ${version}\n\n${text}\n`;
});
writeFileSync(join(out, 'licenses.txt'), notices.join('\n'));
