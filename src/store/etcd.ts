import { circuitBreaker, ConsecutiveBreaker, ExponentialBackoff, handleWhen, noop } from 'cockatiel';
import type { IBackoff } from 'cockatiel';
import {
  CompareResult,
  CompareTarget,
  Etcd3,
  EtcdLeaseInvalidError,
  GRPCDeadlineExceededError,
  GRPCInvalidArgumentError,
  isRecoverableError,
  SortOrder,
  SortTarget,
} from 'etcd3';
import type { ICompare, IKeyValue, IRequestOp, Watcher } from 'etcd3';
import { Conflict, InvalidArgument, NetctlError, Unavailable } from '../errors.js';
import { type Logger, silentLogger } from '../log.js';
import { accessError, type EtcdAccess, securityOptions } from './etcd-access.js';
import { isTransient, reason, retrying, type RetryPolicy, withDeadline } from './etcd-calls.js';
import { EtcdCompactor } from './etcd-compactor.js';
import { EphemeralLease } from './etcd-lease.js';
import { PrefixWatch, type WatchContext } from './etcd-watch.js';
import { parseEtcdUrl } from './etcd-url.js';
import { StoreClosed } from './types.js';
import { validateTxn } from './validate.js';
import type { KeyValue, Store, TxnRequest, TxnResult, Watch, WatchEvent, WatchOptions } from './types.js';

export type { EtcdAccess } from './etcd-access.js';
export { etcdClientEndpoints, parseEtcdUrl } from './etcd-url.js';

export interface EtcdStoreOptions extends EtcdAccess {
  /** Every key is stored under this prefix, which results never show; default `/netctl/`. */
  readonly prefix?: string;
  /** TTL of the lease that holds this client's ephemeral keys; default 10 s. */
  readonly leaseTtlSeconds?: number;
  /** How long `open` waits for the cluster to answer; default 5000 ms. */
  readonly dialTimeoutMs?: number;
  /** How long one call (get, list, txn, watch set-up, close) may take in all, retries included; default 5000 ms. */
  readonly callTimeoutMs?: number;
  /** Receives connection, lease and watch news that no caller is waiting for. */
  readonly logger?: Logger;
  /** Compact etcd's history every this many ms, keeping the last interval of it; 0 leaves compaction to etcd's own flags. Default 5 minutes. */
  readonly compactIntervalMs?: number;
}

const DEFAULT_PREFIX = '/netctl/';
const DEFAULT_LEASE_TTL_SECONDS = 10;
const DEFAULT_DIAL_TIMEOUT_MS = 5000;
const DEFAULT_CALL_TIMEOUT_MS = 5000;
const DEFAULT_COMPACT_INTERVAL_MS = 5 * 60_000;
/** Keys per range request, so a large list never meets gRPC's message size limit. */
const LIST_PAGE = 500;

/**
 * The cluster store over etcd v3 (etcd3 client, gRPC):
 * - get, list and txn map one to one onto etcd's range and txn; `modRevision`
 *   is etcd's mod_revision, a compare against 0 holds only for a missing key,
 *   and a txn's `revision` is the response header's revision.
 * - Ephemeral puts attach the key to one lease per store, granted on first
 *   use and kept alive in the background. When that lease is lost (the
 *   cluster was out of reach for longer than its TTL, so etcd dropped our
 *   keys), the store grants a new lease and puts back every ephemeral key it
 *   wrote and has not since deleted or overwritten, so a host that comes
 *   back announces itself again. A key that someone else wrote in between
 *   is left to them.
 * - Watches follow etcd's watch stream and resume after a reconnect from the
 *   last revision they saw, so an etcd restart loses no event. A watch whose
 *   revision was compacted away meanwhile catches up from a fresh list: puts
 *   for what changed, deletes for what went.
 * - The store compacts etcd's history every `compactIntervalMs`, keeping
 *   the last interval of it, so the database stays bounded under churn.
 * - Every call is bounded by `callTimeoutMs`: while etcd is out of reach,
 *   calls reject with `Unavailable` instead of hanging. Reads are retried
 *   within that time; a txn is retried only when it provably never left this
 *   process, because a retried compare-and-swap could apply twice.
 * - `close` revokes the lease, so this client's ephemeral keys disappear at
 *   once; every later call rejects with `StoreClosed`.
 */
export class EtcdStore implements Store {
  readonly #client: Etcd3;
  readonly #url: string;
  readonly #access: EtcdAccess;
  readonly #prefix: string;
  readonly #callTimeoutMs: number;
  readonly #logger: Logger;
  readonly #lease: EphemeralLease;
  #compactor: EtcdCompactor | undefined;
  #closed = false;
  #closing: Promise<void> | undefined;
  readonly #watches = new Set<PrefixWatch>();
  #disconnectedWatches = 0;
  readonly #watchContext: WatchContext;

  private constructor(
    client: Etcd3,
    url: string,
    access: EtcdAccess,
    settings: Required<Pick<EtcdStoreOptions, 'prefix' | 'leaseTtlSeconds' | 'callTimeoutMs'>>,
    logger: Logger | undefined,
  ) {
    this.#client = client;
    this.#url = url;
    this.#access = access;
    this.#prefix = settings.prefix;
    this.#callTimeoutMs = settings.callTimeoutMs;
    this.#logger = logger ?? silentLogger;
    this.#watchContext = {
      client,
      keyPrefix: settings.prefix,
      logger: this.#logger,
      listAt: (prefix, keysOnly) => this.#listAt(prefix, keysOnly),
      cancelWatcher: (watcher) => this.#cancelWatcher(watcher),
      isClosed: () => this.#closed,
      // Every watch loses its stream at once when etcd goes: one line for all, when the first goes and the last is back.
      streamLost: (err) => {
        if (this.#disconnectedWatches++ === 0) this.#logger.warn(`etcd watches lost their stream (${err.message}); reconnecting`);
      },
      streamBack: (reconnected) => {
        if (--this.#disconnectedWatches === 0 && reconnected) this.#logger.info('etcd watches reconnected');
      },
    };
    this.#lease = new EphemeralLease({
      client,
      url,
      ttlSeconds: settings.leaseTtlSeconds,
      callTimeoutMs: settings.callTimeoutMs,
      logger: this.#logger,
      call: (policy, attempt) => this.#call(policy, attempt),
      fullKey: (key) => this.#fullKey(key),
      isClosed: () => this.#closed,
    });
  }

  /**
   * Connects to `url` (`etcd://host:port[,host:port…]` or `http://host:port[,…]`;
   * `etcds://` or `https://` for TLS; the port defaults to 2379) and waits
   * until the cluster answers a read. Rejects with InvalidArgument for a
   * malformed URL or option, an unreadable TLS file or refused credentials,
   * and with Unavailable when TLS fails or no member answers within
   * `dialTimeoutMs`.
   */
  static async open(url: string, options: EtcdStoreOptions = {}): Promise<EtcdStore> {
    const hosts = parseEtcdUrl(url);
    const security = await securityOptions(url, hosts, options);
    const prefix = options.prefix ?? DEFAULT_PREFIX;
    const leaseTtlSeconds = options.leaseTtlSeconds ?? DEFAULT_LEASE_TTL_SECONDS;
    const dialTimeoutMs = options.dialTimeoutMs ?? DEFAULT_DIAL_TIMEOUT_MS;
    const callTimeoutMs = options.callTimeoutMs ?? DEFAULT_CALL_TIMEOUT_MS;
    const compactIntervalMs = options.compactIntervalMs ?? DEFAULT_COMPACT_INTERVAL_MS;
    if (typeof prefix !== 'string') throw new InvalidArgument('etcd store prefix must be a string');
    if (!Number.isSafeInteger(leaseTtlSeconds) || leaseTtlSeconds < 1) {
      throw new InvalidArgument(`etcd lease TTL must be a whole number of seconds ≥ 1, got ${leaseTtlSeconds}`);
    }
    for (const [name, value] of [['dialTimeoutMs', dialTimeoutMs], ['callTimeoutMs', callTimeoutMs]] as const) {
      if (!Number.isFinite(value) || value <= 0) throw new InvalidArgument(`etcd ${name} must be positive, got ${value}`);
    }
    if (!Number.isFinite(compactIntervalMs) || compactIntervalMs < 0) {
      throw new InvalidArgument(`etcd compactIntervalMs must be 0 or positive, got ${compactIntervalMs}`);
    }

    const client = new Etcd3({
      hosts,
      ...security,
      ...(options.user !== undefined && options.password !== undefined
        ? {
            auth: {
              username: options.user,
              password: options.password,
              // etcd3 sets no deadline of its own on the password-for-token exchange.
              callOptions: () => ({ deadline: Date.now() + callTimeoutMs }),
            },
          }
        : {}),
      grpcOptions: {
        // Reconnect soon after a member comes back instead of gRPC's default backoff of up to two minutes.
        'grpc.initial_reconnect_backoff_ms': 100,
        'grpc.max_reconnect_backoff_ms': 1000,
        // Notice a silent partition on long-lived streams (watch, lease keepalive); etcd refuses pings under 5 s.
        'grpc.keepalive_time_ms': 10_000,
        'grpc.keepalive_timeout_ms': 5000,
      },
      faultHandling: {
        // With several members, stop sending to one that keeps failing for a while; with one there is nowhere else to go.
        host: () =>
          hosts.length > 1
            ? circuitBreaker(handleWhen(isRecoverableError), { halfOpenAfter: 2000, breaker: new ConsecutiveBreaker(3) })
            : noop,
        // Retries happen in EtcdStore, which knows which calls are safe to repeat.
        global: noop,
        // etcd3 calls next() on this to start each backoff sequence (its own default is a factory too), though it types it as IBackoff.
        watchBackoff: new ExponentialBackoff({ initialDelay: 100, maxDelay: 2000 }) as unknown as IBackoff<unknown>,
      },
    });
    const access: EtcdAccess = {
      ...(options.caFile !== undefined ? { caFile: options.caFile } : {}),
      ...(options.certFile !== undefined ? { certFile: options.certFile } : {}),
      ...(options.user !== undefined ? { user: options.user } : {}),
    };
    const store = new EtcdStore(client, url, access, { prefix, leaseTtlSeconds, callTimeoutMs }, options.logger);
    // The cheapest read there is: whether the cluster answers, and its revision in the header.
    const probe = (deadline: number) => client.kv.range({ key: Buffer.from(prefix), limit: 1, keys_only: true }, { deadline });
    try {
      await retrying(
        dialTimeoutMs,
        'always',
        probe,
        () => store.#closed,
      );
    } catch (err) {
      client.close();
      throw store.#accessError(err) ?? new Unavailable(`cannot reach etcd at ${url}: ${reason(err)}`, { cause: err });
    }
    if (compactIntervalMs > 0) {
      store.#compactor = new EtcdCompactor({
        client,
        intervalMs: compactIntervalMs,
        callTimeoutMs,
        logger: store.#logger,
        revision: () => store.#call('always', async (deadline) => Number((await probe(deadline)).header.revision)),
      });
    }
    return store;
  }

  /** Runs one compaction step now (tests; the daemon's compactor runs on its own timer). */
  async compactNow(): Promise<void> {
    await this.#compactor?.tick();
  }

  async get(key: string): Promise<KeyValue | undefined> {
    this.#assertOpen();
    const response = await this.#call('always', (deadline) => this.#client.kv.range({ key: this.#fullKey(key) }, { deadline }));
    const found = response.kvs[0];
    return found === undefined ? undefined : this.#keyValue(found);
  }

  async list(prefix: string): Promise<KeyValue[]> {
    this.#assertOpen();
    return (await this.#listAt(prefix, false)).kvs;
  }

  /** Every key under `prefix` as one consistent snapshot, and the revision it was read at. */
  async #listAt(prefix: string, keysOnly: boolean): Promise<{ kvs: KeyValue[]; revision: number }> {
    const start = this.#fullKey(prefix);
    const rangeEnd = prefixEnd(start);
    return this.#call('always', async (deadline) => {
      const kvs: KeyValue[] = [];
      let from = start;
      // Later pages read at the first page's revision, so the list is one consistent snapshot.
      let revision: string | undefined;
      for (;;) {
        const page = await this.#client.kv.range(
          {
            key: from,
            range_end: rangeEnd,
            limit: LIST_PAGE,
            sort_order: SortOrder.Ascend,
            sort_target: SortTarget.Key,
            keys_only: keysOnly,
            ...(revision === undefined ? {} : { revision }),
          },
          { deadline },
        );
        revision ??= page.header.revision;
        for (const kv of page.kvs) kvs.push(this.#keyValue(kv));
        const last = page.kvs.at(-1);
        if (!page.more || last === undefined) return { kvs, revision: Number(revision) };
        from = Buffer.concat([last.key, Buffer.from([0])]);
      }
    });
  }

  async txn(request: TxnRequest): Promise<TxnResult> {
    this.#assertOpen();
    validateTxn(request);
    const puts = request.put ?? [];
    const deletes = request.delete ?? [];
    const compare: ICompare[] = (request.compare ?? []).map((c) => ({
      key: this.#fullKey(c.key),
      // etcd compares every key of a range, and an empty range as one missing key.
      ...(c.prefix === true ? { range_end: prefixEnd(this.#fullKey(c.key)) } : {}),
      target: CompareTarget.Mod,
      result: CompareResult.Equal,
      mod_revision: String(c.modRevision),
    }));
    const needsLease = puts.some((put) => put.ephemeral === true);
    for (let attempt = 1; ; attempt++) {
      const session = needsLease ? this.#lease.session() : undefined;
      const leaseId = session === undefined ? undefined : await this.#lease.leaseId(session);
      const success: IRequestOp[] = [
        ...puts.map(
          (put): IRequestOp => ({
            request_put: {
              key: this.#fullKey(put.key),
              value: Buffer.from(put.value),
              ...(put.ephemeral === true && leaseId !== undefined ? { lease: leaseId } : {}),
            },
          }),
        ),
        ...deletes.map((key): IRequestOp => ({ request_delete_range: { key: this.#fullKey(key) } })),
      ];
      try {
        const response = await this.#call('unsent', (deadline) => this.#client.kv.txn({ compare, success }, { deadline }));
        if (response.succeeded) this.#lease.written(puts, deletes, leaseId);
        return { succeeded: response.succeeded, revision: Number(response.header.revision) };
      } catch (err) {
        // etcd refused the whole txn because our lease expired unnoticed: nothing was written, so retry under a new one.
        if (attempt === 1 && session !== undefined && err instanceof Unavailable && err.cause instanceof EtcdLeaseInvalidError) {
          this.#lease.lost(session, err.cause);
          continue;
        }
        throw err;
      }
    }
  }

  async watch(prefix: string, onEvent: (event: WatchEvent) => void, options: WatchOptions = {}): Promise<Watch> {
    this.#assertOpen();
    const { fromRevision } = options;
    if (fromRevision !== undefined && (!Number.isSafeInteger(fromRevision) || fromRevision < 0)) {
      throw new TypeError(`watch fromRevision must be a non-negative integer, got ${fromRevision}`);
    }
    if (fromRevision !== undefined) {
      // etcd creates a watch from a compacted revision and cancels it just after, with no reason given; ask first.
      const start = String(fromRevision + 1);
      try {
        await this.#call('always', (deadline) => this.#client.kv.range({ key: this.#fullKey(prefix), revision: start, limit: 1, keys_only: true }, { deadline }));
      } catch (err) {
        if (err instanceof NetctlError && err.message.includes('compacted')) {
          throw new Conflict(`etcd at ${this.#url} has compacted revision ${fromRevision} away; list again and watch from the new revision`);
        }
        throw err;
      }
    }
    const watch = new PrefixWatch(this.#watchContext, prefix, onEvent);
    this.#watches.add(watch);
    const stop = async (): Promise<void> => {
      this.#watches.delete(watch);
      await watch.stop();
    };
    try {
      const started = watch.start(fromRevision === undefined ? undefined : fromRevision + 1);
      await withDeadline(started, this.#callTimeoutMs, () => new Unavailable(`etcd at ${this.#url} did not answer within ${this.#callTimeoutMs} ms`));
    } catch (err) {
      await stop();
      if (this.#closed) throw new StoreClosed();
      throw this.#translate(err);
    }
    return { cancel: stop };
  }

  close(): Promise<void> {
    // A second close waits for the first, which may still be revoking the lease.
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    this.#closed = true;
    this.#compactor?.stop();
    const watches = [...this.#watches];
    this.#watches.clear();
    // Detach the watchers first, or etcd3 keeps reconnecting their stream after the client is gone.
    await Promise.all(watches.map((watch) => watch.stop()));
    await this.#lease.revoke();
    this.#client.close();
  }

  async #cancelWatcher(watcher: Watcher): Promise<void> {
    // Cancelling waits for the server's answer; an unreachable server must not hold close() up.
    await withDeadline(watcher.cancel(), this.#callTimeoutMs, () => undefined).catch(() => undefined);
    watcher.removeAllListeners();
  }

  /** Runs one etcd call within callTimeoutMs; see `retrying`. */
  async #call<T>(policy: RetryPolicy, attempt: (deadline: number) => Promise<T>): Promise<T> {
    try {
      return await retrying(this.#callTimeoutMs, policy, attempt, () => this.#closed);
    } catch (err) {
      if (this.#closed) throw new StoreClosed();
      throw this.#translate(err, policy === 'unsent');
    }
  }

  #translate(err: unknown, write = false): NetctlError {
    if (err instanceof NetctlError) return err;
    const access = this.#accessError(err);
    if (access !== undefined) return access;
    if (err instanceof GRPCDeadlineExceededError) {
      const outcome = write ? ' (the transaction may or may not have been applied)' : '';
      return new Unavailable(`etcd at ${this.#url} did not answer within ${this.#callTimeoutMs} ms${outcome}`, { cause: err });
    }
    if (err instanceof EtcdLeaseInvalidError || isTransient(err)) {
      return new Unavailable(`etcd at ${this.#url} is unavailable: ${reason(err)}`, { cause: err });
    }
    if (err instanceof GRPCInvalidArgumentError) {
      return new InvalidArgument(`etcd at ${this.#url} refused the request: ${reason(err)}`, { cause: err });
    }
    return new NetctlError('Internal', `etcd at ${this.#url}: ${reason(err)}`, { cause: err });
  }

  #accessError(err: unknown): NetctlError | undefined {
    return accessError(err, { url: this.#url, prefix: this.#prefix, access: this.#access });
  }

  #fullKey(key: string): Buffer {
    return Buffer.from(this.#prefix + key);
  }

  #keyValue(kv: IKeyValue): KeyValue {
    return Object.freeze({
      key: kv.key.toString().slice(this.#prefix.length),
      value: kv.value.toString(),
      modRevision: Number(kv.mod_revision),
    });
  }

  #assertOpen(): void {
    if (this.#closed) throw new StoreClosed();
  }
}

/** The first key after every key that starts with `prefix` (etcd's range_end for a prefix). */
function prefixEnd(prefix: Buffer): Buffer {
  const end = Buffer.from(prefix);
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i]! < 0xff) {
      end[i] = end[i]! + 1;
      return end.subarray(0, i + 1);
    }
  }
  // Only 0xff bytes (or nothing): every key from `prefix` on.
  return Buffer.from([0]);
}
