/**
 * The data of the CNI protocol (spec 1.1.0): the request configuration a
 * runtime writes on stdin (§1, §3), CNI_ARGS (§2), and the results and
 * errors a plugin prints (§5), in each version this plugin speaks. Pure
 * functions: no I/O.
 *
 * A result passed on from an earlier plugin (`prevResult`) keeps every
 * field it came with, known or not: §5 says a plugin passes it through or
 * changes what it changed, so decoding checks the fields this plugin reads
 * and leaves the rest as they were.
 */

/** The spec versions this plugin speaks, oldest first (VERSION's `supportedVersions`). */
export const SUPPORTED_VERSIONS = ['0.4.0', '1.0.0', '1.1.0'] as const;
/** The version this plugin implements, answered when the input names none. */
export const IMPLEMENTED_VERSION = '1.1.0';

/** §5 "Error" codes; 100 and up are this plugin's own (999 as CNI's Go library uses it). */
export const ErrorCode = {
  incompatibleVersion: 1,
  invalidEnvironment: 4,
  ioFailure: 5,
  decodingFailure: 6,
  invalidNetworkConfig: 7,
  tryAgainLater: 11,
  notAvailable: 50,
  notAvailableLimitedConnectivity: 51,
  /** The daemon refused the operation (a conflict, a name in use); `details` has its message. */
  daemonRefused: 100,
  /** CHECK found the attachment other than its ADD left it. */
  checkFailed: 101,
  internal: 999,
} as const;

/** An error as §5 prints it; `msg` is short, `details` says what exactly. */
export class CniError extends Error {
  constructor(
    readonly code: number,
    msg: string,
    readonly details = '',
  ) {
    super(msg);
    this.name = 'CniError';
  }
}

// ------------------------------------------------------------------ versions

/** Compares two x.y.z versions numerically; a missing part counts as 0. */
export function compareVersions(a: string, b: string): number {
  const partsA = a.split('.').map(Number);
  const partsB = b.split('.').map(Number);
  for (let i = 0; i < 3; i++) {
    const difference = (partsA[i] ?? 0) - (partsB[i] ?? 0);
    if (difference !== 0) return difference;
  }
  return 0;
}

export function isSupportedVersion(version: string): boolean {
  return (SUPPORTED_VERSIONS as readonly string[]).includes(version);
}

// ------------------------------------------------------------------ results

/** One entry of `interfaces`; fields another plugin added stay. */
export interface CniInterface {
  readonly name: string;
  readonly mac?: string;
  /** Since 1.1.0. */
  readonly mtu?: number;
  /** The namespace path for an interface in the container; absent or empty on the host. */
  readonly sandbox?: string;
  readonly [field: string]: unknown;
}

export interface CniIpConfig {
  /** CIDR form. */
  readonly address: string;
  readonly gateway?: string;
  /** Index into `interfaces`. */
  readonly interface?: number;
  readonly [field: string]: unknown;
}

export interface CniRoute {
  readonly dst: string;
  readonly gw?: string;
  readonly [field: string]: unknown;
}

export interface CniDns {
  readonly nameservers?: readonly string[];
  readonly domain?: string;
  readonly search?: readonly string[];
  readonly options?: readonly string[];
}

/** An ADD result, independent of the version it is printed in. */
export interface CniResult {
  readonly interfaces: readonly CniInterface[];
  readonly ips: readonly CniIpConfig[];
  readonly routes: readonly CniRoute[];
  readonly dns?: CniDns;
}

type JsonObject = Record<string, unknown>;

function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function invalid(field: string, problem: string): CniError {
  return new CniError(ErrorCode.invalidNetworkConfig, 'invalid network configuration', `${field}: ${problem}`);
}

function optionalString(object: JsonObject, key: string, field: string): string | undefined {
  const value = object[key];
  if (value === undefined) return undefined;
  if (typeof value !== 'string') throw invalid(field, 'must be a string');
  return value;
}

function optionalStrings(object: JsonObject, key: string, field: string): string[] | undefined {
  const value = object[key];
  if (value === undefined || value === null) return undefined;
  if (!Array.isArray(value) || !value.every((entry) => typeof entry === 'string')) throw invalid(field, 'must be a list of strings');
  return value as string[];
}

function list(object: JsonObject, key: string, field: string): JsonObject[] {
  const value = object[key];
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value)) throw invalid(field, 'must be a list');
  return value.map((entry, i) => {
    if (!isObject(entry)) throw invalid(`${field}[${i}]`, 'must be an object');
    return entry;
  });
}

/** Reads a result (a prevResult) written in `version`; what this plugin does not read is kept as it is. */
export function decodeResult(raw: unknown, field = 'prevResult'): CniResult {
  if (!isObject(raw)) throw invalid(field, 'must be an object');
  const interfaces = list(raw, 'interfaces', `${field}.interfaces`).map((entry, i): CniInterface => {
    const name = optionalString(entry, 'name', `${field}.interfaces[${i}].name`);
    if (name === undefined) throw invalid(`${field}.interfaces[${i}].name`, 'is missing');
    optionalString(entry, 'mac', `${field}.interfaces[${i}].mac`);
    optionalString(entry, 'sandbox', `${field}.interfaces[${i}].sandbox`);
    return { ...entry, name };
  });
  const ips = list(raw, 'ips', `${field}.ips`).map((entry, i): CniIpConfig => {
    const address = optionalString(entry, 'address', `${field}.ips[${i}].address`);
    if (address === undefined || parseCidr(address) === undefined) throw invalid(`${field}.ips[${i}].address`, 'must be an address in CIDR form');
    optionalString(entry, 'gateway', `${field}.ips[${i}].gateway`);
    const index = entry['interface'];
    if (index !== undefined && (!Number.isInteger(index) || (index as number) < 0 || (index as number) >= interfaces.length)) {
      throw invalid(`${field}.ips[${i}].interface`, `must index the ${interfaces.length} interfaces`);
    }
    return { ...entry, address };
  });
  const routes = list(raw, 'routes', `${field}.routes`).map((entry, i): CniRoute => {
    const dst = optionalString(entry, 'dst', `${field}.routes[${i}].dst`);
    if (dst === undefined) throw invalid(`${field}.routes[${i}].dst`, 'is missing');
    optionalString(entry, 'gw', `${field}.routes[${i}].gw`);
    return { ...entry, dst };
  });
  const dnsRaw = raw['dns'];
  let dns: CniDns | undefined;
  if (dnsRaw !== undefined && dnsRaw !== null) {
    if (!isObject(dnsRaw)) throw invalid(`${field}.dns`, 'must be an object');
    dns = decodeDns(dnsRaw, `${field}.dns`);
  }
  return { interfaces, ips, routes, ...(dns !== undefined ? { dns } : {}) };
}

function decodeDns(raw: JsonObject, field: string): CniDns {
  const nameservers = optionalStrings(raw, 'nameservers', `${field}.nameservers`);
  const domain = optionalString(raw, 'domain', `${field}.domain`);
  const search = optionalStrings(raw, 'search', `${field}.search`);
  const options = optionalStrings(raw, 'options', `${field}.options`);
  return {
    ...(nameservers !== undefined ? { nameservers } : {}),
    ...(domain !== undefined ? { domain } : {}),
    ...(search !== undefined ? { search } : {}),
    ...(options !== undefined ? { options } : {}),
  };
}

/** Fields that 1.1.0 added; an older version's result must not carry them. */
const INTERFACE_FIELDS_SINCE_1_1 = ['mtu', 'socketPath', 'pciID'];
const ROUTE_FIELDS_SINCE_1_1 = ['mtu', 'advmss', 'priority', 'table', 'scope'];

function without(entry: JsonObject, fields: readonly string[]): JsonObject {
  return Object.fromEntries(Object.entries(entry).filter(([key]) => !fields.includes(key)));
}

/**
 * The result as `version` prints it: 0.4.0 gives every address its IP
 * `version` ("4"/"6"), which 1.0.0 removed; fields added in 1.1.0 (an
 * interface's `mtu`…) are left out of older versions.
 */
export function encodeResult(result: CniResult, version: string): JsonObject {
  const before110 = compareVersions(version, '1.1.0') < 0;
  const before100 = compareVersions(version, '1.0.0') < 0;
  const interfaces = result.interfaces.map((entry) => (before110 ? without(entry, INTERFACE_FIELDS_SINCE_1_1) : { ...entry }));
  const ips = result.ips.map((entry) => {
    const { version: _version, ...rest } = entry;
    return before100 ? { version: parseCidr(entry.address)?.family === 6 ? '6' : '4', ...rest } : rest;
  });
  const routes = result.routes.map((entry) => (before110 ? without(entry, ROUTE_FIELDS_SINCE_1_1) : { ...entry }));
  return {
    cniVersion: version,
    interfaces,
    ips,
    routes,
    ...(result.dns !== undefined ? { dns: result.dns } : {}),
  };
}

/**
 * `ours` after `previous`: a plugin run after another interface plugin adds
 * its interfaces, addresses (their indices moved past the earlier
 * interfaces) and routes, and its nameservers after the earlier ones.
 */
export function appendResult(previous: CniResult, ours: CniResult): CniResult {
  const offset = previous.interfaces.length;
  const nameservers = [...(previous.dns?.nameservers ?? [])];
  for (const server of ours.dns?.nameservers ?? []) if (!nameservers.includes(server)) nameservers.push(server);
  const dns = previous.dns === undefined ? ours.dns : { ...ours.dns, ...previous.dns, ...(nameservers.length > 0 ? { nameservers } : {}) };
  return {
    interfaces: [...previous.interfaces, ...ours.interfaces],
    ips: [...previous.ips, ...ours.ips.map((ip) => (ip.interface === undefined ? ip : { ...ip, interface: ip.interface + offset }))],
    routes: [...previous.routes, ...ours.routes],
    ...(dns !== undefined ? { dns } : {}),
  };
}

export function encodeError(error: CniError, version: string): JsonObject {
  return { cniVersion: version, code: error.code, msg: error.message, ...(error.details !== '' ? { details: error.details } : {}) };
}

export function encodeVersionResult(version: string): JsonObject {
  return { cniVersion: version, supportedVersions: [...SUPPORTED_VERSIONS] };
}

// ------------------------------------------------------------------ addresses

/** An address in CIDR form, split; undefined when it is not one. */
export function parseCidr(cidr: string): { address: string; prefix: number; family: 4 | 6 } | undefined {
  const slash = cidr.indexOf('/');
  if (slash < 0) return undefined;
  const address = cidr.slice(0, slash);
  const prefixText = cidr.slice(slash + 1);
  const family = ipFamily(address);
  if (family === undefined || !/^\d{1,3}$/.test(prefixText)) return undefined;
  const prefix = Number(prefixText);
  if (prefix > (family === 4 ? 32 : 128)) return undefined;
  return { address, prefix, family };
}

const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

/** 4 or 6 for an IPv4 or IPv6 address (without prefix), undefined otherwise. */
export function ipFamily(address: string): 4 | 6 | undefined {
  if (IPV4.test(address)) return 4;
  // URL's host parser validates IPv6 literals fully; zone ids are not addresses a network hands out.
  if (address.includes(':') && !address.includes('%')) {
    try {
      new URL(`http://[${address}]/`);
      return 6;
    } catch {
      return undefined;
    }
  }
  return undefined;
}

// ------------------------------------------------------------------ configuration

/** An attachment as GC's `cni.dev/valid-attachments` lists it. */
export interface Attachment {
  readonly containerID: string;
  readonly ifname: string;
}

/** The request configuration of one netctl-cni invocation. */
export interface NetConf {
  readonly cniVersion: string;
  /** The CNI network name (of the conflist). */
  readonly name: string;
  /** The netctl network to attach to, by name or id. */
  readonly network: string;
  /** `unix:///path` of the daemon's API; absent for NETCTL_HOST or the default. */
  readonly host?: string;
  /** Addresses asked for, from runtimeConfig `ips` or args `cni.ips` (CONVENTIONS.md), with or without prefix. */
  readonly ips?: readonly string[];
  /** DNS names for the container on this network (runtimeConfig `aliases`). */
  readonly aliases?: readonly string[];
  /** The network configuration's `dns` (domain, search, options) for the result. */
  readonly dns?: CniDns;
  readonly prevResult?: CniResult;
  /** GC only. */
  readonly validAttachments?: readonly Attachment[];
}

/** §1: a network name starts alphanumeric; the same pattern CNI_CONTAINERID follows. */
export const NAME_PATTERN = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;

/**
 * Reads stdin's request configuration. Code 6 when it is not JSON, 1 for a
 * version this plugin does not speak, 7 naming the field otherwise.
 */
export function parseNetConf(stdin: string): NetConf {
  let raw: unknown;
  try {
    raw = JSON.parse(stdin);
  } catch (err) {
    throw new CniError(ErrorCode.decodingFailure, 'failed to decode the network configuration on stdin', (err as Error).message);
  }
  if (!isObject(raw)) throw new CniError(ErrorCode.decodingFailure, 'failed to decode the network configuration on stdin', 'it is not a JSON object');
  const cniVersion = optionalString(raw, 'cniVersion', 'cniVersion');
  if (cniVersion === undefined || cniVersion === '') throw invalid('cniVersion', 'is missing');
  if (!isSupportedVersion(cniVersion)) {
    throw new CniError(
      ErrorCode.incompatibleVersion,
      'incompatible CNI version',
      `the configuration's cniVersion is ${cniVersion}; netctl-cni supports ${SUPPORTED_VERSIONS.join(', ')}`,
    );
  }
  const name = optionalString(raw, 'name', 'name');
  if (name === undefined || !NAME_PATTERN.test(name)) {
    throw invalid('name', name === undefined ? 'is missing' : `"${name}" must start with a letter or digit, then letters, digits, '_', '.' or '-'`);
  }
  const network = optionalString(raw, 'network', 'network');
  if (network === undefined || network === '') throw invalid('network', 'is missing: the netctl network (name or id) to attach containers to');
  const host = optionalString(raw, 'host', 'host');
  if (host !== undefined && !/^unix:\/\/\/./.test(host)) throw invalid('host', `"${host}" is not unix:///path/to/netctl.sock`);

  const runtimeConfig = raw['runtimeConfig'];
  if (runtimeConfig !== undefined && runtimeConfig !== null && !isObject(runtimeConfig)) throw invalid('runtimeConfig', 'must be an object');
  const runtime = isObject(runtimeConfig) ? runtimeConfig : {};
  const args = raw['args'];
  const argsCni = isObject(args) && isObject(args['cni']) ? args['cni'] : {};
  const ips = optionalStrings(runtime, 'ips', 'runtimeConfig.ips') ?? optionalStrings(argsCni, 'ips', 'args.cni.ips');
  for (const ip of ips ?? []) {
    if (ipFamily(ip) === undefined && parseCidr(ip) === undefined) throw invalid('ips', `"${ip}" is not an IP address`);
  }
  const aliases = decodeAliases(runtime['aliases'], name);

  const dnsRaw = raw['dns'];
  if (dnsRaw !== undefined && dnsRaw !== null && !isObject(dnsRaw)) throw invalid('dns', 'must be an object');
  const dns = isObject(dnsRaw) ? decodeDns(dnsRaw, 'dns') : undefined;

  const prevResultRaw = raw['prevResult'];
  const prevResult = prevResultRaw === undefined || prevResultRaw === null ? undefined : decodeResult(prevResultRaw);

  const attachmentsRaw = raw['cni.dev/valid-attachments'];
  let validAttachments: Attachment[] | undefined;
  if (attachmentsRaw !== undefined && attachmentsRaw !== null) {
    validAttachments = list(raw, 'cni.dev/valid-attachments', 'cni.dev/valid-attachments').map((entry, i) => {
      const containerID = optionalString(entry, 'containerID', `cni.dev/valid-attachments[${i}].containerID`);
      const ifname = optionalString(entry, 'ifname', `cni.dev/valid-attachments[${i}].ifname`);
      if (containerID === undefined || ifname === undefined) throw invalid(`cni.dev/valid-attachments[${i}]`, 'needs containerID and ifname');
      return { containerID, ifname };
    });
  }
  return {
    cniVersion,
    name,
    network,
    ...(host !== undefined ? { host } : {}),
    ...(ips !== undefined && ips.length > 0 ? { ips } : {}),
    ...(aliases !== undefined && aliases.length > 0 ? { aliases } : {}),
    ...(dns !== undefined ? { dns } : {}),
    ...(prevResult !== undefined ? { prevResult } : {}),
    ...(validAttachments !== undefined ? { validAttachments } : {}),
  };
}

/**
 * runtimeConfig `aliases`: CONVENTIONS.md has a list of names; Podman sends
 * a map of network name to names, of which this network's entry counts.
 */
function decodeAliases(raw: unknown, networkName: string): string[] | undefined {
  if (raw === undefined || raw === null) return undefined;
  const names = isObject(raw) ? raw[networkName] : raw;
  if (names === undefined || names === null) return undefined;
  if (!Array.isArray(names) || !names.every((entry) => typeof entry === 'string')) {
    throw invalid('runtimeConfig.aliases', 'must be a list of names (or a map of network name to names)');
  }
  return names as string[];
}

/**
 * CNI_ARGS: `KEY=VALUE` pairs separated by ';' (§2). A pair without '=' or
 * with an empty key is code 4; keys this plugin does not know are ignored.
 */
export function parseCniArgs(text: string | undefined): Map<string, string> {
  const pairs = new Map<string, string>();
  for (const pair of (text ?? '').split(';')) {
    if (pair === '') continue;
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new CniError(ErrorCode.invalidEnvironment, 'invalid CNI_ARGS', `"${pair}" is not KEY=VALUE`);
    pairs.set(pair.slice(0, eq), pair.slice(eq + 1));
  }
  return pairs;
}
