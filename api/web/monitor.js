// The monitor page: `/monitor/ws` stats drawn as live charts on <canvas> (no library).

import { Client } from "./item-channels.js";
import { $, REFUSAL_HINTS, bindAuthForm, bindHeader, describe, show, showUser } from "./ui.js";

const MAX_POINTS = 300;
const MIN_SLOTS = 60;
const COLORS = {
  cpu: "#2f5bea",
  memory: "#e0872b",
  connections: "#1f9d6b",
  rate: "#b8399a",
  grid: "#e3e7ef",
  axis: "#6b7385",
};

/** A line chart of several series over the same points, redrawn on each push. */
class LineChart {
  constructor(canvas, series, { min = 0, max = null, format = (v) => String(v) } = {}) {
    this.canvas = canvas;
    this.series = series; // [{key, label, color}]
    this.min = min;
    this.max = max; // null: scale to the data
    this.format = format;
    this.points = [];
    this.received = 0;
    this.resize();
  }

  resize() {
    const ratio = window.devicePixelRatio || 1;
    const width = Math.max(300, this.canvas.clientWidth || 800);
    const height = Math.max(160, this.canvas.clientHeight || 220);
    this.canvas.width = Math.round(width * ratio);
    this.canvas.height = Math.round(height * ratio);
    this.size = { width, height, ratio };
    this.draw();
  }

  push(point) {
    this.points.push(point);
    if (this.points.length > MAX_POINTS) this.points.shift();
    this.received += 1;
    this.canvas.dataset.points = String(this.received);
    this.draw();
  }

  clear() {
    this.points = [];
    this.draw();
  }

  top() {
    if (this.max !== null) return this.max;
    let highest = 0;
    for (const p of this.points) for (const s of this.series) highest = Math.max(highest, p[s.key]);
    // A little above the data, in four round steps (at least 1 each).
    const raw = Math.max(4, highest * 1.15) / 4;
    const magnitude = 10 ** Math.floor(Math.log10(raw));
    const step = [1, 2, 2.5, 5, 10].map((m) => m * magnitude).find((v) => v >= raw);
    return step * 4;
  }

  draw() {
    const { width, height, ratio } = this.size;
    const ctx = this.canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, height);
    const pad = { left: 44, right: 12, top: 26, bottom: 22 };
    const plotW = width - pad.left - pad.right;
    const plotH = height - pad.top - pad.bottom;
    const top = this.top();
    const y = (v) => pad.top + plotH - ((v - this.min) / (top - this.min || 1)) * plotH;
    // The window widens as points arrive, up to MAX_POINTS.
    const slots = Math.min(MAX_POINTS, Math.max(MIN_SLOTS, this.points.length));
    const x = (i) => pad.left + (i / (slots - 1)) * plotW;

    ctx.font = "11px system-ui, sans-serif";
    ctx.textBaseline = "middle";
    ctx.lineWidth = 1;
    for (let i = 0; i <= 4; i++) {
      const value = this.min + ((top - this.min) * i) / 4;
      const py = Math.round(y(value)) + 0.5;
      ctx.strokeStyle = COLORS.grid;
      ctx.beginPath();
      ctx.moveTo(pad.left, py);
      ctx.lineTo(width - pad.right, py);
      ctx.stroke();
      ctx.fillStyle = COLORS.axis;
      ctx.textAlign = "right";
      ctx.fillText(this.format(value), pad.left - 6, py);
    }

    // Newest point at the right edge.
    const offset = slots - this.points.length;
    for (const s of this.series) {
      ctx.strokeStyle = s.color;
      ctx.lineWidth = 2;
      ctx.lineJoin = "round";
      ctx.beginPath();
      this.points.forEach((p, i) => {
        const px = x(offset + i);
        const py = y(Math.min(top, Math.max(this.min, p[s.key])));
        if (i === 0) ctx.moveTo(px, py);
        else ctx.lineTo(px, py);
      });
      ctx.stroke();
      if (this.points.length === 1) {
        const p = this.points[0];
        ctx.fillStyle = s.color;
        ctx.beginPath();
        ctx.arc(x(offset), y(p[s.key]), 3, 0, 2 * Math.PI);
        ctx.fill();
      }
    }

    // Legend, with the latest values.
    let lx = pad.left;
    const last = this.points[this.points.length - 1];
    ctx.textAlign = "left";
    for (const s of this.series) {
      ctx.fillStyle = s.color;
      ctx.fillRect(lx, 8, 10, 10);
      ctx.fillStyle = COLORS.axis;
      const label = last ? `${s.label} ${this.format(last[s.key])}` : s.label;
      ctx.fillText(label, lx + 14, 13);
      lx += ctx.measureText(label).width + 32;
    }
    if (!this.points.length) {
      ctx.textAlign = "center";
      ctx.fillText("waiting for the first frame…", pad.left + plotW / 2, pad.top + plotH / 2);
    }
  }
}

const client = new Client();
let monitor = null;
let charts = null;

function interval() {
  const fromQuery = new URLSearchParams(location.search).get("interval");
  return fromQuery ?? $("interval").value;
}

function start() {
  if (monitor) monitor.close();
  show($("refused"), false);
  const every = interval();
  if ([...$("interval").options].some((o) => o.value === every)) $("interval").value = every;
  monitor = client.monitor({ interval: every });
  const mine = monitor;
  mine.addEventListener("state", (e) => {
    if (monitor !== mine) return;
    const badge = $("monitor-status");
    badge.dataset.state = e.detail.state;
    badge.textContent =
      { connecting: "connecting…", open: "live", reconnecting: "reconnecting…" }[e.detail.state] ??
      e.detail.state;
  });
  mine.addEventListener("stats", (e) => {
    if (monitor === mine) record(e.detail);
  });
  mine.addEventListener("refused", (e) => {
    if (monitor !== mine) return;
    $("refused-reason").textContent = e.detail.reason;
    $("refused-hint").textContent = REFUSAL_HINTS[e.detail.reason] || "";
    show($("refused"), true);
    if (e.detail.needsLogin) showAuth(`Monitor refused: ${e.detail.reason}. Log in again.`);
  });
}

function record(stats) {
  charts.percent.push({ cpu: stats.cpu_percent, memory: stats.memory_percent });
  charts.activity.push({ connections: stats.connections, rate: stats.messages_per_s });
  $("charts").dataset.points = String(charts.percent.received);
  $("stat-cpu").textContent = `${stats.cpu_percent.toFixed(1)} %`;
  $("stat-memory").textContent = `${stats.memory_percent.toFixed(1)} %`;
  $("stat-connections").textContent = String(stats.connections);
  $("stat-rate").textContent = stats.messages_per_s.toFixed(stats.messages_per_s < 10 ? 2 : 1);
  const ts = $("stat-ts");
  ts.textContent = stats.ts;
  ts.setAttribute("datetime", stats.ts);
}

function showAuth(message) {
  if (monitor) monitor.close();
  monitor = null;
  showUser(null);
  show($("loading"), false);
  show($("dashboard"), false);
  show($("auth"), true);
  $("auth-error").textContent = message || "";
}

function showDashboard(user) {
  showUser(user);
  show($("loading"), false);
  show($("auth"), false);
  show($("dashboard"), true);
  if (!charts) {
    charts = {
      percent: new LineChart(
        $("chart-percent"),
        [
          { key: "cpu", label: "CPU", color: COLORS.cpu },
          { key: "memory", label: "memory", color: COLORS.memory },
        ],
        { max: 100, format: (v) => `${Math.round(v)}` },
      ),
      activity: new LineChart(
        $("chart-activity"),
        [
          { key: "connections", label: "sockets", color: COLORS.connections },
          { key: "rate", label: "messages/s", color: COLORS.rate },
        ],
        { format: (v) => (Number.isInteger(v) ? String(v) : v.toFixed(1)) },
      ),
    };
    window.addEventListener("resize", () => {
      charts.percent.resize();
      charts.activity.resize();
    });
  }
  start();
}

$("interval").addEventListener("change", () => {
  const url = new URL(location.href);
  url.searchParams.set("interval", $("interval").value);
  history.replaceState(null, "", url);
  start();
});

bindAuthForm(client, showDashboard);
bindHeader(client, () => showAuth());
client.addEventListener("logout", () => showAuth("Your session ended; log in again."));

client.resume().then(
  (user) => (user ? showDashboard(user) : showAuth()),
  (err) => showAuth(describe(err)),
);
