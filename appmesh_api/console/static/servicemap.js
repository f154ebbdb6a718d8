// The Service map tab: who called whom in the last N minutes (X-Ray's GetServiceGraph),
// with request rate, 4xx/5xx share and average latency on every edge. Refreshes itself.

import { api, clear, h, ms, percent, table } from "./util.js";
import { drawGraph } from "./graph.js";

const REFRESH_MS = 5000;
const LABEL_GAP = 190; // room between columns for the three lines of edge measures
let timer = null;

function health(stats) {
  if (!stats || !stats.requests) return "plain";
  if (stats.faultRate > 0.05) return "bad";
  if (stats.faultRate > 0 || stats.errorRate > 0.05) return "warn";
  return "ok";
}

function edgeLines(stats) {
  return [
    `${stats.requests} req · ${stats.perMinute}/min`,
    `4xx ${percent(stats.errorRate)} · 5xx ${percent(stats.faultRate)}`,
    `avg ${stats.avgLatencyMs === null ? "–" : ms(stats.avgLatencyMs / 1000)}`,
  ];
}

function nodeSubtitle(node) {
  if (node.kind === "client") return "callers outside the traces";
  const stats = node.stats;
  const kind = node.kind === "proxy" ? "App Mesh proxy" : node.type || "service";
  return stats && stats.requests ? `${kind} · ${stats.requests} req` : kind;
}

function draw(map) {
  const nodes = map.nodes.map((node) => ({
    id: node.id,
    title: node.name,
    subtitle: nodeSubtitle(node),
    column: node.column,
    row: node.row,
    cls: `svc ${node.kind} health-${health(node.stats)}`,
  }));
  const edges = map.edges.map((edge) => ({
    from: edge.from,
    to: edge.to,
    lines: edgeLines(edge.stats),
    cls: health(edge.stats),
    labelAt: 0.62, // past the middle, where edges fanning out of one service have parted
    tooltip: `${edge.fromName} → ${edge.toName}`,
  }));
  return drawGraph(nodes, edges, [], LABEL_GAP);
}

function edgeRow(edge) {
  const stats = edge.stats;
  return h("tr", { class: `health-${health(stats)}` },
    h("td", {}, edge.fromName), h("td", {}, edge.toName),
    h("td", { class: "num" }, String(stats.requests)), h("td", { class: "num" }, String(stats.perMinute)),
    h("td", { class: "num" }, `${stats.errors4xx} (${percent(stats.errorRate)})`),
    h("td", { class: "num" }, `${stats.faults5xx} (${percent(stats.faultRate)})`),
    h("td", { class: "num" }, stats.avgLatencyMs === null ? "–" : ms(stats.avgLatencyMs / 1000)));
}

export async function loadServiceMap() {
  const minutes = document.getElementById("map-minutes").value;
  const map = await api("/servicemap", { minutes });
  const target = document.getElementById("map-graph");
  if (!map.available) {
    clear(target, h("p", { class: "empty" }, "X-Ray is forwarded to --aws-endpoint; the console shows only local X-Ray."));
  } else if (!map.nodes.length) {
    clear(target, h("p", { class: "empty" }, `No traces in the last ${minutes} min. Send traffic through the proxies, or segments to the X-Ray daemon.`));
  } else {
    clear(target, draw(map));
  }
  const header = ["caller", "callee", "requests", "req/min", "4xx", "5xx", "avg latency"];
  table(document.getElementById("map-edges"), header, map.edges.map(edgeRow), "no calls yet");
  document.getElementById("map-updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
}

// Refresh every few seconds while the tab is shown and auto-refresh is on.
export function autoRefresh(active) {
  clearInterval(timer);
  timer = null;
  if (active && document.getElementById("map-auto").checked) {
    timer = setInterval(() => loadServiceMap().catch(() => {}), REFRESH_MS);
  }
}
