/**
 * The host's own files that netctl reads or makes outside a sandbox: the
 * host's resolver configuration, its os-release and the daemon's state
 * directory. (Sandbox files under /etc/netns are another module's.)
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

/**
 * The distribution's name as /etc/os-release gives it in PRETTY_NAME (or
 * /usr/lib/os-release, where os-release(5) says to look next), which Docker
 * reports as OperatingSystem; undefined when neither file says.
 */
export async function readOsPrettyName(): Promise<string | undefined> {
  for (const path of ['/etc/os-release', '/usr/lib/os-release']) {
    const text = await readFile(path, 'utf8').catch(() => undefined);
    if (text === undefined) continue;
    const line = text.split('\n').find((l) => l.startsWith('PRETTY_NAME='));
    // Shell-style: the value may be quoted.
    return line?.slice('PRETTY_NAME='.length).trim().replace(/^(["'])(.*)\1$/, '$2');
  }
  return undefined;
}
