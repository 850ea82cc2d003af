/**
 * A DNS client for bench/scale.ts, run inside a sandbox with nsenter: sends
 * an A query for NAME to SERVER:53 every INTERVAL_MS until SIGTERM, waits a
 * second more for late answers, then prints one JSON line with every query's
 * send time (epoch ms, so the bench can cut out a window) and what came back.
 * Prints `ready` once its socket is bound.
 *
 *   node --import tsx bench/dns-probe.ts SERVER NAME INTERVAL_MS
 */
import { createSocket } from 'node:dgram';
import { decode, encode } from 'dns-packet';

export interface ProbeQuery {
  /** Epoch milliseconds when the query left. */
  sentAt: number;
  /** Milliseconds to the answer; null when none came. */
  latencyMs: number | null;
  /** The answer's rcode (0 is NOERROR) and number of answer records, when one came. */
  rcode?: number;
  answers?: number;
}

const LATE_ANSWER_MS = 1000;
const [server = '127.0.0.11', name = 'localhost', intervalText = '5'] = process.argv.slice(2);
const intervalMs = Number(intervalText);
const now = () => performance.timeOrigin + performance.now();

const queries: ProbeQuery[] = [];
// Query ids are 16 bits; the bench's windows stay far below 65,536 queries.
const pending = new Map<number, ProbeQuery>();
const socket = createSocket('udp4');
socket.on('message', (message) => {
  let packet: ReturnType<typeof decode>;
  try {
    packet = decode(message);
  } catch {
    return;
  }
  const query = pending.get(packet.id ?? -1);
  if (query === undefined) return;
  pending.delete(packet.id ?? -1);
  query.latencyMs = now() - query.sentAt;
  query.rcode = (packet.flags ?? 0) & 0xf;
  query.answers = packet.answers?.length ?? 0;
});
// A query sent while nothing listens (the daemon restarting) comes back as ICMP; it stays unanswered.
socket.on('error', () => undefined);
socket.bind(0, () => {
  let id = 0;
  const timer = setInterval(() => {
    id = (id + 1) & 0xffff;
    const query: ProbeQuery = { sentAt: now(), latencyMs: null };
    queries.push(query);
    pending.set(id, query);
    socket.send(encode({ type: 'query', id, flags: 1 << 8, questions: [{ type: 'A', name }] }), 53, server);
  }, intervalMs);
  process.once('SIGTERM', () => {
    clearInterval(timer);
    setTimeout(() => {
      socket.close();
      process.stdout.write(`${JSON.stringify(queries)}\n`);
    }, LATE_ANSWER_MS);
  });
  process.stdout.write('ready\n');
});
