/**
 * Network names across scopes. A local network's name is claimed in the
 * cluster store (one key per host, so hosts may share local names), under a
 * compare that no global network has it, and a global network is made only
 * while no host claims its name. Both sides decide under one compare-and-swap.
 * While the cluster store is out of reach the local network is made all the
 * same (local work must not wait on the cluster) and claimed when the store
 * is back; should a global network have taken the name meanwhile, a warning
 * says so and lookups by that name report it as ambiguous.
 */
import { type ControllerContext, newId } from './context.js';
import { Conflict, NetctlError } from '../errors.js';
import { keys, parseLocalNameClaim } from '../repository/keys.js';

/** Claims a new local network's name in the cluster store; returns whether it was claimed now. */
export async function claimLocalName(context: ControllerContext, name: string, networkId: string): Promise<boolean> {
  const cluster = context.records.cluster;
  if (cluster === undefined) return false;
  let claim;
  try {
    claim = await cluster.txn({
      compare: [{ key: keys.networkName(name), modRevision: 0 }],
      put: [{ key: keys.localName(name, await hostId(context)), value: networkId }],
    });
  } catch (err) {
    if (!(err instanceof NetctlError) || err.code !== 'Unavailable') throw err;
    context.logger.warn(`network ${name}: the cluster store is out of reach; the name is claimed there when it is back`);
    return false;
  }
  if (!claim.succeeded) throw new Conflict(`network with name ${name} already exists`);
  return true;
}

export async function releaseLocalName(context: ControllerContext, name: string): Promise<void> {
  await context.records.cluster?.txn({ delete: [keys.localName(name, await hostId(context))] });
}

/**
 * Brings this host's claims in the cluster store in line with its local
 * networks: claims what was made while the store was away, drops claims a
 * crash or an outage left behind.
 */
export async function reconcileLocalNames(context: ControllerContext): Promise<void> {
  const cluster = context.records.cluster;
  if (cluster === undefined) return;
  const thisHost = await hostId(context);
  // Every local network counts: a record left out would lose its name's claim.
  const local = new Map((await context.records.localNetworks('throw')).map((network) => [network.name, network.id]));
  const claimed = new Set<string>();
  for (const kv of await cluster.list(keys.localNames)) {
    const claim = parseLocalNameClaim(kv.key);
    if (claim === undefined || claim.hostId !== thisHost) continue;
    if (local.get(claim.name) === kv.value) claimed.add(claim.name);
    else await cluster.txn({ delete: [kv.key] });
  }
  for (const [name, networkId] of local) {
    if (claimed.has(name)) continue;
    const claim = await cluster.txn({
      compare: [{ key: keys.networkName(name), modRevision: 0 }],
      put: [{ key: keys.localName(name, thisHost), value: networkId }],
    });
    if (!claim.succeeded) {
      context.logger.warn(`network ${name} exists on this host and across the cluster (made while the cluster store was out of reach); refer to them by ID`);
    }
  }
}

/** This host's id among those sharing the cluster store, made on first use. */
export async function hostId(context: ControllerContext): Promise<string> {
  const store = context.records.local;
  const existing = await store.get(keys.hostId);
  if (existing !== undefined) return existing.value;
  const id = newId();
  const made = await store.txn({ compare: [{ key: keys.hostId, modRevision: 0 }], put: [{ key: keys.hostId, value: id }] });
  if (made.succeeded) return id;
  return (await store.get(keys.hostId))?.value ?? id;
}
