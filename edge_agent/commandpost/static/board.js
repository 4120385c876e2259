// The command post's board: map, alert list, boxes, alert detail and acks, kept live by server-sent events.
// Every text that came from a box is put in with textContent (never innerHTML): summaries, names and ids are
// untrusted. The page talks to its own origin only (the server's Content Security Policy says so too).
"use strict";

const SEV_COLOR = {info: "#8a8f98", low: "#2f7fd8", medium: "#e0a100", high: "#f05a1a", critical: "#d7001d"};
const SEV_RANK = {info: 0, low: 1, medium: 2, high: 3, critical: 4};
const OPEN = new Set(["new", "updated", "escalated"]);
const CSRF = document.querySelector('meta[name="csrf"]').content;

const state = {
  me: null, alerts: new Map(), boxes: new Map(), sites: new Map(), maxAlerts: 500, silentAfter: 90,
  markers: new Map(), siteLayers: new Map(), selected: null, ackSent: new Set(), fitted: false,
  dirty: new Set(), frame: 0, clockSkew: 0, hidden: new Set(), boxFrame: 0,
};
// When each alert state ("ID/STATE") and kind ("ID/KIND") was first drawn (epoch ms, performance clock): read by
// the benchmark and the tests.
window.__cp = {shown: new Map(), kinds: new Map(), events: 0, sites: state.sites};

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "text") node.textContent = String(v);
    else if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}

function now() { return Date.now() / 1000 - state.clockSkew; }

function age(ts) {
  const s = Math.max(0, Math.round(now() - ts));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d`;
}

function clock(ts) { return ts ? new Date(ts * 1000).toLocaleTimeString() : ""; }

async function api(path, options) {
  const r = await fetch(path, Object.assign({credentials: "same-origin"}, options || {}));
  if (r.status === 401) { location.href = "/login"; throw new Error("signed out"); }
  const body = r.headers.get("content-type")?.includes("json") ? await r.json() : await r.text();
  if (!r.ok) throw new Error((body && body.error) || `${r.status}`);
  return body;
}

// -- the map ---------------------------------------------------------------------------------------------

let map, alertLayer, siteGroup;

function gridLayer() {
  // A plain grid (no base map configured): tile borders and their corner coordinates, so that distances and
  // shapes stay readable with the scale bar.
  const Grid = L.GridLayer.extend({
    createTile(coords) {
      const tile = document.createElement("canvas");
      const size = this.getTileSize();
      tile.width = size.x; tile.height = size.y;
      const ctx = tile.getContext("2d");
      ctx.fillStyle = "#f4f2ec"; ctx.fillRect(0, 0, size.x, size.y);
      ctx.strokeStyle = "#c9c4b8"; ctx.lineWidth = 1;
      ctx.strokeRect(0.5, 0.5, size.x, size.y);
      ctx.strokeStyle = "#e2ded4";
      ctx.beginPath(); ctx.moveTo(size.x / 2, 0); ctx.lineTo(size.x / 2, size.y);
      ctx.moveTo(0, size.y / 2); ctx.lineTo(size.x, size.y / 2); ctx.stroke();
      const nw = map.unproject(coords.scaleBy(size), coords.z);
      ctx.fillStyle = "#8d877a"; ctx.font = "10px sans-serif";
      ctx.fillText(`${nw.lat.toFixed(4)}, ${nw.lng.toFixed(4)}`, 4, 12);
      return tile;
    },
  });
  return new Grid({maxZoom: 22});
}

function initMap(cfg) {
  map = L.map("map", {zoomControl: true, maxZoom: cfg.max_zoom || 22, attributionControl: true});
  map.attributionControl.setPrefix(false);
  if (cfg.tiles) {
    const layer = L.tileLayer("/tiles/{z}/{x}/{y}", {maxZoom: cfg.max_zoom || 19});
    layer.getAttribution = () => escapeText(cfg.attribution || "");
    layer.addTo(map);
  } else {
    gridLayer().addTo(map);
  }
  L.control.scale({imperial: false, maxWidth: 200}).addTo(map);
  siteGroup = L.featureGroup().addTo(map);
  alertLayer = L.featureGroup().addTo(map);
  if (cfg.center) map.setView(cfg.center, cfg.zoom || 15);
  else map.setView([0, 0], 2);
}

function escapeText(s) { const d = document.createElement("div"); d.textContent = s; return d.innerHTML; }

function tip(...lines) {
  const box = el("div", {class: "tip"});
  for (const line of lines) if (line) box.append(el("div", {text: line}));
  return box;
}

const SITE_STYLE = {
  zone: {color: "#c0392b", weight: 2, fillOpacity: 0.08},
  line: {color: "#6c3483", weight: 3, dashArray: "6 4"},
  camera: {color: "#1f618d", weight: 1, fillOpacity: 0.06, dashArray: "2 3"},
};

function drawSite(entry) {
  const old = state.siteLayers.get(entry.key);
  if (old) siteGroup.removeLayer(old);
  const layer = L.geoJSON({type: "FeatureCollection", features: entry.map.features.filter((f) => f.geometry)}, {
    style: (f) => SITE_STYLE[f.properties.kind] || {color: "#555", weight: 1},
    pointToLayer: (f, at) => L.circleMarker(at, {radius: 5, color: "#117a65", fillColor: "#1abc9c", fillOpacity: 0.9,
                                                 weight: 2}),
    onEachFeature: (f, l) => {
      const p = f.properties;
      l.bindTooltip(tip(`${p.kind}: ${p.name || p.id || ""}`, `${entry.key}${p.camera ? " · camera " + p.camera : ""}`));
      l.feature.properties.box = entry.key;
    },
  });
  layer.addTo(siteGroup);
  state.siteLayers.set(entry.key, layer);
  state.sites.set(entry.key, entry);
}

function fitOnce() {
  if (state.fitted) return;
  const b = siteGroup.getBounds().extend(alertLayer.getBounds());
  if (b.isValid()) { map.fitBounds(b.pad(0.2), {maxZoom: 18}); state.fitted = true; }
}

function drawMarker(a) {
  const old = state.markers.get(a.alert_id);
  const show = a.lat !== null && a.lon !== null && a.state !== "closed";
  if (!show) { if (old) { alertLayer.removeLayer(old); state.markers.delete(a.alert_id); } return; }
  const style = {radius: a.severity === "critical" ? 10 : 8, color: "#222", weight: 1,
                 fillColor: SEV_COLOR[a.severity], fillOpacity: a.state === "acknowledged" ? 0.35 : 0.95};
  if (old) { old.setLatLng([a.lat, a.lon]); old.setStyle(style); old.setTooltipContent(tip(a.summary)); return; }
  const m = L.circleMarker([a.lat, a.lon], style).bindTooltip(tip(a.summary));
  m.on("click", () => openDetail(a.alert_id));
  m.addTo(alertLayer);
  m.getElement?.()?.setAttribute("data-alert-id", a.alert_id);
  state.markers.set(a.alert_id, m);
}

// -- the alert board -------------------------------------------------------------------------------------

function order(a, b) {
  const ao = OPEN.has(a.state), bo = OPEN.has(b.state);
  if (ao !== bo) return ao ? -1 : 1;
  if (ao && a.sev_rank !== b.sev_rank) return b.sev_rank - a.sev_rank;
  return b.ts - a.ts;
}

function ackButton(a) {
  if (!state.me.can_ack || !OPEN.has(a.state)) return null;
  const sent = state.ackSent.has(a.alert_id);
  return el("button", {type: "button", class: "ack-btn", text: sent ? "sent" : "Ack", disabled: sent,
                       onclick: (ev) => { ev.stopPropagation(); sendAck(a.alert_id, ""); }});
}

function alertRow(a) {
  const tr = el("tr", {"data-alert-id": a.alert_id, class: `sev-${a.severity} state-${a.state}`,
                       onclick: () => openDetail(a.alert_id)},
    el("td", {}, el("span", {class: "sev", text: a.severity})),
    el("td", {class: "kind", text: a.kind}),
    el("td", {class: "zone", text: a.zone || "-"}),
    el("td", {class: "box", text: `${a.site}/${a.box}`}),
    el("td", {class: "sensors", text: a.sensors.join(" + ") || "-"}),
    el("td", {class: "summary", text: a.summary}),
    el("td", {class: "age", "data-ts": a.ts, text: age(a.ts)}),
    el("td", {class: "state", text: a.state === "acknowledged" && a.acked_by ? `acked by ${a.acked_by}` : a.state}),
    el("td", {}, ackButton(a)));
  return tr;
}

function trimAlerts() {
  // at most maxAlerts in the page: the first in the board's order (open, most severe, newest) stay; the rest
  // are in History. Open ones that drop out are counted on the board.
  if (state.alerts.size <= state.maxAlerts) return;
  const sorted = [...state.alerts.values()].sort(order);
  for (const a of sorted.slice(state.maxAlerts)) {
    if (OPEN.has(a.state)) state.hidden.add(a.alert_id);
    state.alerts.delete(a.alert_id);
    state.dirty.delete(a.alert_id);
    const m = state.markers.get(a.alert_id);
    if (m) { alertLayer.removeLayer(m); state.markers.delete(a.alert_id); }
  }
}

function renderBoard() {
  state.frame = 0;
  trimAlerts();
  const body = document.querySelector("#alerts tbody");
  const rows = new Map([...body.children].map((tr) => [tr.dataset.alertId, tr]));
  const t = performance.timeOrigin + performance.now();
  for (const id of state.dirty) {
    const a = state.alerts.get(id);
    const old = rows.get(id);
    if (!a) { if (old) old.remove(); rows.delete(id); continue; }
    const tr = alertRow(a);
    if (old) old.replaceWith(tr);
    rows.set(id, tr);
    drawMarker(a);
    for (const [m, k] of [[window.__cp.shown, `${id}/${a.state}`], [window.__cp.kinds, `${id}/${a.kind}`]]) {
      if (!m.has(k)) m.set(k, t);  // when it was first drawn so
    }
  }
  for (const [id, tr] of rows) if (!state.alerts.has(id)) { tr.remove(); rows.delete(id); }
  const sorted = [...state.alerts.values()].sort(order);
  let prev = null;
  for (const a of sorted) {  // move rows only where the order changed
    const tr = rows.get(a.alert_id);
    const want = prev ? prev.nextSibling : body.firstChild;
    if (tr !== want) body.insertBefore(tr, want);
    prev = tr;
  }
  state.dirty.clear();
  if (window.__cp.shown.size > 50000) { window.__cp.shown.clear(); window.__cp.kinds.clear(); }
  const open = sorted.filter((a) => OPEN.has(a.state)).length;
  const more = state.hidden.size ? ` · ${state.hidden.size} more open in History` : "";
  document.getElementById("alert-count").textContent = `${open} open · ${sorted.length} shown${more}`;
  renderBanner();
  fitOnce();
  if (state.selected && state.alerts.has(state.selected)) refreshDetailState(state.alerts.get(state.selected));
}

function schedule() {
  if (state.me && !state.frame) state.frame = requestAnimationFrame(renderBoard);
}

function upsertAlert(a) {
  if (!a) return;
  const old = state.alerts.get(a.alert_id);
  if (old && old.ts > a.ts) return;  // an older state arriving late
  if (a.state === "acknowledged" || a.state === "closed") state.ackSent.delete(a.alert_id);
  state.hidden.delete(a.alert_id);  // drawn again, or dropped again (and counted) by trimAlerts
  state.alerts.set(a.alert_id, a);
  state.dirty.add(a.alert_id);
  schedule();
}

// -- the critical banner and its sound --------------------------------------------------------------------

let audio = null, beepTimer = null;

function beep() {
  if (!audio) return;
  const o = audio.createOscillator(), g = audio.createGain();
  o.frequency.value = 880; g.gain.value = 0.15;
  o.connect(g); g.connect(audio.destination);
  o.start(); o.stop(audio.currentTime + 0.25);
}

function renderBanner() {
  const crit = [...state.alerts.values()].filter((a) => a.severity === "critical" && OPEN.has(a.state));
  const banner = document.getElementById("banner");
  banner.hidden = crit.length === 0;
  if (crit.length) {
    crit.sort((a, b) => b.ts - a.ts);
    document.getElementById("banner-text").textContent =
      `${crit.length} critical alert${crit.length > 1 ? "s" : ""} not acknowledged: ${crit[0].summary} (${crit[0].site}/${crit[0].box})`;
    banner.classList.toggle("escalated", crit.some((a) => a.state === "escalated"));
    if (!audio) { try { audio = new AudioContext(); } catch (e) { audio = null; } }
    document.getElementById("sound").hidden = !audio || audio.state === "running";
    if (!beepTimer) { beep(); beepTimer = setInterval(beep, 1500); }
  } else if (beepTimer) {
    clearInterval(beepTimer); beepTimer = null;
  }
}

// -- boxes -----------------------------------------------------------------------------------------------

function boxState(b) {
  if (b.state === "offline") return "offline";
  if (b.silent) return "silent";
  return b.state;
}

function scheduleBoxes() {  // health of many boxes arrives many times a second: one redraw per frame at most
  if (state.me && !state.boxFrame) state.boxFrame = requestAnimationFrame(() => { state.boxFrame = 0; renderBoxes(); });
}

function renderBoxes() {
  const body = document.querySelector("#boxes tbody");
  body.replaceChildren();
  const warnings = document.getElementById("box-warnings");
  warnings.replaceChildren();
  for (const b of [...state.boxes.values()].sort((x, y) => x.key.localeCompare(y.key))) {
    const h = b.health || {};
    const st = boxState(b);
    const sensors = Object.entries(h.sensors || {}).map(([id, s]) => {
      const bad = s.state && !["ok", "online", "streaming", "ended"].includes(s.state);
      return el("span", {class: `sensor${bad ? " bad" : ""}`, text: `${id}: ${s.state || "?"}`});
    });
    const det = Object.values(h.detector_ms || {}).filter((v) => v !== null);
    body.append(el("tr", {"data-box": b.key, class: `box-${st}`},
      el("td", {text: b.key}),
      el("td", {class: "box-state", text: st + (b.version ? ` (${b.version})` : "")}),
      el("td", {class: "sensors"}, ...sensors),
      el("td", {text: h.backlog ?? "-"}),
      el("td", {text: h.disk_free_mb != null ? `${Math.round(h.disk_free_mb)} MB` : "-"}),
      el("td", {text: det.length ? `${Math.round(Math.max(...det))} ms` : "-"})));
    if (st === "offline" || st === "silent") {
      warnings.append(el("div", {class: "warn box-warning", "data-box": b.key,
        text: st === "offline" ? `Box ${b.key} is offline (since ${clock(b.since)}): its sensors are not watched.`
                               : `Box ${b.key} has sent no health for over ${state.silentAfter} s.`}));
    }
  }
}

// -- the detail view and acks ----------------------------------------------------------------------------

async function sendAck(alertId, note) {
  state.ackSent.add(alertId);
  state.dirty.add(alertId); schedule();
  try {
    await api(`/api/alerts/${alertId}/ack`, {method: "POST", body: JSON.stringify({note}),
                                             headers: {"content-type": "application/json", "x-csrf-token": CSRF}});
  } catch (e) {
    state.ackSent.delete(alertId);
    state.dirty.add(alertId); schedule();
    alert(`Ack not sent: ${e.message}`);
  }
}

function evidenceLine(e) {
  const bits = [clock(Date.parse(e.ts) / 1000), e.sensor, e.type];
  for (const k of ["label", "event", "kind"]) if (e[k] !== undefined) bits.push(String(e[k]));
  if (typeof e.confidence === "number") bits.push(`${Math.round(e.confidence * 100)} %`);
  if (typeof e.level === "number") bits.push(`level ${e.level}`);
  if (typeof e.height_m === "number") bits.push(`${e.height_m.toFixed(1)} m tall`);
  if (typeof e.speed_mps === "number") bits.push(`${e.speed_mps.toFixed(1)} m/s`);
  if (typeof e.rssi_db === "number") bits.push(`${e.rssi_db} dB`);
  if (typeof e.bearing_deg === "number") bits.push(`bearing ${Math.round(e.bearing_deg)}°`);
  return bits.filter((b) => b !== undefined && b !== "").join(" · ");
}

function refreshDetailState(a) {
  const form = document.getElementById("d-ack");
  form.hidden = !(state.me.can_ack && OPEN.has(a.state));
  const btn = form.querySelector("button");
  btn.textContent = state.ackSent.has(a.alert_id) ? "sent" : "Ack";
  btn.disabled = state.ackSent.has(a.alert_id);
}

// an open detail follows its alert: every change (a state, an ack from any command post, a snapshot) reads it again
let detailReads = 0;
async function followDetail(alertId) {
  const read = ++detailReads;
  const d = await api(`/api/alerts/${alertId}`);
  if (state.selected !== alertId || read !== detailReads) return;  // closed, or a newer read is under way
  renderDetail(alertId, d);
}

async function openDetail(alertId) {
  state.selected = alertId;
  const read = ++detailReads;
  const d = await api(`/api/alerts/${alertId}`);
  if (state.selected !== alertId || read !== detailReads) return;
  renderDetail(alertId, d);
  if (d.lat !== null) map.flyTo([d.lat, d.lon], Math.max(map.getZoom(), 17), {duration: 0.5});
  const m = state.markers.get(alertId);
  if (m) m.openTooltip();
}

function renderDetail(alertId, d) {
  const panel = document.getElementById("detail");
  panel.hidden = false;
  panel.dataset.alertId = alertId;
  document.getElementById("d-title").textContent = `${d.severity} ${d.kind} · ${d.site}/${d.box}`;
  document.getElementById("d-summary").textContent = d.summary;
  const facts = document.getElementById("d-facts");
  facts.replaceChildren();
  for (const [k, v] of [["State", d.state], ["Zone", d.zone || "-"], ["Time", new Date(d.ts * 1000).toLocaleString()],
                        ["Sensors", d.sensors.join(" + ") || "-"], ["Alert", d.alert_id],
                        ["Place", d.lat !== null ? `${d.lat.toFixed(6)}, ${d.lon.toFixed(6)}` : "unknown"]]) {
    facts.append(el("dt", {text: k}), el("dd", {text: v}));
  }
  const img = document.getElementById("d-snapshot");
  img.hidden = !d.has_snapshot;
  if (d.has_snapshot) img.src = `/api/snapshots/${alertId}`; else img.removeAttribute("src");
  document.getElementById("d-evidence").replaceChildren(...d.evidence.map((e) => el("li", {text: evidenceLine(e)})));
  document.getElementById("d-states").replaceChildren(...d.states.map(
    (s) => el("li", {text: `${clock(s.ts)} ${s.state} (received ${clock(s.received)})`})));
  document.getElementById("d-acks").replaceChildren(...d.acks.map((k) => el("li", {
    text: `${k.by} at ${clock(k.sent)}${k.note ? ": " + k.note : ""}${k.confirmed ? " (confirmed by the box)" : " (sent)"}`})));
  refreshDetailState(d);
  window.__cp.detailRenders = (window.__cp.detailRenders || 0) + 1;
}

// -- loading and live updates ----------------------------------------------------------------------------

async function load() {
  const s = await api("/api/state");
  state.clockSkew = Date.now() / 1000 - s.now;
  state.me = s.me; state.maxAlerts = s.max_alerts; state.silentAfter = s.silent_after_s;
  if (!map) initMap(s.map);
  document.getElementById("broker").hidden = s.broker;
  for (const e of s.sites) drawSite(e);
  state.boxes = new Map(s.boxes.map((b) => [b.key, b]));
  renderBoxes();
  for (const a of s.alerts) upsertAlert(a);  // merged: an event newer than this read is kept
  for (const id of state.alerts.keys()) state.dirty.add(id);
  renderBoard();
  if (state.selected) followDetail(state.selected);  // what changed while the stream was away
}

function live() {
  const es = new EventSource("/api/events");
  // subscribed first, then loaded: nothing that happens in between is missed (upserts are idempotent); the same
  // after a reconnect
  es.addEventListener("hello", () => load());
  es.addEventListener("alert", (ev) => {
    window.__cp.events++;
    const e = JSON.parse(ev.data);
    upsertAlert(e.alert);
    if (state.selected === e.alert_id) followDetail(e.alert_id);
  });
  es.addEventListener("box", (ev) => {
    const b = JSON.parse(ev.data).box;
    if (b) { state.boxes.set(b.key, b); scheduleBoxes(); }
  });
  es.addEventListener("site", (ev) => { const e = JSON.parse(ev.data).site; if (e && map) { drawSite(e); fitOnce(); } });
  es.addEventListener("snapshot", (ev) => {
    const id = JSON.parse(ev.data).alert_id;
    if (state.selected === id) followDetail(id);
  });
  es.addEventListener("broker", (ev) => { document.getElementById("broker").hidden = JSON.parse(ev.data).connected; });
  es.addEventListener("resync", () => load());
}

function tick() {
  for (const td of document.querySelectorAll("#alerts td.age")) td.textContent = age(Number(td.dataset.ts));
  for (const b of state.boxes.values()) {
    const silent = b.state === "online" && (b.health_ts || b.since || 0) < now() - state.silentAfter;
    if (silent !== b.silent) { b.silent = silent; scheduleBoxes(); }
  }
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("detail-close").addEventListener("click", () => {
    document.getElementById("detail").hidden = true; state.selected = null;
  });
  document.getElementById("d-ack").addEventListener("submit", (ev) => {
    ev.preventDefault();
    if (state.selected) sendAck(state.selected, document.getElementById("d-note").value);
    refreshDetailState(state.alerts.get(state.selected));
  });
  document.getElementById("sound").addEventListener("click", () => {
    if (audio) audio.resume(); document.getElementById("sound").hidden = true;
  });
  live();
  setInterval(tick, 1000);
});
