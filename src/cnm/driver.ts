/**
 * The driver contract. A driver turns network and endpoint records into
 * kernel (or user-space) state; the controller owns the records, IPAM and
 * the store, and calls drivers in this order:
 *   validate → createNetwork → join … leave → deleteNetwork.
 * Every method that changes state is idempotent, because the controller
 * calls it again to restore state after a daemon restart.
 */
import type { Store } from '../store/types.js';
import type { EndpointRecord, NetworkRecord, SandboxRecord, Scope } from '../records.js';

/** What `validate` sees: the network as it is about to be stored. */
export type NetworkSpec = Omit<NetworkRecord, 'id' | 'created' | 'reservedKeys'> & { readonly id: string };

/** Resources a driver reserves in the network's store when the network is made. */
export interface Reservation {
  /** Option values stored with the network (e.g. the VNI picked). */
  readonly options?: Readonly<Record<string, string>>;
  /** Keys that must not exist yet; written in the network's create transaction, deleted with the network. */
  readonly keys?: readonly string[];
}

/** A host that holds endpoints of a network (Docker's `Peers` in inspect). */
export interface NetworkPeer {
  readonly name: string;
  readonly ip: string;
  /**
   * The data path to it, as this host sees it: `up` while it answers,
   * `down` once it stopped, `unknown` when it is not checked (or not yet).
   * Absent when the driver does not check (and for this host itself).
   */
  readonly state?: 'up' | 'down' | 'unknown';
  /** When `state` last changed, RFC 3339. */
  readonly since?: string;
  /** The last round trip measured, in Go's duration notation (`312µs`, `1.25ms`). */
  readonly lastRtt?: string;
  /** On an encrypted network: the SAs with this peer (SPIs and the outbound key's age, never keys). */
  readonly encryption?: {
    /** 0x-hex; absent while there is none: frames to the peer are dropped, not sent in clear. */
    readonly outboundSpi?: string;
    readonly inboundSpis: readonly string[];
    /** Go's duration notation (`42s`, `3m5s`). */
    readonly keyAge?: string;
  };
}

export interface JoinRequest {
  readonly network: NetworkRecord;
  readonly endpoint: EndpointRecord;
  readonly sandbox: SandboxRecord;
  /**
   * Name the interface gets inside the sandbox (eth0, eth1, …); in a
   * handoff sandbox (`sandbox.handoff`), the name it gets in the host's
   * namespace, where the driver leaves it with its MAC and MTU, no address,
   * no route, for the runtime to move. Empty for a driver that makes no
   * interface (`makesInterfaces: false`).
   */
  readonly ifName: string;
  /** True when this network provides the sandbox's default route. */
  readonly setDefaultRoute: boolean;
}

export interface LeaveRequest {
  readonly network: NetworkRecord;
  readonly endpoint: EndpointRecord;
  /** Absent when a forced disconnect removes an endpoint whose sandbox record is gone. */
  readonly sandbox?: SandboxRecord;
  readonly ifName: string;
}

export interface NetworkDriver {
  /** Name users pass with `-d`. */
  readonly name: string;
  /** `local` networks live on one host; `global` ones on every host sharing the store. */
  readonly scope: Scope;
  /** False for drivers whose endpoints carry no addresses (null): IPAM is skipped. */
  readonly usesIpam: boolean;
  /** Whether the network's gateway can be a sandbox's default route (bridge yes, overlay no). */
  readonly providesDefaultRoute: boolean;
  /**
   * True when its sandboxes reach outside only through the host's gateway
   * bridge network (overlay, as with Docker's docker_gwbridge), unless the
   * network is internal.
   */
  readonly needsGatewayBridge?: boolean;
  /**
   * False for drivers whose endpoints get no interface in the sandbox (null,
   * host): their endpoints have no interface name, and asking for one is
   * refused. Default true.
   */
  readonly makesInterfaces?: boolean;
  /** Only one network of this driver may exist (null, host), as in Docker. */
  readonly singleNetwork?: boolean;
  /**
   * True for the host driver: its network stands for the host's own
   * namespace, where no sandbox (always a namespace of its own) can be, so
   * connect and disconnect are refused, as Docker refuses them for containers.
   */
  readonly sharesHostNamespace?: boolean;
  /**
   * The `-o` keys it acts on. Others are stored and shown, as Docker keeps
   * options no driver reads, and the create answers with a warning naming them.
   */
  readonly options: ReadonlySet<string>;
  /**
   * Checks the driver options (`-o`) it acts on and the flags; throws
   * InvalidArgument naming the bad one. The typed config it makes serves
   * the network's later calls.
   */
  validate(network: NetworkSpec): void;
  /**
   * Picks cluster-wide resources for a new network, reading the store it will
   * live in; the controller retries the whole create when a key was taken meanwhile.
   */
  reserve?(network: NetworkSpec, store: Store): Promise<Reservation>;
  /** Hosts that have endpoints on the network, for `inspect`. */
  peers?(network: NetworkRecord): Promise<NetworkPeer[]>;
  /** Counters worth watching (the overlay's drops by reason). */
  stats?(): Record<string, number>;
  /** Creates what the network needs on this host (a bridge, a VTEP port). */
  createNetwork(network: NetworkRecord): Promise<void>;
  /** Removes what createNetwork made; missing pieces are not an error. */
  deleteNetwork(network: NetworkRecord): Promise<void>;
  /** Puts the endpoint's interface into the sandbox with its addresses and routes. */
  join(request: JoinRequest): Promise<void>;
  /** Removes the endpoint's interface from the sandbox; missing pieces are not an error. */
  leave(request: LeaveRequest): Promise<void>;
  /**
   * The name of the joined endpoint's other end in the host's namespace (the
   * bridge driver's veth), for runtimes that act on it there, as CNI's
   * chained plugins do; absent when the driver keeps none there.
   */
  hostInterfaceName?(endpoint: EndpointRecord): string;
  /** Renews the keys of the driver's encrypted networks on this host now (the overlay's); resolves once the new keys are published. */
  rotateKeys?(): Promise<{ epoch: number; rotatedAt: string }>;
  /** Releases everything the driver holds in this process (not kernel state); a second close does nothing. */
  close?(): Promise<void>;
}
