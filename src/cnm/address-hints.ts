/**
 * What this daemon knows of the addresses handed out on each network (see
 * AddressHints), kept apart from addresses.ts so the controller's context
 * can hold it without a cycle.
 */
import { Allocator } from './ipam.js';
import { Conflict } from '../errors.js';
import type { NetworkRecord } from '../records.js';
import { keys } from '../repository/keys.js';
import type { Store } from '../store/types.js';

/** The addresses handed out on a network, from their keys. */
async function takenAddresses(store: Store, networkId: string): Promise<string[]> {
  return (await store.list(keys.networkAddresses(networkId))).map((kv) => kv.key.slice(keys.networkAddresses(networkId).length));
}

/** Which families an endpoint gets an address of, and the addresses it asked for. */
interface Wanted {
  readonly ipv4?: boolean;
  readonly ipv6?: boolean;
  readonly ipv4Address?: string;
  readonly ipv6Address?: string;
}

/**
 * What this daemon knows of the addresses handed out on each network, so a
 * connect need not list and parse every address key of the network (that
 * made building N endpoints cost O(N²)). A hint only: the claim's
 * must-not-exist compare still decides. A failed compare, a pool that looks
 * full or a requested address that looks taken reads the keys again, and so
 * does anything after an error; addresses that other hosts released are seen
 * at that next read.
 */
export class AddressHints {
  readonly #allocators = new Map<string, Allocator>();

  /**
   * Allocates the endpoint's addresses: from the hint, or, with `reread` or
   * when the hint says no, from the network's address keys.
   */
  async allocate(
    store: Store,
    network: NetworkRecord,
    wanted: Wanted,
    reread: boolean,
  ): Promise<{ ipv4Address?: string; ipv6Address?: string }> {
    const cached = this.#allocators.get(network.id);
    if (cached !== undefined && !reread) {
      try {
        return allocateWith(cached, wanted);
      } catch (err) {
        this.#allocators.delete(network.id);
        if (!(err instanceof Conflict)) throw err;
      }
    }
    const allocator = Allocator.withTaken(network.ipam.config, await takenAddresses(store, network.id));
    this.#allocators.set(network.id, allocator);
    try {
      return allocateWith(allocator, wanted);
    } catch (err) {
      this.#allocators.delete(network.id);
      throw err;
    }
  }

  /** Addresses whose keys were deleted, free again for the next allocation here. */
  release(networkId: string, addresses: readonly string[]): void {
    const allocator = this.#allocators.get(networkId);
    for (const address of addresses) allocator?.release(address);
  }

  /** After a failure, or when the network is gone: the next allocation reads the keys. */
  forget(networkId: string): void {
    this.#allocators.delete(networkId);
  }
}

/** Allocates both families, or neither: a failure of the second gives the first back. */
function allocateWith(
  allocator: Allocator,
  wanted: Wanted,
): { ipv4Address?: string; ipv6Address?: string } {
  const ipv4Address = wanted.ipv4 === true ? allocator.allocate(4, wanted.ipv4Address) : undefined;
  try {
    const ipv6Address = wanted.ipv6 === true ? allocator.allocate(6, wanted.ipv6Address) : undefined;
    return { ...(ipv4Address !== undefined ? { ipv4Address } : {}), ...(ipv6Address !== undefined ? { ipv6Address } : {}) };
  } catch (err) {
    if (ipv4Address !== undefined) allocator.release(ipv4Address);
    throw err;
  }
}
