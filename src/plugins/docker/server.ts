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
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { closeHttpOnSocket, listenHttpOnSocket } from '../../sys/socket-file.js';
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
    // Calls whose answer says nothing but success.
    const answerEmpty = (call: (body: unknown) => unknown): Call => async (body) => {
      await call(body);
      return empty;
    };
    const calls: [string, Call][] = [
      ['/Plugin.Activate', async () => ({ Implements: ['NetworkDriver', 'IpamDriver'] })],
      // Local: each dockerd keeps its own Docker networks (a global one would need Docker's own cluster store);
      // connectivity is global because an overlay behind them spans hosts.
      ['/NetworkDriver.GetCapabilities', async () => ({ Scope: 'local', ConnectivityScope: 'global' })],
      ['/NetworkDriver.CreateNetwork', answerEmpty((body) => networks.createNetwork(readRequest('CreateNetwork', createNetworkRequest, body)))],
      ['/NetworkDriver.DeleteNetwork', answerEmpty((body) => networks.deleteNetwork(readRequest('DeleteNetwork', networkRequest, body)))],
      ['/NetworkDriver.AllocateNetwork', async () => swarmOnly('AllocateNetwork')],
      ['/NetworkDriver.FreeNetwork', async () => swarmOnly('FreeNetwork')],
      ['/NetworkDriver.CreateEndpoint', async (body) => networks.createEndpoint(readRequest('CreateEndpoint', createEndpointRequest, body))],
      ['/NetworkDriver.EndpointOperInfo', async (body) => networks.endpointInfo(readRequest('EndpointOperInfo', endpointRequest, body))],
      ['/NetworkDriver.DeleteEndpoint', answerEmpty((body) => networks.deleteEndpoint(readRequest('DeleteEndpoint', endpointRequest, body)))],
      ['/NetworkDriver.Join', async (body) => networks.join(readRequest('Join', joinRequest, body))],
      ['/NetworkDriver.Leave', answerEmpty((body) => networks.leave(readRequest('Leave', endpointRequest, body)))],
      // Node discovery: netctl learns its peers from its own store, so there is nothing to do.
      ['/NetworkDriver.DiscoverNew', async () => empty],
      ['/NetworkDriver.DiscoverDelete', async () => empty],
      ['/NetworkDriver.ProgramExternalConnectivity', answerEmpty((body) => networks.programExternalConnectivity(readRequest('ProgramExternalConnectivity', externalConnectivityRequest, body)))],
      ['/NetworkDriver.RevokeExternalConnectivity', answerEmpty((body) => readRequest('RevokeExternalConnectivity', endpointRequest, body))],
      ['/IpamDriver.GetCapabilities', async () => ({ RequiresMACAddress: false, RequiresRequestReplay: false })],
      ['/IpamDriver.GetDefaultAddressSpaces', async () => ipam.defaultAddressSpaces()],
      ['/IpamDriver.RequestPool', async (body) => ipam.requestPool(readRequest('RequestPool', requestPoolRequest, body))],
      ['/IpamDriver.ReleasePool', answerEmpty((body) => ipam.releasePool(readRequest('ReleasePool', releasePoolRequest, body)))],
      ['/IpamDriver.RequestAddress', async (body) => ipam.requestAddress(readRequest('RequestAddress', requestAddressRequest, body))],
      ['/IpamDriver.ReleaseAddress', answerEmpty((body) => ipam.releaseAddress(readRequest('ReleaseAddress', releaseAddressRequest, body)))],
    ];
    this.calls = new Map(calls);
  }

  /** Listens on a unix socket; a stale socket file is replaced, a live plugin's is refused. */
  async listen(socketPath: string): Promise<void> {
    if (this.server !== undefined) throw new Conflict('the Docker plugin is already listening');
    // dockerd runs as root; nobody else has business here.
    this.server = await listenHttpOnSocket(socketPath, 0o600, (req, res) => {
      void this.handle(req, res);
    });
    this.socketPath = socketPath;
  }

  /** Stops accepting connections, lets calls in flight finish, and removes the socket. */
  async close(): Promise<void> {
    const { server, socketPath } = this;
    if (server === undefined || socketPath === undefined) return;
    this.server = undefined;
    await closeHttpOnSocket(server, socketPath);
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
