// Stripe.js on the two pages that need it (card form, 3-D Secure). Loaded after Stripe.js
// (both deferred, in order), never through htmx: these pages are always full page loads.
(function () {
  "use strict";

  var EMPTY = "Enter the card number, expiry date and CVC.";
  var UNREADABLE = "The card could not be saved. Check its details and try again, or use another card.";

  // Stripe's own card and validation messages are written for customers; anything else (a
  // network failure, a script error inside a stand-in) is not, so it gets our sentence.
  function customerMessage(error) {
    if (error && error.message && (error.type === "card_error" || error.type === "validation_error")) {
      return error.message;
    }
    return UNREADABLE;
  }

  function setupCard(box) {
    var stripe = Stripe(box.dataset.publishableKey);
    var card = stripe.elements().create("card");
    var element = box.querySelector("[data-card-element]");
    card.mount(element);
    var form = box.querySelector("form");
    var errors = box.querySelector("[data-card-errors]");
    var button = form.querySelector("button[type=submit]");
    // Elements reports each change; until the first one the card is certainly empty.
    var typed = false;
    var empty = true;
    card.on("change", function (event) {
      typed = true;
      // Stripe passes {empty, complete, error}; a stand-in may pass nothing.
      empty = event ? Boolean(event.empty) : false;
      if (event && event.error) {
        errors.textContent = customerMessage(event.error);
      } else if (errors.textContent === EMPTY) {
        errors.textContent = "";
      }
    });

    function done(message) {
      errors.textContent = message;
      element.setAttribute("aria-invalid", message ? "true" : "false");
      button.disabled = false;
      button.removeAttribute("aria-busy");
    }

    form.addEventListener("submit", function (event) {
      event.preventDefault();
      if (!typed || empty) {
        done(EMPTY);
        return;
      }
      button.disabled = true;
      button.setAttribute("aria-busy", "true");
      errors.textContent = "";
      stripe.confirmCardSetup(box.dataset.clientSecret, { payment_method: { card: card } }).then(function (result) {
        if (result.error) {
          done(customerMessage(result.error));
          return;
        }
        // Our server reads the outcome back from Stripe; the browser only says "done".
        form.submit();
      }, function () {
        done(UNREADABLE);
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
