// SenCity IOC dashboard: the city overview and the sector views.
import "maplibre-gl/dist/maplibre-gl.css";
import "uplot/dist/uPlot.min.css";
import "./style.css";
import maplibregl from "maplibre-gl";
import { entitiesOfType } from "./api.js";
import { cityAverage, drawChart } from "./chart.js";
import { attrLabel, config, fmtNumber, fmtTime, fmtValue, t, typeLabel } from "./i18n.js";
import { BASEMAP, LAYERS, alarmOpen } from "./layers.js";
import { connectLive } from "./live.js";
import { CityMap } from "./map.js";
import { EntityPanel } from "./panel.js";
import { setupSearch } from "./search.js";
import { Tiles } from "./tiles.js";
import { unitOf } from "./units.js";

const sector = config.sectors.find((s) => s.id === config.sector) || null;
// a sector page shows its layers (and the basemap); the overview shows every layer
const layers = [
  ...BASEMAP,
  ...LAYERS.filter((l) => !sector || sector.layers.includes(l.id)).map((l) => ({
    ...l,
    visible: sector ? true : l.visible,
  })),
];
const store = new Map(layers.map((l) => [l.type, new Map()])); // type -> id -> entity
const debug = (window.sencity = { ready: false, store, applied: 0, alarms: [] });

const cityMap = new CityMap(document.getElementById("map"), layers);
debug.map = cityMap.map;
// the colour a feature is drawn with (its feature state, else its data)
debug.colour = (source, id) => {
  const f = cityMap.features.get(source)?.get(id);
  if (!f) return null;
  return cityMap.map.getFeatureState({ source, id }).color || f.properties.color;
};
debug.latencies = cityMap.latencies;
const panel = new EntityPanel(document.getElementById("panel"), {
  onClose: () => document.getElementById("map").focus(),
});
const SEVERITY = ["critical", "major", "minor", "warning"];
const tiles = sector
  ? null
  : new Tiles(document.getElementById("tiles"), store, {
      onAlarms: () => {
        const open = [...(store.get("Alert") || new Map()).values()].filter(alarmOpen);
        open.sort((a, b) => SEVERITY.indexOf(a.severity) - SEVERITY.indexOf(b.severity));
        panel.showList(t("ui.tile.alarms"), open, (e) => [
          e.description || e.id.split(":").pop(),
          [fmtValue(e.severity), fmtValue(e.alarmStatus), e.dateIssued ? fmtTime(e.dateIssued) : ""].filter(Boolean).join(" · "),
        ]);
      },
    });
const status = document.getElementById("live-status");

function setStatus(text, live) {
  status.textContent = text;
  status.classList.toggle("off", !live);
}

function layerControls() {
  const box = document.getElementById("layers");
  const list = document.createElement("ul");
  list.className = "layer-list";
  for (const l of layers) {
    const li = document.createElement("li");
    li.dataset.layer = l.id;
    const id = `layer-${l.id}`;
    const cb = document.createElement("input");
    cb.type = "checkbox";
    cb.id = id;
    cb.checked = l.visible;
    const label = document.createElement("label");
    label.htmlFor = id;
    label.textContent = t(`layer.${l.id}`);
    const legend = document.createElement("ul");
    legend.className = "legend";
    legend.setAttribute("aria-label", `${t("ui.legend")}: ${t(`layer.${l.id}`)}`);
    for (const [color, key] of l.legend || []) {
      const item = document.createElement("li");
      if (color) {
        const sw = document.createElement("span");
        sw.className = l.geom === "line" || l.id === "roads" ? "swatch line" : l.id === "wards" ? "swatch area" : "swatch";
        sw.style.setProperty("--c", color);
        item.append(sw);
      } else item.className = "note";
      item.append(document.createTextNode(t(key)));
      legend.append(item);
    }
    if (l.id === "wards") {
      const note = document.createElement("li");
      note.className = "note approx";
      note.textContent = t("ui.approx");
      legend.append(note);
    }
    legend.hidden = !l.visible;
    cb.addEventListener("change", () => {
      cityMap.setVisible(l, cb.checked);
      legend.hidden = !cb.checked;
    });
    li.append(cb, label, legend);
    list.append(li);
  }
  const note = document.createElement("p");
  note.className = "note";
  note.textContent = t("ui.offline.note");
  box.append(list, note);
}

const byType = new Map(layers.map((l) => [l.type, l]));

function apply(e, sentAt) {
  const l = byType.get(e.type);
  if (!l) return;
  store.get(l.type).set(e.id, e);
  cityMap.upsert(l, e, sentAt);
}

async function loadAll() {
  setStatus(t("ui.loading"), false);
  const results = await Promise.allSettled(
    layers.map(async (l) => {
      const list = await entitiesOfType(l.type);
      store.get(l.type).clear();
      cityMap.features.get(l.id).clear();
      for (const e of list) apply(e);
      cityMap.touch(l.id);
      return list.length;
    }),
  );
  const failed = results.find((r) => r.status === "rejected");
  if (failed) console.warn(failed.reason);
  const wards = [...store.get("AdministrativeArea").values()];
  cityMap.setWardLabels(wards);
  const all = [...store.values()].flatMap((m) => [...m.values()]);
  cityMap.fitTo(wards.length ? wards : all);
  tiles?.update();
  return all.length;
}

function onChanges(msg) {
  for (const e of msg.entities) {
    const sent = typeof e.dateObserved === "string" ? Date.parse(e.dateObserved) : 0;
    apply(e, sent || 0);
    panel.changed(e.id);
  }
  for (const id of msg.deleted) {
    for (const [type, m] of store) {
      if (m.delete(id)) {
        const l = layers.find((x) => x.type === type);
        if (l) cityMap.remove(l, id);
      }
    }
  }
  debug.applied += msg.entities.length;
  tiles?.update();
}

function onAlarm(msg) {
  debug.alarms.push(msg);
  if (msg.id && msg.type === "Alert") apply(msg); // the Alert entity itself (keyValues)
  tiles?.update();
  const box = document.getElementById("toasts") || Object.assign(document.createElement("div"), { id: "toasts" });
  box.setAttribute("role", "status");
  document.body.append(box);
  const d = document.createElement("div");
  d.className = "toast";
  d.textContent = [t("layer.alarms"), fmtValue(msg.severity), msg.description || msg.title || msg.topic].filter(Boolean).join(" · ");
  box.append(d);
  setTimeout(() => d.remove(), 15000);
}

function clickable() {
  const m = cityMap.map;
  const hover = new maplibregl.Popup({ closeButton: false, closeOnClick: false, className: "hover" });
  const ids = cityMap.interactiveLayers();
  const entityOf = (f) => {
    const id = f.properties.id;
    for (const mp of store.values()) if (mp.has(id)) return mp.get(id);
    return null;
  };
  for (const id of ids) {
    m.on("mouseenter", id, () => (m.getCanvas().style.cursor = "pointer"));
    m.on("mouseleave", id, () => {
      m.getCanvas().style.cursor = "";
      hover.remove();
    });
    m.on("mousemove", id, (ev) => {
      const e = entityOf(ev.features[0]);
      if (!e) return;
      hover.setLngLat(ev.lngLat).setText(`${e.name || e.id.split(":").pop()} · ${typeLabel(e.type)}`).addTo(m);
    });
  }
  m.on("click", (ev) => {
    const hits = m.queryRenderedFeatures(ev.point, { layers: ids });
    // live layers before the basemap
    hits.sort((a, b) => Number(a.layer.id.startsWith("wards") || a.layer.id.startsWith("roads")) - Number(b.layer.id.startsWith("wards") || b.layer.id.startsWith("roads")));
    if (hits.length) panel.open(hits[0].properties.id);
    const clusters = m.queryRenderedFeatures(ev.point).filter((f) => f.layer.metadata && f.layer.metadata.cluster);
    if (!hits.length && clusters.length) m.easeTo({ center: ev.lngLat, zoom: m.getZoom() + 2 });
  });
}

async function sectorCharts() {
  const box = document.getElementById("charts");
  if (!sector || !sector.charts.length) return;
  const h = document.createElement("h2");
  h.textContent = t("ui.charts");
  box.append(h);
  for (const spec of sector.charts) {
    const [type, attr] = spec.split(".");
    const fig = document.createElement("figure");
    const cap = document.createElement("figcaption");
    cap.textContent = `${attrLabel(attr)} — ${typeLabel(type)}`;
    const div = document.createElement("div");
    div.className = "chart";
    div.dataset.chart = spec;
    fig.append(cap, div);
    box.append(fig);
    try {
      const data = await cityAverage(type, attr);
      drawChart(div, data, { label: attrLabel(attr), unit: unitOf(attr), width: div.clientWidth, range: data.range });
      div.dataset.points = String(data[0].length);
    } catch (err) {
      div.textContent = t("ui.error.load", { e: err.message });
    }
  }
}

async function main() {
  layerControls();
  await cityMap.init();
  clickable();
  setupSearch(document.getElementById("search"), document.getElementById("search-results"), store, (e) => {
    cityMap.flyTo(e);
    panel.open(e.id);
  });
  const n = await loadAll();
  setStatus(t("ui.loaded", { n: fmtNumber(n, 0) }), false);
  connectLive({
    onChanges,
    onAlarm,
    onStatus: (live) => setStatus(live ? t("ui.live.on") : t("ui.live.off"), live),
    onResync: () => loadAll(),
  });
  sectorCharts();
  debug.ready = true;
}

main().catch((err) => {
  console.error(err);
  setStatus(t("ui.error.load", { e: err.message }), false);
});
