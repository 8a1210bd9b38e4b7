// Browser stand-ins so amazon-connect-chatjs (a browser library) runs in Node, and
// helpers to start connect-chatd's emulator and script it through its admin API.
"use strict";
const { spawn } = require("node:child_process");
const path = require("node:path");
const readline = require("node:readline");

global.window = global;
global.self = global;
Object.defineProperty(global, "navigator", {
  value: { onLine: true, userAgent: "node connect-chatd-interop", language: "en-US" },
  configurable: true,
});
global.document = {
  hidden: false,
  visibilityState: "visible",
  addEventListener() {},
  removeEventListener() {},
  createElement: () => ({ style: {}, setAttribute() {}, appendChild() {} }),
  getElementsByTagName: () => [],
  head: { appendChild() {} },
  body: { appendChild() {} },
};
global.addEventListener = () => {};
global.removeEventListener = () => {};
global.WebSocket = require("ws");

require("amazon-connect-chatjs");
const connect = global.connect;

const ROOT = path.resolve(__dirname, "..", "..");
const BINARY = process.env.CONNECT_CHATD_BIN || path.join(ROOT, "target", "debug", "connect-chatd");

async function startEmulator() {
  const proc = spawn(BINARY, ["emulator", "--listen", "127.0.0.1:0", "--log-level", "warn"], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  const line = await new Promise((resolve, reject) => {
    const rl = readline.createInterface({ input: proc.stdout });
    rl.once("line", resolve);
    proc.once("exit", (code) => reject(new Error(`emulator exited with ${code}`)));
  });
  const endpoint = JSON.parse(line).Endpoint;
  const admin = async (method, p, body) => {
    const resp = await fetch(endpoint + p, {
      method,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await resp.text();
    if (!resp.ok) throw new Error(`${method} ${p}: ${resp.status} ${text}`);
    return text ? JSON.parse(text) : {};
  };
  return { proc, endpoint, admin, stop: () => proc.kill("SIGTERM") };
}

/** Resolves when `predicate()` is true, polling; rejects after `ms`. */
async function until(predicate, ms = 20000, what = "condition") {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await predicate()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

module.exports = { connect, startEmulator, until };
