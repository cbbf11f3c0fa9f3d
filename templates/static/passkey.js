// Portcullis passkeys: adds a passkey from the account page and signs in with
// one on the code page, through navigator.credentials and the JSON API.
// Loaded from 'self' so the CSP needs no 'unsafe-inline'. Without JavaScript
// the pages say that passkeys need it, and every code form still works.
(function () {
  "use strict";

  function b64urlToBuf(s) {
    var b64 = s.replace(/-/g, "+").replace(/_/g, "/");
    while (b64.length % 4) { b64 += "="; }
    var bin = atob(b64);
    var out = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) { out[i] = bin.charCodeAt(i); }
    return out.buffer;
  }

  function bufToB64url(buf) {
    var bytes = new Uint8Array(buf);
    var bin = "";
    for (var i = 0; i < bytes.length; i++) { bin += String.fromCharCode(bytes[i]); }
    return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function post(url, body) {
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "Accept": "application/json" },
      body: JSON.stringify(body)
    }).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (j) {
        if (!r.ok) { throw new Error(j.message || j.error || ("Request failed (" + r.status + ")")); }
        return j;
      });
    });
  }

  function say(el, text, bad) {
    if (!el) { return; }
    el.textContent = text;
    el.classList.toggle("hint-warning", !!bad);
  }

  function creationOptions(o) {
    var pk = o.publicKey;
    pk.challenge = b64urlToBuf(pk.challenge);
    pk.user.id = b64urlToBuf(pk.user.id);
    (pk.excludeCredentials || []).forEach(function (c) { c.id = b64urlToBuf(c.id); });
    return { publicKey: pk };
  }

  function requestOptions(o) {
    var pk = o.publicKey;
    pk.challenge = b64urlToBuf(pk.challenge);
    (pk.allowCredentials || []).forEach(function (c) { c.id = b64urlToBuf(c.id); });
    return { publicKey: pk };
  }

  function registered(cred) {
    var r = cred.response;
    return {
      id: cred.id,
      rawId: bufToB64url(cred.rawId),
      type: cred.type,
      extensions: {},
      response: {
        attestationObject: bufToB64url(r.attestationObject),
        clientDataJSON: bufToB64url(r.clientDataJSON),
        transports: r.getTransports ? r.getTransports() : undefined
      }
    };
  }

  function asserted(cred) {
    var r = cred.response;
    return {
      id: cred.id,
      rawId: bufToB64url(cred.rawId),
      type: cred.type,
      extensions: {},
      response: {
        authenticatorData: bufToB64url(r.authenticatorData),
        clientDataJSON: bufToB64url(r.clientDataJSON),
        signature: bufToB64url(r.signature),
        userHandle: r.userHandle ? bufToB64url(r.userHandle) : null
      }
    };
  }

  function supported() {
    return !!(window.PublicKeyCredential && navigator.credentials && window.fetch);
  }

  function hideNoJs(root, unsupported) {
    Array.prototype.forEach.call(root.querySelectorAll("[data-passkey-nojs]"), function (el) {
      if (unsupported) {
        el.textContent = "This browser cannot use passkeys. Use a code instead.";
      } else {
        el.hidden = true;
      }
    });
  }

  function enhanceRegister(form) {
    var panel = form.parentElement;
    if (!supported()) { hideNoJs(panel, true); return; }
    hideNoJs(panel, false);
    form.hidden = false;
    var prefix = form.getAttribute("data-prefix");
    var status = form.querySelector("[data-passkey-status]");
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var name = form.elements.name.value;
      var password = form.elements.password.value;
      say(status, "Follow your browser's prompt to create the passkey…");
      post(prefix + "/api/passkey/register/start", { name: name, password: password })
        .then(function (j) { return navigator.credentials.create(creationOptions(j.options)); })
        .then(function (cred) {
          return post(prefix + "/api/passkey/register/finish", { credential: registered(cred) });
        })
        .then(function () {
          say(status, "Passkey added.");
          window.location.reload();
        })
        .catch(function (e) { say(status, "The passkey was not added: " + e.message, true); });
    });
  }

  function enhanceLogin(box) {
    if (!supported()) { hideNoJs(box, true); return; }
    hideNoJs(box, false);
    var button = box.querySelector("[data-passkey-button]");
    var status = box.querySelector("[data-passkey-status]");
    var prefix = box.getAttribute("data-prefix");
    button.hidden = false;
    button.addEventListener("click", function () {
      button.disabled = true;
      say(status, "Follow your browser's prompt to use your passkey…");
      post(prefix + "/api/passkey/login/start", {})
        .then(function (j) { return navigator.credentials.get(requestOptions(j.options)); })
        .then(function (cred) { return post(prefix + "/api/passkey/login/finish", { credential: asserted(cred) }); })
        .then(function (j) {
          say(status, "Signed in.");
          window.location.assign(j.redirect_url);
        })
        .catch(function (e) {
          button.disabled = false;
          say(status, "Sign-in with the passkey failed: " + e.message, true);
        });
    });
  }

  function init() {
    Array.prototype.forEach.call(document.querySelectorAll("[data-passkey-register]"), enhanceRegister);
    Array.prototype.forEach.call(document.querySelectorAll("[data-passkey-login]"), enhanceLogin);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
