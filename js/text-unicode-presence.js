'use strict';
// The `ot-text-unicode` type with presence support, for ShareDB on both ends.
//
// ShareDB only relays presence for types that define `transformPresence`, and ot-text-unicode 4
// does not, so every ShareDB app that shows text cursors wraps it. mailslot's presence value is
// `{index, length}` (PROTOCOL.md), counted in code points like the type's positions. This module
// is the same type object (name and URI unchanged) plus `transformPresence`; register it with
// `ShareDB.types.register(...)` on the server and with the client's `types.register(...)` before
// any document is loaded.
//
// Tie rule: an insert exactly at a cursor leaves another user's cursor before the insert, and
// moves the author's own cursor after it (as rich-text does).

const {type: base} = require('ot-text-unicode');

// Code points in a JS string (surrogate pairs count once).
function strPosToUni(s) {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const code = s.charCodeAt(i);
    if (code < 0xd800 || code > 0xdbff || i + 1 === s.length) n++;
    else {
      const next = s.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) i++;
      n++;
    }
  }
  return n;
}

function transformIndex(cursor, op, stickAfter) {
  let pos = 0;
  for (let i = 0; i < op.length && (cursor > pos || (stickAfter && cursor === pos)); i++) {
    const c = op[i];
    if (typeof c === 'number') {
      pos += c;
    } else if (typeof c === 'string') {
      const n = strPosToUni(c);
      pos += n;
      cursor += n;
    } else {
      const n = typeof c.d === 'number' ? c.d : strPosToUni(c.d);
      cursor -= Math.min(n, cursor - pos);
    }
  }
  return cursor;
}

function transformPresence(presence, op, isOwnOp) {
  if (presence == null) return null;
  if (typeof presence.index !== 'number') throw new Error('presence must be {index, length}');
  const length = typeof presence.length === 'number' ? presence.length : 0;
  const start = transformIndex(presence.index, op, !!isOwnOp);
  const end = transformIndex(presence.index + length, op, !!isOwnOp);
  return Object.assign({}, presence, {index: start, length: Math.max(0, end - start)});
}

module.exports = Object.assign({}, base, {transformPresence, transformIndex});
