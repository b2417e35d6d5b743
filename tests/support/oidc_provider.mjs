// A real OpenID Connect provider for the tests: node-oidc-provider (npm `oidc-provider`,
// installed by the Makefile into .venv/node_modules), configured like a Keycloak realm as
// terracube meets it: JWT access tokens for the openEO back-end (audience OIDC_AUDIENCE)
// carrying preferred_username/name/email, client credentials, device flow, refresh tokens and
// the resource owner password grant (registered here: the library leaves it out on purpose).
//
//   node oidc_provider.mjs    env: OIDC_PROVIDER_MODULE (the package's lib/index.js), OIDC_PORT,
//                             OIDC_AUDIENCE, OIDC_ACCESS_TOKEN_TTL (seconds), OIDC_CLIENTS (JSON)
//
// OIDC_CLIENTS: [{"client_id", "client_secret"?, "grant_types", "opaque"?}] — a client with
// "opaque": true gets opaque access tokens (checked by terracube at the userinfo endpoint).
// People: any login name signs in through the provider's development login pages (the test
// drives them); for the password grant, the password of NAME is "NAME-password".
// The login name is the subject (`sub`).
import crypto from 'node:crypto';
import { pathToFileURL } from 'node:url';

// The package lives in .venv/node_modules, which ES module resolution does not search from
// here: the test passes its entry file (OIDC_PROVIDER_MODULE).
const { default: Provider, errors } = await import(
  pathToFileURL(process.env.OIDC_PROVIDER_MODULE).href);

const port = Number(process.env.OIDC_PORT);
const issuer = `http://127.0.0.1:${port}`;
const audience = process.env.OIDC_AUDIENCE || 'https://terracube.example/openeo';
const ttl = Number(process.env.OIDC_ACCESS_TOKEN_TTL || 300);
const clients = JSON.parse(process.env.OIDC_CLIENTS || '[]');
const opaqueClients = new Set(clients.filter((c) => c.opaque).map((c) => c.client_id));


// Fresh signing keys per process: tokens of another provider process never verify here.
const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = {
  ...privateKey.export({ format: 'jwk' }), kid: crypto.randomUUID(), alg: 'RS256', use: 'sig',
};

// Accounts: the login name is the subject (the development login pages make it so); the
// claims are the ones Keycloak gives.
function account(id) {
  return {
    accountId: id,
    async claims() {
      return {
        sub: id, preferred_username: id, name: `${id[0].toUpperCase()}${id.slice(1)} Example`,
        email: `${id}@example.org`, email_verified: true,
      };
    },
  };
}

const resourceServer = {
  scope: 'openid profile email offline_access',
  audience,
  accessTokenTTL: ttl,
  accessTokenFormat: 'jwt',
  jwt: { sign: { alg: 'RS256' } },
};

const provider = new Provider(issuer, {
  clients: clients.map(({ opaque, ...c }) => ({
    redirect_uris: [], response_types: [],
    token_endpoint_auth_method: c.client_secret ? 'client_secret_post' : 'none',
    ...c,
  })),
  jwks: { keys: [signingKey] },
  cookies: { keys: [crypto.randomBytes(32).toString('hex')] },
  claims: {
    openid: ['sub'], profile: ['name', 'preferred_username'], email: ['email', 'email_verified'],
  },
  scopes: ['openid', 'offline_access', 'profile', 'email'],
  features: {
    devInteractions: { enabled: true },
    deviceFlow: { enabled: true },
    clientCredentials: { enabled: true },
    revocation: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: async (ctx, client) => (
        opaqueClients.has(client.clientId) ? undefined : audience),
      useGrantedResource: async () => true,
      getResourceServerInfo: async (ctx, resource) => {
        if (resource !== audience) throw new errors.InvalidTarget();
        return resourceServer;
      },
    },
  },
  ttl: {
    AccessToken: ttl, ClientCredentials: ttl, DeviceCode: 600, RefreshToken: 3600,
    Grant: 3600, Session: 3600, Interaction: 600,
  },
  issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
  findAccount: async (ctx, sub) => account(sub),
  // Keycloak puts the person's names into its access tokens; terracube reads them from there.
  extraTokenClaims: async (ctx, token) => {
    const a = token.accountId && account(token.accountId);
    if (!a) return undefined;
    const { preferred_username, name, email } = await a.claims();
    return { preferred_username, name, email };
  },
});

// Resource owner password credentials (RFC 6749 section 4.3), which Keycloak offers and the
// openEO client can use: a grant for the person, then a JWT access token (+ refresh token).
provider.registerGrantType('password', async (ctx) => {
  const { client, params } = ctx.oidc;
  if (!client.grantTypeAllowed('password')) {
    throw new errors.UnauthorizedClient('the password grant is not allowed for this client');
  }
  if (!params.username || params.password !== `${params.username}-password`) {
    throw new errors.InvalidGrant('wrong user name or password');
  }
  const a = account(params.username);
  const requested = new Set((params.scope || 'openid').split(' '));
  const scope = [...requested].filter((s) => resourceServer.scope.split(' ').includes(s))
    .join(' ');
  const opaque = opaqueClients.has(client.clientId);
  const grant = new provider.Grant({ accountId: a.accountId, clientId: client.clientId });
  grant.addOIDCScope(scope);
  if (!opaque) grant.addResourceScope(audience, scope);
  const grantId = await grant.save();
  const token = new provider.AccessToken({
    accountId: a.accountId, client, grantId, gty: 'password', scope,
  });
  if (!opaque) token.resourceServer = new provider.ResourceServer(audience, resourceServer);
  const body = {
    access_token: await token.save(), token_type: 'Bearer', expires_in: token.expiration, scope,
  };
  if (client.grantTypeAllowed('refresh_token')) {
    const refresh = new provider.RefreshToken({
      accountId: a.accountId, client, grantId, gty: 'password', scope,
      ...(opaque ? {} : { resource: audience }),
    });
    body.refresh_token = await refresh.save();
  }
  ctx.body = body;
}, ['username', 'password', 'scope']);

provider.listen(port, '127.0.0.1', () => {
  console.log(`oidc-provider listening on ${issuer}`);
});
