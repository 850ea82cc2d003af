/**
 * The embedded DNS's TCP connections (RFC 7766), held within limits: a
 * sandbox must not be able to take the daemon's descriptors or memory with
 * connections it opens and never finishes, or with queries whose answers it
 * never reads.
 *
 * - Idle timeout (RFC 7766 §6.2.3): a connection that waits on its client —
 *   for the next complete query, or for room to write an answer the client
 *   does not read — longer than `idleTimeoutMs` is closed. Time spent
 *   answering (a forward in flight) does not count.
 * - Caps per sandbox and in total. A connection beyond a cap takes the place
 *   of the one that has waited on its client the longest; it is closed at
 *   once only when every connection is busy answering. Closing the newcomer
 *   instead would let a client that opens connections and never finishes
 *   them lock everyone else out; an idle connection costs its client
 *   nothing to reopen, which RFC 7766 §6.2.3 expects servers to do under
 *   pressure.
 * - Back-pressure: while an answer waits in user space for the client to
 *   read (`write` returned false), the connection reads no further query, so
 *   a client that pipelines and never reads fills its own socket buffers, not
 *   the daemon's memory.
 * Queries on one connection are answered one at a time, in order.
 */
import type { Socket } from 'node:net';
import { frameTcp, readTcpMessages } from './tcp.js';

export interface TcpLimits {
  /** Closes a connection that waited on its client this long; RFC 7766 §6.2.3 suggests seconds. */
  readonly idleTimeoutMs: number;
  readonly maxPerSandbox: number;
  readonly maxTotal: number;
}

/** The reply to a query from a sandbox, undefined to close the connection. */
export type TcpAnswer = (sandboxId: string, query: Buffer) => Promise<Buffer | undefined>;

interface Connection {
  readonly socket: Socket;
  readonly sandboxId: string;
  /** Running while the connection waits on its client; only then may it be closed to make room. */
  idleTimer: NodeJS.Timeout | undefined;
}

/**
 * Serves accepted TCP connections within `TcpLimits`. After `close`, every
 * connection is destroyed and connections accepted later are destroyed at once.
 */
export class TcpConnections {
  readonly #limits: TcpLimits;
  readonly #answer: TcpAnswer;
  /** Both ordered by when a connection last began waiting on its client, longest first. */
  readonly #all = new Map<Socket, Connection>();
  readonly #bySandbox = new Map<string, Map<Socket, Connection>>();
  #closed = false;

  constructor(limits: TcpLimits, answer: TcpAnswer) {
    this.#limits = limits;
    this.#answer = answer;
  }

  /** Connections held, of one sandbox or of all. */
  count(sandboxId?: string): number {
    return sandboxId === undefined ? this.#all.size : (this.#bySandbox.get(sandboxId)?.size ?? 0);
  }

  /** Takes over a socket accepted on the listener of `sandboxId`. */
  accept(sandboxId: string, socket: Socket): void {
    // Resets and timeouts are the client's business; without a listener an 'error' would end the daemon.
    socket.on('error', () => {});
    const sandbox = this.#bySandbox.get(sandboxId) ?? new Map<Socket, Connection>();
    if (
      this.#closed ||
      (sandbox.size >= this.#limits.maxPerSandbox && !this.#makeRoom(sandbox)) ||
      (this.#all.size >= this.#limits.maxTotal && !this.#makeRoom(this.#all))
    ) {
      socket.destroy();
      return;
    }
    const connection: Connection = { socket, sandboxId, idleTimer: undefined };
    this.#bySandbox.set(sandboxId, sandbox);
    sandbox.set(socket, connection);
    this.#all.set(socket, connection);
    socket.once('close', () => this.#forget(connection));
    void this.#serve(connection);
  }

  /** Destroys the connections of one sandbox (its listener is gone). */
  closeSandbox(sandboxId: string): void {
    for (const connection of [...(this.#bySandbox.get(sandboxId)?.values() ?? [])]) this.#destroy(connection);
  }

  close(): void {
    this.#closed = true;
    for (const connection of [...this.#all.values()]) this.#destroy(connection);
  }

  async #serve(connection: Connection): Promise<void> {
    const { socket } = connection;
    const queries = readTcpMessages(socket);
    try {
      for (;;) {
        this.#waitOnClient(connection);
        const next = await queries.next();
        this.#busy(connection);
        if (next.done === true) break;
        const reply = await this.#answer(connection.sandboxId, next.value);
        if (reply === undefined || socket.destroyed) {
          socket.destroy();
          return;
        }
        if (!socket.write(frameTcp(reply))) {
          this.#waitOnClient(connection);
          await drained(socket);
        }
      }
      socket.end();
    } catch {
      socket.destroy();
    }
  }

  /** Starts the idle timer and moves the connection to the back of the eviction order. */
  #waitOnClient(connection: Connection): void {
    const { socket } = connection;
    if (!this.#all.delete(socket)) return;
    this.#all.set(socket, connection);
    const sandbox = this.#bySandbox.get(connection.sandboxId);
    sandbox?.delete(socket);
    sandbox?.set(socket, connection);
    clearTimeout(connection.idleTimer);
    connection.idleTimer = setTimeout(() => this.#destroy(connection), this.#limits.idleTimeoutMs);
  }

  #busy(connection: Connection): void {
    clearTimeout(connection.idleTimer);
    connection.idleTimer = undefined;
  }

  /** Closes the connection that has waited on its client the longest; false when every one is busy. */
  #makeRoom(connections: Map<Socket, Connection>): boolean {
    for (const connection of connections.values()) {
      if (connection.idleTimer !== undefined) {
        this.#destroy(connection);
        return true;
      }
    }
    return false;
  }

  /** Forgets at once, so the room counts before the socket's 'close' event. */
  #destroy(connection: Connection): void {
    this.#forget(connection);
    connection.socket.destroy();
  }

  #forget(connection: Connection): void {
    this.#busy(connection);
    this.#all.delete(connection.socket);
    const sandbox = this.#bySandbox.get(connection.sandboxId);
    sandbox?.delete(connection.socket);
    if (sandbox?.size === 0) this.#bySandbox.delete(connection.sandboxId);
  }
}

/** Resolves when the socket can take more, or is destroyed. */
function drained(socket: Socket): Promise<void> {
  return new Promise((resolve) => {
    if (socket.destroyed) {
      resolve();
      return;
    }
    const done = (): void => {
      socket.off('drain', done);
      socket.off('close', done);
      resolve();
    };
    socket.on('drain', done);
    socket.on('close', done);
  });
}
