/**
 * The routing mesh's rules, as nft scripts and `ip` batches. A connection
 * to a published port takes this path, and the task sees the client's own
 * address because nothing on it rewrites the source:
 *
 * 1. the host's namespace (where the daemon runs) DNATs it, port unchanged,
 *    to the host's ingress sandbox (its address on the gateway bridge), or
 *    in host mode straight to a local task's address on a bridge;
 * 2. the ingress sandbox DNATs it to one live task's address on the
 *    ingress network, anywhere in the cluster (`numgen inc`: round robin);
 * 3. in the task's namespace, the connection is marked with the ingress
 *    sandbox it came from (known by the frame's source MAC); replies carry
 *    the mark, policy routing sends them out of the ingress interface, and
 *    the egress hook sets their destination MAC to that sandbox's. So every
 *    reply goes back through the host the client reached, where conntrack
 *    undoes both DNATs.
 *
 * Every script replaces its table whole, in one transaction: the tables
 * are small (one chain per published port) and this keeps a restart, or a
 * write that failed halfway, from leaving anything stale.
 */
import type { PortProtocol } from '../records.js';

/** The host namespace's table. */
export const PUBLISHED_TABLE = 'netctl_published';
/** The table of the ingress sandbox, and of each task's namespace. */
export const INGRESS_TABLE = 'netctl_ingress';

/** A connection's mark in a task's namespace: this byte, then the low 24 bits of the ingress sandbox's address. */
const MARK_PREFIX = 0x4e000000;
const MARK_MASK = 0xff000000;
/** The mark of a task's own new UDP flow from a published port: it goes out by the main table after all. */
const OWN_FLOW_MARK = 0x4d000000;

/** The policy routing of replies: rule priorities from here, and the routing table of the same number. */
export const REPLY_RULE_PRIORITY = 30100;
/** Priorities REPLY_RULE_PRIORITY … +MAX_REPLY_RULES-1 are the mesh's: a reset deletes any it finds there. */
export const MAX_REPLY_RULES = 200;

export interface Target {
  readonly address: string;
  readonly port: number;
  /** The target's subnet on a bridge of the host (CIDR), for the host's targets: its neighbours there reach it by hairpin. */
  readonly subnet?: string;
}

/** A published port and where its connections go (none: the port is not opened). */
export interface PortTargets {
  readonly protocol: PortProtocol;
  readonly port: number;
  /** Sorted, so an unchanged set writes the same script. */
  readonly targets: readonly Target[];
}

/** An ingress sandbox, as a task's namespace tells its connections apart. */
export interface Entry {
  readonly macAddress: string;
  readonly mark: number;
}

/** What a task's namespace needs to send replies back to the ingress sandbox each connection came from. */
export interface ReplyRules {
  /** The task's interface on the ingress network. */
  readonly ifName: string;
  /** The ingress network's gateway: the next hop the routes name (its MAC is then replaced). */
  readonly gateway: string;
  readonly entries: readonly Entry[];
  /**
   * Target ports of UDP services published here: a UDP server that
   * answers from an unbound socket picks its source address by route, and
   * so before any mark; a rule on the source port routes those replies.
   */
  readonly udpPorts: readonly number[];
}

/** The mark of connections that came from the ingress sandbox at `address` (an IPv4 address). */
export function entryMark(address: string): number {
  const [, b = 0, c = 0, d = 0] = address.split('.').map(Number);
  return (MARK_PREFIX | (b << 16) | (c << 8) | d) >>> 0;
}

function hex(value: number): string {
  return `0x${value.toString(16).padStart(8, '0')}`;
}

function chainOf({ protocol, port }: PortTargets): string {
  return `port_${protocol}_${port}`;
}

/** nft maps a port only after a rule has matched the protocol. */
function dnat({ protocol, targets }: PortTargets): string {
  const first = targets[0];
  if (targets.length === 1 && first !== undefined) return `meta l4proto ${protocol} dnat ip to ${first.address}:${first.port}`;
  const map = targets.map((t, i) => `${i} : ${t.address} . ${t.port}`).join(', ');
  return `meta l4proto ${protocol} dnat ip to numgen inc mod ${targets.length} map { ${map} }`;
}

/** Makes the table hold exactly `body` (none when undefined): made if missing, deleted, made anew. */
function replace(family: 'ip' | 'netdev', table: string, body: readonly string[] | undefined): string {
  const lines = [`table ${family} ${table} {}`, `delete table ${family} ${table}`];
  if (body !== undefined) lines.push(`table ${family} ${table} {`, ...body.map((line) => `  ${line}`), '}');
  return `${lines.join('\n')}\n`;
}

/** A verdict map from protocol and port to each opened port's chain, and the chains. */
function portChains(ports: readonly PortTargets[], hooks: readonly string[], match: string): string[] | undefined {
  const open = ports.filter((p) => p.targets.length > 0);
  if (open.length === 0) return undefined;
  const vmap = `{ ${open.map((p) => `${p.protocol} . ${p.port} : goto ${chainOf(p)}`).join(', ')} }`;
  return [
    ...hooks.flatMap((hook) => [
      `chain ${hook} {`,
      // dstnat by number: nft 1.0.6 knows the name on prerouting only.
      `  type nat hook ${hook} priority -100; policy accept;`,
      `  ${match} meta l4proto . th dport vmap ${vmap}`,
      '}',
    ]),
    ...open.flatMap((p) => [`chain ${chainOf(p)} {`, `  ${dnat(p)}`, '}']),
  ];
}

/**
 * The host namespace's table: connections to any of the host's own
 * addresses on a published port, from outside or from the host itself (not
 * over loopback, which could not be forwarded), go to their targets.
 */
export function publishedScript(ports: readonly PortTargets[]): string {
  const chains = portChains(ports, ['prerouting', 'output'], 'fib daddr type local ip daddr != 127.0.0.0/8');
  if (chains === undefined) return replace('ip', PUBLISHED_TABLE, undefined);
  // A sandbox on the target's own bridge, routed through the host, would get the answer straight across the
  // bridge, never un-NATed: such connections come from the host, as Docker's hairpin NAT does. (With bridge
  // netfilter loaded the kernel bridges that DNAT instead, and overlay sandboxes, which share the gateway
  // bridge with the ingress sandbox, still do not reach their own host's ports: README.)
  const hairpins = new Set(
    ports.flatMap((p) => p.targets.flatMap((t) => (t.subnet === undefined ? [] : [`ct status dnat ip saddr ${t.subnet} ip daddr ${t.address} masquerade`]))),
  );
  if (hairpins.size === 0) return replace('ip', PUBLISHED_TABLE, chains);
  return replace('ip', PUBLISHED_TABLE, [
    ...chains,
    'chain postrouting {',
    '  type nat hook postrouting priority 100; policy accept;',
    ...[...hairpins].sort().map((rule) => `  ${rule}`),
    '}',
  ]);
}

/** The network of an IPv4 CIDR: 172.18.0.2/16 → 172.18.0.0/16. */
export function subnetOf(cidr: string): string {
  const [address = '', length = '32'] = cidr.split('/');
  const bits = Number(length);
  const value = address.split('.').reduce((sum, byte) => sum * 256 + Number(byte), 0);
  const mask = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
  const network = (value & mask) >>> 0;
  return `${[24, 16, 8, 0].map((shift) => (network >>> shift) & 255).join('.')}/${bits}`;
}

/** The ingress sandbox's table: what the host sent to `entryAddress` goes on to a task. */
export function entryScript(entryAddress: string, ports: readonly PortTargets[]): string {
  return replace('ip', INGRESS_TABLE, portChains(ports, ['prerouting'], `ip daddr ${entryAddress}`));
}

/** A task namespace's tables: each connection from an ingress sandbox is marked with it; its replies go back to it. */
export function replyScript(rules: ReplyRules | undefined): string {
  if (rules === undefined || rules.entries.length === 0) return replace('ip', INGRESS_TABLE, undefined) + replace('netdev', INGRESS_TABLE, undefined);
  const device = JSON.stringify(rules.ifName);
  const marks = `{ ${rules.entries.map((e) => `${e.macAddress} : ${hex(e.mark)}`).join(', ')} }`;
  const macs = `{ ${rules.entries.map((e) => `${hex(e.mark)} : ${e.macAddress}`).join(', ')} }`;
  const marked = `& ${hex(MARK_MASK)} == ${hex(MARK_PREFIX)}`;
  const unmarked = `& ${hex(MARK_MASK)} != ${hex(MARK_PREFIX)}`;
  return (
    replace('ip', INGRESS_TABLE, [
      'chain prerouting {',
      '  type filter hook prerouting priority mangle; policy accept;',
      // Not only a flow's first packet: one that came before these rules (a task just joined) is marked by its next, a retried SYN.
      `  iifname ${device} ct mark 0 ct mark set ether saddr map ${marks}`,
      '}',
      // A route chain: a mark set here makes the kernel route the packet again.
      'chain output {',
      '  type route hook output priority mangle; policy accept;',
      `  ct mark ${marked} meta mark set ct mark`,
      // The source-port rule sent every datagram from a published UDP port to the ingress network; those of the
      // task's own flows (no mark) go back to the main table, and take the address of the interface they leave by.
      ...(rules.udpPorts.length > 0 ? [`  udp sport { ${rules.udpPorts.join(', ')} } ct mark ${unmarked} meta mark set ${hex(OWN_FLOW_MARK)}`] : []),
      '}',
      ...(rules.udpPorts.length > 0
        ? ['chain postrouting {', '  type nat hook postrouting priority srcnat; policy accept;', `  meta mark ${hex(OWN_FLOW_MARK)} oifname != ${device} masquerade`, '}']
        : []),
    ]) +
    replace('netdev', INGRESS_TABLE, [
      'chain egress {',
      `  type filter hook egress device ${device} priority filter; policy accept;`,
      `  meta mark ${marked} ether daddr set meta mark map ${macs}`,
      '}',
    ])
  );
}

/**
 * The `ip -batch` lines that make a task namespace's reply routing match
 * `rules`: `present` are the priorities of the mesh's rules it holds now,
 * which go first. The main table keeps deciding for every destination it
 * has a route for other than the default one; a marked reply, or one from a
 * published UDP port, takes the ingress interface instead.
 */
export function replyRouteBatch(rules: ReplyRules | undefined, present: readonly number[]): string[] {
  const table = REPLY_RULE_PRIORITY;
  const lines = present.map((priority) => `rule del priority ${priority}`);
  if (present.length > 0) lines.push(`route flush table ${table}`);
  if (rules === undefined || rules.entries.length === 0) return lines;
  lines.push(
    `rule add priority ${table} lookup main suppress_prefixlength 0`,
    `rule add priority ${table + 1} fwmark ${hex(MARK_PREFIX)}/${hex(MARK_MASK)} lookup ${table}`,
    `rule add priority ${table + 2} fwmark ${hex(OWN_FLOW_MARK)}/${hex(MARK_MASK)} lookup main`,
    ...rules.udpPorts.slice(0, MAX_REPLY_RULES - 3).map((port, i) => `rule add priority ${table + 3 + i} ipproto udp sport ${port} lookup ${table}`),
    `route replace default via ${rules.gateway} dev ${rules.ifName} onlink table ${table}`,
  );
  return lines;
}
