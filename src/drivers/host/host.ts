/**
 * The host driver: Docker's `host` network, which stands for the host's own
 * namespace. A sandbox is always a namespace of its own, so none can be on
 * it (connect and disconnect are refused, as Docker refuses them for
 * containers); the network is there so that lists show what Docker's show
 * and a runtime asking for it finds it. Like Docker's, it allows one network.
 */
import { InterfacelessDriver } from '../interfaceless.js';

export class HostDriver extends InterfacelessDriver {
  readonly name = 'host';
  readonly sharesHostNamespace = true;
  protected readonly carriesNoTraffic = "the host network is the host's own";
}
