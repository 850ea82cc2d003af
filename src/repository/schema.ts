/**
 * Schemas of the values kept in the store. Records come back from stores
 * other hosts write too (the cluster store), so nothing read is trusted
 * because its key says what it is: `decodeRecord` checks it against its
 * schema and names the key when it does not fit.
 *
 * The record types stay in records.ts; each schema here is checked against
 * its type both ways at compile time (every field has an entry, and what the
 * schema accepts is the type). Fields the schema does not know are kept, not
 * refused: a host running a newer netctl may add some, and a read-modify-write
 * here must not drop them.
 */
import * as v from 'valibot';
import { StoreCorrupt } from '../errors.js';
import type {
  EndpointMode,
  EndpointPending,
  EndpointRecord,
  IpamPoolConfig,
  NetworkRecord,
  SandboxRecord,
  Scope,
  PortProtocol,
  PublishMode,
  PublishedPort,
  ServiceNetwork,
  ServiceRecord,
} from '../records.js';
import type { KeyValue } from '../store/types.js';

/** A schema whose output is exactly T. */
export type RecordSchema<T> = v.GenericSchema<unknown, T>;

/** One entry per field of T, optional fields included: a field added to T and not here fails to compile. */
type EntriesOf<T> = { readonly [K in keyof T]-?: v.GenericSchema };

/** A stored value that is not valid JSON or does not fit its schema. */
export class MalformedRecord extends StoreCorrupt {
  constructor(
    readonly key: string,
    reason: string,
    options?: { cause?: unknown },
  ) {
    super(`malformed record ${key}: ${reason}`, options);
  }
}

const stringMap = v.record(v.string(), v.string());

const OCTET = '(25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)';
const IPV4_CIDR = new RegExp(`^${OCTET}(\\.${OCTET}){3}(/(3[0-2]|[12]?\\d))?$`);
/** Hex groups, colons and an embedded IPv4 tail; prefix length up to 128. Loose on form, strict on the characters. */
const IPV6_CIDR = /^[0-9a-fA-F:]*:[0-9a-fA-F:.]*(\/(12[0-8]|1[01]\d|[1-9]?\d))?$/;
/**
 * Addresses other hosts wrote go into answers and into nftables scripts
 * (a VIP, a task's address): anything but an address, with an optional
 * prefix length, is refused here, before any reader sees it.
 */
const ipv4Cidr = v.pipe(v.string(), v.regex(IPV4_CIDR, 'not an IPv4 address'));
const ipv6Cidr = v.pipe(v.string(), v.regex(IPV6_CIDR, 'not an IPv6 address'));
/** The routing mesh writes ingress sandboxes' MACs and tasks' interface names into nft scripts too. */
const macAddress = v.pipe(v.string(), v.regex(/^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/, 'not a MAC address'));
/** Linux's rule (no '/', ':' or white space), kept to the characters netctl's own names use. */
const ifName = v.pipe(v.string(), v.regex(/^[A-Za-z0-9_.-]{1,15}$/, 'not an interface name'));

const scope = v.picklist(['local', 'global', 'swarm'] satisfies Scope[]);

const ipamPoolConfig: RecordSchema<IpamPoolConfig> = v.looseObject({
  subnet: v.string(),
  ipRange: v.exactOptional(v.string()),
  gateway: v.exactOptional(v.string()),
  auxAddresses: v.exactOptional(stringMap),
} satisfies EntriesOf<IpamPoolConfig>);

export const networkRecord: RecordSchema<NetworkRecord> = v.looseObject({
  id: v.string(),
  name: v.string(),
  driver: v.string(),
  scope,
  created: v.string(),
  internal: v.boolean(),
  attachable: v.boolean(),
  ingress: v.boolean(),
  enableIPv4: v.boolean(),
  enableIPv6: v.boolean(),
  ipam: v.looseObject({
    driver: v.string(),
    options: stringMap,
    config: v.array(ipamPoolConfig),
  } satisfies EntriesOf<NetworkRecord['ipam']>),
  options: stringMap,
  labels: stringMap,
  reservedKeys: v.exactOptional(v.array(v.string())),
  removing: v.exactOptional(v.boolean()),
  configOnly: v.exactOptional(v.boolean()),
  configFrom: v.exactOptional(v.string()),
} satisfies EntriesOf<NetworkRecord>);

export const endpointRecord: RecordSchema<EndpointRecord> = v.looseObject({
  id: v.string(),
  name: v.string(),
  networkId: v.string(),
  sandboxId: v.exactOptional(v.string()),
  macAddress,
  ipv4Address: v.exactOptional(ipv4Cidr),
  ipv6Address: v.exactOptional(ipv6Cidr),
  aliases: v.array(v.string()),
  ifName: v.exactOptional(ifName),
  defaultGateway: v.exactOptional(v.boolean()),
  pending: v.exactOptional(v.picklist(['connect', 'join', 'leave', 'disconnect'] satisfies EndpointPending[])),
  service: v.exactOptional(v.string()),
  ingressEntry: v.exactOptional(v.boolean()),
} satisfies EntriesOf<EndpointRecord>);

export const sandboxRecord: RecordSchema<SandboxRecord> = v.looseObject({
  id: v.string(),
  name: v.string(),
  netnsPath: v.string(),
  ownsNetns: v.boolean(),
  created: v.string(),
  labels: stringMap,
  pending: v.exactOptional(v.picklist(['create', 'remove'] satisfies NonNullable<SandboxRecord['pending']>[])),
  handoff: v.exactOptional(v.boolean()),
} satisfies EntriesOf<SandboxRecord>);

const serviceNetwork: RecordSchema<ServiceNetwork> = v.looseObject({
  networkId: v.string(),
  virtualIp: v.exactOptional(ipv4Cidr),
} satisfies EntriesOf<ServiceNetwork>);

const port = v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(65535));

const publishedPort: RecordSchema<PublishedPort> = v.looseObject({
  protocol: v.picklist(['tcp', 'udp'] satisfies PortProtocol[]),
  targetPort: port,
  publishedPort: port,
  publishMode: v.picklist(['ingress', 'host'] satisfies PublishMode[]),
} satisfies EntriesOf<PublishedPort>);

export const serviceRecord: RecordSchema<ServiceRecord> = v.looseObject({
  id: v.string(),
  name: v.string(),
  endpointMode: v.picklist(['vip', 'dnsrr'] satisfies EndpointMode[]),
  labels: stringMap,
  created: v.string(),
  scope,
  networks: v.array(serviceNetwork),
  ports: v.exactOptional(v.array(publishedPort)),
} satisfies EntriesOf<ServiceRecord>);

/**
 * The mark that a network takes endpoints (`keys.networkState`). Stores
 * written before addresses and endpoint names got a key each also hold them
 * here, all in one value; opening the controller moves them to their keys
 * and leaves the mark empty.
 */
export interface NetworkState {
  /** Before: the IPAM allocator's state, subnet → addresses handed out. */
  readonly allocator?: { allocated: Record<string, string[]> };
  /** Before: endpointId → endpoint name. */
  readonly endpoints?: Readonly<Record<string, string>>;
}

export const networkState: RecordSchema<NetworkState> = v.looseObject({
  allocator: v.exactOptional(v.looseObject({ allocated: v.record(v.string(), v.array(v.string())) })),
  endpoints: v.exactOptional(stringMap),
} satisfies EntriesOf<NetworkState>);

/** Who holds a subnet in the subnet table. */
export interface SubnetOwner {
  readonly networkId: string;
  readonly networkName: string;
}

/** Subnets in use by the networks of one store: subnet → owner (`keys.subnets`). */
export type SubnetTable = Readonly<Record<string, SubnetOwner>>;

export const subnetTable: RecordSchema<SubnetTable> = v.record(
  v.string(),
  v.looseObject({ networkId: v.string(), networkName: v.string() } satisfies EntriesOf<SubnetOwner>),
);

/** The value under `kv.key`, checked against its schema; MalformedRecord, naming the key, when it is not JSON or does not fit. */
export function decodeRecord<T>(kv: KeyValue, schema: RecordSchema<T>): T {
  let raw: unknown;
  try {
    raw = JSON.parse(kv.value);
  } catch (err) {
    throw new MalformedRecord(kv.key, `not JSON (${(err as Error).message})`, { cause: err });
  }
  const result = v.safeParse(schema, raw);
  if (!result.success) {
    const problems = result.issues.map((issue) => `${v.getDotPath(issue) ?? 'the value'}: ${issue.message}`);
    throw new MalformedRecord(kv.key, problems.join('; '));
  }
  return result.output;
}

/** The text a record is stored as. */
export function encodeRecord(record: unknown): string {
  return JSON.stringify(record);
}
