/**
 * A store that can be cut off, as etcd is in an outage: while `down`, every
 * call fails with Unavailable (EtcdStore's error after its timeout); watches
 * stay, as etcd3's resume when the cluster is back. With `takesTurns`, each
 * call first waits a turn of the event loop, as a store on disk or across
 * the network does, so that concurrent operations interleave as they do
 * against the real stores.
 */
import { Unavailable } from '../../src/errors.js';
import { MemoryStore } from '../../src/store/memory.js';
import type { Store, TxnRequest } from '../../src/store/types.js';

export class CuttableStore implements Store {
  down = false;
  /** Calls made, so a test can tell whether one reached the store. */
  calls = 0;
  constructor(
    readonly inner = new MemoryStore(),
    private readonly takesTurns = false,
  ) {}
  private async check(): Promise<void> {
    this.calls++;
    if (this.takesTurns) await new Promise((resolve) => setImmediate(resolve));
    if (this.down) throw new Unavailable('cannot reach etcd at etcd://198.18.0.254:2379');
  }
  async get(key: string) {
    await this.check();
    return this.inner.get(key);
  }
  async list(prefix: string) {
    await this.check();
    return this.inner.list(prefix);
  }
  async txn(request: TxnRequest) {
    await this.check();
    return this.inner.txn(request);
  }
  watch(prefix: string, onEvent: Parameters<Store['watch']>[1]) {
    return this.inner.watch(prefix, onEvent);
  }
  async close() {}
}
