// Drives Debian's headless Chromium through "forgot your password?" with
// JavaScript on or off: the link on the sign-in page, the name, the code from
// the e-mail (handed over by the test from its SMTP sink), a new password,
// then signing in with it. Any failed check exits non-zero; success prints "OK".
import { check, emailedCode, finish, open, run } from "./harness.mjs";

const [origin, js] = process.argv.slice(2);
const jsOn = js === "on";
const NEW_PASSWORD = "orchard velvet compass 19";
const { browser, page, problems } = await open(jsOn);

run.step = "the sign-in page links to the reset";
console.log("STEP " + run.step);
await page.goto(origin + "/_auth/login");
await page.getByRole("link", { name: "Forgot your password?" }).click();
await page.waitForLoadState();
check(page.url() === origin + "/_auth/reset", "at the reset page, got " + page.url());

run.step = "asking for a code";
console.log("STEP " + run.step);
await page.getByLabel("Username or e-mail").fill("testuser");
await page.getByRole("button", { name: "E-mail me a code" }).click();
await page.waitForLoadState();
check((await page.content()).includes("If an account matches, a code is on its way"), "the same message for every name");
check(await page.getByLabel("Username or e-mail").inputValue() === "testuser", "the name is kept");
await page.screenshot({ path: process.env.SHOTS + "/reset-code-" + js + ".png", fullPage: true });

run.step = "a weak password is refused with advice";
console.log("STEP " + run.step);
const code = await emailedCode();
await page.getByLabel("Code from the e-mail").fill(code);
await page.getByLabel("New password", { exact: true }).fill("password1");
await page.getByLabel("New password again").fill("password1");
await page.getByRole("button", { name: "Set the new password" }).click();
await page.waitForLoadState();
check((await page.content()).includes("This password is too easy to guess."), "the weak password's reason");
// That answer was a 400, which Chromium logs as a failed load: expected.
problems.length = 0;

run.step = "setting the new password";
console.log("STEP " + run.step);
await page.getByLabel("Code from the e-mail").fill(code);
await page.getByLabel("New password", { exact: true }).fill(NEW_PASSWORD);
await page.getByLabel("New password again").fill(NEW_PASSWORD);
await page.getByRole("button", { name: "Set the new password" }).click();
await page.waitForLoadState();
check((await page.content()).includes("Your password was changed"), "the done page: " + (await page.content()).slice(0, 2000));
await page.screenshot({ path: process.env.SHOTS + "/reset-done-" + js + ".png", fullPage: true });

run.step = "signing in with the new password";
console.log("STEP " + run.step);
await page.getByRole("link", { name: "Sign in with the new password" }).click();
await page.waitForLoadState();
await page.getByLabel("Username or e-mail").fill("testuser");
await page.getByLabel("Password", { exact: true }).fill(NEW_PASSWORD);
await page.getByRole("button", { name: "Sign in" }).click();
await page.waitForLoadState();
check(page.url().startsWith(origin + "/_auth/account"), "signed in with the new password, at " + page.url());

await finish(browser, problems);
