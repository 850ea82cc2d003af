/**
 * Docker's JSON shape for a network (`docker network inspect`, `GET /networks`),
 * rendered from the controller's views. Sandboxes stand where Docker has
 * containers.
 */
import type { NetworkView, ServiceView } from '../cnm/types.js';
import type { NetworkPeer } from '../cnm/driver.js';
import type { PublishedPort } from '../records.js';

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
