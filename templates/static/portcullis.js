// Portcullis pages: progressive enhancement only. Every form works without this
// file; it adds OTP paste/auto-submit, live countdowns, the resend cooldown and a
// "copy codes" button. Loaded from 'self' so the CSP needs no 'unsafe-inline'.
(function () {
  "use strict";

  function digitsOf(text) {
    return (text || "").replace(/\D+/g, "");
  }

  function formatSeconds(total) {
    var m = Math.floor(total / 60);
    var s = total % 60;
    return m + ":" + (s < 10 ? "0" : "") + s;
  }

  // Counts down from the server-rendered number of seconds. Uses an absolute
  // deadline so a throttled background tab still shows the right time.
  function startCountdown(el, seconds, onTick, onDone) {
    var deadline = Date.now() + seconds * 1000;
    function tick() {
      var remainingMs = Math.max(0, deadline - Date.now());
      var left = Math.ceil(remainingMs / 1000);
      if (onTick) { onTick(left); }
      if (left <= 0) {
        if (onDone) { onDone(); }
        return;
      }
      // Wake up exactly when the displayed second changes.
      window.setTimeout(tick, remainingMs % 1000 || 1000);
    }
    tick();
  }

  function enhanceCountdowns() {
    var nodes = document.querySelectorAll("[data-countdown]");
    Array.prototype.forEach.call(nodes, function (el) {
      var seconds = parseInt(el.getAttribute("data-countdown"), 10);
      if (!isFinite(seconds) || seconds < 0) { return; }
      startCountdown(el, seconds, function (left) {
        el.textContent = formatSeconds(left);
        el.setAttribute("datetime", "PT" + left + "S");
      }, function () {
        var done = el.getAttribute("data-countdown-done");
        if (done && el.parentElement) { el.parentElement.textContent = done; }
      });
    });
  }

  function enhanceResend() {
    var buttons = document.querySelectorAll("[data-resend-cooldown]");
    Array.prototype.forEach.call(buttons, function (btn) {
      var seconds = parseInt(btn.getAttribute("data-resend-cooldown"), 10);
      if (!isFinite(seconds) || seconds <= 0) { return; }
      var label = btn.textContent;
      btn.disabled = true;
      startCountdown(btn, seconds, function (left) {
        btn.textContent = left > 0 ? label + " (" + formatSeconds(left) + ")" : label;
      }, function () {
        btn.disabled = false;
        btn.textContent = label;
      });
    });
  }

  function enhanceOtpInputs() {
    var inputs = document.querySelectorAll("[data-otp-input]");
    Array.prototype.forEach.call(inputs, function (input) {
      var form = input.form;
      var max = parseInt(input.getAttribute("maxlength"), 10) || 6;
      var submitted = false;

      function maybeSubmit() {
        if (submitted || !form || input.value.length !== max) { return; }
        submitted = true;
        if (typeof form.requestSubmit === "function") { form.requestSubmit(); } else { form.submit(); }
      }

      input.addEventListener("input", function () {
        var clean = digitsOf(input.value).slice(0, max);
        if (clean !== input.value) { input.value = clean; }
        maybeSubmit();
      });

      // Codes are often pasted as "123 456" or with the surrounding sentence.
      input.addEventListener("paste", function (event) {
        var data = event.clipboardData || window.clipboardData;
        if (!data) { return; }
        var clean = digitsOf(data.getData("text")).slice(0, max);
        if (!clean) { return; }
        event.preventDefault();
        input.value = clean;
        maybeSubmit();
      });

      if (form) {
        form.addEventListener("submit", function () {
          submitted = true;
          var button = form.querySelector("button[type=submit]");
          if (button) { button.disabled = true; }
        });
      }
    });
  }

  function enhanceCopyButtons() {
    if (!navigator.clipboard || !navigator.clipboard.writeText) { return; }
    var buttons = document.querySelectorAll("[data-copy-target]");
    Array.prototype.forEach.call(buttons, function (btn) {
      var target = document.getElementById(btn.getAttribute("data-copy-target"));
      if (!target) { return; }
      var status = btn.parentElement ? btn.parentElement.querySelector("[data-copy-status]") : null;
      btn.hidden = false;
      btn.addEventListener("click", function () {
        var codes = Array.prototype.map.call(target.querySelectorAll("li"), function (li) {
          return li.textContent.trim();
        });
        navigator.clipboard.writeText(codes.join("\n")).then(function () {
          if (status) { status.textContent = "Copied " + codes.length + " codes to the clipboard."; }
        }, function () {
          if (status) { status.textContent = "Copying failed; select the codes and copy them by hand."; }
        });
      });
    });
  }

  function init() {
    enhanceCountdowns();
    enhanceResend();
    enhanceOtpInputs();
    enhanceCopyButtons();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
