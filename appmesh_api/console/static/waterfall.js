// One trace as a waterfall: a bar per segment and subsegment, indented under its caller,
// placed and sized by time, coloured by outcome, with duration and status beside it.

import { h, ms, s, shorten } from "./util.js";

const ROW_H = 26;
const NAME_W = 300;
const INFO_W = 150;
const MIN_BAR_W = 320;
const INDENT = 14;
const TOP = 30;

function ticks(total, barWidth) {
  return [0, 0.25, 0.5, 0.75, 1].map((f) => ({ x: NAME_W + f * barWidth, label: ms(total * f) }));
}

function nameCell(row, y) {
  const text = s("text", { x: 8 + row.depth * INDENT, y: y + 17, class: `wf-name ${row.type}` });
  text.textContent = shorten(`${row.call ? "→ " : ""}${row.name}`, Math.max(12, 40 - row.depth * 2));
  return text;
}

function bar(row, y, total, barWidth) {
  const scale = total > 0 ? barWidth / total : 0;
  const x = NAME_W + row.offset * scale;
  const width = row.duration === null ? NAME_W + barWidth - x : Math.max(2, row.duration * scale);
  return s("rect", { x, y: y + 6, width, height: ROW_H - 12, rx: 3, class: `wf-bar ${row.outcome} ${row.type}` });
}

function info(row, y, barWidth) {
  const text = s("text", { x: NAME_W + barWidth + 12, y: y + 17, class: `wf-info ${row.outcome}` });
  const status = row.status ? `${row.status} ${row.outcome}` : row.outcome;
  text.textContent = `${ms(row.duration)} · ${status}`;
  return text;
}

function tooltip(row) {
  const title = s("title");
  const lines = [`${row.type} ${row.name}`, `starts at +${ms(row.offset)}, lasts ${ms(row.duration)}`, `outcome ${row.outcome}`];
  if (row.request) lines.push(row.request);
  if (row.origin) lines.push(row.origin);
  title.textContent = lines.join("\n");
  return title;
}

function rowGroup(row, index, total, barWidth) {
  const y = TOP + index * ROW_H;
  const group = s("g", { class: "wf-row", "data-name": row.name, "data-type": row.type });
  group.append(s("rect", { x: 0, y, width: NAME_W + barWidth + INFO_W, height: ROW_H, class: index % 2 ? "wf-stripe odd" : "wf-stripe" }));
  group.append(nameCell(row, y), bar(row, y, total, barWidth), info(row, y, barWidth), tooltip(row));
  return group;
}

// `available`: the width the waterfall may take; the time axis gets what the names leave.
export function drawWaterfall(trace, available = 1000) {
  const barWidth = Math.max(MIN_BAR_W, available - NAME_W - INFO_W);
  const width = NAME_W + barWidth + INFO_W;
  const height = TOP + trace.rows.length * ROW_H + 8;
  const svg = s("svg", { width, height, viewBox: `0 0 ${width} ${height}`, class: "wf-svg" });
  for (const tick of ticks(trace.duration, barWidth)) {
    svg.append(s("line", { x1: tick.x, x2: tick.x, y1: TOP - 6, y2: height, class: "wf-tick" }));
    const text = s("text", { x: tick.x, y: TOP - 12, "text-anchor": "middle", class: "wf-axis" });
    text.textContent = tick.label;
    svg.append(text);
  }
  trace.rows.forEach((row, index) => svg.append(rowGroup(row, index, trace.duration, barWidth)));
  return svg;
}

export function waterfallHeading(trace) {
  const root = trace.rows[0] || {};
  const segments = trace.rows.filter((row) => row.type === "segment").length;
  const outcome = `${root.status || ""} ${root.outcome || ""}`.trim();
  return h("div", { class: "wf-heading" },
    h("h2", {}, `Trace ${trace.id}`),
    h("span", { class: "muted" }, `${ms(trace.duration)} · ${segments} segments · ${root.request || ""} → `),
    h("span", { class: `pill ${root.outcome || ""}` }, outcome));
}
