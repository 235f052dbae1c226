'use strict';
/*
 * The JavaScript kernel runner: cells run in one Node.js process. Runs in the sandbox only.
 *
 * Started as `sh -c 'exec node node_runner.js 3<&0 4>&1 5>&2 0</dev/null'`: requests arrive on
 * fd 3, protocol frames go to fd 4 (the end-of-cell sync frame to fd 5), user code writes to
 * fds 1 and 2 (console.log, process.stdout, child processes) as usual. See
 * llm_sandbox/kernels/protocol.py for the wire format. Needs Node.js 18+, nothing else.
 *
 * Cells run in the main context with vm.Script#runInThisContext (like Node's REPL), so
 * globals, required modules and functions persist. Before that, a small tokenizer (strings,
 * comments, templates and regular expressions aware) rewrites the cell:
 *  - top-level `let` and `const` become `var`, and `class X` becomes `var X = class X`, so
 *    that declarations persist and a cell can be run again (`let x = 1`, then `let x = 2`);
 *    the price is that a top-level const can be reassigned in a later cell;
 *  - `import x from 'pkg'` becomes `var x = (await __llm_import__('pkg')).default` (and the
 *    other import forms likewise), `import(...)` calls __llm_import__, which resolves
 *    packages from the working directory (and NODE_PATH) like `require` does;
 *  - a cell with top-level `await` runs as an async function: its top-level declarations
 *    are hoisted to globals (and its function declarations to a script run first), and its
 *    last expression statement is returned as the cell's value.
 * The cell's value (its completion value) comes back as an execute_result: text/plain by
 * util.inspect, plus the bundle of `value[Symbol.for('llm-sandbox.mime')]()` if defined.
 * `display(value)`, `display.html(s)`, `.markdown`, `.latex`, `.svg`, `.png(buffer)`, `.jpeg`,
 * `.json(value)`, `.text(s)` and `.mime(bundle)` send display_data.
 *
 * A worker thread is the only reader of fd 3. On an interrupt it signals SIGINT to this
 * process and to every process the kernel started: synchronous code stops through
 * runInThisContext's breakOnSigint (Node's own, race-free watchdog), a cell waiting on a
 * promise is ended by the SIGINT listener. A CPU loop after an `await` cannot be interrupted
 * (as in Node's REPL); the host then kills and restarts the kernel.
 */

const fs = require('fs');
const path = require('path');
const util = require('util');
const vm = require('vm');
const { builtinModules, createRequire } = require('module');
const { pathToFileURL } = require('url');
const { Worker, isMainThread, parentPort, workerData } = require('worker_threads');

const CONTROL_FD = 3;
const FRAME_FD = 4;
const SYNC_FD = 5;
const MAGIC = '\0llmk:';
const CHUNK_MAX = 4000 - MAGIC.length - 32 - ':+:0000:'.length;
const PROTOCOL = 1;
const MIME = Symbol.for('llm-sandbox.mime');

function sleepMs(ms) {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

function unescapePayload(buf) {
  let s = buf.toString('latin1');
  s = s.replace(/%00/g, '\0').replace(/%0D/g, '\r').replace(/%0A/g, '\n').replace(/%25/g, '%');
  return Buffer.from(s, 'latin1');
}

function parseRequest(line) {
  let tab = line.indexOf(9);
  const head = (tab >= 0 ? line.subarray(0, tab) : line).toString('utf8');
  const payload = tab >= 0 ? unescapePayload(line.subarray(tab + 1)) : Buffer.alloc(0);
  const [kind, ...parts] = head.split(' ');
  const fields = {};
  for (const part of parts) {
    const eq = part.indexOf('=');
    if (eq > 0) fields[part.slice(0, eq)] = part.slice(eq + 1);
  }
  return { kind, fields, payload };
}

/** Every process below `root`, from /proc/<pid>/task/<tid>/children (else a full scan). */
function descendants(root) {
  const found = [];
  const frontier = [root];
  try {
    while (frontier.length) {
      const pid = frontier.pop();
      for (const task of fs.readdirSync(`/proc/${pid}/task`)) {
        let kids = '';
        try {
          kids = fs.readFileSync(`/proc/${pid}/task/${task}/children`, 'latin1');
        } catch (e) {
          if (e.code !== 'ENOENT' || !fs.existsSync(`/proc/${root}/task/${root}/children`)) throw e;
        }
        for (const kid of kids.split(' ').filter(Boolean).map(Number)) {
          found.push(kid);
          frontier.push(kid);
        }
      }
    }
    return found;
  } catch (e) {
    return scanDescendants(root);
  }
}

function scanDescendants(root) {
  const parents = new Map();
  let entries = [];
  try {
    entries = fs.readdirSync('/proc');
  } catch (e) {
    return [];
  }
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, 'latin1');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      parents.set(Number(entry), Number(fields[1]));
    } catch (e) {
      // gone already
    }
  }
  const found = new Set();
  let frontier = new Set([root]);
  while (frontier.size) {
    const next = new Set();
    for (const [pid, parent] of parents) {
      if (frontier.has(parent) && !found.has(pid) && pid !== root) next.add(pid);
    }
    for (const pid of next) found.add(pid);
    frontier = next;
  }
  return [...found];
}

// --- the worker: sole reader of fd 3 -------------------------------------------------------------
function workerMain() {
  // Reads are event-driven (a pipe handle, or the thread pool for other kinds of fd): a
  // worker blocked in a synchronous read could not be stopped, and process.exit() waits for
  // its workers.
  const running = workerData.running; // Int32Array: [0] = id of the running cell, 0 when idle
  let pending = Buffer.alloc(0);
  let input;
  try {
    input = new (require('net').Socket)({ fd: CONTROL_FD, readable: true, writable: false });
  } catch (e) {
    input = fs.createReadStream(null, { fd: CONTROL_FD, highWaterMark: 1 << 16 });
  }
  input.on('end', () => parentPort.postMessage({ kind: 'eof', fields: {}, payload: Buffer.alloc(0) }));
  input.on('error', () => parentPort.postMessage({ kind: 'eof', fields: {}, payload: Buffer.alloc(0) }));
  input.on('data', (data) => {
    pending = pending.length ? Buffer.concat([pending, data]) : data;
    let nl;
    while ((nl = pending.indexOf(10)) >= 0) {
      const line = pending.subarray(0, nl);
      pending = pending.subarray(nl + 1);
      const request = parseRequest(line);
      if (request.kind === 'interrupt') {
        if (String(Atomics.load(running, 0)) === request.fields.id) {
          process.kill(process.pid, 'SIGINT');
          for (const pid of descendants(process.pid)) {
            try {
              process.kill(pid, 'SIGINT');
            } catch (e) {
              // gone already
            }
          }
        }
      } else {
        parentPort.postMessage(request);
      }
    }
  });
}

// --- the wire ---------------------------------------------------------------------------------------
let marker = null;

function writeFully(fd, data) {
  let offset = 0;
  while (offset < data.length) {
    try {
      offset += fs.writeSync(fd, data, offset, data.length - offset);
    } catch (e) {
      if (e.code !== 'EAGAIN' && e.code !== 'EINTR') throw e;
      sleepMs(1);
    }
  }
}

function send(message, fd = FRAME_FD) {
  if (marker === null) return;
  const data = Buffer.from(JSON.stringify(message, jsonReplacer), 'utf8');
  for (let start = 0; start < Math.max(data.length, 1); start += CHUNK_MAX) {
    const chunk = data.subarray(start, start + CHUNK_MAX);
    const flag = start + CHUNK_MAX >= data.length ? '.' : '+';
    const header = Buffer.from(`${marker}${flag}:${chunk.length.toString(16).padStart(4, '0')}:`, 'latin1');
    writeFully(fd, Buffer.concat([header, chunk]));
  }
}

function jsonReplacer(key, value) {
  if (typeof value === 'bigint') return value.toString();
  return value;
}

// --- rich output --------------------------------------------------------------------------------------
const BINARY = new Set(['image/png', 'image/jpeg', 'image/gif', 'image/webp', 'application/pdf']);

function normalizeBundle(bundle) {
  const out = {};
  for (const [mime, value] of Object.entries(bundle || {})) {
    if (value === undefined || value === null) continue;
    if (value instanceof Uint8Array) {
      out[mime] = BINARY.has(mime)
        ? Buffer.from(value).toString('base64')
        : Buffer.from(value).toString('utf8');
    } else if (mime === 'application/json' || mime.endsWith('+json')) {
      out[mime] = value;
    } else {
      out[mime] = String(value);
    }
  }
  return out;
}

function inspect(value) {
  return util.inspect(value, { colors: false, depth: 4, maxArrayLength: 200, breakLength: 100 });
}

function bundleOf(value) {
  const bundle = { 'text/plain': inspect(value) };
  if (value !== null && (typeof value === 'object' || typeof value === 'function')) {
    let custom = null;
    try {
      custom = typeof value[MIME] === 'function' ? value[MIME]() : null;
    } catch (e) {
      custom = null;
    }
    if (custom && typeof custom === 'object') Object.assign(bundle, normalizeBundle(custom));
  }
  return bundle;
}

let currentCell = 0;

function displayBundle(bundle, transient) {
  const data = normalizeBundle(bundle);
  if (Object.keys(data).length === 0) return;
  send({ type: 'display_data', id: String(currentCell), data, metadata: {}, transient: transient || {} });
}

function display(...values) {
  for (const value of values) displayBundle(bundleOf(value));
}
display.mime = (bundle) => displayBundle(bundle);
display.text = (s) => displayBundle({ 'text/plain': String(s) });
display.html = (s) => displayBundle({ 'text/html': String(s) });
display.markdown = (s) => displayBundle({ 'text/markdown': String(s) });
display.latex = (s) => displayBundle({ 'text/latex': String(s) });
display.svg = (s) => displayBundle({ 'image/svg+xml': String(s) });
display.json = (value) => displayBundle({ 'application/json': value, 'text/plain': inspect(value) });
display.png = (data) => displayBundle({ 'image/png': typeof data === 'string' ? data : Buffer.from(data) });
display.jpeg = (data) => displayBundle({ 'image/jpeg': typeof data === 'string' ? data : Buffer.from(data) });

// --- module loading -------------------------------------------------------------------------------------
const cellRequire = createRequire(path.join(process.cwd(), '__llm_sandbox_kernel__.js'));

function importModule(specifier) {
  const spec = String(specifier);
  if (spec.startsWith('node:') || builtinModules.includes(spec) || /^[a-z][a-z0-9+.-]*:/i.test(spec)) {
    return import(spec);
  }
  if (spec.startsWith('.') || spec.startsWith('/')) {
    return import(pathToFileURL(path.resolve(process.cwd(), spec)).href);
  }
  let resolved;
  try {
    resolved = cellRequire.resolve(spec);
  } catch (e) {
    return import(spec); // an ESM-only package: let Node's resolver try
  }
  return import(pathToFileURL(resolved).href);
}

/** What named imports take from: a CommonJS module's exports (its default) with the
 * namespace's own names on top, as Node's cjs-module-lexer cannot always find them. */
function importNames(ns) {
  const base = ns && ns.default;
  if (base === null || base === undefined || (typeof base !== 'object' && typeof base !== 'function')) return ns;
  return Object.assign(Object.create(null), base, ns);
}

// --- the cell transform ----------------------------------------------------------------------------------
const PUNCTUATORS = [
  '>>>=', '...', '===', '!==', '**=', '<<=', '>>=', '>>>', '&&=', '||=', '??=', '=>', '==', '!=',
  '<=', '>=', '&&', '||', '??', '?.', '++', '--', '+=', '-=', '*=', '/=', '%=', '&=', '|=', '^=',
  '**', '<<', '>>',
];
const REGEX_AFTER = new Set([
  'return', 'typeof', 'instanceof', 'in', 'of', 'new', 'delete', 'void', 'throw', 'case', 'do',
  'else', 'yield', 'await',
]);
const CONTINUES_AFTER = new Set([
  'typeof', 'new', 'delete', 'void', 'in', 'of', 'instanceof', 'extends', 'await', 'yield', 'else', 'do',
]);
const STATEMENT_WORDS = new Set([
  'var', 'let', 'const', 'if', 'for', 'while', 'do', 'switch', 'try', 'function', 'class', 'return',
  'throw', 'break', 'continue', 'import', 'export', 'debugger', 'with',
]);
const WORD = /[A-Za-z0-9_$\u0080-\uffff\\#]/;

/** Tokens of `src`: {t: name|punct|string|template|regex|number, v, s, e, nl}. Lenient:
 * an unterminated literal runs to the end (V8 reports the syntax error later). */
function tokenize(src) {
  const tokens = [];
  const n = src.length;
  let i = 0;

  function regexAllowed() {
    const last = tokens[tokens.length - 1];
    if (!last) return true;
    if (last.t === 'name') return REGEX_AFTER.has(last.v);
    if (last.t === 'punct') return ![')', ']', '++', '--'].includes(last.v);
    return false;
  }

  function skipString(q) {
    i++;
    while (i < n && src[i] !== q) {
      if (src[i] === '\\') i++;
      else if (src[i] === '\n') break;
      i++;
    }
    i++;
  }

  function skipTemplate() {
    i++; // opening backtick
    while (i < n) {
      const c = src[i];
      if (c === '\\') {
        i += 2;
      } else if (c === '`') {
        i++;
        return;
      } else if (c === '$' && src[i + 1] === '{') {
        i += 2;
        scan(true);
        i++; // the closing brace
      } else {
        i++;
      }
    }
  }

  function skipRegex() {
    i++;
    let inClass = false;
    while (i < n) {
      const c = src[i];
      if (c === '\\') i++;
      else if (c === '[') inClass = true;
      else if (c === ']') inClass = false;
      else if (c === '/' && !inClass) break;
      else if (c === '\n') break;
      i++;
    }
    i++;
    while (i < n && WORD.test(src[i])) i++; // flags
  }

  // Scans tokens into `tokens`; with `untilBrace`, stops before the `}` that closes a
  // template substitution (its tokens are scanned but belong to the template token).
  function scan(untilBrace) {
    let depth = 0;
    let nl = false;
    const mark = tokens.length;
    while (i < n) {
      const c = src[i];
      const start = i;
      if (c === '\n' || c === '\u2028' || c === '\u2029') {
        nl = true;
        i++;
        continue;
      }
      if (/\s/.test(c)) {
        i++;
        continue;
      }
      if (c === '/' && src[i + 1] === '/') {
        while (i < n && src[i] !== '\n') i++;
        continue;
      }
      if (c === '/' && src[i + 1] === '*') {
        const end = src.indexOf('*/', i + 2);
        const stop = end < 0 ? n : end + 2;
        if (src.slice(i, stop).includes('\n')) nl = true;
        i = stop;
        continue;
      }
      let t;
      if (c === '"' || c === "'") {
        skipString(c);
        t = 'string';
      } else if (c === '`') {
        skipTemplate();
        t = 'template';
      } else if (c === '/' && regexAllowed()) {
        skipRegex();
        t = 'regex';
      } else if (WORD.test(c)) {
        while (i < n && WORD.test(src[i])) i++;
        t = /^[0-9]/.test(src.slice(start, i)) ? 'number' : 'name';
        if (t === 'number') {
          while (i < n && /[0-9a-zA-Z_.]/.test(src[i])) i++;
        }
      } else if (c === '.' && /[0-9]/.test(src[i + 1] || '')) {
        i++;
        while (i < n && /[0-9a-zA-Z_]/.test(src[i])) i++;
        t = 'number';
      } else {
        if (untilBrace && c === '}' && depth === 0) {
          tokens.length = mark;
          return;
        }
        const p = PUNCTUATORS.find((q) => src.startsWith(q, i)) || c;
        i += p.length;
        t = 'punct';
        if (p === '{' || p === '(' || p === '[') depth++;
        if (p === '}' || p === ')' || p === ']') depth--;
      }
      tokens.push({ t, v: src.slice(start, i), s: start, e: Math.min(i, n), nl });
      nl = false;
    }
    if (untilBrace) tokens.length = mark;
  }

  scan(false);
  return tokens;
}

function isPunct(tok, values) {
  return tok !== undefined && tok.t === 'punct' && values.includes(tok.v);
}

function continuesAfter(prev) {
  if (prev.t === 'punct') return !isPunct(prev, [')', ']', '}', '++', '--', ';']);
  return prev.t === 'name' && CONTINUES_AFTER.has(prev.v);
}

function continuesBefore(tok) {
  if (tok.t === 'template') return true;
  if (tok.t === 'punct') return !isPunct(tok, ['{', '++', '--', '!', '~', ';']);
  return tok.t === 'name' && (tok.v === 'in' || tok.v === 'of' || tok.v === 'instanceof');
}

/** Per token: its bracket depth and whether it starts a top-level statement. */
function analyse(tokens) {
  const info = [];
  let depth = 0;
  for (let k = 0; k < tokens.length; k++) {
    const tok = tokens[k];
    const prev = tokens[k - 1];
    let start = false;
    if (depth === 0) {
      if (!prev || isPunct(prev, [';'])) start = true;
      else if (isPunct(prev, ['}'])) {
        start = !['else', 'catch', 'finally', 'while'].includes(tok.v) && (tok.nl || !continuesBefore(tok));
      } else if (tok.nl) start = !continuesAfter(prev) && !continuesBefore(tok);
    }
    info.push({ depth, start });
    if (tok.t === 'punct') {
      if (tok.v === '(' || tok.v === '[' || tok.v === '{') depth++;
      else if (tok.v === ')' || tok.v === ']' || tok.v === '}') depth = Math.max(0, depth - 1);
    }
  }
  return info;
}

/** Index of the token that closes the bracket opened at `k`. */
function closing(tokens, k) {
  let depth = 0;
  for (let j = k; j < tokens.length; j++) {
    if (isPunct(tokens[j], ['(', '[', '{'])) depth++;
    else if (isPunct(tokens[j], [')', ']', '}'])) {
      depth--;
      if (depth === 0) return j;
    }
  }
  return tokens.length - 1;
}

function applyEdits(src, edits) {
  edits.sort((a, b) => a.s - b.s || a.e - b.e);
  let out = '';
  let at = 0;
  for (const edit of edits) {
    if (edit.s < at) continue; // overlapping: the first one wins
    out += src.slice(at, edit.s) + edit.text;
    at = edit.e;
  }
  return out + src.slice(at);
}

let importCounter = 0;

/** Static imports to awaited __llm_import__ calls; import( to __llm_import__(. */
function rewriteImports(src) {
  if (!src.includes('import')) return src;
  const tokens = tokenize(src);
  const info = analyse(tokens);
  const edits = [];
  for (let k = 0; k < tokens.length; k++) {
    const tok = tokens[k];
    if (tok.t !== 'name' || tok.v !== 'import' || isPunct(tokens[k - 1], ['.', '?.'])) continue;
    const next = tokens[k + 1];
    if (isPunct(next, ['('])) {
      edits.push({ s: tok.s, e: tok.e, text: '__llm_import__' });
      continue;
    }
    if (!info[k].start || !next || isPunct(next, ['.'])) continue;
    // import "spec" | import clause from "spec"
    let j = k + 1;
    let defaultName = null;
    let namespace = null;
    let named = null;
    if (next.t === 'string') {
      let end = j;
      if (isPunct(tokens[end + 1], [';'])) end++;
      edits.push({ s: tok.s, e: tokens[end].e, text: `await __llm_import__(${next.v});` });
      continue;
    }
    if (tokens[j].t === 'name' && tokens[j].v !== 'from') {
      defaultName = tokens[j].v;
      j++;
      if (isPunct(tokens[j], [','])) j++;
    }
    if (isPunct(tokens[j], ['*']) && tokens[j + 1] && tokens[j + 1].v === 'as' && tokens[j + 2]) {
      namespace = tokens[j + 2].v;
      j += 3;
    } else if (isPunct(tokens[j], ['{'])) {
      const close = closing(tokens, j);
      const parts = [];
      let item = [];
      for (let m = j + 1; m <= close; m++) {
        if (m === close || isPunct(tokens[m], [','])) {
          if (item.length === 1) parts.push(item[0].v);
          else if (item.length === 3 && item[1].v === 'as') parts.push(`${item[0].v}: ${item[2].v}`);
          item = [];
        } else item.push(tokens[m]);
      }
      named = parts;
      j = close + 1;
    }
    if (!tokens[j] || tokens[j].v !== 'from' || !tokens[j + 1] || tokens[j + 1].t !== 'string') continue;
    const spec = tokens[j + 1].v;
    let end = j + 1;
    if (tokens[end + 1] && (tokens[end + 1].v === 'with' || tokens[end + 1].v === 'assert')) {
      end = closing(tokens, end + 2);
    }
    if (isPunct(tokens[end + 1], [';'])) end++;
    const tmp = `__llm_m${importCounter++}`;
    const lines = [`var ${tmp} = await __llm_import__(${spec});`];
    if (defaultName) lines.push(`var ${defaultName} = ${tmp}.default;`);
    if (namespace) lines.push(`var ${namespace} = ${tmp};`);
    if (named && named.length) lines.push(`var {${named.join(', ')}} = __llm_names__(${tmp});`);
    edits.push({ s: tok.s, e: tokens[end].e, text: lines.join(' ') });
  }
  return applyEdits(src, edits);
}

/** Names bound by the pattern tokens [i, j). */
function patternNames(tokens, i, j) {
  if (j - i === 1 && tokens[i].t === 'name') return [tokens[i].v];
  const names = [];
  if (!isPunct(tokens[i], ['{', '['])) return names;
  const isObject = tokens[i].v === '{';
  for (const [a, b] of splitTop(tokens, i + 1, j - 1, ',')) {
    if (a >= b) continue;
    if (isPunct(tokens[a], ['...'])) {
      names.push(...patternNames(tokens, a + 1, topEnd(tokens, a + 1, b, '=')));
      continue;
    }
    if (isObject) {
      const colon = topFind(tokens, a, b, ':');
      if (colon >= 0) names.push(...patternNames(tokens, colon + 1, topEnd(tokens, colon + 1, b, '=')));
      else if (tokens[a].t === 'name') names.push(tokens[a].v);
    } else {
      names.push(...patternNames(tokens, a, topEnd(tokens, a, b, '=')));
    }
  }
  return names;
}

/** Ranges of [i, j) split at `sep` outside brackets. */
function splitTop(tokens, i, j, sep) {
  const ranges = [];
  let depth = 0;
  let start = i;
  for (let k = i; k < j; k++) {
    if (isPunct(tokens[k], ['(', '[', '{'])) depth++;
    else if (isPunct(tokens[k], [')', ']', '}'])) depth--;
    else if (depth === 0 && isPunct(tokens[k], [sep])) {
      ranges.push([start, k]);
      start = k + 1;
    }
  }
  ranges.push([start, j]);
  return ranges;
}

function topFind(tokens, i, j, value) {
  let depth = 0;
  for (let k = i; k < j; k++) {
    if (isPunct(tokens[k], ['(', '[', '{'])) depth++;
    else if (isPunct(tokens[k], [')', ']', '}'])) depth--;
    else if (depth === 0 && isPunct(tokens[k], [value])) return k;
  }
  return -1;
}

function topEnd(tokens, i, j, value) {
  const at = topFind(tokens, i, j, value);
  return at < 0 ? j : at;
}

/** Declarators of the declaration whose keyword is at k: [{target: [a, b), init: [c, d)|null}]
 * and the index after the declaration. */
function declarators(tokens, info, k) {
  const list = [];
  let j = k + 1;
  for (;;) {
    const tok = tokens[j];
    if (!tok) break;
    let targetEnd;
    if (isPunct(tok, ['{', '['])) targetEnd = closing(tokens, j) + 1;
    else targetEnd = j + 1;
    let init = null;
    let m = targetEnd;
    if (isPunct(tokens[m], ['='])) {
      const initStart = m + 1;
      m = initStart;
      let depth = 0;
      while (m < tokens.length) {
        const t = tokens[m];
        if (depth === 0 && m > initStart && info[m].depth === 0 && info[m].start) break;
        if (depth === 0 && isPunct(t, [',', ';'])) break;
        if (isPunct(t, ['(', '[', '{'])) depth++;
        else if (isPunct(t, [')', ']', '}'])) {
          if (depth === 0) break;
          depth--;
        }
        m++;
      }
      init = [initStart, m];
    }
    list.push({ target: [j, targetEnd], init });
    if (isPunct(tokens[m], [','])) {
      j = m + 1;
      continue;
    }
    return { list, end: m };
  }
  return { list, end: j };
}

/** The cell as a script: {code, async, prelude}. */
function transform(source) {
  let src = rewriteImports(source);
  const trimmed = src.trim();
  if (trimmed.startsWith('{') && trimmed.endsWith('}')) {
    // As in Node's REPL: `{a: 1}` is an object literal, not a block, when that parses.
    try {
      new vm.Script(`(${trimmed})`);
      src = `(${trimmed})`;
    } catch (e) {
      // a block after all
    }
  }
  const tokens = tokenize(src);
  const info = analyse(tokens);
  const syncEdits = [];
  const asyncEdits = [];
  const hoisted = [];
  const functions = [];
  for (let k = 0; k < tokens.length; k++) {
    const tok = tokens[k];
    if (!info[k].start || tok.t !== 'name') continue;
    const next = tokens[k + 1];
    const declares = next && (next.t === 'name' || isPunct(next, ['{', '[']));
    if ((tok.v === 'let' || tok.v === 'const' || tok.v === 'var') && declares) {
      if (tok.v !== 'var') syncEdits.push({ s: tok.s, e: tok.e, text: tok.v === 'let' ? 'var' : 'var  ' });
      const { list, end } = declarators(tokens, info, k);
      const parts = [];
      for (const d of list) {
        hoisted.push(...patternNames(tokens, d.target[0], d.target[1]));
        const target = src.slice(tokens[d.target[0]].s, tokens[d.target[1] - 1].e);
        if (d.init && d.init[1] > d.init[0]) {
          const init = src.slice(tokens[d.init[0]].s, tokens[d.init[1] - 1].e);
          parts.push(`(${target} = ${init})`);
        } else if (tok.v !== 'var' && tokens[d.target[0]].t === 'name') {
          parts.push(`(${target} = undefined)`);
        }
      }
      const last = tokens[end - 1];
      asyncEdits.push({ s: tok.s, e: last.e, text: parts.length ? `void ${parts.join(', ')}` : 'void 0' });
      k = end - 1;
    } else if (tok.v === 'class' && next && next.t === 'name' && next.v !== 'extends') {
      let body = k + 2;
      while (body < tokens.length && !(isPunct(tokens[body], ['{']) && info[body].depth === 0)) body++;
      const close = closing(tokens, body);
      syncEdits.push({ s: tok.s, e: tok.s, text: `var ${next.v} = ` });
      syncEdits.push({ s: tokens[close].e, e: tokens[close].e, text: ';' });
      asyncEdits.push({ s: tok.s, e: tok.s, text: `${next.v} = ` });
      asyncEdits.push({ s: tokens[close].e, e: tokens[close].e, text: ';' });
      hoisted.push(next.v);
      k = close;
    } else if (tok.v === 'function' || (tok.v === 'async' && next && next.v === 'function' && !next.nl)) {
      let m = tok.v === 'async' ? k + 2 : k + 1;
      if (isPunct(tokens[m], ['*'])) m++;
      if (!tokens[m] || tokens[m].t !== 'name') continue;
      let body = m + 1;
      while (body < tokens.length && !isPunct(tokens[body], ['{'])) {
        body = isPunct(tokens[body], ['(']) ? closing(tokens, body) + 1 : body + 1;
      }
      const close = closing(tokens, body);
      functions.push(src.slice(tok.s, tokens[close].e));
      asyncEdits.push({ s: tok.s, e: tokens[close].e, text: '' });
      k = close;
    }
  }
  const syncCode = applyEdits(src, syncEdits);
  // The last statement, if an expression, becomes the async function's return value.
  let last = -1;
  for (let k = 0; k < tokens.length; k++) if (info[k].start && !isPunct(tokens[k], [';'])) last = k;
  if (last >= 0) {
    const first = tokens[last];
    const isExpression =
      !isPunct(first, ['{']) &&
      !(first.t === 'name' && STATEMENT_WORDS.has(first.v)) &&
      !(first.t === 'name' && first.v === 'async' && tokens[last + 1] && tokens[last + 1].v === 'function');
    if (isExpression) {
      let end = tokens.length - 1;
      while (end > last && isPunct(tokens[end], [';'])) end--;
      asyncEdits.push({ s: first.s, e: first.s, text: 'return (' });
      asyncEdits.push({ s: tokens[end].e, e: tokens[end].e, text: '\n)' });
    }
  }
  return {
    syncCode,
    asyncCode: () => `(async () => {\n${applyEdits(src, asyncEdits)}\n})()`,
    prelude: () => {
      const names = [...new Set(hoisted)];
      return (names.length ? `var ${names.join(', ')};\n` : '') + functions.join('\n');
    },
    mayAwait: tokens.some((t) => t.t === 'name' && t.v === 'await'),
  };
}

// --- running cells -------------------------------------------------------------------------------------------
let executionCount = 0;
let current = null; // {id, abort} while a cell runs

class Interrupted extends Error {
  constructor() {
    super('execution was interrupted');
    this.name = 'Interrupted';
  }
}

function cleanStack(err) {
  const stack = typeof err.stack === 'string' ? err.stack : `${err.name}: ${err.message}`;
  const lines = [];
  for (const line of stack.split('\n')) {
    if (/^\s+at /.test(line) && (line.includes(__filename) || /\(node:|at node:/.test(line))) {
      continue;
    }
    lines.push(line);
  }
  while (lines.length && lines[lines.length - 1].trim() === '') lines.pop();
  return lines;
}

function errorMessage(id, err) {
  if (err && err.code === 'ERR_SCRIPT_EXECUTION_INTERRUPTED') err = new Interrupted();
  if (err instanceof Error || (err && typeof err === 'object' && typeof err.message === 'string')) {
    let name = err.name || 'Error';
    try {
      name = String(name);
    } catch (e) {
      name = 'Error';
    }
    return { type: 'error', id, ename: name, evalue: String(err.message), traceback: cleanStack(err) };
  }
  const text = inspect(err);
  return { type: 'error', id, ename: 'Uncaught', evalue: text, traceback: [`Uncaught ${text}`] };
}

function isOpen(fd) {
  try {
    fs.fstatSync(fd);
    return true;
  } catch (e) {
    return false;
  }
}

function syncStream(fd) {
  const stream = new (require('stream').Writable)({
    write(chunk, encoding, callback) {
      try {
        writeFully(fd, Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk, encoding));
        callback();
      } catch (e) {
        callback(e);
      }
    },
  });
  stream.fd = fd;
  stream.isTTY = false;
  return stream;
}

/** Give the cell working fds 1 and 2 and process.stdout/stderr, whatever the last did. */
function repairStdio() {
  let replaced = false;
  for (const [fd, copy, name] of [[1, FRAME_FD, 'stdout'], [2, SYNC_FD, 'stderr']]) {
    if (!isOpen(fd)) {
      try {
        const got = fs.openSync(`/proc/self/fd/${copy}`, 'w'); // the lowest free fd: `fd`
        if (got !== fd) fs.closeSync(got);
      } catch (e) {
        // not a pipe we can reopen: the cell's output on this stream is lost
      }
    }
    const stream = process[name];
    if (!stream || stream.destroyed || stream.writableEnded || stream.errored) {
      const fresh = syncStream(fd);
      Object.defineProperty(process, name, { configurable: true, enumerable: true, get: () => fresh });
      replaced = true;
    }
  }
  if (replaced) {
    const fresh = new console.Console({ stdout: process.stdout, stderr: process.stderr });
    Object.defineProperty(globalThis, 'console', { value: fresh, writable: true, configurable: true });
  }
}

function onSigint() {
  if (current && current.abort) current.abort();
}

async function runCell(id, code) {
  repairStdio();
  if (!process.listeners('SIGINT').includes(onSigint)) process.on('SIGINT', onSigint);
  const count = ++executionCount;
  const filename = `cell[${count}]`;
  currentCell = id;
  current = { id, abort: null };
  running[0] = Number(id) || 0;
  let status = 'ok';
  try {
    const cell = transform(code);
    let script;
    let isAsync = false;
    try {
      script = new vm.Script(cell.syncCode, { filename });
    } catch (err) {
      if (!(err instanceof SyntaxError) || !cell.mayAwait) throw err;
      try {
        script = new vm.Script(cell.asyncCode(), { filename, lineOffset: -1 });
      } catch (asyncErr) {
        throw err;
      }
      isAsync = true;
    }
    let value;
    if (isAsync) {
      const prelude = cell.prelude();
      if (prelude) new vm.Script(prelude, { filename }).runInThisContext({ breakOnSigint: true });
      const promise = script.runInThisContext({ breakOnSigint: true });
      value = await new Promise((resolve, reject) => {
        current.abort = () => reject(new Interrupted());
        promise.then(resolve, reject);
      });
    } else {
      value = script.runInThisContext({ breakOnSigint: true });
    }
    if (value !== undefined) {
      send({ type: 'execute_result', id, execution_count: count, data: bundleOf(value), metadata: {} });
    }
  } catch (err) {
    status = 'error';
    send(errorMessage(id, err));
  } finally {
    running[0] = 0;
    current = null;
  }
  send({ type: 'execute_reply', id, status, execution_count: count });
  send({ type: 'sync', id }, SYNC_FD);
}

let running = null;

function main() {
  const control = Buffer.alloc(0);
  void control;
  running = new Int32Array(new SharedArrayBuffer(4));
  const worker = new Worker(__filename, { workerData: { running } });
  worker.unref();
  const queue = [];
  let busy = false;
  let started = false;

  async function pump() {
    if (busy) return;
    busy = true;
    try {
      while (queue.length) {
        const request = queue.shift();
        if (request.kind === 'execute') {
          await runCell(request.fields.id || '0', Buffer.from(request.payload).toString('utf8'));
        } else if (request.kind === 'shutdown' || request.kind === 'eof') {
          process.exit(0);
        }
      }
    } finally {
      busy = false;
    }
  }

  worker.on('message', (request) => {
    if (!started) {
      if (request.kind !== 'start' || !/^[0-9a-f]{32}$/.test(request.fields.nonce || '')) {
        process.stderr.write('llm-sandbox kernel: expected a start request on fd 3\n');
        process.exit(2);
      }
      started = true;
      marker = `${MAGIC}${request.fields.nonce}:`;
      send({
        type: 'ready',
        protocol: PROTOCOL,
        language: 'javascript',
        language_version: process.versions.node,
        implementation: `Node.js ${process.version}`,
        pid: process.pid,
      });
      return;
    }
    queue.push(request);
    pump();
  });
  worker.on('error', (err) => {
    process.stderr.write(`llm-sandbox kernel: the reader failed: ${err && err.stack}\n`);
    process.exit(2);
  });
  process.on('SIGINT', onSigint);
  process.on('uncaughtException', (err) => {
    process.stderr.write(`Uncaught ${err && err.stack ? err.stack : inspect(err)}\n`);
  });
  process.on('unhandledRejection', (reason) => {
    process.stderr.write(`Unhandled promise rejection: ${reason && reason.stack ? reason.stack : inspect(reason)}\n`);
  });
  for (const [name, value] of Object.entries({
    display,
    require: cellRequire,
    __llm_import__: importModule,
    __llm_names__: importNames,
  })) {
    Object.defineProperty(globalThis, name, { value, writable: true, configurable: true, enumerable: false });
  }
  // Keep the process alive between cells (the worker is unref'd so it does not).
  setInterval(() => {}, 1 << 30);
}

if (isMainThread) main();
else workerMain();
