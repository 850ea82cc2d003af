/**
 * The tiny HTTP server a task runs in the services benchmark: `PORT NAME`
 * answers every request with NAME and closes the connection at once (the
 * server closes first, so the clients keep no TIME_WAIT and never run out of
 * ports). `GET /count` answers how many other requests it served, without
 * counting itself: the benchmark reads it to see how the VIP spread the load.
 * Prints `ready` once it listens.
 */
import { createServer } from 'node:net';

const port = Number(process.argv[2]);
const name = process.argv[3] ?? 'task';
let served = 0;

const answer = (body: string) =>
  Buffer.from(`HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
const response = answer(`${name}\n`);

const server = createServer((socket) => {
  socket.setNoDelay(true);
  let head = '';
  const onData = (chunk: Buffer) => {
    head += chunk.toString('latin1');
    if (!head.includes('\r\n\r\n')) {
      if (head.length > 8192) socket.destroy();
      return;
    }
    socket.off('data', onData);
    if (head.startsWith('GET /count ')) {
      socket.end(answer(`${served}\n`));
      return;
    }
    served += 1;
    socket.end(response);
  };
  socket.on('data', onData);
  socket.on('error', () => socket.destroy());
});
server.listen({ port, host: '0.0.0.0', backlog: 4096 }, () => console.log('ready'));
