/**
 * The host driver: Docker's `host` network, which stands for the host's own
 * namespace. A sandbox is always a namespace of its own, so none can be on
 * it (connect and disconnect are refused, as Docker refuses them for
 * containers); the network is there so that lists show what Docker's show
 * and a runtime asking for it finds it. Like Docker's, it allows one network.
 */
import type { JoinRequest, LeaveRequest, NetworkDriver, NetworkSpec } from '../../cnm/driver.js';
import { InvalidArgument } from '../../errors.js';

export class HostDriver implements NetworkDriver {
  readonly name = 'host';
  readonly scope = 'local' as const;
  readonly usesIpam = false;
  readonly providesDefaultRoute = false;
  readonly makesInterfaces = false;
  readonly singleNetwork = true;
  readonly sharesHostNamespace = true;
  readonly options: ReadonlySet<string> = new Set();

  validate(network: NetworkSpec): void {
    // Refused rather than kept: a user who asked for encryption must not believe it is on.
    if ('encrypted' in network.options) throw new InvalidArgument('option "encrypted" is for overlay networks (-d overlay): the host network is the host\'s own');
  }

  async createNetwork(): Promise<void> {}

  async deleteNetwork(): Promise<void> {}

  async join(_request: JoinRequest): Promise<void> {}

  async leave(_request: LeaveRequest): Promise<void> {}
}
