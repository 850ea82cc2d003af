/**
 * The JSON bodies of netctl's HTTP API. Network routes use the Docker Engine
 * API's shapes and field names so Docker clients work unchanged; sandbox
 * routes are netctl's own, shaped the same way (PascalCase, `Id`).
 */
import type {
  ConnectOptions,
  NetworkCreateRequest,
  PublishedPortRequest,
  SandboxCreateRequest,
  SandboxInfo,
  ServiceCreateRequest,
} from '../cnm/types.js';
import { InvalidArgument } from '../errors.js';
import type { PoolRequest } from '../cnm/ipam.js';

/** The Engine API version served; the docker CLI negotiates down to it. */
export const API_VERSION = '1.47';
/** The oldest API version a client may ask for in a `/vX.Y` prefix. */
export const MIN_API_VERSION = '1.24';

export interface IpamConfigBody {
  Subnet?: string;
  IPRange?: string;
  Gateway?: string;
  AuxiliaryAddresses?: Record<string, string>;
}

/** `POST /networks/create`. */
export interface NetworkCreateBody {
  Name: string;
  Driver?: string;
  Internal?: boolean;
  Attachable?: boolean;
  Ingress?: boolean;
  EnableIPv4?: boolean;
  EnableIPv6?: boolean;
  IPAM?: { Driver?: string; Config?: IpamConfigBody[]; Options?: Record<string, string> };
  Options?: Record<string, string>;
  Labels?: Record<string, string>;
  Scope?: string;
  ConfigOnly?: boolean;
  ConfigFrom?: { Network: string };
}

export interface NetworkCreateResponse {
  Id: string;
  Warning: string;
}

export interface NetworkPruneResponse {
  NetworksDeleted: string[];
}

/** `POST /networks/{id}/connect`; Container names a sandbox. */
export interface NetworkConnectBody {
  Container: string;
  /** netctl's own: the service (id or name) whose task the sandbox's endpoint becomes. */
  Service?: string;
  EndpointConfig?: {
    IPAMConfig?: { IPv4Address?: string; IPv6Address?: string };
    Aliases?: string[];
    /** Of Docker's endpoint driver options netctl reads IFNAME_DRIVER_OPT; others are ignored, as Docker's bridge driver does. */
    DriverOpts?: Record<string, string>;
  };
}

/** Docker's (28.0+) endpoint driver option naming the interface inside the container. */
export const IFNAME_DRIVER_OPT = 'com.docker.network.endpoint.ifname';

export interface NetworkDisconnectBody {
  Container: string;
  Force?: boolean;
}

/** `POST /services/create`: the part of Docker's ServiceSpec that netctl's services have. */
export interface ServiceCreateBody {
  Name: string;
  Labels?: Record<string, string>;
  /** Target: a network's id or name. */
  TaskTemplate?: { Networks?: { Target: string }[] };
  EndpointSpec?: { Mode?: 'vip' | 'dnsrr'; Ports?: PortConfigBody[] };
}

/**
 * A port to publish (Docker's PortConfig; its Name is ignored). Protocol
 * defaults to tcp, PublishMode to ingress; without a PublishedPort (or 0),
 * an ingress port gets the lowest free one of 30000-32767.
 */
export interface PortConfigBody {
  Protocol?: 'tcp' | 'udp';
  TargetPort: number;
  PublishedPort?: number;
  PublishMode?: 'ingress' | 'host';
}

export interface ServiceCreateResponse {
  ID: string;
}

/** `POST /sandboxes/create`. */
export interface SandboxCreateBody {
  Name: string;
  NetnsPath?: string;
  Labels?: Record<string, string>;
}

/** One network a sandbox is on, keyed by network id in `SandboxJson.Networks`. */
export interface SandboxNetworkJson {
  NetworkID: string;
  EndpointID: string;
  EndpointName: string;
  InterfaceName: string;
  /** The other end of the interface in the daemon host's namespace (a bridge network's veth); empty when there is none there. */
  HostInterfaceName: string;
  MacAddress: string;
  IPv4Address: string;
  IPv6Address: string;
  Aliases: string[];
}

export interface SandboxJson {
  Id: string;
  Name: string;
  NetnsPath: string;
  OwnsNetns: boolean;
  Created: string;
  Labels: Record<string, string>;
  Networks: Record<string, SandboxNetworkJson>;
  /** resolv.conf naming the embedded DNS; empty when no DNS serves the sandbox. */
  ResolvConfPath: string;
}

export interface VersionJson {
  Platform: { Name: string };
  Components: { Name: string; Version: string; Details: Record<string, string> }[];
  Version: string;
  ApiVersion: string;
  MinAPIVersion: string;
  GitCommit: string;
  GoVersion: string;
  Os: string;
  Arch: string;
  KernelVersion: string;
  BuildTime: string;
}

/**
 * `GET /info`: Docker's SystemInfo. The host, the network drivers and the
 * address pools are netctl's; images, storage, runtimes and resource
 * limits have the values of a daemon that has none, since netctl runs no
 * containers.
 */
export interface InfoJson {
  /** This host's id, which also names it in the cluster store. */
  ID: string;
  Name: string;
  /** Sandboxes; all of them count as running. */
  Containers: number;
  ContainersRunning: number;
  ContainersPaused: number;
  ContainersStopped: number;
  Images: number;
  Driver: string;
  DriverStatus: [string, string][];
  Plugins: { Volume: string[]; Network: string[]; Authorization: null; Log: string[] };
  MemoryLimit: boolean;
  SwapLimit: boolean;
  CpuCfsPeriod: boolean;
  CpuCfsQuota: boolean;
  CPUShares: boolean;
  CPUSet: boolean;
  PidsLimit: boolean;
  OomKillDisable: boolean;
  Debug: boolean;
  NFd: number;
  NGoroutines: number;
  SystemTime: string;
  LoggingDriver: string;
  CgroupDriver: string;
  NEventsListener: number;
  KernelVersion: string;
  OperatingSystem: string;
  OSVersion: string;
  OSType: 'linux';
  /** As `uname -m` gives it (x86_64, aarch64), as Docker reports it. */
  Architecture: string;
  IndexServerAddress: string;
  RegistryConfig: null;
  NCPU: number;
  MemTotal: number;
  /** The daemon's state directory; empty when the server was not told it. */
  DockerRootDir: string;
  HttpProxy: string;
  HttpsProxy: string;
  NoProxy: string;
  Labels: string[];
  ExperimentalBuild: boolean;
  ServerVersion: string;
  Runtimes: Record<string, never>;
  DefaultRuntime: string;
  Swarm: { NodeID: string; NodeAddr: string; LocalNodeState: 'inactive'; ControlAvailable: boolean; Error: string; RemoteManagers: null };
  LiveRestoreEnabled: boolean;
  Isolation: string;
  InitBinary: string;
  ContainerdCommit: { ID: string };
  RuncCommit: { ID: string };
  InitCommit: { ID: string };
  SecurityOptions: string[];
  /** The pools local networks take their subnets from when none is given. */
  DefaultAddressPools: { Base: string; Size: number }[];
  Warnings: string[];
}

export function toSandboxJson(sandbox: SandboxInfo): SandboxJson {
  const networks: Record<string, SandboxNetworkJson> = {};
  for (const endpoint of sandbox.endpoints) {
    networks[endpoint.networkId] = {
      NetworkID: endpoint.networkId,
      EndpointID: endpoint.id,
      EndpointName: endpoint.name,
      InterfaceName: endpoint.ifName ?? '',
      HostInterfaceName: sandbox.hostInterfaces[endpoint.id] ?? '',
      MacAddress: endpoint.macAddress,
      IPv4Address: endpoint.ipv4Address ?? '',
      IPv6Address: endpoint.ipv6Address ?? '',
      Aliases: [...endpoint.aliases],
    };
  }
  return {
    Id: sandbox.id,
    Name: sandbox.name,
    NetnsPath: sandbox.netnsPath,
    OwnsNetns: sandbox.ownsNetns,
    Created: sandbox.created,
    Labels: { ...sandbox.labels },
    Networks: networks,
    ResolvConfPath: sandbox.resolvConfPath ?? '',
  };
}

// ------------------------------------------------------------ body readers
// Docker clients send null for unset pointers and fields netctl has no use
// for (Scope, ConfigOnly, ConfigFrom…): null counts as absent, unknown
// fields are ignored, a field of the wrong type is a 400.

type JsonObject = Record<string, unknown>;

export function asObject(value: unknown, what: string): JsonObject {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new InvalidArgument(`${what} must be a JSON object`);
  }
  return value as JsonObject;
}

function optObject(body: JsonObject, field: string): JsonObject | undefined {
  const value = body[field];
  return value === undefined || value === null ? undefined : asObject(value, field);
}

function optString(body: JsonObject, field: string): string | undefined {
  const value = body[field];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string') throw new InvalidArgument(`${field} must be a string`);
  return value;
}

function optBool(body: JsonObject, field: string): boolean | undefined {
  const value = body[field];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'boolean') throw new InvalidArgument(`${field} must be a boolean`);
  return value;
}

function optStringMap(body: JsonObject, field: string): Record<string, string> | undefined {
  const object = optObject(body, field);
  if (object === undefined) return undefined;
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(object)) {
    if (typeof v !== 'string') throw new InvalidArgument(`${field}.${k} must be a string`);
    out[k] = v;
  }
  return out;
}

function optStringArray(body: JsonObject, field: string): string[] | undefined {
  const value = body[field];
  if (value === undefined || value === null) return undefined;
  if (!Array.isArray(value) || !value.every((v) => typeof v === 'string')) {
    throw new InvalidArgument(`${field} must be an array of strings`);
  }
  return value as string[];
}

function optArray(body: JsonObject, field: string): unknown[] | undefined {
  const value = body[field];
  if (value === undefined || value === null) return undefined;
  if (!Array.isArray(value)) throw new InvalidArgument(`${field} must be an array`);
  return value;
}

function requiredString(body: JsonObject, field: string): string {
  const value = optString(body, field);
  if (value === undefined) throw new InvalidArgument(`${field} is required`);
  return value;
}

/** Copies the defined entries only: the controller's request types use exactOptionalPropertyTypes. */
function defined<T extends object>(entries: { [K in keyof T]: T[K] | undefined }): T {
  const out: Partial<T> = {};
  for (const [k, v] of Object.entries(entries)) {
    if (v !== undefined) (out as Record<string, unknown>)[k] = v;
  }
  return out as T;
}

/** An empty string means "not given" in Docker's bodies (Go zero values). */
function nonEmpty(value: string | undefined): string | undefined {
  return value === '' ? undefined : value;
}

export function readNetworkCreate(raw: unknown): NetworkCreateRequest {
  const body = asObject(raw, 'request body');
  const ipamBody = optObject(body, 'IPAM');
  let ipam: NetworkCreateRequest['ipam'];
  if (ipamBody !== undefined) {
    const config = optArray(ipamBody, 'Config')?.map((entry, i) => {
      const pool = asObject(entry, `IPAM.Config[${i}]`);
      const aux = optStringMap(pool, 'AuxiliaryAddresses');
      return defined<PoolRequest>({
        subnet: nonEmpty(optString(pool, 'Subnet')),
        ipRange: nonEmpty(optString(pool, 'IPRange')),
        gateway: nonEmpty(optString(pool, 'Gateway')),
        auxAddresses: aux !== undefined && Object.keys(aux).length > 0 ? aux : undefined,
      });
    });
    ipam = defined<NonNullable<NetworkCreateRequest['ipam']>>({
      driver: nonEmpty(optString(ipamBody, 'Driver')),
      config,
      options: optStringMap(ipamBody, 'Options'),
    });
  }
  const configFrom = optObject(body, 'ConfigFrom');
  return defined<NetworkCreateRequest>({
    name: requiredString(body, 'Name'),
    scope: nonEmpty(optString(body, 'Scope')),
    configOnly: optBool(body, 'ConfigOnly'),
    configFrom: configFrom === undefined ? undefined : nonEmpty(optString(configFrom, 'Network')),
    driver: nonEmpty(optString(body, 'Driver')),
    internal: optBool(body, 'Internal'),
    attachable: optBool(body, 'Attachable'),
    ingress: optBool(body, 'Ingress'),
    enableIPv4: optBool(body, 'EnableIPv4'),
    enableIPv6: optBool(body, 'EnableIPv6'),
    ipam,
    options: optStringMap(body, 'Options'),
    labels: optStringMap(body, 'Labels'),
  });
}

export function readNetworkConnect(raw: unknown): { container: string; options: ConnectOptions } {
  const body = asObject(raw, 'request body');
  const endpointConfig = optObject(body, 'EndpointConfig');
  const ipamConfig = endpointConfig === undefined ? undefined : optObject(endpointConfig, 'IPAMConfig');
  const aliases = endpointConfig === undefined ? undefined : optStringArray(endpointConfig, 'Aliases');
  const driverOpts = endpointConfig === undefined ? undefined : optStringMap(endpointConfig, 'DriverOpts');
  return {
    container: requiredString(body, 'Container'),
    options: defined<ConnectOptions>({
      ipv4Address: ipamConfig === undefined ? undefined : nonEmpty(optString(ipamConfig, 'IPv4Address')),
      ipv6Address: ipamConfig === undefined ? undefined : nonEmpty(optString(ipamConfig, 'IPv6Address')),
      aliases: aliases !== undefined && aliases.length > 0 ? aliases : undefined,
      ifName: nonEmpty(driverOpts?.[IFNAME_DRIVER_OPT]),
      service: nonEmpty(optString(body, 'Service')),
    }),
  };
}

export function readNetworkDisconnect(raw: unknown): { container: string; force: boolean } {
  const body = asObject(raw, 'request body');
  return { container: requiredString(body, 'Container'), force: optBool(body, 'Force') ?? false };
}

export function readServiceCreate(raw: unknown): ServiceCreateRequest {
  const body = asObject(raw, 'request body');
  const taskTemplate = optObject(body, 'TaskTemplate');
  const networks = (taskTemplate === undefined ? undefined : optArray(taskTemplate, 'Networks'))?.map((entry, i) =>
    requiredString(asObject(entry, `TaskTemplate.Networks[${i}]`), 'Target'),
  );
  const endpointSpec = optObject(body, 'EndpointSpec');
  const mode = endpointSpec === undefined ? undefined : nonEmpty(optString(endpointSpec, 'Mode'));
  if (mode !== undefined && mode !== 'vip' && mode !== 'dnsrr') throw new InvalidArgument(`invalid endpoint mode "${mode}": vip or dnsrr`);
  const ports = (endpointSpec === undefined ? undefined : optArray(endpointSpec, 'Ports'))?.map((entry, i) =>
    readPortConfig(asObject(entry, `EndpointSpec.Ports[${i}]`), `EndpointSpec.Ports[${i}]`),
  );
  return defined<ServiceCreateRequest>({
    name: requiredString(body, 'Name'),
    networks,
    endpointMode: mode,
    labels: optStringMap(body, 'Labels'),
    ports: ports !== undefined && ports.length > 0 ? ports : undefined,
  });
}

/** The JSON types of a PortConfig; the controller checks the values (range, protocol, mode), defaults the rest and picks a published port left out. */
function readPortConfig(body: JsonObject, where: string): PublishedPortRequest {
  const port = (field: string): number | undefined => {
    const value = body[field];
    // 0 is Go's zero value: not given.
    if (value === undefined || value === null || value === 0) return undefined;
    if (typeof value !== 'number') throw new InvalidArgument(`${where}.${field} must be a number`);
    return value;
  };
  const text = (field: string): string | undefined => {
    const value = body[field];
    if (value === undefined || value === null || value === '') return undefined;
    if (typeof value !== 'string') throw new InvalidArgument(`${where}.${field} must be a string`);
    return value;
  };
  const targetPort = port('TargetPort');
  if (targetPort === undefined) throw new InvalidArgument(`${where}.TargetPort is required`);
  return defined<PublishedPortRequest>({
    // Unchecked here: wantedPorts (cnm/ports.ts) refuses any other value, as it must for every caller.
    protocol: text('Protocol') as PublishedPortRequest['protocol'],
    targetPort,
    publishedPort: port('PublishedPort'),
    publishMode: text('PublishMode') as PublishedPortRequest['publishMode'],
  });
}

export function readSandboxCreate(raw: unknown): SandboxCreateRequest {
  const body = asObject(raw, 'request body');
  return defined<SandboxCreateRequest>({
    name: requiredString(body, 'Name'),
    netnsPath: nonEmpty(optString(body, 'NetnsPath')),
    labels: optStringMap(body, 'Labels'),
  });
}
