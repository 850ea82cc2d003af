/**
 * The cluster store's URL: `etcd://host:port[,host:port…]` or
 * `http://…`, `etcds://…` or `https://…` for TLS, the port 2379 unless given.
 */
import { lookup } from 'node:dns/promises';
import { InvalidArgument, Unavailable } from '../errors.js';
import { reason } from './etcd-calls.js';

const DEFAULT_CLIENT_PORT = 2379;

interface EtcdMember {
  /** A host name or IP address, IPv6 in brackets as in the URL. */
  readonly host: string;
  readonly port: number;
}

function parseMembers(url: string): { tls: boolean; members: EtcdMember[] } {
  const match = /^(etcds?|https?):\/\/([^/?#@]+)\/?$/.exec(url);
  if (match === null || match[1] === undefined || match[2] === undefined) {
    throw new InvalidArgument(
      `invalid etcd URL ${JSON.stringify(url)}: expected etcd://host:port[,host:port…], http://host:port, or etcds:// or https:// for TLS`,
    );
  }
  const members = match[2].split(',').map((member) => {
    const parts = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(?::(\d{1,5}))?$/.exec(member);
    const port = parts?.[2] === undefined ? DEFAULT_CLIENT_PORT : Number(parts[2]);
    if (parts === null || parts[1] === undefined || port < 1 || port > 65535) {
      throw new InvalidArgument(`invalid etcd URL ${JSON.stringify(url)}: bad member ${JSON.stringify(member)}`);
    }
    return { host: parts[1], port };
  });
  return { tls: match[1] === 'etcds' || match[1] === 'https', members };
}

/** `etcd://h:p,h:p`, `http://h:p,…`, `etcds://…` or `https://…` → etcd3 hosts (`http://h:p` or `https://h:p`). */
export function parseEtcdUrl(url: string): string[] {
  const { tls, members } = parseMembers(url);
  return members.map(({ host, port }) => `${tls ? 'https' : 'http'}://${host}:${port}`);
}

/**
 * Every address and port the members of `url` are reached at, host names
 * resolved now (all their addresses), so a firewall can name them.
 */
export async function etcdClientEndpoints(url: string): Promise<{ address: string; port: number }[]> {
  const endpoints: { address: string; port: number }[] = [];
  for (const { host, port } of parseMembers(url).members) {
    const name = host.replace(/^\[(.*)\]$/, '$1');
    let addresses: { address: string }[];
    try {
      addresses = await lookup(name, { all: true });
    } catch (err) {
      throw new Unavailable(`cannot resolve etcd member ${JSON.stringify(name)} of ${url}: ${reason(err)}`, { cause: err });
    }
    for (const { address } of addresses) {
      if (!endpoints.some((e) => e.address === address && e.port === port)) endpoints.push({ address, port });
    }
  }
  return endpoints;
}
