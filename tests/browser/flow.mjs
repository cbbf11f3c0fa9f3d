// Drives Debian's headless Chromium through the login, code and account pages,
// once with JavaScript on and once with it off. The Rust test (tests/browser.rs)
// runs the gateway and the SMTP sink; when a code is needed this script prints
// "NEED_CODE" and reads the code from stdin. Any failed check exits non-zero.
// A third argument gives the codes' length (otp.digits; 6 by default).
import { check, emailedCode as code, finish, open, run } from "./harness.mjs";

const [origin, js, digitsArg] = process.argv.slice(2);
const jsOn = js === "on";
const digits = parseInt(digitsArg || "6", 10);
const { browser, page, problems } = await open(jsOn);

run.step = "login page";
// A protected page sends the browser to the login page, which keeps rd.
await page.goto(origin + "/app/start?from=browser");
check(page.url().startsWith(origin + "/_auth/login?rd="), "redirected to login, got " + page.url());
check((await page.locator("h1").innerText()).includes("Sign in"), "login heading");
await page.getByLabel("Username or e-mail").fill("testuser");
await page.getByLabel("Password", { exact: true }).fill("testpassword123");
await Promise.all([page.waitForURL(/\/_auth\/otp/), page.getByRole("button", { name: "Sign in" }).click()]);
check((await page.content()).includes("tes***@example.com"), "masked e-mail on the code page");

run.step = "code entry";
const input = page.locator("#otp_code");
check(await input.getAttribute("autocomplete") === "one-time-code", "one-time-code autocomplete");
// The form asks for as many digits as the codes have.
check(await input.getAttribute("pattern") === `[0-9]{${digits}}`, "pattern for " + digits + " digits");
check(await input.getAttribute("maxlength") === String(digits), "maxlength " + digits);
check((await page.locator(".lead").innerText()).includes(`${digits}-digit`), digits + "-digit in the lead");
const first = await code();
if (jsOn) {
  // Typing the last digit submits the form by itself.
  await Promise.all([page.waitForURL(/\/app\/start/), input.pressSequentially(first)]);
} else {
  await input.fill(first);
  await Promise.all([page.waitForURL(/\/app\/start/), page.getByRole("button", { name: "Verify and sign in" }).click()]);
}
const echo = JSON.parse(await page.locator("body").innerText());
check(echo.headers["remote-user"][0] === "testuser", "upstream sees the user");
check(echo.path === "/app/start?from=browser", "back at the original URL: " + echo.path);

run.step = "account";
// The account page: turn on 2FA, confirmed by an e-mailed code.
await page.goto(origin + "/_auth/account");
check((await page.locator("h1").innerText()).length > 0, "account heading");
await page.getByRole("button", { name: "Turn on two-factor authentication" }).click();
await page.waitForLoadState();
check((await page.locator("#otp_code").getAttribute("maxlength")) === String(digits), "confirmation maxlength");
check((await page.content()).includes(`${digits}-digit code`), "confirmation wording");
const confirm = await code();
if (jsOn) {
  // The last digit submits the confirmation form by itself.
  await Promise.all([page.waitForURL(/\/account\/otp\/confirm/), page.locator("#otp_code").pressSequentially(confirm)]);
} else {
  await page.locator("#otp_code").fill(confirm);
  await Promise.all([page.waitForURL(/\/account\/otp\/confirm/), page.getByRole("button", { name: "Confirm" }).click()]);
}
await page.waitForLoadState();
const codes = await page.locator("#backup-codes li").count();
check(codes === 8, "eight backup codes shown, got " + codes);
const copy = page.getByRole("button", { name: "Copy codes" });
check((await copy.isVisible()) === jsOn, "copy button only with JavaScript");
check(await page.getByRole("link", { name: "Download as .txt" }).isVisible(), "download link");
await page.goto(origin + "/_auth/account");
check((await page.locator("#backup-codes li").count()) === 0, "codes are shown only once");

run.step = "logout";
// Sign out through the confirm page.
await page.goto(origin + "/_auth/logout");
await Promise.all([page.waitForURL(/\/_auth\/login/), page.getByRole("button", { name: /Sign out/ }).click()]);
await page.goto(origin + "/app/start");
check(page.url().startsWith(origin + "/_auth/login"), "signed out for real");

await finish(browser, problems);
