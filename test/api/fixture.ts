/**
 * An in-memory controller and an API server on a temporary socket, shared by
 * the API and CLI tests: no kernel state is touched.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
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
