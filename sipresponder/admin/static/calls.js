// The calls page: the newest calls first, updated live from /api/events, filtered here.
"use strict";

// Calls read at first paint and kept in the page at most: the journal may hold 100,000.
const FIRST = 500;
const KEPT = 2000;

const calls = new Map(); // call_id -> summary, in the order they were last seen
let paused = false;
let held = []; // updates that came while paused

const body = document.querySelector("#calls tbody");
const filters = {
  method: document.getElementById("f-method"),
  user: document.getElementById("f-user"),
  status: document.getElementById("f-status"),
  violations: document.getElementById("f-violations"),
};

function shown(call) {
  const method = filters.method.value.trim().toUpperCase();
  const user = filters.user.value.trim();
  const status = filters.status.value.trim();
  if (method && call.method !== method) return false;
  if (user && call.user !== user) return false;
  if (status && String(call.final_status) !== status) return false;
  if (filters.violations.checked && call.violations.length === 0) return false;
  return true;
}

function row(call) {
  const final = call.final_status;
  return el(
    "tr",
    { class: "call " + codeClass(final), "data-call-id": call.call_id, onclick: () => (location.href = callPath(call.call_id)) },
    el("td", {}, clock(call.first)),
    el("td", {}, call.method),
    el("td", { class: "from" }, call.from),
    el("td", {}, call.user),
    el("td", {}, call.transport),
    el("td", {}, call.codes.join(" ")),
    el("td", { class: "final" }, final === null ? "—" : String(final)),
    el("td", {}, call.method === "INVITE" ? (call.acked ? "yes" : "no") : ""),
    el("td", { class: call.violations.length ? "bad" : "" }, String(call.violations.length)),
    el("td", { class: call.faults.length ? "fault" : "" }, String(call.faults.length))
  );
}

function render() {
  const rows = [];
  const all = Array.from(calls.values()).sort((a, b) => b.first - a.first);
  for (const call of all) {
    if (shown(call)) rows.push(row(call));
  }
  body.replaceChildren(...rows);
  document.getElementById("count").textContent = rows.length + " of " + calls.size + " calls";
}

function take(updates) {
  for (const call of updates) {
    calls.delete(call.call_id);
    calls.set(call.call_id, call);
  }
  while (calls.size > KEPT) calls.delete(calls.keys().next().value);
}

let scheduled = false;
function update(updates) {
  if (paused) {
    held.push(...updates);
    return;
  }
  take(updates);
  if (!scheduled) {
    scheduled = true;
    requestAnimationFrame(() => {
      scheduled = false;
      render();
    });
  }
}

async function load() {
  const body = await apiJson("/api/calls?limit=" + FIRST);
  calls.clear();
  take(body.calls);
  render();
}

async function extras() {
  try {
    const journal = await apiJson("/api/journal");
    const metrics = await (await api("/metrics")).text();
    const counters = metrics
      .split("\n")
      .filter((line) => line.startsWith("sipresponder_") && !line.includes("_bucket"))
      .join("\n");
    document.getElementById("counters").textContent =
      JSON.stringify(journal, null, 2) + "\n\n" + counters;
    const rules = await apiJson("/api/rules");
    document.getElementById("rules").textContent = JSON.stringify(rules, null, 2);
  } catch (error) {
    document.getElementById("counters").textContent = String(error);
  }
}

document.getElementById("pause").addEventListener("click", (event) => {
  paused = !paused;
  event.target.textContent = paused ? "Resume" : "Pause";
  event.target.classList.toggle("on", paused);
  if (!paused) {
    const updates = held;
    held = [];
    update(updates);
  }
});
document.getElementById("pcap").addEventListener("click", () => {
  const query = new URLSearchParams();
  if (filters.method.value.trim()) query.set("method", filters.method.value.trim());
  if (filters.user.value.trim()) query.set("user", filters.user.value.trim());
  if (filters.status.value.trim()) query.set("status", filters.status.value.trim());
  download("/api/calls.pcap?" + query, "calls.pcap");
});
for (const input of Object.values(filters)) input.addEventListener("input", render);
document.getElementById("more").addEventListener("toggle", extras);

load().then(() =>
  liveCalls(update, load, (state) => (document.getElementById("state").textContent = state))
);
