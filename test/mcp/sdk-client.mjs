// Drives clickgate's MCP endpoint with the official TypeScript SDK client
// (@modelcontextprotocol/sdk: Client + StreamableHTTPClientTransport), as an
// AI agent's MCP client would, and prints what it saw as one JSON object on
// stdout. It asserts nothing itself: test/mcp/mcp_test.go does.
//
// Usage: node sdk-client.mjs < input.json, where input.json is
//   {"url": "http://127.0.0.1:PORT/mcp",
//    "tokens": {"alice": "…", "bob": "…", "clickhouseOnly": "…"},
//    "currentUserSQL": "SELECT user FROM system.processes WHERE …",
//    "bigQueries": 3}
// Tokens travel on stdin, never on the command line.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import {
  discoverOAuthProtectedResourceMetadata,
  extractWWWAuthenticateParams,
} from '@modelcontextprotocol/sdk/client/auth.js';

const input = JSON.parse(await new Promise((resolve, reject) => {
  let s = '';
  process.stdin.setEncoding('utf8');
  process.stdin.on('data', (d) => { s += d; });
  process.stdin.on('end', () => resolve(s));
  process.stdin.on('error', reject);
}));
const url = new URL(input.url);

// A fetch that records every HTTP answer the SDK gets (status and the
// WWW-Authenticate challenge), so that refusals can be checked as a client
// sees them.
function recordingFetch(log) {
  return async (target, init) => {
    const res = await fetch(target, init);
    const www = extractWWWAuthenticateParams(res);
    log.push({
      method: init?.method ?? 'GET',
      status: res.status,
      wwwAuthenticate: res.headers.get('www-authenticate'),
      resourceMetadataUrl: www.resourceMetadataUrl?.href ?? null,
      error: www.error ?? null,
    });
    return res;
  };
}

// connect opens a session; headers go on every request (requestInit).
async function connect(headers, log = []) {
  const client = new Client({ name: 'clickgate-test-mcp', version: '1.0.0' });
  const transport = new StreamableHTTPClientTransport(url, {
    requestInit: { headers },
    fetch: recordingFetch(log),
  });
  await client.connect(transport);
  return { client, transport };
}

// refused tries to connect and reports how the server refused.
async function refused(headers) {
  const log = [];
  const out = { connected: false, http: log };
  try {
    const { client } = await connect(headers, log);
    out.connected = true;
    await client.close();
  } catch (err) {
    out.errorCode = err.code ?? null;
    out.error = String(err.message ?? err).slice(0, 500);
  }
  return out;
}

function text(result) {
  return (result.content ?? []).filter((c) => c.type === 'text').map((c) => c.text).join('');
}

// shorten keeps the start and the end (where clickgate says a result was cut).
function shorten(s, n) {
  return s.length <= 2 * n ? s : `${s.slice(0, n)} … ${s.slice(-n)}`;
}

// call runs a tool and keeps what the tests need: the SDK client itself
// checks structuredContent against the tool's outputSchema.
async function call(client, name, args = {}) {
  const started = Date.now();
  try {
    const r = await client.callTool({ name, arguments: args });
    return {
      isError: r.isError === true,
      text: shorten(text(r), 2000),
      structured: r.structuredContent ?? null,
      ms: Date.now() - started,
    };
  } catch (err) {
    return { thrown: String(err.message ?? err).slice(0, 1000), ms: Date.now() - started };
  }
}

// compact keeps a big result's shape, not its rows.
function compact(r) {
  if (!r.structured) return r;
  const { rows, ...rest } = r.structured;
  return { ...r, text: shorten(r.text, 200), structured: { ...rest, rowsLength: rows?.length, firstRow: rows?.[0] ?? null, lastRow: rows?.at(-1) ?? null } };
}

const out = {};
const bearer = (tok) => ({ Authorization: `Bearer ${tok}` });

// (a) No token: 401 with a challenge naming the protected resource
// metadata, which the SDK's own discovery then reads.
out.noToken = await refused({});
const challenge = out.noToken.http.find((h) => h.status === 401);
out.metadata = {};
if (challenge?.resourceMetadataUrl) {
  out.metadata.fromChallenge = await discoverOAuthProtectedResourceMetadata(url, { resourceMetadataUrl: challenge.resourceMetadataUrl });
}
// Without the hint, a client probes the path-aware well-known URL first.
out.metadata.discovered = await discoverOAuthProtectedResourceMetadata(url);

// (b) Alice: the whole surface.
{
  const { client, transport } = await connect(bearer(input.tokens.alice));
  out.server = client.getServerVersion();
  out.capabilities = client.getServerCapabilities();
  out.instructions = client.getInstructions() ?? null;
  out.protocolVersion = transport.protocolVersion ?? null;
  out.sessionId = transport.sessionId ?? null;
  const tools = await client.listTools();
  out.tools = tools.tools.map((t) => ({
    name: t.name,
    annotations: t.annotations ?? null,
    hasOutputSchema: !!t.outputSchema,
    required: t.inputSchema?.required ?? [],
  }));
  out.calls = {};
  out.calls.list_databases = await call(client, 'list_databases');
  const page1 = await call(client, 'list_tables', { database: 'many' });
  const cursor = page1.structured?.next_cursor;
  const page2 = cursor ? await call(client, 'list_tables', { database: 'many', cursor }) : null;
  out.calls.list_tables_page1 = { ...compact(page1), nextCursor: cursor ?? null };
  out.calls.list_tables_page2 = page2 && { ...compact(page2), nextCursor: page2.structured?.next_cursor ?? null };
  out.calls.list_tables_like = await call(client, 'list_tables', { database: 'default', like: 'us%' });
  out.calls.describe_table = await call(client, 'describe_table', { database: 'default', table: 'usage' });
  out.calls.run_query = await call(client, 'run_query', { query: 'SELECT team, sum(tokens) AS total FROM default.usage GROUP BY team ORDER BY team' });
  out.calls.explain_query = await call(client, 'explain_query', { query: 'SELECT 1' });
  out.calls.bad_query = await call(client, 'run_query', { query: 'SELECT no_such_column FROM default.usage' });

  out.resources = (await client.listResources()).resources.map((r) => r.uri);
  out.resourceTemplates = (await client.listResourceTemplates()).resourceTemplates.map((r) => r.uriTemplate);
  const schema = await client.readResource({ uri: 'clickhouse://schema' });
  out.schemaResource = { mimeType: schema.contents[0]?.mimeType, json: JSON.parse(schema.contents[0]?.text ?? 'null') };
  const table = await client.readResource({ uri: 'clickhouse://table/default/usage' });
  out.tableResource = { mimeType: table.contents[0]?.mimeType, json: JSON.parse(table.contents[0]?.text ?? 'null') };
  try {
    await client.readResource({ uri: 'clickhouse://table/default/no_such_table' });
    out.missingTableResource = { ok: true };
  } catch (err) {
    out.missingTableResource = { error: String(err.message ?? err).slice(0, 500), code: err.code ?? null };
  }
  out.prompts = (await client.listPrompts()).prompts.map((p) => ({ name: p.name, arguments: (p.arguments ?? []).map((a) => a.name) }));
  const prompt = await client.getPrompt({ name: 'explore_database', arguments: { database: 'default' } });
  out.prompt = prompt.messages.map((m) => ({ role: m.role, text: m.content?.text ?? '' }));

  // (c) Millions of rows: capped by rows, then by bytes.
  out.big = [];
  for (let i = 0; i < (input.bigQueries ?? 1); i++) {
    out.big.push(compact(await call(client, 'run_query', { query: 'SELECT number FROM system.numbers LIMIT 5000000' })));
  }
  out.wide = compact(await call(client, 'run_query', {
    query: "SELECT number, arrayStringConcat(arrayMap(x -> toString(x), range(1000)), ',') AS wide FROM system.numbers LIMIT 5000000",
  }));

  // No LIMIT at all: clickgate stops reading at the cap and ClickHouse must
  // stop the query (the Go test looks at system.processes afterwards).
  out.endless = compact(await call(client, 'run_query', { query: 'SELECT number FROM system.numbers' }));

  // (d) A write through run_query: ClickHouse refuses it (readonly).
  out.write = await call(client, 'run_query', { query: "INSERT INTO default.usage VALUES ('2026-01-01', 'mcp-write', 1)" });
  out.writeDDL = await call(client, 'run_query', { query: 'CREATE TABLE default.mcp_created (x UInt8) ENGINE = Memory' });
  out.writeTool = await call(client, 'write_query', { query: 'SELECT 1' });

  // (g) Alice's own account.
  out.aliceUser = await call(client, 'run_query', { query: input.currentUserSQL });
  await client.close();
}

// (g) Bob, mapped to another account.
{
  const { client } = await connect(bearer(input.tokens.bob));
  out.bobUser = await call(client, 'run_query', { query: input.currentUserSQL });
  // Bob's account has no readonly profile: clickgate adds readonly itself.
  out.bobEndless = compact(await call(client, 'run_query', { query: 'SELECT number FROM system.numbers' }));
  out.bobWrite = await call(client, 'run_query', { query: "INSERT INTO default.usage VALUES ('2026-01-01', 'mcp-write', 1)" });
  await client.close();
}

// (e) A token for ClickHouse only, not for this MCP resource.
out.clickhouseOnly = await refused(bearer(input.tokens.clickhouseOnly));

// (f) A browser page on another origin, even with a valid token.
out.foreignOrigin = await refused({ ...bearer(input.tokens.alice), Origin: 'https://evil.example' });

// A page on clickgate's own origin is fine.
{
  const { client } = await connect({ ...bearer(input.tokens.alice), Origin: url.origin });
  out.ownOrigin = { tools: (await client.listTools()).tools.length };
  await client.close();
}

console.log(JSON.stringify(out));
