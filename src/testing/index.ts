/**
 * `netctl/testing`: in-memory doubles for a runtime's own tests. With them a
 * Controller runs without root, namespaces or a database:
 * `Controller.open({ store: new MemoryStore(), namespaces: new MemoryNamespaces(), drivers: [new RecordingDriver()] })`.
 * None of them loads native code.
 */
export { MemoryStore } from '../store/memory.js';
export { MemoryNamespaces } from './namespaces.js';
export { RecordingDriver } from './driver.js';
export type { DriverCall } from './driver.js';
