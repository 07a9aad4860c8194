// A real, OpenID Certified provider (npm oidc-provider) for the gateway's tests, on loopback.
//
//   node idp.mjs CONFIG.json
//
// CONFIG: {"cert": PEM path, "key": PEM path, "host": "127.0.0.1", "access_ttl": seconds,
//          "clients": [oidc-provider client metadata...],
//          "users": {"alice": {"password": "...", "email": "...", "email_verified": true,
//                              "groups": ["sales"]}}}
// Prints one JSON line {"issuer": "https://HOST:PORT"} on stdout once it listens.
// Users sign in on a plain form (/interaction/UID: username, password); the gateway's
// client is first-party, so consent is granted without a page.
import { readFileSync } from 'node:fs';
import https from 'node:https';

import Provider from 'oidc-provider';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const users = config.users;

const server = https.createServer({
  cert: readFileSync(config.cert),
  key: readFileSync(config.key),
});
await new Promise((resolve) => server.listen(0, config.host, resolve));
const issuer = `https://${config.host}:${server.address().port}`;

const html = (title, body) => `<!DOCTYPE html><html><head><meta charset="utf-8">
<title>${title}</title></head><body><h1>${title}</h1>${body}</body></html>`;
const escape = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

const provider = new Provider(issuer, {
  clients: config.clients,
  async findAccount(ctx, id) {
    const user = users[id];
    if (!user) return undefined;
    return {
      accountId: id,
      async claims() {
        return {
          sub: id,
          email: user.email,
          email_verified: user.email_verified,
          groups: user.groups,
          name: id,
        };
      },
    };
  },
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name'],
    groups: ['groups'],
  },
  scopes: ['openid', 'email', 'profile', 'groups', 'offline_access'],
  // Scope claims go into the ID token itself, which is what the gateway reads.
  conformIdTokenClaims: false,
  features: {
    devInteractions: { enabled: false },
    backchannelLogout: { enabled: true },
    rpInitiatedLogout: {
      enabled: true,
      async logoutSource(ctx, form) {
        ctx.body = html('Sign out?', `${form}
<button id="logout" type="submit" form="op.logoutForm" value="yes" name="logout">Sign out</button>`);
      },
      async postLogoutSuccessSource(ctx) {
        ctx.body = html('Signed out', '<p id="signed-out">You are signed out.</p>');
      },
    },
  },
  ttl: {
    AccessToken: config.access_ttl ?? 60,
    IdToken: config.access_ttl ?? 60,
    RefreshToken: 3600,
    Session: 3600,
    Grant: 3600,
    Interaction: 600,
  },
  async issueRefreshToken(ctx, client) {
    return client.grantTypeAllowed('refresh_token');
  },
  async loadExistingGrant(ctx) {
    const { provider: op, client, session } = ctx.oidc;
    const existing = ctx.oidc.result?.consent?.grantId || session.grantIdFor(client.clientId);
    if (existing) return op.Grant.find(existing);
    const grant = new op.Grant({ clientId: client.clientId, accountId: session.accountId });
    grant.addOIDCScope('openid email profile groups offline_access');
    grant.addOIDCClaims(['email', 'email_verified', 'groups', 'name']);
    await grant.save();
    return grant;
  },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  cookies: { keys: ['overcast-test-idp-cookie-key'] },
  // The provider refuses to call loopback addresses (SSRF guard); here the gateway's
  // back-channel logout receiver *is* on loopback, so outgoing calls use plain fetch.
  fetch(url, options) {
    const { dispatcher, ...rest } = options;
    return fetch(url, rest);
  },
  pkce: { required: () => true },
  renderError(ctx, out) {
    ctx.type = 'html';
    ctx.body = html('Error', `<pre id="error">${escape(JSON.stringify(out))}</pre>`);
  },
});

provider.on('backchannel.error', (ctx, err, client) => {
  console.error(`backchannel logout to ${client.clientId} failed: ${err.message} ${err.cause ?? ""}`);
});

async function readForm(req) {
  let body = '';
  for await (const chunk of req) body += chunk;
  return new URLSearchParams(body);
}

provider.use(async (ctx, next) => {
  const match = ctx.path.match(/^\/interaction\/([^/]+)(\/login)?$/);
  if (!match) return next();
  const details = await provider.interactionDetails(ctx.req, ctx.res);
  if (match[2] && ctx.method === 'POST') {
    const form = await readForm(ctx.req);
    const name = form.get('username');
    if (!users[name] || users[name].password !== form.get('password')) {
      ctx.status = 403;
      ctx.body = html('Sign in', '<p id="bad-login">Wrong username or password.</p>');
      return undefined;
    }
    await provider.interactionFinished(ctx.req, ctx.res, { login: { accountId: name } }, {
      mergeWithLastSubmission: false,
    });
    return undefined;
  }
  if (details.prompt.name !== 'login') {
    // First-party client: loadExistingGrant already granted what it asks for.
    await provider.interactionFinished(ctx.req, ctx.res, {}, { mergeWithLastSubmission: true });
    return undefined;
  }
  ctx.type = 'html';
  ctx.body = html('Sign in', `<form method="post" action="/interaction/${escape(details.uid)}/login">
<input id="username" name="username" autocomplete="username">
<input id="password" name="password" type="password" autocomplete="current-password">
<button id="sign-in" type="submit">Sign in</button></form>`);
  return undefined;
});

server.on('request', provider.callback());
process.stdout.write(`${JSON.stringify({ issuer })}\n`);
process.on('SIGTERM', () => server.close(() => process.exit(0)));
