// The map's layers and how each draws: the offline outlines, optional raster
// tiles, sites (footprints, markers or clusters), candidates, observations and
// the "what is near" circle.
import VectorLayer from 'ol/layer/Vector.js';
import VectorImageLayer from 'ol/layer/VectorImage.js';
import TileLayer from 'ol/layer/Tile.js';
import VectorSource from 'ol/source/Vector.js';
import XYZ from 'ol/source/XYZ.js';
import GeoJSON from 'ol/format/GeoJSON.js';
import Feature from 'ol/Feature.js';
import MultiLineString from 'ol/geom/MultiLineString.js';
import MultiPolygon from 'ol/geom/MultiPolygon.js';
import Point from 'ol/geom/Point.js';
import { getCenter, getWidth, getHeight } from 'ol/extent.js';
import { Circle as CircleStyle, Fill, RegularShape, Stroke, Style, Text } from 'ol/style.js';

/** Colours by declaration; the legend and the cluster pies use the same. */
export const DECLARATION_COLOURS = {
  declared: '#1f6fb2',
  acknowledged: '#238b45',
  undeclared: '#d62728',
  unknown: '#7f7f7f',
};
export const CANDIDATE_COLOUR = '#9c27b0';
export const OBSERVATION_COLOUR = '#e67e00';

/** A footprint narrower than this many pixels also gets a marker. */
const MARKER_BELOW_PX = 8;
/** Names are written next to sites from about zoom 8 (metres per pixel). */
const LABEL_BELOW_RESOLUTION = 650;

export const geojson = new GeoJSON({ featureProjection: 'EPSG:3857' });

function rgba(hex, alpha) {
  const n = parseInt(hex.slice(1), 16);
  return `rgba(${(n >> 16) & 255}, ${(n >> 8) & 255}, ${n & 255}, ${alpha})`;
}

function decode(coords, unit) {
  const flat = new Array(coords.length);
  let x = 0;
  let y = 0;
  for (let i = 0; i < coords.length; i += 2) {
    x += coords[i];
    y += coords[i + 1];
    flat[i] = x * unit;
    flat[i + 1] = y * unit;
  }
  return flat;
}

/**
 * Land (its outline is the coastline) and country borders from Natural
 * Earth, embedded in the server. `web/build.mjs` prepares them as
 * delta-encoded Web Mercator coordinates; `draw()` fetches them and builds two
 * geometries, so the caller picks the moment.
 */
export function basemapLayer() {
  const source = new VectorSource({ wrapX: true });
  const styles = {
    land: new Style({
      fill: new Fill({ color: '#eef0e6' }),
      stroke: new Stroke({ color: '#8a9aa8', width: 0.8 }),
    }),
    border: new Style({
      stroke: new Stroke({ color: '#b3b8ad', width: 0.6, lineDash: [3, 3] }),
    }),
  };
  const layer = new VectorImageLayer({
    source,
    className: 'basemap',
    style: (f) => styles[f.get('part')],
    imageRatio: 1.5,
    properties: { name: 'basemap' },
  });
  const draw = async () => {
    const resp = await fetch('/assets/outlines.json');
    if (!resp.ok) throw new Error(`HTTP ${resp.status}`);
    const { unit, land, borders } = await resp.json();
    source.addFeatures([
      new Feature({
        geometry: new MultiPolygon(decode(land.coords, unit), 'XY', land.polygons),
        part: 'land',
      }),
      new Feature({
        geometry: new MultiLineString(decode(borders.coords, unit), 'XY', borders.lines),
        part: 'border',
      }),
    ]);
  };
  return { layer, draw };
}

/** Raster tiles over the outlines, when the server was started with `--tiles`. */
export function tileLayer(tiles) {
  return new TileLayer({
    source: new XYZ({ url: tiles.url, attributions: tiles.attribution, maxZoom: 19 }),
    properties: { name: 'tiles' },
  });
}

const styleCache = new Map();
function cached(key, make) {
  let s = styleCache.get(key);
  if (!s) {
    s = make();
    styleCache.set(key, s);
  }
  return s;
}

function markerStyle(declaration, selected) {
  const colour = DECLARATION_COLOURS[declaration] ?? DECLARATION_COLOURS.unknown;
  return cached(`marker:${declaration}:${selected}`, () => new Style({
    image: new CircleStyle({
      radius: selected ? 8 : 5.5,
      fill: new Fill({ color: colour }),
      stroke: new Stroke({ color: selected ? '#111' : '#fff', width: selected ? 3 : 1.5 }),
      // Labels give way to markers, never the other way round.
      declutterMode: 'none',
    }),
    zIndex: selected ? 20 : 10,
  }));
}

/** Positions that are only a town, a placeholder or an unconfirmed source. */
const LOOSE_POSITIONS = new Set(['approximate', 'unverified']);

function footprintStyle(declaration, selected, loose) {
  const colour = DECLARATION_COLOURS[declaration] ?? DECLARATION_COLOURS.unknown;
  return cached(`poly:${declaration}:${selected}:${loose}`, () => new Style({
    fill: new Fill({ color: rgba(colour, selected ? 0.45 : 0.3) }),
    // A dashed outline: the footprint is drawn around a town or an unconfirmed point.
    stroke: new Stroke({
      color: selected ? '#111' : colour,
      width: selected ? 3 : 1.5,
      lineDash: loose ? [6, 4] : undefined,
    }),
    zIndex: selected ? 20 : 5,
  }));
}

/** Marker at a polygon's interior point, for footprints too small to see. */
function centreMarker(declaration, selected) {
  const base = markerStyle(declaration, selected);
  return new Style({
    geometry: (f) => {
      const g = f.getGeometry();
      if (g.getType() === 'Polygon') return g.getInteriorPoint();
      if (g.getType() === 'MultiPolygon') return new Point(getCenter(g.getExtent()));
      return g;
    },
    image: base.getImage(),
    zIndex: base.getZIndex(),
  });
}

/** A pie of declarations with the count in the middle, drawn straight onto the canvas. */
function clusterStyle(feature) {
  const count = feature.get('count');
  const radius = Math.min(30, 10 + Math.sqrt(count) * 1.2);
  const label = count >= 10000 ? `${Math.round(count / 1000)}k` : count.toLocaleString('en');
  const slices = Object.keys(DECLARATION_COLOURS).map((d) => [d, feature.get(d) ?? 0]);
  return new Style({
    renderer(coordinates, state) {
      const ctx = state.context;
      const [x, y] = coordinates;
      const r = radius * state.pixelRatio;
      let start = -Math.PI / 2;
      for (const [d, n] of slices) {
        if (!n) continue;
        const end = start + (2 * Math.PI * n) / count;
        ctx.beginPath();
        ctx.moveTo(x, y);
        ctx.arc(x, y, r, start, end);
        ctx.closePath();
        ctx.fillStyle = rgba(DECLARATION_COLOURS[d], 0.85);
        ctx.fill();
        start = end;
      }
      ctx.beginPath();
      ctx.arc(x, y, r * 0.62, 0, 2 * Math.PI);
      ctx.fillStyle = 'rgba(255, 255, 255, 0.92)';
      ctx.fill();
      ctx.lineWidth = state.pixelRatio;
      ctx.strokeStyle = 'rgba(0, 0, 0, 0.35)';
      ctx.beginPath();
      ctx.arc(x, y, r, 0, 2 * Math.PI);
      ctx.stroke();
      ctx.fillStyle = '#111';
      ctx.font = `600 ${Math.round(11 * state.pixelRatio)}px system-ui, sans-serif`;
      ctx.textAlign = 'center';
      ctx.textBaseline = 'middle';
      ctx.fillText(label, x, y);
    },
    hitDetectionRenderer(coordinates, state) {
      const ctx = state.context;
      ctx.beginPath();
      ctx.arc(coordinates[0], coordinates[1], radius * state.pixelRatio, 0, 2 * Math.PI);
      ctx.fillStyle = '#000';
      ctx.fill();
    },
  });
}

/**
 * The sites layer. `selectedId()` names the site to highlight. A footprint
 * too small to see at the current zoom still shows as a marker.
 */
/** A site's name beside it; drawn on the canvas, so markup in a name stays text. */
function labelStyle(feature) {
  return new Style({
    geometry: (f) => {
      const g = f.getGeometry();
      return g.getType() === 'Polygon' ? g.getInteriorPoint() : new Point(getCenter(g.getExtent()));
    },
    text: new Text({
      text: feature.get('name'),
      font: '12px system-ui, sans-serif',
      offsetY: -14,
      fill: new Fill({ color: '#1d232a' }),
      stroke: new Stroke({ color: 'rgba(255, 255, 255, 0.9)', width: 3 }),
      overflow: false,
    }),
    zIndex: 50,
  });
}

export function sitesLayer(selectedId) {
  const source = new VectorSource({ wrapX: true });
  const layer = new VectorImageLayer({
    source,
    imageRatio: 1.5,
    declutter: true,
    properties: { name: 'sites' },
    style: (feature, resolution) => {
      if (feature.get('cluster')) return clusterStyle(feature);
      const declaration = feature.get('declaration');
      const selected = feature.getId() === selectedId();
      const geometry = feature.getGeometry();
      const styles = [];
      if (geometry.getType() === 'Point') {
        styles.push(markerStyle(declaration, selected));
      } else {
        const extent = geometry.getExtent();
        const px = Math.max(getWidth(extent), getHeight(extent)) / resolution;
        const loose = LOOSE_POSITIONS.has(feature.get('position_quality'));
        styles.push(footprintStyle(declaration, selected, loose));
        if (px < MARKER_BELOW_PX) styles.push(centreMarker(declaration, selected));
      }
      if (resolution < LABEL_BELOW_RESOLUTION || selected) styles.push(labelStyle(feature));
      return styles;
    },
  });
  return { layer, source };
}

const candidateStyle = new Style({
  image: new RegularShape({
    points: 4,
    radius: 9,
    angle: Math.PI / 4,
    fill: new Fill({ color: 'rgba(255, 255, 255, 0.85)' }),
    stroke: new Stroke({ color: CANDIDATE_COLOUR, width: 2.5 }),
  }),
  text: new Text({
    text: '?',
    font: '700 11px system-ui, sans-serif',
    fill: new Fill({ color: CANDIDATE_COLOUR }),
  }),
  zIndex: 30,
});

export function candidatesLayer() {
  const source = new VectorSource({ wrapX: true });
  const layer = new VectorLayer({
    source,
    style: candidateStyle,
    properties: { name: 'candidates' },
  });
  return { layer, source };
}

const observationStyle = new Style({
  image: new RegularShape({
    points: 3,
    radius: 6,
    fill: new Fill({ color: OBSERVATION_COLOUR }),
    stroke: new Stroke({ color: '#5a3100', width: 1 }),
  }),
  zIndex: 25,
});
const observationAreaStyle = new Style({
  stroke: new Stroke({ color: OBSERVATION_COLOUR, width: 1.5, lineDash: [4, 3] }),
});

export function observationsLayer() {
  const source = new VectorSource({ wrapX: true });
  const layer = new VectorLayer({
    source,
    style: (f) => (f.getGeometry().getType() === 'Point' ? observationStyle : observationAreaStyle),
    properties: { name: 'observations' },
  });
  return { layer, source };
}

const nearStyles = {
  circle: new Style({
    stroke: new Stroke({ color: '#222', width: 1.5, lineDash: [6, 4] }),
    fill: new Fill({ color: 'rgba(30, 30, 30, 0.05)' }),
  }),
  point: new Style({
    image: new CircleStyle({
      radius: 5,
      fill: new Fill({ color: '#fff' }),
      stroke: new Stroke({ color: '#222', width: 2.5 }),
    }),
    zIndex: 40,
  }),
};

export function nearLayer() {
  const source = new VectorSource();
  const layer = new VectorLayer({
    source,
    style: (f) => nearStyles[f.get('part')],
    properties: { name: 'near' },
  });
  return { layer, source };
}
