/** Packet codecs: pure functions over Uint8Array views, no I/O. */
export * from './arp.js';
export * from './checksum.js';
export * from './error.js';
export * from './ethernet.js';
export * from './icmpv6.js';
export * from './ipv4.js';
export * from './ipv4addr.js';
export * from './ipv6.js';
export * from './mac.js';
export * from './pmtud.js';
export * from './probe.js';
export * from './tcp.js';
export * from './udp.js';
export * from './vxlan.js';
