// Units: UN/CEFACT codes (unitCode) and the defaults of docs/DATAMODEL.md.
export const UNIT_CODES = {
  GQ: "µg/m³", CEL: "°C", KMH: "km/h", MTR: "m", "2N": "dB(A)", KMK: "km²",
  MMT: "mm", HUR: "h", MIN: "min", SEC: "s", MTS: "m/s", A97: "hPa", DD: "°", P1: "%",
};
const DEFAULTS = {
  pm25: "µg/m³", pm10: "µg/m³", no2: "µg/m³", o3: "µg/m³", co: "µg/m³", so2: "µg/m³",
  temperature: "°C", averageVehicleSpeed: "km/h", freeFlowSpeed: "km/h", speed: "km/h",
  maximumAllowedSpeed: "km/h", currentLevel: "m", alertLevel1: "m", alertLevel2: "m",
  alertLevel3: "m", LAeq: "dB(A)", LAmax: "dB(A)", precipitation: "mm/h", windSpeed: "m/s",
  windDirection: "°", heading: "°", atmosphericPressure: "hPa", area: "km²", length: "m",
};
// fractions 0–1 shown as percentages
export const FRACTIONS = new Set(["relativeHumidity", "occupancy", "illuminanceLevel", "speedRatio"]);

export function unitOf(name, unitCode) {
  if (FRACTIONS.has(name)) return "";
  if (unitCode && UNIT_CODES[unitCode]) return UNIT_CODES[unitCode];
  if (unitCode && unitCode !== "C62") return unitCode;
  return DEFAULTS[name] || "";
}
