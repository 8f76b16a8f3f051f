// Passkeys (WebAuthn) for the forms marked data-passkey="register" | "authenticate" | "sign-in".
// On submit: ask the server for options (it keeps the challenge), let the browser talk to the
// authenticator, put its answer in the form's hidden "credential" field and submit the form for
// real; the server verifies everything. Loaded on every page (htmx swaps pages in without running
// their scripts), listening on the document, so forms swapped in later work too. No inline script.
(function () {
  "use strict";

  // --- base64url <-> bytes (WebAuthn's JSON encoding of binary fields) ---
  function toBytes(text) {
    var base64 = text.replace(/-/g, "+").replace(/_/g, "/");
    while (base64.length % 4) {
      base64 += "=";
    }
    var binary = window.atob(base64);
    var bytes = new Uint8Array(binary.length);
    for (var i = 0; i < binary.length; i++) {
      bytes[i] = binary.charCodeAt(i);
    }
    return bytes.buffer;
  }

  function toBase64url(buffer) {
    var bytes = new Uint8Array(buffer);
    var binary = "";
    for (var i = 0; i < bytes.length; i++) {
      binary += String.fromCharCode(bytes[i]);
    }
    return window.btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function decodeCreationOptions(options) {
    options.challenge = toBytes(options.challenge);
    options.user.id = toBytes(options.user.id);
    (options.excludeCredentials || []).forEach(function (c) { c.id = toBytes(c.id); });
    return options;
  }

  function decodeRequestOptions(options) {
    options.challenge = toBytes(options.challenge);
    (options.allowCredentials || []).forEach(function (c) { c.id = toBytes(c.id); });
    return options;
  }

  // The credential as JSON for the server; ``response`` holds the part that differs between
  // making a passkey and using one.
  function credentialJSON(credential, response) {
    response.clientDataJSON = toBase64url(credential.response.clientDataJSON);
    return {
      id: credential.id,
      rawId: toBase64url(credential.rawId),
      type: credential.type,
      authenticatorAttachment: credential.authenticatorAttachment || null,
      clientExtensionResults: credential.getClientExtensionResults ? credential.getClientExtensionResults() : {},
      response: response
    };
  }

  function registrationJSON(credential) {
    var response = credential.response;
    return credentialJSON(credential, {
      attestationObject: toBase64url(response.attestationObject),
      transports: response.getTransports ? response.getTransports() : []
    });
  }

  function assertionJSON(credential) {
    var response = credential.response;
    return credentialJSON(credential, {
      authenticatorData: toBase64url(response.authenticatorData),
      signature: toBase64url(response.signature),
      userHandle: response.userHandle ? toBase64url(response.userHandle) : null
    });
  }

  // What a person reads when it does not work, by the DOMException the browser raised.
  function explain(error, mode) {
    var name = error && error.name;
    if (name === "NotAllowedError" || name === "AbortError") {
      return "The passkey request was cancelled or timed out. Try again.";
    }
    if (name === "InvalidStateError" && mode === "register") {
      return "This device already holds a passkey for your account.";
    }
    if (name === "SecurityError") {
      return "Passkeys need the portal opened over HTTPS (or at http://localhost on your own machine).";
    }
    if (name === "NotSupportedError") {
      return "This device cannot make a passkey the portal accepts.";
    }
    return (error && error.portalMessage) || "The passkey did not work. Try again, or use another way to sign in.";
  }

  function showError(form, message) {
    var box = form.querySelector("[data-passkey-error]");
    if (box) {
      box.textContent = message;
    }
  }

  function setBusy(form, busy) {
    var button = form.querySelector("button[type=submit]");
    if (button) {
      button.disabled = busy;
      if (busy) {
        button.setAttribute("aria-busy", "true");
      } else {
        button.removeAttribute("aria-busy");
      }
    }
  }

  function fetchOptions(form) {
    var token = form.querySelector("input[name=csrf_token]");
    return window.fetch(form.dataset.optionsUrl, {
      method: "POST",
      credentials: "same-origin",
      headers: {"X-CSRFToken": token ? token.value : "", "Accept": "application/json"}
    }).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (body) {
        if (!response.ok) {
          var failure = new Error("options refused");
          failure.portalMessage = body.error || "The server could not start the passkey request. Reload the page and try again.";
          throw failure;
        }
        return body;
      });
    });
  }

  function run(form) {
    var mode = form.dataset.passkey;
    var field = form.querySelector("input[name=credential]");
    if (mode === "register") {
      var name = form.querySelector("input[name=name]");
      if (name && !name.value.trim()) {
        showError(form, "Give the passkey a name first, such as “Work laptop”.");
        name.focus();
        return;
      }
    }
    showError(form, "");
    setBusy(form, true);
    fetchOptions(form)
      .then(function (options) {
        if (mode === "register") {
          return navigator.credentials.create({publicKey: decodeCreationOptions(options)}).then(registrationJSON);
        }
        return navigator.credentials.get({publicKey: decodeRequestOptions(options)}).then(assertionJSON);
      })
      .then(function (answer) {
        field.value = JSON.stringify(answer);
        form.submit(); // a real navigation: the server answers with the next page
      })
      .catch(function (error) {
        setBusy(form, false);
        showError(form, explain(error, mode));
      });
  }

  document.addEventListener("submit", function (event) {
    var form = event.target.closest && event.target.closest("form[data-passkey]");
    if (!form) {
      return;
    }
    event.preventDefault();
    if (!window.PublicKeyCredential || !navigator.credentials || !window.isSecureContext) {
      showError(form, window.isSecureContext
        ? "This browser does not support passkeys."
        : "Passkeys need the portal opened over HTTPS (or at http://localhost on your own machine).");
      return;
    }
    run(form);
  });
})();
