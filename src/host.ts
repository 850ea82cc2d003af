/**
 * Puts a controller together for this host: the SQLite store under the state
 * directory, the real namespace operations, and the built-in drivers; with
 * a cluster store, also the VTEP and the overlay driver; and the embedded
 * DNS and the services' load balancer for the sandboxes.
 */
import { join } from 'node:path';
import { Controller } from './cnm/controller.js';
import type { NetworkDriver } from './cnm/driver.js';
import { Conflict, InvalidArgument } from './errors.js';
import type { NamespaceOps } from './cnm/namespaces.js';
import type { NetworkCreateRequest } from './cnm/types.js';
import { EmbeddedDns, resolvConfPath } from './dns/embedded.js';
import { type Reachability, ServiceBalancer } from './ingress/balancer.js';
import { IngressMesh } from './ingress/mesh.js';
import type { DnsQueryObservation } from './dns/server.js';
import { parseResolvConf } from './dns/forwarder.js';
import { BRIDGE_NAME_OPTION, BridgeDriver, DEFAULT_BRIDGE_OPTION } from './drivers/bridge/bridge.js';
import type { ProtectedEndpoints } from './drivers/bridge/bridge.js';
import { HostDriver } from './drivers/host/host.js';
import { NullDriver } from './drivers/null/null.js';
import { OverlayDriver } from './drivers/overlay/overlay.js';
import { EtcdStore, etcdClientEndpoints } from './store/etcd.js';
import type { EtcdAccess } from './store/etcd.js';
import { SqliteStore } from './store/sqlite.js';
import { LastKnownStore } from './store/last-known.js';
import { ObservedStore, type StoreObserver } from './store/observed.js';
import type { Store } from './store/types.js';
import { createNamedNetns, currentNetnsPath, isNetnsPath, removeNamedNetns, sameNetns } from './sys/netns.js';
import { ipBatch, rulePriorities } from './sys/iproute.js';
import { routedSubnets } from './sys/routed.js';
import { setSysctl } from './sys/sysctl.js';
import { type FileLock, LockHeld, lockForLife } from './sys/fslock.js';
import { makeStateDirectory, readHostResolvConf } from './sys/host-files.js';
import { Rtnl } from './sys/rtnl.js';
import { applyNft } from './sys/nft.js';
import { deleteTrackedFlows } from './sys/conntrack.js';
import { portInUse } from './sys/ports.js';
import { VXLAN_OVERHEAD, overlayMtu } from './vxlan/mtu.js';
import { NativeDatagramPort } from './vxlan/native.js';
import { Vtep } from './vxlan/vtep.js';
import { loadOrCreateStaticKey } from './crypto/keys.js';
import type { EncryptionSetup } from './drivers/overlay/encryption.js';
import { EspTable, espSelfTest } from './sys/esp.js';
import { openKeylog } from './sys/keylog.js';
import { DEFAULT_VXLAN_PORT } from './wire/vxlan.js';
import type { Logger } from './log.js';

export const DEFAULT_STATE_DIR = '/var/lib/netctl';
/** The kernel bridge of the default `bridge` network: netctl's docker0. */
const DEFAULT_BRIDGE_NAME = 'netctl0';

export interface HostOptions {
  readonly stateDir?: string;
  /** Namespace where bridges live and published ports open; defaults to the caller's own (then a port something there holds is refused). */
  readonly hostNetnsPath?: string;
  /**
   * Make Docker's predefined networks when they are missing: `none` (null
   * driver), `host` (host driver) and `bridge`, the default bridge network
   * on the kernel bridge netctl0 (--predefined-networks). Default true.
   */
  readonly predefinedNetworks?: boolean;
  /** Whether the predefined networks include `bridge`; false as with dockerd's --bridge=none. Default true. */
  readonly defaultBridge?: boolean;
  /** Cluster store URL (etcd://HOST:PORT); enables overlay networks. */
  readonly clusterStore?: string;
  /** TLS files and credentials for the cluster store (--store-cacert, --store-cert, --store-key, --store-user, --store-password-file). */
  readonly clusterStoreAccess?: EtcdAccess;
  /** How often the daemon compacts the cluster store's history (--store-compact-interval); 0 leaves it to etcd's own flags. Default 5 minutes. */
  readonly clusterStoreCompactIntervalMs?: number;
  /** This host's underlay IPv4 address; required with a cluster store. */
  readonly advertiseAddress?: string;
  /** UDP port of the overlay data path on every host (default 4789). */
  readonly dataPathPort?: number;
  /**
   * Let the addon move the frames of flows between configured endpoints
   * without waking JavaScript (the VTEP's fast path, --fast-path). Default
   * true; false measures or works around it.
   */
  readonly fastPath?: boolean;
  /** This host's name in other hosts' Peers (default: the host name). */
  readonly nodeName?: string;
  /** Writes every security association of encrypted networks to this file, keys included, as Wireshark's esp_sa lines (--esp-keylog). */
  readonly espKeylog?: string;
  /** How often the keys of encrypted networks are renewed (--esp-rotate-interval; default and most 10 minutes). */
  readonly espRotateEveryMs?: number;
  /** Upstream resolvers for the embedded DNS (default: the host's resolv.conf). */
  readonly dns?: readonly string[];
  /** Where the daemon serves /metrics over TCP: one of the daemon's own ports, which sandboxes must not reach. */
  readonly metricsAddress?: { readonly address: string; readonly port: number };
  /** Observes each store's operations (`local` or `cluster`), for the metrics. */
  readonly storeObserver?: (store: 'local' | 'cluster') => StoreObserver;
  /** Told how each embedded DNS query ended (for the metrics). */
  readonly onDnsQuery?: (query: DnsQueryObservation) => void;
  readonly logger?: Logger;
}

/** Real namespaces: loopback comes up at creation, as Docker does for containers; the routes are the caller's namespace's. */
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
  routedSubnets: () => routedSubnets(),
};

/** Docker's predefined networks as dockerd makes them, the default bridge on netctl0 unless left out. */
function predefinedNetworks(options: HostOptions): NetworkCreateRequest[] {
  if (options.predefinedNetworks === false) return [];
  const defaultBridge: NetworkCreateRequest = {
    name: 'bridge',
    driver: 'bridge',
    options: { [DEFAULT_BRIDGE_OPTION]: 'true', [BRIDGE_NAME_OPTION]: DEFAULT_BRIDGE_NAME },
  };
  return [{ name: 'none', driver: 'null' }, { name: 'host', driver: 'host' }, ...(options.defaultBridge === false ? [] : [defaultBridge])];
}

/** The overlay's parts: cluster store, the host's VTEP on its UDP port, and the driver over them. */
async function openOverlay(
  options: HostOptions & { clusterStore: string; stateDir: string },
): Promise<{ globalStore: Store; vtep: Vtep; driver: OverlayDriver; esp: EspTable | undefined }> {
  const advertiseAddress = options.advertiseAddress;
  if (advertiseAddress === undefined) {
    throw new InvalidArgument('--advertise-addr is required with --store: the address other hosts reach this one at');
  }
  const port = options.dataPathPort ?? DEFAULT_VXLAN_PORT;
  const underlay = await underlayLinkOf(advertiseAddress);
  const mtu = overlayMtu(underlay.mtu);
  options.logger?.info(`overlay MTU ${mtu}: ${underlay.name} (MTU ${underlay.mtu}, holding ${advertiseAddress}) less ${VXLAN_OVERHEAD} bytes of VXLAN headers`);
  // With the daemon's log: lease and connection changes are worth a line each.
  const etcd = await EtcdStore.open(options.clusterStore, {
    ...options.clusterStoreAccess,
    ...(options.clusterStoreCompactIntervalMs !== undefined ? { compactIntervalMs: options.clusterStoreCompactIntervalMs } : {}),
    ...(options.logger !== undefined ? { logger: options.logger } : {}),
  });
  const globalStore = observed(etcd, 'cluster', options);
  const cleanup: (() => Promise<void>)[] = [() => globalStore.close()];
  try {
    const udp = NativeDatagramPort.open({ address: advertiseAddress, port, fastPath: options.fastPath ?? true });
    const vtep = new Vtep({ underlay: udp, localAddress: advertiseAddress, port, mtu, ...(options.logger !== undefined ? { logger: options.logger } : {}) });
    vtep.start();
    cleanup.push(() => vtep.stop());
    const encryption = await encryptionSetup(udp, options);
    const driver = await OverlayDriver.start({
      store: globalStore,
      vtep,
      advertiseAddress,
      mtu,
      encryption,
      ...(options.nodeName !== undefined ? { hostName: options.nodeName } : {}),
      ...(options.logger !== undefined ? { logger: options.logger } : {}),
    });
    return { globalStore, vtep, driver, esp: 'table' in encryption ? encryption.table : undefined };
  } catch (err) {
    for (const step of cleanup.reverse()) await step().catch(() => undefined);
    throw err;
  }
}

/**
 * What encrypted overlays need: AES-GCM that gives the known answers (else
 * they are refused, naming why), an ESP table on the VTEP's socket, the
 * host's long-term key, and the keylog when asked for.
 */
async function encryptionSetup(udp: NativeDatagramPort, options: HostOptions & { stateDir: string }): Promise<EncryptionSetup> {
  if (!espSelfTest()) {
    options.logger?.error('AES-256-GCM failed its self-test: encrypted overlay networks are refused on this host');
    return { unavailable: 'AES-256-GCM failed its self-test at daemon start' };
  }
  const table = EspTable.create();
  udp.setEspTable(table);
  const staticKey = await loadOrCreateStaticKey(options.stateDir);
  let keylog: ((line: string) => void) | undefined;
  if (options.espKeylog !== undefined) {
    keylog = openKeylog(options.espKeylog);
    options.logger?.warn(`--esp-keylog: the keys of every encrypted network are written to ${options.espKeylog}; whoever reads it can decrypt captured traffic`);
  }
  return {
    table,
    staticKey,
    ...(keylog !== undefined ? { keylog } : {}),
    ...(options.espRotateEveryMs !== undefined ? { rotateEveryMs: options.espRotateEveryMs } : {}),
  };
}

/** The interface holding `address` in the daemon's namespace: the underlay the VTEP sends on, whose MTU bounds the overlay's. */
async function underlayLinkOf(address: string): Promise<{ name: string; mtu: number }> {
  const rtnl = await Rtnl.open();
  try {
    const holder = (await rtnl.listAddresses()).find((held) => held.cidr.split('/')[0] === address);
    const link = holder === undefined ? undefined : await rtnl.getLink(holder.ifName);
    if (link === undefined) throw new InvalidArgument(`--advertise-addr ${address} is on no interface of this host: the overlay's data path sends from it`);
    return { name: link.name, mtu: link.mtu };
  } finally {
    rtnl.close();
  }
}

/**
 * The ports sandboxes must not reach through this host: every host's data
 * path, the cluster store, and the daemon's metrics address.
 */
async function protectedEndpointsOf(options: HostOptions): Promise<ProtectedEndpoints> {
  const metrics = options.metricsAddress === undefined ? [] : [{ address: options.metricsAddress.address, port: options.metricsAddress.port }];
  if (options.clusterStore === undefined) return { udpPorts: [], tcp: metrics };
  return { udpPorts: [options.dataPathPort ?? DEFAULT_VXLAN_PORT], tcp: [...(await etcdClientEndpoints(options.clusterStore)), ...metrics] };
}

function observed(store: Store, name: 'local' | 'cluster', options: HostOptions): Store {
  return options.storeObserver === undefined ? store : new ObservedStore(store, options.storeObserver(name));
}

/** A host's networking: the controller and the embedded DNS that serves its sandboxes. */
export interface Host {
  readonly controller: Controller;
  /** The embedded DNS, once it runs: it starts when the restore has given the sandboxes their namespaces. */
  readonly dns: EmbeddedDns | undefined;
  /** The services' load balancer, once it runs (it starts with the DNS). */
  readonly balancer: ServiceBalancer | undefined;
  /** The routing mesh of published ports, once it runs (it starts with the DNS). */
  readonly mesh: IngressMesh | undefined;
  /** Resolves when the restore is done and the embedded DNS answers. */
  readonly ready: Promise<void>;
  /** The overlay's VTEP, with a cluster store: its counters are read for the metrics. */
  readonly vtep?: Vtep;
  /** The ESP table of encrypted overlays, when this host can encrypt: its counters are read for the metrics. */
  readonly esp?: EspTable;
  /** `HostOptions.metricsAddress`, for the rules that keep sandboxes off the daemon's ports. */
  readonly metricsAddress?: { readonly address: string; readonly port: number };
  /** The subnets routed where the bridges live, which automatic pools skip (the Docker plugin's IPAM too). */
  routedSubnets(): Promise<string[]>;
  /** The stores, for adapters that keep records of their own beside the controller's (the Docker plugin's). */
  readonly stores: { readonly local: Store; readonly cluster?: Store };
  /** Stops the DNS, then the controller; kernel state stays for the next start to restore. */
  close(): Promise<void>;
}

/** Resolvers for names netctl does not know: `--dns`, else the host's resolv.conf. */
async function upstreamResolvers(options: HostOptions): Promise<string[]> {
  if (options.dns !== undefined) return [...options.dns];
  try {
    return parseResolvConf(await readHostResolvConf());
  } catch {
    return [];
  }
}

export async function openHost(options: HostOptions = {}): Promise<Host> {
  if (options.clusterStore === undefined && (options.advertiseAddress !== undefined || options.dataPathPort !== undefined)) {
    throw new InvalidArgument('--advertise-addr and --data-path-port need a cluster store (--store etcd://HOST:PORT)');
  }
  if (options.clusterStore === undefined && options.clusterStoreAccess !== undefined) {
    throw new InvalidArgument('--store-cacert, --store-cert, --store-key, --store-user and --store-password-file need a cluster store (--store)');
  }
  if (options.clusterStore === undefined && (options.espKeylog !== undefined || options.espRotateEveryMs !== undefined)) {
    throw new InvalidArgument('--esp-keylog and --esp-rotate-interval are for encrypted overlay networks, which need a cluster store (--store)');
  }
  if (options.clusterStore === undefined && options.clusterStoreCompactIntervalMs !== undefined) {
    throw new InvalidArgument('--store-compact-interval needs a cluster store (--store)');
  }
  const stateDir = options.stateDir ?? DEFAULT_STATE_DIR;
  // One daemon per state directory: a second one would rewire the kernel state the first one owns.
  const lock = await lockStateDirectory(stateDir);
  try {
    const host = await openLockedHost(options, stateDir);
    const closeHost = host.close.bind(host);
    // Replaced, not spread into a new object: a spread would fix the getters (dns, balancer, mesh) at
    // their values now, undefined until those parts finish starting.
    host.close = async () => {
      await closeHost();
      await lock.release();
    };
    return host;
  } catch (err) {
    await lock.release();
    throw err;
  }
}

async function lockStateDirectory(stateDir: string): Promise<FileLock> {
  await makeStateDirectory(stateDir);
  try {
    return await lockForLife(join(stateDir, 'daemon.lock'));
  } catch (err) {
    if (!(err instanceof LockHeld)) throw err;
    const holder = err.holderPid === undefined ? 'another netctl daemon' : `another netctl daemon (pid ${err.holderPid})`;
    throw new Conflict(`${holder} is using the state directory ${stateDir}; stop it first or pick another --state-dir`);
  }
}

async function openLockedHost(options: HostOptions, stateDir: string): Promise<Host> {
  // Names in the store URL are resolved once, here: nftables rules hold addresses.
  const protectedEndpoints = await protectedEndpointsOf(options);
  const store = observed(await SqliteStore.open(stateDir), 'local', options);
  // Where the bridges live is where a new subnet must not collide with a route.
  const routed = () => routedSubnets(options.hostNetnsPath);
  const drivers: NetworkDriver[] = [
    new BridgeDriver({ ...(options.hostNetnsPath !== undefined ? { hostNetnsPath: options.hostNetnsPath } : {}), protectedEndpoints }),
    new NullDriver(),
    new HostDriver(),
  ];
  let globalStore: Store | undefined;
  let overlayDriver: OverlayDriver | undefined;
  let vtep: Vtep | undefined;
  let esp: EspTable | undefined;
  let controller: Controller | undefined;
  // Known once the DNS runs; until then inspect shows where the file will go.
  let dns: EmbeddedDns | undefined;
  let balancer: ServiceBalancer | undefined;
  let mesh: IngressMesh | undefined;
  try {
    if (options.clusterStore !== undefined) {
      const overlay = await openOverlay({ ...options, clusterStore: options.clusterStore, stateDir });
      globalStore = overlay.globalStore;
      vtep = overlay.vtep;
      esp = overlay.esp;
      overlayDriver = overlay.driver;
      drivers.push(overlay.driver);
    }
    // The controller reads the cluster through a memory of it, so local work never waits on an outage.
    const cluster =
      globalStore === undefined
        ? undefined
        : await LastKnownStore.open(globalStore, {
            prefixes: ['networks/', 'endpoints/', 'ipam/', 'names/', 'services/', 'network-services/', 'ports/'],
            ...(options.logger !== undefined ? { logger: options.logger } : {}),
          });
    controller = await Controller.open({
      store,
      ...(cluster !== undefined ? { globalStore: cluster, clusterReachability: cluster } : {}),
      drivers,
      predefinedNetworks: predefinedNetworks(options),
      namespaces: { ...kernelNamespaces, routedSubnets: routed },
      ownsStore: true,
      resolvConfPath: (sandbox) => dns?.resolvConfPathOf(sandbox) ?? resolvConfPath(sandbox, stateDir),
      // The daemon's namespace, the host's root one (PID 1's) and the bridges' one are the host itself.
      reservedNamespaces: ['/proc/self/ns/net', '/proc/1/ns/net', ...(options.hostNetnsPath !== undefined ? [options.hostNetnsPath] : [])],
      ...(options.logger !== undefined ? { logger: options.logger } : {}),
      // The API answers at once; changes wait for the restore, which re-checks every endpoint's wiring.
      restoreInBackground: true,
      // Both follow the records; a change returns once this host's VIP rules and published ports hold it.
      serviceRules: () => ({
        reread: async (scope, recordKeys) => {
          await Promise.all([balancer?.reread(scope, recordKeys), mesh?.reread(scope, recordKeys)]);
        },
        balancing: async (serviceId) => (await balancer?.balancing(serviceId)) ?? [],
      }),
      // A published port is refused while something holds it in the daemon's own namespace.
      // It binds in the daemon's own namespace: where the ports open unless the caller keeps them elsewhere.
      ...(options.hostNetnsPath === undefined ? { portInUse } : {}),
    });
    const opened = controller;
    const upstreams = await upstreamResolvers(options);
    // Once the restore has made the namespaces the listeners open in (after a reboot), while it re-checks the endpoints.
    const dnsStarted = opened.sandboxesRestored.then(async () => {
      dns = await EmbeddedDns.start({
        localStore: store,
        ...(globalStore !== undefined ? { globalStore } : {}),
        upstreams,
        stateDir,
        ...(options.onDnsQuery !== undefined ? { onQuery: options.onDnsQuery } : {}),
        ...(options.logger !== undefined ? { logger: options.logger } : {}),
      });
    });
    // Nobody may be waiting on `ready`; a failure is logged here and reported by `ready` too.
    dnsStarted.catch((err: unknown) => options.logger?.error(`the embedded DNS did not start: ${(err as Error).message}`));
    const overlayPeers = overlayDriver;
    // Other hosts' endpoints carry traffic while the overlay's probes say so.
    const reachability: Reachability | undefined =
      overlayPeers === undefined
        ? undefined
        : {
            reachable: (networkId, endpointId) => overlayPeers.endpointReachable(networkId, endpointId),
            onChange: (listener) => overlayPeers.onReachabilityChange(listener),
          };
    const balancerStarted = opened.sandboxesRestored.then(async () => {
      balancer = await ServiceBalancer.start({
        localStore: store,
        ...(globalStore !== undefined ? { globalStore } : {}),
        rules: { apply: applyNft, forgetFlows: deleteTrackedFlows },
        ...(reachability !== undefined ? { reachability } : {}),
        ...(options.logger !== undefined ? { logger: options.logger } : {}),
      });
    });
    balancerStarted.catch((err: unknown) => options.logger?.error(`the load balancer did not start: ${(err as Error).message}`));
    const meshStarted = opened.sandboxesRestored.then(async () => {
      mesh = await IngressMesh.start({
        localStore: store,
        ...(globalStore !== undefined ? { globalStore } : {}),
        hostNetnsPath: options.hostNetnsPath ?? currentNetnsPath(),
        kernel: {
          applyNft,
          ipBatch,
          rulePriorities,
          enableForwarding: (netnsPath) => setSysctl(netnsPath, 'net.ipv4.ip_forward', '1'),
          forgetFlows: (netnsPath, address) => deleteTrackedFlows(netnsPath, undefined, address),
        },
        actions: opened.meshActions(),
        ...(reachability !== undefined ? { reachability } : {}),
        ...(options.logger !== undefined ? { logger: options.logger } : {}),
      });
    });
    meshStarted.catch((err: unknown) => options.logger?.error(`the routing mesh did not start: ${(err as Error).message}`));
    return {
      controller: opened,
      get dns() {
        return dns;
      },
      get balancer() {
        return balancer;
      },
      get mesh() {
        return mesh;
      },
      ready: Promise.all([opened.restored, dnsStarted, balancerStarted, meshStarted]).then(() => undefined),
      routedSubnets: routed,
      stores: { local: store, ...(globalStore !== undefined ? { cluster: globalStore } : {}) },
      ...(vtep !== undefined ? { vtep } : {}),
      ...(esp !== undefined ? { esp } : {}),
      ...(options.metricsAddress !== undefined ? { metricsAddress: options.metricsAddress } : {}),
      async close() {
        await dnsStarted.catch(() => undefined);
        await dns?.stop();
        await balancerStarted.catch(() => undefined);
        await balancer?.stop();
        await meshStarted.catch(() => undefined);
        await mesh?.stop();
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
