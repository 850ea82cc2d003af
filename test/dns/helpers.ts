import { decode, encode } from 'dns-packet';
import type { Answer, DecodedPacket, RecordType } from 'dns-packet';
import type { UpstreamExchange, UpstreamTransport } from '../../src/dns/forwarder.js';

export interface QueryOptions {
  id?: number;
  /** EDNS UDP size; adds an OPT record. */
  udpSize?: number;
  ednsVersion?: number;
  recursionDesired?: boolean;
}

/** A query message as a stub resolver would send it. */
export function makeQuery(name: string, type: RecordType, opts: QueryOptions = {}): Buffer {
  const additionals: Answer[] =
    opts.udpSize === undefined
      ? []
      : [{ type: 'OPT', name: '.', udpPayloadSize: opts.udpSize, extendedRcode: 0, ednsVersion: opts.ednsVersion ?? 0, flags: 0, flag_do: false, options: [] }];
  return encode({
    type: 'query',
    id: opts.id ?? 0x1234,
    flags: opts.recursionDesired === false ? 0 : 0x0100,
    questions: [{ type, name, class: 'IN' }],
    additionals,
  });
}

export type Reply = DecodedPacket & { rcode: string; opcode: string };

/** Decodes a reply, which must be there. */
export function decodeReply(reply: Buffer | undefined): Reply {
  if (!reply) throw new Error('expected a reply, got a drop');
  return decode(reply) as Reply;
}

/** An upstream reply to `query` (as the upstream received it): same ID and question, the given rcode and answers. */
export function upstreamReply(query: Buffer, rcode: number, answers: Answer[] = [], flags = 0): Buffer {
  const asked = decode(query);
  return encode({
    type: 'response',
    id: asked.id ?? 0,
    flags: 0x0100 | 0x0080 | flags | rcode,
    questions: asked.questions ?? [],
    answers,
  });
}

export type Behaviour = (exchange: UpstreamExchange) => Promise<Buffer>;

/** Never answers; ends when the exchange is aborted, as a real transport does. */
export const silent: Behaviour = ({ signal }) =>
  new Promise<Buffer>((_, reject) => {
    signal.addEventListener('abort', () => reject(new Error('aborted')));
  });

/** Answers with the given rcode and A records. */
export function answering(rcode: number, addresses: string[] = []): Behaviour {
  return async ({ query }) =>
    upstreamReply(
      query,
      rcode,
      addresses.map((data) => ({ type: 'A', name: decode(query).questions?.[0]?.name ?? '', ttl: 60, data })),
    );
}

/**
 * In-memory upstreams keyed by `address:port`; records every exchange and
 * passes replies through `accept` as the real transport does.
 */
export class FakeTransport implements UpstreamTransport {
  readonly exchanges: UpstreamExchange[] = [];
  readonly #behaviours = new Map<string, Behaviour>();

  set(upstream: string, behaviour: Behaviour): void {
    this.#behaviours.set(upstream, behaviour);
  }

  async exchange(exchange: UpstreamExchange): Promise<Buffer> {
    this.exchanges.push(exchange);
    const behaviour = this.#behaviours.get(`${exchange.upstream.address}:${exchange.upstream.port}`);
    if (!behaviour) throw new Error('no such upstream');
    const reply = await behaviour(exchange);
    if (!exchange.accept(reply)) throw new Error('reply not accepted');
    return reply;
  }
}

/** Deterministic PRNG (mulberry32) so a failing random case can be replayed. */
export function prng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let x = state;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 0x100000000;
  };
}
