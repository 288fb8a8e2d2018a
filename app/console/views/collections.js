// Collections: the list with index and router state, create, build, delete (confirmed).

import { api, get, post } from "../api.js";
import { badge, card, dash, fmt, h, problemBox, table } from "../dom.js";

const HEADERS = [
  "Name", "Points", "Dim", "Metric", "Index", "Lists", "Quantization", "Bytes / vector",
  "Router", "Last router decision", "",
];

export function render(root, { go }) {
  const list = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  const notice = h("div", { id: "collections-error" });
  root.append(card("Collections", notice, list), card("Create a collection", createForm(refresh)));

  /** Build and delete answer with a problem (a read-only key: 403) shown above the list. */
  const act = (action) => async () => {
    notice.replaceChildren();
    try {
      await action();
    } catch (error) {
      notice.replaceChildren(problemBox(error));
    }
  };

  async function refresh() {
    try {
      const { collections } = await get("/collections");
      list.replaceChildren(
        collections.length
          ? table(HEADERS, collections.map((c) => row(c, go, refresh, act)), { id: "collections" })
          : h("p", { class: "empty" }, "No collections yet: create one below."),
      );
    } catch (error) {
      list.replaceChildren(problemBox(error));
    }
  }
  refresh();
}

function row(info, go, refresh, act) {
  const { index, router } = info;
  const decision = h("td", { class: "decision" }, dash);
  fillDecision(info.name, decision);
  return h(
    "tr",
    { "data-collection": info.name },
    h("td", {}, h("a", { href: `#/points/${encodeURIComponent(info.name)}` }, info.name)),
    h("td", { class: "num count" }, info.count.toLocaleString()),
    h("td", { class: "num" }, info.dim),
    h("td", {}, info.metric),
    h("td", { class: "state" }, badge(index.state), index.building && index.state === "ivf" ? badge("rebuilding", "building") : null),
    h("td", { class: "num" }, fmt(index.nlist)),
    h("td", {}, index.quantization ? index.quantization.kind : "none"),
    h("td", { class: "num" }, fmt(index.bytes_per_vector, 1)),
    h("td", {}, router.version === null ? router.kind : `${router.kind} v${router.version}`),
    decision,
    h(
      "td",
      { class: "actions" },
      h("button", { onclick: () => go("search", info.name) }, "Search"),
      h("button", { class: "build", onclick: act(() => build(info.name, go)) }, "Build"),
      h("button", { class: "danger delete", onclick: act(() => remove(info, refresh)) }, "Delete"),
    ),
  );
}

/** The router report's evaluation: whether the newest trained router was activated, and why. */
async function fillDecision(name, cell) {
  try {
    const { evaluation } = await get(`/collections/${encodeURIComponent(name)}/router/report`);
    if (evaluation && evaluation.source === "train-router") {
      cell.replaceChildren(
        badge(evaluation.activated ? "activated" : "not activated", evaluation.activated ? "ok" : "muted"),
        " ",
        h("span", { class: "muted" }, `v${evaluation.router_version}: ${evaluation.reason || ""}`),
      );
    } else {
      cell.textContent = "no router trained";
    }
  } catch {
    cell.textContent = dash;
  }
}

async function build(name, go) {
  await post(`/collections/${encodeURIComponent(name)}/build`);
  go("jobs", name);
}

async function remove(info, refresh) {
  const dialog = document.getElementById("confirm-dialog");
  dialog.querySelector(".title").textContent = `Delete ${info.name}?`;
  dialog.querySelector(".message").textContent =
    `Its ${info.count.toLocaleString()} points, clusterings, routers and logged queries are deleted for good.`;
  dialog.returnValue = "";
  dialog.showModal();
  await new Promise((resolve) => dialog.addEventListener("close", resolve, { once: true }));
  if (dialog.returnValue !== "ok") return;
  await api("DELETE", `/collections/${encodeURIComponent(info.name)}`);
  refresh();
}

function createForm(refresh) {
  const errors = h("div", { class: "form-errors" });
  const field = (label, input) => h("label", {}, label, input);
  const form = h(
    "form",
    { id: "create-collection", class: "inline-form" },
    field("Name", h("input", { name: "name", required: true, placeholder: "docs", pattern: "[A-Za-z0-9_\\-]{1,64}" })),
    field("Dimension", h("input", { name: "dim", type: "number", min: 1, required: true, value: 384 })),
    field("Metric", select("metric", ["ip", "cosine", "l2"])),
    field("Clustering", select("clustering", ["kmeans", "spherical", "shallow"])),
    field("Lists (nlist)", h("input", { name: "nlist", type: "number", min: 1, placeholder: "auto" })),
    h("button", { class: "primary", type: "submit" }, "Create"),
    errors,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = new FormData(form);
    const body = {
      name: data.get("name"),
      dim: Number(data.get("dim")),
      metric: data.get("metric"),
      clustering: data.get("clustering"),
    };
    if (data.get("nlist")) body.nlist = Number(data.get("nlist"));
    try {
      await post("/collections", body);
      errors.replaceChildren();
      form.reset();
      refresh();
    } catch (error) {
      errors.replaceChildren(problemBox(error));
    }
  });
  return form;
}

export function select(name, options, chosen = options[0]) {
  return h("select", { name }, options.map((o) => h("option", { value: o, selected: o === chosen }, o)));
}
