/**
 * What the drivers ask of the kernel, as one injected port (as the VTEP
 * takes its TAP and UDP parts): `systemKernel` is the real one over sys/,
 * and tests hand a driver a double that records what it was asked to do.
 *
 * The drivers/ folder: bridge/, overlay/ and null/ implement the driver
 * contract (cnm/driver.ts); veth.ts, configs.ts (options parsed once per
 * network) and teardown.ts are what they share, and this port is all they
 * ask of the kernel.
 */
import type { FramePort } from '../vxlan/io.js';
import { applyNft, deleteNftTable } from '../sys/nft.js';
import { createNamedNetns, netnsExists, removeNamedNetns } from '../sys/netns.js';
import { Rtnl } from '../sys/rtnl.js';
import { setSysctl } from '../sys/sysctl.js';
import { openTap } from '../sys/tap.js';
import type { TapOptions } from '../sys/tap.js';

/** rtnetlink in one namespace: the part of `Rtnl` the drivers use. Closed by whoever opened it. */
export type Links = Pick<
  Rtnl,
  | 'close'
  | 'getLink'
  | 'createBridge'
  | 'createVeth'
  | 'deleteLink'
  | 'setUp'
  | 'setMtu'
  | 'setMaster'
  | 'rename'
  | 'setMac'
  | 'setBridgePortIsolated'
  | 'addAddress'
  | 'listAddresses'
  | 'addRoute'
  | 'deleteRoute'
  | 'listRoutes'
>;

export interface DriverKernel {
  /** Opens rtnetlink in the namespace at `netnsPath`. */
  openLinks(netnsPath: string): Promise<Links>;
  /** Creates TAP `name` (in `options.netnsPath`); it lives as long as the returned port stays open. */
  openTap(name: string, options: TapOptions): FramePort;
  setSysctl(netnsPath: string, key: string, value: string): Promise<void>;
  /** Applies an nft script atomically. */
  applyNft(netnsPath: string, script: string): Promise<void>;
  /** Deletes an `inet` table; a missing one is not an error. */
  deleteNftTable(netnsPath: string, table: string): Promise<void>;
  /** Creates /var/run/netns/NAME; resolves to its path. */
  createNamedNetns(name: string): Promise<string>;
  /** A missing namespace is not an error. */
  removeNamedNetns(name: string): Promise<void>;
  netnsExists(path: string): Promise<boolean>;
}

export const systemKernel: DriverKernel = {
  openLinks: (netnsPath) => Rtnl.open(netnsPath),
  openTap,
  setSysctl,
  applyNft,
  deleteNftTable: (netnsPath, table) => deleteNftTable(netnsPath, 'inet', table),
  createNamedNetns,
  removeNamedNetns,
  netnsExists,
};

/** Runs `use` with rtnetlink in the namespace at `netnsPath`, closing it after. */
export async function withLinks<T>(kernel: DriverKernel, netnsPath: string, use: (links: Links) => Promise<T>): Promise<T> {
  const links = await kernel.openLinks(netnsPath);
  try {
    return await use(links);
  } finally {
    links.close();
  }
}
