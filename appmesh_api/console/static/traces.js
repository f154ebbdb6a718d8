// The Traces tab: the newest traces (GetTraceSummaries, optionally filtered); a click on a
// row opens the trace as a waterfall below the list.

import { ApiError, api, clear, clock, h, ms, table } from "./util.js";
import { drawWaterfall, waterfallHeading } from "./waterfall.js";

let openTrace = null;

function traceRow(trace) {
  const row = h("tr", { "data-trace": trace.id, class: trace.id === openTrace ? "active" : "", onclick: () => showTrace(trace.id) },
    h("td", { class: "mono" }, trace.id),
    h("td", {}, clock(trace.start)),
    h("td", {}, trace.root),
    h("td", {}, h("span", { class: `pill ${trace.outcome}` }, trace.status)),
    h("td", { class: "num" }, ms(trace.duration)),
    h("td", { class: "mono" }, trace.http));
  return row;
}

export async function showTrace(id) {
  openTrace = id;
  for (const row of document.querySelectorAll("#trace-table tbody tr")) {
    row.classList.toggle("active", row.dataset.trace === id);
  }
  if (location.hash !== `#traces/${id}`) history.replaceState(null, "", `${location.search}#traces/${id}`);
  const target = document.getElementById("waterfall");
  try {
    const trace = await api(`/traces/${encodeURIComponent(id)}`);
    clear(target, waterfallHeading(trace), drawWaterfall(trace, target.clientWidth - 30));
  } catch (error) {
    clear(target, h("p", { class: "error" }, error.message));
  }
}

export async function loadTraces(traceId) {
  const error = document.getElementById("trace-error");
  error.textContent = "";
  let found;
  try {
    found = await api("/traces", {
      minutes: document.getElementById("trace-minutes").value,
      filter: document.getElementById("trace-filter").value.trim(),
    });
  } catch (problem) {
    if (!(problem instanceof ApiError)) throw problem;
    error.textContent = problem.message;
    return;
  }
  const header = ["trace id", "time", "root service", "status", "duration", "request"];
  const empty = found.available ? "no traces in this window" : "X-Ray is forwarded to --aws-endpoint";
  table(document.getElementById("trace-table"), header, found.traces.map(traceRow), empty);
  const wanted = traceId || openTrace;
  if (wanted) await showTrace(wanted);
  else clear(document.getElementById("waterfall"), h("p", { class: "muted" }, "Click a trace to see its waterfall."));
}

export function bindTraceForm() {
  document.getElementById("trace-form").addEventListener("submit", (event) => {
    event.preventDefault();
    loadTraces();
  });
}
