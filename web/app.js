// The mailslot editor: sign in, documents, a shared text editor with everyone's cursors,
// who is here, notifications and the connection's state. Plain modules, no build step.

import {
  Connection,
  compose,
  cpLength,
  cpToUnit,
  diff,
  transformPosition,
  unitToCp,
} from "./client.js";

const $ = (sel) => document.querySelector(sel);
const COLLECTION = "docs";
const store = {
  get token() {
    return sessionStorage.getItem("mailslot.token") || localStorage.getItem("mailslot.token");
  },
  set token(value) {
    for (const s of [sessionStorage, localStorage]) {
      if (value) s.setItem("mailslot.token", value);
      else s.removeItem("mailslot.token");
    }
  },
};

// ---- small helpers --------------------------------------------------------------------------

function colorOf(name, alpha = 1) {
  let h = 0;
  for (const ch of name) h = (h * 31 + ch.codePointAt(0)) % 360;
  return `hsla(${h}, 68%, 42%, ${alpha})`;
}

function escapeHtml(s) {
  return s.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

function initials(name) {
  return name.slice(0, 2).toUpperCase();
}

function ago(ms) {
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 60) return "just now";
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return new Date(ms).toLocaleDateString();
}

function slug(title) {
  return title
    .trim()
    .replace(/\s+/g, "-")
    .replace(/[^A-Za-z0-9._~:@+=-]/g, "")
    .slice(0, 80);
}

function toast(text, { kind = "info", action = null } = {}) {
  const box = document.createElement("div");
  box.className = `toast ${kind}`;
  box.setAttribute("role", "status");
  box.textContent = text;
  if (action) {
    box.classList.add("clickable");
    box.addEventListener("click", () => {
      action();
      box.remove();
    });
  }
  $("#toasts").append(box);
  setTimeout(() => box.classList.add("leaving"), 4500);
  setTimeout(() => box.remove(), 5000);
}

async function api(path, { method = "GET", body } = {}) {
  const headers = { accept: "application/json" };
  if (store.token) headers.authorization = `Bearer ${store.token}`;
  if (body !== undefined) headers["content-type"] = "application/json";
  const reply = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  let data = {};
  try {
    data = await reply.json();
  } catch {
    /* not JSON */
  }
  if (!reply.ok) {
    const err = new Error(data.error || `${method} ${path}: HTTP ${reply.status}`);
    err.status = reply.status;
    throw err;
  }
  return data;
}

// ---- the app --------------------------------------------------------------------------------

class App {
  constructor() {
    this.user = null;
    this.conn = null;
    this.doc = null;
    this.presence = null;
    this.role = null;
    this.docs = [];
    this.history = new Map(); // server version -> {op, src}: moves late presences forward
    this.unread = 0;
    this.notifications = [];
    this.composing = false;
    this.renderQueued = false;
    this.presenceTimer = null;
  }

  async start() {
    this.bindStatic();
    let config = { dev_login: true };
    try {
      config = await api("/api/config");
    } catch {
      /* keep the default */
    }
    this.devLogin = config.dev_login;
    if (store.token) {
      try {
        const me = await api("/api/me");
        return this.signedIn(me.user);
      } catch {
        store.token = null;
      }
    }
    this.showSignIn();
  }

  bindStatic() {
    $("#signin-form").addEventListener("submit", (e) => {
      e.preventDefault();
      this.signIn();
    });
    $("#new-doc").addEventListener("submit", (e) => {
      e.preventDefault();
      this.createDoc();
    });
    $("#bell").addEventListener("click", () => this.toggleInbox());
    $("#mark-all").addEventListener("click", () => this.markRead(null));
    $("#share-btn").addEventListener("click", () => this.openShare());
    $("#share-form").addEventListener("submit", (e) => {
      e.preventDefault();
      this.share();
    });
    $("#share-close").addEventListener("click", () => $("#share-dialog").close());
    $("#sign-out").addEventListener("click", () => this.signOut());
    $("#menu-btn").addEventListener("click", () => document.body.classList.toggle("nav-open"));
    $("#reconnect").addEventListener("click", () => {
      if (this.conn) this.conn.unblock();
    });
    window.addEventListener("hashchange", () => this.route());
    document.addEventListener("click", (e) => {
      const panel = $("#inbox");
      if (!panel.hidden && !panel.contains(e.target) && !$("#bell").contains(e.target)) panel.hidden = true;
    });
    const ta = $("#editor");
    ta.addEventListener("input", () => this.onInput());
    ta.addEventListener("compositionstart", () => (this.composing = true));
    ta.addEventListener("compositionend", () => {
      this.composing = false;
      this.onInput();
    });
    ta.addEventListener("scroll", () => this.syncScroll());
    for (const ev of ["select", "keyup", "mouseup", "focus"]) ta.addEventListener(ev, () => this.queuePresence());
    document.addEventListener("selectionchange", () => {
      if (document.activeElement === ta) this.queuePresence();
    });
    new ResizeObserver(() => this.render()).observe(ta);
  }

  // ---- signing in ----------------------------------------------------------------------------

  showSignIn() {
    $("#app").hidden = true;
    $("#signin").hidden = false;
    $("#dev-note").hidden = !this.devLogin;
    $("#token-field").hidden = this.devLogin;
    $("#name-field").hidden = !this.devLogin;
    (this.devLogin ? $("#signin-name") : $("#signin-token")).focus();
  }

  async signIn() {
    $("#signin-error").textContent = "";
    try {
      if (this.devLogin) {
        const reply = await api("/api/dev-login", { method: "POST", body: { name: $("#signin-name").value.trim() } });
        store.token = reply.token;
        return this.signedIn(reply.user);
      }
      store.token = $("#signin-token").value.trim();
      const me = await api("/api/me");
      return this.signedIn(me.user);
    } catch (err) {
      store.token = null;
      $("#signin-error").textContent = err.message;
    }
  }

  signOut() {
    store.token = null;
    if (this.conn) this.conn.close();
    location.hash = "";
    location.reload();
  }

  async signedIn(user) {
    this.user = user;
    this.color = colorOf(user);
    $("#signin").hidden = true;
    $("#app").hidden = false;
    $("#me").textContent = initials(user);
    $("#me").style.background = this.color;
    $("#me").title = `Signed in as ${user}`;
    $("#me-name").textContent = user;
    $("#dev-badge").hidden = !this.devLogin;
    this.connect();
    await Promise.all([this.loadDocs(), this.loadInbox()]);
    this.route();
  }

  // ---- the connection --------------------------------------------------------------------

  connect() {
    const base = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
    this.conn = new Connection(() => `${base}?token=${encodeURIComponent(store.token || "")}`);
    this.conn.addEventListener("state", (e) => this.showState(e.detail.state));
    this.conn.addEventListener("refused", () => {
      toast("Your session has expired: sign in again.", { kind: "error" });
      this.signOut();
    });
    this.conn.addEventListener("x-notify", (e) => this.onNotify(e.detail));
    this.conn.addEventListener("x-unread", (e) => this.setUnread(e.detail.unread));
    this.conn.addEventListener("x-access", (e) => this.onAccess(e.detail));
  }

  showState(state) {
    const pill = $("#status");
    pill.dataset.state = state;
    const text = { connected: "Live", connecting: "Connecting…", disconnected: "Reconnecting…", refused: "Signed out" }[state] || state;
    $("#status-text").textContent = this.conn && this.conn.blocked ? "Offline" : text;
    $("#reconnect").hidden = !(this.conn && this.conn.blocked);
    this.showSaved();
    if (state === "connected") this.queuePresence();
  }

  showSaved() {
    const el = $("#saved");
    if (!this.doc) return;
    const offline = !this.conn.connected;
    if (this.doc.hasPending) el.textContent = offline ? "Offline: your changes are kept and will be sent" : "Saving…";
    else el.textContent = offline ? "Offline" : "All changes saved";
    el.dataset.pending = this.doc.hasPending ? "yes" : "no";
  }

  // ---- documents -------------------------------------------------------------------------

  async loadDocs() {
    try {
      const reply = await api("/api/me/docs");
      this.docs = reply.documents;
    } catch (err) {
      toast(`Could not list documents: ${err.message}`, { kind: "error" });
    }
    this.renderDocs();
  }

  renderDocs() {
    const list = $("#doc-list");
    list.replaceChildren();
    if (!this.docs.length) {
      const empty = document.createElement("li");
      empty.className = "muted";
      empty.textContent = "No documents yet. Create one above.";
      list.append(empty);
    }
    for (const d of this.docs) {
      const li = document.createElement("li");
      const a = document.createElement("a");
      a.href = `#/d/${encodeURIComponent(d.id)}`;
      a.className = this.doc && this.doc.d === d.id ? "active" : "";
      a.innerHTML = `<span class="doc-name">${escapeHtml(d.id)}</span><span class="role role-${d.role}">${d.role}</span>`;
      li.append(a);
      list.append(li);
    }
  }

  async createDoc() {
    const input = $("#new-doc-name");
    const id = slug(input.value) || `doc-${Date.now().toString(36)}`;
    try {
      await api("/api/docs", { method: "POST", body: { id, text: "" } });
      input.value = "";
      await this.loadDocs();
      location.hash = `#/d/${encodeURIComponent(id)}`;
    } catch (err) {
      toast(err.status === 409 ? `“${id}” exists already` : err.message, { kind: "error" });
    }
  }

  route() {
    const m = location.hash.match(/^#\/d\/(.+)$/);
    const id = m ? decodeURIComponent(m[1]) : null;
    document.body.classList.remove("nav-open");
    if (id === (this.doc && this.doc.d)) return;
    this.closeDoc();
    if (id) this.openDoc(id);
    else this.showEmpty();
  }

  showEmpty() {
    $("#editor-view").hidden = true;
    $("#empty-view").hidden = false;
    $("#doc-title").textContent = "";
    $("#share-btn").hidden = true;
    this.renderWho();
  }

  openDoc(id) {
    const entry = this.docs.find((d) => d.id === id);
    this.role = entry ? entry.role : null;
    $("#empty-view").hidden = true;
    $("#editor-view").hidden = false;
    $("#doc-title").textContent = id;
    $("#share-btn").hidden = this.role !== "owner";
    $("#readonly").hidden = this.role !== "read";
    const ta = $("#editor");
    ta.value = "";
    ta.readOnly = true;
    ta.placeholder = "Loading…";
    this.history.clear();
    const doc = this.conn.get(COLLECTION, id);
    this.doc = doc;
    doc.addEventListener("load", () => this.onLoad());
    doc.addEventListener("remote-op", (e) => this.onRemoteOp(e.detail));
    doc.addEventListener("ack", (e) => this.onAck(e.detail));
    doc.addEventListener("pending", () => this.showSaved());
    doc.addEventListener("caught-up", () => this.showSaved());
    doc.addEventListener("rejected", (e) => toast(`Your last change was refused: ${e.detail.message}`, { kind: "error" }));
    doc.addEventListener("error", (e) => {
      toast(e.detail.message, { kind: "error" });
      ta.placeholder = "You cannot open this document.";
    });
    doc.subscribe();
    this.presence = this.conn.presence(`${COLLECTION}.${id}`);
    this.presence.addEventListener("change", () => this.onPresence());
    this.presence.subscribe();
    this.renderDocs();
    this.showSaved();
  }

  closeDoc() {
    if (!this.doc) return;
    if (this.presence) {
      this.presence.submit(null, this.doc);
      this.presence.unsubscribe();
    }
    this.doc.unsubscribe();
    this.doc = null;
    this.presence = null;
    this.renderWho();
  }

  onLoad() {
    const ta = $("#editor");
    const doc = this.doc;
    ta.value = doc.text;
    ta.readOnly = this.role === "read" || doc.type === null;
    ta.placeholder = doc.type === null ? "This document does not exist." : "Start typing… mention someone with @name";
    this.render();
    this.showSaved();
    this.queuePresence();
  }

  onInput() {
    if (this.composing || !this.doc || this.doc.version === null) return;
    const ta = $("#editor");
    const op = diff(this.doc.text, ta.value);
    if (op.length) this.doc.submit(op);
    this.render();
    this.showSaved();
    this.queuePresence();
  }

  onRemoteOp({ op, raw, v, src }) {
    const ta = $("#editor");
    const text = ta.value;
    const start = unitToCp(text, ta.selectionStart);
    const end = unitToCp(text, ta.selectionEnd);
    const scroll = ta.scrollTop;
    ta.value = this.doc.text;
    const s = transformPosition(start, op);
    const e = transformPosition(end, op);
    ta.setSelectionRange(cpToUnit(ta.value, s), cpToUnit(ta.value, e));
    ta.scrollTop = scroll;
    this.remember(v, raw, src);
    this.render();
  }

  onAck({ v, op }) {
    this.remember(v, op, this.conn.src);
    this.showSaved();
    if (!this.doc.hasPending) this.queuePresence();
  }

  // ops at server versions: remote presences at an older version are moved past them
  remember(v, op, src) {
    this.history.set(v, { op, src });
    if (this.history.size > 200) this.history.delete(this.history.keys().next().value);
    if (!this.presence) return;
    for (const entry of this.presence.remote.values()) this.catchUp(entry);
  }

  catchUp(entry) {
    while (entry.value && entry.v !== undefined && entry.v < this.doc.version) {
      const h = this.history.get(entry.v);
      if (!h) break;
      const p = entry.value;
      const own = h.src === entry.src;
      const s = transformPosition(p.index, h.op, own);
      const e = transformPosition(p.index + (p.length || 0), h.op, own);
      entry.value = { ...p, index: s, length: e - s };
      entry.v++;
    }
  }

  // ---- presence --------------------------------------------------------------------------

  queuePresence() {
    if (this.presenceTimer) return;
    this.presenceTimer = setTimeout(() => {
      this.presenceTimer = null;
      this.sendPresence();
    }, 40);
  }

  sendPresence() {
    const doc = this.doc;
    if (!doc || !this.presence || doc.version === null || doc.type === null) return;
    if (doc.hasPending || !this.conn.connected) return; // sent once our ops are acknowledged
    const ta = $("#editor");
    const s = unitToCp(ta.value, ta.selectionStart);
    const e = unitToCp(ta.value, ta.selectionEnd);
    const value = { index: s, length: e - s, name: this.user, color: this.color };
    const last = this.presence.local && this.presence.local.value;
    if (last && last.index === value.index && last.length === value.length && this.presence.local.v === doc.version) return;
    this.presence.submit(value, doc);
    this.presence.local.v = doc.version;
  }

  onPresence() {
    if (this.presence) for (const entry of this.presence.remote.values()) this.catchUp(entry);
    this.renderWho();
    this.render();
  }

  // remote cursors where this page shows them (our unacknowledged ops move them too)
  remoteCursors() {
    if (!this.presence || !this.doc) return [];
    const doc = this.doc;
    let local = null;
    if (doc.inflight) local = doc.pending ? compose(doc.inflight.op, doc.pending) : doc.inflight.op;
    else if (doc.pending) local = doc.pending;
    const out = [];
    for (const [id, entry] of this.presence.remote) {
      const p = entry.value;
      if (!p || typeof p.index !== "number") continue;
      let s = p.index;
      let e = p.index + (p.length || 0);
      if (local && entry.v === doc.version) {
        s = transformPosition(s, local);
        e = transformPosition(e, local);
      }
      const len = cpLength(doc.text);
      s = Math.min(Math.max(0, s), len);
      e = Math.min(Math.max(0, e), len);
      const name = typeof p.name === "string" ? p.name.slice(0, 32) : "someone";
      out.push({ id, start: Math.min(s, e), end: Math.max(s, e), caret: e, name, color: colorOf(name), tint: colorOf(name, 0.22) });
    }
    return out;
  }

  renderWho() {
    const who = $("#who");
    who.replaceChildren();
    if (!this.doc) return;
    const names = new Map([[this.user, true]]);
    if (this.presence) {
      for (const entry of this.presence.remote.values()) {
        const name = entry.value && typeof entry.value.name === "string" ? entry.value.name : null;
        if (name && !names.has(name)) names.set(name, false);
      }
    }
    for (const [name, isMe] of names) {
      const chip = document.createElement("span");
      chip.className = "avatar";
      chip.style.background = colorOf(name);
      chip.textContent = initials(name);
      chip.title = isMe ? `${name} (you)` : name;
      chip.dataset.name = name;
      who.append(chip);
    }
    $("#who-count").textContent = names.size > 1 ? `${names.size} here` : "only you";
  }

  render() {
    if (this.renderQueued) return;
    this.renderQueued = true;
    requestAnimationFrame(() => {
      this.renderQueued = false;
      this.paintBackdrop();
    });
  }

  paintBackdrop() {
    const box = $("#highlights");
    if (!this.doc) {
      box.innerHTML = "";
      return;
    }
    const text = $("#editor").value;
    const cursors = this.remoteCursors();
    const marks = [];
    for (const c of cursors) {
      if (c.end > c.start) marks.push({ at: c.start, kind: "open", c }, { at: c.end, kind: "close", c });
      marks.push({ at: c.caret, kind: "caret", c });
    }
    marks.sort((a, b) => a.at - b.at || (a.kind === "close" ? -1 : 1));
    let html = "";
    let unit = 0;
    let cp = 0;
    for (const m of marks) {
      const next = unit + cpToUnit(text.slice(unit), m.at - cp);
      html += escapeHtml(text.slice(unit, next));
      unit = next;
      cp = m.at;
      const color = m.c.color;
      if (m.kind === "open") html += `<mark style="background:${m.c.tint}">`;
      else if (m.kind === "close") html += "</mark>";
      else
        html += `<span class="caret" data-name="${escapeHtml(m.c.name)}" style="border-color:${color}"><span class="caret-label" style="background:${color}">${escapeHtml(m.c.name)}</span></span>`;
    }
    html += escapeHtml(text.slice(unit));
    box.innerHTML = `${html}\n`;
    this.syncScroll();
  }

  syncScroll() {
    const ta = $("#editor");
    $("#backdrop").scrollTop = ta.scrollTop;
    $("#backdrop").scrollLeft = ta.scrollLeft;
  }

  // ---- sharing ---------------------------------------------------------------------------

  async openShare() {
    const dialog = $("#share-dialog");
    $("#share-error").textContent = "";
    $("#share-doc").textContent = this.doc.d;
    try {
      const [users, members] = await Promise.all([api("/api/users"), api(`/api/docs/${encodeURIComponent(this.doc.d)}/members`)]);
      const options = $("#user-options");
      options.replaceChildren(...users.users.filter((u) => u !== this.user).map((u) => Object.assign(document.createElement("option"), { value: u })));
      this.renderMembers(members.members);
    } catch (err) {
      $("#share-error").textContent = err.message;
    }
    dialog.showModal();
    $("#share-user").focus();
  }

  renderMembers(members) {
    const list = $("#members");
    list.replaceChildren();
    for (const m of members) {
      const li = document.createElement("li");
      li.innerHTML = `<span class="avatar small" style="background:${colorOf(m.user)}">${escapeHtml(initials(m.user))}</span><span>${escapeHtml(m.user)}</span><span class="role role-${m.role}">${m.role}</span>`;
      if (m.role !== "owner") {
        const remove = document.createElement("button");
        remove.type = "button";
        remove.className = "link";
        remove.textContent = "Remove";
        remove.addEventListener("click", async () => {
          await api(`/api/docs/${encodeURIComponent(this.doc.d)}/members/${encodeURIComponent(m.user)}`, { method: "DELETE" });
          const again = await api(`/api/docs/${encodeURIComponent(this.doc.d)}/members`);
          this.renderMembers(again.members);
        });
        li.append(remove);
      }
      list.append(li);
    }
  }

  async share() {
    const user = $("#share-user").value.trim();
    const role = $("#share-role").value;
    $("#share-error").textContent = "";
    try {
      await api(`/api/docs/${encodeURIComponent(this.doc.d)}/members`, { method: "POST", body: { user, role } });
      $("#share-user").value = "";
      const members = await api(`/api/docs/${encodeURIComponent(this.doc.d)}/members`);
      this.renderMembers(members.members);
      toast(`Shared with ${user} (${role})`);
    } catch (err) {
      $("#share-error").textContent = err.message;
    }
  }

  async onAccess({ d, role }) {
    await this.loadDocs();
    if (this.doc && this.doc.d === d) {
      this.role = role;
      $("#readonly").hidden = role !== "read";
      $("#editor").readOnly = role === "read" || role === null;
      if (role === null) {
        toast(`You no longer have access to “${d}”`, { kind: "error" });
        location.hash = "";
      }
    }
  }

  // ---- notifications ---------------------------------------------------------------------

  async loadInbox() {
    try {
      const reply = await api("/api/notifications?limit=50");
      this.notifications = reply.notifications;
      this.setUnread(reply.unread);
    } catch {
      /* the bell stays as it was */
    }
    this.renderInbox();
  }

  setUnread(n) {
    this.unread = n;
    const badge = $("#badge");
    badge.textContent = n > 99 ? "99+" : String(n);
    badge.hidden = n === 0;
    $("#bell").setAttribute("aria-label", `Notifications, ${n} unread`);
    if (n === 0) for (const x of this.notifications) x.read = true;
    this.renderInbox();
  }

  describe(n) {
    if (n.kind === "mention") return `<b>${escapeHtml(n.author || "someone")}</b> mentioned you in <b>${escapeHtml(n.d)}</b>`;
    if (n.kind === "share") return `<b>${escapeHtml(n.author || "someone")}</b> shared <b>${escapeHtml(n.d)}</b> with you`;
    return escapeHtml(n.kind);
  }

  onNotify({ notification, unread }) {
    if (!this.notifications.some((x) => x.id === notification.id)) this.notifications.unshift(notification);
    this.setUnread(unread);
    if (notification.kind === "share") this.loadDocs();
    const who = notification.author || "someone";
    const text = notification.kind === "mention" ? `${who} mentioned you in ${notification.d}` : `${who} shared ${notification.d} with you`;
    toast(text, { action: () => (location.hash = `#/d/${encodeURIComponent(notification.d)}`) });
  }

  renderInbox() {
    const list = $("#inbox-list");
    list.replaceChildren();
    if (!this.notifications.length) {
      const li = document.createElement("li");
      li.className = "muted";
      li.textContent = "Nothing yet. When someone mentions you with @" + (this.user || "name") + ", it shows up here.";
      list.append(li);
      return;
    }
    for (const n of this.notifications) {
      const li = document.createElement("li");
      li.className = n.read ? "read" : "unread";
      li.dataset.id = n.id;
      li.innerHTML = `<div class="what">${this.describe(n)}</div><div class="excerpt">${escapeHtml(n.excerpt)}</div><div class="when">${ago(n.ts)}</div>`;
      li.addEventListener("click", () => {
        if (!n.read) this.markRead([n.id]);
        $("#inbox").hidden = true;
        location.hash = `#/d/${encodeURIComponent(n.d)}`;
      });
      list.append(li);
    }
  }

  toggleInbox() {
    const panel = $("#inbox");
    panel.hidden = !panel.hidden;
    if (!panel.hidden) this.loadInbox();
  }

  async markRead(ids) {
    try {
      const reply = await api("/api/notifications/read", { method: "POST", body: ids ? { ids } : { all: true } });
      for (const n of this.notifications) if (!ids || ids.includes(n.id)) n.read = true;
      this.setUnread(reply.unread);
    } catch (err) {
      toast(err.message, { kind: "error" });
    }
  }
}

const app = new App();
// for people poking at it from the console, and for the browser tests
window.mailslot = {
  app,
  get conn() {
    return app.conn;
  },
  get doc() {
    return app.doc;
  },
};
app.start();
