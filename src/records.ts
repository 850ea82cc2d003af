/**
 * The records the controller keeps in the store, and the public shapes it
 * returns. Field names follow Docker's where Docker has one.
 *
 * They live at the bottom, beside errors.ts, because layers under cnm/ read
 * them too (dns/ watches them in the store, drivers/ get them from the
 * controller); moving the one file was smaller than each reader declaring a
 * narrow copy of the schema, which could drift from what cnm/ writes.
 */
export type Scope = 'local' | 'global' | 'swarm';

export interface IpamPoolConfig {
  /** CIDR, IPv4 or IPv6. */
  readonly subnet: string;
  /** Sub-range of `subnet` that dynamic allocation draws from. */
  readonly ipRange?: string;
  readonly gateway?: string;
  /** Named addresses reserved in the subnet (`--aux-address name=ip`). */
  readonly auxAddresses?: Readonly<Record<string, string>>;
}

export interface NetworkRecord {
  readonly id: string;
  readonly name: string;
  readonly driver: string;
  readonly scope: Scope;
  /** RFC 3339 with nanoseconds, as Docker prints it. */
  readonly created: string;
  readonly internal: boolean;
  readonly attachable: boolean;
  readonly ingress: boolean;
  readonly enableIPv4: boolean;
  readonly enableIPv6: boolean;
  readonly ipam: {
    readonly driver: string;
    readonly options: Readonly<Record<string, string>>;
    /** Resolved pools: every entry has a subnet and a gateway. */
    readonly config: readonly IpamPoolConfig[];
  };
  readonly options: Readonly<Record<string, string>>;
  readonly labels: Readonly<Record<string, string>>;
  /** Store keys the driver reserved with the network (an overlay VNI); deleted with it. */
  readonly reservedKeys?: readonly string[];
  /**
   * Docker's --config-only: the network holds pools, options and labels for
   * networks made --config-from it, and nothing else: driver null, no
   * endpoints, its subnets not taken until a network made from it takes them.
   */
  readonly configOnly?: boolean;
  /** The name of the configuration-only network this one was made from (Docker's --config-from). */
  readonly configFrom?: string;
  /** Set when its removal began: a restart finishes it. */
  readonly removing?: boolean;
}

/**
 * A change of an endpoint that was under way when its record was written:
 * it is stored before the kernel is touched, so a crash or a failed store
 * write leaves a state that a retry or the next start finishes ('leave',
 * 'disconnect') or undoes ('join', 'connect').
 */
export type EndpointPending = 'connect' | 'join' | 'leave' | 'disconnect';

export interface EndpointRecord {
  readonly id: string;
  readonly name: string;
  readonly networkId: string;
  /** Set while joined to a sandbox. */
  readonly sandboxId?: string;
  readonly macAddress: string;
  /** CIDR form, e.g. 172.18.0.2/16; absent when the network has no IPv4 pool. */
  readonly ipv4Address?: string;
  readonly ipv6Address?: string;
  readonly aliases: readonly string[];
  /** Interface name inside the sandbox while joined (eth0, eth1, …). */
  readonly ifName?: string;
  /** True while this endpoint's network gives the sandbox its default route. */
  readonly defaultGateway?: boolean;
  readonly pending?: EndpointPending;
  /** The id of the service this endpoint is a task of (see ServiceRecord). */
  readonly service?: string;
  /**
   * Set on a host's entry to the ingress network (the endpoint of its
   * ingress sandbox): connections to a port published in ingress mode on
   * that host enter the network here, and replies are sent back to it.
   */
  readonly ingressEntry?: boolean;
}

export interface SandboxRecord {
  readonly id: string;
  readonly name: string;
  /** Path of the network namespace: /var/run/netns/NAME or any nsfs path. */
  readonly netnsPath: string;
  /** True when netctl made the namespace and so removes it with the sandbox. */
  readonly ownsNetns: boolean;
  readonly created: string;
  readonly labels: Readonly<Record<string, string>>;
  /**
   * 'create' until netctl's namespace exists (undone at the next start),
   * 'remove' from the start of its removal (finished at the next start).
   */
  readonly pending?: 'create' | 'remove';
  /**
   * True when the runtime moves interfaces into the namespace itself, as
   * Docker does with a remote network driver: drivers leave each endpoint's
   * interface in the host's namespace, named after the endpoint, and netctl
   * never enters the namespace (`netnsPath` is ''). The sandbox lives until
   * the runtime takes its last endpoint out.
   */
  readonly handoff?: boolean;
}

/**
 * How a service's name resolves: 'vip' gives it a virtual IP on each of its
 * networks, 'dnsrr' answers with its tasks' addresses (Docker's endpoint modes).
 */
export type EndpointMode = 'vip' | 'dnsrr';

export type PortProtocol = 'tcp' | 'udp';

/**
 * Docker's publish modes: 'ingress' opens the port on every host and
 * reaches a task anywhere; 'host' opens it only on hosts with a task, to
 * their own tasks.
 */
export type PublishMode = 'ingress' | 'host';

/** A port of a service opened on hosts' addresses (Docker's PortConfig). */
export interface PublishedPort {
  readonly protocol: PortProtocol;
  /** The tasks' port. */
  readonly targetPort: number;
  /** The hosts' port. */
  readonly publishedPort: number;
  readonly publishMode: PublishMode;
}

/**
 * Whether connections to the port go through the routing mesh's `ingress`
 * network: ingress mode on cluster networks. A host mode port, or any port
 * of a host's own (bridge) service, goes straight to that host's tasks.
 */
export function routedByMesh(scope: Scope, port: Pick<PublishedPort, 'publishMode'>): boolean {
  return port.publishMode === 'ingress' && scope !== 'local';
}

/** A service on one of its networks. */
export interface ServiceNetwork {
  readonly networkId: string;
  /** CIDR form, e.g. 10.0.0.2/24, claimed from the network's IPAM; absent in dnsrr mode. */
  readonly virtualIp?: string;
}

/**
 * A service: a name with a virtual IP per network, whose tasks are the
 * endpoints that name it (EndpointRecord.service). It lives in the store of
 * its networks' scope, as they do.
 */
export interface ServiceRecord {
  readonly id: string;
  readonly name: string;
  readonly endpointMode: EndpointMode;
  readonly labels: Readonly<Record<string, string>>;
  /** RFC 3339 with nanoseconds, as Docker prints it. */
  readonly created: string;
  readonly scope: Scope;
  readonly networks: readonly ServiceNetwork[];
  /** Absent on records written before services had ports: none. */
  readonly ports?: readonly PublishedPort[];
}

/** The address of a CIDR as records hold them: "10.0.0.2/24" → "10.0.0.2". */
export function bareAddress(cidr: string): string;
export function bareAddress(cidr: string | undefined): string | undefined;
export function bareAddress(cidr: string | undefined): string | undefined {
  return cidr === undefined ? undefined : (cidr.split('/')[0] ?? cidr);
}
