/**
 * Docker's JSON shapes for a network (`docker network inspect`, `GET /networks`),
 * a service and a container, rendered from the controller's views.
 * Sandboxes stand where Docker has containers.
 */
import type { NetworkView, SandboxInfo, SandboxNetwork, ServiceView } from '../cnm/types.js';
import type { NetworkPeer } from '../cnm/driver.js';
import type { EndpointRecord, PublishedPort } from '../records.js';

export interface DockerIpamConfig {
  Subnet: string;
  IPRange?: string;
  Gateway?: string;
  AuxiliaryAddresses?: Record<string, string>;
}

export interface DockerEndpointResource {
  Name: string;
  EndpointID: string;
  MacAddress: string;
  IPv4Address: string;
  IPv6Address: string;
}

export interface DockerNetwork {
  Name: string;
  Id: string;
  Created: string;
  Scope: string;
  Driver: string;
  EnableIPv4: boolean;
  EnableIPv6: boolean;
  IPAM: { Driver: string; Options: Record<string, string>; Config: DockerIpamConfig[] };
  Internal: boolean;
  Attachable: boolean;
  Ingress: boolean;
  ConfigFrom: { Network: string };
  ConfigOnly: boolean;
  Containers: Record<string, DockerEndpointResource>;
  Options: Record<string, string>;
  Labels: Record<string, string>;
  /**
   * Hosts with endpoints on the network; only for drivers spanning hosts.
   * Name and IP are Docker's; State, Since and LastRTT are the data path's
   * (see NetworkPeer), LastRTT as Go prints a duration ("312µs").
   * Encryption is netctl's, on encrypted networks: SPIs and the key's age.
   */
  Peers?: {
    Name: string;
    IP: string;
    State?: 'up' | 'down' | 'unknown';
    Since?: string;
    LastRTT?: string;
    Encryption?: { OutboundSPI?: string; InboundSPIs: string[]; KeyAge?: string };
  }[];
}

export function toDockerNetwork({ network, endpoints, sandboxes: joined, peers }: NetworkView): DockerNetwork {
  const sandboxes = new Map(joined.map((sandbox) => [sandbox.id, sandbox]));
  // Like Docker, Containers lists this host's sandboxes only; other hosts show up as Peers.
  // An endpoint in no sandbox of this host (on a local network, any such) shows as ep-ID, as Docker shows one.
  const containers: Record<string, DockerEndpointResource> = {};
  for (const endpoint of endpoints) {
    const sandbox = endpoint.sandboxId === undefined ? undefined : sandboxes.get(endpoint.sandboxId);
    if (sandbox === undefined && endpoint.sandboxId !== undefined && network.scope !== 'local') continue;
    containers[sandbox?.id ?? `ep-${endpoint.id}`] = {
      Name: sandbox?.name ?? endpoint.name,
      EndpointID: endpoint.id,
      MacAddress: endpoint.macAddress,
      IPv4Address: endpoint.ipv4Address ?? '',
      IPv6Address: endpoint.ipv6Address ?? '',
    };
  }
  return {
    Name: network.name,
    Id: network.id,
    Created: network.created,
    Scope: network.scope,
    Driver: network.driver,
    EnableIPv4: network.enableIPv4,
    EnableIPv6: network.enableIPv6,
    IPAM: {
      Driver: network.ipam.driver,
      Options: { ...network.ipam.options },
      Config: network.ipam.config.map((pool) => {
        const out: DockerIpamConfig = { Subnet: pool.subnet };
        if (pool.ipRange !== undefined) out.IPRange = pool.ipRange;
        if (pool.gateway !== undefined) out.Gateway = pool.gateway;
        if (pool.auxAddresses !== undefined && Object.keys(pool.auxAddresses).length > 0) {
          out.AuxiliaryAddresses = { ...pool.auxAddresses };
        }
        return out;
      }),
    },
    Internal: network.internal,
    Attachable: network.attachable,
    Ingress: network.ingress,
    ConfigFrom: { Network: network.configFrom ?? '' },
    ConfigOnly: network.configOnly ?? false,
    Containers: containers,
    Options: { ...network.options },
    Labels: { ...network.labels },
    ...(peers !== undefined
      ? {
          Peers: peers.map((peer) => ({
            Name: peer.name,
            IP: peer.ip,
            ...(peer.state !== undefined ? { State: peer.state } : {}),
            ...(peer.since !== undefined ? { Since: peer.since } : {}),
            ...(peer.lastRtt !== undefined ? { LastRTT: peer.lastRtt } : {}),
            ...(peer.encryption !== undefined ? { Encryption: encryptionJson(peer.encryption) } : {}),
          })),
        }
      : {}),
  };
}

function encryptionJson(encryption: NonNullable<NetworkPeer['encryption']>): NonNullable<NonNullable<DockerNetwork['Peers']>[number]['Encryption']> {
  return {
    ...(encryption.outboundSpi !== undefined ? { OutboundSPI: encryption.outboundSpi } : {}),
    InboundSPIs: [...encryption.inboundSpis],
    ...(encryption.keyAge !== undefined ? { KeyAge: encryption.keyAge } : {}),
  };
}

/**
 * Docker's JSON shape for a service (`docker service inspect`), where the two
 * overlap, plus netctl's own `Tasks` (the endpoints that are its tasks, on
 * every host) and `LoadBalancer`. A VIP's Addr is in CIDR form, as Docker prints it.
 */
export interface DockerService {
  ID: string;
  CreatedAt: string;
  UpdatedAt: string;
  Spec: {
    Name: string;
    Labels: Record<string, string>;
    TaskTemplate: { Networks: { Target: string }[] };
    EndpointSpec: { Mode: 'vip' | 'dnsrr'; Ports?: DockerPortConfig[] };
  };
  /** Ports, here and in the specs, are absent when the service publishes none, as Docker omits an empty list. */
  Endpoint: {
    Spec: { Mode: 'vip' | 'dnsrr'; Ports?: DockerPortConfig[] };
    Ports?: DockerPortConfig[];
    VirtualIPs: { NetworkID: string; Addr: string }[];
  };
  /** Sandbox: its name when it is on this host, else the endpoint's name (the sandbox's on its own host). */
  Tasks: { EndpointID: string; Sandbox: string; NetworkID: string; Addr: string }[];
  /** Each virtual IP with the task addresses the host that answers balances new connections to: its live tasks, on any host. */
  LoadBalancer: { NetworkID: string; VirtualIP: string; Tasks: string[] }[];
}

/** A published port (Docker's PortConfig, without the Name netctl does not keep). */
export interface DockerPortConfig {
  Protocol: 'tcp' | 'udp';
  TargetPort: number;
  PublishedPort: number;
  PublishMode: 'ingress' | 'host';
}

export function toDockerService({ service, tasks, balancing }: ServiceView): DockerService {
  const virtualIps = service.networks.flatMap((on) => (on.virtualIp === undefined ? [] : [{ NetworkID: on.networkId, Addr: on.virtualIp }]));
  const published = service.ports ?? [];
  // A fresh list for each of the three places, so a caller that sorts one leaves the others as they are.
  const ports = () => (published.length === 0 ? {} : { Ports: published.map(portConfigJson) });
  return {
    ID: service.id,
    CreatedAt: service.created,
    UpdatedAt: service.created,
    Spec: {
      Name: service.name,
      Labels: { ...service.labels },
      TaskTemplate: { Networks: service.networks.map((on) => ({ Target: on.networkId })) },
      EndpointSpec: { Mode: service.endpointMode, ...ports() },
    },
    // The record keeps the ports in effect: a published port the daemon picked shows in the specs too, where Docker's keep the 0 asked for.
    Endpoint: { Spec: { Mode: service.endpointMode, ...ports() }, ...ports(), VirtualIPs: virtualIps },
    Tasks: tasks.map(({ endpoint, sandboxName }) => ({
      EndpointID: endpoint.id,
      Sandbox: sandboxName ?? endpoint.name,
      NetworkID: endpoint.networkId,
      Addr: endpoint.ipv4Address ?? endpoint.ipv6Address ?? '',
    })),
    LoadBalancer: balancing.map(({ networkId, virtualIp, tasks: live }) => ({ NetworkID: networkId, VirtualIP: virtualIp, Tasks: [...live] })),
  };
}

function portConfigJson(port: PublishedPort): DockerPortConfig {
  return { Protocol: port.protocol, TargetPort: port.targetPort, PublishedPort: port.publishedPort, PublishMode: port.publishMode };
}

/** Docker's EndpointSettings: one network of a container (`NetworkSettings.Networks`). */
export interface DockerEndpointSettings {
  /** The addresses asked for at connect; netctl keeps the addresses, not whether they were asked for. */
  IPAMConfig: null;
  Links: null;
  MacAddress: string;
  Aliases: string[];
  DriverOpts: null;
  NetworkID: string;
  EndpointID: string;
  /** The network's gateway when it routes the sandbox (empty on internal and overlay networks, as in Docker). */
  Gateway: string;
  IPAddress: string;
  IPPrefixLen: number;
  IPv6Gateway: string;
  GlobalIPv6Address: string;
  GlobalIPv6PrefixLen: number;
  /** The names the embedded DNS answers with this endpoint's address on the network. */
  DNSNames: string[];
}

/**
 * Docker's container JSON (`docker inspect`, `GET /containers/{id}/json`)
 * for a sandbox: what a network tool reads (the namespace, the networks),
 * and for the rest the values of a container without image or process.
 */
export interface DockerContainer {
  Id: string;
  Created: string;
  Path: string;
  Args: string[];
  State: {
    Status: 'running';
    Running: true;
    Paused: false;
    Restarting: false;
    OOMKilled: false;
    Dead: false;
    Pid: number;
    ExitCode: number;
    Error: string;
    StartedAt: string;
    FinishedAt: string;
  };
  Image: string;
  ResolvConfPath: string;
  /** With Docker's leading slash. */
  Name: string;
  RestartCount: number;
  Driver: string;
  Platform: string;
  Mounts: [];
  Config: { Hostname: string; Domainname: string; User: string; Env: string[]; Cmd: null; Image: string; Labels: Record<string, string> };
  NetworkSettings: {
    SandboxID: string;
    /** The namespace's path, as Docker gives its sandbox's. */
    SandboxKey: string;
    Ports: Record<string, never>;
    /** By network name. */
    Networks: Record<string, DockerEndpointSettings>;
  };
}

/** Docker's container list entry (`docker ps`, `GET /containers/json`) for a sandbox. */
export interface DockerContainerSummary {
  Id: string;
  Names: string[];
  Image: string;
  ImageID: string;
  Command: string;
  /** Unix seconds. */
  Created: number;
  Ports: [];
  Labels: Record<string, string>;
  State: 'running';
  /** As Docker words it: "Up 5 minutes". */
  Status: string;
  NetworkSettings: { Networks: Record<string, DockerEndpointSettings> };
  Mounts: [];
}

/** Go's zero time, which Docker gives for a container that has not finished. */
const ZERO_TIME = '0001-01-01T00:00:00Z';

export function toDockerContainer(sandbox: SandboxInfo): DockerContainer {
  return {
    Id: sandbox.id,
    Created: sandbox.created,
    Path: '',
    Args: [],
    // A sandbox is a namespace, not a process: running while it exists, with no Pid of its own.
    State: {
      Status: 'running',
      Running: true,
      Paused: false,
      Restarting: false,
      OOMKilled: false,
      Dead: false,
      Pid: 0,
      ExitCode: 0,
      Error: '',
      StartedAt: sandbox.created,
      FinishedAt: ZERO_TIME,
    },
    Image: '',
    ResolvConfPath: sandbox.resolvConfPath ?? '',
    Name: `/${sandbox.name}`,
    RestartCount: 0,
    Driver: '',
    Platform: 'linux',
    Mounts: [],
    // Its name is the hostname other sandboxes resolve it by.
    Config: { Hostname: sandbox.name, Domainname: '', User: '', Env: [], Cmd: null, Image: '', Labels: { ...sandbox.labels } },
    NetworkSettings: { SandboxID: sandbox.id, SandboxKey: sandbox.netnsPath, Ports: {}, Networks: endpointSettingsByNetwork(sandbox) },
  };
}

export function toDockerContainerSummary(sandbox: SandboxInfo, now: Date): DockerContainerSummary {
  return {
    Id: sandbox.id,
    Names: [`/${sandbox.name}`],
    Image: '',
    ImageID: '',
    Command: '',
    Created: Math.floor(new Date(sandbox.created).getTime() / 1000),
    Ports: [],
    Labels: { ...sandbox.labels },
    State: 'running',
    Status: `Up ${humanDuration(now.getTime() - new Date(sandbox.created).getTime())}`,
    NetworkSettings: { Networks: endpointSettingsByNetwork(sandbox) },
    Mounts: [],
  };
}

function endpointSettingsByNetwork(sandbox: SandboxInfo): Record<string, DockerEndpointSettings> {
  const networks: Record<string, DockerEndpointSettings> = {};
  for (const endpoint of sandbox.endpoints) {
    const network = sandbox.networks[endpoint.networkId];
    // An endpoint whose network record is unreadable still shows, under its network's id.
    networks[network?.name ?? endpoint.networkId] = endpointSettings(endpoint, network);
  }
  return networks;
}

function endpointSettings(endpoint: EndpointRecord, network: SandboxNetwork | undefined): DockerEndpointSettings {
  const [ipv4, ipv4PrefixLen] = splitCidr(endpoint.ipv4Address);
  const [ipv6, ipv6PrefixLen] = splitCidr(endpoint.ipv6Address);
  return {
    IPAMConfig: null,
    Links: null,
    MacAddress: endpoint.macAddress,
    Aliases: [...endpoint.aliases],
    DriverOpts: null,
    NetworkID: endpoint.networkId,
    EndpointID: endpoint.id,
    Gateway: network?.ipv4Gateway ?? '',
    IPAddress: ipv4,
    IPPrefixLen: ipv4PrefixLen,
    IPv6Gateway: network?.ipv6Gateway ?? '',
    GlobalIPv6Address: ipv6,
    GlobalIPv6PrefixLen: ipv6PrefixLen,
    // As the embedded DNS keys them (dns/records.ts): the endpoint's name, then its aliases.
    DNSNames: [...new Set([endpoint.name, ...endpoint.aliases])],
  };
}

/** `10.0.0.2/24` → ['10.0.0.2', 24]; no address → ['', 0], Docker's empty values. */
function splitCidr(cidr: string | undefined): [string, number] {
  if (cidr === undefined) return ['', 0];
  const slash = cidr.indexOf('/');
  return slash < 0 ? [cidr, 0] : [cidr.slice(0, slash), Number(cidr.slice(slash + 1))];
}

/** Go's units.HumanDuration, which `docker ps` puts after "Up". */
export function humanDuration(ms: number): string {
  const seconds = Math.floor(ms / 1000);
  const minutes = Math.floor(seconds / 60);
  const hours = Math.round(ms / 3_600_000);
  if (seconds < 1) return 'Less than a second';
  if (seconds === 1) return '1 second';
  if (seconds < 60) return `${seconds} seconds`;
  if (minutes === 1) return 'About a minute';
  if (minutes < 60) return `${minutes} minutes`;
  if (hours === 1) return 'About an hour';
  if (hours < 48) return `${hours} hours`;
  if (hours < 24 * 7 * 2) return `${Math.floor(hours / 24)} days`;
  if (hours < 24 * 30 * 2) return `${Math.floor(hours / 24 / 7)} weeks`;
  if (hours < 24 * 365 * 2) return `${Math.floor(hours / 24 / 30)} months`;
  return `${Math.floor(ms / 3_600_000 / 24 / 365)} years`;
}
