// The console talks only to the public HTTP API: fetch plus the Authorization header.
// The API key is asked for once, on the first 401, and kept for the tab (sessionStorage).

const KEY = "vecroute.apiKey";

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

let keyPrompt = null; // one prompt shared by every request refused at the same time

function askForKey(refused) {
  if (!keyPrompt) {
    keyPrompt = new Promise((resolve) => {
      const dialog = document.getElementById("key-dialog");
      const input = dialog.querySelector("input");
      dialog.querySelector(".refused").hidden = !refused;
      input.value = "";
      dialog.addEventListener(
        "close",
        () => {
          sessionStorage.setItem(KEY, input.value.trim());
          keyPrompt = null;
          resolve();
        },
        { once: true },
      );
      dialog.showModal();
      input.focus();
    });
  }
  return keyPrompt;
}

export function forgetKey() {
  sessionStorage.removeItem(KEY);
}

export function hasKey() {
  return Boolean(sessionStorage.getItem(KEY));
}

/** Call the API; JSON (or text for SVG) on success, ApiError carrying the problem otherwise. */
export async function api(method, path, body) {
  for (;;) {
    const headers = {};
    const key = sessionStorage.getItem(KEY);
    if (key) headers.Authorization = `Bearer ${key}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (response.status === 401) {
      await askForKey(Boolean(key));
      continue;
    }
    if (response.status === 204) return null;
    const type = response.headers.get("content-type") || "";
    const content = type.includes("json") ? await response.json() : await response.text();
    if (!response.ok) {
      const problem = typeof content === "object" ? content : { detail: content };
      throw new ApiError(response.status, problem);
    }
    return content;
  }
}

export const get = (path) => api("GET", path);
export const post = (path, body) => api("POST", path, body);
