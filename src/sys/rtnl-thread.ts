/**
 * The rtnl thread: runs RtnlSocket calls for rtnl.ts, so that the kernel's
 * time inside sendmsg(2) is spent here and not on the event loop. A socket
 * opened in a namespace (setns on this thread only) stays bound to it.
 */
import { parentPort } from 'node:worker_threads';
import { RtnlSocket } from './rtnl-socket.js';
import type { RtnlReply, RtnlRequest } from './rtnl.js';

const port = parentPort;
if (port === null) throw new Error('rtnl-thread.ts runs as a worker thread');

const sockets = new Map<number, RtnlSocket>();
let nextSocket = 1;

port.on('message', (request: RtnlRequest) => {
  if (request.op === 'close') {
    sockets.get(request.socket)?.close();
    sockets.delete(request.socket);
    // The socket's libuv handles finish closing on a later turn of this loop. Until the answer, the
    // main thread keeps the process alive: torn down before, the netlink package's handles crash it.
    setTimeout(() => port.postMessage({ id: request.id, value: undefined } satisfies RtnlReply), 1);
    return;
  }
  void answer(request).then((reply) => port.postMessage(reply));
});

async function answer(request: Exclude<RtnlRequest, { op: 'close' }>): Promise<RtnlReply> {
  try {
    if (request.op === 'open') {
      const socket = await RtnlSocket.open(request.netnsPath);
      const id = nextSocket++;
      sockets.set(id, socket);
      return { id: request.id, value: id };
    }
    const socket = sockets.get(request.socket);
    if (socket === undefined) throw new Error(`rtnl socket ${request.socket} is closed`);
    const method = socket[request.method] as (...args: unknown[]) => Promise<unknown>;
    return { id: request.id, value: await method.apply(socket, [...request.args]) };
  } catch (err) {
    const error = err as Error & { code?: unknown };
    return { id: request.id, error: { name: error.name, code: typeof error.code === 'string' ? error.code : undefined, message: error.message } };
  }
}
