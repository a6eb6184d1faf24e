// Load for the cluster tests: K stock ShareDB clients spread over several mailslot nodes edit the
// same documents, reconnecting to another node when theirs goes away. Each op inserts a unique
// token, so "no acknowledged op lost" is checked on the final text. Prints one JSON line.
//
// usage: node cluster_load.js '{"urls":["ws://..."],"clients":6,"docs":["a","b"],"ops":50,
//                               "pace_ms":5,"timeout_ms":60000}'
'use strict';
const ShareDB = require('sharedb/lib/client');
const WebSocket = require('ws');
const otText = require('ot-text-unicode');
ShareDB.types.register(otText.type);

const cfg = JSON.parse(process.argv[2]);
const urls = cfg.urls;
const started = Date.now();
const acked = new Set();
const errors = [];
let reconnects = 0;
let stopping = false;

function connect(i) {
  let attempt = 0;
  const open = () => {
    const url = urls[(i + attempt) % urls.length];
    const ws = new WebSocket(url);
    ws.on('error', () => {});
    ws.on('close', () => {
      if (stopping) return;
      attempt += 1;
      reconnects += 1;
      setTimeout(() => conn.bindToSocket(open()), 50);
    });
    return ws;
  };
  const conn = new ShareDB.Connection(open());
  return conn;
}

function rand(n) { return Math.floor(Math.random() * n); }

async function main() {
  const clients = [];
  for (let i = 0; i < cfg.clients; i++) clients.push(connect(i));
  // client 0 creates the documents (or finds them), everybody subscribes
  await Promise.all(cfg.docs.map((id) => new Promise((resolve, reject) => {
    const doc = clients[0].get('docs', id);
    doc.fetch((err) => {
      if (err) return reject(err);
      if (doc.type) return resolve();
      doc.create('', 'text-unicode', (e) => (e && e.code !== 'ERR_DOC_ALREADY_CREATED' ? reject(e) : resolve()));
    });
  })));
  const docs = clients.map((c) => cfg.docs.map((id) => c.get('docs', id)));
  await Promise.all(docs.flat().map((d) => new Promise((res, rej) => d.subscribe((e) => (e ? rej(e) : res())))));
  // every client submits its ops, paced
  await Promise.all(clients.map((c, i) => (async () => {
    for (let j = 0; j < cfg.ops; j++) {
      const doc = docs[i][rand(cfg.docs.length)];
      const token = `[${i}.${j}]`;
      // insert at a token boundary, so that no token is ever split by another
      const text = doc.data || '';
      const bounds = [0];
      for (let k = 0; k < text.length; k++) if (text[k] === ']') bounds.push(k + 1);
      const pos = bounds[rand(bounds.length)];
      const op = pos > 0 ? [pos, token] : [token];
      doc.submitOp(op, (err) => {
        if (err) { errors.push(String(err.code || err)); return; }
        acked.add(`${doc.id}:${token}`);
        // tell the test once the load is well under way (it kills a node or the broker then)
        if (cfg.progress_after && acked.size === cfg.progress_after) {
          console.log(JSON.stringify({ event: 'progress', acked: acked.size }));
        }
      });
      await new Promise((r) => setTimeout(r, cfg.pace_ms || 0));
    }
  })()));
  // wait until nothing is pending and every client has the same text and version per document
  const deadline = started + (cfg.timeout_ms || 60000);
  for (;;) {
    const pending = docs.flat().some((d) => d.hasWritePending());
    const same = cfg.docs.every((_, k) => docs.every((ds) => ds[k].version === docs[0][k].version && ds[k].data === docs[0][k].data));
    if (!pending && same) break;
    if (Date.now() > deadline) {
      stopping = true;
      console.log(JSON.stringify({ ok: false, reason: pending ? 'pending' : 'diverged', errors, reconnects,
        versions: docs.map((ds) => ds.map((d) => d.version)) }));
      process.exit(1);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  stopping = true;
  const finals = {};
  cfg.docs.forEach((id, k) => { finals[id] = { v: docs[0][k].version, data: docs[0][k].data }; });
  console.log(JSON.stringify({ ok: true, docs: finals, acked: [...acked], errors, reconnects,
    seconds: (Date.now() - started) / 1000 }));
  process.exit(0);
}
main().catch((e) => { console.log(JSON.stringify({ ok: false, reason: String(e && (e.stack || e)) })); process.exit(1); });
