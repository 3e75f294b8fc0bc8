// Asks clickgate's MCP endpoint, with the official TypeScript SDK client,
// what each person is offered under mcp.policy: their tools, a call of a
// hidden tool, and completions. Prints one JSON object; asserts nothing
// (test/mcp/policy_test.go does).
//
// Usage: node policy-client.mjs < input.json, where input.json is
//   {"url": "http://127.0.0.1:PORT/mcp", "tokens": {"alice": "…", "bob": "…"}}
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

const input = JSON.parse(await new Promise((resolve, reject) => {
  let s = '';
  process.stdin.setEncoding('utf8');
  process.stdin.on('data', (d) => { s += d; });
  process.stdin.on('end', () => resolve(s));
  process.stdin.on('error', reject);
}));

const table = { type: 'ref/resource', uri: 'clickhouse://table/{database}/{table}' };
const out = {};
for (const [who, token] of Object.entries(input.tokens)) {
  const client = new Client({ name: 'clickgate-test-policy', version: '1.0.0' });
  await client.connect(new StreamableHTTPClientTransport(new URL(input.url), {
    requestInit: { headers: { Authorization: `Bearer ${token}` } },
  }));
  const tools = await client.listTools();
  const hidden = await client.callTool({ name: 'run_query', arguments: { query: 'SELECT 1' } });
  const databases = await client.complete({ ref: table, argument: { name: 'database', value: 's' } });
  const tables = await client.complete({ ref: table, argument: { name: 'table', value: '' }, context: { arguments: { database: 'secret' } } });
  out[who] = {
    completions: !!client.getServerCapabilities()?.completions,
    tools: tools.tools.map((t) => t.name).sort(),
    runQuery: { isError: hidden.isError === true, text: (hidden.content ?? []).map((c) => c.text ?? '').join('') },
    databases: databases.completion.values,
    secretTables: tables.completion.values,
  };
  await client.close();
}
process.stdout.write(JSON.stringify(out));
