#!/usr/bin/env node
// Replays a real editing trace through the npm `ot-text-unicode` type, for `mailslot bench ot`.
//
// usage: node bench/ot_replay.js TRACE.json.gz
//
// Each patch [pos, deleted, inserted] becomes an op ([pos, {d: deleted}, inserted], empty parts
// left out) before the clock starts, as on the Python side; then every op goes through
// `type.apply` (which checks it) in order. Prints one JSON object: the op count, the seconds
// spent applying, whether the final text equals `endContent`, and the versions used.
'use strict'

const fs = require('fs')
const path = require('path')
const zlib = require('zlib')
const { createRequire } = require('module')

const jsRequire = createRequire(path.join(__dirname, '..', 'js', 'package.json'))
const { type } = jsRequire('ot-text-unicode')
const version = require(jsRequire.resolve('ot-text-unicode/package.json')).version

function toOp([pos, deleted, inserted]) {
  const op = []
  if (deleted === 0 && inserted.length === 0) return op
  if (pos > 0) op.push(pos)
  if (deleted > 0) op.push({ d: deleted })
  if (inserted.length > 0) op.push(inserted)
  return op
}

function main() {
  const file = process.argv[2]
  if (!file) {
    process.stderr.write('usage: node ot_replay.js TRACE.json.gz\n')
    process.exit(2)
  }
  const trace = JSON.parse(zlib.gunzipSync(fs.readFileSync(file)).toString('utf8'))
  const ops = []
  for (const txn of trace.txns) {
    for (const patch of txn.patches) {
      const op = toOp(patch)
      if (op.length > 0) ops.push(op)
    }
  }
  let doc = type.create(trace.startContent)
  const started = process.hrtime.bigint()
  for (let i = 0; i < ops.length; i++) doc = type.apply(doc, ops[i])
  const seconds = Number(process.hrtime.bigint() - started) / 1e9
  process.stdout.write(JSON.stringify({
    trace: path.basename(file),
    ops: ops.length,
    seconds,
    ok: doc === trace.endContent,
    node: process.version,
    'ot-text-unicode': version,
  }) + '\n')
}

main()
