// A runtime that only drives a running daemon: `node client.mjs unix:///path/netctl.sock NETWORK SANDBOX`.
import { ApiClient, NetworkNotFound } from 'netctl/client';

globalThis.recordLoaded('client');
const [host, network, sandbox] = process.argv.slice(2);
const client = new ApiClient(host);
const ping = await client.ping();
const version = await client.version();
const { Id: networkId } = await client.createNetwork({ Name: network, Labels: { from: 'pack-test' } });
const listed = (await client.listNetworks({ label: ['from=pack-test'] })).map((n) => n.Name);
await client.createSandbox({ Name: sandbox });
await client.connect(network, sandbox);
const joined = (await client.inspectSandbox(sandbox)).Networks[networkId];
await client.disconnect(network, sandbox);
await client.removeSandbox(sandbox);
await client.removeNetwork(network);
let gone = false;
try {
  await client.inspectNetwork(network);
} catch (err) {
  gone = err instanceof NetworkNotFound;
}
console.log(JSON.stringify({ ping, apiVersion: version.ApiVersion, networkId, listed, address: joined?.IPv4Address, gone }));
