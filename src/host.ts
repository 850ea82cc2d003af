/**
 * Puts a controller together for this host: the file store under the state
 * directory, the real namespace operations, and the built-in drivers; with
 * a cluster store, also the VTEP and the overlay driver; and the embedded
 * DNS for the sandboxes.
 */
import { readFile } from 'node:fs/promises';
import { Controller } from './cnm/controller.js';
import type { NetworkDriver } from './cnm/driver.js';
import { InvalidArgument } from './cnm/errors.js';
import type { NamespaceOps } from './cnm/namespaces.js';
import { EmbeddedDns, resolvConfPath } from './dns/embedded.js';
import { parseResolvConf } from './dns/forwarder.js';
import { BridgeDriver } from './drivers/bridge/bridge.js';
import { NullDriver } from './drivers/null/null.js';
import { OverlayDriver } from './drivers/overlay/overlay.js';
import { EtcdStore } from './store/etcd.js';
import { FileStore } from './store/file.js';
import type { Store } from './store/types.js';
import { createNamedNetns, isNetnsPath, removeNamedNetns, sameNetns } from './sys/netns.js';
import { Rtnl } from './sys/rtnl.js';
import { NativeDatagramPort } from './vxlan/native.js';
import { Vtep } from './vxlan/vtep.js';
import { DEFAULT_VXLAN_PORT } from './wire/vxlan.js';

export const DEFAULT_STATE_DIR = '/var/lib/netctl';

export interface HostOptions {
  readonly stateDir?: string;
  /** Namespace where bridges live; defaults to the caller's own. */
  readonly hostNetnsPath?: string;
  /** Cluster store URL (etcd://HOST:PORT); enables overlay networks. */
  readonly clusterStore?: string;
  /** This host's underlay IPv4 address; required with a cluster store. */
  readonly advertiseAddress?: string;
  /** UDP port of the overlay data path on every host (default 4789). */
  readonly dataPathPort?: number;
  /** This host's name in other hosts' Peers (default: the host name). */
  readonly nodeName?: string;
  /** Upstream resolvers for the embedded DNS (default: the host's resolv.conf). */
  readonly dns?: readonly string[];
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
  same: async (a, b) => (isNetnsPath(a) && isNetnsPath(b) ? sameNetns(a, b) : false),
};

/** The overlay's parts: cluster store, the host's VTEP on its UDP port, and the driver over them. */
async function openOverlay(options: HostOptions & { clusterStore: string }): Promise<{ globalStore: Store; driver: OverlayDriver }> {
  const advertiseAddress = options.advertiseAddress;
  if (advertiseAddress === undefined) {
    throw new InvalidArgument('--advertise-addr is required with --store: the address other hosts reach this one at');
  }
  const port = options.dataPathPort ?? DEFAULT_VXLAN_PORT;
  const globalStore = await EtcdStore.open(options.clusterStore);
  const cleanup: (() => Promise<void>)[] = [() => globalStore.close()];
  try {
    const underlay = NativeDatagramPort.open({ address: advertiseAddress, port });
    const vtep = new Vtep({ underlay, localAddress: advertiseAddress, port, ...(options.log !== undefined ? { log: options.log } : {}) });
    vtep.start();
    cleanup.push(() => vtep.stop());
    const driver = await OverlayDriver.start({
      store: globalStore,
      vtep,
      advertiseAddress,
      ...(options.nodeName !== undefined ? { hostName: options.nodeName } : {}),
      ...(options.log !== undefined ? { log: options.log } : {}),
    });
    return { globalStore, driver };
  } catch (err) {
    for (const step of cleanup.reverse()) await step().catch(() => undefined);
    throw err;
  }
}

/** A host's networking: the controller and the embedded DNS that serves its sandboxes. */
export interface Host {
  readonly controller: Controller;
  readonly dns: EmbeddedDns;
  /** Stops the DNS, then the controller; kernel state stays for the next start to restore. */
  close(): Promise<void>;
}

/** Resolvers for names netctl does not know: `--dns`, else the host's resolv.conf. */
async function upstreamResolvers(options: HostOptions): Promise<string[]> {
  if (options.dns !== undefined) return [...options.dns];
  try {
    return parseResolvConf(await readFile('/etc/resolv.conf', 'utf8'));
  } catch {
    return [];
  }
}

export async function openHost(options: HostOptions = {}): Promise<Host> {
  if (options.clusterStore === undefined && (options.advertiseAddress !== undefined || options.dataPathPort !== undefined)) {
    throw new InvalidArgument('--advertise-addr and --data-path-port need a cluster store (--store etcd://HOST:PORT)');
  }
  const stateDir = options.stateDir ?? DEFAULT_STATE_DIR;
  const store = await FileStore.open(stateDir);
  const drivers: NetworkDriver[] = [
    new BridgeDriver(options.hostNetnsPath !== undefined ? { hostNetnsPath: options.hostNetnsPath } : {}),
    new NullDriver(),
  ];
  let globalStore: Store | undefined;
  let controller: Controller | undefined;
  try {
    if (options.clusterStore !== undefined) {
      const overlay = await openOverlay({ ...options, clusterStore: options.clusterStore });
      globalStore = overlay.globalStore;
      drivers.push(overlay.driver);
    }
    controller = await Controller.open({
      store,
      ...(globalStore !== undefined ? { globalStore } : {}),
      drivers,
      namespaces: kernelNamespaces,
      ownsStore: true,
      resolvConfPath: (sandbox) => resolvConfPath(sandbox, stateDir),
      // The daemon's namespace, the host's root one (PID 1's) and the bridges' one are the host itself.
      reservedNamespaces: ['/proc/self/ns/net', '/proc/1/ns/net', ...(options.hostNetnsPath !== undefined ? [options.hostNetnsPath] : [])],
      ...(options.log !== undefined ? { log: options.log } : {}),
    });
    // After the controller: its restore makes the namespaces the listeners open in.
    const dns = await EmbeddedDns.start({
      localStore: store,
      ...(globalStore !== undefined ? { globalStore } : {}),
      upstreams: await upstreamResolvers(options),
      stateDir,
      ...(options.log !== undefined ? { log: options.log } : {}),
    });
    const opened = controller;
    return {
      controller: opened,
      dns,
      async close() {
        await dns.stop();
        await opened.close();
      },
    };
  } catch (err) {
    if (controller !== undefined) {
      await controller.close().catch(() => undefined);
    } else {
      for (const driver of drivers) await driver.close?.().catch(() => undefined);
      await globalStore?.close().catch(() => undefined);
      await store.close();
    }
    throw err;
  }
}
