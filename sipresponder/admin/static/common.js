// What both pages share: the admin API with its token, the live feed, and formatting.
// Plain JavaScript, nothing fetched from elsewhere.
"use strict";

const TOKEN_KEY = "sipresponder-token";

function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

// GET (or another method) on the admin API; with --admin-token, the token is asked for
// once (on the first 401) and kept for the browser tab's session.
async function api(path, options = {}) {
  for (let attempt = 0; attempt < 2; attempt++) {
    const headers = Object.assign({}, options.headers || {});
    if (token()) headers["Authorization"] = "Bearer " + token();
    const reply = await fetch(path, Object.assign({}, options, { headers }));
    if (reply.status !== 401 || attempt === 1) return reply;
    const given = window.prompt("This responder's admin API needs its token (--admin-token):");
    if (!given) return reply;
    sessionStorage.setItem(TOKEN_KEY, given.trim());
  }
}

async function apiJson(path) {
  const reply = await api(path);
  const body = await reply.json();
  if (!reply.ok) throw new Error(body.error || reply.statusText);
  return body;
}

// The feed of changed calls (server-sent events); the browser reconnects by itself.
function liveCalls(onCalls, onReset, onState) {
  const url = "/api/events" + (token() ? "?token=" + encodeURIComponent(token()) : "");
  const source = new EventSource(url);
  source.addEventListener("calls", (event) => {
    const data = JSON.parse(event.data);
    if (data.reset) onReset();
    else onCalls(data.calls);
  });
  source.onopen = () => onState && onState("live");
  source.onerror = () => onState && onState("reconnecting");
  return source;
}

// A file from the API (pcap, SIPp scenario) saved by the browser, the token sent along.
async function download(path, name) {
  const reply = await api(path);
  if (!reply.ok) {
    window.alert("cannot download: " + reply.status);
    return;
  }
  const link = document.createElement("a");
  link.href = URL.createObjectURL(await reply.blob());
  link.download = name;
  document.body.appendChild(link);
  link.click();
  link.remove();
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

function clock(seconds) {
  const d = new Date(seconds * 1000);
  return d.toLocaleTimeString([], { hour12: false }) + "." + String(d.getMilliseconds()).padStart(3, "0");
}

function codeClass(code) {
  if (code === null || code === undefined) return "none";
  if (code < 200) return "c1xx";
  if (code < 300) return "c2xx";
  return "cerr";
}

function callPath(callId) {
  return "/calls/" + encodeURIComponent(callId);
}
