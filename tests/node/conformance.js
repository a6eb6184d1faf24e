#!/usr/bin/env node
'use strict';
// ShareDB protocol conformance: the real npm `sharedb` 7 client (and, where a client could not
// produce the frame, a raw `ws` socket) against a server URL.
//
//   node tests/node/conformance.js --url ws://127.0.0.1:PORT/ws [--skip presence] [--only NAME]
//                                  [--seed N] [--timeout-scale F]
//
// Prints one JSON line per scenario, {"name", "ok", "error", "ms"} (plus "skipped": true for a
// skipped one), and exits 1 if any scenario failed, 2 on a usage error.
//
// How it stays deterministic: every wait is for an event (an ack, the connection's
// `whenNothingPending`, a document reaching a version, a frame arriving), each with a timeout that
// names what it waited for; nothing sleeps to let things happen. The random edits come from a
// seeded generator (`--seed`, printed on failure) so a failing interleaving can be replayed as far
// as the network allows. Every scenario uses fresh random document ids in collection `docs`, so
// runs against a long-lived server do not collide. Each simulated client is its own Connection
// over its own WebSocket.
//
// Offline is simulated with a TapSocket: a WebSocket wrapper handed to the Connection that can
// drop what the server sends (the client never learns its op was acknowledged) and then cut the
// connection; the same Connection is later bound to a fresh socket with `bindToSocket`, as a
// reconnecting client does. That makes the server see a resent op with the same (src, seq).

const path = require('path');
const crypto = require('crypto');
const {createRequire} = require('module');

const jsRequire = createRequire(path.resolve(__dirname, '..', '..', 'js', 'package.json'));
const {Connection, types, logger} = jsRequire('sharedb/lib/client');
const WebSocket = jsRequire('ws');
const textUnicode = jsRequire('./text-unicode-presence.js');

types.register(textUnicode);
logger.setMethods({info: () => {}, warn: () => {}});

const COLLECTION = 'docs';
const TEXT_URI = textUnicode.uri;
const JSON0_URI = 'http://sharejs.org/types/JSONv0';

// ---------------------------------------------------------------------------------------------
// Arguments

function usage(message) {
  process.stderr.write(`conformance: ${message}\n`);
  process.exit(2);
}

function parseArgs(argv) {
  const args = {url: null, skip: new Set(), only: null, seed: null, timeoutScale: null};
  for (let i = 0; i < argv.length; i++) {
    const name = argv[i];
    const value = argv[i + 1];
    const need = () => {
      if (value === undefined) usage(`${name} needs a value`);
      i++;
      return value;
    };
    if (name === '--url') args.url = need();
    else if (name === '--skip') need().split(',').filter(Boolean).forEach((s) => args.skip.add(s));
    else if (name === '--only') args.only = new Set(need().split(',').filter(Boolean));
    else if (name === '--seed') args.seed = Number(need());
    else if (name === '--timeout-scale') args.timeoutScale = Number(need());
    else usage(`unknown argument ${name}`);
  }
  if (!args.url || !/^wss?:\/\//.test(args.url)) usage('--url ws://HOST:PORT/ws is required');
  if (args.seed === null) args.seed = crypto.randomInt(2 ** 31);
  if (!Number.isInteger(args.seed)) usage('--seed must be an integer');
  if (args.timeoutScale === null) args.timeoutScale = Number(process.env.MAILSLOT_TIMEOUT_SCALE || 1);
  if (!(args.timeoutScale > 0)) usage('--timeout-scale must be a positive number');
  return args;
}

// ---------------------------------------------------------------------------------------------
// Small tools

let TIMEOUT_SCALE = 1;
const WAIT_MS = 10000;

class ConformanceError extends Error {}

function fail(message) {
  throw new ConformanceError(message);
}

// JSON with object keys sorted, so equal values print equal whatever the key order on the wire.
function stable(value) {
  if (Array.isArray(value)) return `[${value.map(stable).join(',')}]`;
  if (value && typeof value === 'object') {
    return `{${Object.keys(value).sort().map((k) => `${JSON.stringify(k)}:${stable(value[k])}`).join(',')}}`;
  }
  return value === undefined ? 'undefined' : JSON.stringify(value);
}

function assertEqual(actual, expected, what) {
  const a = stable(actual);
  const e = stable(expected);
  if (a !== e) fail(`${what}: expected ${e}, got ${a}`);
}

function assertTrue(condition, what) {
  if (!condition) fail(what);
}

function withTimeout(promise, what, ms = WAIT_MS) {
  const limit = ms * TIMEOUT_SCALE;
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new ConformanceError(`timed out after ${limit} ms: ${what}`)), limit);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// Resolve once `predicate()` is true, re-checking whenever one of `sources` ([emitter, event])
// fires. No polling: the predicate only changes when one of those events happens.
function until(what, predicate, sources, ms = WAIT_MS) {
  return withTimeout(
    new Promise((resolve, reject) => {
      const listeners = [];
      const done = (fn, value) => {
        for (const [emitter, event, listener] of listeners) emitter.removeListener(event, listener);
        fn(value);
      };
      const check = () => {
        try {
          if (predicate()) done(resolve);
        } catch (err) {
          done(reject, err);
        }
      };
      for (const [emitter, event] of sources) {
        const listener = () => check();
        listeners.push([emitter, event, listener]);
        emitter.on(event, listener);
      }
      check();
    }),
    what,
    ms,
  );
}

function rid(prefix) {
  return `${prefix}-${crypto.randomBytes(6).toString('hex')}`;
}

// mulberry32: a small seeded generator, so a run's edits can be replayed from its seed.
function makeRandom(seed) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  next.int = (n) => Math.floor(next() * n);
  next.pick = (list) => list[next.int(list.length)];
  return next;
}

const codePoints = (s) => Array.from(s);
const count = (haystack, needle) => haystack.split(needle).length - 1;

// ---------------------------------------------------------------------------------------------
// Sockets and clients

// A WebSocket-like object for sharedb's Connection (readyState, send, close, on* handlers) over a
// `ws` socket, which can record what the client sends, drop what the server sends, and cut the
// connection under the client.
class TapSocket {
  constructor(url) {
    this.ws = new WebSocket(url, {perMessageDeflate: false});
    this.sent = [];
    this.dropIncoming = false;
    this.dropped = [];
    this.onopen = null;
    this.onmessage = null;
    this.onclose = null;
    this.onerror = null;
    this._droppedListeners = [];
    this.ws.on('open', () => this.onopen && this.onopen());
    this.ws.on('message', (data) => {
      const text = data.toString('utf8');
      if (this.dropIncoming) {
        const message = JSON.parse(text);
        this.dropped.push(message);
        for (const fn of this._droppedListeners) fn(message);
        return;
      }
      if (this.onmessage) this.onmessage({data: text});
    });
    this.ws.on('close', (code, reason) => {
      if (this.onclose) this.onclose({code, reason: reason.toString()});
    });
    this.ws.on('error', (err) => this.onerror && this.onerror(err));
  }

  get readyState() {
    return this.ws.readyState;
  }

  send(data) {
    this.sent.push(JSON.parse(data));
    this.ws.send(data);
  }

  close() {
    this.ws.close();
  }

  // Resolve with the first dropped server frame matching `predicate` (seen now or later).
  nextDropped(predicate, what) {
    const seen = this.dropped.find(predicate);
    if (seen) return Promise.resolve(seen);
    return withTimeout(
      new Promise((resolve) => {
        const fn = (message) => {
          if (!predicate(message)) return;
          this._droppedListeners = this._droppedListeners.filter((f) => f !== fn);
          resolve(message);
        };
        this._droppedListeners.push(fn);
      }),
      what,
    );
  }

  // Drop the TCP connection without a closing handshake, as a network failure does.
  cut() {
    this.ws.terminate();
  }
}

class Scope {
  constructor(url) {
    this.url = url;
    this.closers = [];
  }

  async client(name) {
    const socket = new TapSocket(this.url);
    const connection = new Connection(socket);
    connection.on('error', () => {});
    this.closers.push(() => connection.close());
    await until(`${name} connects`, () => connection.state === 'connected', [[connection, 'state']]);
    return {name, connection, socket};
  }

  async reconnect(client) {
    const socket = new TapSocket(this.url);
    client.socket = socket;
    client.connection.bindToSocket(socket);
    await until(
      `${client.name} reconnects`,
      () => client.connection.state === 'connected',
      [[client.connection, 'state']],
    );
    return socket;
  }

  async raw(name) {
    const raw = new RawClient(this.url, name);
    this.closers.push(() => raw.close());
    await raw.opened;
    return raw;
  }

  // What the server holds now, read by a fresh client.
  async serverSnapshot(id) {
    const reader = await this.client('reader');
    const doc = reader.connection.get(COLLECTION, id);
    await call(doc, 'fetch', `fresh client fetches ${id}`);
    const snapshot = {v: doc.version, type: doc.type && doc.type.uri, data: doc.data};
    reader.connection.close();
    return snapshot;
  }

  close() {
    for (const fn of this.closers) {
      try {
        fn();
      } catch (_) {
        // already closed
      }
    }
  }
}

function call(target, method, what, ...args) {
  return withTimeout(
    new Promise((resolve, reject) => {
      target[method](...args, (err, value) => (err ? reject(err) : resolve(value)));
    }),
    what,
  );
}

// Submit an op and resolve when the server acknowledges it.
function submit(doc, op, what) {
  return call(doc, 'submitOp', what || `ack of ${JSON.stringify(op)}`, op);
}

function nothingPending(client) {
  return withTimeout(
    new Promise((resolve) => client.connection.whenNothingPending(resolve)),
    `${client.name}: all ops acknowledged`,
  );
}

function reachVersion(doc, v, who) {
  return until(`${who} reaches version ${v} (at ${doc.version})`, () => doc.version === v, [
    [doc, 'op'],
    [doc, 'load'],
    [doc, 'nothing pending'],
  ]);
}

// A bare socket speaking the protocol by hand, for frames a real client never sends.
class RawClient {
  constructor(url, name) {
    this.name = name;
    this.inbox = [];
    this.waiters = [];
    this.closed = false;
    this.closeInfo = null;
    this.ws = new WebSocket(url, {perMessageDeflate: false});
    this.opened = withTimeout(
      new Promise((resolve, reject) => {
        this.ws.once('open', resolve);
        this.ws.once('error', reject);
      }),
      `${name} opens a WebSocket`,
    );
    this.ws.on('message', (data) => {
      const message = JSON.parse(data.toString('utf8'));
      this.inbox.push(message);
      this._wake();
    });
    this.ws.on('close', (code, reason) => {
      this.closed = true;
      this.closeInfo = {code, reason: reason.toString()};
      this._wake();
    });
    this.ws.on('error', () => {});
  }

  _wake() {
    const waiters = this.waiters;
    this.waiters = [];
    for (const fn of waiters) fn();
  }

  send(message) {
    this.ws.send(typeof message === 'string' ? message : JSON.stringify(message));
  }

  // Take the first received frame matching `predicate`, waiting for it if needed.
  next(predicate, what) {
    return withTimeout(
      new Promise((resolve, reject) => {
        const look = () => {
          const i = this.inbox.findIndex(predicate);
          if (i >= 0) return resolve(this.inbox.splice(i, 1)[0]);
          if (this.closed) {
            return reject(new ConformanceError(
              `${this.name}: socket closed (${JSON.stringify(this.closeInfo)}) while waiting for ${what}`,
            ));
          }
          this.waiters.push(look);
        };
        look();
      }),
      `${this.name}: ${what}`,
    );
  }

  async handshake() {
    this.send({a: 'hs', id: null, protocol: 1, protocolMinor: 2});
    const hs = await this.next((m) => m.a === 'hs', 'handshake reply');
    return hs;
  }

  async ping() {
    this.send({a: 'pp'});
    const reply = await this.next((m) => m.a === 'pp', 'pp reply');
    assertEqual(reply.error, undefined, `${this.name}: pp reply error`);
  }

  close() {
    this.ws.close();
  }
}

// ---------------------------------------------------------------------------------------------
// Scenarios

async function createFetch(scope) {
  const id = rid('create');
  const text = 'Hello, 世界 🌍! 𝄞 👩‍👩‍👧';
  const a = await scope.client('A');
  const docA = a.connection.get(COLLECTION, id);
  await call(docA, 'create', 'create is acknowledged', text, 'text-unicode');
  assertEqual(docA.version, 1, 'creator version after create');

  const b = await scope.client('B');
  const docB = b.connection.get(COLLECTION, id);
  await call(docB, 'fetch', 'B fetches the new doc');
  assertEqual(docB.type && docB.type.uri, TEXT_URI, 'fetched type');
  assertEqual(docB.data, text, 'fetched text');
  assertEqual(docB.version, 1, 'fetched version');

  // Created with the type's URI instead of its name.
  const byUri = rid('create-uri');
  const docU = a.connection.get(COLLECTION, byUri);
  await call(docU, 'create', 'create by type URI is acknowledged', 'by uri', TEXT_URI);
  assertEqual(await scope.serverSnapshot(byUri), {v: 1, type: TEXT_URI, data: 'by uri'}, 'doc created by URI');

  // A document nobody created: version 0, no type.
  const missing = b.connection.get(COLLECTION, rid('missing'));
  await call(missing, 'fetch', 'B fetches a doc that does not exist');
  assertEqual([missing.version, missing.type], [0, null], 'missing doc version and type');
}

function randomEdit(random, text) {
  const pieces = ['a', 'b', 'é', 'ß', '中', '文', '😀', '𝄞', '🌍', '👩‍👩‍👧', ' ', 'xyz'];
  const cps = codePoints(text);
  if (cps.length > 0 && random() < 0.4) {
    const pos = random.int(cps.length);
    const n = 1 + random.int(Math.min(4, cps.length - pos));
    const del = random() < 0.5 ? {d: n} : {d: cps.slice(pos, pos + n).join('')};
    return pos > 0 ? [pos, del] : [del];
  }
  const pos = random.int(cps.length + 1);
  let insert = '';
  const k = 1 + random.int(3);
  for (let i = 0; i < k; i++) insert += random.pick(pieces);
  return pos > 0 ? [pos, insert] : [insert];
}

async function concurrentEdits(scope, {random}) {
  const id = rid('concurrent');
  const clients = [await scope.client('A'), await scope.client('B'), await scope.client('C')];
  const docs = clients.map((c) => c.connection.get(COLLECTION, id));
  await call(docs[0], 'create', 'create', 'The quick 🦊 jumps over the lazy 🐶.', 'text-unicode');
  await Promise.all(docs.map((d, i) => call(d, 'subscribe', `${clients[i].name} subscribes`)));

  // An ack at a later version than the op was sent at means the server transformed that op.
  let transformed = 0;
  for (const client of clients) {
    const sentAt = new Map();
    client.connection.on('send', (m) => m.a === 'op' && m.op && sentAt.set(m.seq, m.v));
    client.connection.on('receive', ({data: m}) => {
      if (m.a === 'op' && m.d === id && m.src === client.connection.id && !m.op && !m.error) {
        if (m.v > sentAt.get(m.seq)) transformed++;
      }
    });
  }

  const rounds = 60;
  const acks = [];
  for (let round = 0; round < rounds; round++) {
    // Every client edits its own current view before hearing the others' edits of this round.
    for (const doc of docs) {
      const edits = 1 + random.int(3);
      for (let e = 0; e < edits; e++) {
        const op = randomEdit(random, doc.data);
        acks.push(submit(doc, op, `ack of ${JSON.stringify(op)}`));
      }
    }
    // Let frames move (one macrotask), so later rounds overlap earlier acks and broadcasts.
    await new Promise((resolve) => setImmediate(resolve));
  }
  await withTimeout(Promise.all(acks), 'every submitted op is acknowledged', WAIT_MS * 3);
  await Promise.all(clients.map(nothingPending));

  const server = await scope.serverSnapshot(id);
  await Promise.all(docs.map((d, i) => reachVersion(d, server.v, clients[i].name)));
  docs.forEach((d, i) => assertEqual(d.data, server.data, `${clients[i].name}'s text equals the server's`));
  assertTrue(server.data.isWellFormed(), 'server text has no split surrogate pair');
  assertTrue(transformed >= 2, `the server transformed concurrent ops (${transformed} acks after a transform)`);
}

// Clients A and B, both subscribed to a new document that A created with `text`.
async function twoSubscribed(scope, prefix, text) {
  const id = rid(prefix);
  const a = await scope.client('A');
  const b = await scope.client('B');
  const docA = a.connection.get(COLLECTION, id);
  const docB = b.connection.get(COLLECTION, id);
  await call(docA, 'create', 'create', text, 'text-unicode');
  await call(docA, 'subscribe', 'A subscribes');
  await call(docB, 'subscribe', 'B subscribes');
  return {id, a, b, docA, docB};
}

async function offlineReconnect(scope) {
  const {id, a, b, docA, docB} = await twoSubscribed(scope, 'offline', 'start 🚀');

  // A's markers go at the end of its text and B only inserts at 0, so no edit splits a marker.
  const markers = ['⟦m1✓⟧', '⟦m2😀⟧', '⟦m3⟧', '⟦m4𝄞⟧'];
  const appendAt = (doc, s) => [codePoints(doc.data).length, s];

  // m1 reaches the server, but its ack never reaches A.
  a.socket.dropIncoming = true;
  const ackedM1 = submit(docA, appendAt(docA, markers[0]), 'm1 acknowledged after the reconnect');
  const src = a.connection.id;
  const lostAck = await a.socket.nextDropped(
    (m) => m.a === 'op' && m.d === id && m.src === src && !m.error && !m.op,
    'the server acknowledges m1 (ack dropped before A sees it)',
  );
  const firstSeq = lostAck.seq;
  assertTrue(docA.inflightOp && docA.inflightOp.seq === firstSeq, 'm1 is still in flight for A');
  const ackedM2 = submit(docA, appendAt(docA, markers[1]), 'm2 acknowledged');

  // The connection fails; A keeps editing offline while B edits online.
  a.socket.cut();
  await until('A notices it is offline', () => a.connection.state === 'disconnected', [[a.connection, 'state']]);
  const ackedM3 = submit(docA, appendAt(docA, markers[2]), 'm3 acknowledged');
  const ackedM4 = submit(docA, appendAt(docA, markers[3]), 'm4 acknowledged');
  await submit(docB, ['B1 '], 'B1 acknowledged');
  await submit(docB, ['B2 '], 'B2 acknowledged');

  // Same Connection, new socket: the handshake carries A's old id, m1 is resent with (src, seq).
  const socket = await scope.reconnect(a);
  assertEqual(a.connection.id, src, 'A keeps its connection id (src) across the reconnect');
  await withTimeout(Promise.all([ackedM1, ackedM2, ackedM3, ackedM4]), 'A\'s ops are acknowledged');
  await Promise.all([nothingPending(a), nothingPending(b)]);
  const resent = socket.sent.find((m) => m.a === 'op' && m.seq === firstSeq);
  assertTrue(resent && resent.src === src, 'A resent m1 with its src and seq after reconnecting');

  const server = await scope.serverSnapshot(id);
  await reachVersion(docA, server.v, 'A');
  await reachVersion(docB, server.v, 'B');
  for (const m of markers) assertEqual(count(server.data, m), 1, `occurrences of ${m} in the server text`);
  assertEqual(count(server.data, 'B1 ') + count(server.data, 'B2 '), 2, 'B\'s edits applied once');
  assertEqual(docA.data, server.data, 'A\'s text equals the server\'s');
  assertEqual(docB.data, server.data, 'B\'s text equals the server\'s');
  assertTrue(server.data.startsWith('B2 B1 start 🚀'), `B's inserts precede the original text: ${server.data}`);
}

async function bulkResubscribe(scope) {
  const ids = [rid('bulk'), rid('bulk'), rid('bulk')];
  const a = await scope.client('A');
  const b = await scope.client('B');
  const docsB = ids.map((id) => b.connection.get(COLLECTION, id));
  await Promise.all(docsB.map((d, i) => call(d, 'create', `create ${i}`, `doc ${i} ✨`, 'text-unicode')));
  const docsA = ids.map((id) => a.connection.get(COLLECTION, id));
  await Promise.all(docsA.map((d, i) => call(d, 'subscribe', `A subscribes to doc ${i}`)));
  await Promise.all(docsB.map((d, i) => call(d, 'subscribe', `B subscribes to doc ${i}`)));

  a.socket.cut();
  await until('A notices it is offline', () => a.connection.state === 'disconnected', [[a.connection, 'state']]);
  for (const [i, d] of docsB.entries()) {
    await submit(d, [`missed ${i}a 🎯 `], `B edits doc ${i}`);
    await submit(d, [codePoints(d.data).length, ` missed ${i}b`], `B edits doc ${i} again`);
  }

  const socket = await scope.reconnect(a);
  const bulk = socket.sent.find((m) => m.a === 'bs');
  assertTrue(bulk, `A resubscribed with one bulk 'bs' (sent: ${JSON.stringify(socket.sent.map((m) => m.a))})`);
  assertEqual(Object.keys(bulk.b).sort(), [...ids].sort(), 'docs in the bulk resubscribe');
  for (const [i, id] of ids.entries()) {
    const server = await scope.serverSnapshot(id);
    await reachVersion(docsA[i], server.v, `A's doc ${i}`);
    assertEqual(docsA[i].data, server.data, `A caught up on doc ${i}`);
    assertEqual(server.v, 3, `doc ${i} version`);
  }
  await until('A is subscribed again to every doc', () => docsA.every((d) => d.subscribed), [
    ...docsA.map((d) => [d, 'nothing pending']),
  ]);

  // Live again: a new edit from B reaches A without a fetch.
  await submit(docsB[0], ['live '], 'B edits after the reconnect');
  await reachVersion(docsA[0], 4, 'A\'s doc 0');
  assertTrue(docsA[0].data.startsWith('live missed 0a'), `A sees the live edit: ${docsA[0].data}`);
}

async function clockTick() {
  // Wait for the wall clock to pass the current millisecond, so timestamps fall strictly between
  // two ops. A timestamp boundary, not synchronisation: nothing else is waited for here.
  const start = Date.now();
  while (Date.now() <= start) await new Promise((resolve) => setImmediate(resolve));
}

async function snapshots(scope, {notes}) {
  const id = rid('snapshot');
  const a = await scope.client('A');
  const doc = a.connection.get(COLLECTION, id);
  const t0 = Date.now();
  await clockTick();
  await call(doc, 'create', 'create', 'alpha', 'text-unicode');
  const t1 = Date.now();
  await clockTick();
  await submit(doc, [5, ' beta']);
  const t2 = Date.now();
  await clockTick();
  await submit(doc, [10, ' 𝄞 gamma']);

  const byVersion = (v) => call(a.connection, 'fetchSnapshot', `snapshot at v${v}`, COLLECTION, id, v);
  const byTime = (ts) => call(a.connection, 'fetchSnapshotByTimestamp', `snapshot at ts ${ts}`, COLLECTION, id, ts);
  const pick = (s) => ({v: s.v, type: s.type, data: s.type ? s.data : null});

  assertEqual(pick(await byVersion(0)), {v: 0, type: null, data: null}, 'snapshot v0');
  assertEqual(pick(await byVersion(1)), {v: 1, type: TEXT_URI, data: 'alpha'}, 'snapshot v1');
  assertEqual(pick(await byVersion(2)), {v: 2, type: TEXT_URI, data: 'alpha beta'}, 'snapshot v2');
  assertEqual(pick(await byVersion(3)), {v: 3, type: TEXT_URI, data: 'alpha beta 𝄞 gamma'}, 'snapshot v3');
  assertEqual(pick(await byVersion(null)), {v: 3, type: TEXT_URI, data: 'alpha beta 𝄞 gamma'}, 'latest snapshot');
  let error = null;
  try {
    await byVersion(9);
  } catch (err) {
    error = err;
  }
  // ShareDB's MemoryDB answers this with a code-less "Missing ops" error; mailslot uses the code.
  assertTrue(error, 'a snapshot past the last version is an error');
  if (error.code !== 'ERR_OP_VERSION_NEWER_THAN_CURRENT_SNAPSHOT') {
    assertEqual(error.code, undefined, 'code of the error for a snapshot past the last version');
    notes.push(`snapshot past the last version: error without a code (${error.message})`);
  }

  assertEqual(pick(await byTime(t0)), {v: 0, type: null, data: null}, 'snapshot before the create');
  assertEqual(pick(await byTime(t1)), {v: 1, type: TEXT_URI, data: 'alpha'}, 'snapshot after the create');
  assertEqual(pick(await byTime(t2)), {v: 2, type: TEXT_URI, data: 'alpha beta'}, 'snapshot after one edit');
  assertEqual(pick(await byTime(null)), {v: 3, type: TEXT_URI, data: 'alpha beta 𝄞 gamma'}, 'snapshot by time, latest');
}

async function errorsRollback(scope, {notes}) {
  const raw = await scope.raw('raw');
  const hs = await raw.handshake();
  assertEqual([hs.protocol, hs.type], [1, JSON0_URI], 'handshake reply protocol and type');
  assertTrue(typeof hs.id === 'string' && hs.id.length > 0, `handshake id is a string: ${JSON.stringify(hs.id)}`);
  await raw.ping();

  let seq = 1;
  const opError = async (message, expected, what) => {
    const frame = Object.assign({a: 'op', c: COLLECTION, seq: seq++}, message);
    raw.send(frame);
    const reply = await raw.next((m) => m.a === 'op' && m.d === frame.d && m.seq === frame.seq, `reply to ${what}`);
    assertTrue(reply.error, `${what} is rejected (reply ${JSON.stringify(reply)})`);
    assertTrue(expected.includes(reply.error.code), `${what}: code ${reply.error.code}, expected one of ${expected}`);
    assertTrue(typeof reply.error.message === 'string', `${what}: error has a message`);
    if (expected.length > 1) notes.push(`${what}: ${reply.error.code}`);
    return reply;
  };

  await opError({d: rid('nodoc'), v: 0, op: ['x']}, ['ERR_DOC_DOES_NOT_EXIST'], 'an op on a doc that does not exist');
  await opError({d: rid('bad'), v: 0, create: {data: 'x'}}, ['ERR_OT_OP_BADLY_FORMED'], 'a create without a type');
  await opError(
    {d: rid('bad'), v: 0, create: {type: 'no-such-type', data: 'x'}},
    ['ERR_UNKNOWN_TYPE', 'ERR_DOC_TYPE_NOT_RECOGNIZED', 'ERR_OT_OP_BADLY_FORMED'],
    'a create with an unknown type',
  );

  const id = rid('errors');
  raw.send({a: 'op', c: COLLECTION, d: id, v: 0, seq: seq++, create: {type: 'text-unicode', data: 'héllo 😀'}});
  const created = await raw.next((m) => m.a === 'op' && m.d === id, 'ack of a create by type name');
  assertEqual(created.error, undefined, 'create by type name');
  const malformed = ['ERR_OT_OP_BADLY_FORMED', 'ERR_OT_OP_NOT_APPLIED'];
  await opError({d: id, v: 1, op: [2, {x: 1}]}, malformed, 'an op with a malformed component');
  await opError({d: id, v: 1, op: ['a', 3]}, malformed, 'an op with a trailing skip');
  await opError({d: id, v: 1, op: [20, 'far']}, malformed, 'an op past the end of the text');
  await opError({d: id, v: 99, op: ['x']}, ['ERR_OP_VERSION_NEWER_THAN_CURRENT_SNAPSHOT'], 'an op from the future');
  raw.send({a: 'f', c: COLLECTION, d: id});
  const fetched = await raw.next((m) => m.a === 'f' && m.d === id, 'fetch reply');
  assertEqual(fetched.data, {v: 1, type: TEXT_URI, data: 'héllo 😀'}, 'doc unchanged by rejected ops');

  raw.send('{"a": "op", this is not json');
  const badJson = await raw.next((m) => m.error, 'error reply to a frame that is not JSON');
  assertTrue(typeof badJson.error.code === 'string', `error reply has a code: ${JSON.stringify(badJson)}`);
  raw.send({a: 'zz-unknown', c: COLLECTION, d: id});
  const unknown = await raw.next((m) => m.error, 'error reply to an unknown action');
  assertEqual(unknown.a, 'zz-unknown', 'error reply echoes the unknown action');
  assertTrue(typeof unknown.error.code === 'string', 'unknown action error has a code');
  await raw.ping();
  assertTrue(!raw.closed, 'socket stays open after bad frames');

  // A real client whose op the server rejects rolls back to the server's state.
  const server = await scope.client('A');
  const docS = server.connection.get(COLLECTION, rid('rollback'));
  await call(docS, 'create', 'create', 'server text 🧾', 'text-unicode');
  const b = await scope.client('B');
  const docB = b.connection.get(COLLECTION, docS.id);
  let rejected = null;
  try {
    await call(docB, 'create', 'B\'s conflicting create is answered', 'client text', 'text-unicode');
  } catch (err) {
    rejected = err;
  }
  assertEqual(rejected && rejected.code, 'ERR_DOC_ALREADY_CREATED', 'conflicting create error code');
  assertEqual([docB.version, docB.data], [1, 'server text 🧾'], 'B rolled back to the server state');
  await call(docB, 'subscribe', 'B subscribes after the rollback');
  await submit(docB, [codePoints(docB.data).length, ' + B'], 'B edits after the rollback');
  assertEqual(await scope.serverSnapshot(docS.id), {v: 2, type: TEXT_URI, data: 'server text 🧾 + B'}, 'server text after B\'s edit');
}

async function presence(scope) {
  const {id, a, b, docA, docB} = await twoSubscribed(scope, 'presence', 'hello world 🌐');
  const channel = `${COLLECTION}.${id}`;

  // A raw watcher sees exactly what the server broadcasts.
  const watcher = await scope.raw('watcher');
  await watcher.handshake();
  watcher.send({a: 'ps', ch: channel, seq: 1});
  const psReply = await watcher.next((m) => m.a === 'ps', 'presence subscribe reply');
  assertEqual([psReply.ch, psReply.seq, psReply.error], [channel, 1, undefined], 'ps reply');

  const presenceA = a.connection.getDocPresence(COLLECTION, id);
  const presenceB = b.connection.getDocPresence(COLLECTION, id);
  await call(presenceA, 'subscribe', 'A subscribes to presence');
  await call(presenceB, 'subscribe', 'B subscribes to presence');
  const localA = presenceA.create(rid('pa'));
  const seenByB = () => presenceB.remotePresences[localA.presenceId];

  await call(localA, 'submit', 'A\'s presence is acknowledged', {index: 2, length: 3});
  await until('B receives A\'s presence', () => stable(seenByB()) === '{"index":2,"length":3}', [[presenceB, 'receive']]);
  const broadcast = await watcher.next((m) => m.a === 'p' && m.id === localA.presenceId, 'A\'s presence broadcast');
  assertEqual([broadcast.ch, broadcast.p, broadcast.c, broadcast.d, broadcast.v], [channel, {index: 2, length: 3}, COLLECTION, id, 1], 'broadcast presence');
  assertTrue(typeof broadcast.src === 'string', 'broadcast presence carries the sender\'s src');

  // A late joiner asks for everyone's presence (pr) and gets A's.
  const c = await scope.client('C');
  const docC = c.connection.get(COLLECTION, id);
  await call(docC, 'subscribe', 'C subscribes');
  const presenceC = c.connection.getDocPresence(COLLECTION, id);
  await call(presenceC, 'subscribe', 'C subscribes to presence');
  await until('C receives A\'s presence after asking', () => {
    const value = presenceC.remotePresences[localA.presenceId];
    return stable(value) === '{"index":2,"length":3}';
  }, [[presenceC, 'receive']]);

  // The doc moves on to v2; a presence sent against v1 arrives moved past the insert.
  await submit(docB, ['ABC '], 'B inserts at 0');
  await reachVersion(docA, 2, 'A');
  const stale = rid('stale');
  const sender = await scope.raw('sender');
  await sender.handshake();
  sender.send({a: 'p', ch: channel, id: stale, p: {index: 6, length: 5}, pv: 0, c: COLLECTION, d: id, v: 1, t: TEXT_URI});
  const staleAck = await sender.next((m) => m.a === 'p' && m.id === stale, 'the sender\'s copy of its presence');
  assertEqual(staleAck.error, undefined, 'stale presence accepted');
  const moved = await watcher.next((m) => m.a === 'p' && m.id === stale, 'the stale presence broadcast');
  assertEqual([moved.p, moved.v], [{index: 10, length: 5}, 2], 'stale presence transformed to v2');
  await until('B receives the stale presence transformed', () => {
    return stable(presenceB.remotePresences[stale]) === '{"index":10,"length":5}';
  }, [[presenceB, 'receive']]);

  // A leaves: everyone else hears null for its presence.
  a.socket.cut();
  await until('B hears A\'s presence leave', () => !(localA.presenceId in presenceB.remotePresences), [[presenceB, 'receive']]);
  const gone = await watcher.next((m) => m.a === 'p' && m.id === localA.presenceId && m.p === null, 'null presence for A');
  assertEqual(gone.ch, channel, 'null presence channel');
}

const SCENARIOS = [
  ['create_fetch', createFetch],
  ['concurrent_edits', concurrentEdits],
  ['offline_reconnect', offlineReconnect],
  ['bulk_resubscribe', bulkResubscribe],
  ['snapshots', snapshots],
  ['errors_rollback', errorsRollback],
  ['presence', presence],
];

// ---------------------------------------------------------------------------------------------

async function runScenario(url, name, fn, seed) {
  const scope = new Scope(url);
  const started = Date.now();
  const notes = [];
  try {
    await withTimeout(fn(scope, {random: makeRandom(seed), notes}), `scenario ${name}`, WAIT_MS * 6);
    return {name, ok: true, error: null, ms: Date.now() - started, notes};
  } catch (err) {
    const message = err instanceof ConformanceError ? err.message : (err && (err.stack || String(err)));
    const code = err && err.code ? ` [${err.code}]` : '';
    return {name, ok: false, error: `${message}${code} (seed ${seed})`, ms: Date.now() - started, notes};
  } finally {
    scope.close();
  }
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  TIMEOUT_SCALE = args.timeoutScale;
  const known = new Set(SCENARIOS.map(([name]) => name));
  for (const name of [...args.skip, ...(args.only || [])]) {
    if (!known.has(name)) usage(`unknown scenario ${name}; known: ${[...known].join(', ')}`);
  }
  let failed = 0;
  for (const [name, fn] of SCENARIOS) {
    if (args.skip.has(name) || (args.only && !args.only.has(name))) {
      process.stdout.write(`${JSON.stringify({name, ok: true, skipped: true, error: null})}\n`);
      continue;
    }
    const result = await runScenario(args.url, name, fn, args.seed);
    if (!result.ok) failed++;
    if (result.notes.length === 0) delete result.notes;
    process.stdout.write(`${JSON.stringify(result)}\n`);
  }
  process.exit(failed ? 1 : 0);
}

process.on('unhandledRejection', () => {});
main().catch((err) => {
  process.stderr.write(`conformance: ${err && err.stack}\n`);
  process.exit(2);
});
