/**
 * The README tour through the generated client: `node dist/tour.js http://127.0.0.1:8000`.
 * Every step checks its answer; the last line printed is a JSON summary, the exit code 0
 * only if every check held.
 */
import assert from "node:assert/strict";
import { createVecrouteClient, ok, problem } from "./client.js";

const baseUrl = process.argv[2] ?? process.env.VECROUTE_URL ?? "http://127.0.0.1:8000";
const client = createVecrouteClient({ baseUrl, apiKey: process.env.VECROUTE_API_KEY });
const name = `tour-${Date.now().toString(36)}`;
const steps: string[] = [];

function step(what: string): void {
  steps.push(what);
}

const created = await ok(client.POST("/collections", { body: { name, dim: 2, metric: "ip" } }));
assert.equal(created.index.state, "flat");
assert.equal(created.count, 0);
step("create_collection");

const exists = await problem(client.POST("/collections", { body: { name, dim: 2 } }));
assert.equal(exists.status, 409);
assert.equal(exists.slug, "collection-exists");
step("create_collection twice: 409 problem+json");

const points = [
  { id: "a1", vector: [0.1, 0.2], payload: { lang: "en" } },
  { id: "a2", vector: [0.3, 0.4] },
];
const indexed = await ok(client.POST("/index", { body: { collection: name, points } }));
assert.equal(indexed.upserted, 2);
assert.equal(client.lastSeq(), indexed.seq);
step("index_points");

const found = await ok(client.POST("/search", { body: { collection: name, vector: [1, 1], k: 2 } }));
assert.deepEqual(found.hits.map((h) => h.id), ["a2", "a1"]);
assert.equal(found.routing, "exact");
assert.deepEqual(found.hits[1]?.payload, { lang: "en" });
step("search");

// Read-your-writes: a client handed a sequence number this server has not reached yet
// sends it as min_seq; the server waits (bounded), then answers 503 min-seq-not-reached.
const ahead = createVecrouteClient({ baseUrl, apiKey: process.env.VECROUTE_API_KEY });
ahead.observeSeq(indexed.seq + 1_000_000);
const behind = await problem(ahead.POST("/search", { body: { collection: name, vector: [1, 1] } }));
assert.equal(behind.status, 503);
assert.equal(behind.slug, "min-seq-not-reached");
step("search carries min_seq");

const filter = { must: [{ key: "lang", match: { value: "en" } }] };
const english = await ok(client.POST("/search", { body: { collection: name, vector: [1, 1], filter } }));
assert.deepEqual(english.hits.map((h) => h.id), ["a1"]);
assert.equal(english.matches, 1);
step("filtered search");

const batch = await ok(
  client.POST("/search/batch", { body: { collection: name, vectors: [[1, 1], [-1, -1]], k: 1 } }),
);
assert.deepEqual(batch.results.map((r) => r.hits[0]?.id), ["a2", "a1"]);
step("search_batch");

const point = await ok(
  client.GET("/collections/{name}/points/{point_id}", { params: { path: { name, point_id: "a1" } } }),
);
assert.deepEqual(point.payload, { lang: "en" });
step("get_point");

const accepted = await ok(client.POST("/collections/{name}/build", { params: { path: { name } } }));
const deadline = Date.now() + 60_000;
let job = await ok(client.GET("/jobs/{job_id}", { params: { path: { job_id: accepted.job_id } } }));
while (job.status !== "succeeded") {
  assert.notEqual(job.status, "failed", job.error ?? "build failed");
  assert.ok(Date.now() < deadline, "build never finished");
  await new Promise((resolve) => setTimeout(resolve, 50));
  job = await ok(client.GET("/jobs/{job_id}", { params: { path: { job_id: accepted.job_id } } }));
}
assert.equal(job.kind, "build");
assert.equal(job.result?.["n_points"], 2);
step("build_collection, get_job until succeeded");

const refused = await problem(client.POST("/train-router", { body: { collection: name, kind: "linear" } }));
assert.equal(refused.status, 409);
assert.equal(refused.slug, "too-few-queries");
step("train_router: 409 too few queries");

const report = await ok(client.GET("/collections/{name}/router/report", { params: { path: { name } } }));
assert.equal(report.learned, null);
const svg = await ok(
  client.GET("/collections/{name}/router/report.svg", { params: { path: { name } }, parseAs: "text" }),
);
assert.ok(svg.startsWith("<svg"));
step("router report, JSON and SVG");

const deleted = await ok(client.POST("/delete", { body: { collection: name, ids: ["a2", "zz"] } }));
assert.equal(deleted.deleted, 1);
assert.ok(deleted.seq > indexed.seq);
const gone = await problem(
  client.GET("/collections/{name}/points/{point_id}", { params: { path: { name, point_id: "a2" } } }),
);
assert.equal(gone.slug, "point-not-found");
step("delete_points");

const listed = await ok(client.GET("/collections"));
assert.ok(listed.collections.some((c) => c.name === name && c.count === 1));
assert.equal((await ok(client.GET("/healthz"))).status, "ok");
assert.equal((await ok(client.GET("/readyz"))).ready, true);
const metrics = await ok(client.GET("/metrics", { parseAs: "text" }));
assert.match(metrics, /^vecroute_/m);
step("list_collections, healthz, readyz, metrics");

await ok(client.DELETE("/collections/{name}", { params: { path: { name } } }));
const missing = await problem(client.GET("/collections/{name}", { params: { path: { name } } }));
assert.equal(missing.status, 404);
step("delete_collection");

console.log(JSON.stringify({ ok: true, steps }));
