// Layering of src/, as DESIGN.md ("Shape of the code") draws it:
//   cli|cni → api|plugins → cnm → drivers → vxlan|dns|ingress|crypto → repository → wire|sys|store → errors|records|log
// Each layer may import its own folder and the layers below it, never above
// or sideways. host.ts and index.ts are composition roots and may import
// anything. CommonJS because depcruise reads its config with require() when
// the name ends in .cjs, and an ESM config would need a default export.

/** A rule saying files under `from` may import in src/ only what `allowed` matches. */
function layer(name, from, allowed, comment) {
  return {
    name,
    comment,
    severity: 'error',
    from: { path: from },
    to: { path: '^src/', pathNot: allowed },
  };
}

// Named exceptions: edges DESIGN allows though they are not strictly downward.

/**
 * store → sys: the file store takes its lock through sys/fslock.ts, since only
 * sys/ touches the kernel. Same tier, and sys/ never imports store/.
 */
const EXCEPTION_STORE_USES_SYS = '^src/sys/fslock\\.ts$';

/**
 * drivers → cnm/driver.ts: "Drivers see the controller only through the
 * driver API types" (DESIGN); that file imports only records and store types.
 */
const EXCEPTION_DRIVER_API = '^src/cnm/driver\\.ts$';

const BOTTOM = 'src/(errors|records|log|limit)\\.ts$';
const TIER_LOW = `src/(wire|sys|store)/|${BOTTOM}`;
/**
 * The records repository: keys, schemas and typed reads of the controller's
 * records. Their writer (cnm/) and the data plane (dns/ follows them) use
 * it; drivers, api/ and cli/ get records from the controller.
 */
const TIER_REPOSITORY = `src/repository/|${TIER_LOW}`;
const TIER_DATA_PLANE = `src/(vxlan|dns|ingress|crypto)/|${TIER_LOW}`;

module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      comment: 'Cycles make layers meaningless; a folder cycle once ran cnm → store → sys → cnm.',
      severity: 'error',
      from: {},
      to: { circular: true },
    },
    {
      name: 'not-to-unresolvable',
      comment: 'An import depcruise cannot resolve would slip past every rule below.',
      severity: 'error',
      from: {},
      to: { couldNotResolve: true },
    },
    layer('errors-and-records-are-the-bottom', `^${BOTTOM}`, `^${BOTTOM}`,
      'errors.ts, records.ts, log.ts and limit.ts are the floor every layer stands on.'),
    layer('wire-imports-only-wire', '^src/wire/', '^src/wire/|^src/errors\\.ts$',
      'wire/ is pure codecs: nothing but itself (and errors).'),
    {
      name: 'wire-does-no-io',
      comment: 'wire/ decodes bytes; I/O belongs to sys/.',
      severity: 'error',
      from: { path: '^src/wire/' },
      to: { dependencyTypes: ['core', 'npm', 'npm-dev', 'npm-optional', 'npm-peer', 'npm-no-pkg'] },
    },
    layer('sys-imports-only-below', '^src/sys/', `^src/sys/|^${BOTTOM}`,
      'sys/ is the kernel boundary; it knows nothing of the store or above.'),
    layer('store-imports-only-below', '^src/store/', `^src/store/|^${BOTTOM}|${EXCEPTION_STORE_USES_SYS}`,
      'store/ sits beside sys/ and wire/ and builds on errors and records.'),
    layer('repository-imports-only-store-and-bottom', '^src/repository/', `^src/(repository|store)/|^${BOTTOM}`,
      'repository/ reads and writes records through store/; it knows no kernel, driver or controller.'),
    {
      name: 'repository-uses-no-io',
      comment: 'repository/ reaches the host only through a Store; node built-ins belong to sys/ and store/.',
      severity: 'error',
      from: { path: '^src/repository/' },
      to: { dependencyTypes: ['core'] },
    },
    layer('data-plane-imports-only-below', '^src/(vxlan|dns|ingress|crypto)/', `^src/$1/|^(${TIER_REPOSITORY})`,
      'vxlan/, dns/, ingress/ and crypto/ use the repository, wire, sys, store and errors, not each other.'),
    layer('drivers-import-only-below', '^src/drivers/', `^src/drivers/|^(${TIER_DATA_PLANE})|${EXCEPTION_DRIVER_API}`,
      'drivers/ build on the data plane and sys; they see cnm only through the driver API.'),
    layer('cnm-imports-only-below', '^src/cnm/', `^src/(cnm|drivers|repository)/|^(${TIER_DATA_PLANE})`,
      'cnm/ is the controller: it may use drivers and everything under them.'),
    layer('api-imports-only-below', '^src/(api|plugins)/', `^src/(cnm|drivers)/|^(${TIER_DATA_PLANE})|^src/$1/`,
      'api/ and plugins/ adapt the controller to callers; neither imports cli/ or the other.'),
    layer('cni-talks-to-the-daemon', '^src/cni/', `^src/cni/|^src/api/(client|types|docker)\\.ts$|^src/sys/(ip-json|tools)\\.ts$|^${BOTTOM}`,
      'cni/ is a client of the daemon beside cli/: the API client and its JSON types, and sys/ read-only views of namespaces; never cnm/ or the addon.'),
    layer('cli-imports-only-below', '^src/cli/', `^src/(cli|api|plugins|cnm|drivers)/|^(${TIER_DATA_PLANE})|^src/host\\.ts$`,
      'cli/ is the top layer; the daemon command wires the host via host.ts.'),
    {
      name: 'host-is-not-imported-from-below',
      comment: 'host.ts assembles the layers; only cli/ (the daemon) and index.ts may reach it.',
      severity: 'error',
      from: { path: '^src/', pathNot: '^src/(cli/|index\\.ts$)' },
      to: { path: '^src/host\\.ts$' },
    },
    {
      name: 'addon-only-through-sys',
      comment: 'The addon loader is the kernel boundary itself: above sys/, code reaches the addon through a sys/ module that names what it offers.',
      severity: 'error',
      from: { path: '^src/', pathNot: '^src/sys/' },
      to: { path: '^src/sys/addon\\.ts$' },
    },
    {
      name: 'entries-are-not-imported-from-inside',
      comment: 'index.ts, client.ts and testing/index.ts are the package entries; inside src/ import the module itself.',
      severity: 'error',
      from: { path: '^src/' },
      to: { path: '^src/(index|client|testing/index)\\.ts$' },
    },
    layer('client-entry-is-the-client-only', '^src/client\\.ts$', '^src/(api/(client|types|docker)|cnm/filters|errors)\\.ts$',
      'netctl/client must load no addon, database or etcd: only the API client, its types and the errors.'),
    layer('testing-imports-only-contracts-and-memory', '^src/testing/', `^src/testing/|^src/cnm/(driver|namespaces)\\.ts$|^src/store/(memory|types|validate)\\.ts$|^${BOTTOM}`,
      'netctl/testing holds in-memory doubles: they implement the contracts and load nothing native.'),
    {
      name: 'testing-is-not-imported-from-src',
      comment: 'The doubles are for tests; no production path may depend on them.',
      severity: 'error',
      from: { path: '^src/', pathNot: '^src/testing/' },
      to: { path: '^src/testing/' },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    // TypeScript 7 has no JavaScript API for depcruise to parse with; swc sees
    // every import, type-only ones included.
    parser: 'swc',
    tsConfig: { fileName: 'tsconfig.json' },
  },
};

