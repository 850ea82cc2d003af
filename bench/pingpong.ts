/**
 * Request/response latency over TCP, run inside namespaces by the overlay
 * benchmark: `server PORT` echoes every 64-byte message back; `client HOST
 * PORT COUNT` sends one message, waits for its echo, COUNT times after 100
 * warm-up round trips, and prints `{"p50Us":…,"p99Us":…,"count":…}`.
 * Nagle is off on both ends, so each message is one segment each way.
 */
import { connect, createServer, type Socket } from 'node:net';

const MESSAGE = 64;
const WARMUP = 100;

function serve(port: number): void {
  const server = createServer((socket) => {
    socket.setNoDelay(true);
    socket.on('data', (chunk) => socket.write(chunk));
    socket.on('error', () => socket.destroy());
  });
  server.listen(port, () => console.log('ready'));
}

/** Resolves once `bytes` bytes have come back on the socket. */
function echoOf(socket: Socket, bytes: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let seen = 0;
    const onData = (chunk: Buffer) => {
      seen += chunk.length;
      if (seen < bytes) return;
      socket.off('data', onData);
      socket.off('error', reject);
      resolve();
    };
    socket.on('data', onData);
    socket.once('error', reject);
  });
}

async function measure(host: string, port: number, count: number): Promise<void> {
  const socket = connect({ host, port, noDelay: true });
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  const message = Buffer.alloc(MESSAGE, 0x61);
  const rtts: number[] = [];
  for (let i = 0; i < WARMUP + count; i++) {
    const start = process.hrtime.bigint();
    const echoed = echoOf(socket, MESSAGE);
    socket.write(message);
    await echoed;
    if (i >= WARMUP) rtts.push(Number(process.hrtime.bigint() - start) / 1000);
  }
  socket.destroy();
  rtts.sort((a, b) => a - b);
  const at = (q: number) => rtts[Math.min(rtts.length - 1, Math.floor(q * rtts.length))] ?? NaN;
  console.log(JSON.stringify({ p50Us: at(0.5), p99Us: at(0.99), count: rtts.length }));
}

const [mode, ...rest] = process.argv.slice(2);
if (mode === 'server') serve(Number(rest[0]));
else if (mode === 'client') await measure(rest[0] ?? '', Number(rest[1]), Number(rest[2] ?? 2000));
else {
  console.error('usage: pingpong.ts server PORT | client HOST PORT [COUNT]');
  process.exit(2);
}
