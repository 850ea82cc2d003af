/**
 * A double of the drivers' kernel port: it keeps links and addresses per
 * namespace, as much as the drivers read back, and records every change it
 * is asked for, one line per call ("NETNS method args"), so a test asserts
 * what a driver asked the kernel to do. Queries are not recorded.
 */
import type { DriverKernel, Links } from '../../src/drivers/kernel.js';
import { NetctlError } from '../../src/errors.js';
import type { EndpointRecord, SandboxRecord } from '../../src/records.js';
import type { AddressInfo, LinkInfo, RouteInfo, RouteSpec } from '../../src/sys/rtnl.js';
import type { TapOptions } from '../../src/sys/tap.js';
import { MemoryFramePort } from '../../src/vxlan/memory.js';

interface Namespace {
  readonly links: Map<string, LinkInfo>;
  addresses: AddressInfo[];
  routes: RouteInfo[];
}

export class RecordingKernel implements DriverKernel {
  readonly calls: string[] = [];
  /** Every nft script applied, whole (calls shows its first line). */
  readonly nftScripts: string[] = [];
  /** Every TAP opened, by name, with the port the driver got. */
  readonly taps = new Map<string, MemoryFramePort>();
  /** Methods that fail (after being recorded) with an Internal error naming them. */
  readonly failing = new Set<string>();
  readonly #namespaces = new Map<string, Namespace>();
  #nextIndex = 1;

  /** Namespaces that exist before the driver starts (a host's, a sandbox's). */
  constructor(existing: readonly string[] = []) {
    for (const path of existing) this.#namespace(path);
  }

  link(netnsPath: string, name: string): LinkInfo | undefined {
    return this.#namespaces.get(netnsPath)?.links.get(name);
  }

  #namespace(path: string): Namespace {
    let namespace = this.#namespaces.get(path);
    if (namespace === undefined) {
      namespace = { links: new Map(), addresses: [], routes: [] };
      this.#namespaces.set(path, namespace);
    }
    return namespace;
  }

  #record(netnsPath: string, method: string, ...args: unknown[]): void {
    const shown = args.map((arg) => (typeof arg === 'string' ? arg : JSON.stringify(arg)));
    this.calls.push([netnsPath, method, ...shown].join(' '));
    if (this.failing.has(method)) throw new NetctlError('Internal', `${method} failed`);
  }

  #addLink(netnsPath: string, name: string, kind: string, mtu = 1500): void {
    this.#namespace(netnsPath).links.set(name, { index: this.#nextIndex++, name, kind, mtu, up: false, mac: '' });
  }

  #change(netnsPath: string, name: string, change: Partial<LinkInfo>): void {
    const link = this.link(netnsPath, name);
    if (link === undefined) throw new NetctlError('NotFound', `no link ${name} in ${netnsPath}`);
    Object.assign(link, change);
  }

  async openLinks(netnsPath: string): Promise<Links> {
    const namespace = this.#namespace(netnsPath);
    const record = (method: string, ...args: unknown[]) => this.#record(netnsPath, method, ...args);
    return {
      close: () => undefined,
      getLink: async (name) => namespace.links.get(name),
      createBridge: async (name, opts = {}) => {
        record('createBridge', name, opts);
        this.#addLink(netnsPath, name, 'bridge', opts.mtu);
      },
      createVeth: async (name, peerName, opts = {}) => {
        record('createVeth', name, peerName, opts);
        this.#addLink(netnsPath, name, 'veth', opts.mtu);
        this.#addLink(opts.peerNetnsPath ?? netnsPath, peerName, 'veth', opts.mtu);
      },
      deleteLink: async (name) => {
        record('deleteLink', name);
        namespace.links.delete(name);
        namespace.addresses = namespace.addresses.filter((a) => a.ifName !== name);
      },
      setUp: async (name) => {
        record('setUp', name);
        this.#change(netnsPath, name, { up: true });
      },
      setMtu: async (name, mtu) => {
        record('setMtu', name, mtu);
        this.#change(netnsPath, name, { mtu });
      },
      setMaster: async (name, bridgeName) => {
        record('setMaster', name, bridgeName);
        const master = bridgeName === null ? undefined : namespace.links.get(bridgeName)?.index;
        this.#change(netnsPath, name, master === undefined ? {} : { masterIndex: master });
      },
      rename: async (name, newName) => {
        record('rename', name, newName);
        const link = namespace.links.get(name);
        if (link === undefined) throw new NetctlError('NotFound', `no link ${name} in ${netnsPath}`);
        namespace.links.delete(name);
        namespace.links.set(newName, { ...link, name: newName });
      },
      setMac: async (name, mac) => {
        record('setMac', name, mac);
        this.#change(netnsPath, name, { mac });
      },
      setBridgePortIsolated: async (name, isolated) => record('setBridgePortIsolated', name, isolated),
      addAddress: async (ifName, cidr) => {
        record('addAddress', ifName, cidr);
        namespace.addresses.push({ ifName, cidr, family: cidr.includes(':') ? 6 : 4 });
      },
      listAddresses: async (ifName) => namespace.addresses.filter((a) => ifName === undefined || a.ifName === ifName),
      addRoute: async (route: RouteSpec) => {
        record('addRoute', route);
        const family = route.gateway?.includes(':') === true ? 6 : 4;
        namespace.routes.push({ ...route, family });
      },
      deleteRoute: async (route: RouteSpec) => {
        record('deleteRoute', route);
        namespace.routes = namespace.routes.filter((r) => r.dst !== route.dst || r.ifName !== route.ifName);
      },
      listRoutes: async (family) => namespace.routes.filter((r) => family === undefined || r.family === family),
    };
  }

  openTap(name: string, options: TapOptions): MemoryFramePort {
    const netnsPath = options.netnsPath ?? 'self';
    this.#record(netnsPath, 'openTap', name, options);
    this.#addLink(netnsPath, name, 'tun');
    const port = new MemoryFramePort({ vnetHdr: options.vnetHdr ?? false });
    this.taps.set(name, port);
    return port;
  }

  async setSysctl(netnsPath: string, key: string, value: string): Promise<void> {
    this.#record(netnsPath, 'setSysctl', key, value);
  }

  async applyNft(netnsPath: string, script: string): Promise<void> {
    this.nftScripts.push(script);
    this.#record(netnsPath, 'applyNft', script.split('\n')[0] ?? '');
  }

  async deleteNftTable(netnsPath: string, table: string): Promise<void> {
    this.#record(netnsPath, 'deleteNftTable', table);
  }

  async createNamedNetns(name: string): Promise<string> {
    const path = `/var/run/netns/${name}`;
    this.#record(path, 'createNamedNetns');
    this.#namespace(path);
    return path;
  }

  async removeNamedNetns(name: string): Promise<void> {
    const path = `/var/run/netns/${name}`;
    this.#record(path, 'removeNamedNetns');
    this.#namespaces.delete(path);
  }

  async netnsExists(path: string): Promise<boolean> {
    return this.#namespaces.has(path);
  }
}

/** The endpoint the double tests join (its veth is vethe1e2e3e), and its sandbox at `netnsPath`. */
export function joining(
  networkId: string,
  addresses: { readonly macAddress: string; readonly ipv4Address: string },
  netnsPath: string,
): { endpoint: EndpointRecord; sandbox: SandboxRecord } {
  return {
    endpoint: { id: 'e1e2e3e4e5e6e7e8', name: 'ep', networkId, ...addresses, aliases: [] },
    sandbox: { id: 's1', name: 'sandbox', netnsPath, ownsNetns: true, created: '', labels: {} },
  };
}
