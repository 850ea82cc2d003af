/**
 * An in-memory controller and an API server on a temporary socket, shared by
 * the API and CLI tests: no kernel state is touched.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ApiServer } from '../../src/api/server.js';
import { Controller } from '../../src/cnm/controller.js';
import type { JoinRequest, LeaveRequest, NetworkDriver, NetworkSpec } from '../../src/cnm/driver.js';
import { InvalidArgument } from '../../src/cnm/errors.js';
import type { NamespaceOps } from '../../src/cnm/namespaces.js';
import { NullDriver } from '../../src/drivers/null/null.js';
import { MemoryStore } from '../../src/store/memory.js';

/** Stands in for the bridge driver: takes addresses from IPAM, makes nothing. */
export class FakeBridgeDriver implements NetworkDriver {
  readonly name = 'bridge';
  readonly scope = 'local' as const;
  readonly usesIpam = true;
  readonly joined = new Map<string, JoinRequest>();

  validate(network: NetworkSpec): void {
    for (const option of Object.keys(network.options)) {
      if (!option.startsWith('com.docker.network.')) throw new InvalidArgument(`unknown bridge option "${option}"`);
    }
  }

  async createNetwork(): Promise<void> {}

  async deleteNetwork(): Promise<void> {}

  async join(request: JoinRequest): Promise<void> {
    this.joined.set(request.endpoint.id, request);
  }

  async leave(request: LeaveRequest): Promise<void> {
    this.joined.delete(request.endpoint.id);
  }
}

/** Namespaces as a set of paths. */
export class FakeNamespaces implements NamespaceOps {
  readonly paths = new Set<string>();

  async createNamed(name: string): Promise<string> {
    const path = `/var/run/netns/${name}`;
    this.paths.add(path);
    return path;
  }

  async removeNamed(name: string): Promise<void> {
    this.paths.delete(`/var/run/netns/${name}`);
  }

  async exists(path: string): Promise<boolean> {
    return this.paths.has(path);
  }
}

export interface Fixture {
  readonly controller: Controller;
  readonly server: ApiServer;
  readonly namespaces: FakeNamespaces;
  readonly socketPath: string;
  readonly host: string;
  readonly dir: string;
  close(): Promise<void>;
}

export async function startFixture(): Promise<Fixture> {
  const dir = await mkdtemp(join(tmpdir(), 'netctl-api-'));
  const socketPath = join(dir, 'netctl.sock');
  const namespaces = new FakeNamespaces();
  const controller = await Controller.open({
    store: new MemoryStore(),
    drivers: [new NullDriver(), new FakeBridgeDriver()],
    namespaces,
    log: () => undefined,
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
