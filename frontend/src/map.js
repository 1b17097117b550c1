// The map: a MapLibre style with no glyphs, no tiles and no sprite — every layer is a
// GeoJSON source filled from the hub. Changes are coalesced and each source is given
// its new data at most once per animation frame.
import maplibregl from "maplibre-gl";
import { t } from "./i18n.js";
import { ALL_LAYERS } from "./layers.js";

const WATER = "#8ec5ef";
// a live colour: the feature state set by a change, else the one the data came with
const COLOR = ["coalesce", ["feature-state", "color"], ["get", "color"]];
const ROAD_WIDTH = ["match", ["get", "c"],
  ["motorway", "trunk"], 4, "primary", 3, "secondary", 2.4, "tertiary", 1.8, 1.1];

export class CityMap {
  constructor(container, layers) {
    this.layers = layers; // the layer definitions shown on this page
    this.features = new Map(); // layer id -> Map(entity id -> feature)
    this.dirty = new Set();
    this.states = new Map(); // colour changes waiting for the next frame
    this.frame = 0;
    this.lastFlush = 0;
    this.frameCost = 0; // ms from a flush to its frame being drawn (the last one)
    this.probes = new Map(); // source id -> send times of values waiting to be drawn
    this.latencies = []; // ms from a value's dateObserved to its colour on the map
    this.wardLabels = [];
    this.map = new maplibregl.Map({
      container,
      style: {
        version: 8,
        sources: {},
        layers: [{ id: "background", type: "background", paint: { "background-color": "#eef2f5" } }],
      },
      center: [108.2022, 16.0544],
      zoom: 11.5,
      attributionControl: false,
      maxPitch: 0,
      fadeDuration: 0,
    });
    this.map.addControl(new maplibregl.NavigationControl({ showCompass: false }), "top-right");
    this.map.addControl(new maplibregl.ScaleControl({ unit: "metric" }), "bottom-right");
    this.loaded = new Promise((resolve) => this.map.on("load", resolve));
    this.map.on("sourcedata", (e) => {
      const waiting = this.probes.get(e.sourceId);
      if (waiting && e.isSourceLoaded && !this.dirty.has(e.sourceId)) {
        this.probes.delete(e.sourceId);
        this.record(waiting);
      }
    });
    this.map.on("zoom", () => this.updateLabelVisibility());
  }

  async init() {
    await this.loaded;
    const m = this.map;
    for (const l of this.layers) {
      this.features.set(l.id, new Map());
      m.addSource(l.id, {
        type: "geojson",
        data: { type: "FeatureCollection", features: [] },
        promoteId: "id", // feature state (colour changes) by entity id
        ...(l.cluster ? { cluster: true, clusterRadius: 40, clusterMaxZoom: 15 } : {}),
      });
      for (const spec of styleLayers(l)) m.addLayer(spec);
    }
  }

  styleIds(layerId) {
    return this.map.getStyle().layers.filter((s) => s.source === layerId).map((s) => s.id);
  }

  setVisible(layer, visible) {
    layer.visible = visible;
    for (const id of this.styleIds(layer.id)) {
      this.map.setLayoutProperty(id, "visibility", visible ? "visible" : "none");
    }
    if (layer.id === "wards") this.updateLabelVisibility();
  }

  // entity (keyValues with location) -> feature of `layer`, or null when not drawn
  feature(layer, e) {
    if (!e.location || !e.location.type) return null;
    if (layer.filter && !layer.filter(e)) return null;
    const props = { id: e.id };
    if (layer.color) props.color = layer.color(e);
    if (layer.id === "roads") props.c = e.roadClass || "";
    if (layer.id === "water") props.c = e.waterType || "";
    return { type: "Feature", geometry: e.location, properties: props };
  }

  upsert(layer, e, sentAt) {
    const f = this.feature(layer, e);
    const fs = this.features.get(layer.id);
    if (!fs) return;
    const old = fs.get(e.id);
    if (f) fs.set(e.id, f);
    else if (!fs.delete(e.id)) return;
    if (sentAt) this.probe(layer.id, sentAt);
    if (f && old && sameGeometry(old.geometry, f.geometry)) {
      // only the colour changed: feature state, no re-tiling of the source
      if (old.properties.color !== f.properties.color) {
        this.states.set(`${layer.id}\u0000${e.id}`, [layer.id, e.id, f.properties.color]);
        this.schedule();
      }
      return;
    }
    this.touch(layer.id);
  }

  probe(source, sentAt) {
    if (!this.probes.has(source)) this.probes.set(source, []);
    this.probes.get(source).push(sentAt);
  }

  remove(layer, id) {
    const fs = this.features.get(layer.id);
    if (fs && fs.delete(id)) this.touch(layer.id);
  }

  touch(id) {
    this.dirty.add(id);
    this.schedule();
  }

  // at most one flush per animation frame, and — when frames are slow (software
  // rendering, a busy machine) — at most one per two frame times, so that drawing never
  // takes the whole main thread and changes keep being coalesced
  schedule() {
    if (this.frame) return;
    const wait = this.lastFlush + Math.min(2 * this.frameCost, 1000) - performance.now();
    if (wait > 0) {
      this.frame = setTimeout(() => {
        this.frame = requestAnimationFrame(() => this.flush());
      }, wait);
    } else this.frame = requestAnimationFrame(() => this.flush());
  }

  flush() {
    this.frame = 0;
    const t0 = performance.now();
    this.lastFlush = t0;
    this.map.once("render", () => {
      this.frameCost = performance.now() - t0;
    });
    for (const id of this.dirty) {
      const src = this.map.getSource(id);
      if (src) src.setData({ type: "FeatureCollection", features: [...this.features.get(id).values()] });
    }
    for (const [source, id, color] of this.states.values()) {
      this.map.setFeatureState({ source, id }, { color });
    }
    // values whose source is re-tiled are drawn once it is loaded (sourcedata); the
    // others with the next frame
    const now = [];
    for (const [source, times] of this.probes) {
      if (!this.dirty.has(source)) {
        now.push(...times);
        this.probes.delete(source);
      }
    }
    if (now.length) this.map.once("render", () => this.record(now));
    this.states.clear();
    this.dirty.clear();
  }

  record(times) {
    const now = Date.now();
    for (const sent of times) this.latencies.push(now - sent);
    if (this.latencies.length > 4000000) this.latencies.splice(0, 2000000);
  }

  // fit the bulk of the city: the 2nd–98th percentiles of the features' centres, so a
  // far-off island ward does not shrink the mainland to a corner
  fitTo(entities) {
    const xs = [];
    const ys = [];
    for (const e of entities) {
      const c = e.location && centre(e.location);
      if (c) {
        xs.push(c[0]);
        ys.push(c[1]);
      }
    }
    if (!xs.length) return;
    xs.sort((a, b) => a - b);
    ys.sort((a, b) => a - b);
    const q = (a, p) => a[Math.min(a.length - 1, Math.max(0, Math.round(p * (a.length - 1))))];
    const lo = xs.length >= 20 ? 0.02 : 0;
    let [x0, x1, y0, y1] = [q(xs, lo), q(xs, 1 - lo), q(ys, lo), q(ys, 1 - lo)];
    const px = Math.max((x1 - x0) * 0.08, 0.005);
    const py = Math.max((y1 - y0) * 0.08, 0.005);
    this.map.fitBounds([[x0 - px, y0 - py], [x1 + px, y1 + py]], { padding: 20, duration: 0, maxZoom: 15 });
  }

  // ward names as HTML markers (no glyphs needed)
  setWardLabels(wards) {
    for (const m of this.wardLabels) m.remove();
    this.wardLabels = [];
    for (const w of wards) {
      const at = (w.centroid && w.centroid.coordinates) || centre(w.location);
      if (!at || !w.name) continue;
      const el = document.createElement("div");
      el.className = "ward-label";
      el.textContent = w.name;
      this.wardLabels.push(new maplibregl.Marker({ element: el }).setLngLat(at).addTo(this.map));
    }
    this.updateLabelVisibility();
  }

  updateLabelVisibility() {
    const wards = this.layers.find((l) => l.id === "wards");
    const show = wards && wards.visible && this.map.getZoom() >= 11.5;
    this.map.getContainer().classList.toggle("hide-ward-labels", !show);
  }

  flyTo(e) {
    const at = e.location && centre(e.location);
    if (at) this.map.easeTo({ center: at, zoom: Math.max(this.map.getZoom(), 14) });
  }

  interactiveLayers() {
    return this.map.getStyle().layers.filter((s) => s.metadata && s.metadata.click).map((s) => s.id);
  }
}

function sameGeometry(a, b) {
  if (a === b) return true;
  if (!a || !b || a.type !== b.type) return false;
  if (a.type === "Point") return a.coordinates[0] === b.coordinates[0] && a.coordinates[1] === b.coordinates[1];
  return JSON.stringify(a.coordinates) === JSON.stringify(b.coordinates);
}

function centre(g) {
  if (!g) return null;
  if (g.type === "Point") return g.coordinates;
  let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
  const walk = (c) => {
    if (typeof c[0] === "number") {
      x0 = Math.min(x0, c[0]); x1 = Math.max(x1, c[0]);
      y0 = Math.min(y0, c[1]); y1 = Math.max(y1, c[1]);
    } else c.forEach(walk);
  };
  walk(g.coordinates);
  return Number.isFinite(x0) ? [(x0 + x1) / 2, (y0 + y1) / 2] : null;
}

function styleLayers(l) {
  const base = { source: l.id, layout: { visibility: l.visible ? "visible" : "none" } };
  const click = { click: true };
  const isPoly = ["match", ["geometry-type"], ["Polygon", "MultiPolygon"], true, false];
  const isLine = ["match", ["geometry-type"], ["LineString", "MultiLineString"], true, false];
  const isPoint = ["match", ["geometry-type"], ["Point", "MultiPoint"], true, false];
  switch (l.id) {
    case "wards":
      return [
        { ...base, id: "wards-fill", type: "fill", filter: isPoly, metadata: click,
          paint: { "fill-color": "#dfe7ef", "fill-opacity": 0.55 } },
        { ...base, id: "wards-line", type: "line", filter: isPoly,
          paint: { "line-color": "#5c7fa3", "line-width": 1.2, "line-dasharray": [3, 2] } },
      ];
    case "water":
      return [
        { ...base, id: "water-fill", type: "fill", filter: isPoly, paint: { "fill-color": WATER } },
        { ...base, id: "water-line", type: "line", filter: isLine,
          paint: { "line-color": WATER, "line-width": ["interpolate", ["linear"], ["zoom"], 10, 2, 16, 8] } },
      ];
    case "roads":
      return [
        { ...base, id: "roads-line", type: "line", filter: isLine, metadata: click,
          layout: { ...base.layout, "line-cap": "round", "line-join": "round" },
          paint: { "line-color": "#c5ccd4",
            "line-width": ["interpolate", ["linear"], ["zoom"], 10, ["*", 0.5, ROAD_WIDTH], 16, ["*", 2.5, ROAD_WIDTH]] } },
      ];
    case "pois":
      return [
        { ...base, id: "pois-circle", type: "circle", filter: isPoint, metadata: click,
          paint: { "circle-color": "#7d6b91", "circle-radius": 4, "circle-stroke-color": "#fff", "circle-stroke-width": 1 } },
      ];
    default:
      break;
  }
  if (l.geom === "line") {
    return [
      { ...base, id: `${l.id}-line`, type: "line", filter: isLine, metadata: click,
        layout: { ...base.layout, "line-cap": "round" },
        paint: { "line-color": COLOR, "line-width": ["interpolate", ["linear"], ["zoom"], 10, 3, 16, 9] } },
    ];
  }
  const notCluster = ["!", ["has", "point_count"]];
  const out = [];
  if (l.cluster) {
    out.push({ ...base, id: `${l.id}-cluster`, type: "circle", filter: ["has", "point_count"],
      metadata: { cluster: true },
      paint: { "circle-color": "#5b6b7b", "circle-opacity": 0.85, "circle-stroke-color": "#fff", "circle-stroke-width": 2,
        "circle-radius": ["step", ["get", "point_count"], 12, 10, 16, 100, 22, 1000, 28] } });
  }
  out.push({ ...base, id: `${l.id}-circle`, type: "circle", filter: l.cluster ? notCluster : isPoint, metadata: click,
    paint: { "circle-color": COLOR, "circle-radius": l.radius || 7,
      "circle-stroke-color": l.ring ? COLOR : "#1b2733",
      "circle-stroke-width": l.ring ? 4 : 1, "circle-stroke-opacity": l.ring ? 0.35 : 0.9 } });
  return out;
}

export function layerTitle(l) {
  return t(`layer.${l.id}`);
}
export { ALL_LAYERS };
