/**
 * libnetwork's remote plugin protocol as it arrives on the wire: the
 * requests dockerd sends to a network driver plugin (`/NetworkDriver.*`)
 * and an IPAM plugin (`/IpamDriver.*`), checked once here, and the names
 * of the options dockerd puts in them. Field names are Go's, as dockerd
 * marshals them (docker/libnetwork drivers/remote/api and
 * ipams/remote/api, Docker 20.10).
 */
import * as v from 'valibot';
import { InvalidArgument } from '../../errors.js';

/** What every answer is sent as; dockerd accepts v1 and newer. */
export const PLUGIN_CONTENT_TYPE = 'application/vnd.docker.plugins.v1+json';

/** The `-o` options of `docker network create`, inside CreateNetwork's Options. */
export const GENERIC_OPTIONS = 'com.docker.network.generic';
export const ENABLE_IPV6 = 'com.docker.network.enable_ipv6';
export const INTERNAL = 'com.docker.network.internal';
/** RequestAddress's Options say which address is the network's gateway. */
export const REQUEST_ADDRESS_TYPE = 'RequestAddressType';
export const GATEWAY_ADDRESS_TYPE = 'com.docker.network.gateway';
/** ProgramExternalConnectivity's Options: `docker run -p` bindings. */
export const PORT_MAP = 'com.docker.network.portmap';

/** netctl's own `-o` options of a Docker network, read by the plugin and not passed to the driver. */
export const DRIVER_OPTION = 'netctl.driver';
export const NETWORK_OPTION = 'netctl.network';

const id = v.pipe(v.string(), v.regex(/^[0-9a-f]{64}$/, 'is not 64 lowercase hex digits'));
/** Go marshals a nil map or slice as null. */
const anyMap = v.nullish(v.record(v.string(), v.unknown()), {});
const stringMap = v.nullish(v.record(v.string(), v.string()), {});

const ipamData = v.looseObject({
  AddressSpace: v.optional(v.string(), ''),
  Pool: v.string(),
  Gateway: v.optional(v.string(), ''),
  AuxAddresses: v.nullish(v.record(v.string(), v.string()), {}),
});

export const createNetworkRequest = v.looseObject({
  NetworkID: id,
  Options: anyMap,
  IPv4Data: v.nullish(v.array(ipamData), []),
  IPv6Data: v.nullish(v.array(ipamData), []),
});

export const networkRequest = v.looseObject({ NetworkID: id });

export const endpointRequest = v.looseObject({ NetworkID: id, EndpointID: id });

const endpointInterface = v.looseObject({
  Address: v.optional(v.string(), ''),
  AddressIPv6: v.optional(v.string(), ''),
  MacAddress: v.optional(v.string(), ''),
});

export const createEndpointRequest = v.looseObject({
  NetworkID: id,
  EndpointID: id,
  Interface: v.nullish(endpointInterface),
  Options: anyMap,
});

export const joinRequest = v.looseObject({
  NetworkID: id,
  EndpointID: id,
  SandboxKey: v.pipe(v.string(), v.minLength(1, 'is empty')),
  Options: anyMap,
});

export const externalConnectivityRequest = v.looseObject({ NetworkID: id, EndpointID: id, Options: anyMap });

export const requestPoolRequest = v.looseObject({
  AddressSpace: v.optional(v.string(), ''),
  Pool: v.optional(v.string(), ''),
  SubPool: v.optional(v.string(), ''),
  Options: stringMap,
  V6: v.optional(v.boolean(), false),
});

export const releasePoolRequest = v.looseObject({ PoolID: v.pipe(v.string(), v.minLength(1, 'is empty')) });

export const requestAddressRequest = v.looseObject({
  PoolID: v.pipe(v.string(), v.minLength(1, 'is empty')),
  Address: v.optional(v.string(), ''),
  Options: stringMap,
});

export const releaseAddressRequest = v.looseObject({
  PoolID: v.pipe(v.string(), v.minLength(1, 'is empty')),
  Address: v.pipe(v.string(), v.minLength(1, 'is empty')),
});

/** Checks a request body against its schema; InvalidArgument names the call and the first bad field. */
export function readRequest<S extends v.GenericSchema>(call: string, schema: S, body: unknown): v.InferOutput<S> {
  const result = v.safeParse(schema, body);
  if (result.success) return result.output;
  const issue = result.issues[0];
  const path = issue === undefined ? '' : v.getDotPath(issue);
  throw new InvalidArgument(`${call}: ${path === null || path === '' ? 'request' : path} ${issue?.message ?? 'is malformed'}`);
}

/** CreateEndpoint's answer: only what the driver chose, never what dockerd already gave. */
export interface EndpointInterfaceJson {
  Address?: string;
  AddressIPv6?: string;
  MacAddress?: string;
}

export interface JoinResponseJson {
  InterfaceName?: { SrcName: string; DstPrefix: string };
  Gateway?: string;
  GatewayIPv6?: string;
  StaticRoutes?: { Destination: string; RouteType: number; NextHop?: string }[];
  DisableGatewayService?: boolean;
}
