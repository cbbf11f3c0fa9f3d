// The operator console in Debian's headless Chromium, with JavaScript on or
// off: an operator signs in (sent from the console to the login page and
// back), unlocks a locked user from the users page, and searches the audit
// trail for what they did. tests/browser.rs sets the scene (testuser in the
// admin group, carol locked) and answers "NEED_CODE" with the e-mailed code.
// Screenshots of each step go to the directory given as the third argument.
import { mkdirSync } from "node:fs";
import { check, emailedCode as code, finish, open, run } from "./harness.mjs";

const [origin, js, shots] = process.argv.slice(2);
const jsOn = js === "on";
mkdirSync(shots, { recursive: true });
const { browser, page, problems } = await open(jsOn, { width: 1280, height: 900 });
const shot = async (name) => page.screenshot({ path: `${shots}/${name}.png`, fullPage: true });

run.step = "sign in from the console";
await page.goto(origin + "/_auth/admin");
check(page.url().startsWith(origin + "/_auth/login?rd="), "sent to sign in, got " + page.url());
await page.getByLabel("Username or e-mail").fill("testuser");
await page.getByLabel("Password", { exact: true }).fill("testpassword123");
await Promise.all([page.waitForURL(/\/_auth\/otp/), page.getByRole("button", { name: "Sign in" }).click()]);
const first = await code();
if (jsOn) {
  // Typing the last digit submits the form by itself.
  await Promise.all([page.waitForURL(/\/_auth\/admin$/), page.locator("#otp_code").pressSequentially(first)]);
} else {
  await page.locator("#otp_code").fill(first);
  await Promise.all([page.waitForURL(/\/_auth\/admin$/), page.getByRole("button", { name: "Verify and sign in" }).click()]);
}
check((await page.locator("h1").innerText()).includes("Operator console"), "the console's heading");

run.step = "the users page";
const carol = page.locator('tr[data-user="carol"]');
check(await carol.count() === 1, "carol is listed");
check((await carol.innerText()).includes("Locked"), "carol is shown locked");
check(await page.locator('tr[data-user="bob"]').count() === 1, "bob is listed");
await shot("1-users-carol-locked");

run.step = "unlock";
await Promise.all([
  page.waitForURL(/\/_auth\/admin\/unlock$/),
  page.getByRole("button", { name: "Unlock carol" }).click(),
]);
check((await page.locator(".alert-success").innerText()).includes("carol is unlocked."), "the page says so");
check(!(await page.locator('tr[data-user="carol"]').innerText()).includes("Locked"), "carol no longer locked");
check(await page.getByRole("button", { name: "Unlock carol" }).count() === 0, "no unlock button left");
await shot("2-carol-unlocked");

run.step = "search the audit trail";
await Promise.all([page.waitForURL(/\/_auth\/admin\/audit$/), page.getByRole("link", { name: "Audit trail" }).click()]);
await page.getByLabel("User").fill("carol");
await page.getByLabel("Kind").selectOption("security_event");
await Promise.all([page.waitForURL(/\/_auth\/admin\/audit\?/), page.getByRole("button", { name: "Search" }).click()]);
const rows = page.locator("table.console-table tbody tr");
const texts = await rows.allInnerTexts();
const unlocked = texts.filter((t) => t.includes("account_unlocked"));
check(unlocked.length === 1, "one account_unlocked record: " + texts.join(" | "));
check(unlocked[0].includes("testuser"), "by the operator: " + unlocked[0]);
check(texts.every((t) => t.includes("security_event")), "only security events");
const exportHref = await page.getByRole("link", { name: "Export as CSV" }).getAttribute("href");
check(exportHref.includes("user=carol") && exportHref.includes("kind=security_event"), "the export keeps the search: " + exportHref);
await shot("3-audit-carol-events");

run.step = "search by result";
await page.getByLabel("Kind").selectOption("login_attempt");
await page.getByLabel("Event or result").fill("invalid_credentials");
await Promise.all([page.waitForURL(/event=invalid_credentials/), page.getByRole("button", { name: "Search" }).click()]);
const failed = await page.locator("table.console-table tbody tr").allInnerTexts();
check(failed.length === 3 && failed.every((t) => t.includes("invalid_credentials")), "three failed attempts: " + failed.join(" | "));
await shot("4-audit-carol-failures");

run.step = "the account page links to the console";
await page.goto(origin + "/_auth/account");
check(await page.getByRole("link", { name: "Operator console" }).count() === 1, "an operator's account page links the console");

await finish(browser, problems);
