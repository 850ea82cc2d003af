/** Waiting for conditions, never for clocks: the suite runs on loaded machines. */

/** Polls `probe` every 10 ms until it gives a value; throws after `timeoutMs`. Resolves with the value and the time it took. */
export async function until<T>(
  what: string,
  probe: () => Promise<T | undefined> | T | undefined,
  timeoutMs: number,
): Promise<{ value: T; ms: number }> {
  const start = performance.now();
  for (;;) {
    const value = await probe();
    if (value !== undefined) return { value, ms: performance.now() - start };
    if (performance.now() - start > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Like `until`, resolving with the value alone. */
export async function waitFor<T>(what: string, probe: () => Promise<T | undefined> | T | undefined, timeoutMs = 30_000): Promise<T> {
  return (await until(what, probe, timeoutMs)).value;
}
