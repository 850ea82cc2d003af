/**
 * The driver contract. A driver turns network and endpoint records into
 * kernel (or user-space) state; the controller owns the records, IPAM and
 * the store, and calls drivers in this order:
 *   validate → createNetwork → join … leave → deleteNetwork.
 * Every method that changes state is idempotent, because the controller
 * calls it again to restore state after a daemon restart.
 */
import type { EndpointRecord, NetworkRecord, SandboxRecord, Scope } from './types.js';

/** What `validate` sees: the network as it is about to be stored. */
export type NetworkSpec = Omit<NetworkRecord, 'id' | 'created'> & { readonly id: string };

export interface JoinRequest {
  readonly network: NetworkRecord;
  readonly endpoint: EndpointRecord;
  readonly sandbox: SandboxRecord;
  /** Name the interface gets inside the sandbox (eth0, eth1, …). */
  readonly ifName: string;
  /** True when this network provides the sandbox's default route. */
  readonly setDefaultRoute: boolean;
}

export interface LeaveRequest {
  readonly network: NetworkRecord;
  readonly endpoint: EndpointRecord;
  readonly sandbox: SandboxRecord;
  readonly ifName: string;
}

export interface NetworkDriver {
  /** Name users pass with `-d`. */
  readonly name: string;
  /** `local` networks live on one host; `global` ones on every host sharing the store. */
  readonly scope: Scope;
  /** False for drivers whose endpoints carry no addresses (null): IPAM is skipped. */
  readonly usesIpam: boolean;
  /** Checks the driver options (`-o`) and flags; throws InvalidArgument naming the bad one. */
  validate(network: NetworkSpec): void;
  /** Creates what the network needs on this host (a bridge, a VTEP port). */
  createNetwork(network: NetworkRecord): Promise<void>;
  /** Removes what createNetwork made; missing pieces are not an error. */
  deleteNetwork(network: NetworkRecord): Promise<void>;
  /** Puts the endpoint's interface into the sandbox with its addresses and routes. */
  join(request: JoinRequest): Promise<void>;
  /** Removes the endpoint's interface from the sandbox; missing pieces are not an error. */
  leave(request: LeaveRequest): Promise<void>;
  /** Releases everything the driver holds in this process (not kernel state). */
  close?(): Promise<void>;
}
