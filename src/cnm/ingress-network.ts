/**
 * Docker's `ingress` network: the overlay that carries the routing mesh's
 * connections between hosts (cnm/ingress.ts, ingress/mesh.ts), made on
 * demand by the first cluster service that publishes a port in ingress mode.
 * Apart from ingress.ts so that services.ts can make it without depending
 * on connections and sandboxes.
 */
import type { ControllerContext } from './context.js';
import { createNetwork, findIngressNetwork } from './networks.js';
import { Conflict, InvalidArgument } from '../errors.js';
import type { NetworkRecord } from '../records.js';

/** Docker's name for it. */
export const INGRESS_NETWORK = 'ingress';

/** The ingress network, made now if there is none: an overlay, so it needs the cluster store. */
export async function ensureIngressNetwork(context: ControllerContext): Promise<NetworkRecord> {
  const existing = await findIngressNetwork(context);
  if (existing !== undefined) return existing;
  if (!context.drivers.has('overlay')) {
    throw new InvalidArgument(
      'publishing a port in ingress mode for a service on cluster networks needs the overlay driver; start the daemon with --store etcd://HOST:PORT',
    );
  }
  try {
    return (await createNetwork(context, { name: INGRESS_NETWORK, driver: 'overlay', ingress: true })).network;
  } catch (err) {
    // Another host made it meanwhile.
    const made = err instanceof Conflict ? await findIngressNetwork(context) : undefined;
    if (made !== undefined) return made;
    throw err;
  }
}

