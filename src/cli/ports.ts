/**
 * Published ports on the command line, as the docker CLI has them: the
 * `--publish` specs of `service create` in, the PORTS column of
 * `service ls` out.
 */
import type { DockerPortConfig } from '../api/docker.js';
import type { PortConfigBody } from '../api/types.js';
import { wantedPort } from '../cnm/ports.js';
import type { PublishedPortRequest } from '../cnm/types.js';
import { InvalidArgument } from '../errors.js';
import type { PortProtocol, PublishMode } from '../records.js';
import { UsageError } from './args.js';

/** The docker CLI's test for the long syntax; unanchored, as docker's is. */
const LONG_SYNTAX = /\w+=\w+(,\w+=\w+)*/;
const LONG_KEYS = new Set(['published', 'target', 'protocol', 'mode']);

/** Fields of a spec as written, before their values are checked. */
interface SpecFields {
  protocol?: string;
  target?: string;
  published?: string;
  mode?: string;
}

/**
 * One `--publish` value: `[PUBLISHED:]TARGET[/PROTOCOL]`, or
 * `[published=P,]target=T[,protocol=tcp|udp][,mode=ingress|host]` with the
 * keys in any order (lower-cased, the last of a key counting, as docker
 * does). Protocol defaults to tcp and mode to ingress; without a published
 * port the daemon picks one (cnm/ports.ts). A spec that cannot be one is a
 * usage error in pflag's words, naming the problem; the values pass the
 * controller's own checks.
 */
export function parsePublish(spec: string): PortConfigBody {
  const invalid = (reason: string) => new UsageError(`invalid argument "${spec}" for "-p, --publish" flag: ${reason}`);
  const fields = LONG_SYNTAX.test(spec) ? longFields(spec, invalid) : shortFields(spec, invalid);
  if (fields.target === undefined) throw invalid("missing mandatory field 'target'");
  const request: PublishedPortRequest = {
    targetPort: portNumber('target', fields.target, invalid),
    ...(fields.published !== undefined ? { publishedPort: portNumber('published', fields.published, invalid) } : {}),
    // Unchecked here: wantedPort refuses any other value.
    ...(fields.protocol !== undefined ? { protocol: fields.protocol as PortProtocol } : {}),
    ...(fields.mode !== undefined ? { publishMode: fields.mode as PublishMode } : {}),
  };
  try {
    const port = wantedPort(request);
    return {
      Protocol: port.protocol,
      TargetPort: port.targetPort,
      ...(port.publishedPort !== undefined ? { PublishedPort: port.publishedPort } : {}),
      PublishMode: port.publishMode,
    };
  } catch (err) {
    if (err instanceof InvalidArgument) throw invalid(err.message);
    throw err;
  }
}

function longFields(spec: string, invalid: (reason: string) => UsageError): SpecFields {
  const fields: SpecFields = {};
  for (const field of spec.toLowerCase().split(',')) {
    const eq = field.indexOf('=');
    if (eq <= 0) throw invalid(`invalid field '${field}': KEY=VALUE`);
    const key = field.slice(0, eq);
    if (!LONG_KEYS.has(key)) throw invalid(`unknown field '${key}': published, target, protocol or mode`);
    fields[key as keyof SpecFields] = field.slice(eq + 1);
  }
  return fields;
}

function shortFields(spec: string, invalid: (reason: string) => UsageError): SpecFields {
  const slash = spec.indexOf('/');
  const ports = slash < 0 ? spec : spec.slice(0, slash);
  const protocol = slash < 0 ? undefined : spec.slice(slash + 1);
  const parts = ports.split(':');
  if (parts.length > 2) throw invalid('a host address is not supported: a service publishes on every address');
  const [published, target] = parts.length === 2 ? parts : [undefined, parts[0]];
  if (target === undefined || target === '') throw invalid('a target port is required: [PUBLISHED:]TARGET');
  return {
    target,
    // ":80", as "80", leaves the published port to pick.
    ...(published !== undefined && published !== '' ? { published } : {}),
    ...(protocol !== undefined && protocol !== '' ? { protocol } : {}),
  };
}

function portNumber(which: 'target' | 'published', text: string, invalid: (reason: string) => UsageError): number {
  if (/^\d+-\d+$/.test(text)) throw invalid(`invalid ${which} port "${text}": port ranges are not supported`);
  // The controller's wording for what is not a number (cnm/ports.ts).
  if (!/^\d+$/.test(text)) throw invalid(`invalid ${which} port "${text}": not a whole number`);
  return Number(text);
}

/**
 * Docker's PORTS column (cli/command/service/formatter.go): the ingress
 * ports by protocol then published port, consecutive ones joined into
 * ranges (`*:80-81->80-81/tcp`, or `*:80-81->80` for several published
 * ports to one target), separated by ", ". Host-mode ports are not shown.
 */
export function portsColumn(ports: readonly DockerPortConfig[]): string {
  const sorted = ports
    .filter((port) => port.PublishMode === 'ingress')
    .sort((a, b) => (a.Protocol === b.Protocol ? a.PublishedPort - b.PublishedPort : a.Protocol < b.Protocol ? -1 : 1));
  const runs: PortRun[] = [];
  for (const port of sorted) {
    const run = runs.at(-1);
    if (run !== undefined && grows(run, port)) {
      run.published[1] = port.PublishedPort;
      run.target[1] = port.TargetPort;
    } else {
      runs.push({ protocol: port.Protocol, published: [port.PublishedPort, port.PublishedPort], target: [port.TargetPort, port.TargetPort] });
    }
  }
  const span = ([start, end]: [number, number]) => (end > start ? `${start}-${end}` : String(start));
  return runs.map((run) => `*:${span(run.published)}->${span(run.target)}/${run.protocol}`).join(', ');
}

/** Consecutive ports of one protocol, as [first, last] published and target ports. */
interface PortRun {
  readonly protocol: string;
  readonly published: [number, number];
  readonly target: [number, number];
}

/**
 * Whether the next port (sorted) continues the run: its published port is
 * the run's last or one past it, and so is its target, except that a run
 * whose targets already span several only grows by a new target.
 */
function grows(run: PortRun, port: DockerPortConfig): boolean {
  const targetStep = port.TargetPort - run.target[1];
  return (
    run.protocol === port.Protocol &&
    port.PublishedPort - run.published[1] <= 1 &&
    (targetStep === 1 || (targetStep === 0 && run.target[0] === run.target[1]))
  );
}
