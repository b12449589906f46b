// JsSIP 3 in Node, with the ws package as its W3C WebSocket: one OPTIONS, REGISTER or
// MESSAGE to the responder, then exit.  Prints one JSON line: {"ok", "status", "reason"}.
//   node jssip_client.cjs WS_URL ACTION TARGET_URI
// ACTION: options | register | message.  JSSIP_PASSWORD is alice's password for a Digest
// challenge.  For wss://, NODE_EXTRA_CA_CERTS names the certificate to trust.  Exits within
// 10 s whatever happens.
"use strict";
const WebSocket = require("ws");
global.WebSocket = WebSocket; // JsSIP's WebSocketInterface uses the global one
const JsSIP = require("jssip");

const [url, action, target] = process.argv.slice(2);
const done = (result) => {
  process.stdout.write(JSON.stringify(result) + "\n");
  process.exit(result.ok ? 0 : 1);
};
setTimeout(() => done({ ok: false, reason: "timeout" }), 10000);

const socket = new JsSIP.WebSocketInterface(url);
const ua = new JsSIP.UA({
  sockets: [socket],
  uri: "sip:alice@example.invalid",
  password: process.env.JSSIP_PASSWORD || "unused",
  register: action === "register",
  ...(action === "register" ? { registrar_server: target } : {}),
  connection_recovery_min_interval: 1,
  connection_recovery_max_interval: 2,
});
const handlers = {
  succeeded: (e) => done({ ok: true, status: e.response.status_code, reason: e.response.reason_phrase }),
  failed: (e) => done({ ok: false, status: e.response && e.response.status_code, reason: e.cause }),
};
ua.on("registered", (e) => done({ ok: true, status: e.response.status_code, reason: e.response.reason_phrase }));
ua.on("registrationFailed", (e) => done({ ok: false, status: e.response && e.response.status_code, reason: e.cause }));
ua.on("connected", () => {
  if (action === "options") ua.sendOptions(target, null, { eventHandlers: handlers });
  else if (action === "message") ua.sendMessage(target, "hello from JsSIP", { eventHandlers: handlers });
});
ua.on("disconnected", (e) => { if (e.error) done({ ok: false, reason: "disconnected" }); });
ua.start();
