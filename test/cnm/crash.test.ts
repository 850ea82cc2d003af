/**
 * Crash and full-disk safety of the controller, at every step of every
 * operation. A "step" is a store transaction or a kernel call (driver,
 * namespace). A crash before step k is a process that dies there: step k
 * and everything after it never happen, the store and the kernel doubles
 * keep what the earlier steps did, and a new controller opens on them. A
 * full disk fails one store transaction and the process goes on; the user
 * then retries the same command. Either way the state must converge: no
 * orphan endpoint, no sandbox without a namespace, no address held twice
 * or lost, and the network can be removed at the end.
 */
import test from 'ava';
import type { ExecutionContext } from 'ava';
import { toDockerNetwork } from '../../src/api/docker.js';
import { Controller } from '../../src/cnm/controller.js';
import type { JoinRequest, LeaveRequest } from '../../src/cnm/driver.js';
import type { EndpointRecord, NetworkRecord, SandboxRecord } from '../../src/records.js';
import { MemoryStore } from '../../src/store/memory.js';
import type { Store, TxnRequest, TxnResult } from '../../src/store/types.js';
import { MemoryNamespaces, RecordingDriver } from './doubles.js';
import { silentLogger } from '../../src/log.js';

class Died extends Error {}

/** Counts steps; the one numbered `dieAt` and every later one throw, as in a killed process. */
class Power {
  steps = 0;
  dieAt = Number.POSITIVE_INFINITY;
  /** Fails only this transaction with ENOSPC, as a full disk would. */
  failTxnAt = Number.POSITIVE_INFINITY;
  txns = 0;

  step(): void {
    this.steps++;
    if (this.steps >= this.dieAt) throw new Died('killed');
  }
}

class CrashingStore implements Store {
  constructor(
    private readonly inner: Store,
    private readonly power: Power,
  ) {}
  get(key: string) {
    if (this.power.steps >= this.power.dieAt) return Promise.reject(new Died('killed'));
    return this.inner.get(key);
  }
  list(prefix: string) {
    if (this.power.steps >= this.power.dieAt) return Promise.reject(new Died('killed'));
    return this.inner.list(prefix);
  }
  async txn(request: TxnRequest): Promise<TxnResult> {
    this.power.step();
    this.power.txns++;
    if (this.power.txns === this.power.failTxnAt) throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
    return this.inner.txn(request);
  }
  watch(...args: Parameters<Store['watch']>) {
    return this.inner.watch(...args);
  }
  async close() {}
}

class CrashingDriver extends RecordingDriver {
  constructor(private readonly power: Power) {
    super();
  }
  override async createNetwork(network: NetworkRecord) {
    this.power.step();
    await super.createNetwork(network);
  }
  override async deleteNetwork(network: NetworkRecord) {
    this.power.step();
    await super.deleteNetwork(network);
  }
  override async join(request: JoinRequest) {
    this.power.step();
    await super.join(request);
  }
  override async leave(request: LeaveRequest) {
    this.power.step();
    await super.leave(request);
  }
}

class CrashingNamespaces extends MemoryNamespaces {
  constructor(private readonly power: Power) {
    super();
  }
  override async createNamed(name: string) {
    this.power.step();
    return super.createNamed(name);
  }
  override async removeNamed(name: string) {
    this.power.step();
    await super.removeNamed(name);
  }
}

interface World {
  readonly power: Power;
  readonly disk: MemoryStore;
  readonly driver: CrashingDriver;
  readonly namespaces: CrashingNamespaces;
  open(): Promise<Controller>;
}

function world(): World {
  const power = new Power();
  const disk = new MemoryStore();
  const driver = new CrashingDriver(power);
  const namespaces = new CrashingNamespaces(power);
  return {
    power,
    disk,
    driver,
    namespaces,
    open: () =>
      Controller.open({ store: new CrashingStore(disk, power), drivers: [driver], namespaces, logger: silentLogger }),
  };
}

async function records<T>(store: Store, prefix: string): Promise<T[]> {
  return (await store.list(prefix)).map((kv) => JSON.parse(kv.value) as T);
}

/** What a user would check after the daemon came back: nothing half-done, store and kernel agree. */
async function assertConverged(t: ExecutionContext, w: World, label: string, mayDetach: readonly string[]): Promise<void> {
  const endpoints = await records<EndpointRecord>(w.disk, 'endpoints/');
  const sandboxes = await records<SandboxRecord>(w.disk, 'sandboxes/');
  const sandboxIds = new Set(sandboxes.map((s) => s.id));
  for (const sandbox of sandboxes) {
    t.is(sandbox.pending, undefined, `${label}: sandbox ${sandbox.name} left pending`);
    t.true(w.namespaces.paths.has(sandbox.netnsPath), `${label}: sandbox ${sandbox.name} has no namespace`);
  }
  for (const endpoint of endpoints) {
    t.is(endpoint.pending, undefined, `${label}: endpoint ${endpoint.name} left pending`);
    // A detached endpoint is a state of its own only after a leave; anywhere else it is an orphan.
    const joinedToLiveSandbox = endpoint.sandboxId !== undefined && sandboxIds.has(endpoint.sandboxId);
    t.true(joinedToLiveSandbox || (endpoint.sandboxId === undefined && mayDetach.includes(endpoint.name)), `${label}: orphan endpoint ${endpoint.name}`);
  }
  t.deepEqual(
    [...w.driver.joined.keys()].sort(),
    endpoints.filter((e) => e.sandboxId !== undefined).map((e) => e.id).sort(),
    `${label}: the kernel and the store disagree on joined endpoints`,
  );
  const addresses = endpoints.map((e) => e.ipv4Address);
  t.is(new Set(addresses).size, addresses.length, `${label}: an address is held twice`);
  const namespaces = [...w.namespaces.paths].sort();
  t.deepEqual(namespaces, sandboxes.map((s) => s.netnsPath).sort(), `${label}: a namespace leaked`);
}

/** After convergence everything can be torn down, and the addresses were all released. */
async function assertCleanTeardown(t: ExecutionContext, controller: Controller, w: World, label: string): Promise<void> {
  for (const sandbox of await controller.listSandboxes()) await controller.removeSandbox(sandbox.id);
  for (const endpoint of await records<EndpointRecord>(w.disk, 'endpoints/')) await controller.deleteEndpoint(endpoint.networkId, endpoint.id);
  for (const network of (await controller.listNetworks()).map(toDockerNetwork)) if (network.Name !== 'net') await controller.removeNetwork(network.Id);
  // The lowest address is free again: nothing still holds it.
  await controller.createSandbox({ name: 'probe' });
  t.is((await controller.connect('net', 'probe')).ipv4Address, '10.9.0.2/24', `${label}: an address was not released`);
  await controller.removeSandbox('probe');
  await controller.removeNetwork('net');
  t.deepEqual(await controller.listNetworks(), [], label);
  t.deepEqual(await w.disk.list('endpoints/'), [], label);
  t.is(w.driver.joined.size, 0, label);
}

/** A network and two connected sandboxes, a and b; a gives the operations below something to undo. */
async function seed(w: World): Promise<Controller> {
  const controller = await w.open();
  await controller.createNetwork({ name: 'net', ipam: { config: [{ subnet: '10.9.0.0/24' }] } });
  await controller.createSandbox({ name: 'a' });
  await controller.createSandbox({ name: 'b' });
  await controller.connect('net', 'a');
  await controller.connect('net', 'b');
  return controller;
}

type Command = (c: Controller) => Promise<unknown>;

/**
 * Each operation is the commands a user runs, in order (a retry starts again
 * at the one that failed), and the endpoints it may leave detached.
 */
const operations: Record<string, { commands: Command[]; mayDetach?: string[] }> = {
  connect: { commands: [(c) => c.createSandbox({ name: 'c' }), (c) => c.connect('net', 'c')] },
  disconnect: { commands: [(c) => c.disconnect('net', 'a')] },
  'sandbox create': { commands: [(c) => c.createSandbox({ name: 'c' })] },
  'sandbox rm': { commands: [(c) => c.removeSandbox('a')] },
  'network rm': {
    commands: [(c) => c.createNetwork({ name: 'spare', ipam: { config: [{ subnet: '10.8.0.0/24' }] } }), (c) => c.removeNetwork('spare')],
  },
  leave: { commands: [(c) => c.leave('net', 'a'), (c) => c.deleteEndpoint('net', 'a')], mayDetach: ['a'] },
};

/** Runs the commands from `from`; resolves with the index of the one that failed, or undefined. */
async function runFrom(commands: Command[], controller: Controller, from = 0): Promise<number | undefined> {
  for (let i = from; i < commands.length; i++) {
    try {
      await commands[i]!(controller);
    } catch {
      return i;
    }
  }
  return undefined;
}

for (const [name, { commands, mayDetach = [] }] of Object.entries(operations)) {
  test(`a crash at any step of ${name} is finished or undone at the next start`, async (t) => {
    // How many steps the operation takes when nothing fails.
    const probe = world();
    const seeded = await seed(probe);
    const start = probe.power.steps;
    t.is(await runFrom(commands, seeded), undefined);
    const length = probe.power.steps - start;
    t.true(length > 0);

    for (let k = 1; k <= length; k++) {
      const w = world();
      const controller = await seed(w);
      w.power.dieAt = w.power.steps + k;
      t.not(await runFrom(commands, controller), undefined, `crash at step ${k}`);
      // The process is gone; the kernel and the store keep what happened before the crash.
      w.power.dieAt = Number.POSITIVE_INFINITY;
      const restarted = await w.open();
      await assertConverged(t, w, `${name}, crash at step ${k}`, mayDetach);
      await assertCleanTeardown(t, restarted, w, `${name}, crash at step ${k}`);
    }
  });

  test(`a failed store write in ${name} leaves a state the same command, run again, completes`, async (t) => {
    const probe = world();
    const seeded = await seed(probe);
    const start = probe.power.txns;
    t.is(await runFrom(commands, seeded), undefined);
    const txns = probe.power.txns - start;

    for (let k = 1; k <= txns; k++) {
      const w = world();
      const controller = await seed(w);
      w.power.failTxnAt = w.power.txns + k;
      const failed = await runFrom(commands, controller);
      // A write the change does not depend on (a sandbox's endpoint index) may fail without failing the command.
      if (failed !== undefined) {
        // The disk has room again; the user runs the command that failed, and the rest.
        t.is(await runFrom(commands, controller, failed), undefined, `${name}, write ${k} failed: the retry failed too`);
      }
      await assertConverged(t, w, `${name}, write ${k} failed`, mayDetach);
      await assertCleanTeardown(t, controller, w, `${name}, write ${k} failed`);
    }
  });
}
