// Runs one query through clickgate with the official Node driver,
// @clickhouse/client, signing in with access_token (sent as Bearer).
// Usage: node clickhouse-client.mjs URL TOKEN SQL; prints the rows as JSON.
import { createClient } from '@clickhouse/client';

const [url, accessToken, query] = process.argv.slice(2);
const client = createClient({ url, access_token: accessToken });
try {
  const rs = await client.query({ query, format: 'JSONEachRow' });
  console.log(JSON.stringify(await rs.json()));
} catch (err) {
  console.error(`error: ${err.message}`);
  process.exitCode = 1;
} finally {
  await client.close();
}
