// Debian's Chromium, headless, driven by playwright-core (which never downloads a browser of
// its own): one launch for every browser test.
import { chromium } from 'playwright-core';

// `spki`: base64 SHA-256 of the only server key to trust (the test's own), if any.
export function launch({ spki } = {}) {
  return chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--no-first-run',
      ...(spki ? [`--ignore-certificate-errors-spki-list=${spki}`] : []),
    ],
  });
}
