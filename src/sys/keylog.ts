/**
 * The file `--esp-keylog` names: lines appended as they come, readable by
 * root only, as it holds the keys of encrypted networks.
 */
import { appendFileSync } from 'node:fs';
import { InvalidArgument } from '../errors.js';

/**
 * Checks the file can be written (creating it, 0600); returns the function
 * that appends one line. Synchronous, and the file opened per line: an SA is
 * made rarely, its line must be in the file before the first datagram it
 * seals, and no descriptor is left for the host's close to forget.
 */
export function openKeylog(path: string): (line: string) => void {
  try {
    appendFileSync(path, '', { mode: 0o600 });
  } catch (err) {
    throw new InvalidArgument(`cannot write --esp-keylog ${path}: ${(err as Error).message}`);
  }
  return (line) => appendFileSync(path, `${line}\n`, { mode: 0o600 });
}
