/**
 * Forwards the queries the record table cannot answer to the host's
 * upstream resolvers, as libnetwork's resolver does: at most three
 * upstreams tried in order, a timeout per upstream, SERVFAIL or REFUSED
 * from one moves on to the next, and a cap on forwards in flight.
 *
 * Spoofing: every attempt goes out with a fresh random ID (and, over UDP,
 * from a fresh socket with a random source port, connected to the
 * upstream); only a reply with that ID, the same question and the
 * upstream's source address is taken. The client's ID is put back before
 * the reply is returned.
 */
import { randomInt } from 'node:crypto';
import { createSocket } from 'node:dgram';
import { connect as connectTcp, isIPv4, isIPv6 } from 'node:net';
import { InvalidArgument } from '../errors.js';
import { formatIPv6, parseIPv6 } from '../wire/index.js';
import { Flag, HEADER_LENGTH, Rcode, questionKey, scanQuestion } from './message.js';
import { frameTcp, readTcpMessages } from './tcp.js';
import { type Logger, silentLogger } from '../log.js';

/** libnetwork's limit: later nameservers are ignored. */
export const MAX_UPSTREAMS = 3;
const DNS_PORT = 53;

export interface Upstream {
  /** IPv4 or canonical IPv6 text. */
  address: string;
  port: number;
}

export interface UpstreamExchange {
  upstream: Upstream;
  query: Buffer;
  tcp: boolean;
  /** Aborted on timeout or when the forwarder closes: stop and release the socket. */
  signal: AbortSignal;
  /** True for a reply that answers this query; the transport ignores (UDP) or fails on (TCP) any other. */
  accept: (reply: Buffer) => boolean;
}

/**
 * How the forwarder reaches an upstream, injectable for tests. The real one
 * is `NodeUpstreamTransport`.
 */
export interface UpstreamTransport {
  /**
   * Sends the query and resolves with the first reply from the upstream's
   * address and port that `accept` takes; rejects on a socket error or when
   * `signal` aborts.
   */
  exchange(exchange: UpstreamExchange): Promise<Buffer>;
}

export interface ForwarderOptions {
  /** `IP` or `IP:port` (`[IPv6]:port`); the first three are used, more are ignored with a log line. */
  upstreams: string[];
  /** Per upstream attempt; default 2000. */
  timeoutMs?: number;
  /** Forwards in flight at once; one more is answered 'refused' at once. Default 100. */
  maxConcurrent?: number;
  transport?: UpstreamTransport;
  logger?: Logger;
}

export type ForwardResult = Buffer | 'refused' | 'servfail';

/** `IP`, `IP:port` or `[IPv6]:port` → address and port (53 when not given); throws InvalidArgument. */
export function parseUpstream(text: string): Upstream {
  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(text);
  const withPort = /^([^:]+):(\d+)$/.exec(text);
  const [host, portText] = bracketed ? [bracketed[1]!, bracketed[2]] : withPort ? [withPort[1]!, withPort[2]] : [text, undefined];
  const port = portText === undefined ? DNS_PORT : Number(portText);
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new InvalidArgument(`DNS upstream ${JSON.stringify(text)}: bad port`);
  }
  if (isIPv4(host)) return { address: host, port };
  if (isIPv6(host) && !host.includes('%')) return { address: formatIPv6(parseIPv6(host)), port };
  throw new InvalidArgument(`DNS upstream ${JSON.stringify(text)}: need an IP address, optionally with :port`);
}

/**
 * The nameservers of a resolv.conf, in order. Unlike Docker, loopback ones
 * (a systemd-resolved or dnsmasq stub) are kept: netctl forwards from the
 * daemon's own namespace, where such a stub listens, and its listeners sit
 * on 127.0.0.11 inside the sandboxes, so nothing loops. Zone-scoped
 * addresses (`fe80::1%eth0`) are skipped: the zone names an interface that
 * the daemon's namespace may not have.
 */
export function parseResolvConf(text: string): string[] {
  const servers: string[] = [];
  for (const line of text.split('\n')) {
    const [keyword, address] = line.replace(/[#;].*/, '').trim().split(/\s+/);
    if (keyword !== 'nameserver' || address === undefined) continue;
    if (isIPv4(address) || (isIPv6(address) && !address.includes('%'))) servers.push(address);
  }
  return servers;
}

function randomId(): number {
  return randomInt(0, 0x10000);
}

function rcodeOf(reply: Buffer): number {
  return reply.readUInt16BE(2) & Flag.RCODE;
}

/** Why an attempt gave no reply, for the log. */
class UpstreamTimeout extends Error {
  constructor(upstream: Upstream, timeoutMs: number) {
    super(`${upstream.address}:${upstream.port} did not answer within ${timeoutMs} ms`);
    this.name = 'UpstreamTimeout';
  }
}

/**
 * The upstream forwarder; one per daemon. After `close`, in-flight forwards
 * end with 'servfail' at once and later ones answer 'servfail' without
 * contacting anyone.
 */
export class Forwarder {
  readonly #upstreams: Upstream[];
  readonly #timeoutMs: number;
  readonly #maxConcurrent: number;
  readonly #transport: UpstreamTransport;
  readonly #logger: Logger;
  /** Attempts in flight, aborted on close; one listener per attempt on a shared signal would trip MaxListeners. */
  readonly #attempts = new Set<AbortController>();
  readonly #inFlight = new Set<Promise<ForwardResult>>();
  #closed = false;

  /** Throws InvalidArgument on an upstream that is not an IP address (with optional port). */
  constructor(opts: ForwarderOptions) {
    this.#logger = opts.logger ?? silentLogger;
    const upstreams = opts.upstreams.map(parseUpstream);
    if (upstreams.length > MAX_UPSTREAMS) {
      this.#logger.warn(`dns: ${upstreams.length} upstream resolvers configured, using the first ${MAX_UPSTREAMS}`);
    }
    this.#upstreams = upstreams.slice(0, MAX_UPSTREAMS);
    this.#timeoutMs = opts.timeoutMs ?? 2000;
    this.#maxConcurrent = opts.maxConcurrent ?? 100;
    this.#transport = opts.transport ?? new NodeUpstreamTransport();
  }

  /** The upstreams in use, parsed. */
  get upstreams(): readonly Upstream[] {
    return this.#upstreams;
  }

  /**
   * Forwards a query (as the client sent it) and resolves with the first
   * upstream reply that is not SERVFAIL or REFUSED, carrying the client's
   * ID; 'servfail' when every upstream failed, 'refused' when too many
   * forwards are in flight. Never rejects. `tcp`: the client asked over
   * TCP, so ask over TCP too; a truncated UDP reply is asked again over TCP
   * from the same upstream (and relayed truncated if that fails).
   */
  forward(query: Buffer, opts: { tcp: boolean }): Promise<ForwardResult> {
    if (this.#closed) return Promise.resolve('servfail');
    if (this.#inFlight.size >= this.#maxConcurrent) return Promise.resolve('refused');
    const work = this.#forward(query, opts.tcp);
    this.#inFlight.add(work);
    void work.finally(() => this.#inFlight.delete(work));
    return work;
  }

  /** Aborts forwards in flight and waits for them to end. */
  async close(): Promise<void> {
    this.#closed = true;
    for (const attempt of this.#attempts) attempt.abort();
    await Promise.allSettled([...this.#inFlight]);
  }

  async #forward(query: Buffer, tcp: boolean): Promise<ForwardResult> {
    const question = query.length >= HEADER_LENGTH ? scanQuestion(query) : undefined;
    if (!question) return 'servfail';
    const clientId = query.readUInt16BE(0);
    const key = questionKey(question);
    for (const upstream of this.#upstreams) {
      let reply = await this.#attempt(upstream, query, key, tcp);
      if (reply && !tcp && (reply.readUInt16BE(2) & Flag.TC) !== 0) {
        reply = (await this.#attempt(upstream, query, key, true)) ?? reply;
      }
      if (!reply) continue;
      const rcode = rcodeOf(reply);
      if (rcode === Rcode.SERVFAIL || rcode === Rcode.REFUSED) {
        this.#logger.info(`dns: upstream ${upstream.address}:${upstream.port} answered ${rcode === Rcode.SERVFAIL ? 'SERVFAIL' : 'REFUSED'}, trying the next`);
        continue;
      }
      reply.writeUInt16BE(clientId, 0);
      return reply;
    }
    return 'servfail';
  }

  /** One exchange with one upstream under a fresh ID; undefined on timeout, error or close. */
  async #attempt(upstream: Upstream, query: Buffer, key: string, tcp: boolean): Promise<Buffer | undefined> {
    if (this.#closed) return undefined;
    const id = randomId();
    const outgoing = Buffer.from(query);
    outgoing.writeUInt16BE(id, 0);
    const accept = (reply: Buffer): boolean => {
      if (reply.length < HEADER_LENGTH || reply.readUInt16BE(0) !== id) return false;
      if ((reply.readUInt16BE(2) & Flag.QR) === 0) return false;
      if (reply.readUInt16BE(4) === 0) return rcodeOf(reply) !== Rcode.NOERROR;
      const answered = scanQuestion(reply);
      return answered !== undefined && questionKey(answered) === key;
    };
    const attempt = new AbortController();
    this.#attempts.add(attempt);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        // Rejected before the abort, so the race reports the timeout rather than the transport's abort.
        reject(new UpstreamTimeout(upstream, this.#timeoutMs));
        attempt.abort();
      }, this.#timeoutMs);
    });
    try {
      const exchange = this.#transport.exchange({ upstream, query: outgoing, tcp, signal: attempt.signal, accept });
      // A transport that ignores the signal must not hold the forward past the timeout.
      return Buffer.from(await Promise.race([exchange, timeout]));
    } catch (error) {
      if (!this.#closed) {
        this.#logger.warn(`dns: upstream ${upstream.address}:${upstream.port} (${tcp ? 'tcp' : 'udp'}): ${(error as Error).message}`);
      }
      return undefined;
    } finally {
      clearTimeout(timer);
      attempt.abort();
      this.#attempts.delete(attempt);
    }
  }
}

/** Rejection when the exchange's signal aborts. */
class ExchangeAborted extends Error {
  constructor() {
    super('exchange aborted');
    this.name = 'ExchangeAborted';
  }
}

/**
 * The real transport: a UDP socket per attempt (node:dgram, connected to
 * the upstream, so the kernel already drops datagrams from anyone else) or
 * a TCP connection per attempt (node:net). Sockets are made in the
 * network namespace of the calling process.
 */
export class NodeUpstreamTransport implements UpstreamTransport {
  exchange(exchange: UpstreamExchange): Promise<Buffer> {
    return exchange.tcp ? exchangeTcp(exchange) : exchangeUdp(exchange);
  }
}

function exchangeUdp({ upstream, query, signal, accept }: UpstreamExchange): Promise<Buffer> {
  return new Promise<Buffer>((resolve, reject) => {
    if (signal.aborted) {
      reject(new ExchangeAborted());
      return;
    }
    const socket = createSocket(isIPv6(upstream.address) ? 'udp6' : 'udp4');
    let settled = false;
    const finish = (error: Error | undefined, reply?: Buffer): void => {
      if (settled) return;
      settled = true;
      signal.removeEventListener('abort', onAbort);
      socket.close();
      if (reply) resolve(reply);
      else reject(error ?? new ExchangeAborted());
    };
    const onAbort = (): void => finish(new ExchangeAborted());
    signal.addEventListener('abort', onAbort);
    socket.on('error', (error) => finish(error));
    socket.on('message', (reply, from) => {
      if (from.address === upstream.address && from.port === upstream.port && accept(reply)) finish(undefined, reply);
    });
    // Connected, so an ICMP port unreachable fails the exchange at once instead of after the timeout.
    // A failed connect (no route) hands its error to the callback, and send must not run then.
    socket.connect(upstream.port, upstream.address, (...args: unknown[]) => {
      if (args[0] instanceof Error) {
        finish(args[0]);
        return;
      }
      socket.send(query, (error) => {
        if (error) finish(error);
      });
    });
  });
}

function exchangeTcp({ upstream, query, signal, accept }: UpstreamExchange): Promise<Buffer> {
  return new Promise<Buffer>((resolve, reject) => {
    if (signal.aborted) {
      reject(new ExchangeAborted());
      return;
    }
    const socket = connectTcp({ host: upstream.address, port: upstream.port });
    let settled = false;
    const finish = (error: Error | undefined, reply?: Buffer): void => {
      if (settled) return;
      settled = true;
      signal.removeEventListener('abort', onAbort);
      socket.destroy();
      if (reply) resolve(reply);
      else reject(error ?? new ExchangeAborted());
    };
    const onAbort = (): void => finish(new ExchangeAborted());
    signal.addEventListener('abort', onAbort);
    socket.on('error', (error) => finish(error));
    socket.on('connect', () => socket.write(frameTcp(query)));
    void (async () => {
      try {
        for await (const reply of readTcpMessages(socket)) {
          // Over TCP the peer is fixed, so a reply that is not ours ends the attempt.
          if (accept(reply)) finish(undefined, reply);
          else finish(new Error('reply does not match the query'));
          return;
        }
        finish(new Error('connection closed without a reply'));
      } catch (error) {
        finish(error as Error);
      }
    })();
  });
}
