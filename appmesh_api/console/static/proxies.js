// The Proxies tab: every proxy connected to the account's meshes, where its ingress
// listens, how long it has been connected, and which config version of each xDS type it
// accepted or rejected (a rejected version means the proxy kept its last good config, or,
// for what it cannot honour, serves without it). Each rejection's reason gets a red line
// of its own under the proxy's row, as it is what the operator has to act on.

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

// ``rejected``: type URL -> {version, message}, the last config of that type the proxy
// NACKed (the control plane drops it once the proxy accepts that type again).
function rejectedTags(rejected) {
  const entries = Object.entries(rejected);
  if (!entries.length) return h("span", { class: "muted" }, "–");
  return h("span", { class: "versions" }, entries.map(([type, detail]) =>
    h("span", { class: "tag bad", title: type }, `${shortType(type)} ${detail.version}`)));
}

function rejectionRows(proxy, columns) {
  return Object.entries(proxy.rejected).map(([type, detail]) =>
    h("tr", { class: "rejection", "data-node": proxy.resourceName, "data-type": type },
      h("td", { colspan: columns },
        h("strong", {}, "config rejected: "), detail.message || "no reason given",
        h("span", { class: "muted" }, ` (${shortType(type)} version ${detail.version})`))));
}

function proxyRow(proxy) {
  const rejecting = Object.keys(proxy.rejected).length > 0;
  return h("tr", { class: rejecting ? "proxy rejecting" : "proxy", "data-node": proxy.resourceName },
    h("td", {}, h("strong", {}, proxy.resourceName), h("div", { class: "muted" }, `${proxy.resourceKind} in ${proxy.meshName}`)),
    h("td", { class: "mono" }, proxy.ingressAddress || "–"),
    h("td", {}, age(proxy.connectedSeconds)),
    h("td", {}, `${age(proxy.lastSeenSecondsAgo)} ago`),
    h("td", {}, versions(proxy.acceptedVersions)),
    h("td", {}, rejectedTags(proxy.rejected)));
}

export async function loadProxies() {
  const found = await api("/proxies");
  const header = ["node", "ingress address", "connected for", "last request", "accepted config", "rejected"];
  const empty = `No proxy of account ${found.account} in ${found.region} is connected.`;
  const rows = found.proxies.flatMap((proxy) => [proxyRow(proxy), ...rejectionRows(proxy, header.length)]);
  table(document.getElementById("proxy-table"), header, rows, empty);
  document.getElementById("proxy-updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
}
