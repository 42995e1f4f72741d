// Lectern's dashboard script: live numbers on the models page, live training progress, and
// tables sorted in place. Pages work without it.
"use strict";

function refreshModelStats() {
  const table = document.getElementById("models");
  if (!table) return;
  const update = () => fetch("/ui/stats", { credentials: "same-origin" })
    .then((r) => (r.ok ? r.json() : null))
    .then((body) => {
      if (!body) return;
      for (const row of table.querySelectorAll("tr[data-model]")) {
        const live = body.models[row.dataset.model];
        if (!live) continue;
        row.querySelector("td.rate").textContent = live.rate.toFixed(2);
        row.querySelector("td.p99").textContent = live.p99_ms === null ? "—" : live.p99_ms.toFixed(1);
      }
    })
    .catch(() => {});
  update();
  setInterval(update, 2000);
}

function followTraining() {
  const progress = document.getElementById("progress");
  if (!progress || !progress.dataset.status) return;
  const poll = () => fetch(progress.dataset.status, { credentials: "same-origin" })
    .then((r) => (r.ok ? r.json() : null))
    .then((job) => {
      if (!job) return;
      const percent = Math.round(job.percent || 0);
      progress.value = percent;
      const text = document.getElementById("progress-text");
      if (text) text.textContent = percent + "%";
      const state = document.getElementById("state");
      if (state) state.textContent = job.state;
      if (["succeeded", "failed", "cancelled"].includes(job.state)) {
        window.location.reload();
      } else {
        setTimeout(poll, 1000);
      }
    })
    .catch(() => setTimeout(poll, 2000));
  setTimeout(poll, 1000);
}

// Sorts a table's body by one column: numbers (`data-sort`) by value, text by text.
function sortBy(table, index, ascending) {
  const body = table.tBodies[0];
  const key = (row) => {
    const cell = row.cells[index];
    if (!cell) return "";
    return cell.dataset.sort !== undefined ? parseFloat(cell.dataset.sort) : cell.textContent.trim().toLowerCase();
  };
  const rows = Array.from(body.rows);
  rows.sort((a, b) => {
    const x = key(a), y = key(b);
    const order = x < y ? -1 : x > y ? 1 : 0;
    return ascending ? order : -order;
  });
  rows.forEach((row) => body.appendChild(row));
  table.querySelectorAll("thead th").forEach((h) => h.removeAttribute("aria-sort"));
  table.querySelectorAll("thead th")[index].setAttribute("aria-sort", ascending ? "ascending" : "descending");
}

// Header links (`?sort=COLUMN&order=asc|desc`, sorted on the server) sort in place instead;
// headers without a link get a button.
function sortableTables() {
  for (const table of document.querySelectorAll("table.sortable")) {
    table.querySelectorAll("thead th").forEach((th, index) => {
      const link = th.querySelector("a");
      if (link) {
        link.addEventListener("click", (event) => {
          event.preventDefault();
          const url = new URL(link.href, window.location.href);
          const ascending = url.searchParams.get("order") !== "desc";
          sortBy(table, index, ascending);
          url.searchParams.set("order", ascending ? "desc" : "asc");
          link.href = url.pathname + url.search;
        });
        return;
      }
      const button = document.createElement("button");
      button.type = "button";
      button.className = "sort";
      button.textContent = th.textContent;
      let ascending = true;
      button.addEventListener("click", () => {
        sortBy(table, index, ascending);
        ascending = !ascending;
      });
      th.textContent = "";
      th.appendChild(button);
    });
  }
}

document.addEventListener("DOMContentLoaded", () => {
  refreshModelStats();
  followTraining();
  sortableTables();
});
