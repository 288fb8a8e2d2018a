// Points: page through a collection in id order, look one up by id.

import { get } from "../api.js";
import { card, h, json, problemBox, table, vectorPreview } from "../dom.js";
import { collectionPicker } from "../picker.js";

const PAGE_SIZES = [10, 25, 50, 100];

export function render(root, { collection, go }) {
  const head = h("div", { class: "toolbar" });
  const lookup = h("div", { class: "lookup" });
  const detail = h("div", { id: "point-detail" });
  const pageArea = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  root.append(
    h("div", { class: "split" }, card("Points", head, pageArea), card("Look up a point", lookup, detail)),
  );

  const state = { name: "", count: 0, limit: 25, cursors: [null] }; // cursors[i]: `after` of page i

  async function showPage() {
    const after = state.cursors.at(-1);
    const query = new URLSearchParams({ limit: state.limit });
    if (after !== null) query.set("after", after);
    try {
      const page = await get(`/collections/${encodeURIComponent(state.name)}/points?${query}`);
      pageArea.replaceChildren(pageTable(page, state, showPage, (id) => showPoint(id)));
    } catch (error) {
      pageArea.replaceChildren(problemBox(error));
    }
  }

  async function showPoint(id) {
    try {
      const point = await get(
        `/collections/${encodeURIComponent(state.name)}/points/${encodeURIComponent(id)}`,
      );
      detail.replaceChildren(pointCard(point, () => go("search", state.name, point.id)));
    } catch (error) {
      detail.replaceChildren(problemBox(error));
    }
  }

  (async () => {
    const { chosen, info } = await collectionPicker(head, collection, (name) => go("points", name));
    if (!chosen) {
      pageArea.replaceChildren(h("p", { class: "empty" }, "No collections yet."));
      return;
    }
    state.name = chosen;
    state.count = info.count;
    head.append(
      h(
        "label",
        { class: "picker" },
        "Per page ",
        h(
          "select",
          {
            id: "page-size",
            onchange: (e) => {
              state.limit = Number(e.target.value);
              state.cursors = [null];
              showPage();
            },
          },
          PAGE_SIZES.map((n) => h("option", { value: n, selected: n === state.limit }, n)),
        ),
      ),
    );
    const input = h("input", { id: "point-id", placeholder: "point id", required: true });
    const form = h("form", { class: "inline-form" }, input, h("button", { class: "primary" }, "Look up"));
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      showPoint(input.value);
    });
    lookup.append(form);
    showPage();
  })();
}

function pageTable(page, state, showPage, showPoint) {
  const pageNo = state.cursors.length;
  const rows = page.points.map((p) =>
    h(
      "tr",
      { "data-id": p.id },
      h("td", {}, h("a", { href: "#", onclick: (e) => { e.preventDefault(); showPoint(p.id); } }, p.id)),
      h("td", { class: "payload" }, json(p.payload)),
      h("td", { class: "vector" }, vectorPreview(p.vector)),
    ),
  );
  const previous = h("button", {
    id: "previous-page",
    disabled: pageNo === 1,
    onclick: () => { state.cursors.pop(); showPage(); },
  }, "← Previous");
  const next = h("button", {
    id: "next-page",
    disabled: page.next === null,
    onclick: () => { state.cursors.push(page.next); showPage(); },
  }, "Next →");
  return h(
    "div",
    {},
    page.points.length
      ? table(["Id", "Payload", "Vector"], rows, { id: "points" })
      : h("p", { class: "empty" }, "No points on this page."),
    h("div", { class: "pager" }, previous, h("span", { id: "page-number" }, `Page ${pageNo} of ${Math.max(1, Math.ceil(state.count / state.limit))}`), next),
  );
}

function pointCard(point, searchSimilar) {
  return h(
    "div",
    { class: "point" },
    h("h3", {}, point.id),
    h("pre", { class: "json" }, JSON.stringify(point.payload, null, 2)),
    h("p", { class: "vector" }, `${point.vector.length} dims: ${vectorPreview(point.vector, 12)}`),
    h("button", { class: "primary", onclick: searchSimilar }, "Search similar"),
  );
}
