// otpd's operator page: reads and edits through otpd's own API with an admin tenant's key,
// which stays in this tab's session storage. Every value from the API goes into the page as
// text (never as HTML).
"use strict";

const KEY = "otpd.admin-key";
const REFRESH_MS = 5000;

const $ = (id) => document.getElementById(id);

function key() {
  return sessionStorage.getItem(KEY);
}

function say(text) {
  $("status").textContent = text;
}

// A request to otpd with the key; the answer's JSON, or an Error saying what went wrong.
async function api(path, options = {}) {
  const headers = { Authorization: "Bearer " + key() };
  if (options.body) headers["Content-Type"] = "application/json";
  const response = await fetch(path, { ...options, headers });
  if (response.status === 204) return null;
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    const message = body && body.error ? body.error.message : "otpd answered " + response.status;
    const error = new Error(message);
    error.status = response.status;
    throw error;
  }
  return body;
}

function cell(row, text, className) {
  const td = document.createElement("td");
  td.textContent = text === null || text === undefined ? "–" : String(text);
  if (className) td.className = className;
  row.appendChild(td);
  return td;
}

function button(label, onClick) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = label;
  b.addEventListener("click", onClick);
  return b;
}

function fill(tableId, rows, render) {
  const body = $(tableId).querySelector("tbody");
  body.replaceChildren();
  if (rows.length === 0) {
    const row = body.insertRow();
    const td = cell(row, "None");
    td.colSpan = $(tableId).querySelectorAll("thead th").length;
    return;
  }
  for (const item of rows) render(body.insertRow(), item);
}

function quota(period) {
  return period.limit === null ? period.used + " (no cap)" : period.used + " / " + period.limit;
}

async function showProviders() {
  const { providers } = await api("/v1/providers");
  fill("providers", providers, (row, p) => {
    cell(row, p.id);
    cell(row, p.kind);
    cell(row, p.breaker, p.breaker === "closed" ? "" : "open");
    cell(row, p.paused_until);
    cell(row, quota(p.quota.day));
    cell(row, quota(p.quota.month));
    cell(row, p.latency_ms.p50.toFixed(1) + " / " + p.latency_ms.p99.toFixed(1) + " ms");
    cell(row, p.last_hour.sent);
    cell(row, p.last_hour.transient);
    cell(row, p.last_hour.permanent);
    cell(row, p.last_hour.timeout);
  });
}

async function showFraudBlocks() {
  const { blocks } = await api("/v1/fraud/blocks");
  fill("fraud-blocks", blocks, (row, block) => {
    cell(row, block.prefix);
    cell(row, block.country);
    cell(row, block.rule + " (" + block.mode + ")");
    cell(row, block.explanation);
    cell(row, block.until);
    const action = cell(row, "");
    action.replaceChildren(
      button("Lift block on " + block.prefix, () => act(
        () => api("/v1/admin/fraud/blocks/" + encodeURIComponent(block.prefix), { method: "DELETE" }),
        "Lifted the block on " + block.prefix + ".",
        showFraudBlocks,
      )),
    );
  });
}

async function showBlocklist() {
  const { entries } = await api("/v1/admin/blocklist");
  fill("blocklist", entries, (row, entry) => {
    cell(row, entry.entry);
    cell(row, entry.note);
    cell(row, entry.added_at);
    cell(row, entry.added_by);
    const action = cell(row, "");
    action.replaceChildren(
      button("Remove " + entry.entry, () => act(
        () => api("/v1/admin/blocklist/" + encodeURIComponent(entry.entry), { method: "DELETE" }),
        "Removed " + entry.entry + " from the blocklist.",
        showBlocklist,
      )),
    );
  });
}

// Runs an edit, says how it went, then shows the part it changed again; true if it was done.
async function act(edit, done, reshow) {
  let succeeded = false;
  try {
    await edit();
    say(done);
    succeeded = true;
  } catch (error) {
    say("Not done: " + error.message);
  }
  await reshow().catch((error) => say(error.message));
  return succeeded;
}

// Live rates from this node's /metrics: counter totals, differenced between two reads.
let lastTotals = null;

function totals(text) {
  const sums = { creates: 0, checks: 0, sends: 0, failures: 0 };
  for (const line of text.split("\n")) {
    const match = /^(otpd_[a-z_]+)(\{[^}]*\})? ([0-9.e+]+)$/.exec(line);
    if (!match) continue;
    const [, name, labels = "", value] = match;
    const number = Number(value);
    if (name === "otpd_verifications_issued_total") sums.creates += number;
    else if (name === "otpd_checks_total") sums.checks += number;
    else if (name === "otpd_deliveries_total") {
      if (labels.includes('outcome="sent"')) sums.sends += number;
      else sums.failures += number;
    }
  }
  return { at: performance.now(), sums };
}

async function showRates() {
  const response = await fetch("/metrics");
  const now = totals(await response.text());
  if (lastTotals) {
    const seconds = (now.at - lastTotals.at) / 1000;
    for (const name of Object.keys(now.sums)) {
      const rate = Math.max(0, now.sums[name] - lastTotals.sums[name]) / seconds;
      $("rate-" + name).textContent = rate.toFixed(1);
    }
  }
  lastTotals = now;
}

function describe(list, pairs) {
  for (const [term, value] of pairs) {
    const dt = document.createElement("dt");
    dt.textContent = term;
    const dd = document.createElement("dd");
    dd.textContent = value === null || value === undefined ? "–" : String(value);
    list.append(dt, dd);
  }
}

function timelineTable(attempts) {
  const table = document.createElement("table");
  table.className = "timeline";
  const caption = table.createCaption();
  caption.textContent = "Delivery timeline: every try, oldest first";
  const head = table.createTHead().insertRow();
  for (const title of ["#", "Send", "Provider", "Region", "Started", "Took", "Outcome", "Provider's answer", "Then", "Receipt"]) {
    const th = document.createElement("th");
    th.scope = "col";
    th.textContent = title;
    head.appendChild(th);
  }
  const body = table.createTBody();
  if (attempts.length === 0) {
    const td = cell(body.insertRow(), "No try yet: the code waits for a provider.");
    td.colSpan = 10;
  }
  for (const a of attempts) {
    const row = body.insertRow();
    cell(row, a.attempt);
    cell(row, a.send);
    cell(row, a.provider);
    cell(row, a.region);
    cell(row, a.started_at);
    cell(row, a.duration_ms + " ms");
    cell(row, a.outcome + (a.repeats ? " (×" + (a.repeats + 1) + ")" : ""), a.outcome === "sent" ? "" : "failed");
    cell(row, a.detail);
    let then = a.next;
    if (a.next === "retry") then += " in " + a.retry_in_ms + " ms";
    if (a.next === "wait") then += " until " + a.wait_until;
    cell(row, then);
    const r = a.receipt;
    cell(row, r ? r.status + " at " + r.at + " (" + r.time_to_deliver_ms + " ms)" + (r.error_code ? ", error " + r.error_code : "") : null,
      r && r.status !== "delivered" ? "undelivered" : "");
  }
  return table;
}

function showVerification(found) {
  const box = document.createElement("article");
  box.className = "verification";
  const title = document.createElement("h3");
  title.textContent = found.id;
  const facts = document.createElement("dl");
  describe(facts, [
    ["Tenant", found.tenant],
    ["To", found.to + " by " + found.channel],
    ["Status", found.status],
    ["Delivery", found.delivery + (found.provider ? " through " + found.provider : "")],
    ["Created", found.created_at],
    ["Expires", found.expires_at],
    ["Attempts left", found.attempts_remaining],
  ]);
  box.append(title, facts, timelineTable(found.attempts));
  return box;
}

async function lookUp(query) {
  const result = $("lookup-result");
  result.replaceChildren();
  const found = query.startsWith("ver_")
    ? [await api("/v1/admin/verifications/" + encodeURIComponent(query))]
    : (await api("/v1/admin/verifications?to=" + encodeURIComponent(query))).verifications;
  if (found.length === 0) {
    const none = document.createElement("p");
    none.textContent = "otpd has no verification for " + query + " (it keeps them for store.retention_seconds after they expire).";
    result.appendChild(none);
  }
  for (const verification of found) result.appendChild(showVerification(verification));
  say("Found " + found.length + " verification" + (found.length === 1 ? "" : "s") + ".");
}

async function refresh() {
  await Promise.all([showProviders(), showFraudBlocks(), showRates()]);
}

let timer = null;

function signedIn() {
  $("sign-in").hidden = true;
  $("console").hidden = false;
  $("sign-out").hidden = false;
  showBlocklist().catch((error) => say(error.message));
  refresh().catch((error) => say(error.message));
  timer = setInterval(() => refresh().catch((error) => say(error.message)), REFRESH_MS);
  $("lookup").focus();
}

function signOut(message) {
  sessionStorage.removeItem(KEY);
  clearInterval(timer);
  $("console").hidden = true;
  $("sign-out").hidden = true;
  $("sign-in").hidden = false;
  $("sign-in-error").textContent = message || "";
  $("key").focus();
}

async function signIn(event) {
  event.preventDefault();
  sessionStorage.setItem(KEY, $("key").value.trim());
  $("key").value = "";
  try {
    // The blocklist is for admins only: reading it proves the key is an admin's.
    await api("/v1/admin/blocklist");
    $("sign-in-error").textContent = "";
    signedIn();
  } catch (error) {
    signOut(error.status === 401 || error.status === 403
      ? error.message + " Use the key of a tenant with admin = true in its settings."
      : "Could not sign in: " + error.message);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("sign-in-form").addEventListener("submit", signIn);
  $("sign-out").addEventListener("click", () => signOut("Signed out."));
  $("lookup-form").addEventListener("submit", (event) => {
    event.preventDefault();
    lookUp($("lookup").value.trim()).catch((error) => say("Not found: " + error.message));
  });
  $("blocklist-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const entry = $("block-entry").value.trim();
    const note = $("block-note").value.trim();
    act(
      () => api("/v1/admin/blocklist", { method: "POST", body: JSON.stringify(note ? { entry, note } : { entry }) }),
      "Blocked " + entry + ".",
      showBlocklist,
    ).then((succeeded) => {
      if (succeeded) {
        $("block-entry").value = "";
        $("block-note").value = "";
      }
    });
  });
  if (key()) signedIn(); else $("key").focus();
});
