import test from 'ava';
import { Conflict, InvalidArgument } from '../../src/errors.js';
import { Allocator, defaultPools, resolvePools } from '../../src/cnm/ipam.js';
import type { ExistingPool, PoolRequest } from '../../src/cnm/ipam.js';
import type { IpamPoolConfig } from '../../src/records.js';

function resolve(input: {
  scope?: 'local' | 'global';
  enableIPv4?: boolean;
  enableIPv6?: boolean;
  requested?: PoolRequest[];
  existing?: ExistingPool[];
  routed?: string[];
}): IpamPoolConfig[] {
  return resolvePools({
    scope: input.scope ?? 'local',
    enableIPv4: input.enableIPv4 ?? true,
    enableIPv6: input.enableIPv6 ?? false,
    requested: input.requested ?? [],
    existing: input.existing ?? [],
    routed: input.routed ?? [],
  });
}

const local172 = Array.from({ length: 15 }, (_, i) => ({ networkName: `n${i}`, subnet: `172.${17 + i}.0.0/16` }));

test('defaultPools lists docker local pools in order, then an IPv6 ULA', (t) => {
  const pools = defaultPools('local');
  t.deepEqual(pools[0], { base: '172.17.0.0/16', size: 16 });
  t.deepEqual(pools[14], { base: '172.31.0.0/16', size: 16 });
  t.deepEqual(pools[15], { base: '192.168.0.0/16', size: 20 });
  t.deepEqual(pools[16], { base: 'fd00:d0c::/48', size: 64 });
  t.is(pools.length, 17);
});

test('defaultPools lists 10.0.0.0/8 in /24s for global scope', (t) => {
  t.deepEqual(defaultPools('global'), [
    { base: '10.0.0.0/8', size: 24 },
    { base: 'fd00:d0c:1::/48', size: 64 },
  ]);
});

test('a local network without subnet gets 172.17.0.0/16 and its first address as gateway', (t) => {
  t.deepEqual(resolve({}), [{ subnet: '172.17.0.0/16', gateway: '172.17.0.1' }]);
});

test('default pool skips existing networks, including ones that only partly overlap', (t) => {
  const existing = [
    { networkName: 'bridge', subnet: '172.17.0.0/16' },
    { networkName: 'web', subnet: '172.18.0.0/16' },
    { networkName: 'small', subnet: '172.19.128.0/24' },
  ];
  t.deepEqual(resolve({ existing }), [{ subnet: '172.20.0.0/16', gateway: '172.20.0.1' }]);
});

test('existing networks of the other family do not block the default pool', (t) => {
  t.deepEqual(resolve({ existing: [{ networkName: 'v6', subnet: 'fd00::/8' }] }), [
    { subnet: '172.17.0.0/16', gateway: '172.17.0.1' },
  ]);
});

test('after 172.31.0.0/16 the default falls through to 192.168.x.0/20', (t) => {
  t.deepEqual(resolve({ existing: local172 }), [{ subnet: '192.168.0.0/20', gateway: '192.168.0.1' }]);
  const more = [...local172, { networkName: 'a', subnet: '192.168.0.0/20' }, { networkName: 'b', subnet: '192.168.17.0/24' }];
  t.deepEqual(resolve({ existing: more }), [{ subnet: '192.168.32.0/20', gateway: '192.168.32.1' }]);
  // One existing network covering all the 172 pools at once.
  t.deepEqual(resolve({ existing: [{ networkName: 'corp', subnet: '172.16.0.0/12' }] })[0]?.subnet, '192.168.0.0/20');
});

test('default pools skip what the host routes, addresses with host bits included; a requested subnet may overlap a route', (t) => {
  t.deepEqual(resolve({ routed: ['172.17.0.0/16', '172.18.5.7/24'] }), [{ subnet: '172.19.0.0/16', gateway: '172.19.0.1' }]);
  t.deepEqual(resolve({ enableIPv4: false, enableIPv6: true, routed: ['fd00:d0c::1/64'] }), [
    { subnet: 'fd00:d0c:0:1::/64', gateway: 'fd00:d0c:0:1::1' },
  ]);
  t.deepEqual(resolve({ routed: ['172.17.0.0/16'], requested: [{ subnet: '172.17.0.0/16' }] }), [{ subnet: '172.17.0.0/16', gateway: '172.17.0.1' }]);
  t.throws(() => resolve({ routed: ['172.16.0.0/12', '192.168.0.0/16'] }), {
    instanceOf: Conflict,
    message: 'all predefined address pools have been fully subnetted',
  });
});

test('when every default pool is taken, creation fails', (t) => {
  const existing = [
    { networkName: 'corp', subnet: '172.16.0.0/12' },
    { networkName: 'home', subnet: '192.168.0.0/16' },
  ];
  t.throws(() => resolve({ existing }), {
    instanceOf: Conflict,
    message: 'all predefined address pools have been fully subnetted',
  });
  t.throws(() => resolve({ scope: 'global', existing: [{ networkName: 'ten', subnet: '10.0.0.0/8' }] }), {
    instanceOf: Conflict,
    message: 'all predefined address pools have been fully subnetted',
  });
});

test('global networks take the lowest free /24 of 10.0.0.0/8', (t) => {
  t.deepEqual(resolve({ scope: 'global' }), [{ subnet: '10.0.0.0/24', gateway: '10.0.0.1' }]);
  const existing = [
    { networkName: 'a', subnet: '10.0.0.0/24' },
    { networkName: 'b', subnet: '10.0.1.0/24' },
    { networkName: 'c', subnet: '10.0.3.0/24' },
  ];
  t.is(resolve({ scope: 'global', existing })[0]?.subnet, '10.0.2.0/24');
  t.is(resolve({ scope: 'global', existing: [{ networkName: 'big', subnet: '10.0.0.0/9' }] })[0]?.subnet, '10.128.0.0/24');
});

test('--ipv6 without a v6 subnet takes a /64 from the ULA default, IPv4 first', (t) => {
  t.deepEqual(resolve({ enableIPv6: true }), [
    { subnet: '172.17.0.0/16', gateway: '172.17.0.1' },
    { subnet: 'fd00:d0c::/64', gateway: 'fd00:d0c::1' },
  ]);
  t.deepEqual(
    resolve({ enableIPv4: false, enableIPv6: true, existing: [{ networkName: 'x', subnet: 'fd00:d0c::/64' }] }),
    [{ subnet: 'fd00:d0c:0:1::/64', gateway: 'fd00:d0c:0:1::1' }],
  );
  t.deepEqual(resolve({ scope: 'global', enableIPv4: false, enableIPv6: true }), [
    { subnet: 'fd00:d0c:1::/64', gateway: 'fd00:d0c:1::1' },
  ]);
});

test('no family enabled gives no pools', (t) => {
  t.deepEqual(resolve({ enableIPv4: false }), []);
});

test('requested pools come back canonical with the gateway filled in', (t) => {
  const pools = resolve({
    enableIPv6: true,
    requested: [
      { subnet: 'FD00:0:0:0::/64', gateway: 'FD00::00aB' },
      { subnet: '10.0.0.0/24', ipRange: '10.0.0.128/25', auxAddresses: { router: '10.0.0.1' } },
      { subnet: '10.0.1.0/24' },
    ],
  });
  t.deepEqual(pools, [
    { subnet: '10.0.0.0/24', ipRange: '10.0.0.128/25', gateway: '10.0.0.2', auxAddresses: { router: '10.0.0.1' } },
    { subnet: '10.0.1.0/24', gateway: '10.0.1.1' },
    { subnet: 'fd00::/64', gateway: 'fd00::ab' },
  ]);
});

test('a requested v6 subnet leaves the v4 default in place, and an empty request is ignored', (t) => {
  t.deepEqual(resolve({ enableIPv6: true, requested: [{}, { subnet: 'fd12::/64' }] }), [
    { subnet: '172.17.0.0/16', gateway: '172.17.0.1' },
    { subnet: 'fd12::/64', gateway: 'fd12::1' },
  ]);
});

const invalidRequests: [string, PoolRequest, string][] = [
  ['prefix too long', { subnet: '10.0.0.0/33' }, 'invalid subnet "10.0.0.0/33"'],
  ['leading whitespace', { subnet: ' 10.0.0.0/24' }, 'invalid subnet " 10.0.0.0/24"'],
  ['leading zero in an octet', { subnet: '10.0.0.00/24' }, 'invalid subnet "10.0.0.00/24"'],
  ['leading zero in the prefix', { subnet: '10.0.0.0/024' }, 'invalid subnet "10.0.0.0/024"'],
  ['no prefix', { subnet: '10.0.0.0' }, 'invalid subnet "10.0.0.0"'],
  ['zone id', { subnet: 'fe80::%eth0/64' }, 'invalid subnet "fe80::%eth0/64"'],
  ['host bits set', { subnet: '10.0.0.1/24' }, 'invalid subnet 10.0.0.1/24: it should be 10.0.0.0/24'],
  ['gateway outside', { subnet: '10.0.0.0/24', gateway: '10.1.0.1' }, 'gateway 10.1.0.1 is not in subnet 10.0.0.0/24'],
  [
    'v6 gateway in v4 subnet',
    { subnet: '10.0.0.0/24', gateway: 'fd00::1' },
    'gateway fd00::1 is IPv6 but subnet 10.0.0.0/24 is IPv4',
  ],
  ['gateway in CIDR form', { subnet: '10.0.0.0/24', gateway: '10.0.0.1/24' }, 'invalid gateway "10.0.0.1/24"'],
  [
    'gateway is the network address',
    { subnet: '10.0.0.0/24', gateway: '10.0.0.0' },
    'gateway 10.0.0.0 is the network address of subnet 10.0.0.0/24',
  ],
  [
    'gateway is the broadcast address',
    { subnet: '10.0.0.0/24', gateway: '10.0.0.255' },
    'gateway 10.0.0.255 is the broadcast address of subnet 10.0.0.0/24',
  ],
  [
    'v6 gateway is the subnet-router anycast address',
    { subnet: 'fd00::/64', gateway: 'fd00::' },
    'gateway fd00:: is the subnet-router anycast address of subnet fd00::/64',
  ],
  ['ip-range malformed', { subnet: '10.0.0.0/24', ipRange: '10.0.0.0' }, 'invalid ip-range "10.0.0.0"'],
  [
    'ip-range outside',
    { subnet: '10.0.0.0/24', ipRange: '10.0.1.0/25' },
    'ip-range 10.0.1.0/25 is not in subnet 10.0.0.0/24',
  ],
  [
    'ip-range wider',
    { subnet: '10.0.0.0/24', ipRange: '10.0.0.0/16' },
    'ip-range 10.0.0.0/16 is wider than subnet 10.0.0.0/24',
  ],
  [
    'ip-range host bits',
    { subnet: '10.0.0.0/24', ipRange: '10.0.0.1/25' },
    'invalid ip-range 10.0.0.1/25: it should be 10.0.0.0/25',
  ],
  [
    'ip-range of the other family',
    { subnet: '10.0.0.0/24', ipRange: 'fd00::/64' },
    'ip-range fd00::/64 is IPv6 but subnet 10.0.0.0/24 is IPv4',
  ],
  [
    'aux outside',
    { subnet: '10.0.0.0/24', auxAddresses: { db: '10.1.0.5' } },
    'auxiliary address "db" 10.1.0.5 is not in subnet 10.0.0.0/24',
  ],
  [
    'aux malformed',
    { subnet: '10.0.0.0/24', auxAddresses: { db: '10.0.0.300' } },
    'invalid auxiliary address "db" "10.0.0.300"',
  ],
  [
    'aux is the gateway',
    { subnet: '10.0.0.0/24', gateway: '10.0.0.1', auxAddresses: { db: '10.0.0.1' } },
    'auxiliary address "db" (10.0.0.1) is the gateway',
  ],
  [
    'aux addresses duplicated',
    { subnet: '10.0.0.0/24', auxAddresses: { a: '10.0.0.5', b: '10.0.0.5' } },
    'auxiliary addresses "a" and "b" are both 10.0.0.5',
  ],
  ['gateway without subnet', { gateway: '10.0.0.1' }, 'gateway 10.0.0.1 given without a subnet'],
];

for (const [name, request, message] of invalidRequests) {
  test(`rejects a request: ${name}`, (t) => {
    t.throws(() => resolve({ enableIPv6: true, requested: [request] }), { instanceOf: InvalidArgument, message });
  });
}

test('rejects duplicate aux names across pools', (t) => {
  const requested = [
    { subnet: '10.0.0.0/24', auxAddresses: { a: '10.0.0.5' } },
    { subnet: '10.0.1.0/24', auxAddresses: { a: '10.0.1.5' } },
  ];
  t.throws(() => resolve({ requested }), { instanceOf: InvalidArgument, message: 'duplicate auxiliary address name "a"' });
});

test('rejects requested subnets that overlap each other', (t) => {
  const requested = [{ subnet: '10.0.0.0/24' }, { subnet: '10.0.0.0/25' }];
  t.throws(() => resolve({ requested }), {
    instanceOf: InvalidArgument,
    message: 'subnet 10.0.0.0/25 overlaps with subnet 10.0.0.0/24',
  });
});

test('rejects a subnet that overlaps an existing network', (t) => {
  t.throws(
    () =>
      resolve({
        requested: [{ subnet: '172.18.0.0/16' }],
        existing: [{ networkName: 'web', subnet: '172.18.0.0/16' }],
      }),
    { instanceOf: Conflict, message: 'subnet 172.18.0.0/16 overlaps with network "web" (172.18.0.0/16)' },
  );
  t.throws(
    () =>
      resolve({
        enableIPv6: true,
        requested: [{ subnet: 'fd00:1::/64' }],
        existing: [{ networkName: 'v6', subnet: 'fd00::/16' }],
      }),
    { instanceOf: Conflict, message: 'subnet fd00:1::/64 overlaps with network "v6" (fd00::/16)' },
  );
});

test('rejects a subnet of a family that is not enabled', (t) => {
  t.throws(() => resolve({ requested: [{ subnet: 'fd00::/64' }] }), {
    instanceOf: InvalidArgument,
    message: 'IPv6 subnet fd00::/64 given but IPv6 is not enabled',
  });
  t.throws(() => resolve({ enableIPv4: false, enableIPv6: true, requested: [{ subnet: '10.0.0.0/24' }] }), {
    instanceOf: InvalidArgument,
    message: 'IPv4 subnet 10.0.0.0/24 given but IPv4 is disabled',
  });
});

function allocatorFor(requested: PoolRequest[], enableIPv6 = false): { pools: IpamPoolConfig[]; allocator: Allocator } {
  const pools = resolve({ requested, enableIPv6 });
  return { pools, allocator: new Allocator(pools) };
}

test('dynamic allocation is lowest-free and reuses the lowest released address', (t) => {
  const { allocator } = allocatorFor([{ subnet: '172.18.0.0/16' }]);
  t.is(allocator.allocate(4), '172.18.0.2/16');
  t.is(allocator.allocate(4), '172.18.0.3/16');
  t.is(allocator.allocate(4), '172.18.0.4/16');
  allocator.release('172.18.0.3/16');
  allocator.release('172.18.0.2');
  t.false(allocator.isAllocated('172.18.0.2'));
  t.true(allocator.isAllocated('172.18.0.4/16'));
  t.is(allocator.allocate(4), '172.18.0.2/16');
  t.is(allocator.allocate(4), '172.18.0.3/16');
  t.is(allocator.allocate(4), '172.18.0.5/16');
});

test('releasing a free, reserved or foreign address changes nothing', (t) => {
  const { allocator } = allocatorFor([{ subnet: '172.18.0.0/16' }]);
  allocator.release('172.18.0.9');
  allocator.release('172.18.0.1');
  allocator.release('10.9.9.9');
  t.is(allocator.allocate(4), '172.18.0.2/16');
  t.throws(() => allocator.allocate(4, '172.18.0.1'), { instanceOf: Conflict });
  t.throws(() => allocator.release('not-an-ip'), { instanceOf: InvalidArgument, message: 'invalid address "not-an-ip"' });
});

test('dynamic allocation honours the ip-range; static may lie outside it', (t) => {
  const { allocator } = allocatorFor([{ subnet: '10.0.0.0/24', ipRange: '10.0.0.252/30' }]);
  t.is(allocator.allocate(4), '10.0.0.252/24');
  t.is(allocator.allocate(4, '10.0.0.7'), '10.0.0.7/24');
  t.is(allocator.allocate(4), '10.0.0.253/24');
  t.is(allocator.allocate(4), '10.0.0.254/24');
  // 10.0.0.255 is the broadcast address, so the range is used up.
  t.throws(() => allocator.allocate(4), { instanceOf: Conflict, message: 'no available IPv4 addresses in 10.0.0.0/24' });
});

test('gateway, aux, network and broadcast addresses are never handed out', (t) => {
  const { allocator } = allocatorFor([{ subnet: '10.0.0.0/29', auxAddresses: { printer: '10.0.0.3' } }]);
  const handed = [];
  for (;;) {
    try {
      handed.push(allocator.allocate(4));
    } catch (error) {
      t.true(error instanceof Conflict);
      break;
    }
  }
  t.deepEqual(handed, ['10.0.0.2/29', '10.0.0.4/29', '10.0.0.5/29', '10.0.0.6/29']);
});

test('a /30 with its gateway has room for one endpoint', (t) => {
  const { pools, allocator } = allocatorFor([{ subnet: '172.18.0.0/30' }]);
  t.is(pools[0]?.gateway, '172.18.0.1');
  t.is(allocator.allocate(4), '172.18.0.2/30');
  t.throws(() => allocator.allocate(4), { instanceOf: Conflict, message: 'no available IPv4 addresses in 172.18.0.0/30' });
});

test('/31 uses both addresses (RFC 3021) and /32 has none left after the gateway', (t) => {
  const p2p = allocatorFor([{ subnet: '10.0.0.0/31' }]);
  t.is(p2p.pools[0]?.gateway, '10.0.0.0');
  t.is(p2p.allocator.allocate(4), '10.0.0.1/31');
  t.throws(() => p2p.allocator.allocate(4), { instanceOf: Conflict, message: 'no available IPv4 addresses in 10.0.0.0/31' });
  const host = allocatorFor([{ subnet: '10.0.0.5/32' }]);
  t.is(host.pools[0]?.gateway, '10.0.0.5');
  t.throws(() => host.allocator.allocate(4), { instanceOf: Conflict, message: 'no available IPv4 addresses in 10.0.0.5/32' });
});

test('static allocation errors name the problem', (t) => {
  const { allocator } = allocatorFor([{ subnet: '172.18.0.0/16', auxAddresses: { db: '172.18.0.9' } }]);
  t.is(allocator.allocate(4, '172.18.0.5'), '172.18.0.5/16');
  const cases: [string, typeof Conflict | typeof InvalidArgument, string][] = [
    ['172.18.0.5', Conflict, 'address 172.18.0.5 is already in use'],
    ['172.18.0.1', Conflict, 'address 172.18.0.1 is reserved for the gateway'],
    ['172.18.0.9', Conflict, 'address 172.18.0.9 is reserved as auxiliary address "db"'],
    ['172.18.0.0', InvalidArgument, 'address 172.18.0.0 is the network address of 172.18.0.0/16'],
    ['172.18.255.255', InvalidArgument, 'address 172.18.255.255 is the broadcast address of 172.18.0.0/16'],
    ['10.0.0.5', InvalidArgument, 'address 10.0.0.5 is not in any subnet of the network (172.18.0.0/16)'],
    [' 172.18.0.6', InvalidArgument, 'invalid IPv4 address " 172.18.0.6"'],
    ['172.18.0.06', InvalidArgument, 'invalid IPv4 address "172.18.0.06"'],
    ['fd00::1', InvalidArgument, 'address fd00::1 is not an IPv4 address'],
  ];
  for (const [address, instanceOf, message] of cases) {
    t.throws(() => allocator.allocate(4, address), { instanceOf, message }, address);
  }
  t.throws(() => allocator.allocate(6), { instanceOf: InvalidArgument, message: 'network has no IPv6 subnet' });
});

test('a static address is skipped by later dynamic allocation', (t) => {
  const { allocator } = allocatorFor([{ subnet: '172.18.0.0/16' }]);
  allocator.allocate(4, '172.18.0.2');
  t.is(allocator.allocate(4), '172.18.0.3/16');
});

test('with two pools of a family, dynamic allocation moves on when the first is full', (t) => {
  const { allocator } = allocatorFor([{ subnet: '10.0.0.0/30' }, { subnet: '10.0.1.0/24' }]);
  t.is(allocator.allocate(4), '10.0.0.2/30');
  t.is(allocator.allocate(4), '10.0.1.2/24');
  t.is(allocator.allocate(4, '10.0.1.200'), '10.0.1.200/24');
});

test('IPv6 allocation skips the anycast address and the gateway and prints compressed addresses', (t) => {
  const { allocator } = allocatorFor([{ subnet: '172.18.0.0/16' }, { subnet: 'FD00:1::/64' }], true);
  t.is(allocator.allocate(6), 'fd00:1::2/64');
  t.is(allocator.allocate(4), '172.18.0.2/16');
  t.is(allocator.allocate(6, 'fd00:1::ffff:ffff:ffff:ffff'), 'fd00:1::ffff:ffff:ffff:ffff/64');
  t.is(allocator.allocate(6, 'FD00:1:0:0::A'), 'fd00:1::a/64');
  t.true(allocator.isAllocated('fd00:1::a'));
  t.throws(() => allocator.allocate(6, 'fd00:1::'), {
    instanceOf: InvalidArgument,
    message: 'address fd00:1:: is the subnet-router anycast address of fd00:1::/64',
  });
  t.throws(() => allocator.allocate(6, 'fd00:1::1'), {
    instanceOf: Conflict,
    message: 'address fd00:1::1 is reserved for the gateway',
  });
});

test('an allocator built from the addresses in use goes on where the other left off', (t) => {
  const { pools, allocator } = allocatorFor([{ subnet: '10.0.0.0/24' }, { subnet: 'fd00:1::/64' }], true);
  const inUse = [allocator.allocate(4), allocator.allocate(4), allocator.allocate(4), allocator.allocate(6, 'fd00:1::beef')];
  allocator.release('10.0.0.3');
  const taken = inUse.filter((address) => allocator.isAllocated(address));
  t.deepEqual(taken, ['10.0.0.2/24', '10.0.0.4/24', 'fd00:1::beef/64']);
  const rebuilt = Allocator.withTaken(pools, taken.map((address) => address.split('/')[0] ?? address));
  t.true(rebuilt.isAllocated('fd00:1::beef/64'));
  t.false(rebuilt.isAllocated('10.0.0.3'));
  t.is(rebuilt.allocate(4), '10.0.0.3/24');
  t.is(rebuilt.allocate(4), '10.0.0.5/24');
});

test('addresses in use that do not fit the pools are refused', (t) => {
  const pools = [{ subnet: '10.0.0.0/24', gateway: '10.0.0.1' }];
  t.throws(() => Allocator.withTaken(pools, ['10.0.1.2']), {
    instanceOf: InvalidArgument,
    message: 'address 10.0.1.2 in use is not in any pool of the network',
  });
  t.throws(() => Allocator.withTaken(pools, ['10.0.0.1']), {
    instanceOf: InvalidArgument,
    message: 'reserved address 10.0.0.1 is recorded as in use',
  });
});

test('a /8 with 10000 allocations keeps finding the lowest free address', (t) => {
  const allocator = new Allocator([{ subnet: '10.0.0.0/8', gateway: '10.0.0.1' }]);
  let last = '';
  for (let i = 0; i < 10000; i++) last = allocator.allocate(4);
  // 10.0.0.2 + 9999 = 10.0.39.17
  t.is(last, '10.0.39.17/8');
  allocator.release('10.0.20.0');
  allocator.release('10.0.30.0');
  t.is(allocator.allocate(4), '10.0.20.0/8');
  t.is(allocator.allocate(4), '10.0.30.0/8');
  t.is(allocator.allocate(4), '10.0.39.18/8');
});

test('a /64 with 10000 allocations keeps finding the lowest free address', (t) => {
  const allocator = new Allocator([{ subnet: 'fd00:2::/64', gateway: 'fd00:2::1' }]);
  let last = '';
  for (let i = 0; i < 10000; i++) last = allocator.allocate(6);
  t.is(last, 'fd00:2::2711/64');
  allocator.release('fd00:2::100');
  t.is(allocator.allocate(6), 'fd00:2::100/64');
  t.is(allocator.allocate(6), 'fd00:2::2712/64');
});
