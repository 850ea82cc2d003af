/** Frames, hosts and a seeded PRNG for the VTEP tests; everything in memory. */
import { MemoryFramePort } from '../../src/vxlan/memory.js';
import type { MemoryDatagramPort, MemoryNetwork } from '../../src/vxlan/memory.js';
import { Vtep } from '../../src/vxlan/vtep.js';
import type { VtepOptions } from '../../src/vxlan/vtep.js';
import { ManualTimers } from './clock.js';
import { VNET_HDR_LEN } from '../../src/vxlan/offload.js';
import {
  ACK,
  ARP_FRAME_LEN,
  ARP_REQUEST,
  BROADCAST_MAC,
  ETHERNET_HEADER_LEN,
  ETHERTYPE_ARP,
  ETHERTYPE_IPV4,
  ETHERTYPE_IPV6,
  IPPROTO_TCP,
  IPV6_HEADER_LEN,
  PSH,
  VXLAN_HEADER_LEN,
  encodeArp,
  encodeEthernet,
  encodeIPv4,
  encodeIPv6,
  encodeTcp,
  foldChecksum,
  parseIPv4,
  parseIPv6,
  parseMac,
  pseudoHeaderSumIPv4,
  pseudoHeaderSumIPv6,
  writeVxlanHeader,
} from '../../src/wire/index.js';

export const VNI = 4096;
export const HOST_A = '198.18.0.1';
export const HOST_B = '198.18.0.2';
export const HOST_C = '198.18.0.3';
export const HOST_D = '198.18.0.4';
export const EXTERNAL = '198.18.0.9';

/** Endpoint n: MAC 02:42:0a:00:00:nn, IPv4 10.0.0.n. */
export function mac(n: number): number {
  return parseMac(`02:42:0a:00:00:${n.toString(16).padStart(2, '0')}`);
}

export function macText(n: number): string {
  return `02:42:0a:00:00:${n.toString(16).padStart(2, '0')}`;
}

export function ip(n: number): string {
  return `10.0.0.${n}`;
}

/** An IPv4-typed frame with `payloadLength` bytes counting up from `seed`, so frames differ. */
export function frame(dst: number, src: number, payloadLength = 46, seed = 0): Buffer {
  const buf = Buffer.alloc(ETHERNET_HEADER_LEN + payloadLength);
  encodeEthernet({ dst, src, etherType: ETHERTYPE_IPV4 }, buf, 0);
  for (let i = 0; i < payloadLength; i++) buf[ETHERNET_HEADER_LEN + i] = (seed + i) & 0xff;
  return buf;
}

/** A broadcast ARP request from endpoint (srcMac, srcIp) for targetIp. */
export function arpRequest(srcMac: number, srcIp: string, targetIp: string): Buffer {
  const buf = Buffer.alloc(ARP_FRAME_LEN);
  encodeEthernet({ dst: BROADCAST_MAC, src: srcMac, etherType: ETHERTYPE_ARP }, buf, 0);
  encodeArp(
    { operation: ARP_REQUEST, senderMac: srcMac, senderIp: parseIPv4(srcIp), targetMac: 0, targetIp: parseIPv4(targetIp) },
    buf,
    ETHERNET_HEADER_LEN,
  );
  return buf;
}

/** A VXLAN datagram payload: header for `vni` then `inner`. */
export function vxlan(vni: number, inner: Uint8Array): Buffer {
  const buf = Buffer.alloc(VXLAN_HEADER_LEN + inner.length);
  writeVxlanHeader(vni, buf, 0);
  buf.set(inner, VXLAN_HEADER_LEN);
  return buf;
}

export interface Host {
  address: string;
  vtep: Vtep;
  underlay: MemoryDatagramPort;
  /** Frame ports by VNI. */
  ports: Map<number, MemoryFramePort>;
  port(vni?: number): MemoryFramePort;
}

/** A started VTEP at `address` on `network`, serving each of `vnis` on a fresh MemoryFramePort. */
export function host(
  network: MemoryNetwork,
  address: string,
  vnis: number[] = [VNI],
  opts: Partial<Omit<VtepOptions, 'underlay' | 'localAddress'>> = {},
): Host {
  const underlay = network.open(address, 4789);
  // Probes run on a clock nobody advances unless the test passes its own: packet counts see only the test's traffic.
  const vtep = new Vtep({ underlay, localAddress: address, probe: { timers: new ManualTimers() }, ...opts });
  vtep.start();
  const ports = new Map<number, MemoryFramePort>();
  for (const vni of vnis) {
    const port = new MemoryFramePort();
    vtep.addNetwork(vni, port);
    ports.set(vni, port);
  }
  return {
    address,
    vtep,
    underlay,
    ports,
    port: (vni = VNI) => {
      const port = ports.get(vni);
      if (port === undefined) throw new Error(`host ${address} has no port for VNI ${vni}`);
      return port;
    },
  };
}

/** Tells every host about every endpoint: endpoint n lives at hosts[at]. */
export function publish(hosts: Host[], endpoints: Array<{ n: number; at: Host; vni?: number; ipv6?: string }>): void {
  for (const h of hosts) {
    for (const { n, at, vni = VNI, ipv6 } of endpoints) {
      h.vtep.setPeer(vni, { mac: mac(n), ipv4: ip(n), vtep: at.address, ...(ipv6 !== undefined && { ipv6 }) });
    }
  }
}

/** Hosts A and B on `network`, endpoint 1 at A and 2 at B, both hosts told of both. */
export function twoHosts(network: MemoryNetwork): [Host, Host] {
  const hosts: [Host, Host] = [host(network, HOST_A), host(network, HOST_B)];
  publish(hosts, hosts.map((at, i) => ({ n: i + 1, at })));
  return hosts;
}

/** Hosts A, B and C on `network`, endpoint n at the n-th of them, every host told of every endpoint. */
export function threeHosts(network: MemoryNetwork): [Host, Host, Host] {
  const hosts: [Host, Host, Host] = [host(network, HOST_A), host(network, HOST_B), host(network, HOST_C)];
  publish(hosts, hosts.map((at, i) => ({ n: i + 1, at })));
  return hosts;
}

/** The sum of every drop counter. */
export function drops(vtep: Vtep): number {
  return Object.entries(vtep.stats)
    .filter(([name]) => name.startsWith('drop'))
    .reduce((sum, [, value]) => sum + value, 0);
}

/** mulberry32: a small seeded PRNG, so the fuzz inputs are the same on every run. */
export function prng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export const GSO_TCPV4 = 1;
export const GSO_TCPV6 = 4;
/** The MSS of TCP/IPv4 with timestamps over the overlay's 1450-byte MTU. */
export const MSS = 1398;
const SRC4 = parseIPv4('10.0.0.1');
const DST4 = parseIPv4('10.0.0.2');
const SRC6 = parseIPv6('fd00::1');
const DST6 = parseIPv6('fd00::2');
/** Timestamps, as Linux sends them: a 32-byte TCP header. */
const OPTIONS = Uint8Array.from([1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]);
export const TCP_HEADER_LEN = 32;

export interface SuperFrame {
  v6?: boolean;
  payload: number;
  gsoSize?: number;
  flags?: number;
  seq?: number;
}

export function payloadBytes(length: number): Uint8Array {
  const bytes = new Uint8Array(length);
  for (let i = 0; i < length; i++) bytes[i] = (i * 7 + (i >> 8)) & 0xff;
  return bytes;
}

/**
 * A TCP super-frame as a TAP with TSO hands it over: virtio header (GSO,
 * NEEDS_CSUM), one set of headers, the TCP checksum field holding the
 * pseudo-header sum, then up to 64 KB of payload.
 */
export function superFrame(opts: SuperFrame): Buffer {
  const v6 = opts.v6 ?? false;
  const ipLen = v6 ? IPV6_HEADER_LEN : 20;
  const tcpOff = ETHERNET_HEADER_LEN + ipLen;
  const l4 = TCP_HEADER_LEN + opts.payload;
  const buf = Buffer.alloc(VNET_HDR_LEN + tcpOff + l4);
  buf[0] = 1; // VIRTIO_NET_HDR_F_NEEDS_CSUM
  buf[1] = v6 ? GSO_TCPV6 : GSO_TCPV4;
  buf.writeUInt16LE(tcpOff + TCP_HEADER_LEN, 2);
  buf.writeUInt16LE(opts.gsoSize ?? MSS, 4);
  buf.writeUInt16LE(tcpOff, 6);
  buf.writeUInt16LE(16, 8);
  const f = VNET_HDR_LEN;
  encodeEthernet({ dst: mac(2), src: mac(1), etherType: v6 ? ETHERTYPE_IPV6 : ETHERTYPE_IPV4 }, buf, f);
  if (v6) {
    encodeIPv6({ trafficClass: 0, flowLabel: 0x12345, payloadLength: l4, nextHeader: IPPROTO_TCP, hopLimit: 64, src: SRC6, dst: DST6 }, buf, f + ETHERNET_HEADER_LEN);
  } else {
    encodeIPv4(
      { dscp: 0, ecn: 0, totalLength: 20 + l4, identification: 0xfff0, dontFragment: true, moreFragments: false, fragmentOffset: 0, ttl: 64, protocol: IPPROTO_TCP, src: SRC4, dst: DST4, headerLength: 20 },
      buf,
      f + ETHERNET_HEADER_LEN,
    );
  }
  const pseudo = v6 ? pseudoHeaderSumIPv6(SRC6, 0, DST6, 0, IPPROTO_TCP, l4) : pseudoHeaderSumIPv4(SRC4, DST4, IPPROTO_TCP, l4);
  encodeTcp(
    { srcPort: 40000, dstPort: 5201, seq: opts.seq ?? 0xfffff000, ack: 77, dataOffset: TCP_HEADER_LEN / 4, flags: opts.flags ?? ACK | PSH, window: 502, checksum: ~foldChecksum(pseudo) & 0xffff, urgentPointer: 0, options: OPTIONS },
    buf,
    f + tcpOff,
  );
  buf.set(payloadBytes(opts.payload), f + tcpOff + TCP_HEADER_LEN);
  return buf;
}

