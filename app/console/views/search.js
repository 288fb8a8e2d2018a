// Search playground: by a point's id or a pasted vector, with routing, probing and a filter.

import { get, post } from "../api.js";
import { card, dash, facts, fmt, h, json, problemBox, table } from "../dom.js";
import { collectionPicker } from "../picker.js";
import { select } from "./collections.js";

const FILTER_HINT = '{"must": [{"key": "lang", "match": {"value": "en"}}]}';

export function render(root, { collection, param, go }) {
  const head = h("div", { class: "toolbar" });
  const formArea = h("div");
  const results = h("div", { id: "search-results" });
  root.append(card("Search playground", head, formArea), results);

  (async () => {
    const { chosen, info } = await collectionPicker(head, collection, (name) => go("search", name));
    if (!chosen) {
      formArea.append(h("p", { class: "empty" }, "No collections yet."));
      return;
    }
    formArea.append(searchForm(info, param, results));
  })();
}

function searchForm(info, pointId, results) {
  const field = (label, input, attrs = {}) => h("label", attrs, label, input);
  const byId = h("input", { type: "radio", name: "by", value: "id", checked: true });
  const byVector = h("input", { type: "radio", name: "by", value: "vector" });
  const idInput = h("input", { name: "point_id", id: "query-id", placeholder: "an existing point id", value: pointId || "" });
  const vectorInput = h("textarea", {
    name: "vector", id: "query-vector", rows: 3, hidden: true,
    placeholder: `[0.1, 0.2, …] — ${info.dim} numbers`,
  });
  const probing = select("probing", ["nprobe", "target_recall"]);
  const probe = h("input", { name: "probe", type: "number", step: "any", min: 0, placeholder: "collection default" });
  const filter = h("textarea", { name: "filter", id: "filter", rows: 4, placeholder: FILTER_HINT, spellcheck: "false" });
  const filterError = h("div", { class: "field-error", id: "filter-error" });
  const formError = h("div", { class: "form-errors" });
  const toggle = () => {
    idInput.hidden = !byId.checked;
    vectorInput.hidden = byId.checked;
  };
  byId.addEventListener("change", toggle);
  byVector.addEventListener("change", toggle);
  filter.addEventListener("input", () => {
    filterError.replaceChildren();
    filter.classList.remove("invalid");
  });

  const form = h(
    "form",
    { id: "search-form", class: "search-form" },
    h("div", { class: "row" },
      h("span", { class: "label" }, "Query"),
      h("label", { class: "radio" }, byId, " by point id"),
      h("label", { class: "radio" }, byVector, " by vector"),
    ),
    idInput,
    vectorInput,
    h("div", { class: "row" },
      field("k", h("input", { name: "k", type: "number", min: 1, value: 10 })),
      field("Routing", select("routing", ["auto", "learned", "centroid", "exact", "emulator"])),
      field("Probing", probing),
      field("Value", probe),
      field("", h("span", {}, h("input", { name: "with_payload", type: "checkbox", checked: true }), " payloads")),
      field("", h("span", {}, h("input", { name: "log", type: "checkbox", checked: true }), " log for training")),
    ),
    field("Filter (JSON, optional)", filter, { class: "block" }),
    filterError,
    h("button", { class: "primary", type: "submit" }, "Search"),
    formError,
  );

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    formError.replaceChildren();
    filterError.replaceChildren();
    filter.classList.remove("invalid");
    const data = new FormData(form);
    const body = {
      collection: info.name,
      k: Number(data.get("k")),
      routing: data.get("routing"),
      with_payload: data.get("with_payload") === "on",
      log: data.get("log") === "on",
    };
    if (data.get("probe")) body[data.get("probing")] = Number(data.get("probe"));
    try {
      if (filter.value.trim()) body.filter = parseFilter(filter.value);
    } catch (error) {
      showFilterError(filter, filterError, h("span", {}, `Not valid JSON: ${error.message}`));
      return;
    }
    try {
      body.vector = byId.checked ? await pointVector(info.name, idInput.value) : parseVector(vectorInput.value);
    } catch (error) {
      formError.replaceChildren(error.problem ? problemBox(error) : h("div", { class: "problem" }, error.message));
      return;
    }
    const started = performance.now();
    try {
      const response = await post("/search", body);
      results.replaceChildren(resultCard(response, performance.now() - started));
    } catch (error) {
      const issues = (error.problem && error.problem.errors) || [];
      const aboutFilter = issues.some((e) => e.loc.includes("filter")) || /filter/i.test(error.message);
      if (aboutFilter) showFilterError(filter, filterError, problemBox(error));
      else formError.replaceChildren(problemBox(error));
    }
  });
  return form;
}

function showFilterError(textarea, box, content) {
  textarea.classList.add("invalid");
  box.replaceChildren(content);
}

function parseFilter(text) {
  return JSON.parse(text);
}

function parseVector(text) {
  const trimmed = text.trim();
  const values = trimmed.startsWith("[") ? JSON.parse(trimmed) : trimmed.split(/[\s,]+/).map(Number);
  if (!Array.isArray(values) || values.some((x) => typeof x !== "number" || Number.isNaN(x))) {
    throw new Error("The vector must be a JSON array or a comma-separated list of numbers.");
  }
  return values;
}

async function pointVector(name, id) {
  if (!id.trim()) throw new Error("Give a point id, or switch to a pasted vector.");
  const point = await get(`/collections/${encodeURIComponent(name)}/points/${encodeURIComponent(id.trim())}`);
  return point.vector;
}

function resultCard(response, ms) {
  const shown = [
    ["routing", response.routing],
    ["router", response.router_version === null ? dash : `v${response.router_version}`],
    ["plan", response.plan],
    ["nprobe", fmt(response.nprobe, 1)],
    ["candidates", fmt(response.candidates, 1)],
    ["scanned", fmt(response.scanned, 0)],
    ["matches", fmt(response.matches)],
    ["time", `${ms.toFixed(0)} ms`],
  ];
  const rows = response.hits.map((hit, i) =>
    h("tr", { class: "hit" },
      h("td", { class: "num" }, i + 1),
      h("td", {}, hit.id),
      h("td", { class: "num score" }, hit.score.toFixed(4)),
      h("td", { class: "payload" }, json(hit.payload)),
    ),
  );
  return card(
    `${response.hits.length} hits`,
    facts(shown, { id: "search-facts" }),
    response.hits.length
      ? table(["#", "Id", "Score", "Payload"], rows, { id: "hits" })
      : h("p", { class: "empty" }, "No hits."),
  );
}
