/**
 * The resolv.conf files netctl writes for its sandboxes. netctl touches only
 * files it wrote itself: each starts with a marker line naming the sandbox
 * and the daemon (its state directory, since several daemons may share one
 * machine's /etc/netns). A file without netctl's marker is the user's and
 * is never overwritten or removed. A directory netctl has to make for a
 * file is noted in a journal under the state directory before it is made,
 * so it is removed with the file even when a crash came in between. A sweep
 * at start removes what a crash left behind: files and directories of this
 * daemon whose sandbox no longer exists.
 */
import { mkdir, readFile, readdir, rmdir, stat, unlink, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { NETNS_RUN_DIR } from './netns.js';

export const NETNS_ETC_DIR = '/etc/netns';
const MARKER_PATTERN = /^# netctl: embedded DNS of sandbox ([0-9a-f]+) for daemon (".*?")\n/;

interface Marker {
  readonly sandboxId: string;
  readonly owner: string;
}

function markerLine(marker: Marker): string {
  return `# netctl: embedded DNS of sandbox ${marker.sandboxId} for daemon ${JSON.stringify(marker.owner)}\n`;
}

function parseMarker(text: string): Marker | undefined {
  const match = MARKER_PATTERN.exec(text);
  if (match === null) return undefined;
  try {
    return { sandboxId: match[1] ?? '', owner: JSON.parse(match[2] ?? '""') as string };
  } catch {
    return undefined;
  }
}

async function readMarker(path: string): Promise<Marker | undefined | 'missing'> {
  try {
    return parseMarker(await readFile(path, 'utf8'));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 'missing';
    throw err;
  }
}

function isOwn(marker: Marker | undefined | 'missing', target: ResolvConfTarget): boolean {
  return marker !== 'missing' && marker !== undefined && marker.sandboxId === target.sandboxId && marker.owner === target.owner;
}

/**
 * The resolv.conf of a named namespace (/var/run/netns/NAME):
 * /etc/netns/NAME/resolv.conf, which `ip netns exec` mounts over
 * /etc/resolv.conf. Undefined for any other namespace path.
 */
export function namedNetnsResolvConf(netnsPath: string): string | undefined {
  const prefix = `${NETNS_RUN_DIR}/`;
  if (!netnsPath.startsWith(prefix)) return undefined;
  const name = netnsPath.slice(prefix.length);
  return name.includes('/') ? undefined : `${NETNS_ETC_DIR}/${name}/resolv.conf`;
}

/** Where a sandbox's resolv.conf goes and which daemon's it is. */
export interface ResolvConfTarget {
  readonly path: string;
  readonly sandboxId: string;
  /** Identifies the daemon (its state directory). */
  readonly owner: string;
  /** Where the directories netctl makes are noted, one file per sandbox. */
  readonly journalDir: string;
}

/**
 * Writes `content` behind netctl's marker. Returns false, writing nothing,
 * when a file netctl did not write (or another sandbox's) is already there.
 */
export async function writeResolvConf(target: ResolvConfTarget, content: string): Promise<boolean> {
  const existing = await readMarker(target.path);
  if (existing !== 'missing' && !isOwn(existing, target)) return false;
  const directory = dirname(target.path);
  if (!(await exists(directory))) {
    await mkdir(target.journalDir, { recursive: true, mode: 0o700 });
    await writeFile(join(target.journalDir, target.sandboxId), directory);
    await mkdir(directory, { recursive: true });
  }
  await writeFile(target.path, markerLine(target) + content, existing === 'missing' ? { flag: 'wx' } : {});
  return true;
}

/** Removes the file if netctl wrote it for this sandbox, and the directory netctl made for it. */
export async function removeResolvConf(target: ResolvConfTarget): Promise<void> {
  if (isOwn(await readMarker(target.path), target)) await unlink(target.path).catch(ignoreMissing);
  await removeJournaledDirectory(target.journalDir, target.sandboxId);
}

/** True when this daemon's marker for the sandbox is in the file at `path`. */
export async function isOwnResolvConf(target: ResolvConfTarget): Promise<boolean> {
  return isOwn(await readMarker(target.path), target);
}

/**
 * Removes this daemon's files whose sandbox is not in `keep`: in
 * /etc/netns/NAME/resolv.conf (`etcNetnsDir` for tests) and in
 * `ownDirectory` (the state directory's resolv folder), and the directories
 * made for them. Returns the files removed.
 */
export async function sweepResolvConfs(
  owner: string,
  keep: ReadonlySet<string>,
  ownDirectory: string,
  journalDir: string,
  etcNetnsDir = NETNS_ETC_DIR,
): Promise<string[]> {
  const candidates: string[] = [];
  for (const name of await readdir(etcNetnsDir).catch(() => [] as string[])) candidates.push(join(etcNetnsDir, name, 'resolv.conf'));
  for (const name of await readdir(ownDirectory).catch(() => [] as string[])) candidates.push(join(ownDirectory, name));
  const removed: string[] = [];
  for (const path of candidates) {
    const marker = await readMarker(path).catch(() => undefined);
    if (marker === 'missing' || marker === undefined || marker.owner !== owner || keep.has(marker.sandboxId)) continue;
    await unlink(path).catch(ignoreMissing);
    removed.push(path);
  }
  for (const sandboxId of await readdir(journalDir).catch(() => [] as string[])) {
    if (!keep.has(sandboxId)) await removeJournaledDirectory(journalDir, sandboxId);
  }
  return removed;
}

/** Removes the directory made for a sandbox's file, if it is empty (the user may have put something there). */
async function removeJournaledDirectory(journalDir: string, sandboxId: string): Promise<void> {
  const entry = join(journalDir, sandboxId);
  let directory: string;
  try {
    directory = await readFile(entry, 'utf8');
  } catch (err) {
    ignoreMissing(err as NodeJS.ErrnoException);
    return;
  }
  await rmdir(directory).catch(() => undefined);
  await unlink(entry).catch(ignoreMissing);
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (err) {
    ignoreMissing(err as NodeJS.ErrnoException);
    return false;
  }
}

function ignoreMissing(err: NodeJS.ErrnoException): void {
  if (err.code !== 'ENOENT') throw err;
}
