/** The system tools netctl runs (nsenter, nft, ip), found where Debian puts them. */
import { existsSync } from 'node:fs';
import { Unavailable } from '../errors.js';

/**
 * Absolute path of a system tool, never looked up in PATH: under npm/npx,
 * node_modules/.bin comes first, and ava's dependency @vercel/nft installs an
 * unrelated `nft` there.
 */
export function systemTool(name: string): string {
  const path = ['/usr/sbin', '/usr/bin', '/sbin', '/bin'].map((dir) => `${dir}/${name}`).find((p) => existsSync(p));
  if (path === undefined) throw new Unavailable(`${name} is not installed`);
  return path;
}
