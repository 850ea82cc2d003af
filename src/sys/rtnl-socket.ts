/**
 * rtnetlink (links, addresses, routes) through the `netlink` package, on the
 * calling thread. An `RtnlSocket` acts in one network namespace: its socket
 * is opened inside that namespace and stays bound to it. Kernel errors
 * become NetctlErrors that name the link, address or route concerned.
 *
 * The kernel answers a netlink request inside sendmsg(2), which can take
 * tens of milliseconds (deleting a veth waits for an RCU grace period), so
 * the daemon runs these sockets on the rtnl thread (rtnl.ts), never on the
 * event loop.
 */
import { closeSync, openSync } from 'node:fs';
import { isIPv4, isIPv6 } from 'node:net';
import { AttrStream, FlagsNew, createRtNetlink, ifla, rt } from 'netlink';
import type { RtNetlinkSocket, StreamData } from 'netlink';
import { Conflict, Forbidden, InvalidArgument, NetctlError, NotFound } from '../errors.js';
import { withNetns } from './netns.js';

export interface LinkInfo {
  index: number;
  name: string;
  /** IFLA_INFO_KIND: 'bridge', 'veth', 'tun'…; absent for plain devices such as lo. */
  kind?: string;
  mtu: number;
  up: boolean;
  /** aa:bb:cc:dd:ee:ff, or '' for links without a hardware address. */
  mac: string;
  masterIndex?: number;
}

export interface AddressInfo {
  ifName: string;
  cidr: string;
  family: 4 | 6;
}

export interface RouteInfo {
  /** 'default' or a CIDR. */
  dst: string;
  gateway?: string;
  ifName?: string;
  family: 4 | 6;
}

export interface RouteSpec {
  /** 'default' (IPv4 unless the gateway is IPv6), '::/0', or a CIDR. */
  dst: string;
  gateway?: string;
  ifName?: string;
}

const AF_INET = 2;
const AF_INET6 = 10;
const MAIN_TABLE = 254;
const IFNAMSIZ = 16;
const VETH_INFO_PEER = 1;
const CREATE_EXCL = FlagsNew.CREATE | FlagsNew.EXCL;

export class RtnlSocket {
  private constructor(private readonly socket: RtNetlinkSocket) {}

  /** Opens an rtnetlink socket in the namespace at `netnsPath` (default: the caller's current one). */
  static async open(netnsPath?: string): Promise<RtnlSocket> {
    const socket = netnsPath === undefined ? createRtNetlink() : withNetns(netnsPath, () => createRtNetlink());
    return new RtnlSocket(socket);
  }

  close(): void {
    this.socket.socket.close();
  }

  async listLinks(): Promise<LinkInfo[]> {
    const messages = await this.call('list links', () => this.socket.getLinks());
    return messages.map(toLinkInfo);
  }

  async getLink(name: string): Promise<LinkInfo | undefined> {
    checkIfName(name);
    try {
      const [message] = await this.socket.getLink({}, { ifname: name });
      return message === undefined ? undefined : toLinkInfo(message);
    } catch (err) {
      if (errnoName(err) === 'ENODEV') return undefined;
      throw kernelError(err, `get link ${name}`);
    }
  }

  async createBridge(name: string, opts: { mtu?: number } = {}): Promise<void> {
    checkIfName(name);
    const attrs: ifla.LinkAttrs = { ifname: name, linkinfo: encode(ifla.formatInfo({ kind: 'bridge' })) };
    if (opts.mtu !== undefined) attrs.mtu = opts.mtu;
    await this.call(`create bridge ${name}`, () => this.socket.newLink({}, attrs, { flags: CREATE_EXCL }));
  }

  /**
   * Creates a veth pair. With `peerNetnsPath` the peer is created directly in
   * that namespace (IFLA_NET_NS_FD on the peer), so its name is checked there.
   */
  async createVeth(
    name: string,
    peerName: string,
    opts: { mtu?: number; peerNetnsPath?: string } = {},
  ): Promise<void> {
    checkIfName(name);
    checkIfName(peerName);
    const nsFd = opts.peerNetnsPath === undefined ? undefined : openNetnsFd(opts.peerNetnsPath);
    try {
      const peerAttrs: ifla.LinkAttrs = { ifname: peerName };
      if (opts.mtu !== undefined) peerAttrs.mtu = opts.mtu;
      if (nsFd !== undefined) peerAttrs.netNsFd = nsFd;
      // VETH_INFO_PEER carries a struct ifinfomsg followed by the peer's attributes.
      const peer = Buffer.concat([rt.formatLink({}), encode(ifla.formatLinkAttrs(peerAttrs))]);
      const data = encode((out) => out.push(VETH_INFO_PEER, peer));
      const attrs: ifla.LinkAttrs = { ifname: name, linkinfo: encode(ifla.formatInfo({ kind: 'veth', data })) };
      if (opts.mtu !== undefined) attrs.mtu = opts.mtu;
      await this.call(`create veth ${name} (peer ${peerName})`, () =>
        this.socket.newLink({}, attrs, { flags: CREATE_EXCL }),
      );
    } finally {
      if (nsFd !== undefined) closeSync(nsFd);
    }
  }

  /** Deletes a link (a veth takes its peer with it); a missing link is not an error. */
  async deleteLink(name: string): Promise<void> {
    checkIfName(name);
    try {
      await this.socket.delLink({}, { ifname: name });
    } catch (err) {
      if (errnoName(err) === 'ENODEV') return;
      throw kernelError(err, `delete link ${name}`);
    }
  }

  async setUp(name: string): Promise<void> {
    await this.setLink(name, 'set up', { flags: { up: true }, change: { up: true } }, {});
  }

  async setDown(name: string): Promise<void> {
    await this.setLink(name, 'set down', { flags: {}, change: { up: true } }, {});
  }

  async setMtu(name: string, mtu: number): Promise<void> {
    await this.setLink(name, `set mtu ${mtu} on`, {}, { mtu });
  }

  /** Enslaves the link to a bridge, or releases it with `null`. */
  async setMaster(name: string, bridgeName: string | null): Promise<void> {
    const master = bridgeName === null ? 0 : await this.indexOf(bridgeName);
    await this.setLink(name, `set master ${bridgeName ?? 'none'} on`, {}, { master });
  }

  /**
   * Renames a link. Set it down first: kernels before 6.2 refuse to rename a
   * link that is up (Forbidden), and a sandbox's interface is renamed before
   * it is brought up anyway.
   */
  async rename(name: string, newName: string): Promise<void> {
    checkIfName(newName);
    await this.setLink(name, `rename to ${newName}`, {}, { ifname: newName });
  }

  async setMac(name: string, mac: string): Promise<void> {
    await this.setLink(name, `set address ${mac} on`, {}, { address: parseMac(mac) });
  }

  /** Moves the link into another namespace; it keeps its name, and is down and without addresses there. */
  async moveToNetns(name: string, netnsPath: string): Promise<void> {
    const index = await this.indexOf(name);
    const nsFd = openNetnsFd(netnsPath);
    try {
      await this.call(`move link ${name} to ${netnsPath}`, () => this.socket.setLink({ index }, { netNsFd: nsFd }));
    } finally {
      closeSync(nsFd);
    }
  }

  /**
   * Bridge port isolation (IFLA_BRPORT_ISOLATED): isolated ports cannot talk
   * to each other, only to non-isolated ports and the bridge itself. Sent as
   * bridge slave data, like `ip link set NAME type bridge_slave isolated on`.
   */
  async setBridgePortIsolated(name: string, isolated: boolean): Promise<void> {
    const index = await this.indexOf(name);
    const slaveData = encode(ifla.formatBridgePort({ isolated: Buffer.from([isolated ? 1 : 0]) }));
    const linkinfo = encode(ifla.formatInfo({ slaveKind: 'bridge', slaveData }));
    await this.call(`set isolated ${isolated ? 'on' : 'off'} on ${name}`, () =>
      this.socket.newLink({ index }, { linkinfo }),
    );
  }

  /** Adds an IPv4 or IPv6 address; IPv6 ones skip duplicate address detection so they are usable at once. */
  async addAddress(ifName: string, cidr: string): Promise<void> {
    const prefix = parseCidr(cidr);
    const index = await this.indexOf(ifName);
    const flags: rt.AddressFlags = prefix.family === 6 ? { nodad: true } : {};
    const attrs: rt.AddressAttrs = { local: prefix.bytes, address: prefix.bytes, flags };
    if (prefix.family === 4 && prefix.length < 31) attrs.broadcast = broadcastOf(prefix.bytes, prefix.length);
    await this.call(`add address ${cidr} to ${ifName}`, () =>
      this.socket.newAddress(
        { family: afOf(prefix.family), prefixlen: prefix.length, index, flags },
        attrs,
        { flags: CREATE_EXCL },
      ),
    );
  }

  /** Removes an address; NotFound when the link does not have it. */
  async deleteAddress(ifName: string, cidr: string): Promise<void> {
    const prefix = parseCidr(cidr);
    const index = await this.indexOf(ifName);
    await this.call(`delete address ${cidr} from ${ifName}`, () =>
      this.socket.delAddress(
        { family: afOf(prefix.family), prefixlen: prefix.length, index },
        { local: prefix.bytes, address: prefix.bytes },
      ),
    );
  }

  async listAddresses(ifName?: string): Promise<AddressInfo[]> {
    const index = ifName === undefined ? undefined : await this.indexOf(ifName);
    const names = await this.linkNames();
    const messages = await this.call('list addresses', () => this.socket.getAddresses());
    const result: AddressInfo[] = [];
    for (const { data, attrs } of messages) {
      if (index !== undefined && data.index !== index) continue;
      const family = familyOf(data.family);
      // For IPv4 IFA_LOCAL is the interface's own address (IFA_ADDRESS is the peer on point-to-point links).
      const bytes = family === 4 ? (attrs.local ?? attrs.address) : attrs.address;
      if (family === undefined || bytes === undefined || data.index === undefined) continue;
      result.push({ ifName: names.get(data.index) ?? '', cidr: `${formatIp(bytes)}/${data.prefixlen ?? 0}`, family });
    }
    return result;
  }

  /** Adds a route to the main table: via `gateway`, or directly on `ifName` (scope link) without one. */
  async addRoute(route: RouteSpec): Promise<void> {
    const { message, attrs } = await this.routeMessage(route, false);
    await this.call(`add route ${describeRoute(route)}`, () =>
      this.socket.newRoute(message, attrs, { flags: CREATE_EXCL }),
    );
  }

  /** Deletes a route from the main table; NotFound when there is no such route. */
  async deleteRoute(route: RouteSpec): Promise<void> {
    const { message, attrs } = await this.routeMessage(route, true);
    await this.call(`delete route ${describeRoute(route)}`, () => this.socket.delRoute(message, attrs));
  }

  /** Unicast routes of the main table, both families unless one is given. */
  async listRoutes(family?: 4 | 6): Promise<RouteInfo[]> {
    const names = await this.linkNames();
    const request: rt.Route = family === undefined ? {} : { family: afOf(family) };
    const messages = await this.call('list routes', () => this.socket.getRoutes(request));
    const result: RouteInfo[] = [];
    for (const { data, attrs } of messages) {
      const routeFamily = familyOf(data.family);
      if (routeFamily === undefined || (attrs.table ?? data.table) !== MAIN_TABLE) continue;
      if (data.type !== undefined && data.type !== rt.RouteType.UNICAST && data.type !== 'UNICAST') continue;
      const dstLen = data.dstLen ?? 0;
      const info: RouteInfo = {
        dst: dstLen === 0 || attrs.dst === undefined ? 'default' : `${formatIp(attrs.dst)}/${dstLen}`,
        family: routeFamily,
      };
      if (attrs.gateway !== undefined) info.gateway = formatIp(attrs.gateway);
      const ifName = attrs.oif === undefined ? undefined : names.get(attrs.oif);
      if (ifName !== undefined) info.ifName = ifName;
      result.push(info);
    }
    return result;
  }

  private async routeMessage(
    route: RouteSpec,
    forDelete: boolean,
  ): Promise<{ message: rt.Route; attrs: rt.RouteAttrs }> {
    const gateway = route.gateway === undefined ? undefined : parseIp(route.gateway);
    let dst: { family: 4 | 6; bytes: Buffer; length: number };
    if (route.dst === 'default') {
      const family = gateway?.family ?? 4;
      dst = { family, bytes: Buffer.alloc(family === 4 ? 4 : 16), length: 0 };
    } else {
      dst = parseCidr(route.dst);
    }
    if (gateway !== undefined && gateway.family !== dst.family) {
      throw new InvalidArgument(`route ${describeRoute(route)}: gateway and destination differ in IP version`);
    }
    if (gateway === undefined && route.ifName === undefined) {
      throw new InvalidArgument(`route ${describeRoute(route)}: needs a gateway or an interface`);
    }
    const message: rt.Route = {
      family: afOf(dst.family),
      dstLen: dst.length,
      table: MAIN_TABLE,
      // As iproute2: scope NOWHERE on delete matches any scope.
      scope: forDelete ? rt.RouteScope.NOWHERE : gateway === undefined ? rt.RouteScope.LINK : rt.RouteScope.UNIVERSE,
    };
    if (!forDelete) {
      message.protocol = rt.RouteProtocol.BOOT;
      message.type = rt.RouteType.UNICAST;
    }
    const attrs: rt.RouteAttrs = {};
    if (dst.length > 0) attrs.dst = dst.bytes;
    if (gateway !== undefined) attrs.gateway = gateway.bytes;
    if (route.ifName !== undefined) attrs.oif = await this.indexOf(route.ifName);
    return { message, attrs };
  }

  private async setLink(name: string, what: string, data: rt.Link, attrs: ifla.LinkAttrs): Promise<void> {
    const index = await this.indexOf(name);
    await this.call(`${what} ${name}`, () => this.socket.setLink({ ...data, index }, attrs));
  }

  private async indexOf(name: string): Promise<number> {
    const link = await this.getLink(name);
    if (link === undefined) throw new NotFound(`link ${name} not found`);
    return link.index;
  }

  private async linkNames(): Promise<Map<number, string>> {
    return new Map((await this.listLinks()).map((link) => [link.index, link.name]));
  }

  private async call<T>(what: string, request: () => Promise<T>): Promise<T> {
    try {
      return await request();
    } catch (err) {
      throw kernelError(err, what);
    }
  }
}

function toLinkInfo({ data, attrs }: { data: rt.Link; attrs: ifla.LinkAttrs }): LinkInfo {
  const info: LinkInfo = {
    index: data.index ?? 0,
    name: attrs.ifname ?? '',
    mtu: attrs.mtu ?? 0,
    up: data.flags?.up === true,
    mac: attrs.address === undefined ? '' : formatMac(attrs.address),
  };
  const kind = attrs.linkinfo === undefined ? undefined : ifla.parseInfo(attrs.linkinfo).kind;
  if (kind !== undefined) info.kind = kind;
  if (attrs.master !== undefined) info.masterIndex = attrs.master;
  return info;
}

/** The `netlink` package reports kernel errors as `Error('Request rejected: ENAME')`. */
function errnoName(err: unknown): string | undefined {
  if (!(err instanceof Error)) return undefined;
  const code = (err as NodeJS.ErrnoException).code;
  if (typeof code === 'string') return code;
  return /^Request rejected: (E[A-Z0-9]+)$/.exec(err.message)?.[1];
}

function kernelError(err: unknown, what: string): NetctlError {
  if (err instanceof NetctlError) return err;
  const name = errnoName(err);
  const message = `${what}: ${name ?? String(err)}`;
  switch (name) {
    case 'EEXIST':
      return new Conflict(`${what}: already exists`);
    case 'ENODEV':
    case 'ENOENT':
    case 'ESRCH':
    case 'EADDRNOTAVAIL':
      return new NotFound(`${what}: not found (${name})`);
    case 'EINVAL':
    case 'ERANGE':
    case 'ENETUNREACH':
      return new InvalidArgument(message, { cause: err });
    case 'EBUSY':
      return new Forbidden(`${what}: device or resource busy`);
    default:
      return new NetctlError('Internal', message, { cause: err });
  }
}

function encode(data: StreamData): Buffer {
  const stream = new AttrStream();
  stream.emit(data);
  return Buffer.concat(stream.bufs);
}

function checkIfName(name: string): void {
  if (name === '' || Buffer.byteLength(name) >= IFNAMSIZ || /[\s/:]/.test(name) || name === '.' || name === '..') {
    throw new InvalidArgument(`invalid interface name "${name}"`);
  }
}

function openNetnsFd(path: string): number {
  try {
    return openSync(path, 'r');
  } catch (err) {
    throw new NotFound(`network namespace ${path} not found (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
  }
}

function afOf(family: 4 | 6): number {
  return family === 4 ? AF_INET : AF_INET6;
}

function familyOf(af: number | undefined): 4 | 6 | undefined {
  return af === AF_INET ? 4 : af === AF_INET6 ? 6 : undefined;
}

function describeRoute(route: RouteSpec): string {
  return [route.dst, route.gateway && `via ${route.gateway}`, route.ifName && `dev ${route.ifName}`]
    .filter(Boolean)
    .join(' ');
}

function parseMac(mac: string): Buffer {
  if (!/^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/.test(mac)) throw new InvalidArgument(`invalid MAC address "${mac}"`);
  return Buffer.from(mac.replaceAll(':', ''), 'hex');
}

function formatMac(bytes: Buffer): string {
  return [...bytes].map((byte) => byte.toString(16).padStart(2, '0')).join(':');
}

function parseIp(text: string): { family: 4 | 6; bytes: Buffer } {
  if (isIPv4(text)) return { family: 4, bytes: Buffer.from(text.split('.').map(Number)) };
  if (!isIPv6(text)) throw new InvalidArgument(`invalid IP address "${text}"`);
  // The URL parser canonicalises IPv6 (embedded IPv4 becomes hex groups), leaving at most one '::'.
  const canonical = new URL(`http://[${text}]`).hostname.slice(1, -1);
  const [head = '', tail] = canonical.split('::');
  const headGroups = head === '' ? [] : head.split(':');
  const tailGroups = tail === undefined || tail === '' ? [] : tail.split(':');
  const zeros = tail === undefined ? [] : Array<string>(8 - headGroups.length - tailGroups.length).fill('0');
  const bytes = Buffer.alloc(16);
  [...headGroups, ...zeros, ...tailGroups].forEach((group, i) => bytes.writeUInt16BE(Number.parseInt(group, 16), i * 2));
  return { family: 6, bytes };
}

function formatIp(bytes: Buffer): string {
  if (bytes.length === 4) return [...bytes].join('.');
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(bytes.readUInt16BE(i).toString(16));
  return new URL(`http://[${groups.join(':')}]`).hostname.slice(1, -1);
}

function parseCidr(cidr: string): { family: 4 | 6; bytes: Buffer; length: number } {
  const slash = cidr.lastIndexOf('/');
  if (slash < 0) throw new InvalidArgument(`invalid CIDR "${cidr}": missing prefix length`);
  const { family, bytes } = parseIp(cidr.slice(0, slash));
  const lengthText = cidr.slice(slash + 1);
  const length = Number(lengthText);
  if (!/^\d{1,3}$/.test(lengthText) || length > bytes.length * 8) {
    throw new InvalidArgument(`invalid CIDR "${cidr}": bad prefix length`);
  }
  return { family, bytes, length };
}

function broadcastOf(address: Buffer, length: number): Buffer {
  const value = (address.readUInt32BE(0) | (0xffffffff >>> length)) >>> 0;
  const out = Buffer.alloc(4);
  out.writeUInt32BE(value);
  return out;
}
