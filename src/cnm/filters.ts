/**
 * Docker's network list and prune filters and its container list filters,
 * which sandboxes answer (`-f key=value`, the API's `filters` query).
 * Values of one key are OR-ed, keys are AND-ed.
 */
import { setFlagsFromString } from 'node:v8';
import { InvalidArgument } from '../errors.js';
import type { SandboxInfo } from './types.js';
import type { NetworkRecord } from '../records.js';

export type Filters = Readonly<Record<string, readonly string[]>>;

const LIST_KEYS = new Set(['driver', 'id', 'label', 'name', 'scope', 'type', 'dangling']);
const PRUNE_KEYS = new Set(['until', 'label', 'label!']);
const SANDBOX_KEYS = new Set(['id', 'name', 'label', 'network', 'status']);

/** Parses `key=value` strings as the CLI's `-f` gives them. */
export function parseFilterArgs(args: readonly string[]): Record<string, string[]> {
  const filters: Record<string, string[]> = {};
  for (const arg of args) {
    const eq = arg.indexOf('=');
    if (eq <= 0) throw new InvalidArgument(`bad format of filter (expected name=value): "${arg}"`);
    const key = arg.slice(0, eq).trim().toLowerCase();
    const value = arg.slice(eq + 1);
    (filters[key] ??= []).push(value);
  }
  return filters;
}

/**
 * Reads the API's `filters` query: a JSON object whose values are arrays
 * (`{"name":["a"]}`) or, in older clients, maps (`{"name":{"a":true}}`).
 */
export function parseFiltersJson(text: string | null | undefined): Record<string, string[]> {
  if (text === null || text === undefined || text === '') return {};
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw new InvalidArgument(`invalid filters: ${text}`);
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new InvalidArgument(`invalid filters: ${text}`);
  }
  const entries = Object.entries(raw).map(([key, value]): [string, string[]] => {
    if (Array.isArray(value)) {
      // Docker refuses the filter rather than drop a value it cannot read: a prune must not widen.
      if (value.every((v) => typeof v === 'string')) return [key, value as string[]];
    } else if (value !== null && typeof value === 'object') {
      // The older map form, {"name": {"web": true}}.
      const values = Object.entries(value);
      if (values.every(([, on]) => typeof on === 'boolean')) return [key, values.filter(([, on]) => on).map(([v]) => v)];
    }
    throw new InvalidArgument(`invalid filter value for '${key}'`);
  });
  // fromEntries keeps a key named __proto__ as a key (then refused as unknown), where an assignment would not.
  return Object.fromEntries(entries);
}

function checkKeys(filters: Filters, allowed: ReadonlySet<string>): void {
  for (const key of Object.keys(filters)) {
    if (!allowed.has(key)) throw new InvalidArgument(`invalid filter '${key}'`);
  }
}

/** `label=key` matches the key; `label=key=value` matches both. */
export function matchesLabel(labels: Readonly<Record<string, string>>, spec: string): boolean {
  const eq = spec.indexOf('=');
  if (eq < 0) return Object.hasOwn(labels, spec);
  const key = spec.slice(0, eq);
  return Object.hasOwn(labels, key) && labels[key] === spec.slice(eq + 1);
}

function parseBool(key: string, value: string): boolean {
  const v = value.toLowerCase();
  if (v === 'true' || v === '1') return true;
  if (v === 'false' || v === '0') return false;
  throw new InvalidArgument(`invalid filter '${key}=${value}': expected true or false`);
}

// V8's linear-time engine (the `l` flag), off unless asked for: it changes no other regular expression.
setFlagsFromString('--enable-experimental-regexp-engine');

/** A compiled filter: the pattern, and whether it asks the field lowercased (Go's `(?i)`). */
interface FilterPattern {
  readonly regexp: RegExp;
  readonly foldCase: boolean;
}

/**
 * A `name` or `id` filter value as moby's filters.Args.Match reads it: a
 * regular expression found anywhere in the field (`name=^web$` is exact,
 * `name=we` matches web). Go's RE2 syntax reads the same in JavaScript for
 * what people write, except flags, which Go puts in front: `(?i)web`.
 * Compiled for V8's linear-time engine, as RE2 runs in linear time: a
 * client's pattern must not stall the daemon, whose event loop also moves
 * the overlay's frames; what that engine cannot run in linear time
 * (backreferences, lookaround) Go's RE2 refuses too. That engine has no
 * `i` flag here, so `(?i)` matches the field lowercased against the
 * pattern with its letters lowercased (but those an escape names, as \D).
 */
function filterPattern(key: string, value: string): FilterPattern {
  const flags = /^\(\?([ims]+)\)/.exec(value);
  const given = flags?.[1] ?? '';
  const foldCase = given.includes('i');
  const source = flags === null ? value : value.slice(flags[0].length);
  try {
    const regexp = new RegExp(foldCase ? lowercaseLetters(source) : source, `${given.replace('i', '')}l`);
    return { regexp, foldCase };
  } catch (err) {
    throw new InvalidArgument(`invalid filter '${key}=${value}': not a regular expression (${(err as Error).message})`);
  }
}

/** The pattern's ASCII letters lowercased, but a letter after a backslash, which names an escape. */
function lowercaseLetters(pattern: string): string {
  let out = '';
  for (let i = 0; i < pattern.length; i++) {
    const char = pattern[i] ?? '';
    if (char === '\\') {
      out += pattern.slice(i, i + 2);
      i += 1;
    } else {
      out += char >= 'A' && char <= 'Z' ? char.toLowerCase() : char;
    }
  }
  return out;
}

/** Each request's patterns, compiled once for all the networks or sandboxes it is matched against. */
const compiledPatterns = new WeakMap<Filters, Map<string, FilterPattern>>();

/** Whether the field equals the value or the value's pattern matches it (the equality first, as moby's Match does). */
function matchesPattern(filters: Filters, key: string, value: string, field: string): boolean {
  if (field === value) return true;
  let compiled = compiledPatterns.get(filters);
  if (compiled === undefined) {
    compiled = new Map();
    compiledPatterns.set(filters, compiled);
  }
  const id = `${key}=${value}`;
  let pattern = compiled.get(id);
  if (pattern === undefined) {
    pattern = filterPattern(key, value);
    compiled.set(id, pattern);
  }
  return pattern.regexp.test(pattern.foldCase ? field.toLowerCase() : field);
}

/** Checked up front: Docker skips a pattern that does not compile, which hides the typo as "nothing matches". */
function validatePatterns(filters: Filters): void {
  for (const key of ['name', 'id']) {
    for (const value of filters[key] ?? []) filterPattern(key, value);
  }
}

export function validateListFilters(filters: Filters): void {
  checkKeys(filters, LIST_KEYS);
  validatePatterns(filters);
  for (const value of filters['type'] ?? []) {
    if (value !== 'custom' && value !== 'builtin') {
      throw new InvalidArgument(`invalid filter 'type=${value}': expected custom or builtin`);
    }
  }
  for (const value of filters['dangling'] ?? []) parseBool('dangling', value);
}

/** Whether a value of the key passes the test; a key not given passes. */
function anyValue(filters: Filters, key: string, test: (value: string) => boolean): boolean {
  const values = filters[key];
  return values === undefined || values.length === 0 || values.some(test);
}

/**
 * Docker's list filter: name and id are patterns (see filterPattern), the
 * rest match exactly; `type=builtin` is the predefined networks, `type=custom` the others.
 */
export function matchesListFilters(
  network: NetworkRecord,
  facts: { readonly endpointCount: number; readonly builtin: boolean },
  filters: Filters,
): boolean {
  const { endpointCount, builtin } = facts;
  const any = (key: string, test: (value: string) => boolean): boolean => anyValue(filters, key, test);
  return (
    any('driver', (v) => network.driver === v) &&
    any('id', (v) => matchesPattern(filters, 'id', v, network.id)) &&
    any('name', (v) => matchesPattern(filters, 'name', v, network.name)) &&
    any('scope', (v) => network.scope === v) &&
    any('type', (v) => (v === 'builtin') === builtin) &&
    any('dangling', (v) => parseBool('dangling', v) === (endpointCount === 0)) &&
    (filters['label'] ?? []).every((spec) => matchesLabel(network.labels, spec))
  );
}

/** The states `docker ps -f status=` knows; a sandbox is always running. */
const CONTAINER_STATES = new Set(['created', 'restarting', 'running', 'removing', 'paused', 'exited', 'dead']);

export function validateSandboxFilters(filters: Filters): void {
  checkKeys(filters, SANDBOX_KEYS);
  validatePatterns(filters);
  for (const value of filters['status'] ?? []) {
    if (!CONTAINER_STATES.has(value)) throw new InvalidArgument(`Unrecognised filter value for status: ${value}`);
  }
}

/**
 * Docker's container list filters (`docker ps -f`) for sandboxes: name
 * (with or without Docker's leading /) and id are patterns, network a
 * network's name or id prefix.
 */
export function matchesSandboxFilters(sandbox: SandboxInfo, filters: Filters): boolean {
  const any = (key: string, test: (value: string) => boolean): boolean => anyValue(filters, key, test);
  const networks = Object.entries(sandbox.networks);
  return (
    any('id', (v) => matchesPattern(filters, 'id', v, sandbox.id)) &&
    any('name', (v) => matchesPattern(filters, 'name', v, sandbox.name) || matchesPattern(filters, 'name', v, `/${sandbox.name}`)) &&
    any('network', (v) => networks.some(([id, network]) => network.name === v || id.startsWith(v))) &&
    any('status', (v) => v === 'running') &&
    (filters['label'] ?? []).every((spec) => matchesLabel(sandbox.labels, spec))
  );
}

/** Parses `until` as Docker does: a timestamp, or a duration like 10m, 24h ago. */
export function parseUntil(value: string, now: Date): Date {
  const duration = /^(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)$/.exec(value);
  if (duration) {
    const scale: Record<string, number> = { ns: 1e-6, us: 1e-3, µs: 1e-3, ms: 1, s: 1e3, m: 60e3, h: 3600e3 };
    return new Date(now.getTime() - Number(duration[1]) * (scale[duration[2] ?? 's'] ?? 1e3));
  }
  if (/^\d+(\.\d+)?$/.test(value)) return new Date(Number(value) * 1000);
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) throw new InvalidArgument(`invalid filter 'until=${value}': not a timestamp or duration`);
  return date;
}

export function validatePruneFilters(filters: Filters, now: Date): void {
  checkKeys(filters, PRUNE_KEYS);
  for (const value of filters['until'] ?? []) parseUntil(value, now);
}

export function matchesPruneFilters(network: NetworkRecord, filters: Filters, now: Date): boolean {
  const created = new Date(network.created).getTime();
  return (
    (filters['until'] ?? []).every((v) => created < parseUntil(v, now).getTime()) &&
    (filters['label'] ?? []).every((spec) => matchesLabel(network.labels, spec)) &&
    (filters['label!'] ?? []).every((spec) => !matchesLabel(network.labels, spec))
  );
}
