// The real `sharedb` client's presence API against mailslot: `node presence.js ws://host:port/ws`.
//
// The npm `ot-text-unicode` type has no transformPresence, which ShareDB's presence needs, so it is
// registered here with one (as the rich-text type does): a presence is {index, length, ...} in
// code points, both ends moved with the op; the owner's own insert at the cursor moves it past.
//
// Prints one line per check and "ok" at the end; exits 1 on the first failure or after a timeout.
'use strict';

const path = require('path');
const modules = path.join(__dirname, '..', '..', 'js', 'node_modules');
const ShareDB = require(path.join(modules, 'sharedb', 'lib', 'client'));
const WebSocket = require(path.join(modules, 'ws'));
const { type } = require(path.join(modules, 'ot-text-unicode'));

function position(cursor, op, isOwn) {
  let pos = 0;
  let shift = 0;
  for (const c of op) {
    if (typeof c === 'number') {
      pos += c;
      if (pos > cursor) break;
    } else if (typeof c === 'string') {
      if (pos < cursor || (pos === cursor && isOwn)) shift += [...c].length;
      else break;
    } else {
      const n = typeof c.d === 'number' ? c.d : [...c.d].length;
      if (pos < cursor) shift -= Math.min(n, cursor - pos);
      pos += n;
    }
  }
  return cursor + shift;
}

ShareDB.types.register(Object.assign({}, type, {
  transformPresence(presence, op, isOwnOp) {
    if (!presence) return null;
    const start = position(presence.index, op, isOwnOp);
    const end = position(presence.index + presence.length, op, isOwnOp);
    return Object.assign({}, presence, { index: start, length: end - start });
  },
}));

const url = process.argv[2];
const id = `presence-${Date.now()}-${Math.floor(Math.random() * 1e6)}`;
const sockets = [];

function connect() {
  const socket = new WebSocket(url);
  sockets.push(socket);
  return new ShareDB.Connection(socket);
}

function fail(message) {
  console.error(`FAIL: ${message}`);
  process.exit(1);
}

const timer = setTimeout(() => fail('timed out'), 20000);

function call(fn) {
  return new Promise((resolve, reject) => fn((err) => (err ? reject(err) : resolve())));
}

// the next 'receive' on `presence` that satisfies `test(id, value)`
function received(presence, test) {
  return new Promise((resolve) => {
    const on = (pid, value) => {
      if (test(pid, value)) {
        presence.off('receive', on);
        resolve([pid, value]);
      }
    };
    presence.on('receive', on);
  });
}

function check(ok, what) {
  if (!ok) fail(what);
  console.log(`ok - ${what}`);
}

async function main() {
  const c1 = connect();
  const c2 = connect();
  const d1 = c1.get('docs', id);
  const d2 = c2.get('docs', id);
  await call((cb) => d1.create('hello world', 'text-unicode', cb));
  await call((cb) => d2.subscribe(cb));
  await call((cb) => d1.subscribe(cb));

  const p1 = c1.getDocPresence('docs', id);
  const p2 = c2.getDocPresence('docs', id);
  await call((cb) => p1.subscribe(cb));
  await call((cb) => p2.subscribe(cb));
  const ann = p1.create('ann');

  // an update reaches the other client (and the sender's own copy acknowledges it)
  let seen = received(p2, (pid, v) => pid === 'ann' && v && v.index === 6);
  await call((cb) => ann.submit({ index: 6, length: 5, name: 'ann' }, cb));
  let [, value] = await seen;
  check(value.length === 5 && value.name === 'ann', 'a presence update reaches the other client');

  // an op moves the remote presence (client side, with the registered transformPresence)
  seen = received(p2, (pid, v) => pid === 'ann' && v && v.index === 10);
  await call((cb) => d2.submitOp(['big '], cb));
  [, value] = await seen;
  check(p2.remotePresences.ann.index === 10, "another's insert before it moves the presence");

  // a presence sent after the doc moved on is at the new version for everyone
  if (d1.version !== d2.version) await new Promise((resolve) => d1.once('op', resolve));
  seen = received(p2, (pid, v) => pid === 'ann' && v && v.index === 0);
  await call((cb) => ann.submit({ index: 0, length: 3, name: 'ann' }, cb));
  [, value] = await seen;
  check(value.length === 3, 'a presence at the latest version goes as it is');

  // a newcomer asks for everyone's presence (pr) and gets ann's
  const c3 = connect();
  const d3 = c3.get('docs', id);
  await call((cb) => d3.subscribe(cb));
  const p3 = c3.getDocPresence('docs', id);
  seen = received(p3, (pid, v) => pid === 'ann' && v && v.index === 0);
  await call((cb) => p3.subscribe(cb));
  await seen;
  check(true, 'a newcomer receives the presences already there');

  // leaving: an explicit null, then a socket that closes
  const bob = p2.create('bob');
  let seenBob = received(p3, (pid, v) => pid === 'bob' && v !== null);
  await call((cb) => bob.submit({ index: 1, length: 0, name: 'bob' }, cb));
  await seenBob;
  seenBob = received(p3, (pid, v) => pid === 'bob' && v === null);
  await call((cb) => bob.submit(null, cb));
  await seenBob;
  check(!('bob' in p3.remotePresences), 'submitting null leaves');

  const gone = received(p3, (pid, v) => pid === 'ann' && v === null);
  sockets[0].close();
  await gone;
  check(!('ann' in p3.remotePresences), "a closed socket's presences leave");

  clearTimeout(timer);
  for (const s of sockets) s.close();
  console.log('ok');
  process.exit(0);
}

main().catch((err) => fail(err && err.stack ? err.stack : String(err)));
