// The example backend's page: live plot, queries, telecommands.
// Everything goes through the web service (no external resources).
"use strict";

const MAX_POINTS = 600;
const FIELDS = [
  { key: "temperature_c", label: "temperature (°C)", color: "#d1495b" },
  { key: "voltage_v", label: "voltage (V)", color: "#00798c" },
  { key: "current_a", label: "current (A)", color: "#edae49" },
];
const frames = [];
let received = 0;
let dirty = false;

const $ = (id) => document.getElementById(id);
const plot = $("plot");

// --- sign-in -------------------------------------------------------------
// The web service keeps the session in an HttpOnly cookie; the page only
// learns who is signed in, and shows the sign-in form otherwise.
let live = null;
let refresher = null;

function showLogin(reason) {
  if (live) { live.close(); live = null; }
  if (refresher) { clearInterval(refresher); refresher = null; }
  $("main").className = "hidden";
  $("login-section").className = "";
  $("login-error").textContent = reason || "";
  $("live").textContent = "closed";
}

function showMain(user) {
  $("user").textContent = user;
  $("login-section").className = "hidden";
  $("main").className = "";
  startLive();
  refresh();
  if (!refresher) refresher = setInterval(refresh, 5000);
}

$("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("login-error").textContent = "signing in ...";
  try {
    const reply = await post("/api/login", { user: $("login-user").value, password: $("login-password").value });
    $("login-password").value = "";
    showMain(reply.user);
  } catch (e) {
    $("login-error").textContent = String(e.message || e);
  }
});

$("logout").onclick = async () => {
  try { await post("/api/logout", {}); } catch (e) { /* signed out anyway */ }
  showLogin("signed out");
};

fetch("/api/session").then(async (response) => {
  if (response.ok) showMain((await response.json()).user); else showLogin("");
}, () => showLogin("the web service cannot be reached"));

// --- live stream ---------------------------------------------------------
function startLive() {
  if (live) return;
  live = new EventSource("/api/live");
  live.onopen = () => { $("live").textContent = "open"; $("live").className = "status ok"; };
  live.onerror = () => { $("live").textContent = "reconnecting"; $("live").className = "status bad"; };
  live.addEventListener("signed-out", () => showLogin("the session ended; sign in again"));
  live.addEventListener("dropped", () => { $("live").textContent = "too slow, reconnecting"; });
  live.addEventListener("telemetry", (event) => {
    let frame;
    try { frame = JSON.parse(event.data); } catch (e) { return; }
    if (typeof frame.time_ms !== "number") return;
    frames.push(frame);
    if (frames.length > MAX_POINTS) frames.splice(0, frames.length - MAX_POINTS);
    received += 1;
    plot.dataset.frames = String(received);
    $("frames").textContent = String(received);
    dirty = true;
  });
  live.addEventListener("link", (event) => {
    let link;
    try { link = JSON.parse(event.data); } catch (e) { return; }
    const el = $("link");
    el.textContent = link.connected ? "connected" : "disconnected" + (link.reason ? " (" + link.reason + ")" : "");
    el.className = "status " + (link.connected ? "ok" : "bad");
  });
}

// --- the plot: one panel per field, own y scale, shared time axis ----------
function draw() {
  if (!dirty) return;
  dirty = false;
  const ctx = plot.getContext("2d");
  const w = plot.width, h = plot.height, panel = h / FIELDS.length;
  ctx.clearRect(0, 0, w, h);
  ctx.font = "12px sans-serif";
  const t1 = frames[frames.length - 1].time_ms;
  const t0 = Math.min(frames[0].time_ms, t1 - 1);
  let drawn = 0;
  FIELDS.forEach((field, i) => {
    const top = i * panel + 16, height = panel - 24;
    let lo = Infinity, hi = -Infinity;
    for (const f of frames) { lo = Math.min(lo, f[field.key]); hi = Math.max(hi, f[field.key]); }
    if (hi - lo < 1e-9) { hi += 0.5; lo -= 0.5; }
    ctx.fillStyle = "#444";
    ctx.fillText(field.label + "  " + lo.toFixed(2) + " .. " + hi.toFixed(2), 6, top - 3);
    ctx.strokeStyle = "#eee";
    ctx.strokeRect(0, top, w, height);
    ctx.strokeStyle = field.color;
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    frames.forEach((f, j) => {
      const x = ((f.time_ms - t0) / (t1 - t0)) * (w - 2) + 1;
      const y = top + height - ((f[field.key] - lo) / (hi - lo)) * height;
      if (j === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
      drawn += 1;
    });
    ctx.stroke();
  });
  const newest = frames[frames.length - 1];
  plot.dataset.pointsDrawn = String(drawn);
  plot.dataset.draws = String(Number(plot.dataset.draws) + 1);
  plot.dataset.lastCounter = String(newest.counter);
  $("latest-frame").textContent =
    "session " + newest.session + ", counter " + newest.counter + ": " +
    newest.temperature_c.toFixed(2) + " °C, " + newest.voltage_v.toFixed(2) + " V, " +
    newest.current_a.toFixed(3) + " A, status 0x" + newest.status.toString(16);
}
setInterval(draw, 200);

// --- queries ------------------------------------------------------------
async function post(path, body) {
  const response = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  let data = null;
  try { data = await response.json(); } catch (e) { data = null; }
  if (response.status === 401 && path !== "/api/login") showLogin("the session ended; sign in again");
  if (!response.ok) {
    const reason = data && data.error ? data.error : response.statusText;
    const error = new Error(response.status + ": " + reason);
    error.status = response.status;
    throw error;
  }
  return data;
}

function queryFailed(e) { $("query-error").textContent = String(e.message || e); }

async function latest() {
  try {
    const reply = await post("/api/query/latest", { n: 10 });
    const body = $("latest-rows").querySelector("tbody");
    body.replaceChildren(...reply.rows.map((r) => {
      const tr = document.createElement("tr");
      const cells = [r.session, r.counter, new Date(r.time_ms).toISOString().slice(11, 23),
        r.temperature_c.toFixed(2), r.voltage_v.toFixed(2), r.current_a.toFixed(3),
        r.status, r.stored_ms - r.time_ms];
      for (const c of cells) { const td = document.createElement("td"); td.textContent = String(c); tr.appendChild(td); }
      return tr;
    }));
    $("query-error").textContent = "";
  } catch (e) { queryFailed(e); }
}

async function series() {
  const field = $("series-field").value;
  const now = Date.now();
  try {
    const reply = await post("/api/query/series", { field, from_ms: now - 60000, to_ms: now, points: 60 });
    const canvas = $("series"), ctx = canvas.getContext("2d");
    const w = canvas.width, h = canvas.height;
    ctx.clearRect(0, 0, w, h);
    ctx.font = "12px sans-serif";
    ctx.fillStyle = "#444";
    ctx.fillText(field + ", last minute, " + reply.points.length + " buckets (min/max bars, average line)", 6, 14);
    canvas.dataset.points = String(reply.points.length);
    if (reply.points.length === 0) return;
    let lo = Infinity, hi = -Infinity;
    for (const p of reply.points) { lo = Math.min(lo, p.min); hi = Math.max(hi, p.max); }
    if (hi - lo < 1e-9) { hi += 0.5; lo -= 0.5; }
    const x = (t) => ((t - (now - 60000)) / 60000) * (w - 2) + 1;
    const y = (v) => 20 + (h - 26) - ((v - lo) / (hi - lo)) * (h - 26);
    ctx.fillStyle = "#c8d6e5";
    for (const p of reply.points) ctx.fillRect(x(p.time_ms), y(p.max), Math.max(2, w / 60 - 2), Math.max(1, y(p.min) - y(p.max)));
    ctx.strokeStyle = "#222";
    ctx.beginPath();
    reply.points.forEach((p, i) => { if (i === 0) ctx.moveTo(x(p.time_ms), y(p.avg)); else ctx.lineTo(x(p.time_ms), y(p.avg)); });
    ctx.stroke();
    $("query-error").textContent = "";
  } catch (e) { queryFailed(e); }
}

async function count() {
  try {
    const reply = await post("/api/query/count", {});
    $("count").textContent = "rows stored: " + reply.rows + " in " + reply.sessions.length + " session(s)";
    $("count").dataset.rows = String(reply.rows);
    $("query-error").textContent = "";
  } catch (e) { queryFailed(e); }
}

// History through database_query (the upstream request and reply format).
async function history() {
  const field = $("series-field").value;
  try {
    const reply = await post("/api/history", {
      measurement: "telemetry.device", range: "-10m", fields: [field], every: "10s", fn: "mean",
    });
    const rows = reply.data.filter((r) => typeof r._value === "number");
    const canvas = $("history"), ctx = canvas.getContext("2d");
    const w = canvas.width, h = canvas.height;
    ctx.clearRect(0, 0, w, h);
    ctx.font = "12px sans-serif";
    ctx.fillStyle = "#444";
    ctx.fillText(field + ", last 10 minutes, " + rows.length + " windows of 10 s (mean)", 6, 14);
    canvas.dataset.points = String(rows.length);
    $("history-error").textContent = "";
    if (rows.length === 0) return;
    const now = Date.now(), t0 = now - 600000;
    let lo = Infinity, hi = -Infinity;
    for (const r of rows) { lo = Math.min(lo, r._value); hi = Math.max(hi, r._value); }
    if (hi - lo < 1e-9) { hi += 0.5; lo -= 0.5; }
    const x = (t) => ((t - t0) / 600000) * (w - 2) + 1;
    const y = (v) => 20 + (h - 26) - ((v - lo) / (hi - lo)) * (h - 26);
    ctx.strokeStyle = "#00798c";
    ctx.beginPath();
    rows.forEach((r, i) => {
      const t = Date.parse(r._time);
      if (i === 0) ctx.moveTo(x(t), y(r._value)); else ctx.lineTo(x(t), y(r._value));
    });
    ctx.stroke();
  } catch (e) { $("history-error").textContent = String(e.message || e); }
}

$("q-history").onclick = history;
$("q-latest").onclick = latest;
$("q-series").onclick = series;
$("q-count").onclick = count;
function refresh() { latest(); series(); count(); history(); }

// --- telecommands ---------------------------------------------------------
// Every command gets an id, its idempotency key all the way to the device:
// one id never runs twice. When the outcome is unknown (no answer in time,
// the queue or the network failed), sending the same command again reuses
// the id: it tells the outcome instead of running the command a second time.
function newId() {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return "web-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
let unconfirmed = null; // { key, id } of the last command whose outcome is unknown

$("command").addEventListener("submit", async (event) => {
  event.preventDefault();
  const result = $("command-result");
  let args;
  try { args = JSON.parse($("command-args").value || "{}"); } catch (e) {
    result.textContent = "arguments are not JSON: " + e.message;
    result.dataset.status = "error";
    result.className = "bad";
    return;
  }
  const command = $("command-name").value;
  const key = command + " " + JSON.stringify(args);
  const id = unconfirmed && unconfirmed.key === key ? unconfirmed.id : newId();
  result.textContent = "sending " + command + " (id " + id + ") ...";
  result.dataset.status = "sending";
  result.dataset.id = id;
  try {
    const reply = await post("/api/telecommand", { id, command, args });
    unconfirmed = null;
    result.textContent = command + ": " + reply.status + " (id " + reply.id + ")" +
      (reply.reason ? ": " + reply.reason : "") + (reply.repeated ? " (sent before)" : "");
    result.dataset.status = reply.status;
    result.className = reply.status === "confirmed" ? "ok" : "bad";
  } catch (e) {
    if (e.status === undefined || e.status === 503 || e.status === 504) {
      // Unknown outcome: the same command sent again keeps this id.
      unconfirmed = { key, id };
      result.textContent = command + ": unconfirmed (id " + id + "): " + e.message +
        " (send it again to learn its outcome; it will not run twice)";
      result.dataset.status = "unconfirmed";
    } else {
      unconfirmed = null;
      result.textContent = command + " failed: " + e.message;
      result.dataset.status = "error";
    }
    result.className = "bad";
  }
});
