/**
 * netctl as a runtime gets it from npm: `npm pack`, then `npm install` of the
 * tarball into a fresh project, then plain `node` (no tsx) and `tsc` there.
 * The scripts the fresh project runs are in ./consumer/. The installed
 * package's own `netctl daemon` runs in a namespace of this test's, and the
 * project's ApiClient drives it.
 *
 * Slow: npm compiles better-sqlite3 from source in the fresh project (its
 * prebuilt binaries come from GitHub, which CI cannot reach): about 2 minutes
 * on 2 CPUs.
 */
import { execFile } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import test from 'ava';
import { type RunningDaemon, startDaemon } from '../helpers/daemon.js';
import { addNetns, removeNetns, uniqueName } from '../helpers/kernel.js';

const exec = promisify(execFile);
const root = fileURLToPath(new URL('../..', import.meta.url));
const fixtures = fileURLToPath(new URL('./consumer/', import.meta.url));

/**
 * The environment without what an outer `npm test` exported (npm_config_*,
 * npm_package_*, INIT_CWD): the npm run here must see the fresh project, not
 * this repository.
 */
function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (!/^npm_/i.test(name) && name !== 'INIT_CWD') env[name] = value;
  }
  return { ...env, ...extra };
}

async function sh(command: string, args: readonly string[], cwd: string, extraEnv: Record<string, string> = {}): Promise<string> {
  try {
    const { stdout } = await exec(command, [...args], { cwd, env: cleanEnv(extraEnv), timeout: 8 * 60_000, maxBuffer: 64 << 20 });
    return stdout;
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string };
    throw new Error(`${command} ${args.join(' ')} (in ${cwd}) failed: ${e.message}\n${e.stdout ?? ''}\n${e.stderr ?? ''}`);
  }
}

interface Loaded {
  readonly label: string;
  readonly modules: string[];
  readonly dlopened: string[];
}

async function readLoaded(prefix: string): Promise<Loaded[]> {
  const text = await readFile(`${prefix}.json`, 'utf8');
  return text.split('\n').filter(Boolean).map((line) => JSON.parse(line) as Loaded);
}

/** The dependencies netctl/client must not load: the addon's callers, the stores' engines, netlink. */
const HEAVY = /\/netctl\/dist\/(sys|store|cnm|drivers|vxlan|dns)\/|\/node_modules\/(etcd3|better-sqlite3|netlink|@grpc|prom-client)\//;

test('npm pack, then npm install into a fresh project: plain node imports each entry, the installed daemon answers ApiClient, tsc checks a consumer', async (t) => {
  t.timeout(10 * 60_000);
  const work = await mkdtemp(join(tmpdir(), 'netctl-pack-'));
  const hostNs = uniqueName('pk');
  const sandbox = uniqueName('pks');
  let daemon: RunningDaemon | undefined;
  t.teardown(async () => {
    await daemon?.stop('SIGKILL');
    await removeNetns(sandbox);
    await removeNetns(hostNs);
    await rm(work, { recursive: true, force: true });
  });
  const timed = async <T>(what: string, step: () => Promise<T>): Promise<T> => {
    const started = Date.now();
    const result = await step();
    t.log(`${what}: ${((Date.now() - started) / 1000).toFixed(1)} s`);
    return result;
  };

  // The tarball: compiled JavaScript, types, maps and the sources they point at, a prebuilt addon; no tests, bench or demo.
  await timed('npm pack', () => sh('npm', ['pack', '--pack-destination', work], root));
  const tarball = (await readdir(work)).find((name) => /^netctl-.*\.tgz$/.test(name));
  if (tarball === undefined) throw new Error(`npm pack left no tarball in ${work}`);
  const files = (await sh('tar', ['tzf', join(work, tarball)], work)).split('\n').filter(Boolean).map((path) => path.replace(/^package\//, ''));
  for (const expected of [
    'package.json',
    'README.md',
    'bin/netctl.js',
    'dist/index.js',
    'dist/index.d.ts',
    'dist/index.js.map',
    'dist/client.js',
    'dist/client.d.ts',
    'dist/testing/index.js',
    'dist/cli/main.js',
    'src/index.ts',
    'binding.gyp',
    'native/addon.c',
    'scripts/install.mjs',
    'prebuilds/linux-x64/netctl_native.node',
  ]) {
    t.true(files.includes(expected), `the tarball has ${expected}`);
  }
  t.deepEqual(files.filter((path) => /^(test|bench|demo|build|node_modules)\//.test(path)), [], 'no tests, bench, demo or build tree');
  t.deepEqual(files.filter((path) => path.endsWith('.ts') && !path.endsWith('.d.ts') && !path.startsWith('src/')), [], 'TypeScript only as src/ (for the maps) and .d.ts');
  t.false(files.some((path) => path.endsWith('.tsbuildinfo')), 'no build state');

  // A fresh project with only netctl, typescript and @types/node, as the repository pins them.
  const project = join(work, 'project');
  await mkdir(project);
  await writeFile(join(project, 'package.json'), JSON.stringify({ name: 'runtime', version: '1.0.0', private: true, type: 'module' }));
  const own = JSON.parse(await readFile(join(root, 'package.json'), 'utf8')) as { version: string; devDependencies: Record<string, string> };
  const installed = await timed('npm install of the tarball', () =>
    sh(
      'npm',
      [
        'install',
        '--prefer-offline',
        '--no-audit',
        '--no-fund',
        '--foreground-scripts',
        join(work, tarball),
        `typescript@${own.devDependencies['typescript']}`,
        `@types/node@${own.devDependencies['@types/node']}`,
      ],
      project,
    ),
  );
  t.regex(installed, /netctl: using the prebuilt addon \(prebuilds\/linux-x64\)/, 'the install script took the shipped addon instead of compiling');
  for (const name of await readdir(fixtures)) await copyFile(join(fixtures, name), join(project, name));
  const node = (script: string, record: string, ...args: string[]) =>
    sh(process.execPath, ['--import', './record.mjs', script, ...args], project, { NETCTL_RECORD: join(work, record) });

  // netctl/client against the installed package's own daemon.
  const hostNsPath = await addNetns(hostNs);
  const stateDir = join(work, 'state');
  const socket = join(stateDir, 'netctl.sock');
  daemon = await timed('installed daemon start', () =>
    startDaemon({ netnsPath: hostNsPath, stateDir, socket, cli: join(project, 'node_modules', 'netctl', 'bin', 'netctl.js'), args: ['--dns', '127.0.0.1'] }),
  );
  const session = JSON.parse(await node('client.mjs', 'client', `unix://${socket}`, 'packnet', sandbox)) as {
    ping: { apiVersion: string };
    networkId: string;
    listed: string[];
    address: string | undefined;
    gone: boolean;
  };
  t.regex(session.networkId, /^[0-9a-f]{64}$/);
  t.deepEqual(session.listed, ['packnet']);
  t.regex(session.address ?? '', /^\d+\.\d+\.\d+\.\d+\/\d+$/, 'the sandbox got an address on the network');
  t.true(session.gone, 'the network is gone after removal');
  const [client] = await readLoaded(join(work, 'client'));
  t.deepEqual(client?.dlopened, [], 'netctl/client loads no native code');
  t.deepEqual(client?.modules.filter((url) => HEAVY.test(url)), [], 'netctl/client loads no store, kernel or etcd code');

  // The whole library: nothing native at import; the shipped prebuilt addon on first use.
  const full = JSON.parse(await node('full.mjs', 'full')) as { openHost: string; Controller: string; isNetns: boolean };
  t.deepEqual(full, { openHost: 'function', Controller: 'function', isNetns: true });
  const [imported, called] = await readLoaded(join(work, 'full'));
  t.deepEqual(imported?.dlopened, [], 'importing netctl loads no addon');
  t.deepEqual(called?.dlopened, [join(project, 'node_modules', 'netctl', 'prebuilds', 'linux-x64', 'netctl_native.node')]);

  // netctl/testing: a Controller on the in-memory doubles.
  const memory = JSON.parse(await node('testing.mjs', 'testing')) as { calls: string[]; address: string };
  t.deepEqual(memory, { calls: ['createNetwork', 'join'], address: '172.17.0.2/16' });

  // CommonJS: require(esm), which Node 20 has from 20.19.
  const required = JSON.parse(await sh(process.execPath, ['require.cjs'], project)) as Record<string, string>;
  t.deepEqual(required, { ApiClient: 'function', openHost: 'function', MemoryStore: 'function' });

  // Types: the consumer type-checks, strict and NodeNext, against the shipped .d.ts (skipLibCheck off).
  await timed('tsc --noEmit in the project', () => sh(join(project, 'node_modules', '.bin', 'tsc'), ['-p', '.'], project));
  t.pass('the consumer type-checks');

  // The CLI on the PATH starts from compiled JavaScript.
  const bin = join(project, 'node_modules', '.bin', 'netctl');
  t.is((await sh(bin, ['--version'], project)).trim(), `netctl version ${own.version}`);
  const times: number[] = [];
  for (let i = 0; i < 10; i++) {
    const started = process.hrtime.bigint();
    await sh(bin, ['--version'], project);
    times.push(Number(process.hrtime.bigint() - started) / 1e6);
  }
  times.sort((a, b) => a - b);
  t.log(`netctl --version: median ${(((times[4] ?? 0) + (times[5] ?? 0)) / 2).toFixed(0)} ms of 10 (min ${(times[0] ?? 0).toFixed(0)})`);
});
