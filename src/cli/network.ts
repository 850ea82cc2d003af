/**
 * `netctl network …`: the `docker network` commands, same flags and output.
 */
import { BlockList, isIP } from 'node:net';
import { isDaemonError } from '../api/client.js';
import type { IpamConfigBody, NetworkCreateBody } from '../api/types.js';
import { isNotFound } from '../errors.js';
import { parseFilterArgs } from '../cnm/filters.js';
import type { DockerNetwork } from '../api/docker.js';
import { CliError, type Command, type CommandContext, type CommandGroup } from './command.js';
import { goTimeString, inspectJson, joinLabels, naturalCompare, networkTemplateData, shortId } from './output.js';
import { formatRows, parseTemplate } from './gotemplate/index.js';

/** `k=v` list → map; a missing `=` gives an empty value, as docker's label and option parsing does. */
export function keyValues(what: string, entries: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const entry of entries) {
    const eq = entry.indexOf('=');
    const k = (eq < 0 ? entry : entry.slice(0, eq)).trim();
    if (k === '') throw new CliError(`invalid ${what} '${entry}': empty name`);
    out[k] = eq < 0 ? '' : entry.slice(eq + 1);
  }
  return out;
}

/** Docker's subnetMatches: is the address (or the address part of a CIDR) inside the subnet? */
function subnetContains(subnet: string, data: string): boolean {
  const slash = subnet.indexOf('/');
  const base = subnet.slice(0, slash);
  const prefix = Number(subnet.slice(slash + 1));
  const family = isIP(base);
  const maxPrefix = family === 4 ? 32 : 128;
  if (slash < 0 || family === 0 || !/^\d+$/.test(subnet.slice(slash + 1)) || prefix > maxPrefix) {
    throw new CliError(`invalid subnet: invalid CIDR address: ${subnet}`);
  }
  const address = data.includes('/') ? data.slice(0, data.indexOf('/')) : data;
  const addressFamily = isIP(address);
  if (addressFamily !== family) return false;
  const list = new BlockList();
  list.addSubnet(base, prefix, family === 4 ? 'ipv4' : 'ipv6');
  return list.check(address, family === 4 ? 'ipv4' : 'ipv6');
}

/** Pairs --ip-range, --gateway and --aux-address with the --subnet that contains each, as docker does. */
export function ipamConfig(
  subnets: readonly string[],
  ranges: readonly string[],
  gateways: readonly string[],
  auxAddresses: Readonly<Record<string, string>>,
): IpamConfigBody[] {
  if (subnets.length < ranges.length || subnets.length < gateways.length) {
    throw new CliError('every ip-range or gateway must have a corresponding subnet');
  }
  const pools = new Map<string, IpamConfigBody & { AuxiliaryAddresses: Record<string, string> }>();
  for (const subnet of subnets) {
    for (const other of pools.keys()) {
      if (subnetContains(subnet, other) || subnetContains(other, subnet)) {
        throw new CliError('multiple overlapping subnet configuration is not supported');
      }
    }
    // Checks the CIDR itself, so a malformed one is reported before anything is sent.
    subnetContains(subnet, subnet);
    pools.set(subnet, { Subnet: subnet, AuxiliaryAddresses: {} });
  }
  const assign = (what: string, value: string, field: 'IPRange' | 'Gateway', plural: string): void => {
    let matched = false;
    for (const [subnet, pool] of pools) {
      if (!subnetContains(subnet, value)) continue;
      const existing = pool[field];
      if (existing !== undefined) {
        throw new CliError(`cannot configure multiple ${plural} (${value}, ${existing}) on the same subnet (${subnet})`);
      }
      pool[field] = value;
      matched = true;
    }
    if (!matched) throw new CliError(`no matching subnet for ${what} ${value}`);
  };
  for (const range of ranges) assign('range', range, 'IPRange', 'ranges');
  for (const gateway of gateways) assign('gateway', gateway, 'Gateway', 'gateways');
  for (const [name, address] of Object.entries(auxAddresses)) {
    let matched = false;
    for (const [subnet, pool] of pools) {
      if (!subnetContains(subnet, address)) continue;
      pool.AuxiliaryAddresses[name] = address;
      matched = true;
    }
    if (!matched) throw new CliError(`no matching subnet for aux-address ${address}`);
  }
  return [...pools.values()].map(({ AuxiliaryAddresses, ...pool }) =>
    Object.keys(AuxiliaryAddresses).length > 0 ? { ...pool, AuxiliaryAddresses } : pool,
  );
}

const create: Command = {
  name: 'create',
  usage: '[OPTIONS] NETWORK',
  summary: 'Create a network',
  args: { exactly: 1 },
  flags: [
    { name: 'attachable', type: 'bool', help: 'Enable manual sandbox attachment' },
    { name: 'aux-address', type: 'list', valueName: 'map', help: 'Auxiliary IPv4 or IPv6 addresses used by Network driver', defaultText: 'map[]' },
    { name: 'config-from', type: 'string', help: 'The network from which to copy the configuration' },
    { name: 'config-only', type: 'bool', help: 'Create a configuration only network' },
    { name: 'driver', short: 'd', type: 'string', help: 'Driver to manage the Network', defaultText: '"bridge"' },
    { name: 'gateway', type: 'list', valueName: 'strings', help: 'IPv4 or IPv6 Gateway for the master subnet' },
    { name: 'ingress', type: 'bool', help: 'Create swarm routing-mesh network' },
    { name: 'internal', type: 'bool', help: 'Restrict external access to the network' },
    { name: 'ip-range', type: 'list', valueName: 'strings', help: 'Allocate container ip from a sub-range' },
    { name: 'ipam-driver', type: 'string', help: 'IP Address Management Driver', defaultText: '"default"' },
    { name: 'ipam-opt', type: 'list', valueName: 'map', help: 'Set IPAM driver specific options', defaultText: 'map[]' },
    { name: 'ipv4', type: 'bool', help: 'Enable or disable IPv4 address assignment', defaultText: 'true' },
    { name: 'ipv6', type: 'bool', help: 'Enable or disable IPv6 address assignment' },
    { name: 'label', type: 'list', help: 'Set metadata on a network' },
    { name: 'opt', short: 'o', type: 'list', valueName: 'map', help: 'Set driver specific options', defaultText: 'map[]' },
    { name: 'scope', type: 'string', help: 'Control the network\'s scope' },
    { name: 'subnet', type: 'list', valueName: 'strings', help: 'Subnet in CIDR format that represents a network segment' },
  ],
  async run(ctx, parsed) {
    const config = ipamConfig(
      parsed.list('subnet'),
      parsed.list('ip-range'),
      parsed.list('gateway'),
      keyValues('aux-address', parsed.list('aux-address')),
    );
    const body: NetworkCreateBody = {
      Name: parsed.args[0] ?? '',
      Driver: parsed.string('driver') ?? 'bridge',
      Internal: parsed.bool('internal'),
      Attachable: parsed.bool('attachable'),
      Ingress: parsed.bool('ingress'),
      IPAM: {
        Driver: parsed.string('ipam-driver') ?? 'default',
        Config: config,
        Options: keyValues('ipam-opt', parsed.list('ipam-opt')),
      },
      Options: keyValues('opt', parsed.list('opt')),
      Labels: keyValues('label', parsed.list('label')),
      ...(parsed.has('ipv4') ? { EnableIPv4: parsed.bool('ipv4') } : {}),
      ...(parsed.has('ipv6') ? { EnableIPv6: parsed.bool('ipv6') } : {}),
      ...(parsed.has('scope') ? { Scope: parsed.string('scope') ?? '' } : {}),
      ...(parsed.bool('config-only') ? { ConfigOnly: true } : {}),
      ...(parsed.has('config-from') ? { ConfigFrom: { Network: parsed.string('config-from') ?? '' } } : {}),
    };
    const created = await ctx.client().createNetwork(body);
    for (const warning of created.Warning === '' ? [] : created.Warning.split('\n')) ctx.io.stderr(`WARNING: ${warning}\n`);
    ctx.io.stdout(`${created.Id}\n`);
    return 0;
  },
};

const NETWORK_HEADERS: Record<string, string> = {
  ID: 'NETWORK ID',
  Name: 'NAME',
  Driver: 'DRIVER',
  Scope: 'SCOPE',
  IPv4: 'IPV4',
  IPv6: 'IPV6',
  Internal: 'INTERNAL',
  Labels: 'LABELS',
  CreatedAt: 'CREATED AT',
};

/** One `network ls` row; keys in alphabetical order as docker's `--format json` prints them. */
function networkRow(network: DockerNetwork, noTrunc: boolean): Record<string, unknown> {
  return {
    CreatedAt: goTimeString(network.Created),
    Driver: network.Driver,
    ID: noTrunc ? network.Id : shortId(network.Id),
    IPv4: String(network.EnableIPv4),
    IPv6: String(network.EnableIPv6),
    Internal: String(network.Internal),
    Labels: joinLabels(network.Labels),
    Name: network.Name,
    Scope: network.Scope,
    Label: (name: string) => network.Labels[name] ?? '',
  };
}

/** Docker's rule: `-q` replaces only the default (table) format. */
export function listFormat(format: string | undefined, quiet: boolean, defaultTable: string): string {
  const isDefault = format === undefined || format === '' || format === 'table';
  if (quiet && isDefault) return '{{.ID}}';
  return isDefault ? defaultTable : format;
}

const ls: Command = {
  name: 'ls',
  aliases: ['list'],
  usage: '[OPTIONS]',
  summary: 'List networks',
  args: { exactly: 0 },
  flags: [
    { name: 'filter', short: 'f', type: 'list', valueName: 'filter', help: "Provide filter values (e.g. 'driver=bridge')" },
    {
      name: 'format',
      type: 'string',
      help: "Format output using a custom template ('table', 'table TEMPLATE', 'json' or a Go template)",
    },
    { name: 'no-trunc', type: 'bool', help: 'Do not truncate the output' },
    { name: 'quiet', short: 'q', type: 'bool', help: 'Only display network IDs' },
  ],
  async run(ctx, parsed) {
    const networks = await ctx.client().listNetworks(parseFilterArgs(parsed.list('filter')));
    networks.sort((a, b) => naturalCompare(a.Name, b.Name));
    const defaultTable = 'table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}';
    const format = listFormat(parsed.string('format'), parsed.bool('quiet'), defaultTable);
    const rows = networks.map((n) => networkRow(n, parsed.bool('no-trunc')));
    ctx.io.stdout(formatRows(format, rows, { defaultTable, headers: NETWORK_HEADERS }));
    return 0;
  },
};

/** Prints each found object (as JSON or through the template); reports missing ones after. */
export async function inspectEach<T>(
  ctx: CommandContext,
  names: readonly string[],
  what: string,
  fetch: (name: string) => Promise<T>,
  templateData: (value: T) => unknown,
  format: string | undefined,
): Promise<number> {
  const found: T[] = [];
  const errors: string[] = [];
  for (const name of names) {
    try {
      found.push(await fetch(name));
    } catch (err) {
      if (!isDaemonError(err) || !isNotFound(err)) throw err;
      errors.push(`Error: No such ${what}: ${name}`);
    }
  }
  if (format === undefined || format === '') {
    ctx.io.stdout(inspectJson(found));
  } else {
    const template = parseTemplate(format);
    for (const value of found) ctx.io.stdout(`${template.execute(templateData(value))}\n`);
  }
  for (const error of errors) ctx.io.stderr(`${error}\n`);
  return errors.length > 0 ? 1 : 0;
}

const inspect: Command = {
  name: 'inspect',
  usage: '[OPTIONS] NETWORK [NETWORK...]',
  summary: 'Display detailed information on one or more networks',
  args: { atLeast: 1 },
  flags: [
    { name: 'format', short: 'f', type: 'string', help: 'Format output using a custom template' },
    { name: 'verbose', short: 'v', type: 'bool', help: 'Verbose output for diagnostics' },
  ],
  async run(ctx, parsed) {
    const client = ctx.client();
    return inspectEach(
      ctx,
      parsed.args,
      'network',
      (name) => client.inspectNetwork(name),
      networkTemplateData,
      parsed.string('format'),
    );
  },
};

/** Runs an action per argument, printing each name done and each failure; exit 1 if any failed. */
export async function eachName(
  ctx: CommandContext,
  names: readonly string[],
  action: (name: string) => Promise<void>,
  skip: (err: unknown) => boolean = () => false,
): Promise<number> {
  let failed = false;
  for (const name of names) {
    try {
      await action(name);
      ctx.io.stdout(`${name}\n`);
    } catch (err) {
      if (skip(err)) continue;
      if (!isDaemonError(err)) throw err;
      ctx.io.stderr(`Error response from daemon: ${(err as Error).message}\n`);
      failed = true;
    }
  }
  return failed ? 1 : 0;
}

const rm: Command = {
  name: 'rm',
  aliases: ['remove'],
  usage: 'NETWORK [NETWORK...]',
  summary: 'Remove one or more networks',
  args: { atLeast: 1 },
  flags: [{ name: 'force', short: 'f', type: 'bool', help: 'Do not error if the network does not exist' }],
  async run(ctx, parsed) {
    const client = ctx.client();
    const force = parsed.bool('force');
    return eachName(
      ctx,
      parsed.args,
      (name) => client.removeNetwork(name),
      (err) => force && isNotFound(err),
    );
  },
};

const PRUNE_WARNING =
  'WARNING! This will remove all custom networks not used by at least one container.\nAre you sure you want to continue? [y/N] ';

const prune: Command = {
  name: 'prune',
  usage: '[OPTIONS]',
  summary: 'Remove all unused networks',
  args: { exactly: 0 },
  flags: [
    { name: 'filter', type: 'list', valueName: 'filter', help: "Provide filter values (e.g. 'until=<timestamp>')" },
    { name: 'force', short: 'f', type: 'bool', help: 'Do not prompt for confirmation' },
  ],
  async run(ctx, parsed) {
    const filters = parseFilterArgs(parsed.list('filter'));
    if (!parsed.bool('force')) {
      ctx.io.stdout(PRUNE_WARNING);
      const answer = (await ctx.io.readLine()).trim().toLowerCase();
      if (answer !== 'y' && answer !== 'yes') return 0;
    }
    const deleted = await ctx.client().pruneNetworks(filters);
    if (deleted.length > 0) ctx.io.stdout(`Deleted Networks:\n${deleted.map((name) => `${name}\n`).join('')}\n`);
    return 0;
  },
};

const rotateKeys: Command = {
  name: 'rotate-keys',
  usage: '',
  summary: "Renew this host's keys of encrypted networks now",
  args: { exactly: 0 },
  flags: [],
  async run(ctx) {
    for (const rotated of await ctx.client().rotateKeys()) {
      ctx.io.stdout(`${rotated.Driver}: new keys of epoch ${rotated.Epoch}, made ${rotated.RotatedAt}\n`);
    }
    return 0;
  },
};

const connect: Command = {
  name: 'connect',
  usage: '[OPTIONS] NETWORK SANDBOX',
  summary: 'Connect a sandbox to a network',
  args: { exactly: 2 },
  flags: [
    { name: 'alias', type: 'list', valueName: 'strings', help: 'Add network-scoped alias for the sandbox' },
    {
      name: 'driver-opt',
      type: 'list',
      valueName: 'strings',
      help: 'driver options for the network (com.docker.network.endpoint.ifname=NAME names the interface)',
    },
    { name: 'ip', type: 'string', help: 'IPv4 address (e.g., "172.30.100.104")' },
    { name: 'ip6', type: 'string', help: 'IPv6 address (e.g., "2001:db8::33")' },
    { name: 'service', type: 'string', help: 'Join the sandbox to a service on this network, as one of its tasks' },
  ],
  async run(ctx, parsed) {
    const ip = parsed.string('ip');
    const ip6 = parsed.string('ip6');
    const aliases = parsed.list('alias');
    const driverOpts = keyValues('driver-opt', parsed.list('driver-opt'));
    await ctx.client().connect(parsed.args[0] ?? '', parsed.args[1] ?? '', {
      IPAMConfig: { ...(ip !== undefined ? { IPv4Address: ip } : {}), ...(ip6 !== undefined ? { IPv6Address: ip6 } : {}) },
      ...(aliases.length > 0 ? { Aliases: aliases } : {}),
      ...(Object.keys(driverOpts).length > 0 ? { DriverOpts: driverOpts } : {}),
    }, parsed.string('service'));
    return 0;
  },
};

const disconnect: Command = {
  name: 'disconnect',
  usage: '[OPTIONS] NETWORK SANDBOX',
  summary: 'Disconnect a sandbox from a network',
  args: { exactly: 2 },
  flags: [{ name: 'force', short: 'f', type: 'bool', help: 'Force the sandbox to disconnect from a network' }],
  async run(ctx, parsed) {
    await ctx.client().disconnect(parsed.args[0] ?? '', parsed.args[1] ?? '', parsed.bool('force'));
    return 0;
  },
};

export const networkCommands: CommandGroup = {
  name: 'network',
  summary: 'Manage networks',
  commands: [connect, create, disconnect, inspect, ls, prune, rm, rotateKeys],
};
