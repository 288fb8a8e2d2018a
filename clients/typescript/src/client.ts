/**
 * A typed vecroute client: `paths` generated from the server's /openapi.json by
 * openapi-typescript (`npm run generate`), requests sent by openapi-fetch.
 *
 * Two additions over plain openapi-fetch, as in the Python client: the API key as a bearer
 * token, and read-your-writes (the newest `seq` a write returned is sent as `min_seq` with
 * every search, so a replica answers only once it holds this client's writes).
 */
import createClient, { type Client, type Middleware } from "openapi-fetch";
import type { components, paths } from "./schema.js";

export type Schemas = components["schemas"];
export type Problem = Schemas["Problem"];

/** A 4xx/5xx answer, carrying the server's problem+json. */
export class ProblemError extends Error {
  constructor(
    readonly status: number,
    readonly problem: Problem,
  ) {
    super(`${status} ${problem.title}: ${problem.detail}`);
  }

  /** The last segment of `type`: `collection-not-found`, `too-few-queries`, … */
  get slug(): string {
    return this.problem.type.split("/").pop() ?? "";
  }
}

export interface Options {
  baseUrl: string;
  apiKey?: string;
  readYourWrites?: boolean;
}

export interface VecrouteClient extends Client<paths> {
  /** The newest write sequence number this client was given, or was handed. */
  lastSeq(): number | undefined;
  /** Hand over a sequence number (another client's writes): it only moves forward. */
  observeSeq(seq: number): void;
}

const WRITES = new Set(["/index", "/delete"]);
const SEARCHES = new Set(["/search", "/search/batch"]);

export function createVecrouteClient({ baseUrl, apiKey, readYourWrites = true }: Options): VecrouteClient {
  const headers: Record<string, string> = apiKey ? { Authorization: `Bearer ${apiKey}` } : {};
  const client = createClient<paths>({ baseUrl, headers });
  let lastSeq: number | undefined;
  const session: Middleware = {
    async onRequest({ request, schemaPath }) {
      if (!readYourWrites || lastSeq === undefined || !SEARCHES.has(schemaPath)) return undefined;
      const body = (await request.clone().json()) as { min_seq?: number | null };
      if (body.min_seq != null) return undefined;
      return new Request(request, { body: JSON.stringify({ ...body, min_seq: lastSeq }) });
    },
    async onResponse({ response, schemaPath }) {
      if (!response.ok || !WRITES.has(schemaPath)) return undefined;
      const { seq } = (await response.clone().json()) as { seq: number };
      observeSeq(seq);
      return undefined;
    },
  };
  function observeSeq(seq: number): void {
    lastSeq = Math.max(lastSeq ?? seq, seq);
  }
  client.use(session);
  return Object.assign(client, { lastSeq: () => lastSeq, observeSeq });
}

/** The data of a successful call, or a thrown ProblemError. */
export async function ok<T>(call: Promise<{ data?: T; error?: unknown; response: Response }>): Promise<T> {
  const { data, error, response } = await call;
  if (!response.ok) {
    throw new ProblemError(response.status, error as Problem);
  }
  return data as T;
}

/** The ProblemError a call must fail with (the tour's checks of refused requests). */
export async function problem(call: Promise<{ error?: unknown; response: Response }>): Promise<ProblemError> {
  const { error, response } = await call;
  if (response.ok) {
    throw new Error(`expected a problem, got ${response.status}`);
  }
  return new ProblemError(response.status, error as Problem);
}
