// The browser editor's own OT (web/client.js) against the npm ot-text-unicode, on random cases
// with astral characters: transform (both sides), compose, apply, transformPosition, and diff
// (the op a textarea edit becomes). Prints "N cases, M mismatches" and exits 1 on a mismatch.
import { createRequire } from 'module';
import * as C from '../../web/client.js';

const require = createRequire(import.meta.url);
const { type } = require('../../js/node_modules/ot-text-unicode');

let seed = Number(process.argv[2] || 7);
const rnd = (n) => {
  seed = (seed * 1103515245 + 12345) % 2147483648;
  return seed % n;
};
const alphabet = ['a', 'b', '😀', 'c', ' ', 'é', '𝛑', '\n'];
const text = (n) => Array.from({ length: n }, () => alphabet[rnd(alphabet.length)]).join('');
function op(doc) {
  const len = C.cpLength(doc);
  const pos = rnd(len + 1);
  const out = [pos];
  if (rnd(2) && pos < len) out.push({ d: 1 + rnd(Math.min(3, len - pos)) });
  else out.push(text(1 + rnd(3)));
  if (rnd(3) === 0) out.push(rnd(2) + 1, text(1));
  return type.normalize(out);
}

const CASES = 5000;
let mismatches = 0;
const report = (what, ...values) => {
  if (mismatches++ < 5) console.error(what, JSON.stringify(values));
};
for (let i = 0; i < CASES; i++) {
  const doc = text(rnd(12));
  const a = op(doc);
  const b = op(doc);
  let ok = true;
  try {
    type.apply(doc, a);
    type.apply(doc, b);
  } catch {
    ok = false;
  }
  if (!ok) continue;
  for (const side of ['left', 'right']) {
    const mine = JSON.stringify(C.transform(a, b, side));
    const theirs = JSON.stringify(type.transform(a, b, side));
    if (mine !== theirs) report('transform', doc, a, b, side, mine, theirs);
  }
  const afterA = type.apply(doc, a);
  if (C.apply(doc, a) !== afterA) report('apply', doc, a);
  const c = op(afterA);
  try {
    type.apply(afterA, c);
    if (JSON.stringify(C.compose(a, c)) !== JSON.stringify(type.compose(a, c)))
      report('compose', doc, a, c);
  } catch {
    /* c does not fit: skip */
  }
  const d = C.diff(doc, afterA);
  if (type.apply(doc, d) !== afterA) report('diff', doc, afterA, d);
  const pos = rnd(C.cpLength(doc) + 1);
  if (C.transformPosition(pos, a) !== type.transformPosition(pos, a))
    report('transformPosition', doc, pos, a);
}
console.log(`${CASES} cases, ${mismatches} mismatches`);
process.exit(mismatches ? 1 : 0);
