/**
 * The null driver: endpoints exist in the model but get no interface and no
 * addresses (Docker's `none` network). Useful for sandboxes that a runtime
 * wires itself, and as the simplest driver in the compliance suite. Like
 * Docker's, it allows one network: there is nothing to tell two apart.
 */
import { InterfacelessDriver } from '../interfaceless.js';

export class NullDriver extends InterfacelessDriver {
  readonly name = 'null';
  protected readonly carriesNoTraffic = 'a null network carries no traffic';
}
