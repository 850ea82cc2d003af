/**
 * netctl as dockerd's network driver (`docker network create -d netctl`).
 * Each Docker network is backed by a netctl network, each Docker endpoint
 * by a netctl endpoint with Docker's EndpointID, each Docker sandbox by a
 * handoff sandbox: netctl's driver leaves the interface in the host's
 * namespace and dockerd moves it into the container, sets its addresses
 * and its default route (libnetwork's remote driver model).
 *
 * Docker networks of a plugin are local to each dockerd, so an overlay
 * spanning hosts is one netctl network that each host's Docker network
 * names with `-o netctl.network=NAME`: the first creates it, the others
 * use it, and the last one removed removes it. Which Docker networks use
 * which netctl network is kept in the netctl network's own store (the
 * cluster store for an overlay), so every host sees every user.
 */
import { basename } from 'node:path';
import { createHash } from 'node:crypto';
import type { Controller } from '../../cnm/controller.js';
import type { NetworkView } from '../../cnm/types.js';
import { Conflict, InvalidArgument, NetctlError, NotFound } from '../../errors.js';
import type { EndpointRecord, NetworkRecord } from '../../records.js';
import type { Store } from '../../store/types.js';
import { SerialByKey } from '../../limit.js';
import {
  DRIVER_OPTION,
  ENABLE_IPV6,
  type EndpointInterfaceJson,
  GENERIC_OPTIONS,
  INTERNAL,
  type JoinResponseJson,
  NETWORK_OPTION,
  PORT_MAP,
  type createEndpointRequest,
  type createNetworkRequest,
  type endpointRequest,
  type externalConnectivityRequest,
  type joinRequest,
  type networkRequest,
} from './protocol.js';
import type * as v from 'valibot';

/** Label on the netctl networks the plugin made: only those are removed with their last Docker network. */
export const DOCKER_MANAGED_LABEL = 'netctl.docker.managed';
/** Label on handoff sandboxes: the SandboxKey dockerd gave, for people reading `netctl sandbox ls`. */
const SANDBOX_KEY_LABEL = 'netctl.docker.sandbox-key';
const NETWORKS = 'docker-plugin/networks/';
const USERS = 'docker-plugin/users/';

/** Docker network id → the netctl network behind it, in the local store. */
interface NetworkMapping {
  readonly networkId: string;
  readonly name: string;
}

export interface DockerNetworkHost {
  readonly controller: Controller;
  readonly localStore: Store;
  /** Where global networks live; absent without a cluster store. */
  readonly clusterStore?: Store;
}

export class DockerNetworks {
  /**
   * Joins and leaves of one container's sandbox, one at a time: a leave that
   * removes the sandbox with its last endpoint must not take an endpoint a
   * join of another network is putting in it meanwhile.
   */
  private readonly sandboxes = new SerialByKey();

  constructor(private readonly host: DockerNetworkHost) {}

  /**
   * Makes (or, for `-o netctl.network=NAME` naming one already made for
   * Docker with the same driver and subnets, uses) the netctl network behind
   * a Docker network. Again for a Docker network already backed: nothing.
   */
  async createNetwork(request: v.InferOutput<typeof createNetworkRequest>): Promise<void> {
    const { controller, localStore } = this.host;
    if ((await localStore.get(NETWORKS + request.NetworkID)) !== undefined) return;
    const generic = stringOptions(request.Options[GENERIC_OPTIONS]);
    const { [DRIVER_OPTION]: driver = 'bridge', [NETWORK_OPTION]: name = `docker-${request.NetworkID.slice(0, 12)}`, ...options } = generic;
    if (driver === 'host') {
      // Refused here rather than at every join: no container can be put on netctl's host network.
      throw new InvalidArgument(`${DRIVER_OPTION}=host: netctl's host network takes no containers; Docker's own --network host gives a container the host's namespace`);
    }
    // Docker's null IPAM gives 0.0.0.0/0 (::/0): no addresses at all.
    const addressed = (data: { Pool: string }) => data.Pool !== '0.0.0.0/0' && data.Pool !== '::/0';
    const pools = [...request.IPv4Data, ...request.IPv6Data]
      .filter(addressed)
      .map((data) => ({
        subnet: data.Pool,
        ...(data.Gateway !== '' ? { gateway: bare(data.Gateway) } : {}),
        ...(Object.keys(data.AuxAddresses).length > 0
          ? { auxAddresses: Object.fromEntries(Object.entries(data.AuxAddresses).map(([k, a]) => [k, bare(a)])) }
          : {}),
      }));
    const enableIPv6 = request.Options[ENABLE_IPV6] === true;
    const internal = request.Options[INTERNAL] === true;
    const existing = await controller.inspectNetwork(name).catch((err: unknown) => {
      if (err instanceof NetctlError && err.code === 'NetworkNotFound') return undefined;
      throw err;
    });
    let network: NetworkRecord;
    let made = false;
    if (existing !== undefined) {
      network = sharedNetwork(existing, name, driver, pools.map((pool) => pool.subnet));
    } else {
      ({ network } = await controller.createNetwork({
        name,
        driver,
        internal,
        attachable: true,
        enableIPv6,
        enableIPv4: request.IPv4Data.some(addressed),
        ...(pools.length > 0 ? { ipam: { config: pools } } : {}),
        options,
        labels: { [DOCKER_MANAGED_LABEL]: 'true' },
      }));
      made = true;
    }
    try {
      const mapping: NetworkMapping = { networkId: network.id, name: network.name };
      await this.storeOf(network).txn({ put: [{ key: `${USERS}${network.id}/${request.NetworkID}`, value: await controller.hostId() }] });
      await localStore.txn({ put: [{ key: NETWORKS + request.NetworkID, value: JSON.stringify(mapping) }] });
    } catch (err) {
      if (made) await controller.removeNetwork(network.id).catch(() => undefined);
      throw err;
    }
  }

  /** Forgets a Docker network; its netctl network goes with the last Docker network using it. Unknown ids are no error. */
  async deleteNetwork(request: v.InferOutput<typeof networkRequest>): Promise<void> {
    const mapping = await this.mapping(request.NetworkID);
    if (mapping === undefined) return;
    const network = await this.network(mapping);
    if (network !== undefined) {
      const store = this.storeOf(network);
      const user = `${USERS}${network.id}/${request.NetworkID}`;
      const others = (await store.list(`${USERS}${network.id}/`)).filter((kv) => kv.key !== user);
      // The netctl network goes first: refused (endpoints left), this Docker network stays its user and nothing changed.
      if (others.length === 0 && network.labels[DOCKER_MANAGED_LABEL] === 'true') await this.host.controller.removeNetwork(network.id);
      await store.txn({ delete: [user] });
    }
    await this.host.localStore.txn({ delete: [NETWORKS + request.NetworkID] });
  }

  /**
   * Makes the endpoint with Docker's id and the addresses Docker's IPAM gave
   * (or netctl's, when Docker gave none); answers with what netctl chose.
   */
  async createEndpoint(request: v.InferOutput<typeof createEndpointRequest>): Promise<{ Interface: EndpointInterfaceJson }> {
    const network = await this.requireNetwork(request.NetworkID);
    const given = request.Interface ?? { Address: '', AddressIPv6: '', MacAddress: '' };
    const endpoint = await this.host.controller.createEndpoint(network.id, {
      name: endpointName(request.EndpointID),
      id: request.EndpointID,
      ...(given.Address !== '' ? { ipv4Address: inSubnet(given.Address, network) } : {}),
      ...(given.AddressIPv6 !== '' ? { ipv6Address: inSubnet(given.AddressIPv6, network) } : {}),
      ...(given.MacAddress !== '' ? { macAddress: given.MacAddress } : {}),
    });
    const chosen: EndpointInterfaceJson = {};
    if (given.MacAddress === '') chosen.MacAddress = endpoint.macAddress;
    if (given.Address === '' && endpoint.ipv4Address !== undefined) chosen.Address = endpoint.ipv4Address;
    if (given.AddressIPv6 === '' && endpoint.ipv6Address !== undefined) chosen.AddressIPv6 = endpoint.ipv6Address;
    return { Interface: chosen };
  }

  /** What `docker inspect` may show of the endpoint from the driver. */
  async endpointInfo(request: v.InferOutput<typeof endpointRequest>): Promise<{ Value: Record<string, string> }> {
    const network = await this.requireNetwork(request.NetworkID);
    const endpoint = await this.endpoint(network, request.EndpointID);
    if (endpoint === undefined) throw new NotFound(`endpoint ${request.EndpointID} not found in network ${network.name}`);
    return {
      Value: {
        'netctl.network': network.name,
        'netctl.endpoint': endpoint.name,
        ...(endpoint.ifName !== undefined ? { 'netctl.interface': endpoint.ifName } : {}),
      },
    };
  }

  /** Deletes the endpoint and gives its addresses back; one already gone is no error. */
  async deleteEndpoint(request: v.InferOutput<typeof endpointRequest>): Promise<void> {
    const mapping = await this.mapping(request.NetworkID);
    const network = mapping === undefined ? undefined : await this.network(mapping);
    if (network === undefined || (await this.endpoint(network, request.EndpointID)) === undefined) return;
    await this.host.controller.deleteEndpoint(network.id, request.EndpointID);
  }

  /**
   * Joins the endpoint to the handoff sandbox of Docker's SandboxKey (made
   * on its first endpoint): the interface waits in the host's namespace
   * under a name of its own for dockerd to move and rename it (ethN).
   */
  async join(request: v.InferOutput<typeof joinRequest>): Promise<JoinResponseJson> {
    const network = await this.requireNetwork(request.NetworkID);
    const sandboxName = handoffSandboxName(request.SandboxKey);
    return this.sandboxes.run(sandboxName, () => this.joinSandbox(network, sandboxName, request));
  }

  private async joinSandbox(network: NetworkRecord, sandboxName: string, request: v.InferOutput<typeof joinRequest>): Promise<JoinResponseJson> {
    const { controller } = this.host;
    const made = await controller.inspectSandbox(sandboxName).then(
      () => false,
      async (err: unknown) => {
        if (!(err instanceof NetctlError && err.code === 'SandboxNotFound')) throw err;
        await controller.createSandbox({ name: sandboxName, handoff: true, labels: { [SANDBOX_KEY_LABEL]: request.SandboxKey } });
        return true;
      },
    );
    let endpoint: EndpointRecord;
    try {
      endpoint = await controller.join(network.id, request.EndpointID, sandboxName, { ifName: handoffInterfaceName(request.EndpointID) });
    } catch (err) {
      if (made) await controller.removeSandbox(sandboxName).catch(() => undefined);
      throw err;
    }
    if (endpoint.ifName === undefined) return {};
    const response: JoinResponseJson = { InterfaceName: { SrcName: endpoint.ifName, DstPrefix: 'eth' } };
    // Docker sets the container's default route from the gateway the driver names; overlay names none, so
    // dockerd gives the container a second network for the way out (docker_gwbridge), as with its own overlay.
    if (endpoint.defaultGateway === true) {
      for (const pool of network.ipam.config) {
        if (pool.gateway === undefined) continue;
        if (pool.subnet.includes(':')) response.GatewayIPv6 ??= pool.gateway;
        else response.Gateway ??= pool.gateway;
      }
    }
    return response;
  }

  /** Takes the endpoint out of its sandbox; the sandbox goes with its last endpoint. Unknown ones are no error. */
  async leave(request: v.InferOutput<typeof endpointRequest>): Promise<void> {
    const { controller } = this.host;
    const mapping = await this.mapping(request.NetworkID);
    const network = mapping === undefined ? undefined : await this.network(mapping);
    const endpoint = network === undefined ? undefined : await this.endpoint(network, request.EndpointID);
    if (network === undefined || endpoint?.sandboxId === undefined) return;
    const sandboxName = (await controller.inspectSandbox(endpoint.sandboxId)).name;
    await this.sandboxes.run(sandboxName, async () => {
      await controller.leave(network.id, request.EndpointID);
      const sandbox = await controller.inspectSandbox(sandboxName).catch(() => undefined);
      if (sandbox?.handoff === true && sandbox.endpoints.length === 0) await controller.removeSandbox(sandbox.id);
    });
  }

  /** `docker run -p` through a netctl network: netctl publishes ports of services only, so it is refused, not ignored. */
  programExternalConnectivity(request: v.InferOutput<typeof externalConnectivityRequest>): void {
    const bindings = request.Options[PORT_MAP];
    if (Array.isArray(bindings) && bindings.length > 0) {
      throw new InvalidArgument(
        'netctl does not publish container ports (docker run -p) on its networks: publish them with a netctl service (netctl service create -p) instead',
      );
    }
  }

  private storeOf(network: NetworkRecord): Store {
    if (network.scope === 'local') return this.host.localStore;
    if (this.host.clusterStore === undefined) throw new Conflict(`network ${network.name} is global but this daemon has no cluster store`);
    return this.host.clusterStore;
  }

  private async mapping(dockerNetworkId: string): Promise<NetworkMapping | undefined> {
    const kv = await this.host.localStore.get(NETWORKS + dockerNetworkId);
    return kv === undefined ? undefined : (JSON.parse(kv.value) as NetworkMapping);
  }

  private async network(mapping: NetworkMapping): Promise<NetworkRecord | undefined> {
    return (await this.host.controller.inspectNetwork(mapping.networkId).catch(() => undefined))?.network;
  }

  private async requireNetwork(dockerNetworkId: string): Promise<NetworkRecord> {
    const mapping = await this.mapping(dockerNetworkId);
    if (mapping === undefined) throw new NotFound(`network ${dockerNetworkId} was not created through netctl's Docker plugin`);
    const network = await this.network(mapping);
    if (network === undefined) throw new NotFound(`netctl network ${mapping.name} behind Docker network ${dockerNetworkId.slice(0, 12)} is gone`);
    return network;
  }

  private async endpoint(network: NetworkRecord, endpointId: string): Promise<EndpointRecord | undefined> {
    const view = await this.host.controller.inspectNetwork(network.id);
    return view.endpoints.find((endpoint) => endpoint.id === endpointId);
  }
}

/** A netctl network another Docker network already uses must be the one this Docker network describes. */
function sharedNetwork(existing: NetworkView, name: string, driver: string, subnets: readonly string[]): NetworkRecord {
  const { network } = existing;
  if (network.labels[DOCKER_MANAGED_LABEL] !== 'true') {
    throw new Conflict(`netctl network ${name} exists and was not made through the Docker plugin: choose another ${NETWORK_OPTION}`);
  }
  if (network.driver !== driver) {
    throw new Conflict(`netctl network ${name} has driver ${network.driver}, not ${driver}`);
  }
  const have = network.ipam.config.map((pool) => pool.subnet).sort();
  const want = [...subnets].sort();
  if (want.length > 0 && want.join(',') !== have.join(',')) {
    throw new Conflict(`netctl network ${name} has subnets ${have.join(', ')}, not ${want.join(', ')}: give the same --subnet on every host`);
  }
  return network;
}

/** The `-o` options as strings: Docker sends what the CLI was given, all strings. */
function stringOptions(raw: unknown): Record<string, string> {
  if (raw === undefined || raw === null) return {};
  if (typeof raw !== 'object' || Array.isArray(raw)) throw new InvalidArgument(`CreateNetwork: Options.${GENERIC_OPTIONS} is not an object`);
  const options: Record<string, string> = {};
  for (const [name, value] of Object.entries(raw)) {
    if (typeof value !== 'string') throw new InvalidArgument(`CreateNetwork: option ${name} is not a string`);
    options[name] = value;
  }
  return options;
}

/** An address without its prefix length. */
function bare(cidr: string): string {
  return cidr.split('/')[0] ?? cidr;
}

/** Docker's address (CIDR) as netctl takes it; its prefix must be its subnet's. */
function inSubnet(cidr: string, network: NetworkRecord): string {
  const [address = '', prefix] = cidr.split('/');
  const pool = network.ipam.config.find((entry) => entry.subnet.includes(':') === address.includes(':'));
  if (pool !== undefined && prefix !== undefined && pool.subnet.split('/')[1] !== prefix) {
    throw new InvalidArgument(`address ${cidr} does not have the prefix length of subnet ${pool.subnet}`);
  }
  return address;
}

function endpointName(endpointId: string): string {
  return `docker-${endpointId.slice(0, 12)}`;
}

/** Unique in the host's namespace while it waits there (IFNAMSIZ allows 15 characters). */
function handoffInterfaceName(endpointId: string): string {
  return `nc${endpointId.slice(0, 12)}`;
}

/** One sandbox per SandboxKey: its last path element (the sandbox id), or a digest when that is not a name netctl takes. */
function handoffSandboxName(sandboxKey: string): string {
  const last = basename(sandboxKey);
  if (/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/.test(last)) return `docker-${last}`;
  return `docker-${createHash('sha256').update(sandboxKey).digest('hex').slice(0, 12)}`;
}
