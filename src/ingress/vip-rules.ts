/**
 * The nftables rules that turn a sandbox's connections to a service's
 * virtual IP into connections to one of its tasks, as nft scripts. They
 * live in one table of the sandbox's own namespace, so they see exactly
 * what the sandbox sends and nothing else does:
 *
 * - a nat chain on the output hook looks the destination up in one verdict
 *   map, virtual IP → that service's chain (one lookup, whatever the number
 *   of services), for TCP and UDP;
 * - each service's chain DNATs to its tasks in turn (`numgen inc`, round
 *   robin as IPVS does by default), the port unchanged. Only a flow's first
 *   packet meets it; conntrack keeps the rest of the flow on its task;
 * - a filter chain refuses whatever still goes to a virtual IP (a service
 *   with no task, or neither TCP nor UDP): a TCP connect gets a reset and
 *   anything else fails at once (the reject sits on the sandbox's own
 *   output path, so a UDP send or a ping gets EPERM), rather than hanging.
 *
 * A change rewrites only the chains and map elements of the services that
 * changed, in one `nft -f` transaction.
 */

/** A sandbox's virtual IPs, each with the addresses of the tasks it balances to (sorted). */
export type VipTable = ReadonlyMap<string, readonly string[]>;

export const SERVICES_TABLE = 'netctl_services';
const T = `ip ${SERVICES_TABLE}`;

function chainOf(virtualIp: string): string {
  return `vip_${virtualIp.replaceAll('.', '_')}`;
}

function dnatRule(virtualIp: string, tasks: readonly string[]): string[] {
  if (tasks.length === 0) return [];
  const target =
    tasks.length === 1 ? tasks[0] : `numgen inc mod ${tasks.length} map { ${tasks.map((task, i) => `${i} : ${task}`).join(', ')} }`;
  return [`add rule ${T} ${chainOf(virtualIp)} dnat to ${target}`];
}

function addVip(virtualIp: string, tasks: readonly string[]): string[] {
  return [
    `add chain ${T} ${chainOf(virtualIp)}`,
    ...dnatRule(virtualIp, tasks),
    `add element ${T} vips { ${virtualIp} : goto ${chainOf(virtualIp)} }`,
    `add element ${T} vip_addresses { ${virtualIp} }`,
  ];
}

function removeVip(virtualIp: string): string[] {
  return [
    `delete element ${T} vips { ${virtualIp} }`,
    `delete element ${T} vip_addresses { ${virtualIp} }`,
    `delete chain ${T} ${chainOf(virtualIp)}`,
  ];
}

/**
 * The script that makes the table hold exactly `table`, whatever the
 * namespace held before (an older daemon's table, or none): the table is
 * made if missing, deleted, and made anew, in one transaction. An empty
 * `table` leaves no table.
 */
export function replaceScript(table: VipTable): string {
  const lines = [`add table ${T}`, `delete table ${T}`];
  if (table.size > 0) {
    lines.push(
      `add table ${T}`,
      `add map ${T} vips { type ipv4_addr : verdict; }`,
      `add set ${T} vip_addresses { type ipv4_addr; }`,
      // -100 and 0 are the dstnat and filter priorities; this nft does not take those names for nat output.
      `add chain ${T} nat_output { type nat hook output priority -100; policy accept; }`,
      `add rule ${T} nat_output meta l4proto { tcp, udp } ip daddr vmap @vips`,
      `add chain ${T} filter_output { type filter hook output priority 0; policy accept; }`,
      `add rule ${T} filter_output ip daddr @vip_addresses meta l4proto tcp reject with tcp reset`,
      `add rule ${T} filter_output ip daddr @vip_addresses reject`,
    );
    for (const [virtualIp, tasks] of table) lines.push(...addVip(virtualIp, tasks));
  }
  return `${lines.join('\n')}\n`;
}

/**
 * The script that takes a table holding `previous` to `next`: services
 * added, changed (their chain flushed and its rule written again) or gone;
 * undefined when nothing changed. From or to an empty table it is the whole
 * `replaceScript`.
 */
export function changeScript(previous: VipTable, next: VipTable): string | undefined {
  if (previous.size === 0 || next.size === 0) return sameTable(previous, next) ? undefined : replaceScript(next);
  const lines: string[] = [];
  for (const virtualIp of previous.keys()) if (!next.has(virtualIp)) lines.push(...removeVip(virtualIp));
  for (const [virtualIp, tasks] of next) {
    const before = previous.get(virtualIp);
    if (before === undefined) lines.push(...addVip(virtualIp, tasks));
    else if (!sameTasks(before, tasks)) lines.push(`flush chain ${T} ${chainOf(virtualIp)}`, ...dnatRule(virtualIp, tasks));
  }
  return lines.length === 0 ? undefined : `${lines.join('\n')}\n`;
}

/** For each virtual IP, the tasks `previous` balanced to that `next` does not: their tracked flows are to be forgotten. */
export function droppedTasks(previous: VipTable, next: VipTable): { virtualIp: string; task: string }[] {
  const dropped: { virtualIp: string; task: string }[] = [];
  for (const [virtualIp, tasks] of previous) {
    const kept = new Set(next.get(virtualIp) ?? []);
    for (const task of tasks) if (!kept.has(task)) dropped.push({ virtualIp, task });
  }
  return dropped;
}

/**
 * The virtual IPs `next` has and `previous` did not. Flows the namespace
 * tracked to such an address before (to an endpoint that had it, while
 * another VIP's DNAT kept conntrack on) were never NATed, and conntrack
 * keeps each later packet of them off the nat chain: they are to be
 * forgotten too, or the filter chain refuses them for as long as they last.
 */
export function addedVips(previous: VipTable, next: VipTable): string[] {
  return [...next.keys()].filter((virtualIp) => !previous.has(virtualIp));
}

export function sameTable(a: VipTable, b: VipTable): boolean {
  if (a.size !== b.size) return false;
  for (const [virtualIp, tasks] of a) {
    const other = b.get(virtualIp);
    if (other === undefined || !sameTasks(tasks, other)) return false;
  }
  return true;
}

function sameTasks(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((task, i) => task === b[i]);
}
