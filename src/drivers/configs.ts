/**
 * A driver's typed configs, one per network, so options are parsed once:
 * `validate` turns a new network's options into its config, and every later
 * call takes it from here. A network this process did not validate (after a
 * restart, or one another host made) is parsed from its stored options when
 * first seen.
 */
import type { NetworkSpec } from '../cnm/driver.js';

export class NetworkConfigs<Config> {
  /**
   * The network validated last, until its first use: a create that fails
   * before the network is stored leaves nothing behind, since the next
   * validate takes its place.
   */
  private validatedLast: { readonly networkId: string; readonly config: Config } | undefined;
  private readonly byNetwork = new Map<string, Config>();

  constructor(private readonly parse: (network: NetworkSpec) => Config) {}

  /** Parses a new network's options; throws what `parse` throws. */
  validate(network: NetworkSpec): Config {
    const config = this.parse(network);
    this.validatedLast = { networkId: network.id, config };
    return config;
  }

  /** The config `validate` made for this new network (parsed now if validate was not called). */
  validated(network: NetworkSpec): Config {
    return this.validatedLast?.networkId === network.id ? this.validatedLast.config : this.validate(network);
  }

  /** Replaces a new network's config with what the driver added before it is stored (the overlay's VNI). */
  refine(networkId: string, config: Config): void {
    this.validatedLast = { networkId, config };
  }

  /** The config of a stored network. */
  of(network: NetworkSpec): Config {
    let config = this.byNetwork.get(network.id);
    if (config === undefined) {
      if (this.validatedLast?.networkId === network.id) {
        config = this.validatedLast.config;
        this.validatedLast = undefined;
      } else {
        config = this.parse(network);
      }
      this.byNetwork.set(network.id, config);
    }
    return config;
  }

  /** Drops a network's config; it is parsed again from the stored options if the network is used again. */
  forget(networkId: string): void {
    this.byNetwork.delete(networkId);
  }
}
