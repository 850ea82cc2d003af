/**
 * The host's own files that netctl reads or makes outside a sandbox: the
 * host's resolver configuration and the daemon's state directory. (Sandbox
 * files under /etc/netns are another module's.)
 */
import { mkdir, readFile } from 'node:fs/promises';

const HOST_RESOLV_CONF = '/etc/resolv.conf';

/** The text of the host's resolv.conf; rejects when it cannot be read. */
export function readHostResolvConf(): Promise<string> {
  return readFile(HOST_RESOLV_CONF, 'utf8');
}

/** Makes the state directory and its parents; private to its owner, as it holds the daemon's lock and records. */
export async function makeStateDirectory(path: string): Promise<void> {
  await mkdir(path, { recursive: true, mode: 0o700 });
}
