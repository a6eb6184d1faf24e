#!/usr/bin/env node
'use strict';
// A stock ShareDB 7 server: the conformance suite's reference target and the collaboration
// benchmark's peer.
//
//   node bench/sharedb_server.js [--port 0] [--host 127.0.0.1] [--stdin-lifeline]
//
// In-memory database, `ot-text-unicode` registered (with the `transformPresence` that ShareDB
// needs to relay cursors, see js/text-unicode-presence.js), presence enabled, one WebSocket per
// client at `/ws`, the same path as mailslot. Prints `LISTENING <port>` on stdout once it accepts
// connections; stops on SIGTERM/SIGINT, and with --stdin-lifeline also when stdin closes (so a
// parent that dies takes it along).
//
// WebSocket <-> ShareDB stream adapter: a small hand-written one rather than
// @teamwork/websocket-json-stream, for two reasons. That package closes the socket on a frame that
// is not JSON, while the protocol asks for an error reply and an open socket; and it waits for each
// frame to be flushed before writing the next, which would slow ShareDB down in the benchmark. Here
// a frame is handed to `ws.send` at once (ws queues it), which is ShareDB's best case; a client
// that stops reading makes that queue grow, exactly as with the stock adapter.

const path = require('path');
const http = require('http');
const {Duplex} = require('stream');
const {createRequire} = require('module');

const jsRequire = createRequire(path.resolve(__dirname, '..', 'js', 'package.json'));
const ShareDB = jsRequire('sharedb');
const {WebSocketServer} = jsRequire('ws');
const textUnicode = jsRequire('./text-unicode-presence.js');

function parseArgs(argv) {
  const args = {port: 0, host: '127.0.0.1', stdinLifeline: false};
  for (let i = 0; i < argv.length; i++) {
    const name = argv[i];
    const value = argv[i + 1];
    if (name === '--port') {
      args.port = Number(value);
      i++;
    } else if (name === '--stdin-lifeline') {
      args.stdinLifeline = true;
    } else if (name === '--host') {
      args.host = value;
      i++;
    } else {
      throw new Error(`unknown argument ${name}`);
    }
  }
  if (!Number.isInteger(args.port) || args.port < 0 || args.port > 65535) {
    throw new Error(`--port must be an integer 0..65535`);
  }
  return args;
}

// One JSON object per text frame in both directions.
class JsonSocketStream extends Duplex {
  constructor(ws) {
    super({objectMode: true, allowHalfOpen: false, emitClose: false});
    this.ws = ws;
    ws.on('message', (data, isBinary) => {
      let value;
      try {
        value = JSON.parse(isBinary ? data.toString('utf8') : data);
      } catch (err) {
        this._replyError(`frame is not JSON: ${err.message}`);
        return;
      }
      if (value === null || typeof value !== 'object' || Array.isArray(value)) {
        this._replyError('frame is not a JSON object');
        return;
      }
      this.push(value);
    });
    ws.on('close', () => {
      this.push(null);
      this.destroy();
    });
    ws.on('error', () => this.destroy());
  }

  _replyError(message) {
    if (this.ws.readyState !== 1) return;
    this.ws.send(JSON.stringify({error: {code: 'ERR_MESSAGE_BADLY_FORMED', message}}));
  }

  _read() {}

  _write(object, _encoding, callback) {
    if (this.ws.readyState === 1) this.ws.send(JSON.stringify(object));
    callback();
  }

  _final(callback) {
    if (this.ws.readyState === 1) this.ws.close(1000, 'stream end');
    callback();
  }

  _destroy(error, callback) {
    if (this.ws.readyState === 0 || this.ws.readyState === 1) {
      this.ws.close(error ? 1011 : 1000, error ? 'stream error' : 'stream end');
    }
    this.emit('close');
    callback(error);
  }
}

function main() {
  const args = parseArgs(process.argv.slice(2));
  ShareDB.types.register(textUnicode);
  ShareDB.logger.setMethods({info: () => {}, warn: () => {}});
  const backend = new ShareDB({presence: true, doNotForwardSendPresenceErrorsToClient: true});

  const server = http.createServer((req, res) => {
    res.writeHead(404, {'content-type': 'text/plain'});
    res.end('ShareDB reference server: WebSocket at /ws\n');
  });
  const wss = new WebSocketServer({server, path: '/ws', perMessageDeflate: false});
  wss.on('connection', (ws, req) => {
    backend.listen(new JsonSocketStream(ws), req);
  });

  const stop = () => {
    for (const ws of wss.clients) ws.terminate();
    server.close(() => process.exit(0));
    setTimeout(() => process.exit(0), 1000).unref();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  if (args.stdinLifeline) {
    process.stdin.on('end', stop);
    process.stdin.on('error', stop);
    process.stdin.resume();
  }

  server.listen(args.port, args.host, () => {
    process.stdout.write(`LISTENING ${server.address().port}\n`);
  });
}

main();
