/** portInUse against real sockets of this process, in the namespace the tests run in. */
import test from 'ava';
import { createSocket, type Socket } from 'node:dgram';
import { type AddressInfo, type Server, createServer } from 'node:net';
import { portInUse } from '../../src/sys/ports.js';

function listenTcp(host: string, port = 0): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen({ port, host }, () => resolve(server));
  });
}

function bindUdp(): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = createSocket('udp4');
    socket.once('error', reject);
    socket.bind({ port: 0, address: '0.0.0.0' }, () => resolve(socket));
  });
}

const closeTcp = (server: Server) => new Promise<void>((resolve) => server.close(() => resolve()));
const closeUdp = (socket: Socket) => new Promise<void>((resolve) => socket.close(() => resolve()));

test('a TCP port with a listener is in use; once it closes, it is free', async (t) => {
  const server = await listenTcp('0.0.0.0');
  const { port } = server.address() as AddressInfo;
  t.true(await portInUse('tcp', port));
  await closeTcp(server);
  t.false(await portInUse('tcp', port));
});

test('a TCP listener on one address holds the port for every address', async (t) => {
  const server = await listenTcp('127.0.0.1');
  const { port } = server.address() as AddressInfo;
  t.true(await portInUse('tcp', port));
  await closeTcp(server);
  t.false(await portInUse('tcp', port));
});

test('a bound UDP port is in use; once it closes, it is free', async (t) => {
  const socket = await bindUdp();
  const { port } = socket.address();
  t.true(await portInUse('udp', port));
  await closeUdp(socket);
  t.false(await portInUse('udp', port));
});

test('asking leaves the port free: a listener can take it right after', async (t) => {
  const probe = await listenTcp('0.0.0.0');
  const { port } = probe.address() as AddressInfo;
  await closeTcp(probe);
  t.false(await portInUse('tcp', port));
  const server = await listenTcp('0.0.0.0', port);
  t.is((server.address() as AddressInfo).port, port);
  await closeTcp(server);
});
