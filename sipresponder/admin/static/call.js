// A call's page: its ladder (client, responder, and RTP once there is media), each
// message's text on a click, its verdicts; read again when the feed says it changed.
"use strict";

const callId = decodeURIComponent(location.pathname.slice("/calls/".length));
const quoted = encodeURIComponent(callId);

function kind(message, violations) {
  const classes = ["arrow", message.direction === "in" ? "right" : "left"];
  if (message.status !== undefined) classes.push(codeClass(message.status));
  else classes.push("request");
  if (message.retransmission) classes.push("retrans");
  if (message.fault) classes.push("fault");
  if (violations.some((v) => Math.abs(v.time - message.time) < 0.0005)) classes.push("violation");
  return classes.join(" ");
}

function ladder(call) {
  const start = call.messages.length ? call.messages[0].time : call.first;
  const media = call.media && call.media.length > 0;
  const first = call.messages[0];
  const lanes = el(
    "div",
    { class: "lanes" + (media ? " with-media" : "") },
    el("span", {}, ""),
    el(
      "div",
      { class: "ends" },
      el("span", {}, "client " + (first ? (first.direction === "in" ? first.src : first.dst) : "")),
      el("span", {}, "responder " + (first ? (first.direction === "in" ? first.dst : first.src) : ""))
    ),
    media ? el("div", { class: "lane" }, "RTP") : null
  );
  const rows = [lanes];
  call.messages.forEach((message, index) => {
    const offset = "+" + ((message.time - start) * 1000).toFixed(1) + " ms";
    const label = message.summary + (message.retransmission ? " (again)" : "") + (message.fault ? " [" + message.fault + "]" : "");
    rows.push(
      el(
        "div",
        { class: "step" + (media ? " with-media" : "") },
        el("span", { class: "offset" }, offset),
        el("button", {
          type: "button",
          class: kind(message, call.violations),
          "data-index": String(index),
          title: message.direction === "in" ? message.src + " → " + message.dst : message.src + " → " + message.dst,
          onclick: () => {
            document.getElementById("raw").textContent = message.raw;
            for (const other of document.querySelectorAll(".arrow.selected")) other.classList.remove("selected");
            document.querySelector('.arrow[data-index="' + index + '"]').classList.add("selected");
          },
        }, label)
      )
    );
  });
  if (media) {
    for (const stream of call.media) {
      rows.push(
        el(
          "div",
          { class: "step with-media" },
          el("span", { class: "offset" }, ""),
          el("span", {}, ""),
          el("div", { class: "rtp" }, stream.codec + " · in " + stream.packets_in + " · out " + stream.packets_out + " packets" + (stream.ended ? " · " + stream.ended : ""))
        )
      );
    }
  }
  document.getElementById("ladder").replaceChildren(...rows);
}

function summary(call) {
  const fields = [
    ["Call-ID", call.call_id],
    ["request", call.method + " " + call.uri],
    ["From", call.from],
    ["transport", call.transport],
    ["codes", call.codes.join(" ")],
    ["final", call.final_status === null ? "—" : String(call.final_status)],
    ["ACK", call.method === "INVITE" ? (call.acked ? "yes" : "no") : "—"],
    ["first", new Date(call.first * 1000).toISOString()],
  ];
  document.getElementById("summary").replaceChildren(
    el("dl", {}, ...fields.flatMap(([name, value]) => [el("dt", {}, name), el("dd", {}, value)]))
  );
  document.getElementById("sipp-command").textContent =
    "sipp " + (call.messages[0] ? call.messages[0].dst : "HOST:PORT") + " -sf call.xml -m 1" + (call.transport === "tcp" ? " -t t1" : "");
}

function verdicts(call) {
  const items = [
    ...call.violations.map((v) => el("li", { class: "bad" }, v.rule + ": " + v.message)),
    ...call.faults.map((f) => el("li", { class: "fault" }, "fault " + JSON.stringify(f))),
  ];
  if (!items.length) items.push(el("li", { class: "good" }, "no violation"));
  document.getElementById("verdicts").replaceChildren(...items);
  const media = document.getElementById("media-section");
  media.hidden = !call.media.length;
  document.getElementById("media").textContent = JSON.stringify(call.media, null, 2);
}

async function load() {
  try {
    const call = await apiJson("/api/calls/" + quoted);
    document.title = "sipresponder · " + call.method + " " + call.user;
    summary(call);
    ladder(call);
    verdicts(call);
  } catch (error) {
    document.getElementById("summary").textContent = String(error);
  }
}

document.getElementById("pcap").addEventListener("click", () => download("/api/calls/" + quoted + "/pcap", "call.pcap"));
document.getElementById("sipp").addEventListener("click", () => download("/api/calls/" + quoted + "/sipp", "call.xml"));

load().then(() =>
  liveCalls(
    (calls) => {
      if (calls.some((c) => c.call_id === callId)) load();
    },
    load,
    (state) => (document.getElementById("state").textContent = state)
  )
);
