/**
 * The resolv.conf files netctl writes for its sandboxes. netctl touches only
 * files it wrote itself: each starts with a marker line naming the sandbox
 * and the daemon (its state directory, since several daemons may share one
 * machine's /etc/netns). A file without netctl's marker is the user's and
 * is never overwritten or removed. A directory netctl has to make for a
 * file is noted in a journal under the state directory before it is made,
 * so it is removed with the file even when a crash came in between. No
 * moment of a write leaves a file without the marker, or a crash would turn
 * netctl's file into one it must not touch: a new file is written under a
 * temporary name and linked into place, and a rewrite keeps the marker line
 * where it is. A sweep at start removes what a crash left behind: files,
 * temporary files and directories of this daemon whose sandbox no longer
 * exists.
 */
import { createHash } from 'node:crypto';
import { link, mkdir, open, readFile, readdir, rmdir, stat, unlink, writeFile } from 'node:fs/promises';
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
  const text = markerLine(target) + content;
  if (existing !== 'missing') {
    await rewriteInPlace(target.path, text);
    return true;
  }
  const directory = dirname(target.path);
  if (!(await exists(directory))) {
    await mkdir(target.journalDir, { recursive: true, mode: 0o700 });
    await writeFile(join(target.journalDir, target.sandboxId), directory);
    await mkdir(directory, { recursive: true });
  }
  const temporary = join(directory, `${temporaryPrefix(target.owner)}${target.sandboxId}`);
  await writeFile(temporary, text);
  try {
    // link, unlike rename, never replaces a file the user put there in the meantime.
    await link(temporary, target.path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    return writeResolvConf(target, content);
  } finally {
    await unlink(temporary).catch(ignoreMissing);
  }
  return true;
}

/**
 * Rewrites the file over its old bytes and then cuts it to length: the
 * inode stays (`ip netns exec` bind-mounts it, so running processes see the
 * change) and the marker line at its start is never absent, as it would be
 * after a truncate.
 */
async function rewriteInPlace(path: string, text: string): Promise<void> {
  const file = await open(path, 'r+');
  try {
    const bytes = Buffer.from(text);
    await file.write(bytes, 0, bytes.length, 0);
    await file.truncate(bytes.length);
  } finally {
    await file.close();
  }
}

/** The name of a new file before it is linked into place: one prefix per daemon, so a sweep removes only its own. */
function temporaryPrefix(owner: string): string {
  return `.resolv.conf.netctl-${createHash('sha256').update(owner).digest('hex').slice(0, 16)}-`;
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
 * `ownDirectory` (the state directory's resolv folder), its temporary files
 * and the directories made for them. Returns the files removed.
 */
export async function sweepResolvConfs(
  owner: string,
  keep: ReadonlySet<string>,
  ownDirectory: string,
  journalDir: string,
  etcNetnsDir = NETNS_ETC_DIR,
): Promise<string[]> {
  const candidates: string[] = [];
  const removed: string[] = [];
  const temporary = temporaryPrefix(owner);
  // A crash between writing a new file and linking it into place leaves its temporary name, marked or not yet.
  const removeTemporaries = async (directory: string, names: string[]): Promise<void> => {
    for (const name of names.filter((n) => n.startsWith(temporary))) {
      await unlink(join(directory, name)).catch(ignoreMissing);
      removed.push(join(directory, name));
    }
  };
  for (const name of await readdir(etcNetnsDir).catch(() => [] as string[])) {
    candidates.push(join(etcNetnsDir, name, 'resolv.conf'));
    await removeTemporaries(join(etcNetnsDir, name), await readdir(join(etcNetnsDir, name)).catch(() => [] as string[]));
  }
  const own = await readdir(ownDirectory).catch(() => [] as string[]);
  await removeTemporaries(ownDirectory, own);
  for (const name of own.filter((n) => !n.startsWith(temporary))) candidates.push(join(ownDirectory, name));
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
