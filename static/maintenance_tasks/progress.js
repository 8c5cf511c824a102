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
