/**
 * Puts a controller together for this host: the file store under the state
 * directory, the real namespace operations, and the built-in drivers.
 */
import { Controller } from './cnm/controller.js';
import type { NamespaceOps } from './cnm/namespaces.js';
import { BridgeDriver } from './drivers/bridge/bridge.js';
import { NullDriver } from './drivers/null/null.js';
import { FileStore } from './store/file.js';
import { createNamedNetns, isNetnsPath, removeNamedNetns } from './sys/netns.js';
import { Rtnl } from './sys/rtnl.js';

export const DEFAULT_STATE_DIR = '/var/lib/netctl';

export interface HostOptions {
  readonly stateDir?: string;
  /** Namespace where bridges live; defaults to the caller's own. */
  readonly hostNetnsPath?: string;
  readonly log?: (message: string) => void;
}

/** Real namespaces: loopback comes up at creation, as Docker does for containers. */
export const kernelNamespaces: NamespaceOps = {
  async createNamed(name) {
    const path = await createNamedNetns(name);
    const rtnl = await Rtnl.open(path);
    try {
      await rtnl.setUp('lo');
    } finally {
      rtnl.close();
    }
    return path;
  },
  removeNamed: removeNamedNetns,
  exists: async (path) => isNetnsPath(path),
};

export async function openHostController(options: HostOptions = {}): Promise<Controller> {
  const store = await FileStore.open(options.stateDir ?? DEFAULT_STATE_DIR);
  const bridge = new BridgeDriver(options.hostNetnsPath !== undefined ? { hostNetnsPath: options.hostNetnsPath } : {});
  try {
    return await Controller.open({
      store,
      drivers: [bridge, new NullDriver()],
      namespaces: kernelNamespaces,
      ownsStore: true,
      ...(options.log !== undefined ? { log: options.log } : {}),
    });
  } catch (err) {
    await store.close();
    throw err;
  }
}
