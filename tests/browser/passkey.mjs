// Drives Debian's headless Chromium with a virtual authenticator (CDP's
// WebAuthn domain) through adding a passkey on the account page, signing in
// with it as the second factor, and removing it. A passkey answer made on
// another origin (the upstream's, same host name so the same RP ID) is
// refused by the gateway. With JavaScript off, the pages say passkeys need it.
// Any failed check exits non-zero; success prints "OK".
import { check, emailedCode, finish, open, run } from "./harness.mjs";

const [origin, js, , otherOrigin] = process.argv.slice(2);
const jsOn = js === "on";
const { browser, context, page, problems } = await open(jsOn);

async function signIn() {
  await page.goto(origin + "/_auth/login");
  await page.getByLabel("Username or e-mail").fill("testuser");
  await page.getByLabel("Password", { exact: true }).fill("testpassword123");
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.waitForLoadState();
}

run.step = "password only";
await signIn();
check(page.url().startsWith(origin + "/_auth/account"), "at the account page, got " + page.url());
check((await page.locator("#passkey-heading").innerText()) === "Passkeys", "a passkeys panel");

run.step = "step up";
// The password alone adds no factor: the page offers a code by e-mail first
// (a form: it works without JavaScript too).
check(!(await page.locator("#passkey-password").isVisible()), "no passkey form for a one-factor session");
await page.getByRole("button", { name: "E-mail me a code to add a passkey" }).click();
await page.waitForLoadState();
check(page.url().startsWith(origin + "/_auth/otp"), "asked for the e-mailed code, got " + page.url());
const stepUpCode = await emailedCode();
if (jsOn) {
  // The last digit submits the form by itself.
  await Promise.all([page.waitForURL(/\/_auth\/account/), page.locator("#otp_code").pressSequentially(stepUpCode)]);
} else {
  await page.locator("#otp_code").fill(stepUpCode);
  await Promise.all([page.waitForURL(/\/_auth\/account/), page.getByRole("button", { name: "Verify and sign in" }).click()]);
}

if (!jsOn) {
  check(await page.getByText("Adding a passkey needs JavaScript").isVisible(), "says passkeys need JavaScript");
  check(!(await page.getByRole("button", { name: "Add a passkey" }).isVisible()), "no dead button without JavaScript");
  await finish(browser, problems);
}

run.step = "virtual authenticator";
const cdp = await page.context().newCDPSession(page);
await cdp.send("WebAuthn.enable");
const { authenticatorId } = await cdp.send("WebAuthn.addVirtualAuthenticator", {
  options: { protocol: "ctap2", transport: "internal", hasResidentKey: true, hasUserVerification: true, isUserVerified: true },
});

run.step = "register";
check(!(await page.getByText("Adding a passkey needs JavaScript").isVisible()), "the no-JavaScript note is hidden");
await page.locator("#passkey-name").fill("Test laptop");
await page.locator("#passkey-password").fill("testpassword123");
await Promise.all([
  page.waitForEvent("load"),
  page.getByRole("button", { name: "Add a passkey" }).click(),
]);
await page.waitForLoadState();
check((await page.locator(".passkey-name").allInnerTexts()).includes("Test laptop"), "the passkey is listed by name");
const creds = (await cdp.send("WebAuthn.getCredentials", { authenticatorId })).credentials;
check(creds.length === 1 && creds[0].rpId === "localhost", "the authenticator holds one credential for localhost: " + JSON.stringify(creds.map((c) => c.rpId)));

run.step = "sign out";
await page.goto(origin + "/_auth/logout");
await Promise.all([page.waitForURL(/\/_auth\/login/), page.getByRole("button", { name: /Sign out/ }).click()]);

run.step = "sign in: password";
await signIn();
check(page.url().startsWith(origin + "/_auth/otp"), "asked for the second factor, got " + page.url());
check(await page.getByRole("button", { name: "Sign in with a passkey" }).isVisible(), "the passkey is offered");

run.step = "an answer made on another origin is refused";
// The gateway's challenge, answered by the same authenticator on another
// origin (the upstream at localhost:<its port>: the same RP ID), then
// handed to the gateway: its origin check must refuse it.
const options = await page.evaluate(async (o) => {
  const r = await fetch(o + "/_auth/api/passkey/login/start", {
    method: "POST", headers: { "Content-Type": "application/json" }, body: "{}",
  });
  return r.json();
}, origin);
check(options.options && options.options.publicKey && options.options.publicKey.challenge, "request options");
const loginUrl = page.url();
await page.goto(otherOrigin + "/elsewhere");
const foreign = await page.evaluate(async (pk) => {
  const dec = (s) => Uint8Array.from(atob(s.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((s.length + 3) % 4)), (c) => c.charCodeAt(0));
  const enc = (b) => btoa(String.fromCharCode(...new Uint8Array(b))).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  pk.challenge = dec(pk.challenge);
  (pk.allowCredentials || []).forEach((c) => { c.id = dec(c.id); });
  const cred = await navigator.credentials.get({ publicKey: pk });
  const r = cred.response;
  return {
    id: cred.id, rawId: enc(cred.rawId), type: cred.type, extensions: {},
    response: { authenticatorData: enc(r.authenticatorData), clientDataJSON: enc(r.clientDataJSON), signature: enc(r.signature), userHandle: r.userHandle ? enc(r.userHandle) : null },
  };
}, options.options.publicKey);
check(JSON.parse(Buffer.from(foreign.response.clientDataJSON, "base64url")).origin === otherOrigin, "signed for the other origin");
await page.goto(loginUrl);
const refused = await page.evaluate(async ([o, credential]) => {
  const r = await fetch(o + "/_auth/api/passkey/login/finish", {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ credential }),
  });
  return { status: r.status, body: await r.json() };
}, [origin, foreign]);
check(refused.status === 400 && /could not be verified/.test(refused.body.error), "refused: " + JSON.stringify(refused));
// The refusal and the other origin's 404 page are expected; nothing else.
const expected = (p) => p.includes("/passkey/login/finish") || p.includes("/elsewhere") || p.includes("status of 40");
problems.splice(0, problems.length, ...problems.filter((p) => !expected(p)));

run.step = "sign in: passkey";
await Promise.all([
  page.waitForURL(/\/_auth\/account/),
  page.getByRole("button", { name: "Sign in with a passkey" }).click(),
]);
check((await page.locator("h1").innerText()).includes("Your account"), "signed in with two factors");
await page.goto(origin + "/app/whoami");
const echo = JSON.parse(await page.locator("body").innerText());
check(echo.headers["remote-user"][0] === "testuser", "the upstream sees the user");

run.step = "remove";
await page.goto(origin + "/_auth/account");
await page.locator("#passkey-remove-1").fill("testpassword123");
await page.getByRole("button", { name: "Remove “Test laptop”" }).click();
await page.waitForLoadState();
check((await page.content()).includes("The passkey was removed."), "removed");
check((await page.locator(".passkey-name").count()) === 0, "no passkey listed");

await finish(browser, problems);
