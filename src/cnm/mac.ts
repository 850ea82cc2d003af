/** MAC addresses of endpoints. */
import { randomBytes } from 'node:crypto';

/**
 * libnetwork's scheme: 02:42 followed by the IPv4 address, unique because the
 * address is. Without one, a random locally administered MAC that avoids the
 * 02:42 range (so it never equals a derived one) and the MACs already in use.
 */
export function macFor(ipv4Cidr: string | undefined, inUse: ReadonlySet<string>): string {
  const text = (bytes: Uint8Array) => [...bytes].map((b) => b.toString(16).padStart(2, '0')).join(':');
  if (ipv4Cidr !== undefined) return text(Uint8Array.from([0x02, 0x42, ...ipv4Cidr.split('/')[0]!.split('.').map(Number)]));
  for (;;) {
    const bytes = Buffer.concat([Buffer.from([0x02]), randomBytes(5)]);
    if (bytes[1] === 0x42) continue;
    const mac = text(bytes);
    if (!inUse.has(mac)) return mac;
  }
}
