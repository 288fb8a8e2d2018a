// Jobs: a live list (polled every second) with progress, errors and results; train a router.

import { get, post } from "../api.js";
import { badge, card, facts, fmt, h, problemBox, relativeTime, table } from "../dom.js";
import { select } from "./collections.js";

const POLL_MS = 1000;
const HEADERS = ["Kind", "Collection", "Status", "Progress", "Attempts", "Created", "Updated", ""];

export function render(root, { collection, go }) {
  const filters = h("div", { class: "toolbar" });
  const list = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  const trainArea = h("div");
  root.append(card("Jobs", filters, list), card("Train a router", trainArea));
  const open = new Set(); // job ids whose details are shown
  let timer = null;
  let stopped = false;

  const statusSelect = select("status", ["any", "queued", "running", "succeeded", "failed"]);
  statusSelect.id = "job-status-filter";
  statusSelect.addEventListener("change", poll);

  async function poll() {
    clearTimeout(timer);
    const query = new URLSearchParams({ limit: 50 });
    if (collection) query.set("collection", collection);
    if (statusSelect.value !== "any") query.set("status", statusSelect.value);
    try {
      const { jobs } = await get(`/jobs?${query}`);
      if (stopped) return;
      list.replaceChildren(
        jobs.length
          ? table(HEADERS, jobs.flatMap((job) => rows(job, open, poll)), { id: "jobs" })
          : h("p", { class: "empty" }, "No jobs yet: build a collection or train a router."),
      );
    } catch (error) {
      list.replaceChildren(problemBox(error));
    }
    if (!stopped) timer = setTimeout(poll, POLL_MS);
  }

  (async () => {
    const { collections } = await get("/collections");
    const names = collections.map((c) => c.name);
    const collectionSelect = select("collection", ["all", ...names], collection || "all");
    collectionSelect.id = "job-collection-filter";
    collectionSelect.addEventListener("change", (e) => go("jobs", e.target.value === "all" ? "" : e.target.value));
    filters.append(
      h("label", { class: "picker" }, "Collection ", collectionSelect),
      h("label", { class: "picker" }, "Status ", statusSelect),
      h("span", { class: "muted live" }, "● live"),
    );
    trainArea.append(names.length ? trainForm(names, collection, poll) : h("p", { class: "empty" }, "No collections yet."));
  })();
  poll();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

function rows(job, open, redraw) {
  const pct = Math.round(job.progress * 100);
  const hasDetail = job.result !== null || job.error;
  const toggle = () => {
    if (open.has(job.id)) open.delete(job.id);
    else open.add(job.id);
    redraw();
  };
  const main = h(
    "tr",
    { "data-job": job.id, "data-kind": job.kind, class: `job job-${job.status}` },
    h("td", {}, job.kind),
    h("td", {}, job.collection || "—"),
    h("td", { class: "job-status" }, badge(job.status)),
    h("td", {}, h("div", { class: "progress", title: `${pct}%` }, h("div", { class: `bar bar-${job.status}`, style: `width: ${pct}%` })), h("span", { class: "pct" }, `${pct}%`)),
    h("td", { class: "num" }, job.attempts),
    h("td", { title: job.created_at }, relativeTime(job.created_at)),
    h("td", { title: job.updated_at }, relativeTime(job.updated_at)),
    h("td", {}, hasDetail ? h("button", { class: "details", onclick: toggle }, open.has(job.id) ? "Hide" : "Details") : null),
  );
  const out = [main];
  if (job.error) {
    out.push(h("tr", { class: "job-error" }, h("td", { colspan: HEADERS.length }, h("div", { class: "problem" }, job.error))));
  }
  if (open.has(job.id) && job.result !== null) {
    out.push(h("tr", { class: "job-detail" }, h("td", { colspan: HEADERS.length }, resultView(job))));
  }
  return out;
}

function resultView(job) {
  const r = job.result;
  if (job.kind === "train-router" && r.heldout_recall) return heldOut(r);
  return facts(Object.entries(r).map(([k, v]) => [k, typeof v === "object" ? JSON.stringify(v) : fmt(v)]));
}

/** A train-router job's held-out comparison of the serving router and the new one. */
function heldOut(r) {
  const better = (a, b) => (a > b ? "better" : "");
  const rows = r.nprobes.map((nprobe, i) =>
    h(
      "tr",
      {},
      h("td", { class: "num" }, nprobe),
      h("td", { class: "num" }, fmt(r.heldout_recall.current[i])),
      h("td", { class: `num ${better(r.heldout_recall.new[i], r.heldout_recall.current[i])}` }, fmt(r.heldout_recall.new[i])),
      h("td", { class: "num" }, fmt(r.heldout_top1_accuracy?.current?.[i])),
      h("td", { class: `num ${better(r.heldout_top1_accuracy?.new?.[i], r.heldout_top1_accuracy?.current?.[i])}` }, fmt(r.heldout_top1_accuracy?.new?.[i])),
    ),
  );
  return h(
    "div",
    { class: "heldout" },
    h("p", {}, badge(r.activated ? "activated" : "not activated", r.activated ? "ok" : "muted"), ` router v${r.router_version} (${r.kind}, ${r.objective}): ${r.reason}`),
    h("p", { class: "muted" }, `${r.train_queries} training queries, ${r.heldout_queries} held out, ${r.seconds} s`),
    table(["nprobe", "recall@10 serving", "recall@10 new", "top-1 serving", "top-1 new"], rows, { class: "compact" }),
  );
}

function trainForm(names, collection, poll) {
  const errors = h("div", { class: "form-errors" });
  const form = h(
    "form",
    { id: "train-router", class: "inline-form" },
    h("label", {}, "Collection", select("collection", names, collection || names[0])),
    h("label", {}, "Kind", select("kind", ["linear", "mlp", "emulator"])),
    h("label", {}, "Objective", select("objective", ["top1", "topk", "mixed", "graded"])),
    h("button", { class: "primary" }, "Train"),
    errors,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = new FormData(form);
    try {
      await post("/train-router", Object.fromEntries(data.entries()));
      errors.replaceChildren();
      poll();
    } catch (error) {
      errors.replaceChildren(problemBox(error));
    }
  });
  return form;
}
