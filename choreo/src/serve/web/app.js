// The customer page: sign in (local issuer), send a support request, watch the case live over
// the notifier's WebSocket, acknowledging each notification by its sequence number.
"use strict";

const $ = (id) => document.getElementById(id);
const session = {
  get: () => JSON.parse(sessionStorage.getItem("choreo.session") || "null"),
  set: (value) => sessionStorage.setItem("choreo.session", JSON.stringify(value)),
  clear: () => sessionStorage.removeItem("choreo.session"),
};
const ackKey = (customer) => `choreo.acked.${customer}`;

let socket = null;
let retryDelay = 500;

function show(panel) {
  for (const id of ["sign-in-panel", "request-panel"]) $(id).hidden = id !== panel;
}

function status(text) { $("status").textContent = text; }

function fail(text) {
  $("error").textContent = text;
  $("error").hidden = !text;
}

async function problemText(response) {
  try {
    const problem = await response.json();
    const details = (problem.errors || []).map((e) => `${e.pointer || ""} ${e.reason || ""}`.trim());
    return [problem.title, problem.detail, ...details].filter(Boolean).join(": ");
  } catch {
    return `HTTP ${response.status}`;
  }
}

async function loadCustomers() {
  const response = await fetch("/v1/local/customers");
  if (!response.ok) {
    fail("This server takes tokens from its identity provider; there is no local sign-in here.");
    return;
  }
  const { customers } = await response.json();
  $("customer").replaceChildren(...customers.map((c) => new Option(`${c.name} (${c.customer_id})`, c.customer_id)));
}

async function signIn(event) {
  event.preventDefault();
  fail("");
  $("sign-in-button").disabled = true;
  try {
    const response = await fetch("/v1/local/sign-in", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ customer_id: $("customer").value }),
    });
    if (!response.ok) return fail(await problemText(response));
    const body = await response.json();
    session.set({ token: body.token, customer: body.customer_id, name: body.name, orders: body.orders, caseId: null });
    signedIn();
  } finally {
    $("sign-in-button").disabled = false;
  }
}

function signedIn() {
  const s = session.get();
  $("who").textContent = `Signed in as ${s.name} (${s.customer})`;
  $("who").hidden = false;
  $("sign-out").hidden = false;
  $("order").replaceChildren(...s.orders.map((o) => new Option(o, o)));
  show("request-panel");
  if (s.caseId) showCase(s.caseId);
  connect();
}

function signOut(reason) {
  if (socket) socket.onclose = null, socket.close(1000, "signed out");
  socket = null;
  session.clear();
  $("who").hidden = true;
  $("sign-out").hidden = true;
  $("case-panel").hidden = true;
  show("sign-in-panel");
  status("");
  if (reason) fail(reason);
}

async function sendRequest(event) {
  event.preventDefault();
  fail("");
  const s = session.get();
  const body = { order_id: $("order").value, message: $("message").value.trim() };
  if ($("needed-by").value) body.needed_by = $("needed-by").value;
  $("submit").disabled = true;
  try {
    // One key per request: a retry after a lost answer gets the same case, not a second one.
    const key = crypto.randomUUID();
    for (let attempt = 1; ; attempt++) {
      let response;
      try {
        response = await fetch("/v1/support-requests", {
          method: "POST",
          headers: { "content-type": "application/json", authorization: `Bearer ${s.token}`, "idempotency-key": key },
          body: JSON.stringify(body),
        });
      } catch (e) {
        if (attempt < 4) { await new Promise((r) => setTimeout(r, 500 * attempt)); continue; }
        return fail(`Could not reach the server: ${e.message}`);
      }
      if (response.status === 503 && attempt < 4) {
        await new Promise((r) => setTimeout(r, 1000 * (Number(response.headers.get("retry-after")) || attempt)));
        continue;
      }
      if (response.status === 401) return signOut("Your session expired: sign in again.");
      if (!response.ok) return fail(await problemText(response));
      const accepted = await response.json();
      session.set({ ...session.get(), caseId: accepted.case_id });
      showCase(accepted.case_id);
      return;
    }
  } finally {
    $("submit").disabled = false;
  }
}

function showCase(caseId) {
  $("case-panel").hidden = false;
  $("case-id").textContent = `Case ${caseId}`;
  $("case-panel").dataset.case = caseId;
  $("progress").replaceChildren();
  $("answer").dataset.state = "waiting";
  $("answer").replaceChildren(paragraph("Our agents are on it…", "muted"));
}

function paragraph(text, className) {
  const p = document.createElement("p");
  p.textContent = text;
  if (className) p.className = className;
  return p;
}

const describe = {
  SupportTriaged: (d) => d.summary,
  PaymentIssueResolved: (d) => d.summary,
  InventoryChecked: (d) =>
    d.available ? `${d.sku}: in stock` : `${d.sku}: out of stock${d.alternative ? `, alternative ${d.alternative.name}` : ""}`,
  FulfilmentIssueResolved: (d) => d.summary,
  OrderSupportCompleted: () => "Your answer is ready.",
  CaseEscalated: (d) => `Passed to a person: ${d.detail}`,
};

function onNotification(n) {
  const caseId = $("case-panel").dataset.case;
  if (caseId && n.case === caseId) {
    const li = document.createElement("li");
    li.dataset.seq = n.seq;
    const agent = document.createElement("span");
    agent.className = "agent";
    agent.textContent = (n.source || "").replace(/^agents\./, "");
    const text = (describe[n.event] || (() => ""))(n.data || {});
    const kind = document.createElement("span");
    kind.className = "event";
    kind.textContent = ` ${n.event}`;
    li.append(agent, `: ${text || n.event}`, kind);
    $("progress").append(li);
    if (n.event === "OrderSupportCompleted") {
      $("answer").replaceChildren(paragraph(n.data.answer));
      $("answer").dataset.state = "done";
    } else if (n.event === "CaseEscalated") {
      $("answer").replaceChildren(paragraph(`A person will take over: ${n.data.detail}`));
      $("answer").dataset.state = "escalated";
    }
  }
  const s = session.get();
  if (s) localStorage.setItem(ackKey(s.customer), String(n.seq));
  socket.send(JSON.stringify({ type: "ack", seq: n.seq }));
}

function connect() {
  const s = session.get();
  if (!s || socket) return;
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const params = new URLSearchParams({ token: s.token });
  const acked = localStorage.getItem(ackKey(s.customer));
  if (acked) params.set("after", acked);
  socket = new WebSocket(`${scheme}://${location.host}/v1/notifications?${params}`);
  socket.onopen = () => { retryDelay = 500; status("Connected: updates arrive live."); };
  socket.onmessage = (message) => {
    const frame = JSON.parse(message.data);
    if (frame.type === "notification") onNotification(frame);
  };
  socket.onclose = (close) => {
    socket = null;
    if (close.code === 4401 || close.code === 4403) return signOut(`Signed out: ${close.reason || "token refused"}.`);
    status("Reconnecting…");
    setTimeout(connect, retryDelay);
    retryDelay = Math.min(retryDelay * 2, 10000);
  };
}

document.addEventListener("DOMContentLoaded", () => {
  $("sign-in").addEventListener("submit", signIn);
  $("request").addEventListener("submit", sendRequest);
  $("sign-out").addEventListener("click", () => signOut(""));
  const tomorrow = new Date(Date.now() + 86400000).toISOString().slice(0, 10);
  $("needed-by").value = tomorrow;
  if (session.get()) signedIn();
  else loadCustomers();
});
