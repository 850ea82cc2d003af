/**
 * The in-memory doubles the controller tests use; they ship in the package
 * as `netctl/testing` (src/testing/), so runtimes test against the same ones.
 */
export { MemoryNamespaces, RecordingDriver } from '../../src/testing/index.js';
export type { DriverCall } from '../../src/testing/index.js';
