// The Proxies tab: every proxy connected to the account's meshes, where its ingress
// listens, how long it has been connected, and which config version of each xDS type it
// accepted or rejected (a rejected version means the proxy kept its last good config).

import { age, api, h, table } from "./util.js";

const TYPES = ["Listener", "Cluster", "RouteConfiguration", "ClusterLoadAssignment", "Secret"];
const SHORT = { Listener: "LDS", Cluster: "CDS", RouteConfiguration: "RDS", ClusterLoadAssignment: "EDS", Secret: "SDS" };

function shortType(typeUrl) {
  const name = typeUrl.split(".").pop();
  return SHORT[name] || name;
}

function versions(accepted) {
  const sorted = Object.entries(accepted).sort(([a], [b]) => TYPES.indexOf(a.split(".").pop()) - TYPES.indexOf(b.split(".").pop()));
  if (!sorted.length) return h("span", { class: "muted" }, "none yet");
  return h("span", { class: "versions" }, sorted.map(([type, version]) => h("span", { class: "tag", title: type }, `${shortType(type)} ${version}`)));
}

function rejected(found) {
  const entries = Object.entries(found);
  if (!entries.length) return h("span", { class: "muted" }, "–");
  return h("span", {}, entries.map(([type, detail]) =>
    h("span", { class: "tag bad", title: detail.message || "" }, `${shortType(type)} ${detail.version}: ${detail.message || "rejected"}`)));
}

function proxyRow(proxy) {
  return h("tr", { "data-node": proxy.resourceName },
    h("td", {}, h("strong", {}, proxy.resourceName), h("div", { class: "muted" }, `${proxy.resourceKind} in ${proxy.meshName}`)),
    h("td", { class: "mono" }, proxy.ingressAddress || "–"),
    h("td", {}, age(proxy.connectedSeconds)),
    h("td", {}, `${age(proxy.lastSeenSecondsAgo)} ago`),
    h("td", {}, versions(proxy.acceptedVersions)),
    h("td", {}, rejected(proxy.rejected)));
}

export async function loadProxies() {
  const found = await api("/proxies");
  const header = ["node", "ingress address", "connected for", "last request", "accepted config", "rejected"];
  const empty = `No proxy of account ${found.account} in ${found.region} is connected.`;
  table(document.getElementById("proxy-table"), header, found.proxies.map(proxyRow), empty);
  document.getElementById("proxy-updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
}
