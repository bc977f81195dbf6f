// Signs a user in through Keyward's sign-in pages in headless Chromium with JavaScript turned
// off, registering an authenticator app on the way (the registration interrupt), and prints one
// JSON line describing what it saw. Run by tests/compat/test_sign_in_pages.py, which starts the
// server; inputs come from the environment (KEYWARD_URL, KEYWARD_TENANT, KEYWARD_UPN,
// KEYWARD_PASSWORD, KEYWARD_CHROMIUM, KEYWARD_SCREENSHOT).
import { chromium } from "playwright-core";
import { base32, env, totp } from "./lib.mjs";

const browser = await chromium.launch({
  executablePath: env("KEYWARD_CHROMIUM"),
  headless: true,
  args: ["--no-sandbox"],
});
try {
  const context = await browser.newContext({ ignoreHTTPSErrors: true, javaScriptEnabled: false });
  const page = await context.newPage();
  const titles = [];
  const title = async () => {
    const text = (await page.locator("h1").innerText()).trim();
    titles.push(text);
    return text;
  };
  const submit = async () => {
    await Promise.all([page.waitForNavigation(), page.locator("form button[type=submit]").first().click()]);
  };

  await page.goto(`${env("KEYWARD_URL")}/${env("KEYWARD_TENANT")}/login`);
  await title();
  await page.fill("#username", env("KEYWARD_UPN"));
  await submit();
  await title();
  await page.fill('input[autocomplete="current-password"]', env("KEYWARD_PASSWORD"));
  await submit();
  if ((await title()) !== "More information required") throw new Error(`expected the interrupt, got ${titles}`);
  await submit();
  await title();
  const qr = await page.locator("svg#qr").boundingBox();
  const secret = base32(await page.locator("#secret").innerText());
  await page.fill('input[autocomplete="one-time-code"]', totp(secret));
  await submit();
  await title();
  await page.screenshot({ path: env("KEYWARD_SCREENSHOT") });
  const cookie = (await context.cookies()).find((it) => it.name.includes("keyward-session"));
  console.log(JSON.stringify({ titles, qrWidth: qr ? qr.width : 0, cookie }));
} finally {
  await browser.close();
}
