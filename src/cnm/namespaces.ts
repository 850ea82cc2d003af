/**
 * What the controller needs from the kernel for sandboxes and of the host's
 * namespace, as an injected part so the controller can be tested with an
 * in-memory double.
 */
export interface NamespaceOps {
  /** Makes a named namespace (like `ip netns add`) with loopback up; returns its path. */
  createNamed(name: string): Promise<string>;
  /** Removes a named namespace made by createNamed; missing is not an error. */
  removeNamed(name: string): Promise<void>;
  /** True when the path is a network namespace that exists now. */
  exists(path: string): Promise<boolean>;
  /** True when both paths name one namespace (a sandbox must not take the host's own). */
  same(a: string, b: string): Promise<boolean>;
  /**
   * The subnets the host's namespace (where bridges live) routes or has
   * addresses in, in CIDR form with host bits possibly set: automatic pools
   * of local networks skip them, as Docker's do. Without it, none are skipped.
   */
  routedSubnets?(): Promise<string[]>;
}
