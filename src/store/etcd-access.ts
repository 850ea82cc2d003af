/**
 * Access to a secured etcd cluster: the TLS files and credentials a caller
 * gives, checked against the URL and read into etcd3's options, and the
 * errors that say which of them the cluster refused.
 */
import { readFile } from 'node:fs/promises';
import { rootCertificates } from 'node:tls';
import type { IOptions } from 'etcd3';
import { InvalidArgument, type NetctlError, Unavailable } from '../errors.js';
import { accessProblem, reason } from './etcd-calls.js';

/** TLS files and credentials for a secured cluster, as etcdctl's --cacert, --cert, --key and --user. */
export interface EtcdAccess {
  /** PEM file of the CA that signed the members' certificates; default: the CAs Node trusts. TLS URLs only. */
  readonly caFile?: string;
  /** PEM files of this client's certificate and its key, for members started with --client-cert-auth. TLS URLs only. */
  readonly certFile?: string;
  readonly keyFile?: string;
  /** User and password for a cluster with authentication enabled; both or neither. */
  readonly user?: string;
  readonly password?: string;
}

/** etcd3's TLS settings from the access options, after checking they fit the URL and reading the files. */
export async function securityOptions(url: string, hosts: readonly string[], access: EtcdAccess): Promise<Pick<IOptions, 'credentials'>> {
  const tls = hosts.every((host) => host.startsWith('https:'));
  const tlsFiles = (
    [
      ['caFile', 'CA file'],
      ['certFile', 'client certificate'],
      ['keyFile', 'client key'],
    ] as const
  ).filter(([name]) => access[name] !== undefined);
  if (!tls && tlsFiles.length > 0) {
    throw new InvalidArgument(`etcd ${tlsFiles.map(([, what]) => what).join(', ')} given, but ${url} is not a TLS URL (use etcds:// or https://)`);
  }
  if ((access.certFile === undefined) !== (access.keyFile === undefined)) {
    throw new InvalidArgument('an etcd client certificate needs its key, and a key its certificate: give both or neither');
  }
  if ((access.user === undefined) !== (access.password === undefined)) {
    throw new InvalidArgument('etcd authentication needs both a user and a password');
  }
  if (access.user === '') throw new InvalidArgument('etcd user must not be empty');
  if (!tls || tlsFiles.length === 0) return {};
  return {
    credentials: {
      // Without a CA file, the CAs Node trusts, as etcd3 does for a TLS URL with no credentials.
      rootCertificate: access.caFile === undefined ? Buffer.from(rootCertificates.join('\n')) : await readPem('CA file', access.caFile),
      ...(access.certFile !== undefined ? { certChain: await readPem('client certificate file', access.certFile) } : {}),
      ...(access.keyFile !== undefined ? { privateKey: await readPem('client key file', access.keyFile) } : {}),
    },
  };
}

async function readPem(what: string, path: string): Promise<Buffer> {
  let pem: Buffer;
  try {
    pem = await readFile(path);
  } catch (err) {
    throw new InvalidArgument(`cannot read etcd ${what} ${path}: ${reason(err)}`, { cause: err });
  }
  // gRPC would take anything here and fail later with a misleading handshake error.
  if (!pem.includes('-----BEGIN ')) throw new InvalidArgument(`etcd ${what} ${path} is not in PEM format`);
  return pem;
}

/** An error that names what is wrong with our TLS settings or credentials, when that is what `err` is about. */
export function accessError(err: unknown, store: { readonly url: string; readonly prefix: string; readonly access: EtcdAccess }): NetctlError | undefined {
  const problem = accessProblem(err);
  if (problem === undefined) return undefined;
  const { caFile, certFile, user } = store.access;
  const detail = reason(problem.error);
  switch (problem.kind) {
    case 'untrusted-server':
      return new Unavailable(
        `TLS with etcd at ${store.url} failed: its certificate is not signed by ${caFile === undefined ? 'a CA this system trusts' : `the CA in ${caFile}`} (${detail})`,
        { cause: err },
      );
    case 'client-refused':
      return new Unavailable(
        `TLS with etcd at ${store.url} failed: the member refused ${certFile === undefined ? 'a client without a certificate' : `the client certificate ${certFile}`} (${detail})`,
        { cause: err },
      );
    case 'tls':
      return new Unavailable(`TLS with etcd at ${store.url} failed: ${detail}`, { cause: err });
    case 'bad-credentials':
      return new InvalidArgument(`etcd at ${store.url} refused the user name or password for ${JSON.stringify(user ?? '')} (${detail})`, { cause: err });
    case 'no-credentials':
      return new InvalidArgument(`etcd at ${store.url} has authentication enabled: give a user and password (${detail})`, { cause: err });
    case 'permission':
      return new InvalidArgument(`etcd at ${store.url} denied user ${JSON.stringify(user ?? '')} access under ${JSON.stringify(store.prefix)} (${detail})`, { cause: err });
  }
}
