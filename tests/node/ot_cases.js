#!/usr/bin/env node
// Random cases for the text-unicode agreement test: the reference results of the npm
// `ot-text-unicode` type, printed as JSON, for mailslot.collab.ot to reproduce case by case.
//
// usage: node tests/node/ot_cases.js SEED COUNT
//
// Each case has a random text (ASCII, accented letters, CJK, emoji, other astral characters and
// ZWJ sequences), two random ops `a` and `b` made against it, an op `c` made against apply(text, a),
// a messy op for normalize, a malformed op for checkOp and an op that is too long for the text,
// and `out` with what ot-text-unicode answers for each function (or {"error": message}).
'use strict'

const path = require('path')
const { createRequire } = require('module')

const jsRequire = createRequire(path.join(__dirname, '..', '..', 'js', 'package.json'))
const { type } = jsRequire('ot-text-unicode')

// mulberry32: small, seedable, the same sequence on every machine.
function rng(seed) {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

const ALPHABETS = [
  Array.from('abcdefghijklmnopqrstuvwxyz  \n'),
  Array.from('éüñçøåßÆœ'),
  ['e\u0301', 'a\u0308'], // combining marks: two code points each
  Array.from('中文字漢'),
  Array.from('😀🤖👻💃🎉'),
  Array.from('𝔘𝕏𐍈🀄𠀋'),
  ['👩\u200d💻', '🏳\ufe0f\u200d🌈'], // ZWJ sequences: several code points
]

function makeGen(random) {
  const int = n => Math.floor(random() * n) // 0 .. n-1
  const pick = xs => xs[int(xs.length)]
  const chance = p => random() < p

  const randomText = maxLen => {
    const len = int(maxLen + 1)
    const alphabet = chance(0.5) ? ALPHABETS[0] : pick(ALPHABETS)
    let s = ''
    for (let i = 0; i < len; i++) s += pick(chance(0.8) ? alphabet : pick(ALPHABETS))
    return s
  }

  // A valid op against `doc` (an array of code points). With raw = true it may keep adjacent
  // inserts or deletes (valid for checkOp, not normalized); never adjacent or trailing skips.
  const randomOp = (doc, raw) => {
    const op = []
    const push = c => {
      const last = op[op.length - 1]
      if (typeof c === 'number' && typeof last === 'number') op[op.length - 1] = last + c
      else op.push(c)
    }
    let pos = 0
    const steps = 1 + int(6)
    for (let s = 0; s < steps; s++) {
      const left = doc.length - pos
      const r = random()
      if (r < 0.3 && left > 0) {
        const k = 1 + int(Math.min(left, 8))
        push(k)
        pos += k
      } else if (r < 0.65) {
        let t = randomText(4)
        if (t === '') t = 'x'
        push(t)
      } else if (left > 0) {
        const k = 1 + int(Math.min(left, 6))
        push({ d: chance(0.5) ? k : doc.slice(pos, pos + k).join('') })
        pos += k
      }
    }
    if (typeof op[op.length - 1] === 'number') op.pop()
    return raw ? op : type.normalize(clone(op))
  }

  // `op` with no-op components sprinkled in, for normalize.
  const messy = op => {
    const out = []
    for (const c of op) {
      if (chance(0.3)) out.push(pick([0, '', { d: 0 }, { d: '' }]))
      out.push(c)
    }
    if (chance(0.3)) out.push(pick([0, 3, '', { d: 0 }]))
    return out
  }

  // A malformed op (or, now and then, a valid but unnormalized one) for checkOp. Only faults
  // that both checkOp and mailslot's check judge the same way: mailslot is stricter about
  // floats, booleans, extra keys and surrogates, on purpose, so those are not generated.
  const BAD = [0, -1, -7, '', { d: 0 }, { d: '' }, { d: -2 }, { d: null }, { d: [1] }, { d: true },
    null, [1], {}, { e: 1 }]
  const badOp = op => {
    const r = int(7)
    const out = clone(op)
    if (r === 0) return pick([{}, 'abc', 5, null, { d: 1 }])
    if (r === 1) return out.concat([1 + int(5)]) // trailing skip (or adjacent skips + trailing)
    if (r === 2) {
      out.splice(int(out.length + 1), 0, 2, 3, 'x') // adjacent skips
      return out
    }
    if (r === 3) return out.concat(['a', 'b']) // adjacent inserts: valid for checkOp
    if (r === 4) return out.concat([{ d: 1 }, { d: 'x' }]) // adjacent deletes: valid
    out.splice(int(out.length + 1), 0, clone(pick(BAD)))
    return out
  }

  return { int, randomText, randomOp, messy, badOp, chance }
}

const clone = x => JSON.parse(JSON.stringify(x))

function attempt(fn) {
  try {
    const v = fn()
    return v === undefined ? null : v
  } catch (e) {
    return { error: String(e && e.message ? e.message : e) }
  }
}

function makeCase(gen) {
  const text = gen.randomText(gen.chance(0.1) ? 60 : 16)
  const doc = Array.from(text)
  const a = gen.randomOp(doc, gen.chance(0.2))
  const b = gen.randomOp(doc, gen.chance(0.2))
  const afterA = type.apply(text, clone(a))
  const c = gen.randomOp(Array.from(afterA), gen.chance(0.2))
  const messy = gen.messy(a)
  const bad = gen.badOp(a)
  const tooLong = [doc.length + 1 + gen.int(3), 'x']
  const positions = []
  for (let i = 0; i < 3; i++) positions.push(gen.int(doc.length + 1))
  const selection = [gen.int(doc.length + 1), gen.int(doc.length + 1)]

  const out = {
    applyA: attempt(() => type.apply(text, clone(a))),
    applyB: attempt(() => type.apply(text, clone(b))),
    aLeft: attempt(() => type.transform(clone(a), clone(b), 'left')),
    aRight: attempt(() => type.transform(clone(a), clone(b), 'right')),
    bLeft: attempt(() => type.transform(clone(b), clone(a), 'left')),
    bRight: attempt(() => type.transform(clone(b), clone(a), 'right')),
    composeAC: attempt(() => type.compose(clone(a), clone(c))),
    positions: positions.map(p => type.transformPosition(p, clone(a))),
    selection: attempt(() => type.transformSelection(selection, clone(a))),
    makeInvertible: attempt(() => type.makeInvertible(clone(a), text)),
    invertA: attempt(() => type.invert(type.makeInvertible(clone(a), text))),
    stripA: attempt(() => type.stripInvertible(clone(a))),
    normalizeMessy: attempt(() => type.normalize(clone(messy))),
    checkBad: attempt(() => { type.checkOp(clone(bad)); return true }),
    applyTooLong: attempt(() => type.apply(text, clone(tooLong))),
  }
  out.applyComposed = attempt(() => type.apply(text, out.composeAC))
  return { text, a, b, c, messy, bad, tooLong, positions, selection, out }
}

function main() {
  const seed = Number(process.argv[2] || 1)
  const count = Number(process.argv[3] || 100)
  if (!Number.isInteger(seed) || !Number.isInteger(count) || count < 0) {
    process.stderr.write('usage: node ot_cases.js SEED COUNT\n')
    process.exit(2)
  }
  const gen = makeGen(rng(seed))
  const cases = []
  for (let i = 0; i < count; i++) cases.push(makeCase(gen))
  process.stdout.write(JSON.stringify({ seed, count, version: require(
    jsRequire.resolve('ot-text-unicode/package.json')).version, cases }))
}

main()
