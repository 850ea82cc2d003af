/**
 * At most `max` tasks at a time; the others wait in order. The embedded DNS
 * and the load balancer each start work per sandbox (listeners, nft runs):
 * a start with thousands of sandboxes would otherwise queue thousands of
 * operations in libuv's four threads or thousands of processes at once,
 * ahead of the API's own.
 */
export class ConcurrencyLimit {
  private running = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(private readonly max: number) {}

  async run<T>(task: () => Promise<T>): Promise<T> {
    if (this.running < this.max) this.running++;
    else await new Promise<void>((resolve) => this.waiting.push(resolve));
    try {
      return await task();
    } finally {
      // The slot goes straight to the next waiting task, or is given back.
      const next = this.waiting.shift();
      if (next !== undefined) next();
      else this.running--;
    }
  }
}

/**
 * Tasks of one key run one at a time, in the order they came; tasks of
 * different keys do not wait for each other. A task's failure does not
 * hold up the next.
 */
export class SerialByKey {
  private readonly tails = new Map<string, Promise<void>>();

  run<T>(key: string, task: () => Promise<T>): Promise<T> {
    const result = (this.tails.get(key) ?? Promise.resolve()).then(task);
    const tail = result.then(
      () => undefined,
      () => undefined,
    );
    this.tails.set(key, tail);
    // The last task of a key takes the key with it, so keys that come and go leave nothing behind.
    void tail.then(() => {
      if (this.tails.get(key) === tail) this.tails.delete(key);
    });
    return result;
  }
}
