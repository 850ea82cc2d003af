/**
 * How EtcdStore treats one call to etcd: which failures are worth a retry,
 * which come from our own TLS settings or credentials (and so never heal),
 * how long to keep trying, and how to put a gRPC error in words.
 */
import { isBrokenCircuitError } from 'cockatiel';
import {
  EtcdAuthenticationFailedError,
  EtcdPermissionDeniedError,
  GRPCInvalidArgumentError,
  GRPCUnavailableError,
  isRecoverableError,
} from 'etcd3';
import { StoreClosed } from './types.js';

/** `always` for reads, which may be repeated; `unsent` for writes, repeated only when they provably never left this process. */
export type RetryPolicy = 'always' | 'unsent';

/** One etcd call with an absolute gRPC deadline, retried by `policy` and failing with a NetctlError. */
export type EtcdCall = <T>(policy: RetryPolicy, attempt: (deadline: number) => Promise<T>) => Promise<T>;

const RETRY_FIRST_DELAY_MS = 50;
const RETRY_MAX_DELAY_MS = 1000;

/**
 * Calls `attempt` with an absolute gRPC deadline until it succeeds, the
 * time is up or the error is not worth retrying: reads retry every
 * transient error, writes only those raised before the request was sent.
 * Rejects with StoreClosed when the store is closed before an attempt.
 */
export async function retrying<T>(
  timeoutMs: number,
  policy: RetryPolicy,
  attempt: (deadline: number) => Promise<T>,
  isClosed: () => boolean,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let delay = RETRY_FIRST_DELAY_MS;
  for (;;) {
    if (isClosed()) throw new StoreClosed();
    try {
      return await attempt(deadline);
    } catch (err) {
      // A TLS or credential problem does not heal by itself: report it now rather than at the deadline.
      const retryable = accessProblem(err) === undefined && (policy === 'always' ? isTransient(err) : neverSent(err));
      if (isClosed() || !retryable || Date.now() + delay >= deadline) throw err;
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay = Math.min(delay * 2, RETRY_MAX_DELAY_MS);
    }
  }
}

type AccessProblem = 'untrusted-server' | 'client-refused' | 'tls' | 'bad-credentials' | 'no-credentials' | 'permission';

/** Classifies errors caused by our TLS settings or credentials, which no retry can fix. */
export function accessProblem(err: unknown): { kind: AccessProblem; error: unknown } | undefined {
  if (err instanceof EtcdAuthenticationFailedError) return { kind: 'bad-credentials', error: err };
  if (err instanceof EtcdPermissionDeniedError) return { kind: 'permission', error: err };
  if (!(err instanceof Error)) return undefined;
  if (err instanceof GRPCInvalidArgumentError && err.message.includes('user name is empty')) return { kind: 'no-credentials', error: err };
  // grpc-js reports a failed handshake as UNAVAILABLE with the TLS error as the connection's last error.
  const handshake = /Last error: (.*)/s.exec(err.message)?.[1];
  if (!(err instanceof GRPCUnavailableError) || handshake === undefined || !/certificate|SSL|TLS|alert/i.test(handshake)) return undefined;
  // OpenSSL's own lines look like `802C…:error:0A000412:SSL routines:ssl3_read_bytes:sslv3 alert bad certificate:…`; keep the words.
  const cause = new Error(
    handshake
      .replace(/^Error: /, '')
      .replace(/^\w+:error:\w+:SSL routines:[^:]*:([^:]*):.*$/s, '$1')
      .replace(/\s*\(\d{4}-[^)]*\)/, ''),
  );
  if (/unable to verify|self[- ]signed|unknown ca|issuer/i.test(handshake)) return { kind: 'untrusted-server', error: cause };
  if (/bad certificate|certificate required|alert number (42|116)\b/i.test(handshake)) return { kind: 'client-refused', error: cause };
  return { kind: 'tls', error: cause };
}

export function isTransient(err: unknown): boolean {
  return err instanceof Error && (isRecoverableError(err) || isBrokenCircuitError(err));
}

/**
 * True for failures that happened before the request reached any member, so
 * a write is safe to repeat: no connection yet, or a call grpc-js dropped
 * from its queue, before it picked a connection, because the channel was
 * closing (etcd3 closes a channel it found broken and makes a new one).
 */
function neverSent(err: unknown): boolean {
  if (isBrokenCircuitError(err)) return true;
  return (
    err instanceof GRPCUnavailableError &&
    (err.message.includes('No connection established') || err.message.includes('Channel closed before call started'))
  );
}

export function reason(err: unknown): string {
  // grpc-js ends some messages with an empty "Resolution note: ".
  return err instanceof Error ? err.message.replace(/\.? Resolution note: ?$/, '') : String(err);
}

/** Settles like `promise`, or rejects with `onTimeout()` (resolves when that returns undefined) after `ms`. */
export async function withDeadline<T>(promise: Promise<T>, ms: number, onTimeout: () => Error | undefined): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<undefined>((resolve, reject) => {
    timer = setTimeout(() => {
      const err = onTimeout();
      if (err === undefined) resolve(undefined);
      else reject(err);
    }, ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
