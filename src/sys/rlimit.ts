/**
 * The process's open-file limit. Every descriptor the daemon holds (API
 * connections, store files, a UDP and a TCP listener per sandbox, DNS
 * connections, upstream forwards) counts against it, so the daemon raises it
 * at start and sizes its caps by it.
 */
import { type NativeFileLimit, addon } from './addon.js';

export type FileLimit = Readonly<NativeFileLimit>;

/** The soft and hard RLIMIT_NOFILE now in force. */
export function openFileLimit(): FileLimit {
  return addon().fileLimit();
}

/** Raises the soft RLIMIT_NOFILE to the hard one; returns the limits now in force. Throws the errno error. */
export function raiseOpenFileLimit(): FileLimit {
  return addon().raiseFileLimit();
}
