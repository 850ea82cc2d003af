import test from 'ava';
import type { Datagram } from '../../src/vxlan/io.js';
import { Liveness, formatRtt } from '../../src/vxlan/liveness.js';
import type { PeerLiveness } from '../../src/vxlan/liveness.js';
import { PROBE_REPLY, PROBE_REQUEST, decodeProbe, encodeProbe } from '../../src/wire/probe.js';
import { ManualTimers } from './clock.js';
import { levelLogger } from '../../src/log.js';

const B = '198.18.0.2';
const C = '198.18.0.3';

/** A Liveness on a manual clock whose sends, logs and changes the test reads. */
function harness(targets: string[] = [B], known: string[] = [B]) {
  const timers = new ManualTimers();
  const sent: Datagram[] = [];
  const logs: string[] = [];
  const changes: PeerLiveness[] = [];
  const liveness = new Liveness({
    port: 4789,
    timers,
    targets: () => targets,
    knows: (address) => known.includes(address),
    send: (datagrams) => sent.push(...datagrams),
    logger: levelLogger((_level, message) => logs.push(message)),
  });
  liveness.onChange((peer) => changes.push(peer));
  liveness.start();
  /** The peer's VTEP answers the last request sent to it, `rttMs` after it was sent. */
  const answer = (address: string, rttMs: number) => {
    const request = [...sent].reverse().find((d) => d.address === address);
    if (request === undefined) throw new Error(`no request to ${address}`);
    const probe = decodeProbe(request.data);
    const wait = probe.timestamp / 1000 + rttMs - timers.now();
    if (wait < 0) throw new Error(`the last request to ${address} was sent more than ${rttMs} ms ago`);
    timers.advance(wait);
    const reply = new Uint8Array(24);
    encodeProbe({ ...probe, type: PROBE_REPLY }, reply);
    liveness.receive(reply, 0, address);
  };
  return { timers, sent, logs, changes, liveness, targets, answer };
}

test('a peer is probed every 300 ms, unknown until its first reply, then up with its RTT', (t) => {
  const { timers, sent, logs, liveness, answer } = harness();
  const start = timers.now();
  t.is(sent.length, 0, 'nothing before the first tick');
  timers.advance(300);
  t.is(sent.length, 1);
  t.deepEqual({ ...sent[0], data: undefined }, { address: B, port: 4789, data: undefined });
  t.deepEqual(decodeProbe(sent[0]!.data), { type: PROBE_REQUEST, sequence: 1, timestamp: (start + 300) * 1000, underlayMtu: 0 });
  t.like(liveness.get(B), { state: 'unknown', since: start + 300 });
  t.is(logs.length, 0);

  answer(B, 0.312);
  const up = liveness.get(B);
  t.like(up, { address: B, state: 'up' });
  // Epoch milliseconds keep about a quarter of a microsecond of precision: plenty for an RTT.
  t.true(Math.abs(up!.since - (start + 300.312)) < 0.001 && Math.abs(up!.rttMs! - 0.312) < 0.001, JSON.stringify(up));
  t.deepEqual(logs, [`VTEP peer ${B} is up (RTT 312µs)`]);
  timers.advance(600);
  t.deepEqual(sent.map((d) => decodeProbe(d.data).sequence), [1, 2, 3]);
  t.is(liveness.get(C), undefined, 'not a target: not probed');
});

test('down once no reply came for a second, logged once; up again on the first reply', (t) => {
  const { timers, logs, changes, liveness, answer } = harness();
  timers.advance(300);
  answer(B, 1);
  const heard = timers.now();
  timers.advance(900);
  t.is(liveness.get(B)?.state, 'up', 'three silent probes are not yet a second');
  timers.advance(300);
  t.like(liveness.get(B), { state: 'down', rttMs: 1 });
  const downSince = liveness.get(B)!.since;
  t.true(downSince - heard >= 1000 && downSince - heard < 1300, `down ${downSince - heard} ms after the last reply`);
  timers.advance(3000);
  t.is(liveness.get(B)?.since, downSince, 'still the same change');
  t.deepEqual(logs.slice(1), [`VTEP peer ${B} is down: no probe reply for ${Math.round(downSince - heard)} ms`]);

  answer(B, 2);
  t.like(liveness.get(B), { state: 'up', rttMs: 2 });
  t.deepEqual(changes.map((c) => c.state), ['up', 'down', 'up']);
  t.is(logs.length, 3);
  t.is(logs[2], `VTEP peer ${B} is up (RTT 2ms)`);
});

test('a peer that never answers goes from unknown to down after a second', (t) => {
  const { timers, logs, liveness } = harness();
  timers.advance(300);
  const began = timers.now();
  timers.advance(900);
  t.is(liveness.get(B)?.state, 'unknown');
  timers.advance(300);
  t.like(liveness.get(B), { state: 'down', since: began + 1200 });
  t.deepEqual(logs, [`VTEP peer ${B} is down: no probe reply for 1200 ms`]);
});

test('late replies, replies with a future timestamp and replies from peers not probed are ignored', (t) => {
  const { timers, liveness, answer, sent } = harness([B], [B, C]);
  timers.advance(300);
  answer(B, 1001);
  t.is(liveness.get(B)?.state, 'unknown', 'a reply older than a second says nothing about the path now');
  const future = new Uint8Array(24);
  encodeProbe({ type: PROBE_REPLY, sequence: 1, timestamp: (timers.now() + 5) * 1000, underlayMtu: 0 }, future);
  liveness.receive(future, 0, B);
  t.is(liveness.get(B)?.state, 'unknown');
  liveness.receive(future, 0, C);
  t.is(liveness.get(C), undefined);
  t.is(sent.length, 4);
});

test('requests from known VTEPs are answered with their sequence and timestamp; strangers get nothing', (t) => {
  const { sent, liveness } = harness([], [B]);
  const request = new Uint8Array(24);
  encodeProbe({ type: PROBE_REQUEST, sequence: 42, timestamp: 123_456, underlayMtu: 1500 }, request);
  liveness.receive(request, 0, B);
  t.is(sent.length, 1);
  t.deepEqual({ address: sent[0]!.address, port: sent[0]!.port }, { address: B, port: 4789 });
  t.deepEqual(decodeProbe(sent[0]!.data), { type: PROBE_REPLY, sequence: 42, timestamp: 123_456, underlayMtu: 0 });
  liveness.receive(request, 0, '198.18.0.66');
  t.is(sent.length, 1, 'no reflection to an address we do not know');
});

test('a peer no longer a target is forgotten and listeners hear unknown; stop ends the timer', (t) => {
  const { timers, sent, changes, liveness, answer, targets, logs } = harness([B, C], [B, C]);
  timers.advance(300);
  answer(B, 0.5);
  targets.splice(0, 1);
  timers.advance(300);
  t.is(liveness.get(B), undefined);
  t.like(changes.at(-1), { address: B, state: 'unknown' });
  t.deepEqual(liveness.all().map((peer) => peer.address), [C]);
  t.is(logs.length, 1, 'no longer probing is not a change of the data path: not logged');
  liveness.stop();
  t.is(timers.running, 0);
  const count = sent.length;
  timers.advance(5000);
  t.is(sent.length, count);
  t.deepEqual(liveness.all(), []);
});

test('a send that throws is logged and probing goes on', (t) => {
  const timers = new ManualTimers();
  const logs: string[] = [];
  let calls = 0;
  const liveness = new Liveness({
    port: 4789,
    timers,
    targets: () => [B],
    knows: () => true,
    send: () => {
      calls++;
      throw new Error('closed');
    },
    logger: levelLogger((_level, message) => logs.push(message)),
  });
  liveness.start();
  timers.advance(600);
  t.is(calls, 2);
  t.deepEqual(logs, ['VTEP probe send failed: Error: closed', 'VTEP probe send failed: Error: closed']);
});

test('RTTs read as Go durations', (t) => {
  t.is(formatRtt(0.312), '312µs');
  t.is(formatRtt(0.0004), '0µs');
  t.is(formatRtt(1), '1ms');
  t.is(formatRtt(1.25), '1.25ms');
  t.is(formatRtt(999.9994), '999.999ms');
  t.is(formatRtt(999.9999), '1s');
  t.is(formatRtt(1500), '1.5s');
});
