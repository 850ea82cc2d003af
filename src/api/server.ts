/**
 * netctl's HTTP API on a unix socket: the Docker Engine API's network
 * routes (same paths, JSON field names, status codes and `{"message"}`
 * errors, so Docker clients work), the service routes where netctl's
 * services overlap Docker's, `/info`, the container routes that read
 * (sandboxes answered as containers), plus netctl's own sandbox routes.
 * The rest of Docker's API answers 501, so a client tells "not served"
 * from "no such object".
 * `start`-like `listen` and `stop`-like `close`: after `close` the socket
 * is gone and requests in flight finish.
 *
 * The api/ folder: this server (routes, limits, errors), docker.ts
 * (the controller's typed views rendered as Docker's JSON), types.ts (the
 * JSON on the wire), client.ts (the client the CLI and runtimes use) and
 * metrics.ts (Prometheus).
 */
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { arch, availableParallelism, hostname, machine, release, totalmem } from 'node:os';
import type { Controller } from '../cnm/controller.js';
import { readOsPrettyName } from '../sys/host-files.js';
import { closeHttpOnSocket, listenHttpOnSocket } from '../sys/socket-file.js';
import { Conflict, InvalidArgument, NotFound, SandboxNotFound, httpStatus } from '../errors.js';
import { parseFiltersJson } from '../cnm/filters.js';
import { defaultPools } from '../cnm/ipam.js';
import { toDockerContainer, toDockerContainerSummary, toDockerNetwork, toDockerService } from './docker.js';
import { DaemonMetrics } from './metrics.js';
import {
  API_VERSION,
  type InfoJson,
  MIN_API_VERSION,
  type NetworkCreateResponse,
  type NetworkPruneResponse,
  type ServiceCreateResponse,
  type VersionJson,
  readNetworkConnect,
  readNetworkCreate,
  readNetworkDisconnect,
  readSandboxCreate,
  readServiceCreate,
  toSandboxJson,
} from './types.js';

export interface ApiServerOptions {
  /** netctl's version, reported by `/_ping`'s Server header and `/version`. */
  readonly version?: string;
  /** Where requests are counted and what GET /metrics renders (default: metrics of this server and its controller only). */
  readonly metrics?: DaemonMetrics;
  /** The daemon's state directory, which `/info` reports as DockerRootDir. */
  readonly stateDir?: string;
}

const MAX_BODY_BYTES = 1 << 20;
const VERSION_PREFIX = /^\/v(\d+\.\d+)(?=\/)/;
/** The route label of requests no route matched. */
const UNMATCHED_ROUTE = 'unmatched';
/** The parts of Docker's API that netctl does not serve: each answers 501 rather than 404, which clients read as "no such object". */
const NOT_SERVED = [
  'containers',
  'images',
  'build',
  'volumes',
  'exec',
  'plugins',
  'swarm',
  'nodes',
  'tasks',
  'secrets',
  'configs',
  'events',
  'system',
  'session',
  'distribution',
  'auth',
  'commit',
] as const;

/** A route answers with a status and a JSON body, or with no body. */
interface Reply {
  readonly status: number;
  readonly body?: unknown;
  /** For a string body; default text/plain. */
  readonly contentType?: string;
}

interface RequestContext {
  /** Without the `/vX.Y` prefix. */
  readonly path: string;
  readonly params: readonly string[];
  readonly query: URLSearchParams;
  readonly method: string;
  readBody(): Promise<unknown>;
}

type Handler = (ctx: RequestContext) => Promise<Reply>;

interface Route {
  /** The path with `{id}` for parameters: the metrics label, so raw paths never make new series. */
  readonly name: string;
  readonly pattern: RegExp;
  readonly methods: Readonly<Record<string, Handler>>;
}

/** Error a route raises for a request the router itself rejects. */
class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = 'HttpError';
  }
}

export class ApiServer {
  private readonly controller: Controller;
  private readonly version: string;
  private readonly stateDir: string;
  private readonly routes: readonly Route[];
  private readonly metrics: DaemonMetrics;
  private server: Server | undefined;
  private socketPath: string | undefined;

  constructor(controller: Controller, options: ApiServerOptions = {}) {
    this.controller = controller;
    this.version = options.version ?? '0.0.0';
    this.stateDir = options.stateDir ?? '';
    this.metrics = options.metrics ?? new DaemonMetrics();
    this.metrics.setNetworkSource(async () => (await controller.listNetworks()).map(toDockerNetwork));
    this.routes = this.buildRoutes();
  }

  /** Listens on a unix socket; a stale socket file is replaced, a live daemon's is refused. */
  async listen(socketPath: string): Promise<void> {
    if (this.server !== undefined) throw new Conflict('the API server is already listening');
    this.server = await listenHttpOnSocket(socketPath, 0o660, (req, res) => {
      void this.handle(req, res);
    });
    this.socketPath = socketPath;
  }

  /** Stops accepting connections, lets requests in flight finish, and removes the socket. */
  async close(): Promise<void> {
    const { server, socketPath } = this;
    if (server === undefined || socketPath === undefined) return;
    this.server = undefined;
    await closeHttpOnSocket(server, socketPath);
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const start = performance.now();
    let routeName = UNMATCHED_ROUTE;
    res.setHeader('API-Version', API_VERSION);
    res.setHeader('Ostype', 'linux');
    res.setHeader('Server', `netctl/${this.version}`);
    let reply: Reply;
    try {
      reply = await this.dispatch(req, (route) => (routeName = route.name));
    } catch (err) {
      const status = err instanceof HttpError ? err.status : httpStatus(err);
      reply = { status, body: { message: err instanceof Error ? err.message : String(err) } };
    }
    this.metrics.observeRequest(routeName, req.method ?? 'GET', reply.status, (performance.now() - start) / 1000);
    const cluster = this.controller.clusterStatus();
    if (cluster?.reachable === false && (req.method === 'GET' || req.method === 'HEAD')) {
      // RFC 7234 §5.5 warn-code 199 (miscellaneous); the netctl CLI prints it, Docker clients ignore it.
      res.setHeader('Warning', `199 netctl "cluster store out of reach since ${cluster.lastReached ?? '?'}: global networks are shown as last seen"`);
    }
    if (reply.body === undefined || req.method === 'HEAD') {
      res.writeHead(reply.status);
      res.end();
      return;
    }
    const text = typeof reply.body === 'string' ? reply.body : `${JSON.stringify(reply.body)}\n`;
    res.writeHead(reply.status, {
      'Content-Type': typeof reply.body === 'string' ? (reply.contentType ?? 'text/plain; charset=utf-8') : 'application/json',
      'Content-Length': Buffer.byteLength(text),
    });
    res.end(text);
  }

  /** Finds the route (told to `matched` before its handler runs) and runs it. */
  private async dispatch(req: IncomingMessage, matched: (route: Route) => void): Promise<Reply> {
    const url = new URL(req.url ?? '/', 'http://netctl');
    let path = url.pathname;
    const prefix = VERSION_PREFIX.exec(path);
    if (prefix !== null) {
      checkApiVersion(prefix[1] ?? '');
      path = path.slice(prefix[0].length);
    }
    for (const route of this.routes) {
      const match = route.pattern.exec(path);
      if (match === null) continue;
      matched(route);
      const method = req.method ?? 'GET';
      const handler = route.methods[method] ?? (method === 'HEAD' ? route.methods['GET'] : undefined);
      if (handler === undefined) throw new HttpError(405, 'method not allowed');
      return handler({
        path,
        params: match.slice(1).map(decodePathParam),
        query: url.searchParams,
        method,
        readBody: () => readJsonBody(req),
      });
    }
    throw new HttpError(404, 'page not found');
  }

  private buildRoutes(): Route[] {
    const c = this.controller;
    const param = (ctx: RequestContext, i: number): string => ctx.params[i] ?? '';
    return [
      {
        name: '/_ping',
        pattern: /^\/_ping$/,
        methods: {
          GET: async () => ({ status: 200, body: 'OK' }),
          HEAD: async () => ({ status: 200 }),
        },
      },
      { name: '/version', pattern: /^\/version$/, methods: { GET: async () => ({ status: 200, body: this.versionJson() }) } },
      { name: '/info', pattern: /^\/info$/, methods: { GET: async () => ({ status: 200, body: await this.infoJson() }) } },
      {
        // netctl's own: the loaded drivers and their counters (the overlay VTEP's drops by reason).
        name: '/drivers',
        pattern: /^\/drivers$/,
        methods: {
          GET: async () => ({
            status: 200,
            body: c.driverInfo().map((driver) => ({ Name: driver.name, Scope: driver.scope, Stats: driver.stats })),
          }),
        },
      },
      {
        name: '/metrics',
        pattern: /^\/metrics$/,
        methods: {
          GET: async () => ({ status: 200, body: await this.metrics.render(), contentType: this.metrics.contentType }),
        },
      },
      {
        name: '/networks',
        pattern: /^\/networks\/?$/,
        methods: {
          GET: async (ctx) => ({ status: 200, body: (await c.listNetworks(parseFiltersJson(ctx.query.get('filters')))).map(toDockerNetwork) }),
        },
      },
      {
        name: '/networks/create',
        pattern: /^\/networks\/create$/,
        methods: {
          POST: async (ctx) => {
            const { network, warnings } = await c.createNetwork(readNetworkCreate(await ctx.readBody()));
            const body: NetworkCreateResponse = { Id: network.id, Warning: warnings.join('\n') };
            return { status: 201, body };
          },
        },
      },
      {
        name: '/networks/prune',
        pattern: /^\/networks\/prune$/,
        methods: {
          POST: async (ctx) => {
            const body: NetworkPruneResponse = {
              NetworksDeleted: await c.pruneNetworks(parseFiltersJson(ctx.query.get('filters'))),
            };
            return { status: 200, body };
          },
        },
      },
      {
        // netctl's own: renews this host's keys of encrypted networks now (`netctl network rotate-keys`).
        name: '/networks/rotate-keys',
        pattern: /^\/networks\/rotate-keys$/,
        methods: {
          POST: async () => ({
            status: 200,
            body: (await c.rotateKeys()).map((rotated) => ({ Driver: rotated.driver, Epoch: rotated.epoch, RotatedAt: rotated.rotatedAt })),
          }),
        },
      },
      {
        name: '/networks/{id}/connect',
        pattern: /^\/networks\/([^/]+)\/connect$/,
        methods: {
          POST: async (ctx) => {
            const { container, options } = readNetworkConnect(await ctx.readBody());
            await c.connect(param(ctx, 0), container, options);
            return { status: 200 };
          },
        },
      },
      {
        name: '/networks/{id}/disconnect',
        pattern: /^\/networks\/([^/]+)\/disconnect$/,
        methods: {
          POST: async (ctx) => {
            const { container, force } = readNetworkDisconnect(await ctx.readBody());
            await c.disconnect(param(ctx, 0), container, { force });
            return { status: 200 };
          },
        },
      },
      {
        name: '/networks/{id}',
        pattern: /^\/networks\/([^/]+)$/,
        methods: {
          GET: async (ctx) => {
            const view = await c.inspectNetwork(param(ctx, 0));
            const scope = ctx.query.get('scope');
            // Docker answers "not found" when the network exists in another scope only.
            if (scope !== null && scope !== '' && scope !== view.network.scope) {
              throw new NotFound(`network ${param(ctx, 0)} not found`);
            }
            return { status: 200, body: toDockerNetwork(view) };
          },
          DELETE: async (ctx) => {
            await c.removeNetwork(param(ctx, 0));
            return { status: 204 };
          },
        },
      },
      {
        name: '/services',
        pattern: /^\/services\/?$/,
        methods: {
          GET: async (ctx) => ({ status: 200, body: (await c.listServices(parseFiltersJson(ctx.query.get('filters')))).map(toDockerService) }),
        },
      },
      {
        name: '/services/create',
        pattern: /^\/services\/create$/,
        methods: {
          POST: async (ctx) => {
            const { service } = await c.createService(readServiceCreate(await ctx.readBody()));
            const body: ServiceCreateResponse = { ID: service.id };
            return { status: 201, body };
          },
        },
      },
      {
        name: '/services/{id}',
        pattern: /^\/services\/([^/]+)$/,
        methods: {
          GET: async (ctx) => ({ status: 200, body: toDockerService(await c.inspectService(param(ctx, 0))) }),
          // Docker answers a service's removal with 200 and no body.
          DELETE: async (ctx) => {
            await c.removeService(param(ctx, 0));
            return { status: 200 };
          },
        },
      },
      {
        name: '/sandboxes',
        pattern: /^\/sandboxes\/?$/,
        methods: { GET: async () => ({ status: 200, body: (await c.listSandboxes()).map(toSandboxJson) }) },
      },
      {
        name: '/sandboxes/create',
        pattern: /^\/sandboxes\/create$/,
        methods: {
          POST: async (ctx) => ({
            status: 201,
            body: toSandboxJson(await c.createSandbox(readSandboxCreate(await ctx.readBody()))),
          }),
        },
      },
      {
        name: '/sandboxes/{id}',
        pattern: /^\/sandboxes\/([^/]+)$/,
        methods: {
          GET: async (ctx) => ({ status: 200, body: toSandboxJson(await c.inspectSandbox(param(ctx, 0))) }),
          DELETE: async (ctx) => {
            await c.removeSandbox(param(ctx, 0));
            return { status: 204 };
          },
        },
      },
      {
        name: '/containers/json',
        pattern: /^\/containers\/json$/,
        methods: {
          GET: async (ctx) => {
            const sandboxes = await c.listSandboxes(parseFiltersJson(ctx.query.get('filters')));
            // Newest first, as `docker ps` lists; `-n`/`-l` send a limit.
            sandboxes.sort((a, b) => b.created.localeCompare(a.created));
            const limit = readLimit(ctx.query.get('limit'));
            const now = new Date();
            return { status: 200, body: sandboxes.slice(0, limit).map((sandbox) => toDockerContainerSummary(sandbox, now)) };
          },
        },
      },
      {
        name: '/containers/{id}/json',
        pattern: /^\/containers\/([^/]+)\/json$/,
        methods: {
          GET: async (ctx) => {
            const sandbox = await c.inspectSandbox(param(ctx, 0)).catch((err: unknown) => {
              // Docker's message for a missing container, which scripts and client libraries look for.
              throw err instanceof SandboxNotFound ? new NotFound(`No such container: ${param(ctx, 0)}`) : err;
            });
            return { status: 200, body: toDockerContainer(sandbox) };
          },
        },
      },
      // netctl has no images, volumes or plugins: asked for one by name it answers as dockerd does for a missing one,
      // so that `docker inspect NAME`, which tries those kinds before and after networks, goes on to the next.
      ...[
        { name: '/images/{name}/json', pattern: /^\/images\/(.+)\/json$/, missing: (name: string) => `No such image: ${name}` },
        { name: '/volumes/{name}', pattern: /^\/volumes\/([^/]+)$/, missing: (name: string) => `get ${name}: no such volume` },
        { name: '/plugins/{name}/json', pattern: /^\/plugins\/(.+)\/json$/, missing: (name: string) => `plugin "${name}" not found` },
      ].map(
        ({ name, pattern, missing }): Route => ({
          name,
          pattern,
          methods: {
            ...notServedMethods,
            GET: async (ctx) => {
              throw new NotFound(missing(param(ctx, 0)));
            },
          },
        }),
      ),
      ...NOT_SERVED.map(
        (family): Route => ({
          name: `/${family}/*`,
          pattern: new RegExp(`^/${family}(/|$)`),
          methods: notServedMethods,
        }),
      ),
    ];
  }

  private async infoJson(): Promise<InfoJson> {
    const c = this.controller;
    const sandboxes = (await c.listSandboxes()).length;
    return {
      ID: await c.hostId(),
      Name: hostname(),
      Containers: sandboxes,
      ContainersRunning: sandboxes,
      ContainersPaused: 0,
      ContainersStopped: 0,
      Images: 0,
      Driver: '',
      DriverStatus: [],
      Plugins: { Volume: [], Network: c.driverNames(), Authorization: null, Log: [] },
      MemoryLimit: false,
      SwapLimit: false,
      CpuCfsPeriod: false,
      CpuCfsQuota: false,
      CPUShares: false,
      CPUSet: false,
      PidsLimit: false,
      OomKillDisable: false,
      Debug: false,
      NFd: 0,
      NGoroutines: 0,
      SystemTime: new Date().toISOString(),
      LoggingDriver: '',
      CgroupDriver: 'none',
      NEventsListener: 0,
      KernelVersion: release(),
      OperatingSystem: (await readOsPrettyName()) ?? 'Linux',
      OSVersion: '',
      OSType: 'linux',
      Architecture: machine(),
      IndexServerAddress: '',
      RegistryConfig: null,
      NCPU: availableParallelism(),
      MemTotal: totalmem(),
      DockerRootDir: this.stateDir,
      HttpProxy: '',
      HttpsProxy: '',
      NoProxy: '',
      Labels: [],
      ExperimentalBuild: false,
      ServerVersion: this.version,
      Runtimes: {},
      DefaultRuntime: '',
      Swarm: { NodeID: '', NodeAddr: '', LocalNodeState: 'inactive', ControlAvailable: false, Error: '', RemoteManagers: null },
      LiveRestoreEnabled: false,
      Isolation: '',
      InitBinary: '',
      ContainerdCommit: { ID: '' },
      RuncCommit: { ID: '' },
      InitCommit: { ID: '' },
      SecurityOptions: [],
      DefaultAddressPools: defaultPools('local').map(({ base, size }) => ({ Base: base, Size: size })),
      Warnings: [],
    };
  }

  private versionJson(): VersionJson {
    const goArch: Record<string, string> = { x64: 'amd64', ia32: '386', arm64: 'arm64', arm: 'arm' };
    return {
      Platform: { Name: 'netctl' },
      Components: [{ Name: 'netctl', Version: this.version, Details: { ApiVersion: API_VERSION } }],
      Version: this.version,
      ApiVersion: API_VERSION,
      MinAPIVersion: MIN_API_VERSION,
      GitCommit: '',
      GoVersion: process.version,
      Os: 'linux',
      Arch: goArch[arch()] ?? arch(),
      KernelVersion: release(),
      BuildTime: '',
    };
  }
}

function compareVersions(a: string, b: string): number {
  const [aMajor = 0, aMinor = 0] = a.split('.').map(Number);
  const [bMajor = 0, bMinor = 0] = b.split('.').map(Number);
  return aMajor - bMajor || aMinor - bMinor;
}

/** Docker refuses versions it does not serve with a 400 and these messages. */
function checkApiVersion(requested: string): void {
  if (compareVersions(requested, API_VERSION) > 0) {
    throw new InvalidArgument(`client version ${requested} is too new. Maximum supported API version is ${API_VERSION}`);
  }
  if (compareVersions(requested, MIN_API_VERSION) < 0) {
    throw new InvalidArgument(
      `client version ${requested} is too old. Minimum supported API version is ${MIN_API_VERSION}, please upgrade your client to a newer version`,
    );
  }
}

async function notServed(ctx: RequestContext): Promise<Reply> {
  throw new HttpError(501, `netctl serves networks, not containers: ${ctx.method} ${ctx.path} is not implemented`);
}

/** Every method Docker's API uses (HEAD goes to GET's handler). */
const notServedMethods: Readonly<Record<string, Handler>> = { GET: notServed, POST: notServed, PUT: notServed, DELETE: notServed };

/** `GET /containers/json`'s limit: a count, or none when absent or not positive (Docker's -1 default). */
function readLimit(text: string | null): number | undefined {
  if (text === null || text === '') return undefined;
  const limit = Number(text);
  if (!Number.isInteger(limit)) throw new InvalidArgument(`invalid limit "${text}": expected an integer`);
  return limit > 0 ? limit : undefined;
}

/** A path parameter with its percent-encoding undone; a malformed encoding is the client's error. */
function decodePathParam(param: string): string {
  try {
    return decodeURIComponent(param);
  } catch {
    throw new HttpError(400, `malformed percent-encoding in path parameter "${param}"`);
  }
}

async function readJsonBody(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) throw new HttpError(413, `request body is larger than ${MAX_BODY_BYTES} bytes`);
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  if (text.trim() === '') throw new InvalidArgument('request body is empty');
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new InvalidArgument(`invalid JSON in request body: ${(err as Error).message}`);
  }
}
