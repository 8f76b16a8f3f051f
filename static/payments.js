// Stripe.js on the two pages that need it (card form, 3-D Secure). Loaded after Stripe.js
// (both deferred, in order), never through htmx: these pages are always full page loads.
(function () {
  "use strict";

  function setupCard(box) {
    var stripe = Stripe(box.dataset.publishableKey);
    var card = stripe.elements().create("card");
    card.mount(box.querySelector("[data-card-element]"));
    var form = box.querySelector("form");
    var errors = box.querySelector("[data-card-errors]");
    var button = form.querySelector("button[type=submit]");
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      button.disabled = true;
      button.setAttribute("aria-busy", "true");
      errors.textContent = "";
      stripe.confirmCardSetup(box.dataset.clientSecret, { payment_method: { card: card } }).then(function (result) {
        if (result.error) {
          errors.textContent = result.error.message || "The card was not accepted.";
          button.disabled = false;
          button.removeAttribute("aria-busy");
          return;
        }
        // Our server reads the outcome back from Stripe; the browser only says "done".
        form.submit();
      });
    });
  }

  function authenticate(box) {
    var stripe = Stripe(box.dataset.publishableKey);
    stripe.confirmCardPayment(box.dataset.clientSecret).then(function () {
      window.location.assign(box.dataset.returnUrl);
    });
  }

  function start() {
    var setup = document.querySelector("[data-stripe-setup]");
    if (setup) {
      setupCard(setup);
    }
    var auth = document.querySelector("[data-stripe-authenticate]");
    if (auth) {
      authenticate(auth);
    }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
