/**
 * The null driver: endpoints exist in the model but get no interface and no
 * addresses (Docker's `none` network). Useful for sandboxes that a runtime
 * wires itself, and as the simplest driver in the compliance suite. Like
 * Docker's, it allows one network: there is nothing to tell two apart.
 */
import type { JoinRequest, LeaveRequest, NetworkDriver, NetworkSpec } from '../../cnm/driver.js';
import { InvalidArgument } from '../../errors.js';

export class NullDriver implements NetworkDriver {
  readonly name = 'null';
  readonly scope = 'local' as const;
  readonly usesIpam = false;
  readonly providesDefaultRoute = false;
  readonly options: ReadonlySet<string> = new Set();
  readonly makesInterfaces = false;
  readonly singleNetwork = true;

  validate(network: NetworkSpec): void {
    // Refused rather than kept: a user who asked for encryption must not believe it is on.
    if ('encrypted' in network.options) throw new InvalidArgument('option "encrypted" is for overlay networks (-d overlay): a null network carries no traffic');
  }

  async createNetwork(): Promise<void> {}

  async deleteNetwork(): Promise<void> {}

  async join(_request: JoinRequest): Promise<void> {}

  async leave(_request: LeaveRequest): Promise<void> {}
}
