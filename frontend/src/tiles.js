// Overview tiles, computed from the entities in memory (kept current by the live
// stream) plus two server figures: devices gone silent and the change rate.
import { api, json } from "./api.js";
import { fmtNumber, fmtPercent, t, typeLabel } from "./i18n.js";
import { AQI_COLORS, alarmOpen, floodLevel, speedRatio } from "./layers.js";

const AQI_BREAKS = [50, 100, 150, 200, 300];
const aqiColor = (v) => Object.values(AQI_COLORS)[AQI_BREAKS.filter((b) => v > b).length];

export class Tiles {
  constructor(root, store, { onAlarms } = {}) {
    this.onAlarms = onAlarms;
    this.root = root;
    this.store = store; // Map(type -> Map(id -> entity))
    this.offline = null;
    this.rate = null;
    this.scheduled = false;
    root.innerHTML = "";
    const h = document.createElement("h2");
    h.textContent = t("ui.tiles");
    h.className = "sr-only";
    this.grid = document.createElement("div");
    this.grid.className = "tiles";
    root.append(h, this.grid);
    this.poll();
    setInterval(() => this.poll(), 5000);
  }

  async poll() {
    try {
      const r = await api("/ingest/v1/devices?silentFor=PT1H&limit=1");
      this.offline = Number(r.headers.get("Total-Count") ?? (await r.json()).length);
    } catch {
      this.offline = null;
    }
    try {
      this.rate = (await json("/web/v1/stats")).changesPerSecond;
    } catch {
      this.rate = null;
    }
    this.update();
  }

  // at most once a second
  update() {
    if (this.scheduled) return;
    this.scheduled = true;
    setTimeout(() => {
      this.scheduled = false;
      this.render();
    }, this.rendered ? 1000 : 0);
    this.rendered = true;
  }

  values(type) {
    return [...(this.store.get(type) || new Map()).values()];
  }

  render() {
    const tiles = [];
    const none = t("ui.tile.none");
    const air = this.values("AirQualityObserved");
    const aqis = air.map((e) => e.airQualityIndex).filter((v) => typeof v === "number");
    if (aqis.length) {
      const v = Math.round(aqis.reduce((a, b) => a + b, 0) / aqis.length);
      tiles.push(["aqi", t("ui.tile.aqi"), fmtNumber(v, 0), aqiColor(v)]);
    } else {
      const pm = air.map((e) => e.pm25).filter((v) => typeof v === "number");
      tiles.push(["aqi", t("ui.tile.pm25"), pm.length ? `${fmtNumber(pm.reduce((a, b) => a + b, 0) / pm.length, 1)} µg/m³` : none]);
    }
    const ratios = this.values("TrafficFlowObserved").map((e) => (e.congested === true ? 0 : speedRatio(e))).filter((v) => v !== null);
    tiles.push(["congestion", t("ui.tile.congestion"),
      ratios.length ? fmtPercent(ratios.filter((r) => r < 0.5).length / ratios.length) : none]);
    const floods = this.values("FloodMonitoring").filter((e) => (floodLevel(e) || 0) >= 1).length;
    tiles.push(["flood", t("ui.tile.flood"), fmtNumber(floods, 0), floods ? "#fb8c00" : null]);
    const alarms = this.values("Alert").filter(alarmOpen).length;
    tiles.push(["alarms", t("ui.tile.alarms"), fmtNumber(alarms, 0), alarms ? "#c62828" : null]);
    tiles.push(["offline", t("ui.tile.offline"), this.offline === null ? none : fmtNumber(this.offline, 0)]);
    tiles.push(["rate", t("ui.tile.rate"), this.rate === null ? none : fmtNumber(this.rate, 1)]);
    const frag = [];
    for (const [id, label, value, color] of tiles) {
      // the alarms tile opens the list of open alarms
      const d = document.createElement(id === "alarms" && this.onAlarms ? "button" : "div");
      if (d.tagName === "BUTTON") {
        d.type = "button";
        d.addEventListener("click", () => this.onAlarms());
      }
      d.className = "tile";
      d.id = `tile-${id}`;
      const v = document.createElement("strong");
      v.textContent = value;
      if (color) d.style.setProperty("--tile-accent", color);
      const l = document.createElement("span");
      l.textContent = label;
      d.append(v, l);
      frag.push(d);
    }
    const counts = document.createElement("details");
    counts.className = "tile counts";
    counts.id = "tile-entities";
    const total = [...this.store.values()].reduce((a, m) => a + m.size, 0);
    const sum = document.createElement("summary");
    sum.innerHTML = `<strong></strong><span></span>`;
    sum.firstChild.textContent = fmtNumber(total, 0);
    sum.lastChild.textContent = t("ui.tile.entities");
    const open = this.grid.querySelector("#tile-entities")?.open;
    counts.open = Boolean(open);
    const table = document.createElement("table");
    for (const [type, m] of [...this.store.entries()].sort((a, b) => b[1].size - a[1].size)) {
      if (!m.size) continue;
      const tr = table.insertRow();
      tr.dataset.type = type;
      tr.insertCell().textContent = typeLabel(type);
      tr.insertCell().textContent = fmtNumber(m.size, 0);
    }
    counts.append(sum, table);
    this.grid.replaceChildren(counts, ...frag);
  }
}
