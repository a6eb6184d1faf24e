// mailslot's own small client of the ShareDB protocol (see PROTOCOL.md), for the text type.
//
// Positions count Unicode code points, as the server does; JavaScript strings count UTF-16 units,
// so every conversion between the two goes through cpToUnit / unitToCp.
//
// A Doc keeps at most one op in flight and the ops typed meanwhile composed into one pending op.
// Remote ops transform both (the server's transform is "left" for the incoming op, so ours are
// transformed "left" against theirs here too, and theirs "right" against ours). Across a
// reconnect the connection keeps its id (the handshake presents it), the doc catches up from its
// version, and the op in flight is sent again with the same seq: the server acknowledges a
// duplicate without applying it twice.

export const TEXT_URI = "http://sharejs.org/types/text-unicode";

// ---- code points ---------------------------------------------------------------------------

export function cpLength(s) {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0xd800 || c > 0xdbff || i + 1 >= s.length) n++;
    else {
      const d = s.charCodeAt(i + 1);
      n++;
      if (d >= 0xdc00 && d <= 0xdfff) i++;
    }
  }
  return n;
}

// UTF-16 offset of code point index `cp` in `s`
export function cpToUnit(s, cp) {
  let i = 0;
  while (cp > 0 && i < s.length) {
    const c = s.charCodeAt(i);
    i += c >= 0xd800 && c <= 0xdbff && i + 1 < s.length ? 2 : 1;
    cp--;
  }
  return i;
}

// code point index of UTF-16 offset `unit` in `s`
export function unitToCp(s, unit) {
  return cpLength(s.slice(0, unit));
}

function cpSlice(s, start, end) {
  const a = cpToUnit(s, start);
  const b = end === undefined ? s.length : a + cpToUnit(s.slice(a), end - start);
  return s.slice(a, b);
}

// ---- the text-unicode type -----------------------------------------------------------------

const dlen = (d) => (typeof d === "number" ? d : cpLength(d));

function componentLength(c) {
  if (typeof c === "number") return c;
  if (typeof c === "string") return cpLength(c);
  return dlen(c.d);
}

function makeAppend(out) {
  return (c) => {
    if (c === 0 || c === "" || (typeof c === "object" && dlen(c.d) === 0)) return;
    const last = out[out.length - 1];
    if (out.length && typeof c === typeof last) {
      if (typeof c === "number" || typeof c === "string") out[out.length - 1] = last + c;
      else if (typeof c.d === "number" || typeof last.d === "number")
        out[out.length - 1] = { d: dlen(last.d) + dlen(c.d) };
      else out[out.length - 1] = { d: last.d + c.d };
    } else out.push(c);
  };
}

function makeTake(op) {
  let idx = 0;
  let offset = 0;
  const take = (n, indivisible) => {
    if (idx === op.length) return n === -1 ? null : n;
    const c = op[idx];
    if (typeof c === "number") {
      if (n === -1 || c - offset <= n) {
        const part = c - offset;
        idx++;
        offset = 0;
        return part;
      }
      offset += n;
      return n;
    }
    if (typeof c === "string") {
      if (n === -1 || indivisible === "i" || cpLength(c) - offset <= n) {
        const part = cpSlice(c, offset);
        idx++;
        offset = 0;
        return part;
      }
      const part = cpSlice(c, offset, offset + n);
      offset += n;
      return part;
    }
    if (n === -1 || indivisible === "d" || dlen(c.d) - offset <= n) {
      const part = { d: typeof c.d === "number" ? c.d - offset : cpSlice(c.d, offset) };
      idx++;
      offset = 0;
      return part;
    }
    const part = { d: typeof c.d === "number" ? n : cpSlice(c.d, offset, offset + n) };
    offset += n;
    return part;
  };
  const peek = () => op[idx];
  return { take, peek };
}

function trim(op) {
  if (op.length && typeof op[op.length - 1] === "number") op.pop();
  return op;
}

export function normalize(op) {
  const out = [];
  const append = makeAppend(out);
  for (const c of op) append(c);
  return trim(out);
}

export function apply(text, op) {
  const parts = [];
  let unit = 0;
  for (const c of op) {
    if (typeof c === "number") {
      const next = unit + cpToUnit(text.slice(unit), c);
      parts.push(text.slice(unit, next));
      unit = next;
    } else if (typeof c === "string") {
      parts.push(c);
    } else {
      unit += cpToUnit(text.slice(unit), dlen(c.d));
    }
  }
  parts.push(text.slice(unit));
  return parts.join("");
}

export function transform(op, other, side) {
  const out = [];
  const append = makeAppend(out);
  const { take, peek } = makeTake(op);
  for (const c of other) {
    if (typeof c === "number") {
      let n = c;
      while (n > 0) {
        const chunk = take(n, "i");
        append(chunk);
        if (typeof chunk !== "string") n -= componentLength(chunk);
      }
    } else if (typeof c === "string") {
      if (side === "left" && typeof peek() === "string") append(take(-1));
      append(cpLength(c));
    } else {
      let n = dlen(c.d);
      while (n > 0) {
        const chunk = take(n, "i");
        if (typeof chunk === "number") n -= chunk;
        else if (typeof chunk === "string") append(chunk);
        else n -= dlen(chunk.d);
      }
    }
  }
  let c;
  while ((c = take(-1)) !== null) append(c);
  return trim(out);
}

export function compose(op1, op2) {
  const out = [];
  const append = makeAppend(out);
  const { take } = makeTake(op1);
  for (const c of op2) {
    if (typeof c === "number") {
      let n = c;
      while (n > 0) {
        const chunk = take(n, "d");
        append(chunk);
        if (typeof chunk !== "object") n -= componentLength(chunk);
      }
    } else if (typeof c === "string") {
      append(c);
    } else {
      let n = dlen(c.d);
      while (n > 0) {
        const chunk = take(n, "d");
        if (typeof chunk === "number") {
          append({ d: chunk });
          n -= chunk;
        } else if (typeof chunk === "string") {
          n -= cpLength(chunk);
        } else {
          append(chunk);
        }
      }
    }
  }
  let c;
  while ((c = take(-1)) !== null) append(c);
  return trim(out);
}

// where the cursor at `cursor` is after `op`; an insert exactly at the cursor goes after it
// unless the cursor's owner made the op
export function transformPosition(cursor, op, isOwn = false) {
  let pos = 0;
  let shift = 0;
  for (const c of op) {
    if (typeof c === "number") {
      pos += c;
      if (pos > cursor) break;
    } else if (typeof c === "string") {
      if (pos < cursor || (pos === cursor && isOwn)) shift += cpLength(c);
      else break;
    } else {
      const n = dlen(c.d);
      if (pos < cursor) shift -= Math.min(n, cursor - pos);
      pos += n;
    }
  }
  return Math.max(0, cursor + shift);
}

// the op that turns `before` into `after` (one edit: common prefix and suffix kept)
export function diff(before, after) {
  if (before === after) return [];
  let start = 0;
  const max = Math.min(before.length, after.length);
  while (start < max && before.charCodeAt(start) === after.charCodeAt(start)) start++;
  let end = 0;
  while (
    end < max - start &&
    before.charCodeAt(before.length - 1 - end) === after.charCodeAt(after.length - 1 - end)
  )
    end++;
  // never split a surrogate pair
  const high = (s, i) => i > 0 && s.charCodeAt(i - 1) >= 0xd800 && s.charCodeAt(i - 1) <= 0xdbff;
  while (start > 0 && (high(before, start) || high(after, start))) start--;
  const low = (s, i) => i < s.length && s.charCodeAt(i) >= 0xdc00 && s.charCodeAt(i) <= 0xdfff;
  while (end > 0 && (low(before, before.length - end) || low(after, after.length - end))) end--;
  const removed = before.slice(start, before.length - end);
  const inserted = after.slice(start, after.length - end);
  const op = [cpLength(before.slice(0, start))];
  if (removed) op.push({ d: cpLength(removed) });
  if (inserted) op.push(inserted);
  return normalize(op);
}

// ---- the connection ------------------------------------------------------------------------

export class Connection extends EventTarget {
  // url(): the WebSocket URL to (re)connect to (it may carry a fresh token)
  constructor(url, { pingEvery = 15000 } = {}) {
    super();
    this.url = url;
    this.pingEvery = pingEvery;
    this.src = null;
    this.seq = 0;
    this.docs = new Map();
    this.channels = new Map(); // ch -> Presence
    this.state = "connecting";
    this.ws = null;
    this.attempt = 0;
    this.blocked = false; // test hook: stay offline until unblocked
    this.closedByUs = false;
    this.timer = null;
    this.pinger = null;
    this.open();
  }

  setState(state, detail = {}) {
    this.state = state;
    this.dispatchEvent(new CustomEvent("state", { detail: { state, ...detail } }));
  }

  open() {
    if (this.blocked || this.closedByUs) return;
    this.setState("connecting", { attempt: this.attempt });
    let ws;
    try {
      ws = new WebSocket(this.url());
    } catch (err) {
      this.scheduleReconnect();
      return;
    }
    this.ws = ws;
    ws.onopen = () => {
      ws.send(JSON.stringify({ a: "hs", id: this.src, protocol: 1, protocolMinor: 2 }));
    };
    ws.onmessage = (event) => {
      let msg;
      try {
        msg = JSON.parse(event.data);
      } catch {
        return;
      }
      this.handle(msg);
    };
    ws.onclose = (event) => {
      if (this.ws !== ws) return;
      this.ws = null;
      clearInterval(this.pinger);
      for (const doc of this.docs.values()) doc.onDisconnect();
      for (const p of this.channels.values()) p.onDisconnect();
      if (event.code === 1008 && this.state === "connecting") {
        this.setState("refused", { code: event.code });
        this.dispatchEvent(new CustomEvent("refused"));
        return;
      }
      this.setState("disconnected", { code: event.code });
      this.scheduleReconnect();
    };
  }

  scheduleReconnect() {
    if (this.closedByUs || this.blocked) return;
    clearTimeout(this.timer);
    const delay = Math.min(5000, 250 * 2 ** this.attempt) * (0.75 + Math.random() / 2);
    this.attempt = Math.min(this.attempt + 1, 6);
    this.timer = setTimeout(() => this.open(), delay);
  }

  // test hook and "work offline": drop the socket and stay away until unblock()
  block() {
    this.blocked = true;
    clearTimeout(this.timer);
    if (this.ws) this.ws.close(4000, "offline");
  }

  unblock() {
    this.blocked = false;
    this.attempt = 0;
    if (!this.ws) this.open();
  }

  close() {
    this.closedByUs = true;
    clearTimeout(this.timer);
    clearInterval(this.pinger);
    if (this.ws) this.ws.close(1000, "bye");
  }

  get connected() {
    return this.state === "connected";
  }

  send(msg) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN && this.connected) {
      this.ws.send(JSON.stringify(msg));
      return true;
    }
    return false;
  }

  handle(msg) {
    if (msg.a === "hs") {
      if (msg.error) return;
      this.src = msg.id;
      this.attempt = 0;
      this.setState("connected");
      clearInterval(this.pinger);
      this.pinger = setInterval(() => this.send({ a: "pp" }), this.pingEvery);
      for (const doc of this.docs.values()) doc.onConnect();
      for (const p of this.channels.values()) p.onConnect();
      return;
    }
    if (msg.a === "pp") return;
    if (msg.a && msg.a.startsWith("x-")) {
      this.dispatchEvent(new CustomEvent(msg.a, { detail: msg }));
      return;
    }
    if (msg.a === "p" || msg.a === "ps" || msg.a === "pu" || msg.a === "pr") {
      const channel = this.channels.get(msg.ch);
      if (channel) channel.handle(msg);
      return;
    }
    if (msg.c !== undefined && msg.d !== undefined) {
      const doc = this.docs.get(`${msg.c}/${msg.d}`);
      if (doc) doc.handle(msg);
    }
  }

  get(c, d) {
    const key = `${c}/${d}`;
    let doc = this.docs.get(key);
    if (!doc) {
      doc = new Doc(this, c, d);
      this.docs.set(key, doc);
    }
    return doc;
  }

  forget(doc) {
    this.docs.delete(`${doc.c}/${doc.d}`);
  }

  presence(ch) {
    let p = this.channels.get(ch);
    if (!p) {
      p = new Presence(this, ch);
      this.channels.set(ch, p);
    }
    return p;
  }
}

// ---- documents -----------------------------------------------------------------------------

export class Doc extends EventTarget {
  constructor(conn, c, d) {
    super();
    this.conn = conn;
    this.c = c;
    this.d = d;
    this.version = null; // null until the first snapshot
    this.type = null;
    this.text = "";
    this.inflight = null; // {op, seq}
    this.pending = null; // composed op
    this.subscribed = false;
    this.wanted = false;
    this.catchingUp = false;
  }

  emit(name, detail) {
    this.dispatchEvent(new CustomEvent(name, { detail }));
  }

  subscribe() {
    this.wanted = true;
    if (this.conn.connected) this.sendSubscribe();
  }

  unsubscribe() {
    this.wanted = false;
    this.conn.send({ a: "u", c: this.c, d: this.d });
    this.conn.forget(this);
  }

  sendSubscribe() {
    const msg = { a: "s", c: this.c, d: this.d };
    if (this.version !== null) msg.v = this.version;
    this.catchingUp = this.version !== null;
    this.conn.send(msg);
  }

  onConnect() {
    if (this.wanted) this.sendSubscribe();
    else this.flush();
  }

  onDisconnect() {
    this.subscribed = false;
  }

  get hasPending() {
    return this.inflight !== null || this.pending !== null;
  }

  submit(op) {
    op = normalize(op);
    if (!op.length || this.version === null) return;
    this.text = apply(this.text, op);
    this.pending = this.pending ? compose(this.pending, op) : op;
    this.emit("local-op", { op });
    this.flush();
  }

  flush() {
    if (this.catchingUp || !this.conn.connected) return;
    if (this.inflight) {
      if (!this.inflight.sent) this.sendInflight();
      return;
    }
    if (!this.pending) return;
    this.inflight = { op: this.pending, seq: ++this.conn.seq, sent: false };
    this.pending = null;
    this.sendInflight();
  }

  sendInflight() {
    const f = this.inflight;
    const msg = { a: "op", c: this.c, d: this.d, v: this.version, seq: f.seq, op: f.op };
    if (this.conn.src) msg.src = this.conn.src;
    f.sent = this.conn.send(msg);
    this.emit("pending", { pending: true });
  }

  handle(msg) {
    if (msg.a === "s" || msg.a === "f") {
      if (msg.error) {
        this.emit("error", msg.error);
        return;
      }
      this.subscribed = msg.a === "s";
      if (msg.data) {
        // a fresh snapshot: keep what we have not sent yet on top of it
        const local = this.inflight ? (this.pending ? compose(this.inflight.op, this.pending) : this.inflight.op) : this.pending;
        this.version = msg.data.v;
        this.type = msg.data.type;
        this.text = typeof msg.data.data === "string" ? msg.data.data : "";
        this.inflight = null;
        this.pending = null;
        this.catchingUp = false;
        this.emit("load", { text: this.text, version: this.version });
        if (local && this.type) this.submit(local);
      } else {
        // caught up with the ops since our version: send what waits
        this.catchingUp = false;
        if (this.inflight) this.inflight.sent = false;
        this.emit("caught-up", { version: this.version });
      }
      this.flush();
      return;
    }
    if (msg.a !== "op") return;
    if (msg.error) {
      // the server refused our op: reload the document (what was refused is lost)
      const f = this.inflight;
      if (f && msg.seq === f.seq) {
        this.inflight = null;
        this.pending = null;
        this.emit("rejected", msg.error);
        this.version = null;
        this.sendSubscribeFresh();
      }
      return;
    }
    const f = this.inflight;
    if (f && msg.src === this.conn.src && msg.seq === f.seq) {
      // our op, committed at msg.v (an ack, or our own op in a catch-up)
      if (msg.v >= this.version) this.version = msg.v + 1;
      this.inflight = null;
      this.emit("ack", { version: this.version, v: msg.v, op: f.op });
      if (!this.hasPending) this.emit("pending", { pending: false });
      this.flush();
      return;
    }
    if (this.version === null || msg.v < this.version) return; // seen already
    if (msg.v > this.version) {
      this.sendSubscribeFresh(); // a gap: fetch what we missed
      return;
    }
    if (!msg.op) {
      // a create or a delete by someone else: start again from a snapshot
      this.sendSubscribeFresh();
      return;
    }
    let remote = msg.op;
    if (f) {
      const mine = transform(f.op, remote, "left");
      remote = transform(remote, f.op, "right");
      f.op = mine;
    }
    if (this.pending) {
      const mine = transform(this.pending, remote, "left");
      remote = transform(remote, this.pending, "right");
      this.pending = mine;
    }
    this.text = apply(this.text, remote);
    this.version++;
    this.emit("remote-op", { op: remote, raw: msg.op, v: msg.v, src: msg.src });
  }

  sendSubscribeFresh() {
    this.catchingUp = true;
    this.conn.send({ a: "s", c: this.c, d: this.d });
  }
}

// ---- presence ------------------------------------------------------------------------------

export class Presence extends EventTarget {
  constructor(conn, ch) {
    super();
    this.conn = conn;
    this.ch = ch;
    this.id = `${Math.random().toString(36).slice(2)}${Date.now().toString(36)}`;
    this.pv = 0;
    this.local = null; // what we last said, {value, doc}
    this.remote = new Map(); // presence id -> {src, value}
    this.seq = 0;
    this.wanted = false;
  }

  subscribe() {
    this.wanted = true;
    this.conn.send({ a: "ps", ch: this.ch, seq: ++this.seq });
  }

  unsubscribe() {
    this.wanted = false;
    this.conn.send({ a: "pu", ch: this.ch, seq: ++this.seq });
    this.conn.channels.delete(this.ch);
  }

  onConnect() {
    if (this.wanted) {
      this.conn.send({ a: "ps", ch: this.ch, seq: ++this.seq });
      if (this.local) this.send();
    }
  }

  onDisconnect() {
    // their presences leave with our connection; we hear them again after reconnecting
    this.remote.clear();
    this.dispatchEvent(new CustomEvent("change"));
  }

  // value: {index, length, ...} in code points at doc.version, or null to leave
  submit(value, doc) {
    this.local = value === null ? null : { value, doc };
    this.send(value === null);
  }

  send(leaving = false) {
    this.pv++;
    const msg = { a: "p", ch: this.ch, id: this.id, pv: this.pv, p: null };
    if (!leaving && this.local) {
      const { value, doc } = this.local;
      Object.assign(msg, { p: value, c: doc.c, d: doc.d, v: doc.version, t: TEXT_URI });
    }
    this.conn.send(msg);
  }

  handle(msg) {
    if (msg.a === "pr") {
      if (this.local) this.send();
      return;
    }
    if (msg.a !== "p" || msg.id === this.id || msg.error) return;
    const known = this.remote.get(msg.id);
    if (known && msg.pv < known.pv) return;
    if (msg.p === null) this.remote.delete(msg.id);
    else this.remote.set(msg.id, { src: msg.src, pv: msg.pv, v: msg.v, value: msg.p });
    this.dispatchEvent(new CustomEvent("change"));
  }
}
