/**
 * A network's IPAM state as one key per claim: each address handed out and
 * each endpoint name is a key of its own (keys.address, keys.endpointName),
 * created under a "must not exist" compare with the endpoint and deleted
 * with it. An endpoint change writes a few small keys whatever the size of
 * the network, and endpoints made on different hosts meet only when they
 * want the same address or name (libnetwork keeps a bitmap per pool for the
 * same reason).
 */
import type { ControllerContext } from './context.js';
import { type EndpointRecord, type NetworkRecord, bareAddress } from '../records.js';
import { keys } from '../repository/keys.js';
import type { Store } from '../store/types.js';

/** Keys a txn written by etcd may hold at most (etcd's --max-txn-ops default is 128); claims are written in parts below it. */
const CLAIMS_PER_TXN = 100;

/** The claims an endpoint holds: its name and its addresses, each a key whose value is the endpoint's id. */
export function claimsOf(networkId: string, endpoint: Pick<EndpointRecord, 'id' | 'name' | 'ipv4Address' | 'ipv6Address'>): { key: string; value: string }[] {
  const claims = [{ key: keys.endpointName(networkId, endpoint.name), value: endpoint.id }];
  for (const cidr of [endpoint.ipv4Address, endpoint.ipv6Address]) {
    if (cidr !== undefined) claims.push({ key: keys.address(networkId, bareAddress(cidr)), value: endpoint.id });
  }
  return claims;
}

/** The claims of the endpoint that still name it: what deleting it must delete. */
export async function heldClaims(store: Store, networkId: string, endpoint: EndpointRecord): Promise<string[]> {
  const held: string[] = [];
  for (const { key } of claimsOf(networkId, endpoint)) {
    if ((await store.get(key))?.value === endpoint.id) held.push(key);
  }
  return held;
}

/** Every claim key of a network, what removing it deletes with its records. */
export async function allClaims(store: Store, networkId: string): Promise<string[]> {
  const found = [...(await store.list(keys.networkAddresses(networkId))), ...(await store.list(keys.networkEndpointNames(networkId)))];
  return found.map((kv) => kv.key);
}

/**
 * Moves a network's IPAM state from the one value older netctl kept (the
 * allocator and every endpoint name under keys.networkState) to a key per
 * claim, taken from the endpoint records, then empties the value under a
 * compare: an endpoint change that older code made meanwhile makes it run
 * again at the next start instead. Claims go in parts, so etcd's limit on
 * operations per txn is never reached; each is idempotent.
 */
export async function migrateNetworkState(context: ControllerContext, network: NetworkRecord): Promise<void> {
  const current = await context.records.networkState(network);
  if (current === undefined || (current.state.allocator === undefined && current.state.endpoints === undefined)) return;
  const store = context.records.storeOf(network);
  const endpoints = await context.records.networkEndpoints(network, 'throw');
  const claims = endpoints.flatMap((endpoint) => claimsOf(network.id, endpoint));
  for (let start = 0; start < claims.length; start += CLAIMS_PER_TXN) {
    await store.txn({ put: claims.slice(start, start + CLAIMS_PER_TXN) });
  }
  const marked = await store.txn({
    compare: [{ key: keys.networkState(network.id), modRevision: current.modRevision }],
    put: [{ key: keys.networkState(network.id), value: '{}' }],
  });
  if (marked.succeeded) context.logger.info(`network ${network.name}: IPAM state moved to a key per address and endpoint name (${endpoints.length} endpoints)`);
}
