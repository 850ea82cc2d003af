/**
 * `netctl service …`: services as `docker service` has them, the parts
 * netctl's services have (networks, endpoint mode, labels, published ports;
 * no image, no replicas). A sandbox becomes a task with
 * `netctl network connect --service`.
 */
import type { DockerService } from '../api/docker.js';
import { parseFilterArgs } from '../cnm/filters.js';
import { CliError, type Command, type CommandGroup } from './command.js';
import { eachName, inspectEach, keyValues, listFormat } from './network.js';
import { goTimeString, joinLabels, naturalCompare, shortId } from './output.js';
import { formatRows } from './gotemplate/index.js';
import { parsePublish, portsColumn } from './ports.js';

const create: Command = {
  name: 'create',
  usage: '[OPTIONS] SERVICE',
  summary: 'Create a service',
  args: { exactly: 1 },
  flags: [
    { name: 'endpoint-mode', type: 'string', help: 'Endpoint mode (vip or dnsrr)', defaultText: '"vip"' },
    { name: 'label', short: 'l', type: 'list', help: 'Service labels' },
    { name: 'network', type: 'list', valueName: 'network', help: 'Network attachments' },
    { name: 'publish', short: 'p', type: 'list', valueName: 'port', help: 'Publish a port as a node port' },
  ],
  async run(ctx, parsed) {
    const mode = parsed.string('endpoint-mode') ?? 'vip';
    if (mode !== 'vip' && mode !== 'dnsrr') throw new CliError(`invalid endpoint mode "${mode}": vip or dnsrr`);
    const ports = parsed.list('publish').map(parsePublish);
    const created = await ctx.client().createService({
      Name: parsed.args[0] ?? '',
      Labels: keyValues('label', parsed.list('label')),
      TaskTemplate: { Networks: parsed.list('network').map((target) => ({ Target: target })) },
      EndpointSpec: { Mode: mode, ...(ports.length > 0 ? { Ports: ports } : {}) },
    });
    ctx.io.stdout(`${created.ID}\n`);
    return 0;
  },
};

const SERVICE_HEADERS: Record<string, string> = {
  ID: 'ID',
  Name: 'NAME',
  Mode: 'MODE',
  Tasks: 'TASKS',
  VirtualIPs: 'VIRTUAL IPS',
  Ports: 'PORTS',
  Labels: 'LABELS',
  CreatedAt: 'CREATED AT',
};

/** One `service ls` row; keys in alphabetical order as docker's `--format json` prints them. */
function serviceRow(service: DockerService, noTrunc: boolean): Record<string, unknown> {
  return {
    CreatedAt: goTimeString(service.CreatedAt),
    ID: noTrunc ? service.ID : shortId(service.ID),
    Labels: joinLabels(service.Spec.Labels),
    Mode: service.Spec.EndpointSpec.Mode,
    Name: service.Spec.Name,
    Ports: portsColumn(service.Endpoint.Ports ?? []),
    Tasks: String(service.Tasks.length),
    VirtualIPs: service.Endpoint.VirtualIPs.map((vip) => vip.Addr).join(','),
    Label: (name: string) => service.Spec.Labels[name] ?? '',
  };
}

const ls: Command = {
  name: 'ls',
  aliases: ['list'],
  usage: '[OPTIONS]',
  summary: 'List services',
  args: { exactly: 0 },
  flags: [
    { name: 'filter', short: 'f', type: 'list', valueName: 'filter', help: "Filter output based on conditions provided (id=, name=, label=)" },
    {
      name: 'format',
      type: 'string',
      help: "Format output using a custom template ('table', 'table TEMPLATE', 'json' or a Go template)",
    },
    { name: 'no-trunc', type: 'bool', help: 'Do not truncate the output' },
    { name: 'quiet', short: 'q', type: 'bool', help: 'Only display IDs' },
  ],
  async run(ctx, parsed) {
    const services = await ctx.client().listServices(parseFilterArgs(parsed.list('filter')));
    services.sort((a, b) => naturalCompare(a.Spec.Name, b.Spec.Name));
    const defaultTable = 'table {{.ID}}\t{{.Name}}\t{{.Mode}}\t{{.Tasks}}\t{{.VirtualIPs}}\t{{.Ports}}';
    const format = listFormat(parsed.string('format'), parsed.bool('quiet'), defaultTable);
    const rows = services.map((service) => serviceRow(service, parsed.bool('no-trunc')));
    ctx.io.stdout(formatRows(format, rows, { defaultTable, headers: SERVICE_HEADERS }));
    return 0;
  },
};

const inspect: Command = {
  name: 'inspect',
  usage: '[OPTIONS] SERVICE [SERVICE...]',
  summary: 'Display detailed information on one or more services',
  args: { atLeast: 1 },
  flags: [{ name: 'format', short: 'f', type: 'string', help: 'Format output using a custom template' }],
  async run(ctx, parsed) {
    const client = ctx.client();
    return inspectEach(
      ctx,
      parsed.args,
      'service',
      (name) => client.inspectService(name),
      (service) => ({ ...service, Spec: { ...service.Spec, Labels: new Map(Object.entries(service.Spec.Labels)) } }),
      parsed.string('format'),
    );
  },
};

const rm: Command = {
  name: 'rm',
  aliases: ['remove'],
  usage: 'SERVICE [SERVICE...]',
  summary: 'Remove one or more services (their tasks stay connected, as plain endpoints)',
  args: { atLeast: 1 },
  flags: [],
  async run(ctx, parsed) {
    const client = ctx.client();
    return eachName(ctx, parsed.args, (name) => client.removeService(name));
  },
};

export const serviceCommands: CommandGroup = {
  name: 'service',
  summary: 'Manage services',
  commands: [create, inspect, ls, rm],
};
