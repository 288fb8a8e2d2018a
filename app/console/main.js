// The console's shell: hash routes (#/view/collection), the server status, one view at a time.

import { ApiError, forgetKey, get, hasKey } from "./api.js";
import * as collections from "./views/collections.js";
import * as jobs from "./views/jobs.js";
import * as points from "./views/points.js";
import * as report from "./views/report.js";
import * as search from "./views/search.js";

const VIEWS = { collections, points, search, jobs, report };
const READY_POLL_MS = 3000;
let leave = null; // the current view's cleanup (stops its polling)
let lastCollection = ""; // kept when switching tabs between views of one collection
const ONE_COLLECTION = new Set(["points", "search", "report"]);

/** Show a view, optionally of one collection and with one parameter (a point id). */
function go(view, collection = "", param = "") {
  const parts = [view, collection, param].filter(Boolean).map(encodeURIComponent);
  location.hash = `#/${parts.join("/")}`;
}

function route() {
  const [, name = "collections", collection = "", param = ""] = location.hash.split("/");
  const view = VIEWS[name] ? name : "collections";
  for (const tab of document.querySelectorAll("#tabs a")) {
    tab.classList.toggle("active", tab.dataset.view === view);
  }
  if (leave) leave();
  const root = document.getElementById("view");
  root.replaceChildren();
  const named = decodeURIComponent(collection);
  if (named) lastCollection = named;
  leave = VIEWS[view].render(root, {
    collection: named || (ONE_COLLECTION.has(view) ? lastCollection : ""),
    param: decodeURIComponent(param),
    go,
  }) || null;
}

/** The banner says plainly when the server cannot serve (loading, store down, unreachable). */
async function watchReadiness() {
  const status = document.getElementById("server-status");
  const banner = document.getElementById("banner");
  try {
    const ready = await get("/readyz");
    status.textContent = `ready · seq ${ready.applied_seq}`;
    document.getElementById("change-key").hidden = !hasKey();
    status.className = "status ok";
    banner.hidden = true;
  } catch (error) {
    status.textContent = "not ready";
    status.className = "status down";
    banner.textContent =
      error instanceof ApiError
        ? `The server is not ready: ${error.problem.detail}. Retrying every few seconds…`
        : "The server does not answer (stopped, or unreachable from here). Retrying every few seconds…";
    banner.hidden = false;
  }
  setTimeout(watchReadiness, READY_POLL_MS);
}

// A read-only key cannot write: another key is typed after forgetting this one.
document.getElementById("change-key").addEventListener("click", () => {
  forgetKey();
  location.reload();
});
window.addEventListener("hashchange", route);
route();
watchReadiness();
