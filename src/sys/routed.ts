/**
 * The subnets a namespace already reaches: what automatic address pools must
 * not take, as Docker's IPAM leaves alone the subnets its host routes
 * (docker0's 172.17.0.0/16, a VPN's, the LAN's).
 */
import { Rtnl } from './rtnl.js';

/**
 * The destinations of the main table's routes, IPv4 and IPv6, and the
 * prefixes of the addresses on the namespace's links (an address may come
 * without a route: a /32, or a link that is down), in CIDR form with host
 * bits as the kernel has them. Default routes are left out: they overlap
 * everything and say nothing about which subnets are in use.
 */
export async function routedSubnets(netnsPath?: string): Promise<string[]> {
  const rtnl = await Rtnl.open(netnsPath);
  try {
    const routes = await rtnl.listRoutes();
    const addresses = await rtnl.listAddresses();
    return [...routes.filter((route) => route.dst !== 'default').map((route) => route.dst), ...addresses.map((address) => address.cidr)];
  } finally {
    rtnl.close();
  }
}
