// openid-client (strict: issuer, RFC 9207 iss, PKCE, nonce, id token signature by the JWKS)
// runs the authorization code flow with PKCE against Keyward for the first-party public client
// `keyward-cli`; Chromium (JavaScript off) goes through the sign-in pages, and the redirect to
// the loopback URI is caught by the browser context. Prints one JSON line. Run by
// tests/compat/test_oidc_clients.py, which starts the server (KEYWARD_ISSUER, KEYWARD_UPN,
// KEYWARD_PASSWORD, KEYWARD_CHROMIUM; NODE_EXTRA_CA_CERTS trusts its certificate).
import * as client from "openid-client";
import { chromium } from "playwright-core";

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};

const redirectUri = "http://localhost:43211/";
// Keyward signs with ES256 and says so in its discovery document; OIDC's default is RS256.
const config = await client.discovery(new URL(env("KEYWARD_ISSUER")), "keyward-cli", { id_token_signed_response_alg: "ES256" }, client.None());
const codeVerifier = client.randomPKCECodeVerifier();
const codeChallenge = await client.calculatePKCECodeChallenge(codeVerifier);
const state = client.randomState();
const nonce = client.randomNonce();
const url = client.buildAuthorizationUrl(config, {
  redirect_uri: redirectUri,
  scope: "openid profile email",
  code_challenge: codeChallenge,
  code_challenge_method: "S256",
  state,
  nonce,
});

const browser = await chromium.launch({ executablePath: env("KEYWARD_CHROMIUM"), headless: true, args: ["--no-sandbox"] });
let callback;
try {
  const context = await browser.newContext({ ignoreHTTPSErrors: true, javaScriptEnabled: false });
  await context.route(`${redirectUri}**`, async (route) => {
    callback = route.request().url();
    await route.fulfill({ status: 200, contentType: "text/plain", body: "signed in" });
  });
  const page = await context.newPage();
  await page.goto(url.href);
  await page.fill('input[autocomplete="username"]', env("KEYWARD_UPN"));
  await Promise.all([page.waitForNavigation(), page.locator("form button[type=submit]").first().click()]);
  await page.fill('input[autocomplete="current-password"]', env("KEYWARD_PASSWORD"));
  await page.locator("form button[type=submit]").first().click({ noWaitAfter: true });
  for (let waited = 0; !callback && waited < 15000; waited += 100) {
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
} finally {
  await browser.close();
}
if (!callback) throw new Error("the browser never reached the redirect URI");

const tokens = await client.authorizationCodeGrant(config, new URL(callback), {
  pkceCodeVerifier: codeVerifier,
  expectedState: state,
  expectedNonce: nonce,
  idTokenExpected: true,
});
const claims = tokens.claims();
const userinfo = await client.fetchUserInfo(config, tokens.access_token, claims.sub);
console.log(JSON.stringify({ sub: claims.sub, preferred_username: claims.preferred_username, userinfo_sub: userinfo.sub }));
