/**
 * The shared compliance suite every network driver runs, through the
 * controller as a user drives it. Drivers that carry traffic also supply
 * probes (addresses seen inside the sandbox, reachability), so the same
 * assertions check the real kernel for them.
 */
import test from 'ava';
import { toDockerNetwork } from '../../src/api/docker.js';
import type { Controller } from '../../src/cnm/controller.js';
import type { SandboxInfo } from '../../src/cnm/types.js';

export interface ComplianceEnv {
  readonly controller: Controller;
  readonly driver: string;
  /** The driver puts no interface in the sandbox (null): its endpoints have no interface name. */
  readonly noInterface?: true;
  /** Sandbox names are real namespace names for some drivers: make them unique. */
  sandboxName(base: string): string;
  /** A new controller over the same store and kernel, as after a daemon restart (closes the old one). */
  reopen(): Promise<Controller>;
  /** Addresses (CIDR) on the interface inside the sandbox; undefined when it has no such interface. */
  interfaceAddresses?(sandbox: SandboxInfo, ifName: string): Promise<string[] | undefined>;
  /** Whether `from` reaches `address` (one ping). */
  reaches?(from: SandboxInfo, address: string): Promise<boolean>;
  cleanup(): Promise<void>;
}

function bare(cidr: string | undefined): string {
  return (cidr ?? '').split('/')[0] ?? '';
}

export function driverCompliance(title: string, makeEnv: () => Promise<ComplianceEnv>): void {
  test.serial(`${title}: lifecycle from network create to remove`, async (t) => {
    const env = await makeEnv();
    t.teardown(() => env.cleanup());
    const { controller } = env;
    const network = toDockerNetwork(await controller.createNetwork({ name: 'compl', driver: env.driver }));
    t.is(network.Driver, env.driver);
    const a = await controller.createSandbox({ name: env.sandboxName('a') });
    const b = await controller.createSandbox({ name: env.sandboxName('b') });
    const epA = await controller.connect('compl', a.name);
    const epB = await controller.connect('compl', b.name);
    t.is(epA.ifName, env.noInterface ? undefined : 'eth0');

    const inspected = toDockerNetwork(await controller.inspectNetwork('compl'));
    t.deepEqual(Object.keys(inspected.Containers).sort(), [a.id, b.id].sort());
    t.is(inspected.Containers[a.id]?.EndpointID, epA.id);

    if (env.interfaceAddresses !== undefined) {
      const addresses = await env.interfaceAddresses(a, 'eth0');
      t.truthy(addresses, 'the sandbox has eth0');
      if (epA.ipv4Address !== undefined) t.true(addresses?.includes(epA.ipv4Address), `eth0 has ${epA.ipv4Address}`);
    }
    if (env.reaches !== undefined) t.true(await env.reaches(a, bare(epB.ipv4Address)), 'a reaches b');

    await t.throwsAsync(controller.removeNetwork('compl'), { message: /active endpoints/ });
    await controller.disconnect('compl', a.name);
    if (env.interfaceAddresses !== undefined) t.is(await env.interfaceAddresses(a, 'eth0'), undefined);
    await controller.removeSandbox(b.name);
    await controller.removeNetwork('compl');
    t.deepEqual(await controller.listNetworks(), []);
    t.is((await controller.listSandboxes()).length, 1);
  });

  test.serial(`${title}: a failed connect leaves everything as it was`, async (t) => {
    const env = await makeEnv();
    t.teardown(() => env.cleanup());
    const { controller } = env;
    await controller.createNetwork({ name: 'compl', driver: env.driver });
    const a = await controller.createSandbox({ name: env.sandboxName('a') });
    const b = await controller.createSandbox({ name: env.sandboxName('b') });
    const epA = await controller.connect('compl', a.name);
    const before = await controller.inspectNetwork('compl');
    if (epA.ipv4Address !== undefined) {
      await t.throwsAsync(controller.connect('compl', b.name, { ipv4Address: bare(epA.ipv4Address) }), {
        message: /already in use|already allocated/,
      });
    } else {
      await t.throwsAsync(controller.connect('compl', b.name, { ipv4Address: '10.0.0.2' }), { message: /assigns no addresses/ });
    }
    t.deepEqual(await controller.inspectNetwork('compl'), before);
    if (env.interfaceAddresses !== undefined) t.is(await env.interfaceAddresses(b, 'eth0'), undefined);
    await t.throwsAsync(controller.connect('compl', 'no-such-sandbox'), { message: /not found/ });
    t.deepEqual(await controller.inspectNetwork('compl'), before);
  });

  test.serial(`${title}: state and wiring survive a restart`, async (t) => {
    const env = await makeEnv();
    t.teardown(() => env.cleanup());
    await env.controller.createNetwork({ name: 'compl', driver: env.driver });
    const a = await env.controller.createSandbox({ name: env.sandboxName('a') });
    const b = await env.controller.createSandbox({ name: env.sandboxName('b') });
    await env.controller.connect('compl', a.name);
    const epB = await env.controller.connect('compl', b.name);
    const before = await env.controller.inspectNetwork('compl');
    const controller = await env.reopen();
    t.deepEqual(await controller.inspectNetwork('compl'), before);
    if (env.reaches !== undefined) t.true(await env.reaches(a, bare(epB.ipv4Address)), 'a still reaches b');
    if (env.interfaceAddresses !== undefined && epB.ipv4Address !== undefined) {
      t.deepEqual(
        (await env.interfaceAddresses(b, 'eth0'))?.filter((cidr) => cidr === epB.ipv4Address),
        [epB.ipv4Address],
        'the address is there once, not duplicated',
      );
    }
  });
}
