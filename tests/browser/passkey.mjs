// Passkeys in headless Chromium with JavaScript on and the DevTools virtual authenticator (CTAP2,
// internal transport, resident keys, user verification): a Temporary Access Pass leads to the
// registration interrupt, which creates a passkey through Keyward's script; after signing out,
// the passkey alone signs in (from the user-name field's autofill, then with the button on the
// password page); after signing out again, a password and then the passkey as the second factor. Prints one JSON line describing what it saw. Run by
// tests/compat/test_sign_in_pages.py, which starts the server; inputs come from the environment
// (KEYWARD_URL, KEYWARD_TENANT, KEYWARD_UPN, KEYWARD_PASS, KEYWARD_PASSWORD, KEYWARD_CHROMIUM,
// KEYWARD_SPKI: the SHA-256 of the server certificate's public key, so Chromium trusts it as
// WebAuthn requires, without a certificate error).
import { chromium } from "playwright-core";
import { env } from "./lib.mjs";

const browser = await chromium.launch({
  executablePath: env("KEYWARD_CHROMIUM"),
  headless: true,
  args: ["--no-sandbox", `--ignore-certificate-errors-spki-list=${env("KEYWARD_SPKI")}`],
});
try {
  const context = await browser.newContext();
  const page = await context.newPage();
  const problems = [];
  page.on("console", (message) => {
    if (message.type() === "warning" || message.type() === "error") problems.push(message.text());
  });
  page.on("pageerror", (err) => problems.push(String(err)));
  const cdp = await context.newCDPSession(page);
  await cdp.send("WebAuthn.enable");
  const { authenticatorId } = await cdp.send("WebAuthn.addVirtualAuthenticator", {
    options: {
      protocol: "ctap2",
      transport: "internal",
      hasResidentKey: true,
      hasUserVerification: true,
      isUserVerified: true,
      automaticPresenceSimulation: true,
    },
  });

  const titles = [];
  const title = async () => {
    const text = (await page.locator("h1").innerText()).trim();
    titles.push(text);
    return text;
  };
  const expect = async (wanted) => {
    const got = await title();
    if (got !== wanted) {
      const body = await page.locator("main").innerText();
      throw new Error(`expected '${wanted}', got '${got}': ${body}\nconsole: ${problems.join(" | ")}`);
    }
  };
  const click = async (name) => {
    await Promise.all([page.waitForNavigation(), page.getByRole("button", { name, exact: true }).click()]);
  };
  const tenantLogin = `${env("KEYWARD_URL")}/${env("KEYWARD_TENANT")}/login`;

  // 1. A pass, the interrupt, a passkey made by the virtual authenticator.
  await page.goto(tenantLogin);
  await expect("Sign in");
  const autocomplete = await page.locator("#username").getAttribute("autocomplete");
  await page.fill("#username", env("KEYWARD_UPN"));
  await click("Next");
  await expect("Enter password");
  await page.fill("#password", env("KEYWARD_PASS"));
  await click("Sign in");
  await expect("More information required");
  await click("Set up a passkey");
  await expect("Create a passkey");
  await page.fill("#passkey_name", "Virtual authenticator");
  await click("Create passkey");
  await expect("My account");
  const listed = await page.locator("#methods").innerText();
  const { credentials } = await cdp.send("WebAuthn.getCredentials", { authenticatorId });

  const presence = (enabled) =>
    cdp.send("WebAuthn.setAutomaticPresenceSimulation", { authenticatorId, enabled });

  // 2. Signed out, the sign-in page offers the passkey in the user-name field's autofill
  //    (conditional mediation); the virtual authenticator answers it at once, and it signs in.
  await click("Sign out");
  await page.waitForSelector("#signed-in");
  await expect("My account");
  const passwordless = await page.locator("#signed-in").innerText();

  // With the authenticator not answering (so the autofill request stays open), sign out and
  // name the user: the password page.
  const signOutAndName = async () => {
    await presence(false);
    await click("Sign out");
    await expect("Sign in");
    await page.fill("#username", env("KEYWARD_UPN"));
    await click("Next");
    await expect("Enter password");
  };

  // 3. The button on the password page: "Sign in with a passkey instead" signs in with the
  //    passkey alone.
  await signOutAndName();
  await presence(true);
  await click("Sign in with a passkey instead");
  await expect("My account");

  // 4. A password, then the passkey as the second factor.
  await signOutAndName();
  await page.fill("#password", env("KEYWARD_PASSWORD"));
  await click("Sign in");
  await expect("Enter code");
  await presence(true);
  await click("Use a passkey");
  await expect("My account");
  const after = (await cdp.send("WebAuthn.getCredentials", { authenticatorId })).credentials;

  console.log(
    JSON.stringify({
      titles,
      autocomplete,
      listed,
      passwordless,
      residentKeys: credentials.filter((it) => it.isResidentCredential).length,
      signCount: after.length ? after[0].signCount : -1,
      problems,
    }),
  );
} finally {
  await browser.close();
}
