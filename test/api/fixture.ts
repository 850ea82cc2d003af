/**
 * An in-memory controller and an API server on a temporary socket, shared by
 * the API and CLI tests: no kernel state is touched.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { request } from 'node:http';
import { join } from 'node:path';
import { ApiServer } from '../../src/api/server.js';
import { Controller } from '../../src/cnm/controller.js';
import { NullDriver } from '../../src/drivers/null/null.js';
import { MemoryStore } from '../../src/store/memory.js';
import { MemoryNamespaces, RecordingDriver } from '../cnm/doubles.js';
import { silentLogger } from '../../src/log.js';

export interface Fixture {
  readonly controller: Controller;
  readonly server: ApiServer;
  readonly namespaces: MemoryNamespaces;
  readonly socketPath: string;
  readonly host: string;
  readonly dir: string;
  close(): Promise<void>;
}

export async function startFixture(): Promise<Fixture> {
  const dir = await mkdtemp(join(tmpdir(), 'netctl-api-'));
  const socketPath = join(dir, 'netctl.sock');
  const namespaces = new MemoryNamespaces();
  const controller = await Controller.open({
    store: new MemoryStore(),
    drivers: [new NullDriver(), new RecordingDriver()],
    namespaces,
    logger: silentLogger,
  });
  const server = new ApiServer(controller, { version: '0.1.0' });
  await server.listen(socketPath);
  return {
    controller,
    server,
    namespaces,
    socketPath,
    host: `unix://${socketPath}`,
    dir,
    async close() {
      await server.close();
      await controller.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** An HTTP response as the API tests read it. */
export interface Response {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  json: any;
}

/** One request to the fixture's API socket; `body` as JSON, or a string sent as it is. */
export function call(fixture: Fixture, method: string, path: string, body?: unknown | string): Promise<Response> {
  const payload = body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = request({ socketPath: fixture.socketPath, method, path, headers: { 'Content-Type': 'application/json' } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString();
        let json: unknown;
        try {
          json = JSON.parse(text);
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
      });
    });
    req.on('error', reject);
    req.end(payload);
  });
}
