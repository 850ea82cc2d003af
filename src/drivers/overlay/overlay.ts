/**
 * The overlay driver: global networks spanning every host that shares the
 * cluster store, carried between hosts by netctl's user-space VTEP.
 *
 * On each host a network that has local endpoints gets a namespace of its
 * own (like Docker's `1-<id>` namespace) holding a bridge, the sandboxes'
 * veths, and a TAP port owned by the VTEP. That namespace has no address,
 * so the network is unreachable from the host and from other networks.
 * It is made when the first local endpoint joins and removed when the last
 * leaves. Every local endpoint is announced in the cluster store under a key
 * tied to this host's lease; every host watches those keys and programs its
 * VTEP's peer table from them.
 */
import { hostname } from 'node:os';
import type { JoinRequest, LeaveRequest, NetworkDriver, NetworkPeer, NetworkSpec, Reservation } from '../../cnm/driver.js';
import { Conflict, InvalidArgument, NetctlError, NotFound } from '../../errors.js';
import { type NetworkRecord, bareAddress } from '../../records.js';
import { followPrefix } from '../../store/follow.js';
import type { Store, Watch } from '../../store/types.js';
import { TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6 } from '../../sys/tap.js';
import { formatRtt } from '../../vxlan/liveness.js';
import type { PeerLiveness } from '../../vxlan/liveness.js';
import { VXLAN_OVERHEAD, encryptedMtu } from '../../vxlan/mtu.js';
import { MAX_FRAME_LENGTH } from '../../vxlan/vtep.js';
import type { Vtep } from '../../vxlan/vtep.js';
import { ETHERNET_HEADER_LEN } from '../../wire/ethernet.js';
import { NetworkConfigs } from '../configs.js';
import { type DriverKernel, systemKernel, withLinks } from '../kernel.js';
import { tearDown } from '../teardown.js';
import { plugHandoff, plugVeth, unplugVeth } from '../veth.js';
import { currentNetnsPath } from '../../sys/netns.js';
import { type Logger, consoleWarnings } from '../../log.js';
import type { PublishedKeys } from '../../crypto/keyring.js';
import { FIRST_VNI, MAX_VNI, MTU_OPTION, OVERLAY_MTU, OVERLAY_OPTIONS, type OverlayConfig, VXLANID_OPTION, overlayConfig } from './config.js';
import { type EncryptionSetup, OverlayEncryption, encryptionUnavailable } from './encryption.js';

const VNI_PREFIX = 'overlay/vni/';
const PEER_PREFIX = 'overlay/peers/';
/** One record per host, `overlay/hosts/ADDRESS`, tied to its lease: the overlay MTU its underlay allows, and its public keys. */
const HOST_PREFIX = 'overlay/hosts/';
/**
 * The TAP takes any frame the VTEP can carry, so that a frame too big for
 * the path reaches the VTEP, which answers it as a router, instead of being
 * dropped without a word by the bridge.
 */
const TAP_MTU = MAX_FRAME_LENGTH - ETHERNET_HEADER_LEN;
const BRIDGE = 'br0';
const TAP = 'vtep0';

/** A host as it announces itself to the others. */
export interface HostRecord {
  readonly host: string;
  /** The overlay MTU its underlay allows (underlay MTU less VXLAN_OVERHEAD). */
  readonly mtu: number;
  /** Its long-term and current ephemeral public keys, when it can encrypt. */
  readonly esp?: PublishedKeys;
}

/** A local endpoint as announced to the other hosts. */
export interface PeerRecord {
  readonly vni: number;
  readonly mac: string;
  readonly ipv4?: string;
  readonly ipv6?: string;
  /** Underlay address of the host's VTEP. */
  readonly vtep: string;
  readonly host: string;
  /**
   * Set on the put that comes just before an explicit leave deletes the
   * record: watchers remove the endpoint at once. A delete without it means
   * the host lost its lease, not that the endpoint went (see forgetPeer).
   */
  readonly leaving?: true;
}

export interface OverlayDriverOptions {
  /** The cluster store shared by every host. */
  readonly store: Store;
  /** The host's VTEP; the driver owns it from then on and stops it on close. */
  readonly vtep: Vtep;
  /** This host's underlay address: where other VTEPs send its traffic. */
  readonly advertiseAddress: string;
  /** Name shown in `Peers`; defaults to the host name. */
  readonly hostName?: string;
  /**
   * The overlay MTU this host's underlay allows: the MTU of the interface
   * holding `advertiseAddress` less VXLAN_OVERHEAD (default OVERLAY_MTU).
   * The VTEP must have been given the same.
   */
  readonly mtu?: number;
  readonly logger?: Logger;
  /** What the driver does to the kernel goes through this; default the real one. */
  readonly kernel?: DriverKernel;
  /** What encrypted networks need (an ESP table on the VTEP's socket, the host's key pair), or why there are none. Default: none. */
  readonly encryption?: EncryptionSetup;
}

interface ActiveNetwork {
  readonly vni: number;
  readonly netnsName: string;
  readonly netnsPath: string;
  readonly endpoints: Set<string>;
  readonly encrypted: boolean;
}

function peerKey(networkId: string, endpointId: string): string {
  return `${PEER_PREFIX}${networkId}/${endpointId}`;
}

export class OverlayDriver implements NetworkDriver {
  readonly name = 'overlay';
  readonly scope = 'global' as const;
  readonly usesIpam = true;
  readonly options = OVERLAY_OPTIONS;
  readonly providesDefaultRoute = false;
  readonly needsGatewayBridge = true;
  private readonly store: Store;
  private readonly vtep: Vtep;
  private readonly advertiseAddress: string;
  private readonly hostName: string;
  private readonly logger: Logger;
  private readonly kernel: DriverKernel;
  private readonly configs = new NetworkConfigs(overlayConfig);
  private closed = false;
  private readonly active = new Map<string, ActiveNetwork>();
  /**
   * Peer key → the record it programmed into the VTEP, to undo it on delete and to list peers;
   * `lost` once the key went without a leave while the host's VTEP still answered probes.
   */
  private readonly programmed = new Map<string, PeerRecord & { networkId: string; lost?: true }>();
  private watch: Watch | undefined;
  private readonly mtu: number;
  /** Every host's announced overlay MTU, by underlay address: new sandboxes get the smallest. */
  private readonly hostMtus = new Map<string, number>();
  private hostWatch: Watch | undefined;
  private unsubscribeLiveness: (() => void) | undefined;
  private readonly reachabilityListeners = new Set<() => void>();
  private readonly encryptionSetup: EncryptionSetup | undefined;
  private encryption: OverlayEncryption | undefined;

  private constructor(options: OverlayDriverOptions) {
    this.store = options.store;
    this.vtep = options.vtep;
    this.advertiseAddress = options.advertiseAddress;
    this.hostName = options.hostName ?? hostname();
    this.mtu = options.mtu ?? OVERLAY_MTU;
    this.logger = options.logger ?? consoleWarnings;
    this.kernel = options.kernel ?? systemKernel;
    this.encryptionSetup = options.encryption;
  }

  /** Starts following the peer records of every host; the VTEP's table is filled before this resolves. */
  static async start(options: OverlayDriverOptions): Promise<OverlayDriver> {
    const driver = new OverlayDriver(options);
    driver.unsubscribeLiveness = driver.vtep.onPeerStateChange((peer) => driver.peerStateChanged(peer));
    await driver.followPeers();
    const setup = driver.encryptionSetup;
    if (setup !== undefined && 'table' in setup) {
      // The ring publishes the host record with its keys, now and at each renewal.
      driver.encryption = await OverlayEncryption.start(setup, {
        self: driver.advertiseAddress,
        vtep: driver.vtep,
        publish: (keys) => driver.publishHost(keys),
        logger: driver.logger,
      });
    } else {
      await driver.publishHost(undefined);
    }
    // After the key ring starts: every other host's keys found reach it.
    await driver.followHosts();
    return driver;
  }

  private async publishHost(esp: PublishedKeys | undefined): Promise<void> {
    const record: HostRecord = { host: this.hostName, mtu: this.mtu, ...(esp !== undefined ? { esp } : {}) };
    await this.store.txn({ put: [{ key: `${HOST_PREFIX}${this.advertiseAddress}`, value: JSON.stringify(record), ephemeral: true }] });
  }

  /** Renews this host's keys of encrypted networks now; InvalidArgument when it has none. */
  async rotateKeys(): Promise<{ epoch: number; rotatedAt: string }> {
    if (this.encryption === undefined) throw this.noEncryption();
    return this.encryption.rotate();
  }

  private noEncryption(): InvalidArgument {
    const setup = this.encryptionSetup;
    return encryptionUnavailable(setup !== undefined && 'unavailable' in setup ? setup.unavailable : 'the overlay driver was started without an ESP table');
  }

  /** Checks the options; an MTU option above what every known host's underlay allows is refused. */
  validate(network: NetworkSpec): void {
    const config = this.configs.validate(network);
    if (config.encrypted && this.encryption === undefined) throw this.noEncryption();
    const allowed = this.allowedMtu(config);
    if (config.mtu !== undefined && config.mtu > allowed) {
      const overhead = config.encrypted ? 'VXLAN and ESP headers' : `${VXLAN_OVERHEAD} bytes of VXLAN headers`;
      throw new InvalidArgument(
        `MTU ${config.mtu} for option ${MTU_OPTION} is more than the underlay allows: at most ${allowed} ` +
          `(the smallest underlay MTU of the cluster's hosts less ${overhead})`,
      );
    }
  }

  /** The largest MTU the network's sandboxes can have on every host known now: sealing takes room on an encrypted one. */
  private allowedMtu(config: OverlayConfig): number {
    const smallest = this.smallestMtu();
    return config.encrypted ? encryptedMtu(smallest) : smallest;
  }

  /** The overlay MTU of every host known now: this one's, and the smallest any other announced. */
  private smallestMtu(): number {
    return Math.min(this.mtu, ...this.hostMtus.values());
  }

  /** A new sandbox's MTU: what the option asks, at most what every host known now allows. */
  private sandboxMtu(config: OverlayConfig): number {
    return Math.min(config.mtu ?? Number.POSITIVE_INFINITY, this.allowedMtu(config));
  }

  /** Picks the VNI: the one asked for if free, else the lowest free from 4096 up. */
  async reserve(network: NetworkSpec, store: Store): Promise<Reservation> {
    const config = this.configs.validated(network);
    const taken = new Map((await store.list(VNI_PREFIX)).map((kv) => [Number(kv.key.slice(VNI_PREFIX.length)), kv.value]));
    let vni = config.vni;
    if (vni !== undefined) {
      if (taken.has(vni)) throw new Conflict(`VXLAN ID ${vni} is already used by another overlay network`);
    } else {
      vni = FIRST_VNI;
      while (taken.has(vni)) vni++;
      if (vni > MAX_VNI) throw new Conflict('no free VXLAN ID left');
    }
    this.configs.refine(network.id, { ...config, vni });
    return { options: { [VXLANID_OPTION]: String(vni) }, keys: [`${VNI_PREFIX}${vni}`] };
  }

  /** Nothing to do until an endpoint of this host joins. */
  async createNetwork(): Promise<void> {}

  async deleteNetwork(network: NetworkRecord): Promise<void> {
    await this.deactivate(network.id);
  }

  async join(request: JoinRequest): Promise<void> {
    const { network, endpoint, sandbox, ifName } = request;
    const config = this.configs.of(network);
    const active = await this.activate(network);
    active.endpoints.add(endpoint.id);
    try {
      // A handoff sandbox's interface waits in the daemon's own namespace for the runtime to move it.
      const sandboxNetnsPath = sandbox.handoff === true ? currentNetnsPath() : sandbox.netnsPath;
      await withLinks(this.kernel, active.netnsPath, (bridgeSide) =>
        withLinks(this.kernel, sandboxNetnsPath, (sandboxSide) =>
          sandbox.handoff === true
            ? plugHandoff({ bridgeSide, hostSide: sandboxSide, hostNetnsPath: sandboxNetnsPath, bridgeName: BRIDGE, endpoint, ifName, mtu: this.sandboxMtu(config) })
            : plugVeth({ bridgeSide, sandboxSide, sandboxNetnsPath, bridgeName: BRIDGE, endpoint, ifName, mtu: this.sandboxMtu(config) }),
        ),
      );
      const record: PeerRecord = {
        vni: active.vni,
        mac: endpoint.macAddress,
        vtep: this.advertiseAddress,
        host: this.hostName,
        ...(endpoint.ipv4Address !== undefined ? { ipv4: bareAddress(endpoint.ipv4Address) } : {}),
        ...(endpoint.ipv6Address !== undefined ? { ipv6: bareAddress(endpoint.ipv6Address) } : {}),
      };
      await this.store.txn({ put: [{ key: peerKey(network.id, endpoint.id), value: JSON.stringify(record), ephemeral: true }] });
    } catch (err) {
      await this.leave({ network, endpoint, sandbox, ifName }).catch(() => undefined);
      throw err;
    }
  }

  async leave(request: LeaveRequest): Promise<void> {
    const { network, endpoint } = request;
    const active = this.active.get(network.id);
    const netnsPath = active?.netnsPath ?? `/var/run/netns/${this.netnsName(network.id)}`;
    await tearDown(`leaving overlay network ${network.name}`, [
      { what: 'peer record', run: () => this.withdrawPeer(peerKey(network.id, endpoint.id)) },
      {
        run: async () => {
          if (await this.kernel.netnsExists(netnsPath)) await withLinks(this.kernel, netnsPath, (bridgeSide) => unplugVeth(bridgeSide, endpoint.id));
        },
      },
      {
        run: async () => {
          active?.endpoints.delete(endpoint.id);
          if (active !== undefined && active.endpoints.size === 0) await this.deactivate(network.id);
        },
      },
    ]);
  }

  /**
   * Hosts with endpoints on the network (this one included) as this host's
   * VTEP knows them now: what `inspect` shows is what the data plane uses,
   * with each other host's data-path state as the VTEP's probes tell it.
   * This host has no state: it is not probed.
   */
  async peers(network: NetworkRecord): Promise<NetworkPeer[]> {
    const byAddress = new Map<string, string>();
    for (const record of this.programmed.values()) {
      if (record.networkId === network.id) byAddress.set(record.vtep, record.host);
    }
    const active = this.active.get(network.id);
    const encryption = active?.encrypted === true ? this.encryption : undefined;
    return [...byAddress]
      .map(([ip, name]): NetworkPeer => {
        if (ip === this.advertiseAddress) return { name, ip };
        return { name, ip, ...livenessOf(this.vtep.peerState(ip)), ...(encryption !== undefined ? { encryption: encryption.peer(active!.vni, ip) } : {}) };
      })
      .sort((a, b) => a.ip.localeCompare(b.ip));
  }

  /** The VTEP's counters: frames and datagrams moved, and drops by reason; with encryption, ESP's too. */
  stats(): Record<string, number> {
    return { ...this.vtep.stats, ...this.encryption?.stats() };
  }

  /**
   * Stops following peers and stops the VTEP. The namespaces, bridges
   * and veths stay, so sandboxes keep their interfaces while the daemon is
   * down; the TAPs come back when the endpoints are restored. A second
   * close does nothing; a join after close fails, as the stopped VTEP
   * refuses the network.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.unsubscribeLiveness?.();
    this.unsubscribeLiveness = undefined;
    await this.watch?.cancel();
    this.watch = undefined;
    await this.hostWatch?.cancel();
    this.hostWatch = undefined;
    this.active.clear();
    // Its SAs go before the VTEP: a frame sent in between is dropped for want of a key, never sent in clear.
    this.encryption?.close();
    this.encryption = undefined;
    await this.vtep.stop();
  }

  private netnsName(networkId: string): string {
    return `ovl-${networkId.slice(0, 12)}-${this.advertiseAddress}`;
  }

  /** Makes (or finds again after a restart) the network's namespace, bridge and VTEP port on this host. */
  private async activate(network: NetworkRecord): Promise<ActiveNetwork> {
    const existing = this.active.get(network.id);
    if (existing !== undefined) return existing;
    const config = this.configs.of(network);
    const { vni } = config;
    if (vni === undefined) throw new NetctlError('Internal', `overlay network ${network.name} has no VXLAN ID`);
    const netnsName = this.netnsName(network.id);
    let netnsPath = `/var/run/netns/${netnsName}`;
    if (!(await this.kernel.netnsExists(netnsPath))) {
      netnsPath = await this.kernel.createNamedNetns(netnsName);
      // No IPv6 of its own: the bridge would otherwise send router solicitations into the overlay.
      await this.kernel.setSysctl(netnsPath, 'net.ipv6.conf.default.disable_ipv6', '1');
      await this.kernel.setSysctl(netnsPath, 'net.ipv6.conf.all.disable_ipv6', '1');
      // Nothing filters frames on this bridge: with br_netfilter loaded, every frame would still
      // walk the IP hooks. Without the module these sysctls do not exist, and there is nothing to skip.
      for (const family of ['iptables', 'ip6tables', 'arptables']) {
        await this.kernel.setSysctl(netnsPath, `net.bridge.bridge-nf-call-${family}`, '0').catch((err: unknown) => {
          if (!(err instanceof NotFound)) throw err;
        });
      }
    }
    await withLinks(this.kernel, netnsPath, async (rtnl) => {
      if ((await rtnl.getLink(BRIDGE)) === undefined) await rtnl.createBridge(BRIDGE, { mtu: this.sandboxMtu(config) });
      // The gateway inspect shows exists on every host's bridge, as in Docker's overlay: sandboxes can
      // reach it, and its ARP is answered on the host itself. (The namespace has IPv6 off: IPv4 only.)
      const present = new Set((await rtnl.listAddresses(BRIDGE)).map((a) => a.cidr));
      for (const pool of network.ipam.config) {
        if (pool.gateway === undefined || pool.subnet.includes(':')) continue;
        const cidr = `${pool.gateway}/${pool.subnet.split('/')[1] ?? ''}`;
        if (!present.has(cidr)) await rtnl.addAddress(BRIDGE, cidr);
      }
      await rtnl.setUp(BRIDGE);
      // A TAP lives as long as the fd that made it: after a restart the old one is gone.
      await rtnl.deleteLink(TAP);
      // Offloads let the bridge hand the VTEP 64 KB TCP super-frames, which it segments itself;
      // the VTEP is done with a frame when its callback returns, so it may borrow the read memory.
      const tap = this.kernel.openTap(TAP, {
        netnsPath,
        vnetHdr: true,
        offloads: TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6,
        borrowBuffers: true,
      });
      try {
        await rtnl.setMtu(TAP, TAP_MTU);
        await rtnl.setMaster(TAP, BRIDGE);
        await rtnl.setUp(TAP);
        this.vtep.addNetwork(vni, tap, { externalPeers: [...config.externalPeers], encrypted: config.encrypted });
      } catch (err) {
        tap.close();
        throw err;
      }
    });
    if (config.encrypted) {
      if (this.encryption === undefined) throw this.noEncryption();
      this.encryption.addNetwork(vni);
    }
    const active: ActiveNetwork = { vni, netnsName, netnsPath, endpoints: new Set(), encrypted: config.encrypted };
    this.active.set(network.id, active);
    return active;
  }

  private async deactivate(networkId: string): Promise<void> {
    const active = this.active.get(networkId);
    this.active.delete(networkId);
    this.configs.forget(networkId);
    if (active !== undefined) {
      if (active.encrypted) this.encryption?.removeNetwork(active.vni);
      this.vtep.removeNetwork(active.vni);
    }
    await this.kernel.removeNamedNetns(active?.netnsName ?? this.netnsName(networkId));
  }

  /**
   * Follows every host's record:
   * the VTEP learns each other host's MTU, and new sandboxes get the
   * smallest. A record gone with its host's lease leaves the VTEP's limit
   * for that address in place (the host's underlay did not grow) and stops
   * counting for new sandboxes.
   */
  private async followHosts(): Promise<void> {
    this.hostWatch = await followPrefix(this.store, HOST_PREFIX, (event) => {
      if (event.type === 'put') {
        this.learnHost(event.kv.key, event.kv.value);
        return;
      }
      const address = event.key.slice(HOST_PREFIX.length);
      this.hostMtus.delete(address);
      // Its SAs outlive the record for a while (see KeyRing.peerGone): the lease says nothing of its data path.
      if (address !== this.advertiseAddress) this.encryption?.peerGone(address);
    });
  }

  private learnHost(key: string, value: string): void {
    const address = key.slice(HOST_PREFIX.length);
    try {
      const { mtu, esp } = JSON.parse(value) as Partial<HostRecord>;
      if (typeof mtu !== 'number') throw new Error('no MTU');
      if (address === this.advertiseAddress) {
        this.hostMtus.set(address, mtu);
        return;
      }
      this.vtep.setVtepMtu(address, mtu);
      this.hostMtus.set(address, mtu);
      this.encryption?.setPeer(address, esp);
    } catch (err) {
      this.logger.warn(`ignoring bad host record ${key}: ${(err as Error).message}`);
    }
  }

  /** Programs the VTEP from every host's peer records, then keeps it in step. */
  private async followPeers(): Promise<void> {
    this.watch = await followPrefix(this.store, PEER_PREFIX, (event) => {
      if (event.type === 'put') this.programPeer(event.kv.key, event.kv.value);
      else this.forgetPeer(event.key);
    });
  }

  private programPeer(key: string, value: string): void {
    try {
      const record = JSON.parse(value) as PeerRecord;
      if (record.leaving === true) {
        this.unprogramPeer(key);
        return;
      }
      this.vtep.setPeer(record.vni, {
        mac: record.mac,
        vtep: record.vtep,
        ...(record.ipv4 !== undefined ? { ipv4: record.ipv4 } : {}),
        ...(record.ipv6 !== undefined ? { ipv6: record.ipv6 } : {}),
      });
      const networkId = key.slice(PEER_PREFIX.length).split('/')[0] ?? '';
      this.programmed.set(key, { ...record, networkId });
      this.reachabilityChanged();
    } catch (err) {
      this.logger.warn(`ignoring bad peer record ${key}: ${(err as Error).message}`);
    }
  }

  /**
   * A peer record was deleted. After a leaving record it is gone already.
   * Without one, the host lost its etcd lease (cut off from etcd, or dead):
   * the control plane lost sight of it, which says nothing about its data
   * path. Its endpoints stay while its VTEP answers probes, and go when it
   * stops (peerStateChanged); its store puts the record back when its lease
   * returns. Our own records go at once: our store re-announces what we
   * still hold, and a local entry carries no traffic.
   */
  private forgetPeer(key: string): void {
    const programmed = this.programmed.get(key);
    if (programmed === undefined) return;
    if (programmed.vtep === this.advertiseAddress || this.vtep.peerState(programmed.vtep)?.state !== 'up') {
      this.unprogramPeer(key);
      return;
    }
    const firstLost = ![...this.programmed.values()].some((record) => record.lost === true && record.vtep === programmed.vtep);
    this.programmed.set(key, { ...programmed, lost: true });
    if (firstLost) {
      this.logger.info(`${programmed.host} (${programmed.vtep}) lost its cluster store lease; its endpoints stay while its VTEP answers probes`);
    }
  }

  /** A host whose records were lost and whose VTEP stops answering (or stops being probed) is gone: remove them. */
  private peerStateChanged(peer: PeerLiveness): void {
    this.reachabilityChanged();
    if (peer.state === 'up') return;
    const lost = [...this.programmed].filter(([, record]) => record.lost === true && record.vtep === peer.address);
    if (lost.length === 0) return;
    for (const [key] of lost) this.unprogramPeer(key);
    this.logger.info(`${lost[0]![1].host} (${peer.address}) is ${peer.state === 'down' ? 'down' : 'no longer probed'} and has no lease: removed its ${lost.length} endpoint(s)`);
  }

  private unprogramPeer(key: string): void {
    const programmed = this.programmed.get(key);
    if (programmed === undefined) return;
    this.programmed.delete(key);
    this.vtep.removePeer(programmed.vni, programmed.mac);
    this.reachabilityChanged();
  }

  /**
   * Whether another host's endpoint carries traffic now: the VTEP has its
   * peer entry, and its host's VTEP is not down by the probes. A dead
   * host's endpoints stop being reachable when its probes fail (about a
   * second), before its lease runs out.
   */
  endpointReachable(networkId: string, endpointId: string): boolean {
    const programmed = this.programmed.get(peerKey(networkId, endpointId));
    return programmed !== undefined && this.vtep.peerState(programmed.vtep)?.state !== 'down';
  }

  /** Calls `listener` after any change that may change what endpointReachable answers; returns the function that unsubscribes. */
  onReachabilityChange(listener: () => void): () => void {
    this.reachabilityListeners.add(listener);
    return () => this.reachabilityListeners.delete(listener);
  }

  private reachabilityChanged(): void {
    for (const listener of this.reachabilityListeners) listener();
  }

  /**
   * Withdraws our record of a leaving endpoint in two txns: the record again
   * with `leaving`, so watchers remove it at once, then the delete (etcd
   * refuses a put and a delete of one key in one txn). If the first fails,
   * the second is not tried: the record stays, as a failed delete left it before.
   */
  private async withdrawPeer(key: string): Promise<void> {
    const current = await this.store.get(key);
    if (current === undefined) return;
    const leaving = { ...(JSON.parse(current.value) as PeerRecord), leaving: true };
    await this.store.txn({ put: [{ key, value: JSON.stringify(leaving), ephemeral: true }] });
    await this.store.txn({ delete: [key] });
  }
}

/** What inspect shows of a peer's data path; `unknown` when it is not probed. */
function livenessOf(liveness: PeerLiveness | undefined): Pick<NetworkPeer, 'state' | 'since' | 'lastRtt'> {
  if (liveness === undefined) return { state: 'unknown' };
  return {
    state: liveness.state,
    since: new Date(liveness.since).toISOString(),
    ...(liveness.rttMs !== undefined ? { lastRtt: formatRtt(liveness.rttMs) } : {}),
  };
}
