// The collection selector shared by the points, search and report views.

import { get } from "./api.js";
import { h } from "./dom.js";

/** A <select> of the collections; resolves the chosen name ("" when there is none). */
export async function collectionPicker(container, current, onChange) {
  const { collections } = await get("/collections");
  const names = collections.map((c) => c.name);
  const chosen = names.includes(current) ? current : names[0] || "";
  const select = h(
    "select",
    { id: "collection-picker", "aria-label": "collection", onchange: (e) => onChange(e.target.value) },
    names.map((n) => h("option", { value: n, selected: n === chosen }, n)),
  );
  container.append(
    h("label", { class: "picker" }, "Collection ", names.length ? select : h("em", {}, "none yet")),
  );
  return { chosen, info: collections.find((c) => c.name === chosen) };
}
