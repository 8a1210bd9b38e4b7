// Baseline for the Rust burst benchmark: how fast the official web client,
// amazon-connect-chatjs, receives a burst of chat messages.
//
// Joins an existing chat (on an emulator someone else runs) as the CUSTOMER, prints
// `READY` once subscribed, counts the MESSAGE items it receives, and when COUNT have
// arrived prints `{"received":N,"first_ms":X,"last_ms":Y}` (milliseconds since READY)
// and exits 0. Nothing else goes to stdout; diagnostics go to stderr. Exits 1 if it
// cannot connect within 30 s or nothing arrives for 60 s.
//
//   ENDPOINT=http://127.0.0.1:8600 CONTACT_ID=… PARTICIPANT_ID=… PARTICIPANT_TOKEN=… \
//   COUNT=500 node interop/chatjs/burst.js
"use strict";
const fs = require("node:fs");
const { performance } = require("node:perf_hooks");

// Keep stdout for the two contract lines: anything chatjs (or its socket manager)
// writes through console goes to stderr instead.
for (const level of ["log", "info", "debug", "trace", "warn"]) {
  console[level] = (...args) => console.error(...args);
}

// Browser stand-ins only; harness.js starts no emulator unless asked.
const { connect } = require("./harness");

// chatjs reports the connection established when the websocket opens, before the
// emulator has acknowledged the `aws/chat` subscribe, and the emulator drops what it
// publishes before that. So READY also waits for a successful `aws/subscribe` answer,
// seen by a listener on chatjs's socket that removes itself once it has it.
let subscribed = false;
let established = false;
const BaseWebSocket = global.WebSocket;
global.WebSocket = class extends BaseWebSocket {
  constructor(...args) {
    super(...args);
    const watch = (data, isBinary) => {
      if (isBinary) return;
      const text = data.toString();
      if (!text.includes("aws/subscribe")) return;
      let frame;
      try {
        frame = JSON.parse(text);
      } catch {
        return;
      }
      if (frame.topic !== "aws/subscribe") return;
      if (frame.content && frame.content.status === "success") {
        this.off("message", watch);
        subscribed = true;
        maybeReady();
      } else {
        process.stderr.write(`burst.js: subscribe answered ${text}\n`);
      }
    };
    this.on("message", watch);
  }
};

const CONNECT_TIMEOUT_MS = 30000;
const IDLE_TIMEOUT_MS = 60000;

function fail(message) {
  process.stderr.write(`burst.js: ${message}\n`);
  process.exit(1);
}

function out(line) {
  fs.writeSync(1, line + "\n");
}

const env = process.env;
for (const name of ["ENDPOINT", "CONTACT_ID", "PARTICIPANT_ID", "PARTICIPANT_TOKEN", "COUNT"]) {
  if (!env[name]) fail(`environment variable ${name} is required`);
}
const COUNT = Number(env.COUNT);
if (!Number.isInteger(COUNT) || COUNT < 1) fail(`COUNT must be a positive integer, got ${env.COUNT}`);

connect.ChatSession.setGlobalConfig({
  region: "us-east-1",
  endpoint: env.ENDPOINT,
  loggerConfig: { level: connect.LogLevel.ERROR },
});
const session = connect.ChatSession.create({
  chatDetails: {
    ContactId: env.CONTACT_ID,
    ParticipantId: env.PARTICIPANT_ID,
    ParticipantToken: env.PARTICIPANT_TOKEN,
  },
  options: { region: "us-east-1" },
  type: connect.ChatSession.SessionTypes.CUSTOMER,
  disableCSM: true,
});

let ready = false;
let t0 = 0;
let count = 0;
let firstMs = 0;

// The only per-message work: a type check and a counter (plus a timestamp on the
// first and the last).
session.onMessage((event) => {
  if (!ready || event.data.Type !== "MESSAGE") return;
  count++;
  if (count === 1) firstMs = performance.now() - t0;
  if (count === COUNT) {
    const lastMs = performance.now() - t0;
    out(JSON.stringify({ received: count, first_ms: firstMs, last_ms: lastMs }));
    process.exit(0);
  }
});

const connectTimer = setTimeout(
  () => fail(`not connected after ${CONNECT_TIMEOUT_MS / 1000} s`),
  CONNECT_TIMEOUT_MS,
);

session.onConnectionEstablished(() => {
  // chatjs fires this twice on a first connect (socket open, then connect()'s own
  // success), and again after a reconnect; only the first matters here.
  established = true;
  maybeReady();
});

function maybeReady() {
  if (ready || !established || !subscribed) return;
  clearTimeout(connectTimer);
  ready = true;
  out("READY");
  t0 = performance.now();
  // Idle watchdog that costs nothing per message: once a second, see whether the
  // count moved.
  let seen = 0;
  let lastProgress = performance.now();
  setInterval(() => {
    const now = performance.now();
    if (count !== seen) {
      seen = count;
      lastProgress = now;
    } else if (now - lastProgress >= IDLE_TIMEOUT_MS) {
      fail(`nothing arrived for ${IDLE_TIMEOUT_MS / 1000} s (received ${count} of ${COUNT})`);
    }
  }, 1000);
}
session.onConnectionBroken(() => process.stderr.write("burst.js: connection broken\n"));
session.onEnded(() => fail(`the chat ended (received ${count} of ${COUNT})`));

session.connect().then(
  (result) => {
    if (!result) fail("connect() resolved without success");
  },
  (err) => fail(`connect() failed: ${err && (err.message || JSON.stringify(err))}`),
);
