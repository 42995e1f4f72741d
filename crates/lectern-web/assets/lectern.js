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

function sortableTables() {
  for (const table of document.querySelectorAll("table.sortable")) {
    const headers = table.querySelectorAll("thead th");
    headers.forEach((th, index) => {
      const link = th.querySelector("a");
      const button = document.createElement("button");
      button.type = "button";
      button.className = "sort";
      button.textContent = th.textContent;
      button.setAttribute("aria-label", "Sort by " + th.textContent);
      let ascending = true;
      button.addEventListener("click", () => {
        const body = table.tBodies[0];
        const rows = Array.from(body.rows);
        const key = (row) => {
          const cell = row.cells[index];
          if (!cell) return "";
          return cell.dataset.sort !== undefined ? parseFloat(cell.dataset.sort) : cell.textContent.trim().toLowerCase();
        };
        rows.sort((a, b) => {
          const x = key(a), y = key(b);
          const order = x < y ? -1 : x > y ? 1 : 0;
          return ascending ? order : -order;
        });
        ascending = !ascending;
        rows.forEach((row) => body.appendChild(row));
        headers.forEach((h) => h.removeAttribute("aria-sort"));
        th.setAttribute("aria-sort", ascending ? "descending" : "ascending");
      });
      if (link) th.replaceChild(button, link); else { th.textContent = ""; th.appendChild(button); }
    });
  }
}

document.addEventListener("DOMContentLoaded", () => {
  refreshModelStats();
  followTraining();
  sortableTables();
});
