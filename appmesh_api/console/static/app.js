// The console's shell: the account/region picker, the tabs (kept in the URL's hash so a
// view can be linked to), and which tab refreshes itself.
//
// URL: /console?account=123456789012&region=us-east-1#traces/<trace id>

import { api, clear, h, plural, scope } from "./util.js";
import { loadMeshes } from "./meshes.js";
import { autoRefresh, loadServiceMap } from "./servicemap.js";
import { bindTraceForm, loadTraces } from "./traces.js";
import { loadProxies } from "./proxies.js";

const REGIONS = ["us-east-1", "us-east-2", "us-west-1", "us-west-2", "eu-west-1", "eu-central-1", "ap-southeast-1", "ap-northeast-1"];
const PROXY_REFRESH_MS = 5000;
let proxyTimer = null;

const TABS = ["meshes", "map", "traces", "proxies"];
const ALIASES = { "": "meshes", servicemap: "map", "service-map": "map" };

// The tab the hash names (an empty hash is the Meshes tab); a hash naming no tab is shown
// as such ("notfound") rather than quietly as another tab.
function currentTab() {
  const [name, ...rest] = location.hash.replace(/^#/, "").split("/");
  const tab = ALIASES[name] || name;
  return TABS.includes(tab) ? { tab, detail: rest.join("/") } : { tab: "notfound", detail: "" };
}

function showNotFound() {
  let hash = location.hash;
  try {
    hash = decodeURIComponent(hash);
  } catch {
    // a malformed escape: show the hash as typed
  }
  document.getElementById("notfound-hash").textContent = hash;
}

function option(value, text, selected) {
  return h("option", { value, selected: value === selected }, text);
}

async function fillScope() {
  const params = new URLSearchParams(location.search);
  const known = await api("/accounts").catch(() => ({ accounts: [], default: { account: "123456789012", region: "us-east-1" } }));
  scope.account = params.get("account") || known.default.account;
  scope.region = params.get("region") || known.default.region;
  const accounts = new Map([[known.default.account, "default"]]);
  for (const item of known.accounts) {
    const words = [plural(item.meshes, "mesh", "meshes"), plural(item.traces, "trace"), plural(item.proxies, "proxy", "proxies")].filter(Boolean);
    accounts.set(item.account, `${words.join(", ")} · ${item.region}`);
  }
  if (!accounts.has(scope.account)) accounts.set(scope.account, "from the URL");
  clear(document.getElementById("account"), ...[...accounts].map(([account, note]) => option(account, `${account} (${note})`, scope.account)));
  const regions = new Set([scope.region, ...known.accounts.map((a) => a.region), ...REGIONS]);
  clear(document.getElementById("region"), ...[...regions].map((region) => option(region, region, scope.region)));
}

function changeScope() {
  scope.account = document.getElementById("account").value;
  scope.region = document.getElementById("region").value;
  const query = new URLSearchParams({ account: scope.account, region: scope.region });
  history.replaceState(null, "", `?${query}${location.hash}`);
  show();
}

function showError(error) {
  const banner = document.getElementById("banner") || document.body.insertBefore(h("div", { id: "banner", class: "banner" }), document.querySelector("main"));
  banner.textContent = `Could not load: ${error.message}. Is appmesh-local serve still running?`;
}

async function show() {
  const { tab, detail } = currentTab();
  for (const link of document.querySelectorAll("#tabs a")) link.classList.toggle("active", link.dataset.tab === tab);
  for (const section of document.querySelectorAll("section.tab")) section.classList.toggle("shown", section.id === `tab-${tab}`);
  autoRefresh(tab === "map");
  clearInterval(proxyTimer);
  if (tab === "proxies") proxyTimer = setInterval(() => loadProxies().catch(showError), PROXY_REFRESH_MS);
  const loaders = { meshes: loadMeshes, map: loadServiceMap, traces: () => loadTraces(detail), proxies: loadProxies, notfound: showNotFound };
  try {
    await loaders[tab]();
    document.getElementById("banner")?.remove();
  } catch (error) {
    showError(error);
  }
  document.body.dataset.loaded = tab;
}

async function start() {
  await fillScope();
  document.getElementById("account").addEventListener("change", changeScope);
  document.getElementById("region").addEventListener("change", changeScope);
  document.getElementById("map-minutes").addEventListener("change", () => loadServiceMap());
  document.getElementById("map-auto").addEventListener("change", () => autoRefresh(true));
  bindTraceForm();
  window.addEventListener("hashchange", show);
  await show();
}

start();
