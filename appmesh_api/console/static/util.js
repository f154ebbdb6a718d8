// Small helpers shared by every tab: the chosen scope, JSON fetches, DOM and SVG builders,
// and the number formats the console uses everywhere.

export const scope = { account: "", region: "" };

export class ApiError extends Error {}

// GET a console endpoint for the chosen account and region.
export async function api(path, params = {}) {
  const query = new URLSearchParams({ account: scope.account, region: scope.region });
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") query.set(key, value);
  }
  // The account picked, stated as a SigV4 credential scope: the server shows an account's
  // data only to requests that carry it (not a signature: see docs/security.md).
  const claim = `AWS4-HMAC-SHA256 Credential=${scope.account}/20190125/${scope.region}/appmesh/aws4_request, SignedHeaders=host, Signature=${"0".repeat(64)}`;
  const headers = scope.account ? { Authorization: claim } : {};
  const reply = await fetch(`/_appmesh/console/api${path}?${query}`, { headers });
  const body = await reply.json().catch(() => ({}));
  if (!reply.ok) throw new ApiError(body.detail || `${reply.status} ${reply.statusText}`);
  return body;
}

// h("td", {class: "x"}, "text", child) -> an element.
export function h(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  setAttributes(element, attrs);
  element.append(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
  return element;
}

const SVG_NS = "http://www.w3.org/2000/svg";

export function s(tag, attrs = {}, ...children) {
  const element = document.createElementNS(SVG_NS, tag);
  setAttributes(element, attrs);
  element.append(...children.flat().filter((c) => c !== null && c !== undefined));
  return element;
}

function setAttributes(element, attrs) {
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) element.addEventListener(key.slice(2), value);
    else element.setAttribute(key, value === true ? "" : value);
  }
}

export function clear(element, ...children) {
  element.replaceChildren(...children);
  return element;
}

export function ms(seconds) {
  if (seconds === null || seconds === undefined) return "…";
  if (seconds === 0) return "0 ms";
  if (seconds >= 10) return `${seconds.toFixed(1)} s`;
  const millis = seconds * 1000;
  return millis >= 1 ? `${Math.round(millis)} ms` : `${millis.toFixed(2)} ms`;
}

export function percent(fraction) {
  if (!fraction) return "0%";
  const value = fraction * 100;
  return `${value >= 10 || Number.isInteger(value) ? Math.round(value) : value.toFixed(1)}%`;
}

export function age(seconds) {
  if (seconds < 60) return `${Math.round(seconds)} s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`;
  return `${Math.floor(seconds / 3600)} h ${Math.floor((seconds % 3600) / 60)} min`;
}

export function clock(epoch) {
  return epoch ? new Date(epoch * 1000).toLocaleTimeString() : "";
}

// A table from a header row and rows of cells (strings or elements).
export function table(element, header, rows, empty) {
  const head = h("thead", {}, h("tr", {}, header.map((title) => h("th", {}, title))));
  const body = h("tbody", {});
  if (!rows.length) body.append(h("tr", {}, h("td", { colspan: header.length, class: "empty" }, empty)));
  for (const row of rows) body.append(row);
  return clear(element, head, body);
}

export function shorten(text, max) {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

// plural(1, "mesh", "meshes") -> "1 mesh"; zero gives "" so callers can drop it.
export function plural(count, one, many = `${one}s`) {
  return count ? `${count} ${count === 1 ? one : many}` : "";
}
