// Draws a layered graph as inline SVG: boxes in columns, curved edges with labels.
//
// Both the mesh view and the service map use it. The server decides each box's column and
// row (so the layout is the same one the CLI's tree implies); this module only turns that
// into coordinates, routes edges (as curves between facing sides, or along the gap between
// two rows when a box is in the way or the edge goes back, so no edge runs under a box),
// keeps labels readable on a white backing and off every box and every other label, and
// wraps long names onto a second line.

import { s } from "./util.js";
import { fitLines } from "./textfit.js";

const BOX_W = 180;
const BOX_H = 52; // one line of title and one of subtitle; each wrapped line adds LINE_H
const LINE_H = 14;
const COL_GAP = 130; // the default; callers with long edge labels ask for more
const ROW_GAP = 34;
const PAD = 20;
const HEAD = 30;
const CHAR_W = 6.4; // average width of an 11px sans-serif character
const TITLE_FONT = "600 13px";
const SUBTITLE_FONT = "11px";
const TEXT_W = BOX_W - 16 - 4; // the text starts 16 px in and keeps 4 px from the right side
const LABEL_MARGIN = 3; // the least room kept between a label and a box or another label

function columnsUsed(nodes) {
  const used = [...new Set(nodes.map((n) => n.column))].sort((a, b) => a - b);
  return new Map(used.map((column, index) => [column, index]));
}

function position(nodes, gap, head, boxH) {
  const columns = columnsUsed(nodes);
  const at = new Map();
  for (const node of nodes) {
    const x = PAD + columns.get(node.column) * (BOX_W + gap);
    const y = PAD + head + node.row * (boxH + ROW_GAP);
    at.set(node.id, { x, y, h: boxH, node });
  }
  return { at, columns };
}

function arrowMarker(id, color) {
  return s("marker", { id, viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" },
    s("path", { d: "M 0 0 L 10 5 L 0 10 z", style: `fill: ${color}` }));
}

// How an edge from box a to box b is drawn: a curve between facing sides when nothing is
// in the way, else along the gap between two rows ("lane" forward, "back" backward).
function shape(a, b, boxes) {
  if (b.x <= a.x) return "back";
  const top = Math.min(a.y, b.y), bottom = Math.max(a.y + a.h, b.y + b.h);
  const between = boxes.some((c) => c.x > a.x && c.x < b.x && c.y < bottom && c.y + c.h > top);
  return between ? "lane" : "curve";
}

// The path from box a to box b, and where along it (0..1) a label goes.
function route(a, b, how, lane, gap) {
  if (how === "lane") return forwardLane(a, b, lane, gap);
  if (how === "curve") return forwardCurve(a, b);
  return backwardLane(a, b, lane);
}

// Forward: a cubic curve between the facing sides.
function forwardCurve(a, b) {
  const sx = a.x + BOX_W, sy = a.y + a.h / 2, tx = b.x, ty = b.y + b.h / 2;
  const bend = (tx - sx) / 2;
  const p = [sx, sy, sx + bend, sy, tx - bend, ty, tx, ty];
  return { d: `M ${sx} ${sy} C ${p.slice(2).join(" ")}`, at: (t) => pointAt(p, t) };
}

// Forward past other columns: out of the source into the gap between two rows, along it
// past the columns in between (a straight line would run under their boxes), and into the
// target. The gap taken is the one beside the target's row, on the source's side.
function forwardLane(a, b, lane, gap) {
  const sx = a.x + BOX_W, sy = a.y + a.h / 2, tx = b.x, ty = b.y + b.h / 2;
  const laneY = (b.y < a.y ? b.y + b.h + ROW_GAP / 2 : b.y > a.y ? b.y - ROW_GAP / 2 : a.y + a.h + ROW_GAP / 2) + lane * 5;
  const out = [sx, sy, sx + gap / 4, sy, sx + gap / 4, laneY, sx + gap / 2, laneY];
  const into = [tx - gap / 2, laneY, tx - gap / 4, laneY, tx - gap / 4, ty, tx, ty];
  const d = `M ${sx} ${sy} C ${out.slice(2).join(" ")} L ${into[0]} ${laneY} C ${into.slice(2).join(" ")}`;
  const at = (t) => {
    if (t < 0.25) return pointAt(out, t / 0.25);
    if (t > 0.75) return pointAt(into, (t - 0.75) / 0.25);
    return { x: out[6] + (into[0] - out[6]) * ((t - 0.25) / 0.5), y: laneY };
  };
  return { d, at };
}

// Backward: down (or up) into the gap between two rows, across it, and into the target,
// so the edge never runs under a box. ``lane`` shifts edges that share a gap.
function backwardLane(a, b, lane) {
  const ax = a.x + BOX_W / 2 + 20, bx = b.x + BOX_W / 2 + 20;
  const below = b.y > a.y;
  const gapY = (below ? a.y + a.h + ROW_GAP / 2 : b.y - ROW_GAP / 2) + lane * 5;
  const sy = below ? a.y + a.h : a.y, ty = b.y;
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

function labelSize(lines) {
  return { w: Math.max(...lines.map((line) => line.length)) * CHAR_W + 10, h: lines.length * 13 + 6 };
}

function overlaps(a, b) {
  const m = LABEL_MARGIN;
  return a.x < b.x + b.w + m && b.x < a.x + a.w + m && a.y < b.y + b.h + m && b.y < a.y + a.h + m;
}

// Candidate spots for a label: along its edge, nearest the preferred point first; then the
// same points moved up or down by a label's height, for an edge crowded all along. A fixed
// order, so the same graph is always drawn the same way.
function* spots(path, preferred, size) {
  const along = [];
  for (let step = 0; step <= 36; step++) {
    const t = preferred + (step % 2 ? 1 : -1) * Math.ceil(step / 2) * 0.05;
    if (t > 0.04 && t < 0.96) along.push(path.at(t));
  }
  for (let shift = 0; shift <= 4; shift++) {
    const dy = (shift % 2 ? 1 : -1) * Math.ceil(shift / 2) * (size.h + LABEL_MARGIN);
    for (const spot of along) yield { x: spot.x, y: spot.y + dy };
  }
}

function inside(rect, bounds) {
  return rect.x >= 0 && rect.y >= 0 && rect.x + rect.w <= bounds.w && rect.y + rect.h <= bounds.h;
}

// Where a label's backing goes: the first spot inside the drawing that clears every
// rectangle in ``taken`` (the boxes and the labels placed so far), else the preferred spot.
function placeLabel(path, preferred, size, taken, bounds) {
  for (const spot of spots(path, preferred, size)) {
    const rect = { x: spot.x - size.w / 2, y: spot.y - size.h / 2, w: size.w, h: size.h };
    if (inside(rect, bounds) && !taken.some((other) => overlaps(rect, other))) return rect;
  }
  const centre = path.at(preferred);
  return { x: centre.x - size.w / 2, y: centre.y - size.h / 2, w: size.w, h: size.h };
}

function label(lines, rect, cls) {
  const group = s("g", { class: `edge-label ${cls || ""}` });
  group.append(s("rect", { x: rect.x, y: rect.y, width: rect.w, height: rect.h, rx: 4 }));
  const x = rect.x + rect.w / 2;
  lines.forEach((line, index) => {
    const text = s("text", { x, y: rect.y + 14 + index * 13, "text-anchor": "middle" });
    text.textContent = line;
    group.append(text);
  });
  return group;
}

function drawEdge(edge, a, b, how, lane, taken, bounds, gap) {
  const forward = how !== "back";
  const path = route(a, b, how, lane, gap);
  const group = s("g", { class: `edge ${edge.cls || ""}`, "data-from": a.node.title, "data-to": b.node.title });
  group.append(s("path", { d: path.d, "marker-end": `url(#arrow-${edge.cls || "plain"})` }));
  if (edge.tooltip) group.append(titleOf(edge.tooltip));
  const lines = (edge.lines || []).filter(Boolean);
  if (lines.length) {
    const rect = placeLabel(path, forward ? edge.labelAt || 0.5 : 0.5, labelSize(lines), taken, bounds);
    taken.push(rect);
    group.append(label(lines, rect, edge.cls));
  }
  return group;
}

function titleOf(text) {
  const title = s("title");
  title.textContent = text;
  return title;
}

// A text element showing ``lines`` (the fitted form of ``full``); hovering it shows ``full``.
function boxText(lines, full, y, cls) {
  const text = s("text", { x: 16, y, class: cls });
  lines.forEach((line, index) => {
    const span = s("tspan", { x: 16, dy: index ? LINE_H : 0 });
    span.textContent = line;
    text.append(span);
  });
  if (lines.join("") !== full) text.append(titleOf(full));
  return text;
}

// A box's title and subtitle, each on up to two lines (names are what wrap).
function fitted(node) {
  const subtitle = node.subtitle || "";
  const titleLines = fitLines(node.title, TITLE_FONT, TEXT_W, 2);
  return { ...node, subtitle, titleLines, subtitleLines: fitLines(subtitle, SUBTITLE_FONT, TEXT_W, 2) };
}

function extraLines(node) {
  return node.titleLines.length + node.subtitleLines.length - 2;
}

function drawBox(node, x, y, boxH) {
  const group = s("g", { class: `box ${node.cls || ""}`, "data-id": node.id, "data-name": node.title, transform: `translate(${x},${y})` });
  group.append(s("rect", { width: BOX_W, height: boxH, rx: 7, class: "frame" }));
  group.append(s("rect", { width: 6, height: boxH, rx: 3, class: "stripe" }));
  const title = boxText(node.titleLines, node.title, 21, "title");
  const below = boxText(node.subtitleLines, node.subtitle, 39 + (node.titleLines.length - 1) * LINE_H, "subtitle");
  group.append(title, below, titleOf(node.tooltip || `${node.title}\n${node.subtitle}`));
  if (node.onclick) {
    group.classList.add("clickable");
    group.addEventListener("click", node.onclick);
  }
  return group;
}

function boxRects(at) {
  return [...at.values()].map(({ x, y, h }) => ({ x, y, w: BOX_W, h }));
}

// nodes: [{id, title, subtitle, column, row, cls, tooltip, onclick}]
// edges: [{from, to, lines: [..], cls, tooltip, labelAt}]; titles: column index -> heading;
// gap: the room between columns, where edge labels go.
export function drawGraph(nodes, edges, titles = [], gap = COL_GAP) {
  const texts = nodes.map(fitted);
  const boxH = BOX_H + LINE_H * Math.max(0, ...texts.map(extraLines));
  const head = titles.length ? HEAD : 0;
  const { at, columns } = position(texts, gap, head, boxH);
  const rows = Math.max(0, ...nodes.map((n) => n.row)) + 1;
  const width = PAD * 2 + columns.size * BOX_W + Math.max(0, columns.size - 1) * gap;
  const height = PAD * 2 + head + rows * boxH + (rows - 1) * ROW_GAP + 10;
  const svg = s("svg", { width, height, viewBox: `0 0 ${width} ${height}`, class: "graph-svg", role: "img", style: `max-width: 100%; height: auto` });
  svg.append(s("defs", {}, ["plain", "backend", "ok", "warn", "bad", "weight"].map((c) => arrowMarker(`arrow-${c}`, `var(--edge-${c})`))));
  for (const [column, index] of columns) {
    const text = s("text", { x: PAD + index * (BOX_W + gap), y: PAD + 12, class: "column-title" });
    text.textContent = titles[column] || "";
    svg.append(text);
  }
  const taken = boxRects(at);
  const boxes = [...at.values()];
  let lanes = 0;
  const drawn = edges.filter((edge) => at.has(edge.from) && at.has(edge.to)).map((edge) => {
    const a = at.get(edge.from), b = at.get(edge.to), how = shape(a, b, boxes);
    const lane = how === "curve" ? 0 : (lanes++ % 3) - 1;
    return drawEdge(edge, a, b, how, lane, taken, { w: width, h: height }, gap);
  });
  for (const { node, x, y } of at.values()) svg.append(drawBox(node, x, y, boxH));
  for (const group of drawn) svg.append(group);
  return svg;
}
