"use strict";
// The demo page: one fetch to /api/recommend per pick; everything is rendered with DOM calls
// (textContent only), so titles and reasons from the data can never inject markup.
const $ = (id) => document.getElementById(id);

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function card(item, badge) {
  const c = el("div", "card" + (badge ? " " + badge : ""));
  c.dataset.itemId = item.item_id;
  if (badge) c.dataset.source = badge;
  if (item.poster) {
    const img = el("img", "poster");
    img.src = item.poster;
    img.alt = item.title;
    img.loading = "eager";
    img.onerror = () => img.replaceWith(el("div", "noposter", item.title));
    c.appendChild(img);
  } else {
    c.appendChild(el("div", "noposter", item.title));
  }
  const meta = el("div", "meta");
  if (badge) meta.appendChild(el("span", "badge " + badge, badge.replace("_", " ")));
  meta.appendChild(el("div", "title", item.title));
  meta.appendChild(el("div", "cluster", item.cluster_label || ""));
  c.appendChild(meta);
  return c;
}

function fill(container, nodes, emptyText) {
  container.replaceChildren(...(nodes.length ? nodes : [el("div", "empty", emptyText)]));
}

async function loadUsers() {
  const r = await fetch("/api/users");
  const data = await r.json();
  const sel = $("user");
  sel.replaceChildren(...data.users.map((u) => { const o = el("option", "", u); o.value = u; return o; }));
  return data.users;
}

async function recommend(user) {
  const status = $("status");
  status.className = "status";
  status.textContent = "asking the retrieval service for user " + user + " …";
  const q = new URLSearchParams({ user, k: $("k").value, ratio: $("ratio").value });
  const r = await fetch("/api/recommend?" + q.toString());
  const data = await r.json();
  if (!r.ok) {
    status.className = "status error";
    status.textContent = data.error || ("HTTP " + r.status);
    return;
  }
  fill($("recent"), data.recent.map((i) => card(i, "")), "no recent history in Redis for this user");
  fill($("interests"), data.novel_interests.map((n) => {
    const li = el("li");
    li.dataset.clusterId = n.cluster_id;
    li.appendChild(el("span", "label", n.label));
    li.appendChild(document.createTextNode(" — "));
    li.appendChild(el("span", "why", n.rationale || "(no reason stored)"));
    return li;
  }), "no novel interests used (record " + data.record_status + ")");
  fill($("recs"), data.items.map((i) => card(i, i.source)), "nothing to recommend");
  const novel = data.items.filter((i) => i.source === "novel").length;
  status.textContent = "user " + data.user + " · record " + data.record_status + " · " + data.items.length +
    " items, " + novel + " novel of " + data.novel_slots + " slots · bundle " + data.bundle_id;
  document.body.dataset.ready = "1";
}

$("pick").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const typed = $("user-id").value.trim();
  recommend(typed || $("user").value);
});
$("user").addEventListener("change", () => { $("user-id").value = ""; recommend($("user").value); });

(async () => {
  const params = new URLSearchParams(location.search);
  const users = await loadUsers();
  const first = params.get("user") || users[0];
  if (params.get("user")) $("user-id").value = first;
  if (first) await recommend(first);
})().catch((e) => { $("status").className = "status error"; $("status").textContent = String(e); });
