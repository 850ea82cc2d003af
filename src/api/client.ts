/**
 * A client for netctl's HTTP API: one method per route. Errors come back as
 * the NetctlError subclass that matches the status code, carrying the
 * server's message, so callers switch on `code` exactly as in-process ones.
 */
import { request } from 'node:http';
import type { Filters } from '../cnm/filters.js';
import {
  Conflict,
  Forbidden,
  InvalidArgument,
  NetctlError,
  EndpointNotFound,
  NetworkNotFound,
  NotFound,
  SandboxNotFound,
  ServiceNotFound,
  Unavailable,
} from '../errors.js';
import type { DockerNetwork, DockerService } from './docker.js';
import type {
  NetworkConnectBody,
  NetworkCreateBody,
  NetworkCreateResponse,
  NetworkPruneResponse,
  SandboxCreateBody,
  SandboxJson,
  ServiceCreateBody,
  ServiceCreateResponse,
  VersionJson,
} from './types.js';

/** The daemon could not be reached at all (as opposed to an error the daemon answered with). */
export class DaemonUnreachable extends Unavailable {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, { ...options, code: 'DaemonUnreachable' });
  }
}

export const DEFAULT_HOST = 'unix:///run/netctl/netctl.sock';

export interface PingResult {
  readonly apiVersion: string;
  readonly server: string;
}

interface RawResponse {
  readonly status: number;
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  readonly text: string;
}

const daemonErrors = new WeakSet<Error>();

/** True for errors the daemon answered with (rather than ones raised on this side of the socket). */
export function isDaemonError(err: unknown): boolean {
  return err instanceof Error && daemonErrors.has(err);
}

/** Maps a status code back to the error class the server's `httpStatus` came from. */
function errorFor(status: number, message: string): NetctlError {
  const err = errorClassFor(status, message);
  daemonErrors.add(err);
  return err;
}

/** The daemon's messages name the kind of object, so its specific code comes back too. */
function notFoundFor(message: string): NotFound {
  const named = /^(network|endpoint|sandbox|service) (.+) not found$/.exec(message);
  if (named === null) return new NotFound(message);
  const [, kind, idOrName] = named as unknown as [string, string, string];
  if (kind === 'network') return new NetworkNotFound(idOrName);
  if (kind === 'endpoint') return new EndpointNotFound(idOrName);
  if (kind === 'service') return new ServiceNotFound(idOrName);
  return new SandboxNotFound(idOrName);
}

function errorClassFor(status: number, message: string): NetctlError {
  switch (status) {
    case 400:
      return new InvalidArgument(message);
    case 403:
      return new Forbidden(message);
    case 404:
      return notFoundFor(message);
    case 409:
      return new Conflict(message);
    case 503:
      return new Unavailable(message);
    default:
      return new NetctlError('Internal', message);
  }
}

/** Reads the socket path out of `unix:///path`. */
export function socketPathOf(host: string): string {
  if (!host.startsWith('unix://') || host.length <= 'unix://'.length) {
    throw new InvalidArgument(`invalid host "${host}": only unix:///path is supported`);
  }
  return host.slice('unix://'.length);
}

export class ApiClient {
  readonly host: string;
  /** The daemon's warnings (HTTP Warning headers) on the responses so far, each once. */
  readonly warnings: string[] = [];
  private readonly socketPath: string;

  constructor(host: string = DEFAULT_HOST) {
    this.host = host;
    this.socketPath = socketPathOf(host);
  }

  async ping(): Promise<PingResult> {
    const response = await this.call('GET', '/_ping');
    return { apiVersion: headerOf(response, 'api-version'), server: headerOf(response, 'server') };
  }

  async version(): Promise<VersionJson> {
    return this.json('GET', '/version');
  }

  /** The daemon's drivers with their counters. */
  async drivers(): Promise<{ Name: string; Scope: string; Stats: Record<string, number> }[]> {
    return this.json('GET', '/drivers');
  }

  async listNetworks(filters: Filters = {}): Promise<DockerNetwork[]> {
    return this.json('GET', `/networks${filtersQuery(filters)}`);
  }

  async inspectNetwork(idOrName: string): Promise<DockerNetwork> {
    return this.json('GET', `/networks/${encodeURIComponent(idOrName)}`);
  }

  async createNetwork(body: NetworkCreateBody): Promise<NetworkCreateResponse> {
    return this.json('POST', '/networks/create', body);
  }

  async removeNetwork(idOrName: string): Promise<void> {
    await this.call('DELETE', `/networks/${encodeURIComponent(idOrName)}`);
  }

  /** Returns the names of the networks removed. */
  async pruneNetworks(filters: Filters = {}): Promise<string[]> {
    const result = await this.json<NetworkPruneResponse>('POST', `/networks/prune${filtersQuery(filters)}`);
    return result.NetworksDeleted ?? [];
  }

  /** Renews this host's keys of encrypted networks; returns each driver's new epoch. */
  async rotateKeys(): Promise<{ Driver: string; Epoch: number; RotatedAt: string }[]> {
    return this.json('POST', '/networks/rotate-keys');
  }

  /** `service` makes the sandbox's endpoint a task of that service (netctl's own `Service` field). */
  async connect(
    network: string,
    sandbox: string,
    endpointConfig: NetworkConnectBody['EndpointConfig'] = {},
    service?: string,
  ): Promise<void> {
    const body: NetworkConnectBody = { Container: sandbox, EndpointConfig: endpointConfig, ...(service !== undefined ? { Service: service } : {}) };
    await this.call('POST', `/networks/${encodeURIComponent(network)}/connect`, body);
  }

  async disconnect(network: string, sandbox: string, force = false): Promise<void> {
    await this.call('POST', `/networks/${encodeURIComponent(network)}/disconnect`, { Container: sandbox, Force: force });
  }

  async listServices(filters: Filters = {}): Promise<DockerService[]> {
    return this.json('GET', `/services${filtersQuery(filters)}`);
  }

  async inspectService(idOrName: string): Promise<DockerService> {
    return this.json('GET', `/services/${encodeURIComponent(idOrName)}`);
  }

  async createService(body: ServiceCreateBody): Promise<ServiceCreateResponse> {
    return this.json('POST', '/services/create', body);
  }

  async removeService(idOrName: string): Promise<void> {
    await this.call('DELETE', `/services/${encodeURIComponent(idOrName)}`);
  }

  async listSandboxes(): Promise<SandboxJson[]> {
    return this.json('GET', '/sandboxes');
  }

  async createSandbox(body: SandboxCreateBody): Promise<SandboxJson> {
    return this.json('POST', '/sandboxes/create', body);
  }

  async inspectSandbox(idOrName: string): Promise<SandboxJson> {
    return this.json('GET', `/sandboxes/${encodeURIComponent(idOrName)}`);
  }

  async removeSandbox(idOrName: string): Promise<void> {
    await this.call('DELETE', `/sandboxes/${encodeURIComponent(idOrName)}`);
  }

  private async json<T>(method: string, path: string, body?: unknown): Promise<T> {
    const response = await this.call(method, path, body);
    try {
      return JSON.parse(response.text) as T;
    } catch {
      throw new NetctlError('Internal', `invalid JSON from the daemon for ${method} ${path}`);
    }
  }

  private call(method: string, path: string, body?: unknown): Promise<RawResponse> {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    return new Promise<RawResponse>((resolve, reject) => {
      const req = request(
        {
          socketPath: this.socketPath,
          method,
          path,
          headers: {
            Host: 'netctl',
            ...(payload !== undefined
              ? { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(payload) }
              : {}),
          },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (chunk: Buffer) => chunks.push(chunk));
          res.on('error', reject);
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            const warning = warningText(res.headers['warning']);
            if (warning !== undefined && !this.warnings.includes(warning)) this.warnings.push(warning);
            const status = res.statusCode ?? 0;
            if (status >= 200 && status < 300) {
              resolve({ status, headers: res.headers, text });
              return;
            }
            reject(errorFor(status, messageOf(text, status)));
          });
        },
      );
      req.on('error', (err: NodeJS.ErrnoException) => {
        if (err.code === 'ENOENT' || err.code === 'ECONNREFUSED' || err.code === 'ENOTSOCK') {
          reject(new DaemonUnreachable(`Cannot connect to the netctl daemon at ${this.host}. Is the daemon running?`, { cause: err }));
        } else {
          reject(new DaemonUnreachable(`error talking to the netctl daemon at ${this.host}: ${err.message}`, { cause: err }));
        }
      });
      req.end(payload);
    });
  }
}

/** The text of a `199 agent "text"` Warning header. */
function warningText(header: string | string[] | undefined): string | undefined {
  const value = Array.isArray(header) ? header[0] : header;
  if (value === undefined) return undefined;
  return /^\d{3} \S+ "(.*)"$/.exec(value)?.[1] ?? value;
}

function headerOf(response: RawResponse, name: string): string {
  const value = response.headers[name];
  return Array.isArray(value) ? (value[0] ?? '') : (value ?? '');
}

function messageOf(text: string, status: number): string {
  try {
    const parsed = JSON.parse(text) as { message?: unknown };
    if (typeof parsed.message === 'string') return parsed.message;
  } catch {
    // Not a JSON error body: fall through to the raw text.
  }
  return text.trim() === '' ? `HTTP status ${status}` : text.trim();
}

function filtersQuery(filters: Filters): string {
  const used = Object.entries(filters).filter(([, values]) => values.length > 0);
  if (used.length === 0) return '';
  return `?filters=${encodeURIComponent(JSON.stringify(Object.fromEntries(used)))}`;
}
