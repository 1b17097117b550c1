// History charts with uPlot: one entity's attribute, or a city-wide average.
import uPlot from "uplot";
import { NGSI, json } from "./api.js";
import { fmtNumber, locale, t, timeZone } from "./i18n.js";

const HOUR = 3600e3;
export const RANGES = { hour: HOUR, day: 24 * HOUR, week: 7 * 24 * HOUR };

// raw readings for short spans, averages over periods for long ones
export function periodFor(spanMs) {
  if (spanMs <= 2 * HOUR) return null;
  if (spanMs <= 2 * 24 * HOUR) return ["PT10M", 600];
  if (spanMs <= 14 * 24 * HOUR) return ["PT1H", 3600];
  return ["P1D", 86400];
}

function temporalParams(attr, from, to) {
  const period = periodFor(to - from);
  const q = new URLSearchParams({
    attrs: attr,
    timerel: "between",
    timeAt: new Date(from).toISOString(),
    endTimeAt: new Date(to).toISOString(),
  });
  if (period) {
    q.set("options", "aggregatedValues");
    q.set("aggrMethods", "avg");
    q.set("aggrPeriodDuration", period[0]);
  } else q.set("options", "temporalValues");
  return { q, period };
}

// [[times (s)], [values]] of one attribute's history
function series(attrBody, period) {
  const xs = [];
  const ys = [];
  if (!attrBody) return [xs, ys];
  const list = Array.isArray(attrBody) ? attrBody[0] : attrBody;
  if (period) {
    for (const [v, start] of list.avg || []) {
      xs.push(Date.parse(start) / 1000);
      ys.push(typeof v === "number" ? v : null);
    }
  } else {
    for (const [v, at] of list.values || []) {
      xs.push(Date.parse(at) / 1000);
      ys.push(typeof v === "number" ? v : typeof v === "boolean" ? Number(v) : null);
    }
  }
  return [xs, ys];
}

export async function entityHistory(id, attr, from, to) {
  const { q, period } = temporalParams(attr, from, to);
  const body = await json(`${NGSI}/temporal/entities/${encodeURIComponent(id)}?${q}`);
  return { data: series(body[attr], period), period, range: [from / 1000, to / 1000] };
}

// the average of every entity of `type` per hour over the last 24 hours
export async function cityAverage(type, attr, to = Date.now()) {
  const from = to - 24 * HOUR;
  const q = new URLSearchParams({
    type,
    attrs: attr,
    timerel: "between",
    timeAt: new Date(from).toISOString(),
    endTimeAt: new Date(to).toISOString(),
    options: "aggregatedValues",
    aggrMethods: "avg",
    aggrPeriodDuration: "PT1H",
    limit: "1000",
  });
  const body = await json(`${NGSI}/temporal/entities?${q}`);
  const sums = new Map();
  for (const e of body) {
    const [xs, ys] = series(e[attr], ["PT1H"]);
    xs.forEach((x, i) => {
      if (ys[i] === null) return;
      const s = sums.get(x) || [0, 0];
      s[0] += ys[i];
      s[1] += 1;
      sums.set(x, s);
    });
  }
  const xs = [...sums.keys()].sort((a, b) => a - b);
  const data = [xs, xs.map((x) => sums.get(x)[0] / sums.get(x)[1])];
  data.range = [from / 1000, to / 1000];
  return data;
}

const axisFormats = new Map();
function axisTime(ts, span) {
  const key = span > 2 * 86400 ? "d" : "t";
  let f = axisFormats.get(key);
  if (!f) {
    const opts = key === "d" ? { day: "numeric", month: "numeric" } : { hour: "2-digit", minute: "2-digit", hourCycle: "h23" };
    f = new Intl.DateTimeFormat(locale, { timeZone, ...opts });
    axisFormats.set(key, f);
  }
  return f.format(new Date(ts * 1000));
}

export function drawChart(el, data, { label, unit, width, range }) {
  el.replaceChildren();
  if (!data[0].length) {
    const p = document.createElement("p");
    p.className = "empty";
    p.textContent = t("ui.panel.nohistory");
    el.append(p);
    return null;
  }
  const css = getComputedStyle(document.documentElement);
  const fg = css.getPropertyValue("--fg").trim() || "#222";
  const rem = parseFloat(css.fontSize) || 16;
  const axis = { stroke: fg, grid: { stroke: "rgba(128,128,128,.25)" }, font: `${0.8 * rem}px system-ui`, size: 3.2 * rem };
  const plot = new uPlot(
    {
      width: width || el.clientWidth || 400,
      height: Math.round(12 * rem),
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), timeZone),
      legend: { show: false },
      cursor: { points: { size: 6 } },
      scales: { x: { time: true, ...(range ? { range: () => range } : {}) } },
      axes: [{ ...axis, values: (u, ticks) => ticks.map((v) => axisTime(v, u.scales.x.max - u.scales.x.min)) }, { ...axis, values: (u, ticks) => ticks.map((v) => fmtNumber(v, 1)), label: unit || "" }],
      series: [
        {},
        { label, stroke: "#0b6bcb", width: 2, fill: "rgba(11,107,203,.12)",
          points: { show: data[0].length < 80 }, spanGaps: true },
      ],
    },
    data,
    el,
  );
  el.setAttribute("role", "img");
  const last = data[1][data[1].length - 1];
  el.setAttribute("aria-label", `${label}: ${data[0].length} ${t("ui.chart.raw")}, ${last === null ? "" : fmtNumber(last)} ${unit || ""}`);
  return plot;
}
