/**
 * The load balancer's nft scripts: golden text for each kind of change, and
 * one run of a sequence of them in a namespace of our own, read back from
 * the kernel after each step.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import test, { type ExecutionContext } from 'ava';
import { SERVICES_TABLE, type VipTable, addedVips, changeScript, droppedTasks, replaceScript, sameTable } from '../../src/ingress/vip-rules.js';
import { applyNft, listNftRuleset } from '../../src/sys/nft.js';

const run = promisify(execFile);

function vips(entries: Record<string, readonly string[]>): VipTable {
  return new Map(Object.entries(entries));
}

/** The lines every non-empty table starts with. */
const HEAD = [
  'add table ip netctl_services',
  'delete table ip netctl_services',
  'add table ip netctl_services',
  'add map ip netctl_services vips { type ipv4_addr : verdict; }',
  'add set ip netctl_services vip_addresses { type ipv4_addr; }',
  'add chain ip netctl_services nat_output { type nat hook output priority -100; policy accept; }',
  'add rule ip netctl_services nat_output meta l4proto { tcp, udp } ip daddr vmap @vips',
  'add chain ip netctl_services filter_output { type filter hook output priority 0; policy accept; }',
  'add rule ip netctl_services filter_output ip daddr @vip_addresses meta l4proto tcp reject with tcp reset',
  'add rule ip netctl_services filter_output ip daddr @vip_addresses reject',
];

function script(...lines: string[]): string {
  return `${lines.join('\n')}\n`;
}

test('a first table: made anew (an old one deleted), each VIP in the map and the set, its chain round-robin over its tasks', (t) => {
  const table = vips({ '10.0.0.2': ['10.0.0.5', '10.0.0.6'] });
  const expected = script(
    ...HEAD,
    'add chain ip netctl_services vip_10_0_0_2',
    'add rule ip netctl_services vip_10_0_0_2 dnat to numgen inc mod 2 map { 0 : 10.0.0.5, 1 : 10.0.0.6 }',
    'add element ip netctl_services vips { 10.0.0.2 : goto vip_10_0_0_2 }',
    'add element ip netctl_services vip_addresses { 10.0.0.2 }',
  );
  t.is(replaceScript(table), expected);
  t.is(changeScript(new Map(), table), expected, 'from no table, a change is the whole table');
});

test('one task is a plain dnat to its address; zero tasks leave the chain with no rule (the filter chain refuses)', (t) => {
  t.is(
    replaceScript(vips({ '10.0.0.2': ['10.0.0.5'], '10.0.0.3': [] })),
    script(
      ...HEAD,
      'add chain ip netctl_services vip_10_0_0_2',
      'add rule ip netctl_services vip_10_0_0_2 dnat to 10.0.0.5',
      'add element ip netctl_services vips { 10.0.0.2 : goto vip_10_0_0_2 }',
      'add element ip netctl_services vip_addresses { 10.0.0.2 }',
      'add chain ip netctl_services vip_10_0_0_3',
      'add element ip netctl_services vips { 10.0.0.3 : goto vip_10_0_0_3 }',
      'add element ip netctl_services vip_addresses { 10.0.0.3 }',
    ),
  );
});

test('adding a VIP adds its chain, rule and elements and touches nothing else', (t) => {
  t.is(
    changeScript(vips({ '10.0.0.2': ['10.0.0.5', '10.0.0.6'] }), vips({ '10.0.0.2': ['10.0.0.5', '10.0.0.6'], '10.0.0.3': ['10.0.0.7'] })),
    script(
      'add chain ip netctl_services vip_10_0_0_3',
      'add rule ip netctl_services vip_10_0_0_3 dnat to 10.0.0.7',
      'add element ip netctl_services vips { 10.0.0.3 : goto vip_10_0_0_3 }',
      'add element ip netctl_services vip_addresses { 10.0.0.3 }',
    ),
  );
});

test("changing a VIP's tasks flushes and rewrites only that VIP's chain", (t) => {
  const before = vips({ '10.0.0.2': ['10.0.0.5', '10.0.0.6'], '10.0.0.3': ['10.0.0.7'], '10.0.0.4': ['10.0.0.9'] });
  t.is(
    changeScript(before, vips({ '10.0.0.2': ['10.0.0.5', '10.0.0.6'], '10.0.0.3': ['10.0.0.7', '10.0.0.8', '10.0.0.10'], '10.0.0.4': ['10.0.0.9'] })),
    script(
      'flush chain ip netctl_services vip_10_0_0_3',
      'add rule ip netctl_services vip_10_0_0_3 dnat to numgen inc mod 3 map { 0 : 10.0.0.7, 1 : 10.0.0.8, 2 : 10.0.0.10 }',
    ),
  );
  t.is(
    changeScript(before, vips({ '10.0.0.2': ['10.0.0.6'], '10.0.0.3': ['10.0.0.7'], '10.0.0.4': ['10.0.0.9'] })),
    script('flush chain ip netctl_services vip_10_0_0_2', 'add rule ip netctl_services vip_10_0_0_2 dnat to 10.0.0.6'),
    'down to one task',
  );
  t.is(
    changeScript(before, vips({ '10.0.0.2': ['10.0.0.5', '10.0.0.6'], '10.0.0.3': ['10.0.0.7'], '10.0.0.4': [] })),
    script('flush chain ip netctl_services vip_10_0_0_4'),
    'down to no task: the chain stays, empty',
  );
  t.is(
    changeScript(vips({ '10.0.0.2': [] }), vips({ '10.0.0.2': ['10.0.0.5'] })),
    script('flush chain ip netctl_services vip_10_0_0_2', 'add rule ip netctl_services vip_10_0_0_2 dnat to 10.0.0.5'),
    'from no task to one',
  );
});

test('removing one VIP deletes its elements before its chain (the map refers to it)', (t) => {
  t.is(
    changeScript(vips({ '10.0.0.2': ['10.0.0.5'], '10.0.0.3': ['10.0.0.7'] }), vips({ '10.0.0.3': ['10.0.0.7'] })),
    script(
      'delete element ip netctl_services vips { 10.0.0.2 }',
      'delete element ip netctl_services vip_addresses { 10.0.0.2 }',
      'delete chain ip netctl_services vip_10_0_0_2',
    ),
  );
});

test('removing the last VIP deletes the table (made first, so that a missing one is no error)', (t) => {
  const deleteTable = script('add table ip netctl_services', 'delete table ip netctl_services');
  t.is(changeScript(vips({ '10.0.0.2': ['10.0.0.5'] }), new Map()), deleteTable);
  t.is(replaceScript(new Map()), deleteTable);
});

test('no change gives no script', (t) => {
  t.is(changeScript(new Map(), new Map()), undefined);
  const table = vips({ '10.0.0.2': ['10.0.0.5', '10.0.0.6'], '10.0.0.3': [] });
  t.is(changeScript(table, vips({ '10.0.0.2': ['10.0.0.5', '10.0.0.6'], '10.0.0.3': [] })), undefined, 'equal contents in other maps');
  t.is(changeScript(table, vips({ '10.0.0.3': [], '10.0.0.2': ['10.0.0.5', '10.0.0.6'] })), undefined, 'the VIPs in another order');
});

test('sameTable compares VIPs as a set and each VIP’s tasks in order', (t) => {
  const table = vips({ '10.0.0.2': ['10.0.0.5', '10.0.0.6'], '10.0.0.3': [] });
  t.true(sameTable(table, vips({ '10.0.0.3': [], '10.0.0.2': ['10.0.0.5', '10.0.0.6'] })));
  t.true(sameTable(new Map(), new Map()));
  t.false(sameTable(table, vips({ '10.0.0.2': ['10.0.0.5', '10.0.0.6'] })), 'a VIP fewer');
  t.false(sameTable(table, vips({ '10.0.0.2': ['10.0.0.5', '10.0.0.6'], '10.0.0.4': [] })), 'another VIP');
  t.false(sameTable(table, vips({ '10.0.0.2': ['10.0.0.5'], '10.0.0.3': [] })), 'a task fewer');
  t.false(sameTable(table, vips({ '10.0.0.2': ['10.0.0.5', '10.0.0.7'], '10.0.0.3': [] })), 'another task');
});

test('droppedTasks names each task a VIP no longer balances to, also those of a VIP that went', (t) => {
  const before = vips({ '10.0.0.2': ['10.0.0.5', '10.0.0.6'], '10.0.0.3': ['10.0.0.7', '10.0.0.8'], '10.0.0.4': ['10.0.0.9'] });
  t.deepEqual(droppedTasks(before, vips({ '10.0.0.2': ['10.0.0.6', '10.0.0.10'], '10.0.0.3': ['10.0.0.7', '10.0.0.8'] })), [
    { virtualIp: '10.0.0.2', task: '10.0.0.5' },
    { virtualIp: '10.0.0.4', task: '10.0.0.9' },
  ]);
  t.deepEqual(droppedTasks(before, before), []);
  t.deepEqual(droppedTasks(new Map(), before), [], 'tasks added drop nothing');
  t.deepEqual(
    droppedTasks(vips({ '10.0.0.2': ['10.0.0.5'] }), vips({ '10.0.0.3': ['10.0.0.5'] })),
    [{ virtualIp: '10.0.0.2', task: '10.0.0.5' }],
    'a task of another VIP now is still dropped from the first',
  );
});

test('addedVips names each VIP the next table has and the previous did not, whatever its tasks', (t) => {
  const before = vips({ '10.0.0.2': ['10.0.0.5'], '10.0.0.3': [] });
  t.deepEqual(addedVips(before, vips({ '10.0.0.2': ['10.0.0.6'], '10.0.0.4': [], '10.0.0.7': ['10.0.0.8'] })), ['10.0.0.4', '10.0.0.7']);
  t.deepEqual(addedVips(before, before), []);
  t.deepEqual(addedVips(before, new Map()), [], 'VIPs that went are not added');
  t.deepEqual(addedVips(new Map(), before), ['10.0.0.2', '10.0.0.3']);
});

// The kernel's side.

/** What the kernel holds of the services table: the VIPs in the map (with the chain each goes to) and in the set, and each VIP chain's dnat addresses in numgen order. */
interface KernelTable {
  readonly map: Record<string, string>;
  readonly set: string[];
  readonly chains: Record<string, string[]>;
  readonly baseChains: string[];
}

/** Any shape nft -j gives a rule's dnat: one address, or a numgen map of index → address. */
function dnatAddresses(dnat: unknown): string[] {
  const addr = (dnat as { addr?: unknown }).addr;
  if (typeof addr === 'string') return [addr];
  const data = (addr as { map?: { data?: { set?: [number, string][] } } } | undefined)?.map?.data?.set;
  if (data === undefined) throw new Error(`unexpected dnat ${JSON.stringify(dnat)}`);
  return [...data].sort(([a], [b]) => a - b).map(([, address]) => address);
}

function elements(elem: unknown): unknown[] {
  return elem === undefined ? [] : Array.isArray(elem) ? elem : [elem];
}

async function kernelTable(netnsPath: string): Promise<KernelTable | undefined> {
  let stdout: string;
  try {
    ({ stdout } = await run('nsenter', [`--net=${netnsPath}`, '/usr/sbin/nft', '-j', 'list', 'table', 'ip', SERVICES_TABLE]));
  } catch (err) {
    if (/No such file or directory/.test((err as { stderr?: string }).stderr ?? '')) return undefined;
    throw err;
  }
  const table: { map: Record<string, string>; set: string[]; chains: Record<string, string[]>; baseChains: string[] } = {
    map: {},
    set: [],
    chains: {},
    baseChains: [],
  };
  for (const object of (JSON.parse(stdout) as { nftables: Record<string, Record<string, unknown>>[] }).nftables) {
    if (object.map?.name === 'vips') {
      for (const element of elements(object.map.elem)) {
        const [address, verdict] = element as [string, { goto: { target: string } }];
        table.map[address] = verdict.goto.target;
      }
    } else if (object.set?.name === 'vip_addresses') {
      table.set = elements(object.set.elem).map(String).sort();
    } else if (object.chain !== undefined) {
      const name = String(object.chain.name);
      if (object.chain.hook !== undefined) table.baseChains.push(`${name} ${String(object.chain.type)} ${String(object.chain.hook)} ${String(object.chain.prio)}`);
      else table.chains[name] = [];
    } else if (object.rule !== undefined) {
      const chain = String(object.rule.chain);
      const dnat = (object.rule.expr as Record<string, unknown>[]).find((expr) => expr.dnat !== undefined)?.dnat;
      if (dnat === undefined) continue;
      const addresses = table.chains[chain];
      if (addresses === undefined) throw new Error(`a dnat rule in ${chain}, which is no VIP chain`);
      if (addresses.length > 0) throw new Error(`more than one dnat rule in ${chain}`);
      addresses.push(...dnatAddresses(dnat));
    }
  }
  return table;
}

/** What the kernel should hold for `table`. */
function expectedKernelTable(table: VipTable): KernelTable {
  const map: Record<string, string> = {};
  const chains: Record<string, string[]> = {};
  for (const [virtualIp, tasks] of table) {
    const chain = `vip_${virtualIp.replaceAll('.', '_')}`;
    map[virtualIp] = chain;
    chains[chain] = [...tasks];
  }
  return {
    map,
    set: [...table.keys()].sort(),
    chains,
    baseChains: ['nat_output nat output -100', 'filter_output filter output 0'],
  };
}

let netnsCounter = 0;

/** A namespace of this test's own (`lbu-…`), removed in teardown even when the test fails. */
async function ownNetns(t: ExecutionContext): Promise<string> {
  netnsCounter += 1;
  const name = `lbu-${process.pid}-${netnsCounter}`;
  await run('ip', ['netns', 'add', name]);
  t.teardown(async () => {
    await run('ip', ['netns', 'delete', name]);
  });
  return `/var/run/netns/${name}`;
}

test('the kernel takes each script of a sequence and then holds exactly the table it was for', async (t) => {
  const netnsPath = await ownNetns(t);
  const steps: { what: string; table: VipTable; replace?: true }[] = [
    { what: 'first VIP, two tasks', table: vips({ '10.0.0.2': ['10.0.0.5', '10.0.0.6'] }) },
    { what: 'a VIP added, one task', table: vips({ '10.0.0.2': ['10.0.0.5', '10.0.0.6'], '10.0.0.3': ['10.0.0.7'] }) },
    {
      what: 'tasks changed, a VIP with none added',
      table: vips({ '10.0.0.2': ['10.0.0.5', '10.0.0.6', '10.0.0.8'], '10.0.0.3': ['10.0.0.7'], '10.0.0.4': [] }),
    },
    { what: 'replaced over a table holding something else (a restart)', table: vips({ '10.0.0.3': ['10.0.0.11'], '10.0.0.9': [] }), replace: true },
    { what: 'one VIP removed, the empty one given tasks', table: vips({ '10.0.0.9': ['10.0.0.12', '10.0.0.13'] }) },
    { what: 'the last VIP removed', table: new Map() },
  ];

  await applyNft(netnsPath, replaceScript(new Map()));
  t.is(await kernelTable(netnsPath), undefined, 'an empty replace in a namespace with no table leaves none, without error');

  let previous: VipTable = new Map();
  for (const step of steps) {
    const text = step.replace === true ? replaceScript(step.table) : changeScript(previous, step.table);
    if (text === undefined) {
      t.fail(`${step.what}: no script`);
      return;
    }
    await applyNft(netnsPath, text);
    const held = await kernelTable(netnsPath);
    if (step.table.size === 0) t.is(held, undefined, step.what);
    else t.deepEqual(held, expectedKernelTable(step.table), step.what);
    previous = step.table;
  }
  t.notRegex(await listNftRuleset(netnsPath), new RegExp(SERVICES_TABLE), 'no table is left');
});
