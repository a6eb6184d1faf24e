#!/usr/bin/env node
'use strict';
// Load generator for `mailslot bench collab`: K WebSocket clients editing D text documents over
// ShareDB's protocol, against mailslot or the ShareDB peer (bench/sharedb_server.js).
//
//   node bench/collab_load.js --url ws://127.0.0.1:PORT/ws --clients 64 --docs 1
//        --mode typing|closed [--rate 5] [--duration 10] [--warmup 2] [--drain 5]
//        [--watchers N] [--stop-reading N] [--client raw|sharedb] [--events]
//
// Prints one JSON object (the result) on stdout; with --events, also one line per phase first
// ({"event":"ready"|"measure_start"|"measure_end"}) so a harness can sample the server at the
// window's edges.
//
// Workload. Every subscription slot j (j < max(K, s*D), s = max(2, floor(K/D))) puts client
// j % K on document j % D, so each document has at least two subscribers (a remote party to see
// each edit) and each client at least one document. Each edit inserts a unique ASCII marker
// "#<id base 36>;" at a random position inside the initial text's length (always valid, since
// documents only grow) of one of the client's documents, round robin. Like the real client, a
// client has at most one op in flight per document; edits made meanwhile are queued and sent as
// one insert when the ack comes. `typing`: each client makes `rate` edits per second, evenly
// spaced from a random phase (an edit's clock starts when it is made, queued or not). `closed`:
// each client keeps exactly one edit outstanding and makes the next when it is acknowledged.
//
// Measurement. Edits made during the window [warmup, warmup + duration) are measured. An edit is
// committed when acked; "edit-to-remote-visibility" is the time from making it to each other
// subscriber receiving an op containing its marker (one process, one monotonic clock); `ack_ms`
// is from making it to its author receiving the ack (queueing behind an op in flight included).
// After the window no new edits are made, and the generator waits up to --drain seconds for
// outstanding acks and deliveries before counting what is missing. `messages_in` counts the
// useful frames the server sent during the window: acks, ops the client had not seen yet, error
// replies; `frames_in` counts every frame, including duplicate ops (ShareDB sends an author the
// ops it missed before its ack, and then again through the subscription). The harness divides the
// server's CPU time over the same window by `messages_in`.
//
// --watchers N: N more clients, subscribed to every document, that never edit (they receive
// every op: the most traffic per socket the workload can make).
//
// --stop-reading N: N more watchers that, at the window's start, stop reading their sockets (the
// TCP socket is paused), as a stalled browser tab does; the server keeps sending to them. They are
// left out of the expected deliveries. The harness compares the server's RSS growth with a run
// where as many watchers keep reading (--watchers N). The kernel holds a few MB per stalled
// socket before the server has to, so the run needs enough ops per second and seconds for that.
//
// --client raw (default) speaks the protocol with a bare `ws` socket per client; --client sharedb
// drives the real sharedb client (a Connection + Doc per client and document) instead. The raw
// client spends far less CPU per frame than the real one (which applies every remote op to its
// copy of the text), so on a 2-core machine the generator stays further from being the bottleneck;
// `generator_cpu` in the result says how busy the generator was.

const path = require('path');
const crypto = require('crypto');
const {createRequire} = require('module');

const jsRequire = createRequire(path.resolve(__dirname, '..', 'js', 'package.json'));
const WebSocket = jsRequire('ws');

const COLLECTION = 'docs';
const TEXT_URI = 'http://sharejs.org/types/text-unicode';
const INITIAL = 'The quick brown fox jumps over the lazy dog while the cat sleeps.';
const INITIAL_LENGTH = INITIAL.length; // ASCII: code points == UTF-16 units
const MARKER = /#([0-9a-z]+);/g;

function usage(message) {
  process.stderr.write(`collab_load: ${message}\n`);
  process.exit(2);
}

function parseArgs(argv) {
  const args = {
    url: null, clients: 16, docs: 1, mode: 'typing', rate: 5, duration: 10, warmup: 2, drain: 5,
    stopReading: 0, watchers: 0, client: 'raw', events: false, connectTimeout: 30,
  };
  const numbers = {
    '--clients': 'clients', '--docs': 'docs', '--rate': 'rate', '--duration': 'duration',
    '--warmup': 'warmup', '--drain': 'drain', '--stop-reading': 'stopReading',
    '--connect-timeout': 'connectTimeout', '--watchers': 'watchers',
  };
  for (let i = 0; i < argv.length; i++) {
    const name = argv[i];
    if (name === '--events') {
      args.events = true;
      continue;
    }
    const value = argv[++i];
    if (value === undefined) usage(`${name} needs a value`);
    if (name === '--url') args.url = value;
    else if (name === '--mode') args.mode = value;
    else if (name === '--client') args.client = value;
    else if (numbers[name]) {
      const n = Number(value);
      if (!Number.isFinite(n) || n < 0) usage(`${name} must be a non-negative number, got ${value}`);
      args[numbers[name]] = n;
    } else usage(`unknown argument ${name}`);
  }
  if (!args.url || !/^wss?:\/\//.test(args.url)) usage('--url ws://HOST:PORT/ws is required');
  if (!['typing', 'closed'].includes(args.mode)) usage('--mode must be typing or closed');
  if (!['raw', 'sharedb'].includes(args.client)) usage('--client must be raw or sharedb');
  for (const key of ['clients', 'docs', 'stopReading', 'watchers']) {
    if (!Number.isInteger(args[key])) usage(`--${key} must be an integer`);
  }
  if (args.clients < 2) usage('--clients must be at least 2');
  if (args.docs < 1) usage('--docs must be at least 1');
  if (args.duration <= 0) usage('--duration must be positive');
  if (args.mode === 'typing' && !(args.rate > 0)) usage('--rate must be positive');
  return args;
}

const nowMs = () => Number(process.hrtime.bigint()) / 1e6;

// Growable Float64Array / typed counters indexed by edit id.
class Column {
  constructor(Type, size = 1 << 14) {
    this.Type = Type;
    this.data = new Type(size);
  }

  ensure(index) {
    if (index < this.data.length) return;
    let size = this.data.length;
    while (size <= index) size *= 2;
    const bigger = new this.Type(size);
    bigger.set(this.data);
    this.data = bigger;
  }
}

// What every client reports into: one per process.
class Stats {
  constructor() {
    this.nextEdit = 0;
    this.madeAt = new Column(Float64Array); // ms, per edit id
    this.measured = new Column(Uint8Array); // 1 if made inside the window
    this.docOf = new Column(Int32Array);
    this.seen = new Column(Uint16Array); // remote deliveries per edit id
    this.latencies = new Column(Float64Array);
    this.latencyCount = 0;
    this.ackLatencies = new Column(Float64Array); // made -> acknowledged, measured edits

    this.measuring = false;
    this.generating = true;
    this.sent = 0; // measured edits made
    this.acked = 0; // measured edits acknowledged
    this.rejected = 0;
    this.deliveries = 0; // remote deliveries of measured edits
    this.framesIn = 0; // frames received while measuring
    this.messagesIn = 0; // of those: acks, first deliveries of ops, error replies (not duplicates)
    this.framesTotal = 0;
    this.gaps = 0;
    this.duplicates = 0;
    this.errors = 0;
    this.errorSamples = [];
    this.pendingAcks = 0; // measured edits not yet acknowledged or rejected
    this.expected = 0; // remote deliveries due for the measured edits acknowledged so far
    this.readingSubs = null; // per doc: subscribers that read their socket
  }

  newEdit(docIndex) {
    const id = this.nextEdit++;
    this.madeAt.ensure(id);
    this.measured.ensure(id);
    this.docOf.ensure(id);
    this.seen.ensure(id);
    this.madeAt.data[id] = nowMs();
    this.docOf.data[id] = docIndex;
    if (this.measuring) {
      this.measured.data[id] = 1;
      this.sent++;
      this.pendingAcks++;
    }
    return id;
  }

  ack(ids) {
    const at = nowMs();
    for (const id of ids) {
      if (this.measured.data[id]) {
        this.ackLatencies.ensure(this.acked);
        this.ackLatencies.data[this.acked] = at - this.madeAt.data[id];
        this.acked++;
        this.pendingAcks--;
        // Every reading subscriber but the author (an editor, who reads).
        this.expected += Math.max(0, this.readingSubs[this.docOf.data[id]] - 1);
      }
    }
  }

  reject(ids, message) {
    this.error(message);
    for (const id of ids) {
      if (this.measured.data[id]) {
        this.rejected++;
        this.pendingAcks--;
      }
    }
  }

  error(message) {
    this.errors++;
    if (this.errorSamples.length < 5) this.errorSamples.push(String(message).slice(0, 300));
  }

  delivered(text, at) {
    MARKER.lastIndex = 0;
    let match;
    while ((match = MARKER.exec(text)) !== null) {
      const id = parseInt(match[1], 36);
      if (id >= this.nextEdit || !this.measured.data[id]) continue;
      this.seen.data[id]++;
      this.deliveries++;
      const i = this.latencyCount++;
      this.latencies.ensure(i);
      this.latencies.data[i] = at - this.madeAt.data[id];
    }
  }
}

const marker = (id) => `#${id.toString(36)};`;
const editOp = (pos, text) => (pos > 0 ? [pos, text] : [text]);

// A client over a bare WebSocket.
class RawClient {
  constructor(index, url, stats, random) {
    this.index = index;
    this.url = url;
    this.stats = stats;
    this.random = random;
    this.src = null;
    this.seq = 1;
    this.docs = new Map(); // doc id -> state
    this.order = []; // doc states, round robin
    this.turn = 0;
    this.reading = true;
    this.active = true;
    this.onAck = null; // closed-loop hook
    this.waiting = new Map(); // doc id -> resolve of a subscribe
  }

  connect() {
    this.ws = new WebSocket(this.url, {perMessageDeflate: false});
    this.ws.on('message', (data) => this._receive(data));
    this.ws.on('error', (err) => this.stats.error(`client ${this.index}: ${err.message}`));
    this.ws.on('close', () => {
      if (this.active) this.stats.error(`client ${this.index}: socket closed by the server`);
    });
    return new Promise((resolve, reject) => {
      this._handshake = resolve;
      this.ws.once('error', reject);
      this.ws.once('open', () => this._send({a: 'hs', id: null, protocol: 1, protocolMinor: 2}));
    });
  }

  subscribe(docs) {
    return Promise.all(docs.map(({id, index}) => new Promise((resolve) => {
      const state = {id, index, version: null, inflight: null, queue: []};
      this.docs.set(id, state);
      this.order.push(state);
      this.waiting.set(id, resolve);
      this._send({a: 's', c: COLLECTION, d: id});
    })));
  }

  _send(message) {
    this.ws.send(JSON.stringify(message));
  }

  nextDoc() {
    const doc = this.order[this.turn];
    this.turn = (this.turn + 1) % this.order.length;
    return doc;
  }

  // Make an edit now: send it, or queue it behind the op in flight on that document.
  edit() {
    const doc = this.nextDoc();
    const id = this.stats.newEdit(doc.index);
    doc.queue.push(id);
    if (!doc.inflight) this._flush(doc);
  }

  _flush(doc) {
    if (doc.queue.length === 0 || !this.active) return;
    const ids = doc.queue;
    doc.queue = [];
    const pos = Math.floor(this.random() * (INITIAL_LENGTH + 1));
    const text = ids.map(marker).join('');
    doc.inflight = {seq: this.seq++, ids};
    this._send({
      a: 'op', c: COLLECTION, d: doc.id, v: doc.version, seq: doc.inflight.seq, x: {},
      op: editOp(pos, text),
    });
  }

  _receive(data) {
    const at = nowMs();
    const stats = this.stats;
    stats.framesTotal++;
    if (stats.measuring) stats.framesIn++;
    const text = typeof data === 'string' ? data : data.toString('utf8');
    let m;
    try {
      m = JSON.parse(text);
    } catch (err) {
      stats.error(`client ${this.index}: frame is not JSON: ${text.slice(0, 80)}`);
      return;
    }
    if (m.a === 'op') {
      const doc = this.docs.get(m.d);
      if (!doc) return;
      if (m.error) {
        if (stats.measuring) stats.messagesIn++;
        if (doc.inflight && m.seq === doc.inflight.seq) {
          const ids = doc.inflight.ids;
          doc.inflight = null;
          stats.reject(ids, `op rejected: ${JSON.stringify(m.error)}`);
          this._flush(doc);
          if (this.onAck) this.onAck(this);
        } else {
          stats.error(`op error: ${JSON.stringify(m.error)}`);
        }
        return;
      }
      if (m.op === undefined) {
        if (doc.inflight && m.seq === doc.inflight.seq && m.src === this.src) {
          if (stats.measuring) stats.messagesIn++;
          doc.version = m.v + 1;
          const ids = doc.inflight.ids;
          doc.inflight = null;
          stats.ack(ids);
          this._flush(doc);
          if (this.onAck) this.onAck(this);
        }
        return;
      }
      if (doc.version !== null && m.v < doc.version) {
        stats.duplicates++;
        return;
      }
      if (doc.version !== null && m.v > doc.version) stats.gaps++;
      if (stats.measuring) stats.messagesIn++;
      doc.version = m.v + 1;
      for (const c of m.op) if (typeof c === 'string') stats.delivered(c, at);
    } else if (m.a === 's') {
      const doc = this.docs.get(m.d);
      const resolve = this.waiting.get(m.d);
      if (!doc || !resolve) return;
      this.waiting.delete(m.d);
      if (m.error || !m.data || m.data.type !== TEXT_URI) {
        stats.error(`subscribe ${m.d}: ${JSON.stringify(m.error || m.data)}`);
      } else {
        doc.version = m.data.v;
      }
      resolve();
    } else if (m.a === 'hs') {
      this.src = m.id;
      if (this._handshake) this._handshake();
      this._handshake = null;
    } else if (m.error) {
      stats.error(`client ${this.index}: ${JSON.stringify(m)}`);
    }
  }

  stopReading() {
    this.active = false;
    this.reading = false;
    if (this.ws._socket) this.ws._socket.pause();
  }

  idle() {
    for (const doc of this.order) if (doc.inflight || doc.queue.length) return false;
    return true;
  }

  close() {
    this.active = false;
    this.ws.terminate();
  }
}

// The same client role played by the real sharedb client.
class SharedbClient {
  constructor(index, url, stats, random) {
    const {Connection, types, logger} = jsRequire('sharedb/lib/client');
    types.register(jsRequire('./text-unicode-presence.js'));
    logger.setMethods({info: () => {}, warn: () => {}});
    this.Connection = Connection;
    this.index = index;
    this.url = url;
    this.stats = stats;
    this.random = random;
    this.order = [];
    this.turn = 0;
    this.active = true;
    this.onAck = null;
    this.outstanding = 0;
  }

  connect() {
    this.ws = new WebSocket(this.url, {perMessageDeflate: false});
    this.connection = new this.Connection(this.ws);
    this.connection.on('error', (err) => this.stats.error(`client ${this.index}: ${err.message}`));
    // The real client does not say which frames it ignored: every frame counts as a message.
    this.connection.on('receive', () => {
      this.stats.framesTotal++;
      if (this.stats.measuring) {
        this.stats.framesIn++;
        this.stats.messagesIn++;
      }
    });
    return new Promise((resolve) => {
      const check = (state) => state === 'connected' && (this.connection.off('state', check), resolve());
      this.connection.on('state', check);
      check(this.connection.state);
    });
  }

  subscribe(docs) {
    return Promise.all(docs.map(({id, index}) => new Promise((resolve) => {
      const doc = this.connection.get(COLLECTION, id);
      doc.index = index;
      this.order.push(doc);
      doc.on('op', (op, source) => {
        if (source) return;
        const at = nowMs();
        for (const c of op) if (typeof c === 'string') this.stats.delivered(c, at);
      });
      doc.subscribe((err) => {
        if (err) this.stats.error(`subscribe ${id}: ${err.message}`);
        resolve();
      });
    })));
  }

  edit() {
    const doc = this.order[this.turn];
    this.turn = (this.turn + 1) % this.order.length;
    const id = this.stats.newEdit(doc.index);
    const pos = Math.floor(this.random() * (INITIAL_LENGTH + 1));
    const text = marker(id);
    this.outstanding++;
    doc.submitOp(editOp(pos, text), (err) => {
      this.outstanding--;
      if (err) this.stats.reject([id], `op rejected: ${err.code} ${err.message}`);
      else this.stats.ack([id]);
      if (this.onAck && this.active) this.onAck(this);
    });
  }

  stopReading() {
    this.active = false;
    if (this.ws._socket) this.ws._socket.pause();
  }

  idle() {
    return this.outstanding === 0;
  }

  close() {
    this.active = false;
    this.ws.terminate();
  }
}

// Create the documents with a throwaway raw connection.
async function createDocs(url, ids) {
  const ws = new WebSocket(url, {perMessageDeflate: false});
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  const pending = new Map();
  ws.on('message', (data) => {
    const m = JSON.parse(data.toString('utf8'));
    if (m.a === 'op' && pending.has(m.seq)) {
      const {resolve, reject} = pending.get(m.seq);
      pending.delete(m.seq);
      if (m.error) reject(new Error(`create ${m.d}: ${JSON.stringify(m.error)}`));
      else resolve();
    }
  });
  ws.send(JSON.stringify({a: 'hs', id: null, protocol: 1, protocolMinor: 2}));
  await Promise.all(ids.map((id, i) => new Promise((resolve, reject) => {
    pending.set(i + 1, {resolve, reject});
    ws.send(JSON.stringify({a: 'op', c: COLLECTION, d: id, v: 0, seq: i + 1, create: {type: TEXT_URI, data: INITIAL}}));
  })));
  ws.close();
}

// Which documents each client subscribes to (see the header).
function assignments(clients, docs) {
  const perDoc = Math.max(2, Math.floor(clients / docs));
  const slots = Math.max(clients, perDoc * docs);
  const byClient = Array.from({length: clients}, () => new Set());
  for (let j = 0; j < slots; j++) byClient[j % clients].add(j % docs);
  return byClient.map((set) => [...set]);
}

function percentile(sorted, q) {
  if (sorted.length === 0) return null;
  const k = Math.max(0, Math.min(sorted.length - 1, Math.ceil((q / 100) * sorted.length) - 1));
  return sorted[k];
}

function withTimeout(promise, seconds, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${seconds} s: ${what}`)), seconds * 1000);
    }),
  ]).finally(() => clearTimeout(timer));
}

// Resolve when `predicate()` holds (checked every 5 ms) or after `seconds`: the drain at the
// end of a benchmark run, not a synchronisation point of a test.
function settle(predicate, seconds) {
  const deadline = nowMs() + seconds * 1000;
  return new Promise((resolve) => {
    const look = () => {
      if (predicate() || nowMs() >= deadline) return resolve(predicate());
      setTimeout(look, 5);
    };
    look();
  });
}

function makeRandom(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const emit = (event) => args.events && process.stdout.write(`${JSON.stringify({event})}\n`);
  const random = makeRandom(crypto.randomInt(2 ** 31));
  const stats = new Stats();
  const prefix = `load-${crypto.randomBytes(4).toString('hex')}`;
  const docIds = Array.from({length: args.docs}, (_, i) => `${prefix}-${i}`);
  // Editors first (plan from `assignments`), then the reading watchers, then the stalled ones.
  const everyDoc = docIds.map((_, d) => d);
  const plan = [
    ...assignments(args.clients, args.docs),
    ...Array.from({length: args.watchers + args.stopReading}, () => everyDoc),
  ];
  const Client = args.client === 'raw' ? RawClient : SharedbClient;

  await withTimeout(createDocs(args.url, docIds), args.connectTimeout, 'creating the documents');
  const clients = plan.map((_, i) => new Client(i, args.url, stats, random));
  await withTimeout(Promise.all(clients.map((c) => c.connect())), args.connectTimeout, 'connecting the clients');
  await withTimeout(
    Promise.all(clients.map((c, i) => c.subscribe(plan[i].map((d) => ({id: docIds[d], index: d}))))),
    args.connectTimeout,
    'subscribing',
  );
  const editors = clients.slice(0, args.clients);
  const readers = clients.slice(0, clients.length - args.stopReading);
  const stalled = clients.slice(clients.length - args.stopReading);
  // Expected remote deliveries of an edit on doc d: its reading subscribers except the author.
  stats.readingSubs = new Int32Array(args.docs);
  readers.forEach((c, i) => plan[i].forEach((d) => stats.readingSubs[d]++));
  emit('ready');

  const timers = [];
  if (args.mode === 'typing') {
    const interval = 1000 / args.rate;
    for (const client of editors) {
      const start = nowMs() + random() * interval;
      let n = 0;
      const tick = () => {
        if (!stats.generating || !client.active) return;
        client.edit();
        n++;
        timers.push(setTimeout(tick, Math.max(0, start + n * interval - nowMs())));
      };
      timers.push(setTimeout(tick, Math.max(0, start - nowMs())));
    }
  } else {
    for (const client of editors) {
      client.onAck = (c) => {
        if (stats.generating && c.active && c.idle()) c.edit();
      };
      client.edit();
    }
  }

  const cpuBefore = {at: 0, usage: null};
  await new Promise((resolve) => setTimeout(resolve, args.warmup * 1000));
  stats.measuring = true;
  for (const client of stalled) client.stopReading();
  cpuBefore.at = nowMs();
  cpuBefore.usage = process.cpuUsage();
  emit('measure_start');
  await new Promise((resolve) => setTimeout(resolve, args.duration * 1000));
  stats.measuring = false;
  stats.generating = false;
  const windowMs = nowMs() - cpuBefore.at;
  const cpu = process.cpuUsage(cpuBefore.usage);
  emit('measure_end');
  for (const t of timers) clearTimeout(t);

  // Drain: outstanding acks, then the deliveries of every acked measured edit.
  await settle(() => stats.pendingAcks === 0 && readers.every((c) => c.idle()), args.drain);
  await settle(() => stats.deliveries >= stats.expected, args.drain);
  const expected = stats.expected;
  for (const client of clients) client.close();

  const latencies = stats.latencies.data.slice(0, stats.latencyCount).sort();
  const ackLatencies = stats.ackLatencies.data.slice(0, stats.acked).sort();
  const round = (x) => (x === null ? null : Math.round(x * 1000) / 1000);
  const seconds = windowMs / 1000;
  const result = {
    event: 'result',
    client: args.client,
    mode: args.mode,
    clients: args.clients,
    docs: args.docs,
    subscriptions: plan.reduce((n, p) => n + p.length, 0),
    rate: args.mode === 'typing' ? args.rate : null,
    warmup_s: args.warmup,
    duration_s: round(seconds),
    stop_reading: args.stopReading,
    watchers: args.watchers,
    sent: stats.sent,
    acked: stats.acked,
    rejected: stats.rejected,
    unacked: stats.pendingAcks,
    committed_per_s: round(stats.acked / seconds),
    deliveries: stats.deliveries,
    expected_deliveries: expected,
    missing_deliveries: Math.max(0, expected - stats.deliveries),
    latency_ms: {
      n: latencies.length,
      p50: round(percentile(latencies, 50)),
      p99: round(percentile(latencies, 99)),
      max: round(latencies.length ? latencies[latencies.length - 1] : null),
    },
    ack_ms: {
      p50: round(percentile(ackLatencies, 50)),
      p99: round(percentile(ackLatencies, 99)),
    },
    frames_in: stats.framesIn,
    frames_in_per_s: round(stats.framesIn / seconds),
    messages_in: stats.messagesIn,
    messages_in_per_s: round(stats.messagesIn / seconds),
    gaps: stats.gaps,
    duplicates: stats.duplicates,
    errors: stats.errors,
    error_samples: stats.errorSamples,
    generator_cpu: round((cpu.user + cpu.system) / 1000 / windowMs),
  };
  process.stdout.write(`${JSON.stringify(result)}\n`);
  process.exit(0);
}

main().catch((err) => {
  process.stdout.write(`${JSON.stringify({event: 'result', fatal: String(err && err.message || err)})}\n`);
  process.exit(1);
});
