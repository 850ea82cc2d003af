/**
 * The `netctl` command line: global flags, dispatch to commands, help text,
 * and the docker CLI's way of reporting errors (exit code 1).
 *
 * The cli/ folder: this dispatcher, args.ts (flags the docker CLI's
 * way), one file per command group (network.ts, sandbox.ts, service.ts, daemon.ts),
 * output.ts and tabwriter.ts (tables, --format), log-limit.ts (the daemon's
 * log), and gotemplate/ (Go templates).
 */
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { ApiClient, DEFAULT_HOST, DaemonUnreachable, isDaemonError } from '../api/client.js';
import { API_VERSION } from '../api/types.js';
import { UsageError, checkArgCount, parseArgs, renderFlags, type FlagSpec } from './args.js';
import type { CliIo, Command, CommandContext, CommandGroup } from './command.js';
import { daemonCommand } from './daemon.js';
import { networkCommands } from './network.js';
import { sandboxCommands } from './sandbox.js';
import { serviceCommands } from './service.js';

const PROGRAM = 'netctl';

function packageVersion(): string {
  const text = readFileSync(new URL('../../package.json', import.meta.url), 'utf8');
  return (JSON.parse(text) as { version?: string }).version ?? '0.0.0';
}

const GLOBAL_FLAGS: readonly FlagSpec[] = [
  { name: 'host', short: 'H', type: 'string', help: `Daemon socket to connect to (env NETCTL_HOST)`, defaultText: DEFAULT_HOST },
  { name: 'help', short: 'h', type: 'bool', help: 'Print usage' },
  { name: 'version', short: 'v', type: 'bool', help: 'Print version information and quit' },
];

const versionCommand: Command = {
  name: 'version',
  usage: '',
  summary: 'Show the netctl version information',
  args: { exactly: 0 },
  flags: [],
  async run(ctx) {
    const goArch: Record<string, string> = { x64: 'amd64', arm64: 'arm64' };
    ctx.io.stdout(
      [
        'Client:',
        ` Version:           ${ctx.version}`,
        ` API version:       ${API_VERSION}`,
        ` Node version:      ${process.version}`,
        ` OS/Arch:           ${process.platform}/${goArch[process.arch] ?? process.arch}`,
        '',
      ].join('\n'),
    );
    const server = await ctx.client().version();
    ctx.io.stdout(
      [
        '',
        'Server:',
        ` Version:           ${server.Version}`,
        ` API version:       ${server.ApiVersion} (minimum version ${server.MinAPIVersion})`,
        ` Node version:      ${server.GoVersion}`,
        ` OS/Arch:           ${server.Os}/${server.Arch}`,
        ` Kernel version:    ${server.KernelVersion}`,
        '',
      ].join('\n'),
    );
    return 0;
  },
};

type TopLevel = Command | CommandGroup;

const TOP_LEVEL: readonly TopLevel[] = [daemonCommand, networkCommands, sandboxCommands, serviceCommands, versionCommand];

function isGroup(entry: TopLevel): entry is CommandGroup {
  return 'commands' in entry;
}

function findCommand(group: CommandGroup, name: string): Command | undefined {
  return group.commands.find((c) => c.name === name || (c.aliases ?? []).includes(name));
}

function commandHelp(path: string, command: Command, parentPath: string): string {
  const lines = ['', `Usage:  ${path}${command.usage === '' ? '' : ` ${command.usage}`}`, '', command.summary, ''];
  if (command.aliases !== undefined && command.aliases.length > 0) {
    lines.push('Aliases:', `  ${[command.name, ...command.aliases].map((a) => `${parentPath} ${a}`).join(', ')}`, '');
  }
  if (command.flags.length > 0) lines.push('Options:', renderFlags(command.flags), '');
  return `${lines.join('\n')}`;
}

function groupHelp(path: string, summary: string, entries: readonly { name: string; summary: string }[]): string {
  const width = Math.max(...entries.map((e) => e.name.length)) + 2;
  const isTop = path === PROGRAM;
  return [
    '',
    `Usage:  ${path}${isTop ? ' [OPTIONS]' : ''} COMMAND`,
    '',
    summary,
    '',
    'Commands:',
    ...entries.map((e) => `  ${e.name.padEnd(width)}${e.summary}`),
    '',
    ...(isTop ? ['Global Options:', renderFlags(GLOBAL_FLAGS), ''] : []),
    `Run '${path} COMMAND --help' for more information on a command.`,
    '',
  ].join('\n');
}

const TOP_SUMMARY = 'Docker-style container networking without Docker';

/** Help for a command path (`help network create`); undefined when the path names nothing. */
function helpFor(words: readonly string[]): string | undefined {
  const [first, second] = words;
  if (first === undefined) return groupHelp(PROGRAM, TOP_SUMMARY, TOP_LEVEL);
  const entry = TOP_LEVEL.find((e) => e.name === first);
  if (entry === undefined) return undefined;
  if (!isGroup(entry)) return commandHelp(`${PROGRAM} ${entry.name}`, entry, PROGRAM);
  if (second === undefined) return groupHelp(`${PROGRAM} ${entry.name}`, entry.summary, entry.commands);
  const command = findCommand(entry, second);
  if (command === undefined) return undefined;
  return commandHelp(`${PROGRAM} ${entry.name} ${command.name}`, command, `${PROGRAM} ${entry.name}`);
}

async function runCommand(ctx: CommandContext, path: string, parentPath: string, command: Command, argv: readonly string[]): Promise<number> {
  try {
    const parsed = parseArgs(argv, command.flags);
    if (parsed.bool('help')) {
      ctx.io.stdout(commandHelp(path, command, parentPath));
      return 0;
    }
    try {
      checkArgCount(path, command.args, parsed.args);
    } catch (err) {
      // cobra shows the usage line and summary after an argument-count mistake.
      ctx.io.stderr(
        `${(err as Error).message}\nSee '${path} --help'.\n\nUsage:  ${`${path} ${command.usage}`.trimEnd()}\n\n${command.summary}\n`,
      );
      return 1;
    }
    return await command.run(ctx, parsed);
  } catch (err) {
    if (err instanceof UsageError) {
      ctx.io.stderr(`${err.message}\nSee '${path} --help'.\n`);
      return 1;
    }
    throw err;
  }
}

/** How an error reaches the user: daemon answers get docker's prefix, the rest print as they are. */
export function errorText(err: unknown): string {
  if (err instanceof DaemonUnreachable) return err.message;
  if (isDaemonError(err)) return `Error response from daemon: ${(err as Error).message}`;
  if (err instanceof Error) return err.message;
  return String(err);
}

async function dispatch(argv: readonly string[], io: CliIo, version: string): Promise<number> {
  let host = io.env['NETCTL_HOST'] || DEFAULT_HOST;
  let i = 0;
  // Global flags come before the command, as with docker.
  for (; i < argv.length; i++) {
    const arg = argv[i] ?? '';
    if (!arg.startsWith('-')) break;
    if (arg === '-h' || arg === '--help') {
      io.stdout(groupHelp(PROGRAM, TOP_SUMMARY, TOP_LEVEL));
      return 0;
    }
    if (arg === '-v' || arg === '--version') {
      io.stdout(`netctl version ${version}\n`);
      return 0;
    }
    if (arg === '-H' || arg === '--host') {
      const value = argv[i + 1];
      if (value === undefined) throw new UsageError(`flag needs an argument: ${arg === '-H' ? "'H' in -H" : '--host'}`);
      host = value;
      i++;
    } else if (arg.startsWith('--host=')) {
      host = arg.slice('--host='.length);
    } else if (arg.startsWith('-H')) {
      host = arg.slice(2).replace(/^=/, '');
    } else {
      throw new UsageError(arg.startsWith('--') ? `unknown flag: ${arg.split('=')[0]}` : `unknown shorthand flag: '${arg[1]}' in ${arg}`);
    }
  }

  let client: ApiClient | undefined;
  const ctx: CommandContext = {
    io,
    host,
    version,
    client: () => (client ??= new ApiClient(host)),
  };

  const name = argv[i];
  const rest = argv.slice(i + 1);
  if (name === undefined) {
    io.stdout(groupHelp(PROGRAM, TOP_SUMMARY, TOP_LEVEL));
    return 0;
  }
  if (name === 'help') {
    const help = helpFor(rest);
    if (help === undefined) {
      io.stderr(`Unknown help topic: ${rest.join(' ')}\nRun '${PROGRAM} --help' for usage.\n`);
      return 1;
    }
    io.stdout(help);
    return 0;
  }
  const entry = TOP_LEVEL.find((e) => e.name === name);
  if (entry === undefined) {
    io.stderr(`${PROGRAM}: '${name}' is not a ${PROGRAM} command.\nSee '${PROGRAM} --help'\n`);
    return 1;
  }
  if (!isGroup(entry)) return runCommand(ctx, `${PROGRAM} ${entry.name}`, PROGRAM, entry, rest);

  const groupPath = `${PROGRAM} ${entry.name}`;
  const sub = rest[0];
  if (sub === undefined || sub === '--help' || sub === '-h') {
    io.stdout(groupHelp(groupPath, entry.summary, entry.commands));
    return 0;
  }
  const command = findCommand(entry, sub);
  if (command === undefined) {
    io.stderr(`${groupPath}: '${sub}' is not a ${groupPath} command.\nSee '${groupPath} --help'\n`);
    return 1;
  }
  try {
    return await runCommand(ctx, `${groupPath} ${command.name}`, groupPath, command, rest.slice(1));
  } finally {
    // What the daemon warned about (the cluster store out of reach), after the output, as docker prints warnings.
    for (const warning of client?.warnings ?? []) io.stderr(`WARNING: ${warning}\n`);
  }
}

/** Runs netctl with the arguments after the program name; resolves to the exit code. */
export async function main(argv: readonly string[], io: CliIo = processIo()): Promise<number> {
  try {
    return await dispatch(argv, io, packageVersion());
  } catch (err) {
    if (err instanceof UsageError) {
      io.stderr(`${err.message}\nSee '${PROGRAM} --help'.\n`);
      return 1;
    }
    io.stderr(`${errorText(err)}\n`);
    return 1;
  }
}

/** Standard streams; stdin is read lazily, only when a command asks for a line. */
export function processIo(): CliIo {
  // A reader that went away (`netctl network ls | head`) ends the output quietly, as for any Unix tool.
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code !== 'EPIPE') throw err;
      process.exit(process.exitCode ?? 0);
    });
  }
  return {
    stdout: (text) => process.stdout.write(text),
    stderr: (text) => process.stderr.write(text),
    env: process.env,
    readLine: () =>
      new Promise<string>((resolve) => {
        const rl = createInterface({ input: process.stdin });
        let answered = false;
        rl.once('line', (line) => {
          answered = true;
          rl.close();
          resolve(line);
        });
        rl.once('close', () => {
          if (!answered) resolve('');
        });
      }),
  };
}
