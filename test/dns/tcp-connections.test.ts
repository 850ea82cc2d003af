/**
 * The limits of the embedded DNS's TCP connections, on real sockets over
 * 127.0.0.1: one plain listener per "sandbox" hands its sockets to one
 * TcpConnections, as the embedded DNS's listeners do.
 */
import test from 'ava';
import type { ExecutionContext } from 'ava';
import { type Server, type Socket, connect, createServer } from 'node:net';
import { type TcpAnswer, type TcpLimits, TcpConnections } from '../../src/dns/tcp-connections.js';
import { frameTcp, readTcpMessages } from '../../src/dns/tcp.js';

const LOOPBACK = '127.0.0.1';
const ROOMY: TcpLimits = { idleTimeoutMs: 60_000, maxPerSandbox: 100, maxTotal: 100 };

/** Replies echo the query. */
const echo: TcpAnswer = async (_, query) => query;

interface Harness {
  readonly connections: TcpConnections;
  /** A listener whose connections count as `sandboxId`'s; returns its port. */
  listen(sandboxId: string): Promise<number>;
  /** The server ends of the connections accepted so far, in order. */
  readonly accepted: Socket[];
  /** A client connection, destroyed at teardown; resolves once the server has handed it over. */
  client(port: number): Promise<Client>;
}

interface Client {
  readonly socket: Socket;
  /** Resolves when the connection closes (seen only while the client reads). */
  readonly closed: Promise<void>;
}

function harness(t: ExecutionContext, limits: Partial<TcpLimits>, answer: TcpAnswer = echo): Harness {
  const connections = new TcpConnections({ ...ROOMY, ...limits }, answer);
  const servers: Server[] = [];
  const clients: Socket[] = [];
  const accepted: Socket[] = [];
  t.teardown(async () => {
    for (const client of clients) client.destroy();
    connections.close();
    await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))));
  });
  return {
    connections,
    accepted,
    async listen(sandboxId) {
      const server = createServer((socket) => {
        accepted.push(socket);
        connections.accept(sandboxId, socket);
      });
      servers.push(server);
      await new Promise<void>((resolve) => server.listen(0, LOOPBACK, resolve));
      return (server.address() as { port: number }).port;
    },
    async client(port) {
      const before = accepted.length;
      const socket = connect(port, LOOPBACK);
      clients.push(socket);
      socket.on('error', () => {});
      const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
      await until(() => accepted.length > before, 'the server accepted the connection');
      return { socket, closed };
    },
  };
}

/** Polls a condition every 10 ms for at most `timeoutMs`; throws when it never held. */
async function until(condition: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Whether the promise settles within `ms`. */
async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), ms)));
  const settled = await Promise.race([promise.then(() => true), timeout]);
  clearTimeout(timer);
  return settled;
}

/** Sends one query and reads its reply. */
async function ask(socket: Socket, text: string): Promise<string> {
  socket.write(frameTcp(Buffer.from(text)));
  const replies = readTcpMessages(socket);
  const reply = await replies.next();
  return reply.done === true ? '(closed)' : reply.value.toString();
}

/** A frame cut short: the length prefix of a 300-byte message and 10 of its bytes. */
const HALF_SENT = frameTcp(Buffer.alloc(300, 1)).subarray(0, 12);

test('a connection without a complete query for the idle timeout is closed; an active one stays', async (t) => {
  // Long enough that a loaded machine's stall between two back-to-back queries never looks like idleness (300 failed once).
  const IDLE_MS = 1000;
  const { client, listen, connections } = harness(t, { idleTimeoutMs: IDLE_MS });
  const port = await listen('a');
  const idle = await client(port);
  idle.socket.write(HALF_SENT);
  idle.socket.resume();
  const active = await client(port);
  const replies = readTcpMessages(active.socket);
  const started = Date.now();
  let answered = 0;
  // Back to back for three idle periods (bounded by time alone: a count cap ended it early on a fast machine): the active
  // one never waits on itself for long, even on a loaded machine.
  while (Date.now() - started < 3 * IDLE_MS) {
    active.socket.write(frameTcp(Buffer.from(`q${answered}`)));
    const reply = await replies.next();
    if (reply.done === true || reply.value.toString() !== `q${answered}`) break;
    answered += 1;
  }
  t.true(Date.now() - started >= 3 * IDLE_MS, `the active one was answered for three idle periods (${answered} queries)`);
  t.true(await settlesWithin(idle.closed, 3000), 'the half-sent connection was closed');
  t.is(connections.count('a'), 1);
});

test('time spent answering does not count as idle', async (t) => {
  const slow: TcpAnswer = async (_, query) => {
    await new Promise((resolve) => setTimeout(resolve, 600));
    return query;
  };
  const { client, listen } = harness(t, { idleTimeoutMs: 200 }, slow);
  const { socket } = await client(await listen('a'));
  t.is(await ask(socket, 'slow'), 'slow');
});

test('beyond the per-sandbox cap a new connection takes the place of the longest idle one; other sandboxes are not touched', async (t) => {
  const { client, listen, connections } = harness(t, { maxPerSandbox: 3 });
  const portA = await listen('a');
  const portB = await listen('b');
  const b = await client(portB);
  b.socket.resume();
  const held: Client[] = [];
  for (let i = 0; i < 3; i++) {
    const connection = await client(portA);
    connection.socket.write(HALF_SENT);
    connection.socket.resume();
    held.push(connection);
  }
  await until(() => connections.count('a') === 3, 'three connections held');
  const newest = await client(portA);
  t.true(await settlesWithin(held[0]!.closed, 3000), 'the oldest idle connection was closed');
  t.is(await ask(newest.socket, 'hello'), 'hello', 'the newcomer is served');
  t.is(connections.count('a'), 3);
  t.false(await settlesWithin(Promise.race([held[1]!.closed, held[2]!.closed, b.closed]), 100), 'no other connection was closed');
  t.is(connections.count('b'), 1);
});

test('when every connection of the sandbox is busy answering, a new one is closed at once', async (t) => {
  const release: (() => void)[] = [];
  const blocked: TcpAnswer = (_, query) => new Promise((resolve) => release.push(() => resolve(query)));
  const { client, listen, connections } = harness(t, { maxPerSandbox: 2 }, blocked);
  const port = await listen('a');
  const busy = [await client(port), await client(port)];
  const answers = busy.map(({ socket }, i) => ask(socket, `busy${i}`));
  await until(() => release.length === 2, 'both queries are being answered');
  const refused = await client(port);
  refused.socket.resume();
  t.true(await settlesWithin(refused.closed, 3000), 'closed without an answer');
  t.is(connections.count('a'), 2);
  for (const resolve of release) resolve();
  t.deepEqual(await Promise.all(answers), ['busy0', 'busy1'], 'the busy ones were answered');
});

test('beyond the total cap a new connection takes the place of the longest idle one of any sandbox', async (t) => {
  const { client, listen, connections } = harness(t, { maxPerSandbox: 10, maxTotal: 4 });
  const held: Client[] = [];
  for (const sandboxId of ['a', 'a', 'b', 'b']) {
    const connection = await client(await listen(sandboxId));
    connection.socket.resume();
    held.push(connection);
  }
  await until(() => connections.count() === 4, 'four connections held');
  const c = await client(await listen('c'));
  t.true(await settlesWithin(held[0]!.closed, 3000), "a's first connection made room");
  t.is(await ask(c.socket, 'hello'), 'hello');
  t.is(connections.count(), 4);
  t.deepEqual([connections.count('a'), connections.count('b'), connections.count('c')], [1, 2, 1]);
});

/** Replies of 16 KiB that start with the query, so pipelined answers fill buffers fast and can be matched. */
const bulky = (counter: { answered: number }): TcpAnswer => async (_, query) => {
  counter.answered += 1;
  const reply = Buffer.alloc(16 * 1024);
  query.copy(reply);
  return reply;
};

/** Writes `count` queries (a 4-byte index each) in one go, without reading. */
function pipeline(socket: Socket, count: number): void {
  socket.pause();
  socket.write(Buffer.concat(Array.from({ length: count }, (_, i) => {
    const query = Buffer.alloc(4);
    query.writeUInt32BE(i);
    return frameTcp(query);
  })));
}

/** Resolves once `read()` has returned the same value for `quietMs`, or after `timeoutMs`. */
async function settled(read: () => number, quietMs: number, timeoutMs: number): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  let last = read();
  let since = Date.now();
  while (Date.now() < deadline && Date.now() - since < quietMs) {
    await new Promise((resolve) => setTimeout(resolve, 20));
    if (read() !== last) {
      last = read();
      since = Date.now();
    }
  }
  return last;
}

test('a client that pipelines and does not read stops being read: answers wait in its buffers, not ours, and come in order', async (t) => {
  const QUERIES = 2000;
  const counter = { answered: 0 };
  const { client, listen, accepted } = harness(t, {}, bulky(counter));
  const { socket } = await client(await listen('a'));
  pipeline(socket, QUERIES);
  const answered = await settled(() => counter.answered, 500, 10_000);
  const server = accepted[0]!;
  t.log(`${answered} of ${QUERIES} answered before the client read; ${server.writableLength} bytes queued in the server`);
  t.true(answered < QUERIES / 2, `reading stopped (${answered} answered)`);
  t.true(server.writableLength <= server.writableHighWaterMark + 16 * 1024 + 2, 'at most one answer past the high-water mark');

  const indexes: number[] = [];
  socket.resume();
  for await (const reply of readTcpMessages(socket)) {
    indexes.push(reply.readUInt32BE(0));
    if (indexes.length === QUERIES) break;
  }
  t.deepEqual(indexes, Array.from({ length: QUERIES }, (_, i) => i), 'every answer, in order, once the client reads');
});

test('a client that never reads its answers is closed by the idle timeout', async (t) => {
  const counter = { answered: 0 };
  const { client, listen, connections } = harness(t, { idleTimeoutMs: 300 }, bulky(counter));
  const { socket } = await client(await listen('a'));
  pipeline(socket, 2000);
  await until(() => counter.answered > 0, 'answering started');
  await until(() => connections.count() === 0, 'the connection is closed', 3000);
  t.true(counter.answered < 2000);
});

test('close destroys every connection and refuses later ones', async (t) => {
  const { client, listen, connections } = harness(t, {});
  const port = await listen('a');
  const first = await client(port);
  first.socket.resume();
  await until(() => connections.count() === 1, 'held');
  connections.close();
  t.true(await settlesWithin(first.closed, 3000));
  const later = await client(port);
  later.socket.resume();
  t.true(await settlesWithin(later.closed, 3000));
  t.is(connections.count(), 0);
});
