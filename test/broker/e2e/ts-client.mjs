// An MCP client built on the official TypeScript SDK (@modelcontextprotocol/sdk)
// that signs in at clickgate's OAuth broker the way a desktop agent does: the
// SDK's own auth() and StreamableHTTPClientTransport with an authProvider, a
// loopback redirect URI served here, and the person's browser in between
// (driven by the Go test). It asserts nothing itself: browser_test.go does.
//
// Protocol: the first line of stdin is a JSON object
//   {"mcpUrl": "http://127.0.0.1:PORT/mcp", "issuer": "http://127.0.0.1:PORT",
//    "clientName": "…", "clientMetadataUrl": "https://…" (optional: CIMD; else DCR),
//    "firstSQL": "…", "secondSQL": "…"}
// and stdout carries one JSON object per line, each with an "event":
//   listening     {redirectUrl}            the loopback callback is up
//   client        {clientId, issuer}       saveClientInformation was called
//   authorize     {url}                    redirectToAuthorization: the browser goes there
//   callback      {state, iss, stateOK, issOK}   the browser came back
//   firstCall     {result, tokens}         a tool call after the sign-in
//   secondCall    {result, tokens, http}   the same after the Go test wrote a line to stdin
//                                          (it does once the access token has expired)
//   error         {message, stack}
// Tokens travel on stdout because the test replays them; they are test tokens.
import http from 'node:http';
import { randomBytes } from 'node:crypto';
import readline from 'node:readline';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';

const stdin = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();
async function nextLine() {
  const r = await stdin.next();
  if (r.done) throw new Error('stdin closed');
  return r.value;
}

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

const input = JSON.parse(await nextLine());

// Every HTTP exchange of the SDK (transport and auth), as the test wants to
// see them: which endpoint, which grant, which status.
const httpLog = [];
async function recordingFetch(target, init) {
  const u = new URL(target instanceof Request ? target.url : String(target));
  const entry = { method: init?.method ?? 'GET', path: u.pathname };
  if (init?.body instanceof URLSearchParams) entry.grantType = init.body.get('grant_type');
  const res = await fetch(target, init);
  entry.status = res.status;
  if (res.status === 401) entry.wwwAuthenticate = res.headers.get('www-authenticate');
  httpLog.push(entry);
  return res;
}

// The loopback redirect URI (RFC 8252): it takes one authorization response.
let redirectUrl;
let resolveCode, rejectCode;
const codeArrived = new Promise((resolve, reject) => { resolveCode = resolve; rejectCode = reject; });

class Provider {
  constructor() {
    if (input.clientMetadataUrl) this.clientMetadataUrl = input.clientMetadataUrl;
    this.saved = [];
  }
  get redirectUrl() { return redirectUrl; }
  get clientMetadata() {
    return {
      client_name: input.clientName,
      redirect_uris: [redirectUrl],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    };
  }
  state() {
    this._state = randomBytes(24).toString('base64url');
    return this._state;
  }
  clientInformation() { return this._client; }
  saveClientInformation(info) {
    this._client = info;
    emit({ event: 'client', clientId: info.client_id, issuer: info.issuer ?? null });
  }
  tokens() { return this._tokens; }
  saveTokens(tokens) {
    this._tokens = tokens;
    this.saved.push({
      accessToken: tokens.access_token, refreshToken: tokens.refresh_token ?? null,
      expiresIn: tokens.expires_in ?? null, tokenType: tokens.token_type, issuer: tokens.issuer ?? null,
    });
  }
  redirectToAuthorization(url) { emit({ event: 'authorize', url: url.href }); }
  saveCodeVerifier(v) { this._verifier = v; }
  codeVerifier() { return this._verifier; }
}
const provider = new Provider();

const page = (title, text) => `<!doctype html><html><head><meta charset="utf-8"><title>${title}</title></head><body><main>${text}</main></body></html>`;
const server = http.createServer((req, res) => {
  const u = new URL(req.url, redirectUrl);
  if (u.pathname !== '/callback') {
    res.writeHead(404).end();
    return;
  }
  const q = u.searchParams;
  const seen = { state: q.get('state'), iss: q.get('iss') };
  seen.stateOK = !!provider._state && seen.state === provider._state;
  seen.issOK = seen.iss === input.issuer;
  emit({ event: 'callback', ...seen, error: q.get('error'), errorDescription: q.get('error_description') });
  res.setHeader('Content-Type', 'text/html; charset=utf-8');
  if (q.get('error')) {
    res.writeHead(400).end(page('Sign-in failed', `The authorization server answered ${q.get('error')}.`));
    rejectCode(new Error(`authorization error ${q.get('error')}: ${q.get('error_description')}`));
  } else if (!seen.stateOK || !seen.issOK || !q.get('code')) {
    // RFC 6749 §10.12 and RFC 9207: not an answer to our request.
    res.writeHead(400).end(page('Sign-in refused', 'This answer does not belong to the sign-in started here.'));
    rejectCode(new Error(`callback refused: ${JSON.stringify(seen)}`));
  } else {
    res.writeHead(200).end(page('Signed in · clickgate e2e', 'Signed in. You can close this tab.'));
    resolveCode(q.get('code'));
  }
});

function text(result) {
  return (result.content ?? []).filter((c) => c.type === 'text').map((c) => c.text).join('');
}

async function call(client, name, args) {
  try {
    const r = await client.callTool({ name, arguments: args });
    return { isError: r.isError === true, text: text(r).slice(0, 2000), structured: r.structuredContent ?? null };
  } catch (err) {
    return { thrown: String(err.message ?? err).slice(0, 1000) };
  }
}

function newClient() {
  const transport = new StreamableHTTPClientTransport(new URL(input.mcpUrl), { authProvider: provider, fetch: recordingFetch });
  const client = new Client({ name: 'clickgate-e2e-ts-client', version: '1.0.0' });
  return { client, transport };
}

try {
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  redirectUrl = `http://127.0.0.1:${server.address().port}/callback`;
  emit({ event: 'listening', redirectUrl });

  // Without tokens the server answers 401; the SDK discovers the broker,
  // registers (DCR) or names its metadata document (CIMD), and sends the
  // person to the authorization endpoint.
  {
    const { client, transport } = newClient();
    try {
      await client.connect(transport);
      throw new Error('connected without signing in');
    } catch (err) {
      if (!(err instanceof UnauthorizedError)) throw err;
    }
    const code = await codeArrived;
    await transport.finishAuth(code);
  }

  // A new transport with the same provider: it now has tokens.
  const { client, transport } = newClient();
  await client.connect(transport);
  const first = await call(client, 'run_query', { query: input.firstSQL });
  emit({ event: 'firstCall', result: first, tokens: provider.saved });

  // The Go test writes a line once the access token has expired.
  await nextLine();
  const before = httpLog.length;
  const second = await call(client, 'run_query', { query: input.secondSQL });
  emit({ event: 'secondCall', result: second, tokens: provider.saved, http: httpLog.slice(before) });
  await client.close();
  server.closeAllConnections();
  server.close();
  process.stdout.write('', () => process.exit(0));
} catch (err) {
  emit({ event: 'error', message: String(err?.message ?? err), stack: String(err?.stack ?? ''), http: httpLog });
  process.stdout.write('', () => process.exit(1));
}
