/**
 * `netctl-cni`, the CNI plugin (spec 1.1.0): a runtime runs it with the
 * CNI_* environment and the request configuration on stdin; it answers on
 * stdout with a result, or an error and a non-zero exit. Everything it
 * does goes through the netctl daemon's API (ApiClient), whose socket the
 * configuration's `host`, else NETCTL_HOST, else the default names.
 *
 * The cni/ folder: this entry point (environment, dispatch, output),
 * attachments.ts (each verb against the daemon) and spec.ts (the
 * protocol's data, pure).
 */
import { ApiClient, DEFAULT_HOST } from '../api/client.js';
import { type AttachmentRequest, add, check, daemonError, del, gc, status } from './attachments.js';
import {
  CniError,
  ErrorCode,
  IMPLEMENTED_VERSION,
  NAME_PATTERN,
  SUPPORTED_VERSIONS,
  appendResult,
  compareVersions,
  encodeError,
  encodeResult,
  encodeVersionResult,
  ipFamily,
  parseCidr,
  parseCniArgs,
  parseNetConf,
} from './spec.js';

/** What the process does once `main` returns: exit with `exitCode` after printing both streams. */
export interface CniOutcome {
  readonly exitCode: number;
  readonly stdout: string;
  /** Unstructured notes for people (§5: stderr is for logs). */
  readonly stderr: string;
}

type Env = Readonly<Record<string, string | undefined>>;

const ABOUT = `netctl-cni: attaches containers to netctl networks through the netctl daemon (CNI spec ${IMPLEMENTED_VERSION})
CNI protocol versions supported: ${SUPPORTED_VERSIONS.join(', ')}
`;

/** An interface name netctl accepts (it checks again): what the kernel takes, in the characters names are made of. */
const IFNAME_PATTERN = /^[A-Za-z0-9_.-]{1,15}$/;

/** Runs one invocation. Never throws: every failure becomes §5's error on stdout and exit status 1. */
export async function main(env: Env, stdin: string): Promise<CniOutcome> {
  const command = env['CNI_COMMAND'];
  // As the reference plugins do: run by hand without a command, say what this is.
  if (command === undefined || command === '') return { exitCode: 0, stdout: '', stderr: ABOUT };
  let version = versionOnInput(stdin);
  try {
    if (command === 'VERSION') return success(JSON.stringify(encodeVersionResult(version)));
    if (!['ADD', 'DEL', 'CHECK', 'STATUS', 'GC'].includes(command)) {
      throw new CniError(ErrorCode.invalidEnvironment, 'invalid CNI_COMMAND', `CNI_COMMAND "${command}" is none of ADD, DEL, CHECK, STATUS, GC, VERSION`);
    }
    const request = command === 'STATUS' || command === 'GC' ? undefined : attachmentOf(env, command);
    const conf = parseNetConf(stdin);
    version = conf.cniVersion;
    if ((command === 'STATUS' || command === 'GC') && compareVersions(version, '1.1.0') < 0) {
      throw new CniError(ErrorCode.incompatibleVersion, 'incompatible CNI version', `${command} needs cniVersion 1.1.0 or later; the configuration has ${version}`);
    }
    const client = new ApiClient(conf.host ?? nonEmpty(env['NETCTL_HOST']) ?? DEFAULT_HOST);
    try {
      switch (command) {
        case 'ADD': {
          const ours = await add(client, conf, request as AttachmentRequest);
          const result = conf.prevResult === undefined ? ours : appendResult(conf.prevResult, ours);
          return success(JSON.stringify(encodeResult(result, version)));
        }
        case 'DEL':
          await del(client, conf, request as AttachmentRequest);
          return success('');
        case 'CHECK':
          await check(client, conf, request as AttachmentRequest);
          return success('');
        case 'STATUS':
          await status(client, conf);
          return success('');
        default:
          await gc(client, conf);
          return success('');
      }
    } catch (err) {
      throw daemonError(err, command);
    }
  } catch (err) {
    const error = err instanceof CniError ? err : new CniError(ErrorCode.internal, 'internal error', err instanceof Error ? (err.stack ?? err.message) : String(err));
    return { exitCode: 1, stdout: `${JSON.stringify(encodeError(error, version))}\n`, stderr: '' };
  }
}

function success(json: string): CniOutcome {
  return { exitCode: 0, stdout: json === '' ? '' : `${json}\n`, stderr: '' };
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === '' ? undefined : value;
}

/** The cniVersion on stdin when there is one, for VERSION and for errors found before the configuration is read. */
function versionOnInput(stdin: string): string {
  try {
    const parsed = JSON.parse(stdin) as { cniVersion?: unknown };
    if (typeof parsed.cniVersion === 'string' && parsed.cniVersion !== '') return parsed.cniVersion;
  } catch {
    // Not JSON: the configuration parser reports it, where it matters.
  }
  return IMPLEMENTED_VERSION;
}

/**
 * The attachment's parameters (§2): ADD and CHECK need CNI_CONTAINERID,
 * CNI_NETNS and CNI_IFNAME, DEL all but CNI_NETNS. Every missing or
 * invalid variable is named in one code 4 error.
 */
function attachmentOf(env: Env, command: string): AttachmentRequest {
  const problems: string[] = [];
  const containerId = env['CNI_CONTAINERID'] ?? '';
  const ifName = env['CNI_IFNAME'] ?? '';
  const netns = nonEmpty(env['CNI_NETNS']);
  if (containerId === '') problems.push('CNI_CONTAINERID is missing');
  else if (!NAME_PATTERN.test(containerId)) problems.push(`CNI_CONTAINERID "${containerId}" must start with a letter or digit, then letters, digits, '_', '.' or '-'`);
  if (ifName === '') problems.push('CNI_IFNAME is missing');
  else if (!IFNAME_PATTERN.test(ifName) || ifName === '.' || ifName === '..' || ifName === 'lo') {
    problems.push(`CNI_IFNAME "${ifName}" is not an interface name netctl can give (1 to 15 of letters, digits, '_', '.', '-'; not lo)`);
  }
  if (netns === undefined && command !== 'DEL') problems.push('CNI_NETNS is missing');
  else if (netns !== undefined && !netns.startsWith('/')) problems.push(`CNI_NETNS "${netns}" is not an absolute path`);
  let argsIps: string[] | undefined;
  try {
    const ip = parseCniArgs(env['CNI_ARGS']).get('IP');
    if (ip !== undefined) {
      argsIps = ip.split(',').filter((entry) => entry !== '');
      const bad = argsIps.find((entry) => ipFamily(entry) === undefined && parseCidr(entry) === undefined);
      if (bad !== undefined) problems.push(`CNI_ARGS IP "${bad}" is not an IP address`);
    }
  } catch (err) {
    problems.push(`CNI_ARGS: ${(err as CniError).details}`);
  }
  if (problems.length > 0) throw new CniError(ErrorCode.invalidEnvironment, 'invalid environment variables', problems.join('; '));
  return { containerId, ifName, ...(netns !== undefined ? { netns } : {}), ...(argsIps !== undefined ? { argsIps } : {}) };
}
