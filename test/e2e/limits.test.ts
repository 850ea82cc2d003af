/**
 * A client that floods the API with oversized labels and bad input, as a
 * hostile tenant would: every request is refused with a message, the store
 * and the daemon's memory stay small, and others are served meanwhile.
 */
import { request } from 'node:http';
import { mkdtemp, rm } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { ApiClient } from '../../src/api/client.js';
import { SqliteStore } from '../../src/store/sqlite.js';
import { startDaemon } from '../helpers/daemon.js';
import { addNetns, removeNetns, uniqueName } from '../helpers/kernel.js';

function post(socketPath: string, path: string, body: string): Promise<{ status: number; message: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, path, method: 'POST', headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) } }, (res) => {
      let text = '';
      res.setEncoding('utf8').on('data', (chunk: string) => (text += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, message: (JSON.parse(text || '{}') as { message?: string }).message ?? '' }));
    });
    // The server may answer 413 and close before it has read everything.
    req.on('error', (err: NodeJS.ErrnoException) => (err.code === 'EPIPE' || err.code === 'ECONNRESET' ? undefined : reject(err)));
    req.end(body);
  });
}

function rssBytes(pid: number): number {
  const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(match?.[1] ?? 0) * 1024;
}

test('a flood of oversized labels is refused: store and memory stay small, other clients are served', async (t) => {
  const hostNs = uniqueName('l');
  const hostNsPath = await addNetns(hostNs);
  const stateDir = await mkdtemp(join(tmpdir(), 'netctl-limits-'));
  const socket = join(stateDir, 'netctl.sock');
  const daemon = await startDaemon({ netnsPath: hostNsPath, stateDir, socket, args: ['--dns', '127.0.0.1'] });
  t.teardown(async () => {
    await daemon.stop('SIGKILL');
    await removeNetns(hostNs);
    await rm(stateDir, { recursive: true, force: true });
  });
  const pid = daemon.process.pid ?? 0;
  const api = new ApiClient(`unix://${socket}`);
  await api.createNetwork({ Name: 'keep', Labels: { owner: 'tenant-b' } });
  const rssBefore = rssBytes(pid);

  const megabyte = 'x'.repeat(1_000_000);
  const results = await Promise.all(
    Array.from({ length: 30 }, (_, i) => post(socket, '/networks/create', JSON.stringify({ Name: `flood${i}`, Labels: { big: megabyte } }))),
  );
  for (const result of results) {
    t.is(result.status, 400);
    t.regex(result.message, /labels: the value of "big" is longer than 4096 bytes/);
  }
  const tooLarge = await post(socket, '/networks/create', JSON.stringify({ Name: 'huge', Labels: { big: 'x'.repeat(2 << 20) } }));
  t.is(tooLarge.status, 413);
  t.regex(tooLarge.message, /request body is larger than/);
  const sandbox = uniqueName('ls');
  t.teardown(() => removeNetns(sandbox));
  await api.createSandbox({ Name: sandbox });
  const aliases = await post(socket, '/networks/keep/connect', JSON.stringify({ Container: sandbox, EndpointConfig: { Aliases: ['a b..\u0000'] } }));
  t.is(aliases.status, 400);
  t.regex(aliases.message, /invalid alias "a b\.\.\\u0000"/);
  const malformed = await post(socket, '/networks/%E0%A4%A/disconnect', '{"Container":"x"}');
  t.is(malformed.status, 400);
  t.regex(malformed.message, /malformed percent-encoding/);

  // Other clients are served, and nothing of the flood was stored.
  t.deepEqual((await api.listNetworks()).map((n) => n.Name), ['keep']);
  const stored = await SqliteStore.open(stateDir);
  const storedBytes = (await stored.list('')).reduce((sum, kv) => sum + kv.key.length + kv.value.length, 0);
  await stored.close();
  t.true(storedBytes < 64 * 1024, `the store holds no flood: ${storedBytes} bytes`);
  const grown = rssBytes(pid) - rssBefore;
  t.true(grown < 200 * 1024 * 1024, `RSS grew by ${Math.round(grown / 1048576)} MiB`);
});
