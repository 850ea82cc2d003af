/**
 * Keeps etcd's history bounded: etcd keeps every version of every key until
 * someone compacts, and netctl rewrites its records on every join and leave.
 * Every interval the compactor compacts to the revision it saw one interval
 * before, so at least one interval of history stays for watchers that
 * resume after a short outage (longer ones catch up by listing, see
 * EtcdStore.watch). Several daemons may compact the same cluster: a
 * compaction someone else already passed is not an error.
 */
import type { Etcd3 } from 'etcd3';
import type { Logger } from '../log.js';
import { reason } from './etcd-calls.js';

export interface EtcdCompactorOptions {
  readonly client: Etcd3;
  readonly intervalMs: number;
  readonly callTimeoutMs: number;
  readonly logger: Logger;
  /** The cluster's current revision. */
  readonly revision: () => Promise<number>;
}

export class EtcdCompactor {
  readonly #options: EtcdCompactorOptions;
  readonly #timer: NodeJS.Timeout;
  /** The revision seen at the previous tick: the next compaction's target. */
  #previous: number | undefined;
  #compacted = 0;
  #running = false;
  #lastProblem: string | undefined;

  constructor(options: EtcdCompactorOptions) {
    this.#options = options;
    this.#timer = setInterval(() => void this.tick(), options.intervalMs);
    // The history is kept for the daemon's sake; it must not keep a process alive.
    this.#timer.unref();
  }

  /** One step: compact to the revision of the previous step, then remember the current one. Exposed for tests. */
  async tick(): Promise<void> {
    if (this.#running) return;
    this.#running = true;
    try {
      const now = await this.#options.revision();
      const target = this.#previous;
      this.#previous = now;
      if (target === undefined || target <= this.#compacted) return;
      await this.#options.client.kv.compact({ revision: String(target) }, { deadline: Date.now() + this.#options.callTimeoutMs });
      this.#compacted = target;
      this.#lastProblem = undefined;
      this.#options.logger.debug(`etcd compacted to revision ${target}`);
    } catch (err) {
      const problem = reason(err);
      // Another daemon compacted further: the history is as short as wanted.
      if (problem.includes('compacted')) return;
      if (problem !== this.#lastProblem) this.#options.logger.warn(`etcd compaction failed: ${problem}`);
      this.#lastProblem = problem;
    } finally {
      this.#running = false;
    }
  }

  stop(): void {
    clearInterval(this.#timer);
  }
}
