/**
 * `netctl sandbox …`: network namespaces that networks connect to, where
 * docker has containers.
 */
import type { SandboxJson } from '../api/types.js';
import type { Command, CommandGroup } from './command.js';
import { eachName, inspectEach, keyValues, listFormat } from './network.js';
import { goTimeString, joinLabels, naturalCompare, shortId } from './output.js';
import { formatRows } from './gotemplate/index.js';

const create: Command = {
  name: 'create',
  usage: '[OPTIONS] NAME',
  summary: 'Create a sandbox (a network namespace)',
  args: { exactly: 1 },
  flags: [
    { name: 'label', type: 'list', help: 'Set metadata on a sandbox' },
    { name: 'netns', type: 'string', help: 'Use an existing network namespace (e.g. /proc/PID/ns/net) instead of making /var/run/netns/NAME' },
  ],
  async run(ctx, parsed) {
    const netns = parsed.string('netns');
    const sandbox = await ctx.client().createSandbox({
      Name: parsed.args[0] ?? '',
      Labels: keyValues('label', parsed.list('label')),
      ...(netns !== undefined ? { NetnsPath: netns } : {}),
    });
    ctx.io.stdout(`${sandbox.Id}\n`);
    return 0;
  },
};

const SANDBOX_HEADERS: Record<string, string> = {
  ID: 'SANDBOX ID',
  Name: 'NAME',
  Netns: 'NETNS',
  Networks: 'NETWORKS',
  Labels: 'LABELS',
  CreatedAt: 'CREATED AT',
};

const ls: Command = {
  name: 'ls',
  aliases: ['list'],
  usage: '[OPTIONS]',
  summary: 'List sandboxes',
  args: { exactly: 0 },
  flags: [
    { name: 'format', type: 'string', help: "Format output using a custom template ('table', 'table TEMPLATE', 'json' or a Go template)" },
    { name: 'no-trunc', type: 'bool', help: 'Do not truncate the output' },
    { name: 'quiet', short: 'q', type: 'bool', help: 'Only display sandbox IDs' },
  ],
  async run(ctx, parsed) {
    const client = ctx.client();
    const sandboxes = await client.listSandboxes();
    const networkNames = new Map((await client.listNetworks()).map((n) => [n.Id, n.Name]));
    sandboxes.sort((a, b) => naturalCompare(a.Name, b.Name));
    const noTrunc = parsed.bool('no-trunc');
    const rows = sandboxes.map((sandbox: SandboxJson) => ({
      CreatedAt: goTimeString(sandbox.Created),
      ID: noTrunc ? sandbox.Id : shortId(sandbox.Id),
      Labels: joinLabels(sandbox.Labels),
      Name: sandbox.Name,
      Netns: sandbox.NetnsPath,
      Networks: Object.keys(sandbox.Networks)
        .map((id) => networkNames.get(id) ?? shortId(id))
        .sort(naturalCompare)
        .join(','),
      Label: (name: string) => sandbox.Labels[name] ?? '',
    }));
    const defaultTable = 'table {{.ID}}\t{{.Name}}\t{{.Netns}}\t{{.Networks}}';
    const format = listFormat(parsed.string('format'), parsed.bool('quiet'), defaultTable);
    ctx.io.stdout(formatRows(format, rows, { defaultTable, headers: SANDBOX_HEADERS }));
    return 0;
  },
};

const inspect: Command = {
  name: 'inspect',
  usage: '[OPTIONS] SANDBOX [SANDBOX...]',
  summary: 'Display detailed information on one or more sandboxes',
  args: { atLeast: 1 },
  flags: [{ name: 'format', short: 'f', type: 'string', help: 'Format output using a custom template' }],
  async run(ctx, parsed) {
    const client = ctx.client();
    return inspectEach(
      ctx,
      parsed.args,
      'sandbox',
      (name) => client.inspectSandbox(name),
      (sandbox) => ({ ...sandbox, Labels: new Map(Object.entries(sandbox.Labels)), Networks: new Map(Object.entries(sandbox.Networks)) }),
      parsed.string('format'),
    );
  },
};

const rm: Command = {
  name: 'rm',
  aliases: ['remove'],
  usage: 'SANDBOX [SANDBOX...]',
  summary: 'Remove one or more sandboxes (leaving their networks)',
  args: { atLeast: 1 },
  flags: [],
  async run(ctx, parsed) {
    const client = ctx.client();
    return eachName(ctx, parsed.args, (name) => client.removeSandbox(name));
  },
};

export const sandboxCommands: CommandGroup = {
  name: 'sandbox',
  summary: 'Manage sandboxes',
  commands: [create, inspect, ls, rm],
};
