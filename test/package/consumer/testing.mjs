// A runtime's own unit test: a Controller on the in-memory doubles, no root needed.
import { Controller } from 'netctl';
import { MemoryNamespaces, MemoryStore, RecordingDriver } from 'netctl/testing';

const driver = new RecordingDriver();
const controller = await Controller.open({ store: new MemoryStore(), namespaces: new MemoryNamespaces(), drivers: [driver] });
await controller.createNetwork({ name: 'web', driver: 'bridge' });
await controller.createSandbox({ name: 'app' });
const endpoint = await controller.connect('web', 'app');
await controller.close();
console.log(JSON.stringify({ calls: driver.calls.map((c) => c.call), address: endpoint.ipv4Address }));
