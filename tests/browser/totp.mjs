// Drives Debian's headless Chromium through setting up an authenticator app
// on the account page and signing in with it, with JavaScript on or off. The
// codes are computed here from the secret the page shows (RFC 6238 with
// HMAC-SHA-1, as an app does), independently of the gateway's own code.
// Any failed check exits non-zero; success prints "OK".
import { createHmac } from "node:crypto";
import { check, emailedCode, finish, open, run } from "./harness.mjs";

const [origin, js] = process.argv.slice(2);
const jsOn = js === "on";

function base32Decode(text) {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let bits = 0, value = 0;
  const out = [];
  for (const c of text.replace(/[\s=]/g, "").toUpperCase()) {
    const v = alphabet.indexOf(c);
    if (v < 0) { throw new Error("not base32: " + c); }
    value = (value << 5) | v;
    bits += 5;
    if (bits >= 8) { out.push((value >>> (bits - 8)) & 0xff); bits -= 8; }
  }
  return Buffer.from(out);
}

function totp(secret, step) {
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(step));
  const h = createHmac("sha1", secret).update(counter).digest();
  const offset = h[h.length - 1] & 0x0f;
  const bin = ((h[offset] & 0x7f) << 24) | (h[offset + 1] << 16) | (h[offset + 2] << 8) | h[offset + 3];
  return String(bin % 1000000).padStart(6, "0");
}

const nowStep = () => Math.floor(Date.now() / 1000 / 30);

const { browser, page, problems } = await open(jsOn);

async function signIn() {
  await page.goto(origin + "/_auth/login");
  await page.getByLabel("Username or e-mail").fill("testuser");
  await page.getByLabel("Password", { exact: true }).fill("testpassword123");
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.waitForLoadState();
}

run.step = "password only";
// The policy is one_factor: the password alone reaches the account page.
await signIn();
check(page.url().startsWith(origin + "/_auth/account"), "at the account page, got " + page.url());

run.step = "step up";
// The password alone adds no factor: the page offers a code by e-mail first.
check(!(await page.locator("#totp-setup-password").isVisible()), "no setup form for a one-factor session");
await page.getByRole("button", { name: "E-mail me a code to add an authenticator app" }).click();
await page.waitForLoadState();
check(page.url().startsWith(origin + "/_auth/otp"), "asked for the e-mailed code, got " + page.url());
const stepUpCode = await emailedCode();
if (jsOn) {
  await Promise.all([page.waitForURL(/\/_auth\/account/), page.locator("#otp_code").pressSequentially(stepUpCode)]);
} else {
  await page.locator("#otp_code").fill(stepUpCode);
  await Promise.all([page.waitForURL(/\/_auth\/account/), page.getByRole("button", { name: "Verify and sign in" }).click()]);
}

run.step = "setup";
await page.locator("#totp-setup-password").fill("testpassword123");
await page.getByRole("button", { name: "Set up an authenticator app" }).click();
await page.waitForLoadState();
check(await page.locator("figure.totp-qr svg").isVisible(), "the QR code is shown as inline SVG");
const box = await page.locator("figure.totp-qr svg").boundingBox();
check(box && box.width >= 150 && box.height >= 150, "the QR code is big enough to scan: " + JSON.stringify(box));
const secret = base32Decode(await page.locator("#totp-secret").innerText());
check(secret.length === 20, "a 160-bit key for typing in");

run.step = "confirm";
const confirmStep = nowStep();
const input = page.locator("#totp_code");
check(await input.getAttribute("maxlength") === "6", "six digits");
if (jsOn) {
  // The last digit submits the form by itself.
  await Promise.all([page.waitForURL(/\/account\/totp\/confirm/), input.pressSequentially(totp(secret, confirmStep))]);
} else {
  await input.fill(totp(secret, confirmStep));
  await Promise.all([page.waitForURL(/\/account\/totp\/confirm/), page.getByRole("button", { name: "Confirm" }).click()]);
}
await page.waitForLoadState();
check((await page.content()).includes("Your authenticator app is set up"), "confirmed");
check((await page.locator("#backup-codes li").count()) === 8, "eight backup codes with the app");
check(await page.getByRole("button", { name: "Remove the authenticator app" }).isVisible(), "the app is listed as on");

run.step = "sign out";
await page.goto(origin + "/_auth/logout");
await Promise.all([page.waitForURL(/\/_auth\/login/), page.getByRole("button", { name: /Sign out/ }).click()]);

run.step = "sign in with the app";
await signIn();
check(page.url().startsWith(origin + "/_auth/otp"), "asked for the second factor, got " + page.url());
check((await page.locator("h1").innerText()).includes("Use your authenticator app"), "the app's form comes first");
check(await page.getByRole("button", { name: "E-mail me a code instead" }).isVisible(), "e-mail offered");
check(await page.getByRole("link", { name: "Use a backup code instead" }).isVisible(), "backup code offered");

// A wrong code first: the page says so and stays on the app's form.
await page.locator("#otp_code").fill(totp(secret, confirmStep - 20));
await page.getByRole("button", { name: "Verify and sign in" }).click();
await page.waitForLoadState();
check((await page.content()).includes("Invalid code from your authenticator app"), "the wrong code is refused");
check((await page.locator("input[name=method]").first().getAttribute("value")) === "totp", "still the app's form");
// The refusal is a 400 (which Chromium also reports on the console); nothing else went wrong.
const expected = (p) => (p.startsWith("400 POST") && p.endsWith("/_auth/otp")) || p.includes("status of 400");
check(problems.some((p) => p.startsWith("400 POST")), "the refusal is a 400");
problems.splice(0, problems.length, ...problems.filter((p) => !expected(p)));

// The confirming code's step is used: the next step's code (within the drift) signs in.
const loginCode = totp(secret, Math.max(nowStep(), confirmStep + 1));
if (jsOn) {
  await Promise.all([page.waitForURL(/\/_auth\/account/), page.locator("#otp_code").pressSequentially(loginCode)]);
} else {
  await page.locator("#otp_code").fill(loginCode);
  await Promise.all([page.waitForURL(/\/_auth\/account/), page.getByRole("button", { name: "Verify and sign in" }).click()]);
}
check((await page.locator("h1").innerText()).includes("Your account"), "signed in with two factors");
await page.goto(origin + "/app/whoami");
const echo = JSON.parse(await page.locator("body").innerText());
check(echo.headers["remote-user"][0] === "testuser", "the upstream sees the user");

run.step = "remove";
await page.goto(origin + "/_auth/account");
await page.locator("#totp-remove-password").fill("testpassword123");
await page.getByRole("button", { name: "Remove the authenticator app" }).click();
await page.waitForLoadState();
check((await page.content()).includes("Your authenticator app was removed."), "removed");
check(await page.getByRole("button", { name: "Set up an authenticator app" }).isVisible(), "can be set up again");

await finish(browser, problems);
