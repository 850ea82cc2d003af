import { lookup } from 'node:dns/promises';
import { readFile } from 'node:fs/promises';
import { rootCertificates } from 'node:tls';
import { circuitBreaker, ConsecutiveBreaker, ExponentialBackoff, handleWhen, isBrokenCircuitError, noop } from 'cockatiel';
import type { IBackoff } from 'cockatiel';
import {
  CompareResult,
  CompareTarget,
  Etcd3,
  EtcdAuthenticationFailedError,
  EtcdLeaseInvalidError,
  EtcdPermissionDeniedError,
  GRPCDeadlineExceededError,
  GRPCInvalidArgumentError,
  GRPCUnavailableError,
  isRecoverableError,
  SortOrder,
  SortTarget,
} from 'etcd3';
import type { ICompare, IKeyValue, IOptions, IRequestOp, IWatchResponse, Lease, Watcher } from 'etcd3';
import { Conflict, InvalidArgument, NetctlError, Unavailable } from '../errors.js';
import { StoreClosed } from './types.js';
import { validateTxn } from './validate.js';
import type { KeyValue, Store, TxnRequest, TxnResult, Watch, WatchEvent, WatchOptions } from './types.js';
import { type Logger, silentLogger } from '../log.js';

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
}

const DEFAULT_PREFIX = '/netctl/';
const DEFAULT_LEASE_TTL_SECONDS = 10;
const DEFAULT_DIAL_TIMEOUT_MS = 5000;
const DEFAULT_CALL_TIMEOUT_MS = 5000;
const DEFAULT_CLIENT_PORT = 2379;
/** Keys per range request, so a large list never meets gRPC's message size limit. */
const LIST_PAGE = 500;
const RETRY_FIRST_DELAY_MS = 50;
const RETRY_MAX_DELAY_MS = 1000;
const REANNOUNCE_RETRY_MS = 1000;

/** The lease of one EtcdStore: granted on the first ephemeral put, kept alive by etcd3. */
interface Session {
  readonly lease: Lease;
  readonly id: Promise<string>;
}

/** What this client put ephemerally, so it can put it again under a new lease. */
interface EphemeralKey {
  readonly value: string;
  readonly leaseId: string;
}

interface ActiveWatch {
  active: boolean;
  readonly watcher: Watcher;
}

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
 *   last revision they saw, so an etcd restart loses no event.
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
  readonly #leaseTtlSeconds: number;
  readonly #callTimeoutMs: number;
  readonly #logger: Logger;
  #closed = false;
  #closing: Promise<void> | undefined;
  #session: Session | undefined;
  readonly #ephemeral = new Map<string, EphemeralKey>();
  #reannouncing = false;
  readonly #watches = new Set<ActiveWatch>();
  #disconnectedWatches = 0;

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
    this.#leaseTtlSeconds = settings.leaseTtlSeconds;
    this.#callTimeoutMs = settings.callTimeoutMs;
    this.#logger = logger ?? silentLogger;
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
    if (typeof prefix !== 'string') throw new InvalidArgument('etcd store prefix must be a string');
    if (!Number.isSafeInteger(leaseTtlSeconds) || leaseTtlSeconds < 1) {
      throw new InvalidArgument(`etcd lease TTL must be a whole number of seconds ≥ 1, got ${leaseTtlSeconds}`);
    }
    for (const [name, value] of [['dialTimeoutMs', dialTimeoutMs], ['callTimeoutMs', callTimeoutMs]] as const) {
      if (!Number.isFinite(value) || value <= 0) throw new InvalidArgument(`etcd ${name} must be positive, got ${value}`);
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
    try {
      await store.#retrying(dialTimeoutMs, 'always', (deadline) =>
        client.kv.range({ key: Buffer.from(prefix), limit: 1, keys_only: true }, { deadline }),
      );
    } catch (err) {
      client.close();
      throw store.#accessError(err) ?? new Unavailable(`cannot reach etcd at ${url}: ${reason(err)}`, { cause: err });
    }
    return store;
  }

  async get(key: string): Promise<KeyValue | undefined> {
    this.#assertOpen();
    const response = await this.#call('always', (deadline) => this.#client.kv.range({ key: this.#fullKey(key) }, { deadline }));
    const found = response.kvs[0];
    return found === undefined ? undefined : this.#keyValue(found);
  }

  async list(prefix: string): Promise<KeyValue[]> {
    this.#assertOpen();
    const start = this.#fullKey(prefix);
    const rangeEnd = prefixEnd(start);
    return this.#call('always', async (deadline) => {
      const found: KeyValue[] = [];
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
            ...(revision === undefined ? {} : { revision }),
          },
          { deadline },
        );
        revision ??= page.header.revision;
        for (const kv of page.kvs) found.push(this.#keyValue(kv));
        const last = page.kvs.at(-1);
        if (!page.more || last === undefined) return found;
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
      const session = needsLease ? this.#ensureSession() : undefined;
      const leaseId = session === undefined ? undefined : await this.#leaseId(session);
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
        if (response.succeeded) {
          for (const put of puts) {
            if (put.ephemeral === true && leaseId !== undefined) this.#ephemeral.set(put.key, { value: put.value, leaseId });
            else this.#ephemeral.delete(put.key);
          }
          for (const key of deletes) this.#ephemeral.delete(key);
        }
        return { succeeded: response.succeeded, revision: Number(response.header.revision) };
      } catch (err) {
        // etcd refused the whole txn because our lease expired unnoticed: nothing was written, so retry under a new one.
        if (attempt === 1 && session !== undefined && err instanceof Unavailable && err.cause instanceof EtcdLeaseInvalidError) {
          this.#sessionLost(session, err.cause);
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
    const builder = this.#client.watch().prefix(this.#fullKey(prefix));
    if (fromRevision !== undefined) builder.startRevision(String(fromRevision + 1));
    // watcher() rather than create(): a watch whose creation times out must still be cancellable.
    const watcher = builder.watcher();
    const entry: ActiveWatch = { active: true, watcher };
    this.#watches.add(entry);

    let disconnected = false;
    watcher.on('data', (response: IWatchResponse) => {
      for (const event of response.events) {
        if (!entry.active) return;
        const key = event.kv.key.toString().slice(this.#prefix.length);
        const modRevision = Number(event.kv.mod_revision);
        // etcd3 decodes the event type with the proto enum names (PUT, DELETE), not its TypeScript names.
        const watchEvent: WatchEvent =
          String(event.type).toUpperCase() === 'DELETE'
            ? { type: 'delete', key, modRevision }
            : { type: 'put', kv: Object.freeze({ key, value: event.kv.value.toString(), modRevision }) };
        try {
          onEvent(watchEvent);
        } catch (err) {
          // Like an EventEmitter listener: the caller's bug surfaces, the watch keeps going.
          queueMicrotask(() => {
            throw err;
          });
        }
      }
    });
    // Every watch loses its stream at once when etcd goes: one line for all, when the first goes and the last is back.
    watcher.on('disconnected', (err: Error) => {
      if (!entry.active || disconnected) return;
      disconnected = true;
      if (this.#disconnectedWatches++ === 0) this.#logger.warn(`etcd watches lost their stream (${err.message}); reconnecting`);
    });
    watcher.on('connected', () => {
      if (!entry.active || !disconnected) return;
      disconnected = false;
      if (--this.#disconnectedWatches === 0) this.#logger.info('etcd watches reconnected');
    });

    const created = new Promise<void>((resolve, reject) => {
      watcher.once('connected', () => resolve());
      watcher.once('error', reject);
    });
    try {
      await withDeadline(created, this.#callTimeoutMs, () => new Unavailable(`etcd at ${this.#url} did not answer within ${this.#callTimeoutMs} ms`));
    } catch (err) {
      entry.active = false;
      this.#watches.delete(entry);
      await withDeadline(watcher.cancel(), this.#callTimeoutMs, () => undefined).catch(() => undefined);
      if (this.#closed) throw new StoreClosed();
      if (err instanceof NetctlError) throw err;
      if (fromRevision !== undefined && err instanceof Error && err.message.includes('compacted')) {
        throw new Conflict(`etcd at ${this.#url} has compacted revision ${fromRevision} away; list again and watch from the new revision`);
      }
      throw this.#translate(err);
    }
    // A watch the server cancels later (compaction while we were away) cannot resume; say so.
    watcher.on('error', (err: Error) => {
      if (!entry.active) return;
      entry.active = false;
      this.#watches.delete(entry);
      this.#logger.warn(`etcd watch on ${JSON.stringify(prefix)} was cancelled by the server: ${err.message}`);
    });

    return {
      cancel: async () => {
        if (!entry.active) return;
        entry.active = false;
        if (disconnected) this.#disconnectedWatches--;
        this.#watches.delete(entry);
        await this.#cancelWatcher(watcher);
      },
    };
  }

  close(): Promise<void> {
    // A second close waits for the first, which may still be revoking the lease.
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    this.#closed = true;
    const watches = [...this.#watches];
    this.#watches.clear();
    for (const entry of watches) entry.active = false;
    // Detach the watchers first, or etcd3 keeps reconnecting their stream after the client is gone.
    await Promise.all(watches.map((entry) => this.#cancelWatcher(entry.watcher)));
    const session = this.#session;
    this.#session = undefined;
    if (session !== undefined) {
      try {
        await withDeadline(session.lease.revoke({ deadline: Date.now() + this.#callTimeoutMs }), this.#callTimeoutMs, () =>
          new Unavailable('lease revoke timed out'),
        );
      } catch (err) {
        this.#logger.warn(`etcd lease not revoked (${reason(err)}); its keys expire after ${this.#leaseTtlSeconds} s`);
      }
    }
    this.#client.close();
  }

  #ensureSession(): Session {
    this.#assertOpen();
    if (this.#session !== undefined) return this.#session;
    const lease = this.#client.lease(this.#leaseTtlSeconds, { deadline: Date.now() + this.#callTimeoutMs });
    const session: Session = { lease, id: lease.grant() };
    // Observed here so a failed grant is never an unhandled rejection; callers await it through #leaseId.
    session.id.catch(() => undefined);
    lease.on('lost', (err: Error) => this.#sessionLost(session, err));
    this.#session = session;
    return session;
  }

  async #leaseId(session: Session): Promise<string> {
    try {
      return await session.id;
    } catch (err) {
      this.#sessionLost(session, err);
      if (this.#closed) throw new StoreClosed();
      throw new Unavailable(`cannot get a lease from etcd at ${this.#url}: ${reason(err)}`, { cause: err });
    }
  }

  #sessionLost(session: Session, err: unknown): void {
    if (this.#session !== session) return;
    this.#session = undefined;
    session.lease.release();
    if (this.#closed) return;
    this.#logger.warn(`etcd lease lost (${reason(err)})`);
    if (this.#ephemeral.size > 0) void this.#reannounce();
  }

  /**
   * Puts this client's ephemeral keys back under a new lease, retrying until
   * it succeeds or the store closes. A key that still exists under the lost
   * lease (etcd kept it across a restart) is moved to the new one; a key
   * someone else wrote meanwhile is theirs and forgotten here.
   */
  async #reannounce(): Promise<void> {
    if (this.#reannouncing) return;
    this.#reannouncing = true;
    let failures = 0;
    try {
      while (!this.#closed && this.#ephemeral.size > 0) {
        try {
          const session = this.#ensureSession();
          const leaseId = await this.#leaseId(session);
          let count = 0;
          for (const [key, entry] of [...this.#ephemeral]) {
            if (await this.#reannounceKey(key, entry, leaseId)) count += 1;
          }
          if (this.#session === session) {
            this.#logger.info(`etcd lease renewed; ${count} ephemeral key(s) announced again`);
            return;
          }
        } catch (err) {
          if (this.#closed) return;
          // Once per outage, not per retry.
          if (failures++ === 0) this.#logger.warn(`cannot announce ephemeral keys again (${reason(err)}); retrying every ${REANNOUNCE_RETRY_MS} ms`);
          await new Promise((resolve) => setTimeout(resolve, REANNOUNCE_RETRY_MS).unref());
        }
      }
    } finally {
      this.#reannouncing = false;
    }
  }

  async #reannounceKey(key: string, entry: EphemeralKey, leaseId: string): Promise<boolean> {
    if (this.#ephemeral.get(key) !== entry) return false;
    const fullKey = this.#fullKey(key);
    const current = (await this.#call('always', (deadline) => this.#client.kv.range({ key: fullKey }, { deadline }))).kvs[0];
    if (current !== undefined && current.lease !== entry.leaseId) {
      this.#ephemeral.delete(key);
      return false;
    }
    const expected = current === undefined ? '0' : current.mod_revision;
    const response = await this.#call('unsent', (deadline) =>
      this.#client.kv.txn(
        {
          compare: [{ key: fullKey, target: CompareTarget.Mod, result: CompareResult.Equal, mod_revision: expected }],
          success: [{ request_put: { key: fullKey, value: Buffer.from(entry.value), lease: leaseId } }],
        },
        { deadline },
      ),
    );
    if (!response.succeeded) {
      this.#ephemeral.delete(key);
      return false;
    }
    const renewed: EphemeralKey = { value: entry.value, leaseId };
    if (this.#ephemeral.get(key) === entry) {
      this.#ephemeral.set(key, renewed);
      return true;
    }
    // The caller deleted or rewrote the key while we put it back; undo our put unless something newer is there.
    const ours = response.header.revision;
    await this.#call('unsent', (deadline) =>
      this.#client.kv.txn(
        {
          compare: [{ key: fullKey, target: CompareTarget.Mod, result: CompareResult.Equal, mod_revision: ours }],
          success: [{ request_delete_range: { key: fullKey } }],
        },
        { deadline },
      ),
    );
    return false;
  }

  async #cancelWatcher(watcher: Watcher): Promise<void> {
    // Cancelling waits for the server's answer; an unreachable server must not hold close() up.
    await withDeadline(watcher.cancel(), this.#callTimeoutMs, () => undefined).catch(() => undefined);
    watcher.removeAllListeners();
  }

  /** Runs one etcd call within callTimeoutMs; see #retrying. */
  async #call<T>(retry: 'always' | 'unsent', attempt: (deadline: number) => Promise<T>): Promise<T> {
    try {
      return await this.#retrying(this.#callTimeoutMs, retry, attempt);
    } catch (err) {
      if (this.#closed) throw new StoreClosed();
      throw this.#translate(err, retry === 'unsent');
    }
  }

  /**
   * Calls `attempt` with an absolute gRPC deadline until it succeeds, the
   * time is up or the error is not worth retrying: reads retry every
   * transient error, writes only those raised before the request was sent.
   */
  async #retrying<T>(timeoutMs: number, retry: 'always' | 'unsent', attempt: (deadline: number) => Promise<T>): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    let delay = RETRY_FIRST_DELAY_MS;
    for (;;) {
      this.#assertOpen();
      try {
        return await attempt(deadline);
      } catch (err) {
        // A TLS or credential problem does not heal by itself: report it now rather than at the deadline.
        const retryable = accessProblem(err) === undefined && (retry === 'always' ? isTransient(err) : neverSent(err));
        if (this.#closed || !retryable || Date.now() + delay >= deadline) throw err;
        await new Promise((resolve) => setTimeout(resolve, delay));
        delay = Math.min(delay * 2, RETRY_MAX_DELAY_MS);
      }
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

  /** An error that names what is wrong with our TLS settings or credentials, when that is what `err` is about. */
  #accessError(err: unknown): NetctlError | undefined {
    const problem = accessProblem(err);
    if (problem === undefined) return undefined;
    const { caFile, certFile, user } = this.#access;
    const detail = reason(problem.error);
    switch (problem.kind) {
      case 'untrusted-server':
        return new Unavailable(
          `TLS with etcd at ${this.#url} failed: its certificate is not signed by ${caFile === undefined ? 'a CA this system trusts' : `the CA in ${caFile}`} (${detail})`,
          { cause: err },
        );
      case 'client-refused':
        return new Unavailable(
          `TLS with etcd at ${this.#url} failed: the member refused ${certFile === undefined ? 'a client without a certificate' : `the client certificate ${certFile}`} (${detail})`,
          { cause: err },
        );
      case 'tls':
        return new Unavailable(`TLS with etcd at ${this.#url} failed: ${detail}`, { cause: err });
      case 'bad-credentials':
        return new InvalidArgument(`etcd at ${this.#url} refused the user name or password for ${JSON.stringify(user ?? '')} (${detail})`, { cause: err });
      case 'no-credentials':
        return new InvalidArgument(`etcd at ${this.#url} has authentication enabled: give a user and password (${detail})`, { cause: err });
      case 'permission':
        return new InvalidArgument(`etcd at ${this.#url} denied user ${JSON.stringify(user ?? '')} access under ${JSON.stringify(this.#prefix)} (${detail})`, { cause: err });
    }
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

/** etcd3's TLS settings from the access options, after checking they fit the URL and reading the files. */
async function securityOptions(url: string, hosts: readonly string[], access: EtcdAccess): Promise<Pick<IOptions, 'credentials'>> {
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

type AccessProblem = 'untrusted-server' | 'client-refused' | 'tls' | 'bad-credentials' | 'no-credentials' | 'permission';

/** Classifies errors caused by our TLS settings or credentials, which no retry can fix. */
function accessProblem(err: unknown): { kind: AccessProblem; error: unknown } | undefined {
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

function isTransient(err: unknown): boolean {
  return err instanceof Error && (isRecoverableError(err) || isBrokenCircuitError(err));
}

/** True for failures that happened before the request reached any member, so a write is safe to repeat. */
function neverSent(err: unknown): boolean {
  if (isBrokenCircuitError(err)) return true;
  return err instanceof GRPCUnavailableError && err.message.includes('No connection established');
}

function reason(err: unknown): string {
  // grpc-js ends some messages with an empty "Resolution note: ".
  return err instanceof Error ? err.message.replace(/\.? Resolution note: ?$/, '') : String(err);
}

/** Settles like `promise`, or rejects with `onTimeout()` (resolves when that returns undefined) after `ms`. */
async function withDeadline<T>(promise: Promise<T>, ms: number, onTimeout: () => Error | undefined): Promise<T | undefined> {
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
