/**
 * Checks of what a request may store: names, labels and options, aliases,
 * and the bounds that keep one client from filling the store.
 */
import { InvalidArgument } from '../errors.js';

const NAME_PATTERN = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;
const ALIAS_LABEL = /^[A-Za-z0-9_-]{1,63}$/;
/**
 * Interface names: the kernel takes up to 15 bytes without '/', ':' or
 * whitespace (dev_valid_name); we keep to the characters names are made of
 * in practice, so a name is safe in any tool's command line.
 */
const IFNAME_PATTERN = /^[A-Za-z0-9_.-]{1,15}$/;

/**
 * Bounds on what a request may store, so one client cannot fill the store
 * (Docker sets none; these are far above what real labels need).
 */
const LIMITS = {
  metadataEntries: 64,
  metadataKeyBytes: 256,
  metadataValueBytes: 4096,
  aliases: 32,
} as const;

/** Network, sandbox and endpoint names: Docker's pattern, at most 200 characters. */
export function validateName(kind: string, name: string): void {
  if (typeof name !== 'string' || name === '') throw new InvalidArgument(`${kind} name must not be empty`);
  if (!NAME_PATTERN.test(name)) {
    throw new InvalidArgument(
      `invalid ${kind} name "${name}": only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed`,
    );
  }
  if (name.length > 200) throw new InvalidArgument(`${kind} name "${name.slice(0, 20)}…" is too long`);
}

/** Labels and options: a bounded number of entries of bounded size. */
export function validateMetadata(what: string, entries: Readonly<Record<string, string>> | undefined): void {
  if (entries === undefined) return;
  if (typeof entries !== 'object' || entries === null) throw new InvalidArgument(`${what} must be a map of strings`);
  const keys = Object.keys(entries);
  if (keys.length > LIMITS.metadataEntries) {
    throw new InvalidArgument(`too many ${what}: ${keys.length} (at most ${LIMITS.metadataEntries})`);
  }
  for (const name of keys) {
    const value = entries[name];
    if (name === '') throw new InvalidArgument(`${what}: a key must not be empty`);
    if (typeof value !== 'string') throw new InvalidArgument(`${what}: the value of ${JSON.stringify(name.slice(0, 40))} must be a string`);
    if (Buffer.byteLength(name) > LIMITS.metadataKeyBytes) {
      throw new InvalidArgument(`${what}: key "${name.slice(0, 20)}…" is longer than ${LIMITS.metadataKeyBytes} bytes`);
    }
    if (Buffer.byteLength(value) > LIMITS.metadataValueBytes) {
      throw new InvalidArgument(`${what}: the value of "${name.slice(0, 40)}" is longer than ${LIMITS.metadataValueBytes} bytes`);
    }
  }
}

/** Aliases are DNS names the embedded DNS answers: dot-separated labels of letters, digits, '-' and '_'. */
export function validateAliases(aliases: readonly string[] | undefined): void {
  if (aliases === undefined) return;
  if (!Array.isArray(aliases)) throw new InvalidArgument('aliases must be a list of names');
  if (aliases.length > LIMITS.aliases) throw new InvalidArgument(`too many aliases: ${aliases.length} (at most ${LIMITS.aliases})`);
  for (const alias of aliases) {
    const valid =
      typeof alias === 'string' && alias.length <= 253 && alias.split('.').every((label) => ALIAS_LABEL.test(label));
    if (!valid) {
      throw new InvalidArgument(
        `invalid alias ${JSON.stringify(String(alias).slice(0, 64))}: a DNS name of labels of letters, digits, '-' and '_' (at most 63 each)`,
      );
    }
  }
}

/** An interface name a caller asks for inside a sandbox. */
export function validateIfName(ifName: string): void {
  if (typeof ifName !== 'string' || !IFNAME_PATTERN.test(ifName) || ifName === '.' || ifName === '..') {
    throw new InvalidArgument(
      `invalid interface name ${JSON.stringify(String(ifName).slice(0, 32))}: 1 to 15 characters of letters, digits, '_', '.' and '-'`,
    );
  }
  // Every namespace has its loopback; a join would try to replace it.
  if (ifName === 'lo') throw new InvalidArgument('invalid interface name "lo": it is the sandbox\'s loopback');
}
