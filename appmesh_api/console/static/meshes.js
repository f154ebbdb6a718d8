// The Meshes tab: the account's meshes on the left, the chosen one as a graph of
// gateways → services → routers → routes → nodes, with route weights on the edges.

import { api, clear, h, plural } from "./util.js";
import { drawGraph } from "./graph.js";

let chosen = null;

const KIND_WORDS = { gateway: "gateway", service: "virtual service", router: "virtual router", route: "route", node: "virtual node" };

function subtitle(box) {
  if (box.missing) return "not created yet";
  return box.subtitle;
}

function tooltip(box) {
  const facts = Object.entries(box.facts || {})
    .filter(([, value]) => value !== "" && value !== null && !(Array.isArray(value) && !value.length))
    .map(([key, value]) => `${key}: ${Array.isArray(value) ? value.join(", ") : value}`);
  return [`${KIND_WORDS[box.kind] || box.kind} ${box.name}`, ...facts].join("\n");
}

function boxes(graph) {
  return graph.nodes.map((box) => ({
    id: box.id,
    title: box.name,
    subtitle: subtitle(box),
    column: box.column,
    row: box.row,
    cls: `${box.kind}${box.column === 0 && box.kind === "node" ? " client" : ""}${box.missing ? " missing" : ""}`,
    tooltip: tooltip(box),
  }));
}

function edges(graph) {
  return graph.edges.map((edge) => ({
    from: edge.from,
    to: edge.to,
    lines: edge.label ? edge.label.split("\n") : [],
    cls: edge.kind === "backend" ? "backend" : edge.kind === "weight" ? "weight" : "plain",
    labelAt: edge.kind === "weight" ? 0.62 : 0.5,
    tooltip: edge.kind === "backend" ? "backend: this node may call that service" : edge.label,
  }));
}

async function showMesh(name) {
  chosen = name;
  for (const item of document.querySelectorAll("#mesh-list li")) {
    item.classList.toggle("active", item.dataset.mesh === name);
  }
  const mesh = await api(`/meshes/${encodeURIComponent(name)}`);
  document.getElementById("mesh-title").textContent = `Mesh ${name}`;
  const facts = mesh.tree.facts;
  document.getElementById("mesh-facts").textContent = `owner ${facts.owner} · ${facts.region} · egress ${facts.egress}`;
  const target = document.getElementById("mesh-graph");
  if (!mesh.graph.nodes.length) {
    clear(target, h("p", { class: "empty" }, "This mesh has no resources yet."));
  } else {
    clear(target, drawGraph(boxes(mesh.graph), edges(mesh.graph), mesh.graph.columns));
  }
  document.getElementById("mesh-text").textContent = mesh.text;
}

function meshItem(mesh) {
  const counts = [plural(mesh.virtualNode, "node"), plural(mesh.virtualService, "service"), plural(mesh.virtualGateway, "gateway")]
    .filter(Boolean).join(" · ") || "empty";
  return h("li", { "data-mesh": mesh.name, title: counts, onclick: () => showMesh(mesh.name) },
    h("strong", {}, mesh.name), h("span", { class: "muted" }, counts));
}

export async function loadMeshes() {
  const found = await api("/meshes");
  const list = document.getElementById("mesh-list");
  clear(list, ...found.meshes.map(meshItem));
  if (!found.meshes.length) {
    list.append(h("li", { class: "empty" }, `No meshes for account ${found.account} in ${found.region}.`));
    document.getElementById("mesh-title").textContent = "No mesh";
    document.getElementById("mesh-facts").textContent = "";
    clear(document.getElementById("mesh-graph"));
    document.getElementById("mesh-text").textContent = "";
    return;
  }
  const names = found.meshes.map((m) => m.name);
  await showMesh(names.includes(chosen) ? chosen : names[0]);
}
