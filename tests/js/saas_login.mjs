// One sign-in, many apps: Debian's Chromium (headless, playwright-core) signs in once at the
// enterprise IdP through the gateway's portal, then opens each app without signing in again.
//
//   node saas_login.mjs JOB.json
//
// JOB: {"portal": URL, "user": "...", "password": "...", "spki": "base64 SHA-256",
//       "apps": {"name": URL, ...}, "after_logout": [URL, ...]}
// Prints one JSON line: the portal's app list, each app's final URL, status and page text,
// and, after signing out at the portal, where each of `after_logout` ends up.
import { readFileSync } from 'node:fs';

import { launch } from './chromium.mjs';

const job = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const browser = await launch({ spki: job.spki });
const result = { apps: {}, after_logout: {} };
const settle = async (page) => {
  // Auto-posting SAML forms and redirect chains: wait until the network is quiet.
  await page.waitForLoadState('networkidle', { timeout: 20000 });
};
try {
  const page = await (await browser.newContext()).newPage();
  await page.goto(job.portal);
  await page.fill('#username', job.user);
  await page.fill('#password', job.password);
  await Promise.all([
    page.waitForURL((url) => url.href.startsWith(job.portal), { timeout: 20000 }),
    page.click('#sign-in'),
  ]);
  await settle(page);
  result.portal = await page.locator('a.app').evaluateAll((links) =>
    links.map((a) => ({ id: a.id, href: a.href })),
  );
  for (const [name, url] of Object.entries(job.apps)) {
    const response = await page.goto(url);
    await settle(page);
    result.apps[name] = {
      url: page.url(),
      status: response ? response.status() : null,
      text: await page.locator('body').innerText(),
      sign_in_form: (await page.locator('#username').count()) > 0,
    };
  }
  await page.goto(new URL('/.overcast/logout', job.portal).href);
  await settle(page);
  await Promise.all([
    page.waitForURL((url) => url.pathname === '/.overcast/signed-out', { timeout: 20000 }),
    page.click('#logout'),
  ]);
  result.signed_out = page.url();
  for (const url of job.after_logout) {
    await page.goto(url);
    await settle(page);
    result.after_logout[url] = {
      url: page.url(),
      sign_in_form: (await page.locator('#username').count()) > 0,
    };
  }
} finally {
  await browser.close();
}
process.stdout.write(`${JSON.stringify(result)}\n`);
