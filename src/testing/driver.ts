/**
 * A driver that keeps its "kernel" in Sets and Maps: it records every call it
 * was asked to make and can be told to fail the next one, so a test can check
 * what the controller asked of a driver and that it rolls back after a failure.
 */
import type { JoinRequest, LeaveRequest, NetworkDriver, NetworkSpec } from '../cnm/driver.js';
import { InvalidArgument, NetctlError } from '../errors.js';
import type { NetworkRecord, Scope } from '../records.js';

/** The one option it acts on, so tests see a known option checked and others kept. */
const RECORDING_MTU_OPTION = 'com.docker.network.driver.mtu';

export type DriverCall = 'createNetwork' | 'deleteNetwork' | 'join' | 'leave';

export class RecordingDriver implements NetworkDriver {
  readonly usesIpam = true;
  readonly providesDefaultRoute: boolean = true;
  readonly calls: { call: DriverCall; name: string }[] = [];
  /** Networks and joined endpoints as the "kernel" holds them now. */
  readonly networks = new Set<string>();
  readonly joined = new Map<string, string>();
  /** sandbox name → network of the endpoint last told to set the default route */
  readonly defaultRoutes = new Map<string, string>();
  failNext: DriverCall | undefined;

  constructor(
    readonly name = 'bridge',
    readonly scope: Scope = 'local',
  ) {}

  readonly options: ReadonlySet<string> = new Set([RECORDING_MTU_OPTION]);

  validate(network: NetworkSpec): void {
    const mtu = network.options[RECORDING_MTU_OPTION];
    if (mtu !== undefined && !/^\d+$/.test(mtu)) throw new InvalidArgument(`invalid MTU "${mtu}" for option ${RECORDING_MTU_OPTION}`);
  }

  private step(call: DriverCall, name: string): void {
    this.calls.push({ call, name });
    if (this.failNext === call) {
      this.failNext = undefined;
      throw new NetctlError('Internal', `injected ${call} failure`);
    }
  }

  async createNetwork(network: NetworkRecord): Promise<void> {
    this.step('createNetwork', network.name);
    this.networks.add(network.id);
  }

  async deleteNetwork(network: NetworkRecord): Promise<void> {
    this.step('deleteNetwork', network.name);
    this.networks.delete(network.id);
  }

  async join(request: JoinRequest): Promise<void> {
    this.step('join', request.endpoint.name);
    this.joined.set(request.endpoint.id, `${request.sandbox.name}/${request.ifName}`);
    if (request.setDefaultRoute) this.defaultRoutes.set(request.sandbox.name, request.network.name);
  }

  async leave(request: LeaveRequest): Promise<void> {
    this.step('leave', request.endpoint.name);
    this.joined.delete(request.endpoint.id);
  }
}
