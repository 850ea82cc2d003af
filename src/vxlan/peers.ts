/**
 * The VTEP's peer table (libnetwork's peerDb): per VNI, which VTEP holds
 * each MAC, which MAC owns each endpoint address (for ARP and ND answers),
 * and where to flood. Lookups on the data path are keyed by numbers (a MAC
 * is its 48-bit integer value) and allocate nothing.
 */
import { isMulticastMac } from '../wire/index.js';

/** How long a MAC learned from an external peer's traffic stays without being seen again (ms). */
export const DEFAULT_LEARNED_TTL_MS = 300_000;

export interface PeerEntry {
  /** The endpoint's MAC as a 48-bit integer. */
  readonly mac: number;
  readonly ipv4?: number;
  readonly ipv6?: Uint8Array;
  /** Underlay IPv4 of the VTEP that holds the endpoint. */
  readonly vtep: string;
  /** Learned from an external peer's traffic (ages out) rather than configured. */
  readonly learned: boolean;
  /** Held by this host's VTEP: answered for, never sent to. */
  readonly local: boolean;
}

interface MutableEntry {
  mac: number;
  ipv4?: number;
  ipv6?: Uint8Array;
  vtep: string;
  learned: boolean;
  local: boolean;
  /** When a learned entry ages out, on the table's clock; Infinity for configured ones. */
  expiresAt: number;
}

/**
 * Traffic with one remote VTEP on one VNI, counted by the VTEP. Bytes are
 * those of the inner frames: a TCP super-frame counts once, before it is cut
 * into datagrams.
 */
export interface RemoteVtepStats {
  rxDatagrams: number;
  rxBytes: number;
  txDatagrams: number;
  txBytes: number;
  /** Inner frames it sent with the source MAC of one of our local endpoints. */
  dropSelf: number;
  /** Datagrams with a remote checksum offload start outside their frame. */
  dropBadFlags: number;
}

/**
 * A remote VTEP a VNI has known. It outlives its membership, so its counters
 * never go back while the VNI's table lives, and the VTEP may keep a reference.
 */
export interface RemoteVtep extends RemoteVtepStats {
  readonly address: string;
  /** Sends frames of the VNI: holds configured peers or is an external peer. */
  readonly known: boolean;
  readonly external: boolean;
}

interface MutableRemote extends RemoteVtepStats {
  readonly address: string;
  known: boolean;
  external: boolean;
}

/** A peer as configured by the overlay driver, addresses already parsed. */
export interface PeerSpec {
  mac: number;
  ipv4?: number;
  ipv6?: Uint8Array;
  vtep: string;
}

/** The peers of one VNI. */
export class VniPeers {
  readonly #localAddress: string;
  readonly #learnedTtlMs: number;
  readonly #byMac = new Map<number, MutableEntry>();
  readonly #macByIPv4 = new Map<number, number>();
  // ND is rare enough that a 16-character key string per lookup is fine.
  readonly #macByIPv6 = new Map<string, number>();
  /** Remote VTEP → how many configured peers it holds. */
  readonly #configuredVteps = new Map<string, number>();
  #externalPeers = new Set<string>();
  /** Every remote VTEP ever a member, for the counters; `known` and `external` follow the two above. */
  readonly #remotes = new Map<string, MutableRemote>();
  #floodTargets: readonly string[] = [];
  #learnedCount = 0;

  constructor(
    readonly vni: number,
    localAddress: string,
    learnedTtlMs: number,
  ) {
    this.#localAddress = localAddress;
    this.#learnedTtlMs = learnedTtlMs;
  }

  /** The entry for `mac`, unless there is none or it is learned and has aged out by `now`. */
  lookup(mac: number, now: number): PeerEntry | undefined {
    const entry = this.#byMac.get(mac);
    if (entry === undefined) return undefined;
    if (entry.expiresAt <= now) {
      this.#delete(entry);
      return undefined;
    }
    return entry;
  }

  /** The MAC of the endpoint with this IPv4 address (as a 32-bit integer). */
  macForIPv4(ipv4: number): number | undefined {
    return this.#macByIPv4.get(ipv4);
  }

  /** The MAC of the endpoint with this IPv6 address. */
  macForIPv6(ipv6: Uint8Array): number | undefined {
    return this.#macByIPv6.get(ipv6Key(ipv6));
  }

  /** A remote VTEP holding configured peers of this VNI, or one of its external peers. */
  isKnownSender(address: string): boolean {
    return this.sender(address) !== undefined;
  }

  /** The known sender at `address` (see `isKnownSender`), whose counters the caller updates; one lookup. */
  sender(address: string): RemoteVtep | undefined {
    const remote = this.#remotes.get(address);
    return remote !== undefined && remote.known ? remote : undefined;
  }

  /** The remote VTEP at `address`, made (unknown, counters at zero) on first use. */
  remote(address: string): RemoteVtep {
    return this.#remotes.get(address) ?? this.#addRemote(address);
  }

  /** Every remote VTEP this VNI has known, current members or not. */
  remotes(): IterableIterator<RemoteVtep> {
    return this.#remotes.values();
  }

  /** The remote netctl VTEPs holding configured peers of this VNI (external peers are not among them). */
  configuredVteps(): IterableIterator<string> {
    return this.#configuredVteps.keys();
  }

  /** True when the remote VTEP at `address` holds configured peers of this VNI. */
  holdsConfiguredPeers(address: string): boolean {
    return this.#configuredVteps.has(address);
  }

  /** Every remote VTEP that gets broadcast, multicast and unknown unicast frames; never the local address. */
  get floodTargets(): readonly string[] {
    return this.#floodTargets;
  }

  /** Adds or replaces the entry for `spec.mac` (a learned entry becomes configured). */
  set(spec: PeerSpec): void {
    const old = this.#byMac.get(spec.mac);
    if (old !== undefined) this.#delete(old);
    const local = spec.vtep === this.#localAddress;
    const entry: MutableEntry = { mac: spec.mac, vtep: spec.vtep, learned: false, local, expiresAt: Number.POSITIVE_INFINITY };
    if (spec.ipv4 !== undefined) {
      entry.ipv4 = spec.ipv4;
      this.#macByIPv4.set(spec.ipv4, spec.mac);
    }
    if (spec.ipv6 !== undefined) {
      entry.ipv6 = Uint8Array.from(spec.ipv6);
      this.#macByIPv6.set(ipv6Key(spec.ipv6), spec.mac);
    }
    this.#byMac.set(spec.mac, entry);
    if (!local) {
      const count = this.#configuredVteps.get(spec.vtep) ?? 0;
      this.#configuredVteps.set(spec.vtep, count + 1);
      if (count === 0) this.#rebuildFloodTargets();
    }
  }

  /** Removes the entry for `mac`, configured or learned; false if there was none. */
  remove(mac: number): boolean {
    const entry = this.#byMac.get(mac);
    if (entry === undefined) return false;
    this.#delete(entry);
    return true;
  }

  /** Replaces the external peers; MACs learned from a peer no longer listed are forgotten. */
  setExternalPeers(peers: readonly string[]): void {
    this.#externalPeers = new Set(peers.filter((peer) => peer !== this.#localAddress));
    if (this.#learnedCount > 0) {
      for (const entry of this.#byMac.values()) {
        if (entry.learned && !this.#externalPeers.has(entry.vtep)) this.#delete(entry);
      }
    }
    this.#rebuildFloodTargets();
  }

  /**
   * Records that `mac` was seen behind external peer `vtep` at `now`. A
   * configured entry wins over what traffic claims, and a multicast source
   * is never learned. Returns true when a new entry was made.
   */
  learn(mac: number, vtep: string, now: number): boolean {
    const entry = this.#byMac.get(mac);
    if (entry === undefined) {
      if (isMulticastMac(mac)) return false;
      this.#byMac.set(mac, { mac, vtep, learned: true, local: false, expiresAt: now + this.#learnedTtlMs });
      this.#learnedCount++;
      return true;
    }
    if (entry.learned) {
      entry.vtep = vtep;
      entry.expiresAt = now + this.#learnedTtlMs;
    }
    return false;
  }

  /** Drops learned entries that aged out by `now`. */
  sweep(now: number): void {
    if (this.#learnedCount === 0) return;
    for (const entry of this.#byMac.values()) if (entry.expiresAt <= now) this.#delete(entry);
  }

  /** A snapshot of the entries, for inspection. */
  entries(): PeerEntry[] {
    return [...this.#byMac.values()].map(({ expiresAt: _, ...entry }) => entry);
  }

  #delete(entry: MutableEntry): void {
    this.#byMac.delete(entry.mac);
    if (entry.ipv4 !== undefined && this.#macByIPv4.get(entry.ipv4) === entry.mac) this.#macByIPv4.delete(entry.ipv4);
    if (entry.ipv6 !== undefined) {
      const key = ipv6Key(entry.ipv6);
      if (this.#macByIPv6.get(key) === entry.mac) this.#macByIPv6.delete(key);
    }
    if (entry.learned) {
      this.#learnedCount--;
    } else if (!entry.local) {
      const count = this.#configuredVteps.get(entry.vtep) ?? 0;
      if (count <= 1) {
        this.#configuredVteps.delete(entry.vtep);
        this.#rebuildFloodTargets();
      } else {
        this.#configuredVteps.set(entry.vtep, count - 1);
      }
    }
  }

  /** Called whenever the set of configured VTEPs or external peers changes. */
  #rebuildFloodTargets(): void {
    this.#floodTargets = [...new Set([...this.#configuredVteps.keys(), ...this.#externalPeers])];
    for (const remote of this.#remotes.values()) {
      remote.known = false;
      remote.external = false;
    }
    for (const address of this.#floodTargets) {
      const remote = this.#remotes.get(address) ?? this.#addRemote(address);
      remote.known = true;
      remote.external = this.#externalPeers.has(address);
    }
  }

  #addRemote(address: string): MutableRemote {
    const remote: MutableRemote = {
      address,
      known: false,
      external: false,
      rxDatagrams: 0,
      rxBytes: 0,
      txDatagrams: 0,
      txBytes: 0,
      dropSelf: 0,
      dropBadFlags: 0,
    };
    this.#remotes.set(address, remote);
    return remote;
  }
}

/** The peers of every VNI on this host. */
export class PeerTable {
  readonly #localAddress: string;
  readonly #learnedTtlMs: number;
  readonly #vnis = new Map<number, VniPeers>();

  constructor(opts: { localAddress: string; learnedTtlMs?: number }) {
    this.#localAddress = opts.localAddress;
    this.#learnedTtlMs = opts.learnedTtlMs ?? DEFAULT_LEARNED_TTL_MS;
  }

  /** The peers of `vni`, made empty on first use. */
  vni(vni: number): VniPeers {
    let peers = this.#vnis.get(vni);
    if (peers === undefined) {
      peers = new VniPeers(vni, this.#localAddress, this.#learnedTtlMs);
      this.#vnis.set(vni, peers);
    }
    return peers;
  }

  /** Drops learned entries of every VNI that aged out by `now`. */
  sweep(now: number): void {
    for (const peers of this.#vnis.values()) peers.sweep(now);
  }

  /** True when the remote VTEP at `address` holds configured peers of any VNI: a netctl host we know. */
  isNetctlVtep(address: string): boolean {
    for (const peers of this.#vnis.values()) if (peers.holdsConfiguredPeers(address)) return true;
    return false;
  }
}

function ipv6Key(ipv6: Uint8Array): string {
  return String.fromCharCode(...ipv6.subarray(0, 16));
}
