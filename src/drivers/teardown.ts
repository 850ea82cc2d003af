/**
 * Teardown keeps going: every step runs however many fail before it, and
 * the failures are reported together, as the VTEP's stop reports its own.
 */
import { NetctlError } from '../errors.js';

export interface TeardownStep {
  /** Named before the step's failure in the message. */
  readonly what?: string;
  run(): Promise<void>;
}

/**
 * Runs the steps in order. If any failed, throws one Internal error whose
 * message is `what` and each failure's message, with the failures
 * themselves in an AggregateError as its cause.
 */
export async function tearDown(what: string, steps: readonly TeardownStep[]): Promise<void> {
  const errors: unknown[] = [];
  const messages: string[] = [];
  for (const step of steps) {
    try {
      await step.run();
    } catch (err) {
      errors.push(err);
      const message = err instanceof Error ? err.message : String(err);
      messages.push(step.what === undefined ? message : `${step.what}: ${message}`);
    }
  }
  if (errors.length > 0) {
    const message = `${what}: ${messages.join('; ')}`;
    throw new NetctlError('Internal', message, { cause: new AggregateError(errors, message) });
  }
}
