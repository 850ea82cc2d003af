/**
 * What the controller's parts share. Each part (networks, endpoints,
 * sandboxes, restore…) is a set of functions over one ControllerContext;
 * controller.ts owns the context and runs one change at a time, so the
 * functions here and in the parts assume no other change runs meanwhile.
 */
import { randomBytes } from 'node:crypto';
import type { AddressHints } from './address-hints.js';
import type { NetworkDriver } from './driver.js';
import type { NamespaceOps } from './namespaces.js';
import type { ControllerEvent } from './types.js';
import { Forbidden, NetctlError } from '../errors.js';
import type { Logger } from '../log.js';
import type { Balancing } from '../ingress/balancer.js';
import type { NetworkRecord, PortProtocol, SandboxRecord, Scope } from '../records.js';
import type { Repository } from '../repository/repository.js';

export interface ControllerContext {
  readonly records: Repository;
  /** The addresses this daemon knows to be handed out, per network: what spares a connect listing them. */
  readonly addresses: AddressHints;
  /** Loaded drivers by name. */
  readonly drivers: ReadonlyMap<string, NetworkDriver>;
  readonly namespaces: NamespaceOps;
  /** Driver used when a create request names none. */
  readonly defaultDriver: string;
  /** Names of the local networks that are Docker's predefined ones here (the daemon's `bridge`, `host`, `none`). */
  readonly predefinedNetworks: ReadonlySet<string>;
  /** Namespaces no sandbox may take (the daemon's own, the host's root one). */
  readonly reservedNamespaces: readonly string[];
  /** Where a sandbox's resolv.conf is, when something (the embedded DNS) writes one. */
  readonly resolvConfPath: ((sandbox: SandboxRecord) => string) | undefined;
  readonly logger: Logger;
  readonly now: () => Date;
  /** The services' load balancer of this host, once it runs. */
  readonly serviceRules: () => ServiceRules | undefined;
  /** Whether something on this host holds a port a service would publish; without it, no such check is made. */
  readonly portInUse?: PortInUse;
  /** Tells the controller's subscribers about a change that is done. */
  readonly emit: (event: DistributiveOmit<ControllerEvent, 'time'>) => void;
}

/**
 * The load balancer's side that the controller sees: it follows the records
 * on its own, and is told of each change so the change returns only once
 * this host's rules hold it.
 */
export interface ServiceRules {
  /** Reads these keys of the store of `scope` as they are now and applies them; resolves once this host's rules hold them. */
  reread(scope: Scope, keys: readonly string[]): Promise<void>;
  /** The service's virtual IPs with the tasks this host's rules balance each to. */
  balancing(serviceId: string): Promise<readonly Balancing[]>;
}

/** Answers whether a port of this host is taken (bound by some socket), for a service that would publish it. */
export type PortInUse = (protocol: PortProtocol, port: number) => Promise<boolean>;

/**
 * Brings the load balancer's rules in step with records just written. The
 * change is stored whatever happens here (the balancer's watch catches up
 * later), so a failure is only logged.
 */
export async function rulesCatchUp(context: ControllerContext, scope: Scope, recordKeys: readonly string[]): Promise<void> {
  const rules = context.serviceRules();
  if (rules === undefined) return;
  await bestEffort(context, 'load balancer', () => rules.reread(scope, recordKeys));
}

type DistributiveOmit<T, K extends keyof T> = T extends unknown ? Omit<T, K> : never;

/** 64 hex digits, as Docker's ids. */
export function newId(): string {
  return randomBytes(32).toString('hex');
}

/** RFC 3339 with nanosecond digits, as Docker prints `Created`. */
export function timestamp(date: Date): string {
  return date.toISOString().replace(/\.(\d{3})Z$/, '.$1000000Z');
}

export function driverOf(context: ControllerContext, network: NetworkRecord): NetworkDriver {
  const driver = context.drivers.get(network.driver);
  if (driver === undefined) throw new NetctlError('Internal', `driver ${network.driver} of network ${network.name} is not loaded`);
  return driver;
}

/** Refuses a configuration-only network (Docker's --config-only) where one that carries traffic is needed. */
export function refuseConfigOnly(network: NetworkRecord): void {
  if (network.configOnly === true) {
    throw new Forbidden(`network ${network.name} is configuration-only (--config-only): it takes no endpoints; make a network --config-from it`);
  }
}

/** Whether the network is one of this host's predefined networks, which cannot be removed. */
export function isPredefined(context: ControllerContext, network: NetworkRecord): boolean {
  return network.scope === 'local' && context.predefinedNetworks.has(network.name);
}

/** Internal networks, networks without addresses and drivers without a gateway never give a default route. */
export function givesDefaultRoute(context: ControllerContext, network: NetworkRecord): boolean {
  return !network.internal && network.ipam.config.length > 0 && driverOf(context, network).providesDefaultRoute;
}

/** Runs a step whose failure must not stop the caller (an undo, a restore); the failure is logged. */
export async function bestEffort(context: ControllerContext, what: string, fn: () => Promise<unknown>): Promise<void> {
  try {
    await fn();
  } catch (err) {
    context.logger.warn(`${what}: ${(err as Error).message}`);
  }
}

/**
 * The error of a step that did every part and had some fail (teardown,
 * prune): Internal as before, its message naming each failure, and the
 * failures themselves kept in an AggregateError as its cause.
 */
export function failedParts(summary: string, failures: readonly { what: string; error: unknown }[]): NetctlError {
  const parts = failures.map(({ what, error }) => `${what}: ${error instanceof Error ? error.message : String(error)}`);
  return new NetctlError('Internal', `${summary}: ${parts.join('; ')}`, {
    cause: new AggregateError(failures.map(({ error }) => error), summary),
  });
}

/** A record as it is once the change it was marked with is done. */
export function withoutPending<T extends { readonly pending?: unknown }>(record: T): Omit<T, 'pending'> {
  const { pending: _pending, ...rest } = record;
  return rest;
}
