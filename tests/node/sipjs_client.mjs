// SIP.js 0.21 in Node, with the ws package as its WebSocket and a stub media handler
// (an SDP offer of PCMU, no real media): one INVITE to the responder.  Prints one JSON
// line: {"ok", "status", "reason", "established", "ended"}.
//   node sipjs_client.mjs WSS_URL TARGET_URI HOLD_MS
// An answered call is held HOLD_MS, then ended with BYE.  For wss://,
// NODE_EXTRA_CA_CERTS names the certificate to trust.  Exits within 10 s.
import WebSocket from "ws";
import { UserAgent, Inviter, SessionState } from "sip.js";

globalThis.WebSocket = WebSocket; // SIP.js's transport uses the global one
const [server, target, holdMs] = process.argv.slice(2);
const result = { ok: false, status: null, reason: null, established: false, ended: false };
const done = (ok) => {
  result.ok = ok;
  process.stdout.write(JSON.stringify(result) + "\n");
  process.exit(ok ? 0 : 1);
};
setTimeout(() => { result.reason = "timeout"; done(false); }, 10000);

// The stub media handler: what SIP.js needs of one, without WebRTC.
const sdp = (version) =>
  "v=0\r\no=sipjs 1 " + version + " IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n" +
  "m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n";
let version = 1;
const stubHandler = () => ({
  getDescription: async () => ({ body: sdp(version++), contentType: "application/sdp" }),
  setDescription: async () => {},
  hasDescription: (type) => type === "application/sdp",
  rollbackDescription: async () => {},
  sendDtmf: () => false,
  close: () => {},
});

const ua = new UserAgent({
  uri: UserAgent.makeURI("sip:bob@example.invalid"),
  transportOptions: { server },
  sessionDescriptionHandlerFactory: stubHandler,
  logLevel: "error",
});
await ua.start();
const inviter = new Inviter(ua, UserAgent.makeURI(target));
inviter.stateChange.addListener((state) => {
  if (state === SessionState.Established) {
    result.established = true;
    setTimeout(() => inviter.bye({
      requestDelegate: { onAccept: (r) => { result.ended = r.message.statusCode === 200; done(true); } },
    }), Number(holdMs));
  }
});
await inviter.invite({
  requestDelegate: {
    onAccept: (r) => { result.status = r.message.statusCode; },
    onReject: (r) => {
      result.status = r.message.statusCode;
      result.reason = r.message.reasonPhrase;
      done(true);
    },
  },
});
