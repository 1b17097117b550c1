// The entity panel: current attributes (with units and times) and a history chart.
import { NGSI, json } from "./api.js";
import { RANGES, drawChart, entityHistory } from "./chart.js";
import { attrLabel, fmtPercent, fmtTime, fmtValue, t, typeLabel } from "./i18n.js";
import { FRACTIONS, unitOf } from "./units.js";

const SKIP = new Set(["id", "type", "@context", "location", "centroid"]);
const el = (tag, attrs = {}, ...children) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "text") e.textContent = v;
    else e.setAttribute(k, v);
  }
  e.append(...children);
  return e;
};

function display(name, attr) {
  const v = attr.value ?? attr.object ?? attr.languageMap ?? attr.vocab ?? attr.json;
  if (typeof v === "number" && FRACTIONS.has(name) && v >= 0 && v <= 1) return fmtPercent(v);
  if (typeof v === "string" && /^\d{4}-\d\d-\d\dT/.test(v)) return fmtTime(v);
  if (v && typeof v === "object" && !Array.isArray(v)) {
    if (v["@value"] !== undefined) return fmtValue(v["@value"]);
    if (attr.languageMap) return v.vi || v.en || Object.values(v)[0];
  }
  const unit = unitOf(name, attr.unitCode);
  return `${fmtValue(v)}${unit ? ` ${unit}` : ""}`;
}

export class EntityPanel {
  constructor(root, { onClose }) {
    this.root = root;
    this.onClose = onClose;
    this.id = null;
    this.range = "day";
    this.custom = null;
    this.attr = null;
    document.addEventListener("keydown", (ev) => {
      if (ev.key === "Escape" && !this.root.hidden) this.close();
    });
  }

  close() {
    this.root.hidden = true;
    this.id = null;
    this.onClose();
  }

  async open(id) {
    this.id = id;
    this.attr = null;
    this.root.hidden = false;
    this.root.replaceChildren(el("p", { text: t("ui.loading") }));
    await this.refresh();
    this.root.querySelector("button.close")?.focus();
  }

  // a list of entities (the open alarms), each opening its own panel
  showList(title, entities, describe) {
    this.id = null;
    this.root.hidden = false;
    const close = el("button", { class: "close", type: "button", "aria-label": t("ui.close"), text: "×" });
    close.addEventListener("click", () => this.close());
    const list = el("ul", { class: "entity-list" });
    for (const e of entities) {
      const b = el("button", { type: "button", "data-id": e.id }, el("strong", { text: describe(e)[0] }), el("span", { text: describe(e)[1] }));
      b.addEventListener("click", () => this.open(e.id));
      list.append(el("li", {}, b));
    }
    if (!entities.length) list.append(el("li", { text: t("ui.search.none") }));
    this.root.replaceChildren(el("header", {}, el("h2", { id: "panel-title", text: title }), close), list);
    close.focus();
  }

  // called by the live stream when the open entity changed
  async changed(id) {
    if (id !== this.id || this.root.hidden) return;
    await this.refresh(false);
    // the last hour's chart follows the readings (at most every 5 s)
    if (this.range === "hour" && Date.now() - (this.redrawn || 0) > 5000) {
      this.redrawn = Date.now();
      await this.drawHistory();
    }
  }

  async refresh(withChart = true) {
    const id = this.id;
    let e;
    try {
      e = await json(`${NGSI}/entities/${encodeURIComponent(id)}`);
    } catch (err) {
      this.root.replaceChildren(el("p", { role: "alert", text: t("ui.error.load", { e: err.message }) }));
      return;
    }
    if (id !== this.id) return;
    const name = typeof e.name === "object" ? e.name.value : null;
    const header = el("header", {},
      el("h2", { id: "panel-title", text: name || id.split(":").pop() }),
      el("p", { class: "type", text: `${typeLabel(e.type)} · ${id}` }),
      el("button", { class: "close", type: "button", "aria-label": t("ui.close"), text: "×" }));
    header.querySelector("button").addEventListener("click", () => this.close());
    const rows = [];
    const numeric = [];
    for (const [k, a] of Object.entries(e)) {
      if (SKIP.has(k) || !a || typeof a !== "object" || Array.isArray(a)) continue;
      const when = a.observedAt ? fmtTime(a.observedAt) : "";
      rows.push(el("tr", { "data-attr": k },
        el("th", { scope: "row", text: attrLabel(k) }),
        el("td", { class: "v", text: display(k, a) }),
        el("td", { class: "t", text: when })));
      if (typeof a.value === "number" && a.observedAt) numeric.push(k);
    }
    const table = el("table", { class: "attrs" },
      el("caption", { text: t("ui.panel.attributes") }),
      el("thead", {}, el("tr", {},
        el("th", { scope: "col", text: t("ui.panel.attribute") }),
        el("th", { scope: "col", text: t("ui.panel.value") }),
        el("th", { scope: "col", text: t("ui.panel.time") }))),
      el("tbody", {}, ...rows));
    if (!withChart && this.root.querySelector("table.attrs")) {
      this.root.querySelector("table.attrs").replaceWith(table);
      return;
    }
    const parts = [header, table];
    if (numeric.length) {
      this.attr = this.attr && numeric.includes(this.attr) ? this.attr : numeric[0];
      parts.push(this.historyControls(numeric));
    }
    this.root.replaceChildren(...parts);
    if (numeric.length) await this.drawHistory(e);
  }

  historyControls(numeric) {
    const box = el("section", { class: "history", "aria-labelledby": "history-title" });
    box.append(el("h3", { id: "history-title", text: t("ui.panel.history") }));
    const sel = el("select", { id: "history-attr", "aria-label": t("ui.panel.attribute") });
    for (const k of numeric) {
      const o = el("option", { value: k, text: attrLabel(k) });
      if (k === this.attr) o.selected = true;
      sel.append(o);
    }
    sel.addEventListener("change", () => {
      this.attr = sel.value;
      this.drawHistory();
    });
    const ranges = el("div", { class: "ranges", role: "group", "aria-label": t("ui.range") });
    for (const r of ["hour", "day", "week", "custom"]) {
      const b = el("button", { type: "button", "data-range": r, "aria-pressed": String(r === this.range), text: t(`ui.range.${r}`) });
      b.addEventListener("click", () => {
        this.range = r;
        for (const x of ranges.querySelectorAll("button")) x.setAttribute("aria-pressed", String(x === b));
        box.querySelector(".custom").hidden = r !== "custom";
        if (r !== "custom") this.drawHistory();
      });
      ranges.append(b);
    }
    const local = (ms) => new Date(ms - new Date(ms).getTimezoneOffset() * 60e3).toISOString().slice(0, 16);
    const from = el("input", { type: "datetime-local", id: "range-from", value: local(Date.now() - RANGES.day) });
    const to = el("input", { type: "datetime-local", id: "range-to", value: local(Date.now()) });
    const go = el("button", { type: "button", text: t("ui.range.apply") });
    go.addEventListener("click", () => {
      this.custom = [new Date(from.value).getTime(), new Date(to.value).getTime()];
      this.drawHistory();
    });
    const custom = el("div", { class: "custom" },
      el("label", { for: "range-from", text: t("ui.range.from") }), from,
      el("label", { for: "range-to", text: t("ui.range.to") }), to, go);
    custom.hidden = this.range !== "custom";
    box.append(sel, ranges, custom, el("div", { class: "chart", id: "history-chart" }));
    return box;
  }

  async drawHistory() {
    const box = this.root.querySelector("#history-chart");
    if (!box || !this.attr) return;
    const now = Date.now();
    const [from, to] = this.range === "custom" && this.custom ? this.custom : [now - RANGES[this.range], now];
    box.setAttribute("aria-busy", "true");
    try {
      const { data, period, range } = await entityHistory(this.id, this.attr, from, to);
      const row = this.root.querySelector(`tr[data-attr="${this.attr}"] td.v`);
      const unit = FRACTIONS.has(this.attr) ? "" : unitOf(this.attr, null);
      const label = `${attrLabel(this.attr)} (${period ? t("ui.chart.avg", { p: period[0] }) : t("ui.chart.raw")})`;
      drawChart(box, data, { label, unit, width: box.clientWidth, range });
      box.dataset.points = String(data[0].length);
      if (row) box.dataset.current = row.textContent;
    } catch (err) {
      box.replaceChildren(el("p", { role: "alert", text: t("ui.error.load", { e: err.message }) }));
    } finally {
      box.removeAttribute("aria-busy");
    }
  }
}
