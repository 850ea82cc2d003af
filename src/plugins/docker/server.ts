/**
 * libnetwork's remote plugin protocol on a unix socket
 * (`netctl daemon --docker-plugin-socket /run/docker/plugins/netctl.sock`):
 * dockerd finds the socket by its name, activates it, and then sends every
 * network and IPAM call of `-d netctl` / `--ipam-driver netctl` networks
 * here as a POST with a JSON body. Answers are JSON; a failure is a 500
 * with `{"Err": message}` (what dockerd shows the user), an unknown call a
 * 404, which dockerd takes as "not implemented" for optional calls.
 * `listen` and `close` as the API server's: after `close` the socket is gone.
 */
import { chmod, unlink } from 'node:fs/promises';
import { type IncomingMessage, type Server, type ServerResponse, createServer } from 'node:http';
import { ensureSocketFree } from '../../sys/socket-file.js';
import { Conflict, InvalidArgument } from '../../errors.js';
import type { Logger } from '../../log.js';
import { DockerIpam, type IpamHost } from './ipam.js';
import { type DockerNetworkHost, DockerNetworks } from './network.js';
import {
  PLUGIN_CONTENT_TYPE,
  createEndpointRequest,
  createNetworkRequest,
  endpointRequest,
  externalConnectivityRequest,
  joinRequest,
  networkRequest,
  readRequest,
  releaseAddressRequest,
  releasePoolRequest,
  requestAddressRequest,
  requestPoolRequest,
} from './protocol.js';

const MAX_BODY_BYTES = 1 << 20;

type Call = (body: unknown) => Promise<unknown>;

export interface DockerPluginOptions extends DockerNetworkHost, Omit<IpamHost, 'store'> {
  readonly logger?: Logger;
}

export class DockerPluginServer {
  private readonly calls: ReadonlyMap<string, Call>;
  private readonly logger: Logger | undefined;
  private server: Server | undefined;
  private socketPath: string | undefined;

  constructor(options: DockerPluginOptions) {
    this.logger = options.logger;
    const networks = new DockerNetworks(options);
    const ipam = new DockerIpam({ ...options, store: options.clusterStore ?? options.localStore });
    const empty = {};
    const calls: [string, Call][] = [
      ['/Plugin.Activate', async () => ({ Implements: ['NetworkDriver', 'IpamDriver'] })],
      // Local: each dockerd keeps its own Docker networks (a global one would need Docker's own cluster store);
      // connectivity is global because an overlay behind them spans hosts.
      ['/NetworkDriver.GetCapabilities', async () => ({ Scope: 'local', ConnectivityScope: 'global' })],
      [
        '/NetworkDriver.CreateNetwork',
        async (body) => {
          await networks.createNetwork(readRequest('CreateNetwork', createNetworkRequest, body));
          return empty;
        },
      ],
      [
        '/NetworkDriver.DeleteNetwork',
        async (body) => {
          await networks.deleteNetwork(readRequest('DeleteNetwork', networkRequest, body));
          return empty;
        },
      ],
      ['/NetworkDriver.AllocateNetwork', async () => swarmOnly('AllocateNetwork')],
      ['/NetworkDriver.FreeNetwork', async () => swarmOnly('FreeNetwork')],
      ['/NetworkDriver.CreateEndpoint', async (body) => networks.createEndpoint(readRequest('CreateEndpoint', createEndpointRequest, body))],
      ['/NetworkDriver.EndpointOperInfo', async (body) => networks.endpointInfo(readRequest('EndpointOperInfo', endpointRequest, body))],
      [
        '/NetworkDriver.DeleteEndpoint',
        async (body) => {
          await networks.deleteEndpoint(readRequest('DeleteEndpoint', endpointRequest, body));
          return empty;
        },
      ],
      ['/NetworkDriver.Join', async (body) => networks.join(readRequest('Join', joinRequest, body))],
      [
        '/NetworkDriver.Leave',
        async (body) => {
          await networks.leave(readRequest('Leave', endpointRequest, body));
          return empty;
        },
      ],
      // Node discovery: netctl learns its peers from its own store, so there is nothing to do.
      ['/NetworkDriver.DiscoverNew', async () => empty],
      ['/NetworkDriver.DiscoverDelete', async () => empty],
      [
        '/NetworkDriver.ProgramExternalConnectivity',
        async (body) => {
          networks.programExternalConnectivity(readRequest('ProgramExternalConnectivity', externalConnectivityRequest, body));
          return empty;
        },
      ],
      [
        '/NetworkDriver.RevokeExternalConnectivity',
        async (body) => {
          readRequest('RevokeExternalConnectivity', endpointRequest, body);
          return empty;
        },
      ],
      ['/IpamDriver.GetCapabilities', async () => ({ RequiresMACAddress: false, RequiresRequestReplay: false })],
      ['/IpamDriver.GetDefaultAddressSpaces', async () => ipam.defaultAddressSpaces()],
      ['/IpamDriver.RequestPool', async (body) => ipam.requestPool(readRequest('RequestPool', requestPoolRequest, body))],
      [
        '/IpamDriver.ReleasePool',
        async (body) => {
          await ipam.releasePool(readRequest('ReleasePool', releasePoolRequest, body));
          return empty;
        },
      ],
      ['/IpamDriver.RequestAddress', async (body) => ipam.requestAddress(readRequest('RequestAddress', requestAddressRequest, body))],
      [
        '/IpamDriver.ReleaseAddress',
        async (body) => {
          await ipam.releaseAddress(readRequest('ReleaseAddress', releaseAddressRequest, body));
          return empty;
        },
      ],
    ];
    this.calls = new Map(calls);
  }

  /** Listens on a unix socket; a stale socket file is replaced, a live plugin's is refused. */
  async listen(socketPath: string): Promise<void> {
    if (this.server !== undefined) throw new Conflict('the Docker plugin is already listening');
    await ensureSocketFree(socketPath);
    const server = createServer((req, res) => {
      void this.handle(req, res);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(socketPath, () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.server = server;
    this.socketPath = socketPath;
    // dockerd runs as root; nobody else has business here.
    await chmod(socketPath, 0o600);
  }

  /** Stops accepting connections, lets calls in flight finish, and removes the socket. */
  async close(): Promise<void> {
    const server = this.server;
    if (server === undefined) return;
    this.server = undefined;
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeIdleConnections();
    });
    if (this.socketPath !== undefined) await unlink(this.socketPath).catch(() => undefined);
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = new URL(req.url ?? '/', 'http://plugin').pathname;
    const call = this.calls.get(path);
    let status = 200;
    let body: unknown;
    if (call === undefined || req.method !== 'POST') {
      status = call === undefined ? 404 : 405;
      body = { Err: call === undefined ? `netctl's Docker plugin does not implement ${path}` : `${path} takes POST` };
    } else {
      try {
        body = await call(await readBody(req));
      } catch (err) {
        status = 500;
        const message = err instanceof Error ? err.message : String(err);
        body = { Err: message };
        this.logger?.warn(`docker plugin: ${path.slice(1)} failed: ${message}`);
      }
    }
    const text = `${JSON.stringify(body)}\n`;
    res.writeHead(status, { 'Content-Type': PLUGIN_CONTENT_TYPE, 'Content-Length': Buffer.byteLength(text) });
    res.end(text);
  }
}

function swarmOnly(call: string): never {
  throw new InvalidArgument(`${call} is for swarm-scoped networks; netctl's Docker plugin serves local-scoped ones only`);
}

/** dockerd sends JSON; an empty body (Activate) is an empty request. */
async function readBody(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) throw new InvalidArgument(`request body is larger than ${MAX_BODY_BYTES} bytes`);
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks).toString('utf8').trim();
  if (text === '' || text === 'null') return {};
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new InvalidArgument(`invalid JSON in request body: ${(err as Error).message}`);
  }
}
