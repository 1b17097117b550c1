// The map's layers: which entity type each shows, how it is coloured, its legend.
// Colours are computed here (not in MapLibre expressions) so that derived attributes
// written by the rules engine win, with a client-side fallback until they exist.

const GREY = "#8a96a3";

// VN_AQI colours (airQualityColor) by category
export const AQI_COLORS = {
  good: "#00e400",
  moderate: "#ffff00",
  poor: "#ff7e00",
  bad: "#ff0000",
  veryBad: "#8f3f97",
  hazardous: "#7e0023",
};
const AQI_LEVELS = Object.keys(AQI_COLORS);
// PM2.5 (µg/m³, hourly) breakpoints of the VN_AQI categories (QĐ 1459/QĐ-TCMT)
const PM25_BREAKS = [25, 50, 80, 150, 250];
const AQI_BREAKS = [50, 100, 150, 200, 300];

const level = (v, breaks) => {
  let i = 0;
  while (i < breaks.length && v > breaks[i]) i++;
  return i;
};

export function aqiLevel(e) {
  if (typeof e.airQualityLevel === "string" && AQI_COLORS[e.airQualityLevel]) return e.airQualityLevel;
  if (typeof e.airQualityIndex === "number") return AQI_LEVELS[level(e.airQualityIndex, AQI_BREAKS)];
  if (typeof e.pm25 === "number") return AQI_LEVELS[level(e.pm25, PM25_BREAKS)];
  return null;
}

export function airColor(e) {
  if (typeof e.airQualityColor === "string" && /^#[0-9a-f]{6}$/i.test(e.airQualityColor)) {
    return e.airQualityColor;
  }
  const l = aqiLevel(e);
  return l ? AQI_COLORS[l] : GREY;
}

export function speedRatio(e) {
  if (typeof e.speedRatio === "number") return e.speedRatio;
  if (typeof e.averageVehicleSpeed === "number" && typeof e.freeFlowSpeed === "number" && e.freeFlowSpeed > 0) {
    return e.averageVehicleSpeed / e.freeFlowSpeed;
  }
  return null;
}

export const TRAFFIC_COLORS = ["#1a9e3f", "#f2c200", "#f57c00", "#c62828"];
export function trafficColor(e) {
  const r = speedRatio(e);
  if (r === null) return GREY;
  if (r >= 0.8) return TRAFFIC_COLORS[0];
  if (r >= 0.5) return TRAFFIC_COLORS[1];
  if (r >= 0.25) return TRAFFIC_COLORS[2];
  return TRAFFIC_COLORS[3];
}

export function floodLevel(e) {
  if (typeof e.floodAlertLevel === "number") return e.floodAlertLevel;
  const h = e.currentLevel;
  if (typeof h !== "number") return null;
  let n = 0;
  for (const k of [1, 2, 3]) {
    const a = e[`alertLevel${k}`];
    if (typeof a === "number" && h >= a) n = k;
  }
  return n;
}
export const FLOOD_COLORS = ["#1e88e5", "#fdd835", "#fb8c00", "#c62828"];
export const floodColor = (e) => {
  const l = floodLevel(e);
  return l === null ? GREY : FLOOD_COLORS[l];
};

export const LIGHT_COLORS = { on: "#ffd54f", off: "#455a64", fault: "#e040fb" };
export function lightState(e) {
  if (e.status && e.status !== "ok") return "fault";
  return e.powerState === "on" ? "on" : "off";
}

export function parkingOccupancy(e) {
  if (typeof e.occupancy === "number") return e.occupancy;
  if (typeof e.availableSpotNumber === "number" && e.totalSpotNumber > 0) {
    return 1 - e.availableSpotNumber / e.totalSpotNumber;
  }
  return null;
}
export const PARKING_COLORS = ["#2e7d32", "#ef6c00", "#c62828"];
export function parkingColor(e) {
  const o = parkingOccupancy(e);
  if (o === null) return GREY;
  return o < 0.7 ? PARKING_COLORS[0] : o < 0.9 ? PARKING_COLORS[1] : PARKING_COLORS[2];
}

export const NOISE_COLORS = ["#43a047", "#fb8c00", "#d81b60"];
export function noiseColor(e) {
  if (typeof e.LAeq !== "number") return GREY;
  return e.LAeq < 55 ? NOISE_COLORS[0] : e.LAeq <= 70 ? NOISE_COLORS[1] : NOISE_COLORS[2];
}

export const ALARM_COLORS = { critical: "#b71c1c", major: "#e65100", minor: "#f9a825", warning: "#0277bd" };
export const alarmOpen = (e) => !e.alarmStatus || String(e.alarmStatus).startsWith("active");
// reports and calls that are closed stay in the hub (history, search) but leave the map
const CLOSED = new Set(["closed", "resolved", "cancelled", "rejected", "done"]);
export const reportOpen = (e) => !CLOSED.has(e.resolutionStatus);
export const callOpen = (e) => !CLOSED.has(e.status);

// basemap layers (drawn from the city's own vector data) come first, then the live ones
export const BASEMAP = [
  { id: "wards", type: "AdministrativeArea", basemap: true, visible: true,
    legend: [["#5c7fa3", "legend.ward"]] },
  { id: "water", type: "WaterBody", basemap: true, visible: true, legend: [["#8ec5ef", "legend.water"]] },
  { id: "roads", type: "RoadSegment", basemap: true, visible: true, legend: [["#c5ccd4", "legend.road"]] },
  { id: "pois", type: "PointOfInterest", basemap: true, visible: false, legend: [["#7d6b91", "legend.poi"]] },
];

export const LAYERS = [
  { id: "traffic", type: "TrafficFlowObserved", geom: "line", color: trafficColor, visible: true,
    legend: TRAFFIC_COLORS.map((c, i) => [c, ["legend.traffic.free", "legend.traffic.slow", "legend.traffic.heavy", "legend.traffic.jam"][i]]) },
  { id: "air", type: "AirQualityObserved", color: airColor, radius: 9, visible: true,
    legend: [...AQI_LEVELS.map((l) => [AQI_COLORS[l], `legend.aqi.${l}`]), [null, "legend.aqi.note"]] },
  { id: "flood", type: "FloodMonitoring", color: floodColor, radius: 9, visible: true,
    legend: FLOOD_COLORS.map((c, i) => [c, `legend.flood.${i}`]) },
  { id: "weather", type: "WeatherObserved", color: () => "#00838f", radius: 7, visible: false,
    legend: [["#00838f", "legend.weather"]] },
  { id: "noise", type: "NoiseLevelObserved", color: noiseColor, radius: 7, visible: false,
    legend: NOISE_COLORS.map((c, i) => [c, ["legend.noise.low", "legend.noise.mid", "legend.noise.high"][i]]) },
  { id: "streetlights", type: "Streetlight", color: (e) => LIGHT_COLORS[lightState(e)], radius: 4, cluster: true, visible: false,
    legend: [[LIGHT_COLORS.on, "legend.light.on"], [LIGHT_COLORS.off, "legend.light.off"], [LIGHT_COLORS.fault, "legend.light.fault"], ["#5b6b7b", "legend.cluster"]] },
  { id: "parking", type: "OffStreetParking", color: parkingColor, radius: 8, visible: false,
    legend: PARKING_COLORS.map((c, i) => [c, ["legend.parking.free", "legend.parking.busy", "legend.parking.full"][i]]) },
  { id: "buses", type: "Vehicle", color: () => "#1565c0", radius: 6, visible: true, legend: [["#1565c0", "legend.bus"]] },
  { id: "reports", type: "IssueReporting", color: () => "#6a1b9a", radius: 6, cluster: true, visible: false, filter: reportOpen,
    legend: [["#6a1b9a", "legend.report"], ["#5b6b7b", "legend.cluster"]] },
  { id: "incidents", type: "EmergencyCall", color: () => "#d50000", radius: 8, cluster: true, visible: true, filter: callOpen,
    legend: [["#d50000", "legend.incident"], ["#5b6b7b", "legend.cluster"]] },
  { id: "alarms", type: "Alert", color: (e) => ALARM_COLORS[e.severity] || ALARM_COLORS.warning, radius: 10, ring: true,
    visible: true, filter: alarmOpen,
    legend: Object.entries(ALARM_COLORS).map(([k, c]) => [c, `legend.alarm.${k}`]) },
];

export const ALL_LAYERS = [...BASEMAP, ...LAYERS];
export const LAYER_BY_TYPE = new Map(ALL_LAYERS.map((l) => [l.type, l]));
