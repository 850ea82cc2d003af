/**
 * What the controller's methods take and return, shared by its parts.
 * Results are typed records and views; the HTTP API renders them in
 * Docker's JSON (api/docker.ts).
 */
import type { NetworkPeer } from './driver.js';
import type { PoolRequest } from './ipam.js';
import type { Balancing } from '../ingress/balancer.js';
import type { EndpointMode, EndpointRecord, NetworkRecord, PortProtocol, PublishMode, SandboxRecord, ServiceRecord } from '../records.js';

export interface NetworkCreateRequest {
  readonly name: string;
  readonly driver?: string;
  readonly internal?: boolean;
  readonly attachable?: boolean;
  readonly ingress?: boolean;
  readonly enableIPv4?: boolean;
  readonly enableIPv6?: boolean;
  readonly ipam?: {
    readonly driver?: string;
    readonly config?: readonly PoolRequest[];
    readonly options?: Readonly<Record<string, string>>;
  };
  readonly options?: Readonly<Record<string, string>>;
  readonly labels?: Readonly<Record<string, string>>;
  /** Docker's --scope: must be the driver's scope; netctl has no swarm scope. */
  readonly scope?: string;
  /** Docker's --config-only (NetworkRecord.configOnly). */
  readonly configOnly?: boolean;
  /** Docker's --config-from: the name or id of a configuration-only network whose pools, options and labels this one takes. */
  readonly configFrom?: string;
}

export interface SandboxCreateRequest {
  readonly name: string;
  /** Register an existing namespace instead of making /var/run/netns/NAME. */
  readonly netnsPath?: string;
  readonly labels?: Readonly<Record<string, string>>;
  /** A sandbox whose runtime moves the interfaces in itself (SandboxRecord.handoff); no `netnsPath` then. */
  readonly handoff?: boolean;
}

export interface EndpointCreateRequest {
  /** Defaults to the sandbox name on connect; must be unique in the network. */
  readonly name: string;
  /** The runtime's id for it (Docker's EndpointID), 64 hex digits; a new one by default. */
  readonly id?: string;
  /** The runtime's MAC for it (Docker's `--mac-address`); by default derived from the IPv4 address. */
  readonly macAddress?: string;
  readonly ipv4Address?: string;
  readonly ipv6Address?: string;
  readonly aliases?: readonly string[];
  /** Makes the endpoint a task of this service (id or name), which must be on the endpoint's network. */
  readonly service?: string;
  /** Marks a host's ingress sandbox's endpoint (EndpointRecord.ingressEntry); set by the controller only. */
  readonly ingressEntry?: boolean;
}

export interface ConnectOptions {
  readonly ipv4Address?: string;
  readonly ipv6Address?: string;
  readonly aliases?: readonly string[];
  /** Makes the sandbox's endpoint a task of this service (id or name), which must be on the network. */
  readonly service?: string;
  /**
   * The interface's name in the sandbox instead of the next free ethN: a
   * runtime (CNI's CNI_IFNAME) or a user (Docker's
   * `com.docker.network.endpoint.ifname`) may need a fixed one.
   */
  readonly ifName?: string;
}

export interface DisconnectOptions {
  /**
   * Remove the endpoint whatever state it is in, as `docker network
   * disconnect -f` does: the sandbox argument may also name the endpoint
   * (its sandbox may be gone), and a failing driver does not stop the
   * removal of the record and the release of its addresses.
   */
  readonly force?: boolean;
}

/**
 * A change the controller made, as a runtime subscribed to it sees it: the
 * record as it is after the change (as it was, for a removal). An endpoint
 * that `connect` makes is announced with `create` and `join` once it is
 * wired; one whose connect failed and was undone is never announced.
 */
export type ControllerEvent = { readonly time: Date } & (
  | { readonly type: 'network'; readonly action: 'create' | 'remove'; readonly network: NetworkRecord }
  | { readonly type: 'sandbox'; readonly action: 'create' | 'remove'; readonly sandbox: SandboxRecord }
  | {
      readonly type: 'endpoint';
      readonly action: 'create' | 'join' | 'leave' | 'remove';
      readonly endpoint: EndpointRecord;
      readonly network: NetworkRecord;
    }
);

/** A network with what inspect and list show of it. */
export interface NetworkView {
  readonly network: NetworkRecord;
  /** Its endpoints, those of other hosts on a global network included. */
  readonly endpoints: readonly EndpointRecord[];
  /** The sandboxes of this host that its endpoints are joined to. */
  readonly sandboxes: readonly SandboxRecord[];
  /** Hosts with endpoints on the network; only from drivers spanning hosts. */
  readonly peers?: readonly NetworkPeer[];
}

/** A new network, and what the create did not act on (options no driver reads), as Docker's create answers with a Warning. */
export interface NetworkCreated extends NetworkView {
  readonly warnings: readonly string[];
}

export interface SandboxInfo extends SandboxRecord {
  readonly endpoints: readonly EndpointRecord[];
  /** Endpoint id → its interface in the host's namespace, for the joined endpoints whose driver keeps one there. */
  readonly hostInterfaces: Readonly<Record<string, string>>;
  /** The resolv.conf pointing at the embedded DNS, for runtimes to mount. */
  readonly resolvConfPath?: string;
  /** By network id, the networks its endpoints are on. */
  readonly networks: Readonly<Record<string, SandboxNetwork>>;
}

/** A network a sandbox is on, as its inspect shows it. */
export interface SandboxNetwork {
  readonly name: string;
  /** The gateways the network routes the sandbox through: none on an internal network or from a driver that gives no route (overlay, null). */
  readonly ipv4Gateway?: string;
  readonly ipv6Gateway?: string;
}

export interface ServiceCreateRequest {
  readonly name: string;
  /** Networks (ids or names), all of one scope; none makes a service of local scope that no task can join. */
  readonly networks?: readonly string[];
  /** Default 'vip'. */
  readonly endpointMode?: EndpointMode;
  readonly labels?: Readonly<Record<string, string>>;
  /** Ports opened on hosts' addresses for the service's tasks; fixed for the service's life. Needs a network. */
  readonly ports?: readonly PublishedPortRequest[];
}

/** A port to publish, as a create request gives it (Docker's PortConfig). */
export interface PublishedPortRequest {
  /** Default 'tcp'. */
  readonly protocol?: PortProtocol;
  readonly targetPort: number;
  /** Absent in ingress mode: the lowest free port of 30000-32767 (swarmkit's dynamic range). */
  readonly publishedPort?: number;
  /** Default 'ingress'. */
  readonly publishMode?: PublishMode;
}

/** A service with what inspect and list show of it. */
export interface ServiceView {
  readonly service: ServiceRecord;
  /** The endpoints that are its tasks, on every network and host, with the name of their sandbox when it is on this host. */
  readonly tasks: readonly { readonly endpoint: EndpointRecord; readonly sandboxName?: string }[];
  /** Each virtual IP with the live tasks this host balances it to (empty while no load balancer runs here). */
  readonly balancing: readonly Balancing[];
}
