// The guard's status page in a real browser: Debian's Chromium, headless, driven by
// playwright-core. It follows an event from open to close without a reload.
//
//   node status_page.mjs URL PREFIX SHOTS_DIR
//
// Prints one JSON line per stage: "ready" (the live stream is connected), "open" (a row
// for PREFIX among the ongoing events), "closed" (PREFIX among the recent ones, not ongoing);
// each with what the rows say, and a screenshot SHOTS_DIR/<stage>.png.
import { launch } from './chromium.mjs';

const [url, prefix, shots] = process.argv.slice(2);
const browser = await launch();

function say(stage, extra) {
  process.stdout.write(`${JSON.stringify({ stage, ...extra })}\n`);
}

async function rows(page, table) {
  return page.$$eval(`#${table} tbody tr[data-key]`, (trs) => trs.map((tr) => ({
    key: tr.dataset.key,
    state: tr.dataset.state,
    class: tr.className,
    cells: [...tr.cells].map((td) => td.textContent),
  })));
}

try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 720 } });
  await page.goto(url);
  await page.evaluate(() => { window.loadedOnce = true; }); // gone if the page reloads
  await page.waitForFunction(() => document.getElementById('updated').textContent.startsWith('live'));
  say('ready', { feeds: await page.$$eval('#feeds tbody tr', (trs) => trs.map((tr) => tr.textContent)) });
  const row = (table) => `#${table} tbody tr[data-key*="|${prefix}|"]`;
  await page.waitForSelector(row('ongoing'), { timeout: 60000 });
  await page.screenshot({ path: `${shots}/open.png`, fullPage: true });
  say('open', { ongoing: await rows(page, 'ongoing'), title: await page.title() });
  await page.waitForSelector(row('recent'), { timeout: 60000 });
  await page.waitForSelector(row('ongoing'), { state: 'detached', timeout: 10000 });
  await page.screenshot({ path: `${shots}/closed.png`, fullPage: true });
  say('closed', {
    recent: await rows(page, 'recent'),
    ongoing: await rows(page, 'ongoing'),
    reloaded: !(await page.evaluate(() => window.loadedOnce === true)),
  });
} finally {
  await browser.close();
}
