// A real browser signs in through the gateway: Debian's Chromium, headless, driven by
// playwright-core (which never downloads a browser of its own).
//
//   node browser_login.mjs JOB.json
//
// JOB: {"app": "https://localhost:PORT/some/path", "user": "...", "password": "...",
//       "spki": "base64 SHA-256 of the server key (the only certificate trusted)"}
// Prints one JSON line: the app's answer, the session cookie's attributes, and where
// signing out ended.
import { readFileSync } from 'node:fs';

import { launch } from './chromium.mjs';

const job = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const browser = await launch({ spki: job.spki });
const result = {};
try {
  const page = await (await browser.newContext()).newPage();
  await page.goto(job.app);
  await page.fill('#username', job.user);
  await page.fill('#password', job.password);
  await Promise.all([
    page.waitForURL((url) => url.href.startsWith(job.app), { timeout: 20000 }),
    page.click('#sign-in'),
  ]);
  result.landed = page.url();
  result.app = JSON.parse(await page.locator('body').innerText());
  result.cookies = (await page.context().cookies(job.app)).map((c) => ({
    name: c.name,
    domain: c.domain,
    path: c.path,
    secure: c.secure,
    httpOnly: c.httpOnly,
    sameSite: c.sameSite,
  }));
  await page.goto(new URL('/.overcast/logout', job.app).href);
  await Promise.all([
    page.waitForURL((url) => url.pathname === '/.overcast/signed-out', { timeout: 20000 }),
    page.click('#logout'),
  ]);
  result.signed_out = page.url();
  await page.goto(job.app);
  result.after_logout = page.url();
} finally {
  await browser.close();
}
process.stdout.write(`${JSON.stringify(result)}\n`);
