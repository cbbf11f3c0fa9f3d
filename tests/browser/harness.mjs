// What every browser script shares: Debian's headless Chromium with
// JavaScript on or off, the page's problems (console errors, page errors,
// answers of 400 and over), checks that exit non-zero naming the step they
// were in, the codes the Rust test (tests/browser.rs) reads from its SMTP sink
// and hands over on stdin when a script prints "NEED_CODE", and the end: no
// problem left, "OK", exit 0.
import { chromium } from "playwright-core";
import readline from "node:readline";

/// The step a script is in (it sets `run.step`), for the failure message.
export const run = { step: "start" };

const lines = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();

/// The next e-mailed code.
export async function emailedCode() {
  console.log("NEED_CODE");
  const { value } = await lines.next();
  return value.trim();
}

export function check(cond, msg) {
  if (!cond) {
    console.error("FAILED at " + run.step + ": " + msg);
    process.exit(1);
  }
}

process.on("unhandledRejection", (e) => {
  console.error("FAILED at " + run.step + ": " + e);
  process.exit(1);
});

/// A fresh browser, context and page (`viewport` optional); `problems`
/// collects what went wrong.
export async function open(jsOn, viewport) {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking"],
  });
  const context = await browser.newContext(viewport ? { javaScriptEnabled: jsOn, viewport } : { javaScriptEnabled: jsOn });
  const page = await context.newPage();
  const problems = [];
  page.on("console", (m) => { if (m.type() === "error") problems.push(m.text()); });
  page.on("pageerror", (e) => problems.push(String(e)));
  if (process.env.FLOW_DEBUG) page.on("response", (r) => console.error(`${r.status()} ${r.request().method()} ${r.url()}`));
  page.on("response", (r) => { if (r.status() >= 400) problems.push(`${r.status()} ${r.request().method()} ${r.url()}`); });
  return { browser, context, page, problems };
}

/// The end of a script: no Content-Security-Policy refusal and no other
/// problem, then "OK".
export async function finish(browser, problems) {
  const csp = problems.filter((p) => /Content Security Policy|Refused/.test(p));
  check(csp.length === 0, "no Content-Security-Policy violations: " + csp.join("; "));
  check(problems.length === 0, "no console errors: " + problems.join("; "));
  await browser.close();
  console.log("OK");
  process.exit(0);
}
