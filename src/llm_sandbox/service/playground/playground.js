// The playground: talks to the service's REST/SSE endpoints with the key the user gives.
// One session per language is kept across runs (files and, in plot-capturing sessions, plots);
// "New session" throws it away.
"use strict";

const $ = (id) => document.getElementById(id);
const KEY_STORE = "llm-sandbox-playground-key";
const PLOT_TYPES = { png: "image/png", jpeg: "image/jpeg", jpg: "image/jpeg", gif: "image/gif",
  webp: "image/webp", svg: "image/svg+xml" };
let session = null; // {id, lang}

function say(text, kind) {
  const box = $("message");
  box.textContent = text;
  box.className = kind || "info";
}

function key() { return $("key").value.trim(); }

class HttpError extends Error {
  constructor(status, message, retryAfter) {
    super(message);
    this.status = status;
    this.retryAfter = retryAfter;
  }
}

function explain(err) {
  if (!(err instanceof HttpError)) return "Cannot reach the server: " + err.message;
  if (err.status === 401)
    return "401: the API key is missing or not valid. Paste a key made with `llm-sandbox keys create NAME`. (" + err.message + ")";
  if (err.status === 429)
    return "429: this key is over a limit. " + err.message +
      (err.retryAfter ? " Retry in " + err.retryAfter + " s." : "");
  if (err.status === 503)
    return "503: the sandbox backend is unavailable on the server. " + err.message;
  return err.status + ": " + err.message;
}

async function api(method, path, body) {
  const headers = { Authorization: "Bearer " + key() };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!response.ok) {
    let message = response.statusText;
    try {
      const data = await response.json();
      message = (data.error && data.error.message) || data.message || message;
    } catch (_) { /* not JSON */ }
    throw new HttpError(response.status, message, response.headers.get("Retry-After"));
  }
  return response;
}

async function loadLanguages() {
  const data = await (await api("GET", "/v1/languages")).json();
  const select = $("language");
  const current = select.value;
  select.innerHTML = "";
  for (const lang of data.languages) {
    const option = document.createElement("option");
    option.value = option.textContent = lang;
    select.appendChild(option);
  }
  select.value = data.languages.includes(current) ? current : data.languages[0];
}

async function closeSession() {
  if (session === null) return;
  const old = session;
  session = null;
  $("session-info").textContent = "";
  try { await api("DELETE", "/v1/sessions/" + old.id); } catch (_) { /* expired already */ }
}

async function ensureSession(lang) {
  if (session !== null && session.lang === lang) return session;
  await closeSession();
  let made;
  try {
    made = await (await api("POST", "/v1/sessions", { lang, plots: true })).json();
  } catch (err) {
    if (!(err instanceof HttpError) || err.status !== 400) throw err;
    made = await (await api("POST", "/v1/sessions", { lang })).json(); // no plot capture
  }
  session = { id: made.id, lang };
  $("session-info").textContent = "session " + made.id + " (kept across runs)";
  return session;
}

function append(text, stream) {
  const span = document.createElement("span");
  span.className = stream;
  span.textContent = text;
  $("output").appendChild(span);
}

function showPlot(plot) {
  const mime = PLOT_TYPES[plot.format];
  if (!mime) return;
  const img = document.createElement("img");
  img.alt = "plot";
  img.className = "plot";
  img.src = "data:" + mime + ";base64," + plot.content_base64;
  $("plots").appendChild(img);
}

function handle(name, data) {
  if (name === "stdout" || name === "stderr") append(data.text, name);
  else if (name === "plot") showPlot(data);
  else if (name === "display") {
    if (data["image/png"]) showPlot({ format: "png", content_base64: data["image/png"] });
    else if (data["text/plain"]) append(data["text/plain"] + "\n", "stdout");
  } else if (name === "result") {
    const verdict = data.verdict || (data.exit_code === 0 ? "ok" : "error");
    $("result").textContent = "exit code " + data.exit_code + " · " + verdict +
      (data.message ? " · " + data.message : "");
    say(verdict === "ok" ? "Done." : "The program ended: " + verdict, verdict === "ok" ? "ok" : "error");
  } else if (name === "error") {
    say("Error: " + (data.message || JSON.stringify(data)), "error");
    if (data.code === "session_not_found" || data.code === "session_closed") session = null;
  }
}

async function readEvents(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let name = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).trim());
      }
      if (data.length) handle(name, JSON.parse(data.join("\n")));
    }
  }
}

async function run() {
  if (!key()) { say("Enter an API key first.", "error"); $("key").focus(); return; }
  $("run").disabled = true;
  $("output").textContent = "";
  $("plots").textContent = "";
  $("result").textContent = "";
  say("Running…", "info");
  try {
    const held = await ensureSession($("language").value);
    const response = await api("POST", "/v1/sessions/" + held.id + "/run",
      { code: $("code").value, stream: true });
    await readEvents(response);
  } catch (err) {
    if (err instanceof HttpError && err.status === 404) session = null;
    say(explain(err), "error");
  } finally {
    $("run").disabled = false;
  }
}

async function useKey(event) {
  if (event) event.preventDefault();
  if (!key()) { say("Enter an API key.", "error"); return; }
  try {
    await loadLanguages();
    sessionStorage.setItem(KEY_STORE, key());
    say("Key accepted. Pick a language, write code, press Run (Ctrl+Enter).", "ok");
  } catch (err) {
    say(explain(err), "error");
  }
}

$("key-form").addEventListener("submit", useKey);
$("run").addEventListener("click", run);
$("new-session").addEventListener("click", async () => { await closeSession(); say("The next run starts a new session.", "info"); });
$("language").addEventListener("change", () => closeSession());
$("code").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) { event.preventDefault(); run(); }
  if (event.key === "Tab") {
    event.preventDefault();
    const area = event.target, start = area.selectionStart;
    area.setRangeText("    ", start, area.selectionEnd, "end");
  }
});
window.addEventListener("pagehide", () => {
  if (session !== null) fetch("/v1/sessions/" + session.id,
    { method: "DELETE", headers: { Authorization: "Bearer " + key() }, keepalive: true });
});
const saved = sessionStorage.getItem(KEY_STORE);
if (saved) { $("key").value = saved; useKey(); }
