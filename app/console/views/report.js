// Router report: learned vs centroid recall@10 and top-1 per nprobe (the service's SVG), the
// documents each nprobe scans, the recall table target_recall reads, adaptive calibration.

import { get } from "../api.js";
import { badge, card, dash, fmt, h, json, problemBox, table } from "../dom.js";
import { collectionPicker } from "../picker.js";

export function render(root, { collection, go }) {
  const head = h("div", { class: "toolbar" });
  const body = h("div", { id: "report" }, h("p", { class: "muted" }, "Loading…"));
  root.append(card("Router report", head, body));
  let plotUrl = null;

  (async () => {
    try {
      const { chosen, info } = await collectionPicker(head, collection, (name) => go("report", name));
      if (!chosen) {
        body.replaceChildren(h("p", { class: "empty" }, "No collections yet."));
        return;
      }
      const path = `/collections/${encodeURIComponent(chosen)}/router/report`;
      const [report, svg] = await Promise.all([get(path), get(`${path}.svg`)]);
      // The SVG is shown as an image (from a blob), so nothing in it runs as page markup.
      plotUrl = URL.createObjectURL(new Blob([svg], { type: "image/svg+xml" }));
      const parts = [
        evaluationLine(report),
        h("img", { id: "report-plot", class: "plot", src: plotUrl, alt: `${chosen}: held-out routing quality vs nprobe` }),
        curvesTable(report, info),
        recallTable(info),
        calibration(info),
      ];
      body.replaceChildren(...parts.filter(Boolean));
    } catch (error) {
      body.replaceChildren(problemBox(error));
    }
  })();
  return () => plotUrl && URL.revokeObjectURL(plotUrl);
}

function evaluationLine(report) {
  const e = report.evaluation;
  if (!e) {
    return h("p", { class: "muted", id: "report-evaluation" },
      report.clustering_version === null
        ? "Not clustered yet: search is exact until the IVF is built."
        : "Nothing measured yet: the curves appear once queries are logged and a build or a router training evaluates them.");
  }
  const source = e.source === "train-router"
    ? [badge(e.activated ? "activated" : "not activated", e.activated ? "ok" : "muted"), ` router v${e.router_version} (${e.router_kind}): ${e.reason || ""}`]
    : ["Measured when clustering v", String(report.clustering_version), " was built (centroid routing)"];
  return h("p", { id: "report-evaluation" }, ...source, h("span", { class: "muted" }, ` · ${e.heldout_queries} held-out queries, k=${e.k}`));
}

/** Recall and top-1 per nprobe, with the documents a probe count scans (probed lists × mean
 * list size: the work a routing causes, not only its probes). */
function curvesTable(report, info) {
  if (!report.nprobe.length) return null;
  const perList = info.index.nlist ? info.count / info.index.nlist : null;
  const c = report.centroid || {};
  const l = report.learned || {};
  const rows = report.nprobe.map((nprobe, i) =>
    h("tr", {},
      h("td", { class: "num" }, nprobe),
      h("td", { class: "num" }, perList === null ? dash : Math.round(perList * Math.min(nprobe, info.index.nlist)).toLocaleString()),
      h("td", { class: "num" }, fmt(c.recall?.[i])),
      h("td", { class: "num" }, fmt(l.recall?.[i])),
      h("td", { class: "num" }, fmt(c.top1_accuracy?.[i])),
      h("td", { class: "num" }, fmt(l.top1_accuracy?.[i])),
    ),
  );
  return h("div", {},
    h("h3", {}, "Held-out quality per nprobe"),
    table(["nprobe", "≈ documents scanned", "recall centroid", "recall learned", "top-1 centroid", "top-1 learned"], rows, { id: "report-curves", class: "compact" }),
  );
}

function recallTable(info) {
  const t = info.recall_table;
  if (!t) return h("div", {}, h("h3", {}, "Recall table"), h("p", { class: "muted" }, `None yet: target_recall searches answer 409 until the worker measures one.`));
  const rows = t.nprobe.map((nprobe, i) =>
    h("tr", {}, h("td", { class: "num" }, nprobe), h("td", { class: "num" }, fmt(t.recall[i])), h("td", { class: "num" }, fmt(t.recall_lower_bound[i]))),
  );
  return h("div", {},
    h("h3", {}, "Recall table"),
    h("p", { class: "muted" }, `${t.routing} routing${t.router_version ? ` v${t.router_version}` : ""}, recall@${t.k} on ${t.n_queries} logged queries: what target_recall picks from.`),
    table(["nprobe", `recall@${t.k}`, "lower bound"], rows, { id: "recall-table", class: "compact" }),
  );
}

/** Adaptive probing's calibration, shown once the collection info carries one. */
function calibration(info) {
  const found = info.calibration ?? info.router?.calibration ?? info.recall_table?.calibration ?? null;
  return h("div", {}, h("h3", {}, "Adaptive calibration"), h("p", { class: found ? "" : "muted", id: "calibration" }, found ? json(found) : `${dash} (not calibrated)`));
}
