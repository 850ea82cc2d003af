/**
 * rtnetlink (links, addresses, routes) off the event loop. An `Rtnl` has
 * the methods of RtnlSocket (rtnl-socket.ts) and acts in one network
 * namespace; each call runs on one shared worker thread (rtnl-thread.ts),
 * because the kernel answers a netlink request inside sendmsg(2) and some
 * (deleting a veth: an RCU grace period) take tens of milliseconds, which
 * would stall the API and the embedded DNS. Errors come back as the same
 * NetctlError classes.
 */
import { extname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { Conflict, Forbidden, InvalidArgument, NetctlError, NotFound, type ErrorCode } from '../errors.js';
import type { RtnlSocket } from './rtnl-socket.js';

export type { AddressInfo, LinkInfo, RouteInfo, RouteSpec } from './rtnl-socket.js';

/** The RtnlSocket methods an Rtnl forwards. */
const METHODS = [
  'listLinks',
  'getLink',
  'createBridge',
  'createVeth',
  'deleteLink',
  'setUp',
  'setDown',
  'setMtu',
  'setMaster',
  'rename',
  'setMac',
  'moveToNetns',
  'setBridgePortIsolated',
  'addAddress',
  'deleteAddress',
  'listAddresses',
  'addRoute',
  'deleteRoute',
  'listRoutes',
] as const satisfies readonly (keyof RtnlSocket)[];
type Method = (typeof METHODS)[number];

export type RtnlRequest =
  | { readonly op: 'open'; readonly id: number; readonly netnsPath: string | undefined }
  | { readonly op: 'call'; readonly id: number; readonly socket: number; readonly method: Method; readonly args: readonly unknown[] }
  | { readonly op: 'close'; readonly id: number; readonly socket: number };

export type RtnlReply =
  | { readonly id: number; readonly value: unknown }
  | { readonly id: number; readonly error: { readonly name: string; readonly code: string | undefined; readonly message: string } };

// The methods are added to the prototype below, one per name in METHODS.
// eslint-disable-next-line @typescript-eslint/no-unsafe-declaration-merging
export interface Rtnl extends Pick<RtnlSocket, Method> {}

// eslint-disable-next-line @typescript-eslint/no-unsafe-declaration-merging
export class Rtnl {
  private constructor(private readonly socket: number) {}

  /** Opens an rtnetlink socket in the namespace at `netnsPath` (default: the daemon's own). */
  static async open(netnsPath?: string): Promise<Rtnl> {
    return new Rtnl((await thread().request({ op: 'open', id: 0, netnsPath })) as number);
  }

  /** Closes the socket; the process stays up until it is closed, which takes a turn of the rtnl thread. */
  close(): void {
    void thread().request({ op: 'close', id: 0, socket: this.socket });
  }
}

for (const method of METHODS) {
  Object.defineProperty(Rtnl.prototype, method, {
    value(this: Rtnl, ...args: unknown[]): Promise<unknown> {
      return thread().request({ op: 'call', id: 0, socket: (this as unknown as { socket: number }).socket, method, args });
    },
  });
}

/** The worker and its calls in flight; it keeps the process alive only while a call is in flight. */
class RtnlThread {
  readonly #worker: Worker;
  readonly #pending = new Map<number, { resolve: (value: unknown) => void; reject: (err: Error) => void }>();
  #nextId = 1;

  constructor() {
    this.#worker = startWorker();
    this.#worker.unref();
    this.#worker.on('message', (reply: RtnlReply) => this.#settle(reply));
    this.#worker.on('error', (err) => this.#failAll(err));
    this.#worker.on('exit', (code) => this.#failAll(new Error(`the rtnl thread exited with code ${code}`)));
  }

  request(message: RtnlRequest): Promise<unknown> {
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      if (this.#pending.size === 0) this.#worker.ref();
      this.#pending.set(id, { resolve, reject });
      this.#worker.postMessage({ ...message, id });
    });
  }

  #settle(reply: RtnlReply): void {
    const waiter = this.#pending.get(reply.id);
    if (waiter === undefined) return;
    this.#pending.delete(reply.id);
    if (this.#pending.size === 0) this.#worker.unref();
    if ('error' in reply) waiter.reject(rebuild(reply.error));
    else waiter.resolve(reply.value);
  }

  #failAll(err: Error): void {
    for (const waiter of this.#pending.values()) waiter.reject(new NetctlError('Internal', `rtnetlink: ${err.message}`, { cause: err }));
    this.#pending.clear();
    if (current === this) current = undefined;
  }
}

let current: RtnlThread | undefined;

function thread(): RtnlThread {
  current ??= new RtnlThread();
  return current;
}

/**
 * Starts rtnl-thread beside this file. Run from TypeScript sources (tsx
 * registered on the main thread only), the worker registers tsx first.
 */
function startWorker(): Worker {
  const self = fileURLToPath(import.meta.url);
  const entry = new URL(`./rtnl-thread${extname(self)}`, import.meta.url);
  if (extname(self) !== '.ts') return new Worker(entry);
  const tsx = import.meta.resolve('tsx/esm/api');
  const boot = `import(${JSON.stringify(tsx)}).then((tsx) => { tsx.register(); return import(${JSON.stringify(entry.href)}); })`;
  return new Worker(boot, { eval: true });
}

/** The NetctlError classes RtnlSocket throws, by name; anything else is Internal. */
function rebuild(error: { name: string; code: string | undefined; message: string }): NetctlError {
  switch (error.name) {
    case 'Conflict':
      return new Conflict(error.message);
    case 'NotFound':
      return new NotFound(error.message);
    case 'InvalidArgument':
      return new InvalidArgument(error.message);
    case 'Forbidden':
      return new Forbidden(error.message);
    case 'NetctlError':
      return new NetctlError((error.code as ErrorCode | undefined) ?? 'Internal', error.message);
    default:
      return new NetctlError('Internal', `${error.name}: ${error.message}`);
  }
}
