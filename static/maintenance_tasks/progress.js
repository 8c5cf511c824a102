/* Update run progress in place: poll each run's JSON endpoint every 2 seconds while it is active. */
"use strict";
(function () {
  const INTERVAL = 2000;

  function show(container, state) {
    container.dataset.status = state.status;
    container.dataset.active = state.active ? "true" : "false";
    container.querySelectorAll("[data-field]").forEach(function (element) {
      const name = element.dataset.field;
      if (name === "bar") {
        // null: a run moving without a total (an animated bar); a stopped run's bar stays still.
        if (state.bar === null) element.removeAttribute("value");
        else element.value = state.bar;
      } else if (name === "status_line") {
        element.textContent = state.status_line;
        element.hidden = !state.status_line;
      } else if (name === "status_label") {
        element.textContent = state.status_label;
        element.className = "mt-status mt-status-" + state.status;
      } else if (name in state) {
        element.textContent = state[name] === "" || state[name] === null ? "\u2013" : state[name];
      }
    });
    container.querySelectorAll("form[data-action]").forEach(function (form) {
      form.hidden = state.actions.indexOf(form.dataset.action) === -1;
    });
    showOutput(state);
  }

  /* The run page's output block: its lines rebuilt (as text, never HTML) when new ones came. */
  function showOutput(state) {
    const block = document.querySelector(".mt-output[data-run='" + state.id + "']");
    if (!block || !("output" in state) || block.dataset.total === String(state.output_total)) return;
    const list = block.querySelector("[data-output=lines]");
    const atBottom = list.scrollTop + list.clientHeight >= list.scrollHeight - 4;
    list.replaceChildren.apply(list, state.output.map(function (line) {
      const item = document.createElement("li");
      const at = document.createElement("span");
      const text = document.createElement("span");
      at.className = "mt-output-at";
      at.textContent = line[0];
      text.className = "mt-output-text";
      text.textContent = line[1];
      item.append(at, " ", text);
      return item;
    }));
    const dropped = block.querySelector("[data-output=dropped]");
    dropped.textContent = state.output_dropped_text;
    dropped.hidden = !state.output_dropped_text;
    block.dataset.total = state.output_total;
    block.hidden = false;
    if (atBottom) list.scrollTop = list.scrollHeight;
  }

  function watch(container) {
    const url = container.dataset.progressUrl;
    function poll() {
      fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (response) {
          if (!response.ok) throw new Error(response.status + " " + response.statusText);
          return response.json();
        })
        .then(function (state) {
          show(container, state);
          if (state.active) window.setTimeout(poll, INTERVAL);
        })
        .catch(function () { window.setTimeout(poll, INTERVAL * 5); });
    }
    window.setTimeout(poll, INTERVAL);
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll(".mt-run[data-progress-url]").forEach(function (container) {
      if (container.dataset.active === "true") watch(container);
    });
  });
})();
