import { statSync } from 'node:fs';
import { access } from 'node:fs/promises';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import test from 'ava';
import { Conflict, InvalidArgument } from '../../src/errors.js';
import {
  NETNS_RUN_DIR,
  createNamedNetns,
  currentNetnsPath,
  isNetnsPath,
  netnsExists,
  openSocketInNetns,
  removeNamedNetns,
  sameNetns,
  withNetns,
} from '../../src/sys/netns.js';
import { Rtnl } from '../../src/sys/rtnl.js';
import { inNetns, run, tempNetns, uniqueName } from './helpers.js';

function mainThreadNetnsInode(): number {
  return statSync('/proc/thread-self/ns/net').ino;
}

test('a named namespace shows in `ip netns list` and is gone after removal', async (t) => {
  const name = uniqueName('a');
  t.teardown(() => removeNamedNetns(name));
  const path = await createNamedNetns(name);
  t.is(path, `${NETNS_RUN_DIR}/${name}`);
  const listed = await run('ip', ['netns', 'list']);
  t.regex(listed.stdout, new RegExp(`^${name}\\b`, 'm'));
  t.true(isNetnsPath(path));
  t.true(await netnsExists(path));
  t.false(await sameNetns(path, currentNetnsPath()));
  // `ip` sees a fresh namespace: only lo.
  const links = await run('ip', ['-n', name, '-o', 'link']);
  t.deepEqual(
    links.stdout.trim().split('\n').map((line) => line.split(': ')[1]),
    ['lo'],
  );

  await t.throwsAsync(createNamedNetns(name), { instanceOf: Conflict });

  await removeNamedNetns(name);
  const after = await run('ip', ['netns', 'list']);
  t.notRegex(after.stdout, new RegExp(`^${name}\\b`, 'm'));
  await t.throwsAsync(access(path));
  t.false(await netnsExists(path));
  await t.notThrowsAsync(removeNamedNetns(name), 'removing a missing namespace is not an error');
});

test('bad namespace names are rejected', async (t) => {
  for (const name of ['', '/', '.', '..', 'a/b', 'x'.repeat(256)]) {
    await t.throwsAsync(createNamedNetns(name), { instanceOf: InvalidArgument }, JSON.stringify(name));
  }
});

test('isNetnsPath tells network namespaces from other files', (t) => {
  t.true(isNetnsPath('/proc/self/ns/net'));
  t.false(isNetnsPath('/proc/self/ns/mnt'));
  t.false(isNetnsPath('/etc/hostname'));
  t.false(isNetnsPath('/nonexistent/netns'));
});

test('withNetns enters the namespace and always returns, also when fn throws', async (t) => {
  const { path } = await tempNetns(t);
  const original = mainThreadNetnsInode();
  const target = statSync(path).ino;
  t.not(original, target);

  t.is(withNetns(path, () => mainThreadNetnsInode()), target);
  t.is(mainThreadNetnsInode(), original);

  t.throws(
    () =>
      withNetns(path, () => {
        throw new Error('boom');
      }),
    { message: 'boom' },
  );
  t.is(mainThreadNetnsInode(), original);

  t.throws(() => withNetns('/nonexistent/netns', () => 1), { instanceOf: InvalidArgument });
  t.is(mainThreadNetnsInode(), original);
});

test('a netlink socket opened inside a namespace keeps acting there', async (t) => {
  const { path } = await tempNetns(t);
  const rtnl = await Rtnl.open(path);
  t.teardown(() => rtnl.close());
  const links = await rtnl.listLinks();
  t.deepEqual(
    links.map((link) => link.name),
    ['lo'],
  );
});

test('openSocketInNetns returns a socket that lives in that namespace', async (t) => {
  const { path } = await tempNetns(t);
  await inNetns(path, 'ip', ['link', 'set', 'lo', 'up']);
  const AF_INET = 2;
  const SOCK_STREAM = 1;
  const fd = openSocketInNetns(path, AF_INET, SOCK_STREAM, 0);
  const server = createServer();
  t.teardown(() => server.close());
  // listen() on the unbound socket picks a port on 0.0.0.0 of the socket's namespace.
  await new Promise<void>((resolve) => server.listen({ fd }, resolve));
  const { port } = server.address() as AddressInfo;
  const accepted = new Promise<string | undefined>((resolve) =>
    server.once('connection', (socket) => {
      resolve(socket.remoteAddress);
      socket.destroy();
    }),
  );
  // Only a client inside that namespace can reach its 127.0.0.1.
  await inNetns(path, 'bash', ['-c', `exec 3<>/dev/tcp/127.0.0.1/${port}`]);
  t.is(await accepted, '127.0.0.1');
});
