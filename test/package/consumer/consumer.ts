// A TypeScript runtime using all three entries; tsc checks it against the .d.ts the package ships.
import { ApiClient, DaemonUnreachable, NetworkNotFound, type DockerNetwork, type NetworkCreateBody } from 'netctl/client';
import { Controller, openHost, type Host, type HostOptions, type NetworkCreateRequest } from 'netctl';
import { MemoryNamespaces, MemoryStore, RecordingDriver, type DriverCall } from 'netctl/testing';

export async function networkIds(host: string, body: NetworkCreateBody): Promise<string[]> {
  const client = new ApiClient(host);
  try {
    await client.createNetwork(body);
  } catch (err) {
    if (err instanceof DaemonUnreachable || err instanceof NetworkNotFound) return [];
    throw err;
  }
  const networks: DockerNetwork[] = await client.listNetworks({ name: [body.Name] });
  return networks.map((network) => network.Id);
}

export async function inMemory(request: NetworkCreateRequest): Promise<{ id: string; calls: DriverCall[] }> {
  const driver = new RecordingDriver();
  const controller = await Controller.open({ store: new MemoryStore(), namespaces: new MemoryNamespaces(), drivers: [driver] });
  const view = await controller.createNetwork(request);
  await controller.close();
  return { id: view.network.id, calls: driver.calls.map((c) => c.call) };
}

export function open(options: HostOptions): Promise<Host> {
  return openHost(options);
}
