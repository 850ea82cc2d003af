import test from 'ava';
import type { ExecutionContext } from 'ava';
import { Conflict, InvalidArgument, NotFound } from '../../src/errors.js';
import { Rtnl } from '../../src/sys/rtnl.js';
import { ipJson, pingOk, tempNetns, uniqueName } from './helpers.js';

interface IpLink {
  ifname: string;
  mtu: number;
  master?: string;
  address: string;
  flags: string[];
  linkinfo?: { info_kind?: string; info_slave_data?: { isolated?: boolean } };
}
interface IpAddr {
  ifname: string;
  addr_info: { family: string; local: string; prefixlen: number }[];
}
interface IpRoute {
  dst: string;
  gateway?: string;
  dev?: string;
}

async function openIn(t: ExecutionContext, path: string): Promise<Rtnl> {
  const rtnl = await Rtnl.open(path);
  t.teardown(() => rtnl.close());
  return rtnl;
}

/**
 * A "host" namespace with a bridge and two "containers", each joined by a
 * veth whose peer is created in the container and renamed eth0 there.
 */
async function bridgeWithTwoContainers(t: ExecutionContext) {
  const host = await tempNetns(t);
  const c1 = await tempNetns(t);
  const c2 = await tempNetns(t);
  const hostRtnl = await openIn(t, host.path);
  const bridge = uniqueName('b');
  await hostRtnl.createBridge(bridge, { mtu: 1400 });
  await hostRtnl.addAddress(bridge, '198.18.10.1/24');
  await hostRtnl.addAddress(bridge, '2001:db8:10::1/64');
  await hostRtnl.setUp(bridge);
  const containers = [];
  for (const [i, c] of [c1, c2].entries()) {
    const hostEnd = uniqueName('v');
    const peer = uniqueName('p');
    await hostRtnl.createVeth(hostEnd, peer, { mtu: 1400, peerNetnsPath: c.path });
    await hostRtnl.setMaster(hostEnd, bridge);
    await hostRtnl.setUp(hostEnd);
    const rtnl = await openIn(t, c.path);
    await rtnl.rename(peer, 'eth0');
    await rtnl.addAddress('eth0', `198.18.10.${i + 2}/24`);
    await rtnl.addAddress('eth0', `2001:db8:10::${i + 2}/64`);
    await rtnl.setUp('eth0');
    await rtnl.setUp('lo');
    await rtnl.addRoute({ dst: 'default', gateway: '198.18.10.1' });
    await rtnl.addRoute({ dst: '::/0', gateway: '2001:db8:10::1' });
    containers.push({ ...c, rtnl, hostEnd });
  }
  const [first, second] = containers;
  if (!first || !second) throw new Error('unreachable');
  return { host, hostRtnl, bridge, c1: first, c2: second };
}

test('bridge, veths into two namespaces, addresses, routes: containers reach each other', async (t) => {
  const { host, hostRtnl, bridge, c1, c2 } = await bridgeWithTwoContainers(t);

  const bridgeInfo = await hostRtnl.getLink(bridge);
  t.is(bridgeInfo?.kind, 'bridge');
  t.is(bridgeInfo?.mtu, 1400);
  t.true(bridgeInfo?.up);
  const port = await hostRtnl.getLink(c1.hostEnd);
  t.is(port?.kind, 'veth');
  t.is(port?.masterIndex, bridgeInfo?.index);

  const [eth0] = await ipJson<IpLink[]>(c1.name, ['link', 'show', 'eth0']);
  t.is(eth0?.mtu, 1400);
  t.true(eth0?.flags.includes('UP'));
  const [hostPort] = await ipJson<IpLink[]>(host.name, ['link', 'show', c1.hostEnd]);
  t.is(hostPort?.master, bridge);

  const [addrs] = await ipJson<IpAddr[]>(c1.name, ['addr', 'show', 'eth0']);
  const global = addrs?.addr_info.filter((a) => !a.local.startsWith('fe80')).map((a) => `${a.local}/${a.prefixlen}`);
  t.deepEqual(global?.sort(), ['198.18.10.2/24', '2001:db8:10::2/64']);
  const listed = (await c1.rtnl.listAddresses('eth0')).filter((a) => !a.cidr.startsWith('fe80'));
  t.deepEqual(
    listed.sort((a, b) => a.family - b.family),
    [
      { ifName: 'eth0', cidr: '198.18.10.2/24', family: 4 },
      { ifName: 'eth0', cidr: '2001:db8:10::2/64', family: 6 },
    ],
  );

  const routes4 = await ipJson<IpRoute[]>(c1.name, ['-4', 'route', 'show']);
  t.true(routes4.some((r) => r.dst === 'default' && r.gateway === '198.18.10.1' && r.dev === 'eth0'));
  t.deepEqual(
    (await c1.rtnl.listRoutes(4)).find((r) => r.dst === 'default'),
    { dst: 'default', gateway: '198.18.10.1', ifName: 'eth0', family: 4 },
  );
  t.true((await c1.rtnl.listRoutes(4)).some((r) => r.dst === '198.18.10.0/24' && r.ifName === 'eth0'));
  t.deepEqual(
    (await c1.rtnl.listRoutes(6)).find((r) => r.dst === 'default'),
    { dst: 'default', gateway: '2001:db8:10::1', ifName: 'eth0', family: 6 },
  );

  t.true(await pingOk(c1.path, '198.18.10.3'), 'c1 → c2 over IPv4');
  t.true(await pingOk(c2.path, '2001:db8:10::2'), 'c2 → c1 over IPv6');
  t.true(await pingOk(c1.path, '198.18.10.1'), 'c1 → bridge');
});

test('port isolation: isolated ports reach the bridge but not each other', async (t) => {
  const { host, hostRtnl, c1, c2 } = await bridgeWithTwoContainers(t);
  await hostRtnl.setBridgePortIsolated(c1.hostEnd, true);
  await hostRtnl.setBridgePortIsolated(c2.hostEnd, true);
  const [port] = await ipJson<IpLink[]>(host.name, ['-d', 'link', 'show', c1.hostEnd]);
  t.is(port?.linkinfo?.info_slave_data?.isolated, true);

  t.false(await pingOk(c1.path, '198.18.10.3', 1), 'isolated ports cannot talk');
  t.true(await pingOk(c1.path, '198.18.10.1'), 'isolated port still reaches the bridge');

  await hostRtnl.setBridgePortIsolated(c2.hostEnd, false);
  const [unisolated] = await ipJson<IpLink[]>(host.name, ['-d', 'link', 'show', c2.hostEnd]);
  t.is(unisolated?.linkinfo?.info_slave_data?.isolated, false);
  t.true(await pingOk(c1.path, '198.18.10.3'), 'isolated port reaches a non-isolated one');
});

test('link settings: mtu, mac, rename, release from bridge, move to a namespace, delete', async (t) => {
  const host = await tempNetns(t);
  const other = await tempNetns(t);
  const rtnl = await openIn(t, host.path);
  const bridge = uniqueName('b');
  const a = uniqueName('a');
  const b = uniqueName('b');
  await rtnl.createBridge(bridge);
  await rtnl.createVeth(a, b);
  t.is((await rtnl.getLink(b))?.kind, 'veth', 'both ends are created here without peerNetnsPath');

  await rtnl.setMtu(a, 1450);
  t.is((await ipJson<IpLink[]>(host.name, ['link', 'show', a]))[0]?.mtu, 1450);

  await rtnl.setMac(a, '02:42:ac:11:00:02');
  t.is((await rtnl.getLink(a))?.mac, '02:42:ac:11:00:02');

  await rtnl.setMaster(a, bridge);
  t.is((await ipJson<IpLink[]>(host.name, ['link', 'show', a]))[0]?.master, bridge);
  await rtnl.setMaster(a, null);
  t.is((await ipJson<IpLink[]>(host.name, ['link', 'show', a]))[0]?.master, undefined);
  t.is((await rtnl.getLink(a))?.masterIndex, undefined);

  await rtnl.setUp(a);
  t.true((await rtnl.getLink(a))?.up);
  await rtnl.setDown(a);
  t.false((await rtnl.getLink(a))?.up);
  await rtnl.rename(a, 'renamed0');
  t.is(await rtnl.getLink(a), undefined);
  t.truthy(await rtnl.getLink('renamed0'));

  await rtnl.moveToNetns(b, other.path);
  t.is(await rtnl.getLink(b), undefined);
  const [moved] = await ipJson<IpLink[]>(other.name, ['link', 'show', b]);
  t.is(moved?.ifname, b);

  await rtnl.deleteLink('renamed0');
  t.is(await rtnl.getLink('renamed0'), undefined);
  t.deepEqual(await ipJson<IpLink[]>(other.name, ['link', 'show', 'type', 'veth']), [], 'the peer went too');
  await t.notThrowsAsync(rtnl.deleteLink('renamed0'), 'deleting a missing link is not an error');
  await rtnl.deleteLink(bridge);
  t.deepEqual(
    (await rtnl.listLinks()).map((link) => link.name),
    ['lo'],
  );
});

test('addresses and routes can be removed', async (t) => {
  const host = await tempNetns(t);
  const rtnl = await openIn(t, host.path);
  const bridge = uniqueName('b');
  await rtnl.createBridge(bridge);
  await rtnl.setUp(bridge);
  await rtnl.addAddress(bridge, '198.18.20.1/24');
  await rtnl.addAddress(bridge, '2001:db8:20::1/64');
  await rtnl.addRoute({ dst: '198.18.30.0/24', gateway: '198.18.20.254' });
  await rtnl.addRoute({ dst: '198.18.40.0/24', ifName: bridge });
  t.true((await rtnl.listRoutes(4)).some((r) => r.dst === '198.18.30.0/24' && r.gateway === '198.18.20.254'));
  const linkRoutes = await ipJson<IpRoute[]>(host.name, ['route', 'show', '198.18.40.0/24']);
  t.is(linkRoutes[0]?.dev, bridge);

  await rtnl.deleteRoute({ dst: '198.18.30.0/24', gateway: '198.18.20.254' });
  await rtnl.deleteRoute({ dst: '198.18.40.0/24', ifName: bridge });
  t.deepEqual(await ipJson<IpRoute[]>(host.name, ['route', 'show', '198.18.30.0/24']), []);
  t.deepEqual(await ipJson<IpRoute[]>(host.name, ['route', 'show', '198.18.40.0/24']), []);
  await t.throwsAsync(rtnl.deleteRoute({ dst: '198.18.30.0/24', gateway: '198.18.20.254' }), { instanceOf: NotFound });

  await rtnl.deleteAddress(bridge, '198.18.20.1/24');
  await rtnl.deleteAddress(bridge, '2001:db8:20::1/64');
  t.deepEqual(
    (await rtnl.listAddresses(bridge)).filter((a) => !a.cidr.startsWith('fe80')),
    [],
  );
  await t.throwsAsync(rtnl.deleteAddress(bridge, '198.18.20.1/24'), { instanceOf: NotFound });
});

test('kernel errors become named errors that say what failed', async (t) => {
  const host = await tempNetns(t);
  const rtnl = await openIn(t, host.path);
  const bridge = uniqueName('b');
  await rtnl.createBridge(bridge);

  const exists = await t.throwsAsync(rtnl.createBridge(bridge), { instanceOf: Conflict });
  t.regex(exists.message, new RegExp(bridge));
  await rtnl.addAddress(bridge, '198.18.50.1/24');
  await t.throwsAsync(rtnl.addAddress(bridge, '198.18.50.1/24'), { instanceOf: Conflict, message: /198\.18\.50\.1/ });

  const missing = await t.throwsAsync(rtnl.setUp('nct-missing0'), { instanceOf: NotFound });
  t.regex(missing.message, /nct-missing0/);
  await t.throwsAsync(rtnl.addAddress('nct-missing0', '198.18.50.2/24'), { instanceOf: NotFound });

  await t.throwsAsync(rtnl.setMtu(bridge, 10), { instanceOf: InvalidArgument, message: new RegExp(bridge) });
  await t.throwsAsync(rtnl.addAddress(bridge, '198.18.50.1'), { instanceOf: InvalidArgument });
  await t.throwsAsync(rtnl.addAddress(bridge, '300.1.1.1/24'), { instanceOf: InvalidArgument });
  await t.throwsAsync(rtnl.createBridge('name-longer-than-15'), { instanceOf: InvalidArgument });
  await t.throwsAsync(rtnl.setMac(bridge, 'not-a-mac'), { instanceOf: InvalidArgument });
  await t.throwsAsync(rtnl.addRoute({ dst: 'default', gateway: '198.18.99.1' }), { instanceOf: InvalidArgument });
});
