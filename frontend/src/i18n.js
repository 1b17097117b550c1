// UI strings (sent by the server for the page's language) and locale formatting.
export const config = JSON.parse(document.getElementById("sencity-config").textContent);
const strings = config.strings;
export const locale = config.lang === "vi" ? "vi-VN" : "en-GB";
export const timeZone = config.timezone || "Asia/Ho_Chi_Minh";

export function t(key, vars) {
  let s = strings[key];
  if (s === undefined) return key;
  if (vars) for (const [k, v] of Object.entries(vars)) s = s.replace(`{${k}}`, v);
  return s;
}

export function has(key) {
  return Object.prototype.hasOwnProperty.call(strings, key);
}

const numberFormats = new Map();
export function fmtNumber(v, digits = 2) {
  let f = numberFormats.get(digits);
  if (!f) {
    f = new Intl.NumberFormat(locale, { maximumFractionDigits: digits });
    numberFormats.set(digits, f);
  }
  return f.format(v);
}

const percent = new Intl.NumberFormat(locale, { style: "percent", maximumFractionDigits: 0 });
export const fmtPercent = (v) => percent.format(v);

const dateTime = new Intl.DateTimeFormat(locale, {
  timeZone,
  dateStyle: "short",
  timeStyle: "medium",
});
export function fmtTime(iso) {
  const d = iso instanceof Date ? iso : new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : dateTime.format(d);
}

// a value in the user's language: vocabulary terms translated, numbers per locale
export function fmtValue(v) {
  if (v === null || v === undefined) return t("ui.tile.none");
  if (typeof v === "boolean") return v ? t("ui.yes") : t("ui.no");
  if (typeof v === "number") return fmtNumber(v);
  if (typeof v === "string") return has(`value.${v}`) ? t(`value.${v}`) : v;
  if (Array.isArray(v)) return v.map(fmtValue).join(", ");
  return JSON.stringify(v);
}

export const typeLabel = (type) => (has(`type.${type}`) ? t(`type.${type}`) : type);
export const attrLabel = (name) => (has(`attr.${name}`) ? t(`attr.${name}`) : name);
