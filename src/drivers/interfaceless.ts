/**
 * What the null and host drivers share: networks that put no interface in
 * a sandbox and take no addresses, of which Docker allows one each. They
 * act on no option, but refuse `encrypted`: a user who asked for
 * encryption must not believe it is on.
 */
import type { JoinRequest, LeaveRequest, NetworkDriver, NetworkSpec } from '../cnm/driver.js';
import { InvalidArgument } from '../errors.js';

export abstract class InterfacelessDriver implements NetworkDriver {
  abstract readonly name: string;
  readonly scope = 'local' as const;
  readonly usesIpam = false;
  readonly providesDefaultRoute = false;
  readonly options: ReadonlySet<string> = new Set();
  readonly makesInterfaces = false;
  readonly singleNetwork = true;

  /** Why encryption means nothing on this driver's network, for the refusal. */
  protected abstract readonly carriesNoTraffic: string;

  validate(network: NetworkSpec): void {
    if ('encrypted' in network.options) throw new InvalidArgument(`option "encrypted" is for overlay networks (-d overlay): ${this.carriesNoTraffic}`);
  }

  async createNetwork(): Promise<void> {}

  async deleteNetwork(): Promise<void> {}

  async join(_request: JoinRequest): Promise<void> {}

  async leave(_request: LeaveRequest): Promise<void> {}
}
