/**
 * Typed access to the native addon (build/Release/netctl_native.node).
 * Each C part of the addon registers its functions on one module object;
 * each part adds its functions to `NativeAddon` here.
 *
 * Failed system calls throw an Error whose `code` is the errno name
 * (`EEXIST`, `ENOENT`…) and whose `errno` is the number.
 */
import { createRequire } from 'node:module';

/** Opaque handle to a TAP device's poller (a napi external). */
export interface NativeTapHandle {
  readonly __nativeTapHandle: unique symbol;
}

/** Opaque handle to a UDP socket and its poller (a napi external). */
export interface NativeUdpHandle {
  readonly __nativeUdpHandle: unique symbol;
}

/** Datagrams as the addon moves them: index i of each array describes datagram i. */
export interface NativeDatagrams {
  data: Uint8Array[];
  /** Source (received) or destination (sent) address. */
  addresses: string[];
  ports: number[];
}

export interface NativeAddon {
  /** Moves the calling thread into the network namespace at `path`; returns an fd of the one it left. */
  netnsEnter(path: string): number;
  /** Returns the calling thread to the namespace saved by `netnsEnter` and closes that fd. */
  netnsRestore(savedFd: number): void;
  /** Makes `runDir` a shared mount point, then pins a new network namespace on `path` (created, must not exist). */
  netnsCreate(runDir: string, path: string): void;
  /** Detaches the mount on `path`; false when nothing was mounted there. */
  netnsUnmount(path: string): boolean;
  /** True when `path` is an nsfs file of a network namespace. */
  netnsIsNet(path: string): boolean;
  /** socket(2) with SOCK_CLOEXEC in the calling thread's network namespace. */
  socket(domain: number, type: number, protocol: number): number;

  /** Opens /dev/net/tun (non-blocking) and attaches it to TAP `name`; `offloads` < 0 leaves offloads alone. */
  tapOpen(name: string, vnetHdr: boolean, offloads: number): { fd: number; name: string };
  /** Wraps a TAP fd for polling; the handle owns the fd from then on. */
  tapHandle(fd: number): NativeTapHandle;
  tapStart(handle: NativeTapHandle, onBatch: (frames: Buffer[]) => void): void;
  tapStop(handle: NativeTapHandle): void;
  tapWriteBatch(handle: NativeTapHandle, frames: readonly Uint8Array[]): number;
  tapClose(handle: NativeTapHandle): void;

  /**
   * Binds a non-blocking UDP socket made in the namespace at `netnsPath` ('' = the caller's);
   * `port` 0 picks one. Buffer sizes pass the sysctl limits when the process may (SO_*BUFFORCE).
   */
  udpOpen(
    netnsPath: string,
    family: 4 | 6,
    address: string,
    port: number,
    opts: { reuseAddr?: boolean; gro?: boolean; recvBufferSize?: number; sendBufferSize?: number },
  ): { handle: NativeUdpHandle; port: number };
  /**
   * Delivers everything one wake-up reads (up to 4 recvmmsg of 64) in one call. The `data`
   * of one recvmmsg are views on one ArrayBuffer holding their payloads back to back.
   */
  udpStart(handle: NativeUdpHandle, onBatch: (batch: NativeDatagrams) => void): void;
  udpStop(handle: NativeUdpHandle): void;
  /** sendmmsg per 64; returns how many were sent. Stops at a full queue; skips datagrams whose destination fails. */
  udpSendBatch(handle: NativeUdpHandle, datagrams: NativeDatagrams): number;
  udpClose(handle: NativeUdpHandle): void;
  /** A listening TCP socket (SO_REUSEADDR, non-blocking, close-on-exec) made in the namespace; returns its fd. */
  tcpListen(netnsPath: string, family: 4 | 6, address: string, port: number, backlog: number): number;

  /** flock(2); returns false when `nonBlocking` is set and the lock is held elsewhere. */
  flock(fd: number, exclusive: boolean, nonBlocking: boolean): boolean;
  funlock(fd: number): void;
}

/** Error thrown by the addon for a failed system call. */
export interface NativeErrnoError extends Error {
  code: string;
  errno: number;
}

export function isNativeErrnoError(err: unknown): err is NativeErrnoError {
  return err instanceof Error && typeof (err as Partial<NativeErrnoError>).errno === 'number';
}

const require = createRequire(import.meta.url);

export const addon = require('../../build/Release/netctl_native.node') as NativeAddon;
