// The seed's story in the admin portal, in headless Chromium: a Global Administrator makes a
// service-desk agent Privileged Authentication Administrator on the role's page (search and pick,
// JavaScript on); the agent (JavaScript off) signs in with a password and a newly registered
// authenticator app, lands in the portal from `/`, searches the user, opens their page, presses
// "Require re-register MFA" and confirms. Prints one JSON line describing what it saw. Run by
// tests/compat/test_portal.py, which starts the server and prepares the users; inputs come from
// the environment (KEYWARD_URL, KEYWARD_TENANT, KEYWARD_ADMIN_UPN, KEYWARD_UPN, KEYWARD_HELPER_UPN,
// KEYWARD_PASSWORD (every user's), KEYWARD_TARGET, KEYWARD_CHROMIUM, KEYWARD_SCREENSHOT). Then:
// the user's next sign-in is interrupted; the agent creates a Temporary Access Pass with which the
// user signs in, registers an app and adds another on My Security Info; an Authentication
// Administrator finds the action disabled on the Global Administrator's page and a forged post
// refused; the Global Administrator enables per-user MFA for 50 users at once.
import { createRequire } from "node:module";
import { chromium } from "playwright-core";
import { base32, env, totp } from "./lib.mjs";

const axePath = createRequire(import.meta.url).resolve("axe-core/axe.min.js");
const PRIVILEGED_AUTHENTICATION_ADMINISTRATOR = "7be44c8a-adaf-4e2a-84d6-ab2649e08a13";

const browser = await chromium.launch({ executablePath: env("KEYWARD_CHROMIUM"), headless: true, args: ["--no-sandbox"] });
try {
  const context = await browser.newContext({ ignoreHTTPSErrors: true, javaScriptEnabled: false });
  const page = await context.newPage();
  // Script errors and refused resources (the Content-Security-Policy) reach the test's output.
  page.on("pageerror", (err) => console.error(`page error: ${err.message}`));
  page.on("console", (message) => {
    if (message.type() === "error" || message.type() === "warning") console.error(`console: ${message.text()}`);
  });
  const titles = [];
  const title = async () => {
    const text = (await page.locator("h1").innerText()).trim();
    titles.push(text);
    return text;
  };
  const click = async (selector) => {
    await Promise.all([page.waitForNavigation(), page.locator(selector).first().click()]);
  };

  // Signs in with a password, registering an authenticator app (role holders must use MFA).
  const signIn = async (on, upn, onTitle) => {
    const go = async (selector) => {
      await Promise.all([on.waitForNavigation(), on.locator(selector).first().click()]);
    };
    await on.goto(`${env("KEYWARD_URL")}/${env("KEYWARD_TENANT")}/login`);
    await on.fill('input[autocomplete="username"]', upn);
    await go("form button[type=submit]");
    await on.fill('input[autocomplete="current-password"]', env("KEYWARD_PASSWORD"));
    await go("form button[type=submit]");
    const interrupt = (await on.locator("h1").innerText()).trim();
    onTitle(interrupt);
    if (interrupt !== "More information required") throw new Error(`expected the interrupt, got ${interrupt}`);
    await go("form button[type=submit]");
    const secret = base32(await on.locator("#secret").innerText());
    await on.fill('input[autocomplete="one-time-code"]', totp(secret));
    await go("form button[type=submit]");
    onTitle((await on.locator("h1").innerText()).trim());
  };
  const admin = `${env("KEYWARD_URL")}/${env("KEYWARD_TENANT")}/admin`;

  // A Global Administrator makes the agent Privileged Authentication Administrator in the
  // portal: on the role's page, search as you type (JavaScript on, the pages' CSP enforced),
  // tick the agent, Add assignments.
  const chiefContext = await browser.newContext({ ignoreHTTPSErrors: true });
  const chief = await chiefContext.newPage();
  chief.on("pageerror", (err) => console.error(`page error: ${err.message}`));
  chief.on("console", (message) => console.error(`console: ${message.text()}`));
  const chiefTitles = [];
  await signIn(chief, env("KEYWARD_ADMIN_UPN"), (it) => chiefTitles.push(it));
  await chief.goto(`${admin}/roles/${PRIVILEGED_AUTHENTICATION_ADMINISTRATOR}`);
  const agentAlias = env("KEYWARD_UPN").split("@")[0];
  await chief.locator("#find").pressSequentially(agentAlias, { delay: 20 });
  const pick = chief.locator("#results li", { hasText: env("KEYWARD_UPN") }).locator("input[type=checkbox]");
  await pick.waitFor({ timeout: 10000 });
  await pick.check();
  await chief.screenshot({ path: env("KEYWARD_SCREENSHOT").replace(".png", "-role.png"), fullPage: true });
  await Promise.all([chief.waitForNavigation(), chief.locator("#add").click()]);
  const assigned = await chief.locator("#summary").innerText();

  // The agent signs in with a password, registering an authenticator app.
  await signIn(page, env("KEYWARD_UPN"), (it) => titles.push(it));

  // `/` leads an administrator to the portal; search the user and open their page.
  await page.goto(`${env("KEYWARD_URL")}/`);
  await title();
  const header = await page.locator("#signed-in-as").innerText();
  await page.fill("#search", env("KEYWARD_TARGET").split("@")[0]);
  await click("form[role=search] button");
  const usersUrl = page.url();
  await page.screenshot({ path: env("KEYWARD_SCREENSHOT").replace(".png", "-users.png") });
  await click(`#users a:has-text("${env("KEYWARD_TARGET").split("@")[0]}")`);
  await title();
  const userUrl = page.url();
  const before = await page.locator("#methods").innerText();

  // Require re-register MFA, confirmed on its own page.
  await click("#require_reregistration");
  await title();
  const confirmUrl = page.url();
  const what = await page.locator("#what").innerText();
  await click("#confirm");
  await title();
  const notice = await page.locator("#notice").innerText();
  const after = await page.locator("#methods").innerText();
  await page.screenshot({ path: env("KEYWARD_SCREENSHOT"), fullPage: true });

  const go = async (on, selector) => {
    await Promise.all([on.waitForNavigation(), on.locator(selector).first().click()]);
  };
  const h1 = async (on) => (await on.locator("h1").innerText()).trim();
  const firstSteps = async (on, upn, secret) => {
    await on.goto(`${env("KEYWARD_URL")}/${env("KEYWARD_TENANT")}/login`);
    await on.fill('input[autocomplete="username"]', upn);
    await go(on, "form button[type=submit]");
    await on.fill('input[autocomplete="current-password"]', secret);
    await go(on, "form button[type=submit]");
    return h1(on);
  };
  const registerApp = async (on) => {
    const secret = base32(await on.locator("#secret").innerText());
    await on.fill('input[autocomplete="one-time-code"]', totp(secret));
    await go(on, "form button[type=submit]");
    return h1(on);
  };
  const freshPage = async () => {
    const context = await browser.newContext({ ignoreHTTPSErrors: true, javaScriptEnabled: false });
    return [context, await context.newPage()];
  };

  // The user's next sign-in asks them to register again.
  const [userContext, userPage] = await freshPage();
  const interrupt = await firstSteps(userPage, env("KEYWARD_TARGET"), env("KEYWARD_PASSWORD"));
  await userContext.close();

  // Create Temporary Access Pass (shown once); the user signs in with it, registers an app at
  // the interrupt, then adds a second one on My Security Info.
  await page.goto(userUrl);
  await go(page, "#create_tap");
  await go(page, "#confirm");
  const pass = (await page.locator("#secret").innerText()).trim();
  const [tapContext, tapPage] = await freshPage();
  const tapTitles = [await firstSteps(tapPage, env("KEYWARD_TARGET"), pass)];
  if (tapTitles[0] === "More information required") {
    await go(tapPage, "form button[type=submit]");
    tapTitles.push(await h1(tapPage));
  }
  tapTitles.push(await registerApp(tapPage));
  await go(tapPage, "form:has(input[name=step][value=add_totp]) button");
  tapTitles.push(await h1(tapPage));
  tapTitles.push(await registerApp(tapPage));
  const accountMethods = await tapPage.locator("#methods").innerText();
  await tapContext.close();

  // An Authentication Administrator sees Require re-register MFA disabled, with the reason, on a
  // Global Administrator's page; a forged post is refused anyway (and recorded).
  const [helperContext, helper] = await freshPage();
  const helperTitles = [];
  await signIn(helper, env("KEYWARD_HELPER_UPN"), (it) => helperTitles.push(it));
  const chiefAlias = env("KEYWARD_ADMIN_UPN").split("@")[0];
  await helper.goto(`${admin}/users?search=${chiefAlias}`);
  await go(helper, `#users a:has-text("${chiefAlias}")`);
  const chiefUrl = helper.url();
  const isDisabled = await helper.locator("#require_reregistration").isDisabled();
  const disabledWhy = await helper.locator("#require_reregistration-why").innerText();
  await helper.goto(`${admin}/roles/${PRIVILEGED_AUTHENTICATION_ADMINISTRATOR}`);
  const csrf = await helper.locator("input[name=csrf]").first().inputValue();
  const forged = await helper.request.post(chiefUrl, { form: { csrf, action: "require_reregistration" } });
  const forgedStatus = forged.status();
  await helperContext.close();

  // Per-user MFA for 50 users at once: select, review the count, confirm, read the summary.
  await chief.goto(`${admin}/mfa?search=bulk`);
  const boxes = chief.locator("#users input[name=user]");
  const selected = await boxes.count();
  for (let index = 0; index < selected; index += 1) await boxes.nth(index).check();
  await chief.selectOption("#state", "enabled");
  await go(chief, "#review");
  const bulkWhat = await chief.locator("#what").innerText();
  await go(chief, "#confirm");
  const bulkSummary = await chief.locator("#summary").innerText();
  await chiefContext.close();

  // The methods activity report, drawn by the server (charts as SVG, with tables as text).
  await page.goto(`${admin}/reports`);
  await title();
  await page.screenshot({ path: env("KEYWARD_SCREENSHOT").replace(".png", "-reports.png"), fullPage: true });

  // Search as you type (the portal's one script), in a context with JavaScript on and the
  // pages' Content-Security-Policy enforced: the list follows the text without a submit.
  const liveContext = await browser.newContext({ ignoreHTTPSErrors: true, storageState: await context.storageState() });
  const live = await liveContext.newPage();
  live.on("pageerror", (err) => console.error(`page error: ${err.message}`));
  live.on("console", (message) => console.error(`console: ${message.text()}`));
  await live.goto(`${admin}/users`);
  const wanted = env("KEYWARD_TARGET").split("@")[0];
  await live.locator("#search").pressSequentially(wanted, { delay: 20 });
  await live.waitForFunction(
    (name) => {
      const rows = document.querySelectorAll("#users tbody tr");
      return rows.length === 1 && rows[0].innerText.includes(name);
    },
    wanted,
    { timeout: 10000 },
  );
  const liveUrl = live.url();
  await liveContext.close();

  // axe-core on each portal page, in a context that shares the session and may run the checker
  // (the pages themselves allow no script).
  const axeContext = await browser.newContext({
    ignoreHTTPSErrors: true,
    bypassCSP: true,
    storageState: await context.storageState(),
  });
  const axePage = await axeContext.newPage();
  const violations = [];
  const pages = [usersUrl, userUrl, confirmUrl, `${admin}/groups`, `${admin}/units`, `${admin}/mfa`, `${admin}/roles`, `${admin}/roles/62e90394-69f5-4237-9190-012177145e10`, `${admin}/audit`, `${admin}/sign-ins`, `${admin}/notifications`, `${admin}/approvals`, `${admin}/bulk`, `${admin}/reports`, `${admin}/users/new`, `${admin}/settings`, `${admin}/roles/new`, `${admin}/roles/${PRIVILEGED_AUTHENTICATION_ADMINISTRATOR}?find=portal`, `${admin}/my-roles`];
  for (const url of [...pages, `${env("KEYWARD_URL")}/${env("KEYWARD_TENANT")}/login`]) {
    await axePage.goto(url);
    await axePage.addScriptTag({ path: axePath });
    const found = await axePage.evaluate(async () => (await window.axe.run(document)).violations);
    for (const it of found.filter((v) => v.impact === "serious" || v.impact === "critical")) {
      violations.push({ url, id: it.id, impact: it.impact, nodes: it.nodes.map((n) => n.html).slice(0, 3) });
    }
  }
  console.log(JSON.stringify({ chiefTitles, assigned, interrupt, tapTitles, accountMethods, helperTitles, isDisabled, disabledWhy, forgedStatus, selected, bulkWhat, bulkSummary, titles, header, before, what, notice, after, liveUrl, violations }));
} finally {
  await browser.close();
}
