// Behaviour that the strict CSP keeps out of the markup: no inline handlers, no eval.
// Listeners are delegated from the document, so content htmx swaps in later works too.
(function () {
  "use strict";

  function copyText(text, source) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text);
    }
    // Older browsers and plain-http hosts: select the field and use the legacy command.
    return new Promise(function (resolve, reject) {
      if (source && source.select) {
        source.select();
      }
      (document.execCommand && document.execCommand("copy")) ? resolve() : reject(new Error("copy failed"));
    });
  }

  function showCopyResult(button, ok) {
    var status = button.closest("article, section, form, div");
    status = status && status.querySelector("[data-copy-status]");
    var label = button.dataset.label || button.textContent;
    button.dataset.label = label;
    button.textContent = ok ? "Copied" : "Copy failed";
    if (status) {
      status.textContent = ok ? "Copied to the clipboard." : "Could not copy: select the text and copy it yourself.";
    }
    window.clearTimeout(button._copyTimer);
    button._copyTimer = window.setTimeout(function () { button.textContent = label; }, 2500);
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy-target]");
    if (!button) {
      return;
    }
    event.preventDefault();
    var source = document.querySelector(button.dataset.copyTarget);
    if (!source) {
      return;
    }
    var text = "value" in source ? source.value : source.textContent;
    copyText(text.trim(), source).then(
      function () { showCopyResult(button, true); },
      function () { showCopyResult(button, false); }
    );
  });

  // Clicking a shown-once secret selects all of it, so a manual copy cannot miss a character.
  document.addEventListener("focusin", function (event) {
    if (event.target.matches && event.target.matches("input[readonly][data-testid='secret-value']")) {
      event.target.select();
    }
  });
  // The server shows times in the viewer's timezone: tell it the browser's (portal/timezones.py).
  try {
    var zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
    var current = document.cookie.split("; ").filter(function (c) { return c.indexOf("tz=") === 0; })[0];
    if (zone && current !== "tz=" + zone) {
      document.cookie = "tz=" + zone + "; path=/; max-age=31536000; SameSite=Lax";
    }
  } catch (ignored) {
    // No Intl support: times stay in UTC, which the footer says.
  }
})();

// Narrow screens show each table row as a card (app.css): every cell is labelled with its
// column's heading, read from the table's head, for tables that are in the page and that htmx
// swaps in later.
(function () {
  "use strict";

  function labelCells(root) {
    var tables = root.querySelectorAll ? root.querySelectorAll("table") : [];
    if (root.matches && root.matches("table")) {
      tables = [root];
    }
    Array.prototype.forEach.call(tables, function (table) {
      var headings = table.querySelectorAll("thead tr:last-child > th, thead tr:last-child > td");
      if (!headings.length) {
        return;
      }
      Array.prototype.forEach.call(table.querySelectorAll("tbody tr"), function (row) {
        var column = 0;
        Array.prototype.forEach.call(row.children, function (cell) {
          var heading = headings[column];
          if (heading && !cell.hasAttribute("data-label")) {
            cell.setAttribute("data-label", heading.textContent.trim());
          }
          column += cell.colSpan || 1;
        });
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () { labelCells(document); });
  document.addEventListener("htmx:load", function (event) { labelCells(event.target); });
})();
