// Draws a layered graph as inline SVG: boxes in columns, curved edges with labels.
//
// Both the mesh view and the service map use it. The server decides each box's column and
// row (so the layout is the same one the CLI's tree implies); this module only turns that
// into coordinates, routes edges (forward edges as curves between facing sides, backward
// edges along the gap between two rows, so no edge runs under a box) and keeps labels
// readable on a white backing.

import { s, shorten } from "./util.js";

const BOX_W = 180;
const BOX_H = 52;
const COL_GAP = 130; // the default; callers with long edge labels ask for more
const ROW_GAP = 34;
const PAD = 20;
const HEAD = 30;
const CHAR_W = 6.4; // average width of an 11px sans-serif character

function columnsUsed(nodes) {
  const used = [...new Set(nodes.map((n) => n.column))].sort((a, b) => a - b);
  return new Map(used.map((column, index) => [column, index]));
}

function position(nodes, gap, head) {
  const columns = columnsUsed(nodes);
  const at = new Map();
  for (const node of nodes) {
    const x = PAD + columns.get(node.column) * (BOX_W + gap);
    const y = PAD + head + node.row * (BOX_H + ROW_GAP);
    at.set(node.id, { x, y, node });
  }
  return { at, columns };
}

function arrowMarker(id, color) {
  return s("marker", { id, viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" },
    s("path", { d: "M 0 0 L 10 5 L 0 10 z", style: `fill: ${color}` }));
}

// The path from box a to box b, and where along it (0..1) a label goes.
function route(a, b, lane) {
  if (b.x > a.x) return forwardCurve(a, b);
  return backwardLane(a, b, lane);
}

// Forward: a cubic curve between the facing sides.
function forwardCurve(a, b) {
  const sx = a.x + BOX_W, sy = a.y + BOX_H / 2, tx = b.x, ty = b.y + BOX_H / 2;
  const bend = (tx - sx) / 2;
  const p = [sx, sy, sx + bend, sy, tx - bend, ty, tx, ty];
  return { d: `M ${sx} ${sy} C ${p.slice(2).join(" ")}`, at: (t) => pointAt(p, t) };
}

// Backward: down (or up) into the gap between two rows, across it, and into the target,
// so the edge never runs under a box. ``lane`` shifts edges that share a gap.
function backwardLane(a, b, lane) {
  const ax = a.x + BOX_W / 2 + 20, bx = b.x + BOX_W / 2 + 20;
  const below = b.y > a.y;
  const gapY = (below ? a.y + BOX_H + ROW_GAP / 2 : b.y - ROW_GAP / 2) + lane * 5;
  const sy = below ? a.y + BOX_H : a.y, ty = b.y;
  const r = 8, turnS = gapY > sy ? -r : r, turnT = ty > gapY ? r : -r;
  const d = [`M ${ax} ${sy}`, `L ${ax} ${gapY + turnS}`, `Q ${ax} ${gapY} ${ax - r} ${gapY}`,
    `L ${bx + r} ${gapY}`, `Q ${bx} ${gapY} ${bx} ${gapY + turnT}`, `L ${bx} ${ty}`].join(" ");
  return { d, at: (t) => ({ x: ax + (bx - ax) * t, y: gapY }) };
}

function pointAt(p, t) {
  const u = 1 - t;
  const x = u * u * u * p[0] + 3 * u * u * t * p[2] + 3 * u * t * t * p[4] + t * t * t * p[6];
  const y = u * u * u * p[1] + 3 * u * u * t * p[3] + 3 * u * t * t * p[5] + t * t * t * p[7];
  return { x, y };
}

function label(lines, x, y, cls) {
  const width = Math.max(...lines.map((line) => line.length)) * CHAR_W + 10;
  const height = lines.length * 13 + 6;
  const group = s("g", { class: `edge-label ${cls || ""}` });
  group.append(s("rect", { x: x - width / 2, y: y - height / 2, width, height, rx: 4 }));
  lines.forEach((line, index) => {
    const text = s("text", { x, y: y - height / 2 + 14 + index * 13, "text-anchor": "middle" });
    text.textContent = line;
    group.append(text);
  });
  return group;
}

function drawEdge(edge, at, lane) {
  const a = at.get(edge.from), b = at.get(edge.to);
  if (!a || !b) return null;
  const forward = b.x > a.x;
  const path = route(a, b, lane);
  const group = s("g", { class: `edge ${edge.cls || ""}`, "data-from": a.node.title, "data-to": b.node.title });
  group.append(s("path", { d: path.d, "marker-end": `url(#arrow-${edge.cls || "plain"})` }));
  if (edge.tooltip) group.append(titleOf(edge.tooltip));
  const lines = (edge.lines || []).filter(Boolean);
  if (lines.length) {
    const spot = path.at(forward ? edge.labelAt || 0.5 : 0.5);
    group.append(label(lines, spot.x, spot.y, edge.cls));
  }
  return { group, forward };
}

function titleOf(text) {
  const title = s("title");
  title.textContent = text;
  return title;
}

function drawBox(node, x, y) {
  const group = s("g", { class: `box ${node.cls || ""}`, "data-id": node.id, "data-name": node.title, transform: `translate(${x},${y})` });
  group.append(s("rect", { width: BOX_W, height: BOX_H, rx: 7, class: "frame" }));
  group.append(s("rect", { width: 6, height: BOX_H, rx: 3, class: "stripe" }));
  const title = s("text", { x: 16, y: 21, class: "title" });
  title.textContent = shorten(node.title, 22);
  const subtitle = s("text", { x: 16, y: 39, class: "subtitle" });
  subtitle.textContent = shorten(node.subtitle || "", 28);
  group.append(title, subtitle, titleOf(node.tooltip || `${node.title}\n${node.subtitle || ""}`));
  if (node.onclick) {
    group.classList.add("clickable");
    group.addEventListener("click", node.onclick);
  }
  return group;
}

// nodes: [{id, title, subtitle, column, row, cls, tooltip, onclick}]
// edges: [{from, to, lines: [..], cls, tooltip, labelAt}]; titles: column index -> heading;
// gap: the room between columns, where edge labels go.
export function drawGraph(nodes, edges, titles = [], gap = COL_GAP) {
  const head = titles.length ? HEAD : 0;
  const { at, columns } = position(nodes, gap, head);
  const rows = Math.max(0, ...nodes.map((n) => n.row)) + 1;
  const width = PAD * 2 + columns.size * BOX_W + Math.max(0, columns.size - 1) * gap;
  const height = PAD * 2 + head + rows * BOX_H + (rows - 1) * ROW_GAP + 10;
  const svg = s("svg", { width, height, viewBox: `0 0 ${width} ${height}`, class: "graph-svg", role: "img", style: `max-width: 100%; height: auto` });
  svg.append(s("defs", {}, ["plain", "backend", "ok", "warn", "bad", "weight"].map((c) => arrowMarker(`arrow-${c}`, `var(--edge-${c})`))));
  for (const [column, index] of columns) {
    const text = s("text", { x: PAD + index * (BOX_W + gap), y: PAD + 12, class: "column-title" });
    text.textContent = titles[column] || "";
    svg.append(text);
  }
  let lanes = 0;
  const drawn = edges.map((edge) => {
    const backward = at.has(edge.from) && at.has(edge.to) && at.get(edge.to).x <= at.get(edge.from).x;
    return drawEdge(edge, at, backward ? (lanes++ % 3) - 1 : 0);
  }).filter(Boolean);
  for (const { node, x, y } of at.values()) svg.append(drawBox(node, x, y));
  for (const { group } of drawn) svg.append(group);
  return svg;
}
