// The demo's HTML report in a real browser: Debian's Chromium, headless, driven by
// playwright-core, with every request that is not the file itself refused and recorded.
//
//   node demo_report.mjs REPORT.html SHOT.png
//
// Takes a full-page screenshot to SHOT.png, then reads the PNG back into a canvas and
// counts its colours, and prints one JSON object: what the page shows (verdict, steps,
// sites, providers, tunnels and their roles, timeline bars), where the pictures are on the
// page, the requests it tried to make, and the screenshot's pixel statistics.
import { launch } from './chromium.mjs';
import { pathToFileURL } from 'node:url';

const [report, shot] = process.argv.slice(2);
const browser = await launch();

try {
  const page = await browser.newPage({ viewport: { width: 1100, height: 900 } });
  const external = [];
  await page.route('**/*', (route) => {
    const url = route.request().url();
    if (url.startsWith('file:')) return route.continue();
    external.push(url);
    return route.abort();
  });
  await page.goto(pathToFileURL(report).href);
  const box = async (sel) => {
    const el = page.locator(sel).first();
    if (!(await el.count()) || !(await el.isVisible())) return null;
    return el.boundingBox();
  };
  const all = (sel, fn) => page.$$eval(sel, fn);
  const facts = {
    title: await page.title(),
    verdict: await page.$eval('#verdict', (e) => ({ text: e.textContent, ok: e.dataset.ok })),
    steps: await all('li.step', (els) => els.map((e) => ({ name: e.dataset.step, status: e.dataset.status }))),
    sites: await all('#topology g.site', (els) => els.map((e) => e.dataset.site)),
    providers: await all('#topology g.provider', (els) => els.map((e) => e.dataset.provider)),
    segments: await all('#topology g.segment', (els) => els.map((e) => e.dataset.segment)),
    tunnels: await all('#topology g.tunnel', (els) => els.map((e) => ({
      pair: e.dataset.pair, underlay: e.dataset.underlay, role: e.dataset.role,
    }))),
    detour: await all('#topology-detour g.tunnel', (els) => els.map((e) => e.dataset.role)),
    services: await all('#topology g.service', (els) => els.map((e) => ({
      step: e.dataset.step,
      status: e.dataset.status,
      lines: [...e.querySelectorAll('text.line')].map((t) => t.textContent),
      alerts: e.querySelectorAll('text.alert').length,
    }))),
    bars: await all('#timeline g.bar', (els) => els.map((e) => ({ step: e.dataset.step, status: e.dataset.status }))),
    moves: await all('#timeline g.move', (els) => els.length),
    checks: await all('table.checks tr.check', (els) => els.map((e) => e.dataset.ok)),
    boxes: {
      topology: await box('#topology'),
      timeline: await box('#timeline'),
      story: await box('#story'),
    },
    external,
  };
  await page.screenshot({ path: shot, fullPage: true });

  // The screenshot as written: decode the PNG in a canvas and count what it holds.
  const png = await browser.newPage();
  await png.goto(pathToFileURL(shot).href);
  facts.png = await png.evaluate(async (topology) => {
    const img = document.querySelector('img');
    await img.decode();
    const canvas = document.createElement('canvas');
    canvas.width = img.naturalWidth;
    canvas.height = img.naturalHeight;
    const ctx = canvas.getContext('2d');
    ctx.drawImage(img, 0, 0);
    const stats = (x, y, w, h) => {
      const { data } = ctx.getImageData(x, y, w, h);
      const colours = new Set();
      let ink = 0;
      for (let i = 0; i < data.length; i += 4) {
        colours.add((data[i] << 16) | (data[i + 1] << 8) | data[i + 2]);
        if (data[i] + data[i + 1] + data[i + 2] < 600) ink += 1;
      }
      return { colours: colours.size, ink: ink / (data.length / 4) };
    };
    const t = topology;
    return {
      width: img.naturalWidth,
      height: img.naturalHeight,
      whole: stats(0, 0, img.naturalWidth, img.naturalHeight),
      topology: t ? stats(Math.floor(t.x), Math.floor(t.y), Math.floor(t.width), Math.floor(t.height)) : null,
    };
  }, facts.boxes.topology);
  process.stdout.write(`${JSON.stringify(facts)}\n`);
} finally {
  await browser.close();
}
