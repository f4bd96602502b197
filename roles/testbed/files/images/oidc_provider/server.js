// usage: node server.js CONFIG.json   (SIGHUP re-reads the users from CONFIG.json; optional loopback admin API on cfg.adminPort)
// Test OpenID Provider built on oidc-provider (panva). Not for production.
import fs from 'node:fs';
import https from 'node:https';
import http from 'node:http';
import crypto from 'node:crypto';
import Provider, { errors } from 'oidc-provider';

const cfgPath = process.argv[2];
if (!cfgPath) { console.error('usage: node server.js CONFIG.json'); process.exit(2); }
const readCfg = () => JSON.parse(fs.readFileSync(cfgPath, 'utf8'));
const cfg = readCfg();

let users = new Map();
function loadUsers(list) { users = new Map((list || []).map((u) => [u.username, u])); }
loadUsers(cfg.users);

const esc = (s) => String(s ?? '').replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const log = (...a) => console.log(new Date().toISOString(), ...a);

// extra per-client settings that are not oidc-provider client metadata
const clientExtra = new Map();
const clients = (cfg.clients || []).map((c) => {
  const { audience, resource, tokenClaims, ...meta } = c; // resource: absolute URI (RFC 8707), defaults to audience
  clientExtra.set(c.client_id, { audience, resource: resource || audience, tokenClaims });
  if ((meta.grant_types || []).includes('client_credentials') && !meta.redirect_uris) {
    Object.assign(meta, { redirect_uris: [], response_types: [] });
  }
  return meta;
});
const extraFor = (client) => (client && clientExtra.get(client.clientId)) || {};
const ttl = cfg.ttl || {};

function accountClaims(u) {
  return {
    sub: u.username,
    email: u.email,
    email_verified: true,
    preferred_username: u.username,
    name: u.name || u.username,
    groups: u.groups || [],
  };
}

const provider = new Provider(cfg.issuer, {
  clients,
  jwks: JSON.parse(fs.readFileSync(cfg.jwksFile, 'utf8')),
  cookies: { keys: cfg.cookieKeys || [crypto.randomBytes(32).toString('hex')] },
  scopes: ['openid', 'offline_access', 'email', 'profile', 'groups'],
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'preferred_username', 'groups'],
    groups: ['groups'],
  },
  // put the scope's claims into the ID token too (the plugin reads groups from the ID token)
  conformIdTokenClaims: false,
  pkce: { required: () => false },
  async findAccount(ctx, id) {
    const u = users.get(id);
    if (!u) return undefined; // removed user: sessions/grants stop yielding tokens
    return { accountId: id, async claims() { return accountClaims(users.get(id) || u); } };
  },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    rpInitiatedLogout: {
      enabled: true,
      // no confirmation page: the form is submitted by script (logout=yes also ends the IdP session)
      async logoutSource(ctx, form) {
        ctx.body = `<!DOCTYPE html><html><head><meta charset="utf-8"><title>Signing out</title></head><body>
${form.replace('</form>', '<input type="hidden" name="logout" value="yes"/></form>')}
<noscript><button type="submit" form="op.logoutForm">Sign out</button></noscript>
<script>document.forms[0].submit()</script></body></html>`;
      },
      async postLogoutSuccessSource(ctx) {
        ctx.body = '<!DOCTYPE html><html><head><meta charset="utf-8"><title>Signed out</title></head><body><h1>Signed out</h1></body></html>';
      },
    },
    resourceIndicators: {
      enabled: true,
      // only clients with an "audience" (the machine client) get JWT access tokens; the web
      // client keeps opaque tokens usable at the userinfo endpoint
      async defaultResource(ctx, client, oneOf) {
        if (oneOf) return oneOf;
        return extraFor(client || ctx.oidc.client).resource;
      },
      async useGrantedResource() { return true; },
      async getResourceServerInfo(ctx, resourceIndicator, client) {
        const x = extraFor(client);
        if (!x.resource || resourceIndicator !== x.resource) throw new errors.InvalidTarget();
        return {
          scope: 'api',
          audience: x.audience,
          accessTokenTTL: ttl.accessToken || 600,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'RS256' } },
        };
      },
    },
  },
  async extraTokenClaims(ctx, token) {
    if (token.kind === 'ClientCredentials') return clientExtra.get(token.clientId)?.tokenClaims;
    if (token.accountId && users.has(token.accountId)) {
      const c = accountClaims(users.get(token.accountId));
      return { email: c.email, preferred_username: c.preferred_username, groups: c.groups };
    }
    return undefined;
  },
  ttl: {
    AccessToken: ttl.accessToken || 600,
    ClientCredentials: ttl.accessToken || 600,
    IdToken: ttl.idToken || 3600,
    Interaction: 600,
    Session: ttl.session || 8 * 3600,
    Grant: ttl.session || 8 * 3600,
  },
  renderError(ctx, out) {
    ctx.type = 'html';
    ctx.body = `<!DOCTYPE html><html><body><h1>Error</h1><pre id="error">${esc(out.error)}: ${esc(out.error_description)}</pre></body></html>`;
  },
});
provider.proxy = !!cfg.trustProxy;

function loginPage(uid, client, error, username) {
  return `<!DOCTYPE html><html><head><meta charset="utf-8"><title>Sign in - Test IdP</title></head><body>
<h1>Sign in</h1><p>to <b>${esc(client?.clientName || client?.clientId)}</b></p>
${error ? `<p id="error" style="color:#b00">${esc(error)}</p>` : ''}
<form method="post" action="/interaction/${esc(uid)}/login" autocomplete="off">
<label>Username <input id="username" name="username" value="${esc(username)}" required autofocus></label><br>
<label>Password <input id="password" name="password" type="password" required></label><br>
<button id="submit" type="submit">Sign in</button></form></body></html>`;
}

async function readForm(req) {
  const chunks = [];
  for await (const c of req) { chunks.push(c); if (chunks.length > 64) break; }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

// interaction routes: GET /interaction/:uid (form or auto-consent), POST /interaction/:uid/login
provider.use(async (ctx, next) => {
  const m = /^\/interaction\/([\w-]+)(\/login)?$/.exec(ctx.path);
  if (!m) return next();
  ctx.set('cache-control', 'no-store');
  const details = await provider.interactionDetails(ctx.req, ctx.res);
  const { uid, prompt, params, session } = details;
  const client = await provider.Client.find(params.client_id);
  if (prompt.name === 'login') {
    if (ctx.method === 'GET' && !m[2]) { ctx.type = 'html'; ctx.body = loginPage(uid, client); return; }
    if (ctx.method !== 'POST' || !m[2]) { ctx.status = 405; return; }
    const form = await readForm(ctx.req);
    const u = users.get(form.get('username') || '');
    const ok = u && typeof u.password === 'string' && crypto.timingSafeEqual(
      crypto.createHash('sha256').update(u.password).digest(),
      crypto.createHash('sha256').update(form.get('password') || '').digest());
    if (!ok) {
      log('login failed for', JSON.stringify(form.get('username')));
      ctx.status = 200; ctx.type = 'html'; ctx.body = loginPage(uid, client, 'Invalid username or password', form.get('username'));
      return;
    }
    log('login ok for', u.username);
    const redirectTo = await provider.interactionResult(ctx.req, ctx.res, { login: { accountId: u.username } }, { mergeWithLastSubmission: false });
    ctx.status = 303; ctx.redirect(redirectTo); return;
  }
  if (prompt.name === 'consent') { // first-party clients only: grant everything requested
    const grant = details.grantId ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
    const d = prompt.details;
    if (d.missingOIDCScope) grant.addOIDCScope(d.missingOIDCScope.join(' '));
    if (d.missingOIDCClaims) grant.addOIDCClaims(d.missingOIDCClaims);
    for (const [ind, scopes] of Object.entries(d.missingResourceScopes || {})) grant.addResourceScope(ind, scopes.join(' '));
    const grantId = await grant.save();
    const result = { consent: details.grantId ? {} : { grantId } };
    const redirectTo = await provider.interactionResult(ctx.req, ctx.res, result, { mergeWithLastSubmission: true });
    ctx.status = 303; ctx.redirect(redirectTo); return;
  }
  ctx.status = 400; ctx.body = `unsupported prompt ${prompt.name}`;
});

provider.on('server_error', (ctx, err) => log('server_error', err));
provider.on('grant.error', (ctx, err) => log('grant.error', err.message, err.error_description || ''));
provider.on('end_session.success', () => log('end_session.success'));

const tls = { cert: fs.readFileSync(cfg.tls.cert), key: fs.readFileSync(cfg.tls.key) };
https.createServer(tls, provider.callback()).listen(cfg.port, cfg.host || '0.0.0.0', () => {
  log(`oidc-provider listening on ${cfg.host || '0.0.0.0'}:${cfg.port}, issuer ${cfg.issuer}, ${users.size} users`);
});

function reload(why) {
  try { loadUsers(readCfg().users); log(`users reloaded (${why}): ${[...users.keys()].join(', ')}`); }
  catch (e) { log('reload failed, keeping previous users:', e.message); }
}
process.on('SIGHUP', () => reload('SIGHUP'));
process.on('SIGTERM', () => process.exit(0));

// loopback-only admin API (plain HTTP): POST /reload, GET /users, PUT /users/NAME {json user}, DELETE /users/NAME
if (cfg.adminPort) {
  http.createServer(async (req, res) => {
    const send = (code, obj) => { res.writeHead(code, { 'content-type': 'application/json' }); res.end(JSON.stringify(obj)); };
    try {
      const m = /^\/users\/([^/]+)$/.exec(req.url);
      if (req.method === 'POST' && req.url === '/reload') { reload('admin'); return send(200, { users: [...users.keys()] }); }
      if (req.method === 'GET' && req.url === '/users') return send(200, [...users.values()].map(({ password, ...u }) => u));
      if (m && req.method === 'DELETE') { const name = decodeURIComponent(m[1]); const had = users.delete(name); log('admin: removed user', name); return send(had ? 200 : 404, { removed: had }); }
      if (m && req.method === 'PUT') {
        const chunks = []; for await (const c of req) chunks.push(c);
        const name = decodeURIComponent(m[1]);
        const u = { ...(users.get(name) || {}), ...JSON.parse(Buffer.concat(chunks).toString() || '{}'), username: name };
        users.set(name, u); log('admin: set user', name, 'groups', JSON.stringify(u.groups));
        const { password, ...pub } = u; return send(200, pub);
      }
      send(404, { error: 'not found' });
    } catch (e) { send(400, { error: e.message }); }
  }).listen(cfg.adminPort, '127.0.0.1', () => log(`admin API on http://127.0.0.1:${cfg.adminPort}`));
}
