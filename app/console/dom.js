// Tiny DOM helpers: every text goes in through textContent, never as HTML, so payloads
// and ids shown by the console cannot inject markup.

/** h("td", {class: "num"}, "text", childNode, ...) */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (value === true) el.setAttribute(name, "");
    else el.setAttribute(name, value);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function table(headers, rows, attrs = {}) {
  return h(
    "table",
    attrs,
    h("thead", {}, h("tr", {}, headers.map((x) => h("th", {}, x)))),
    h("tbody", {}, rows),
  );
}

export const dash = "—";

export function fmt(value, digits = 3) {
  if (value === null || value === undefined) return dash;
  if (typeof value === "number" && !Number.isInteger(value)) return value.toFixed(digits);
  return String(value);
}

export function vectorPreview(vector, shown = 6) {
  const head = vector.slice(0, shown).map((x) => x.toFixed(3)).join(", ");
  return `[${head}${vector.length > shown ? `, … ${vector.length - shown} more` : ""}]`;
}

export function json(value) {
  return value === null || value === undefined ? dash : JSON.stringify(value);
}

export function badge(text, kind = text) {
  return h("span", { class: `badge badge-${kind}` }, text);
}

/** Key-value chips: [["plan", "ivf"], ...]; each value is findable by [data-fact=key]. */
export function facts(pairs, attrs = {}) {
  return h(
    "dl",
    { class: "facts", ...attrs },
    pairs.map(([k, v]) => h("div", { class: "fact" }, h("dt", {}, k), h("dd", { "data-fact": k }, v))),
  );
}

export function card(title, ...children) {
  return h("section", { class: "card" }, title ? h("h2", {}, title) : null, ...children);
}

/** A problem+json error as a readable block: its detail, then each invalid field. */
export function problemBox(error) {
  const problem = error.problem || { detail: String(error) };
  const issues = problem.errors || [];
  return h(
    "div",
    { class: "problem", role: "alert" },
    h("strong", {}, problem.title || "Error"),
    " ",
    problem.detail || error.message,
    issues.length
      ? h(
          "ul",
          {},
          issues.map((e) => h("li", {}, h("code", {}, e.loc.join(".")), " ", e.msg)),
        )
      : null,
  );
}

export function relativeTime(iso) {
  const seconds = Math.round((Date.now() - new Date(iso).getTime()) / 1000);
  if (seconds < 60) return `${Math.max(seconds, 0)} s ago`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.round(seconds / 3600)} h ago`;
  return new Date(iso).toLocaleString();
}
