/**
 * Network namespaces that exist only in a Set, and a host whose routes are a
 * list: the controller's NamespaceOps without touching the kernel.
 */
import type { NamespaceOps } from '../cnm/namespaces.js';
import { NetctlError } from '../errors.js';

export class MemoryNamespaces implements NamespaceOps {
  /** Paths that exist; tests add foreign ones (`/proc/PID/ns/net`) here. */
  readonly paths = new Set<string>();
  /** Subnets the "host" routes; tests add some here to see automatic pools skip them. */
  readonly routed: string[] = [];

  async createNamed(name: string): Promise<string> {
    const path = `/var/run/netns/${name}`;
    if (this.paths.has(path)) throw new NetctlError('Conflict', `namespace ${name} exists`);
    this.paths.add(path);
    return path;
  }

  async removeNamed(name: string): Promise<void> {
    this.paths.delete(`/var/run/netns/${name}`);
  }

  async exists(path: string): Promise<boolean> {
    return this.paths.has(path);
  }

  async same(a: string, b: string): Promise<boolean> {
    return a === b;
  }

  async routedSubnets(): Promise<string[]> {
    return [...this.routed];
  }
}
