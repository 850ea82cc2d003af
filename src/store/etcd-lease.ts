/**
 * The lease that holds one EtcdStore's ephemeral keys, and what the store
 * does when etcd drops it: grant a new one and put those keys back (the
 * store's own doc says which).
 */
import { CompareResult, CompareTarget } from 'etcd3';
import type { Etcd3, Lease } from 'etcd3';
import { Unavailable } from '../errors.js';
import type { Logger } from '../log.js';
import { type EtcdCall, reason, withDeadline } from './etcd-calls.js';
import { StoreClosed, type TxnRequest } from './types.js';

const REANNOUNCE_RETRY_MS = 1000;

/** One lease: granted on the first ephemeral put, kept alive by etcd3. */
export interface LeaseSession {
  readonly lease: Lease;
  readonly id: Promise<string>;
}

/** What this client put ephemerally, so it can put it again under a new lease. */
interface EphemeralKey {
  readonly value: string;
  readonly leaseId: string;
}

export interface EphemeralLeaseOptions {
  readonly client: Etcd3;
  /** For messages. */
  readonly url: string;
  readonly ttlSeconds: number;
  readonly callTimeoutMs: number;
  readonly logger: Logger;
  /** The store's bounded, retried etcd call. */
  readonly call: EtcdCall;
  /** The key as stored in etcd, under the store's prefix. */
  readonly fullKey: (key: string) => Buffer;
  readonly isClosed: () => boolean;
}

/** The lease of one EtcdStore and the ephemeral keys it wrote under it. */
export class EphemeralLease {
  readonly #client: Etcd3;
  readonly #url: string;
  readonly #ttlSeconds: number;
  readonly #callTimeoutMs: number;
  readonly #logger: Logger;
  readonly #call: EtcdCall;
  readonly #fullKey: (key: string) => Buffer;
  readonly #isClosed: () => boolean;
  #session: LeaseSession | undefined;
  readonly #ephemeral = new Map<string, EphemeralKey>();
  #reannouncing = false;

  constructor(options: EphemeralLeaseOptions) {
    this.#client = options.client;
    this.#url = options.url;
    this.#ttlSeconds = options.ttlSeconds;
    this.#callTimeoutMs = options.callTimeoutMs;
    this.#logger = options.logger;
    this.#call = options.call;
    this.#fullKey = options.fullKey;
    this.#isClosed = options.isClosed;
  }

  /** The current lease, granted now when there is none. */
  session(): LeaseSession {
    if (this.#isClosed()) throw new StoreClosed();
    if (this.#session !== undefined) return this.#session;
    const lease = this.#client.lease(this.#ttlSeconds, { deadline: Date.now() + this.#callTimeoutMs });
    const session: LeaseSession = { lease, id: lease.grant() };
    // Observed here so a failed grant is never an unhandled rejection; callers await it through leaseId().
    session.id.catch(() => undefined);
    lease.on('lost', (err: Error) => this.lost(session, err));
    this.#session = session;
    return session;
  }

  /** The id of `session`'s lease, once granted; rejects with Unavailable when etcd grants none. */
  async leaseId(session: LeaseSession): Promise<string> {
    try {
      return await session.id;
    } catch (err) {
      this.lost(session, err);
      if (this.#isClosed()) throw new StoreClosed();
      throw new Unavailable(`cannot get a lease from etcd at ${this.#url}: ${reason(err)}`, { cause: err });
    }
  }

  /** Forgets a lease etcd no longer honours and puts this client's ephemeral keys back under a new one. */
  lost(session: LeaseSession, err: unknown): void {
    if (this.#session !== session) return;
    this.#session = undefined;
    session.lease.release();
    if (this.#isClosed()) return;
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
      while (!this.#isClosed() && this.#ephemeral.size > 0) {
        try {
          const session = this.session();
          const leaseId = await this.leaseId(session);
          let count = 0;
          for (const [key, entry] of [...this.#ephemeral]) {
            if (await this.#reannounceKey(key, entry, leaseId)) count += 1;
          }
          if (this.#session === session) {
            this.#logger.info(`etcd lease renewed; ${count} ephemeral key(s) announced again`);
            return;
          }
        } catch (err) {
          if (this.#isClosed()) return;
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

  /** Notes what a txn that succeeded did to ephemeral keys: the ones to put back after a lost lease, and the ones no longer ours. */
  written(puts: NonNullable<TxnRequest['put']>, deletes: readonly string[], leaseId: string | undefined): void {
    for (const put of puts) {
      if (put.ephemeral === true && leaseId !== undefined) this.#ephemeral.set(put.key, { value: put.value, leaseId });
      else this.#ephemeral.delete(put.key);
    }
    for (const key of deletes) this.#ephemeral.delete(key);
  }

  /** At close: revokes the lease, so this client's ephemeral keys disappear at once. */
  async revoke(): Promise<void> {
    const session = this.#session;
    this.#session = undefined;
    if (session === undefined) return;
    try {
      await withDeadline(session.lease.revoke({ deadline: Date.now() + this.#callTimeoutMs }), this.#callTimeoutMs, () =>
        new Unavailable('lease revoke timed out'),
      );
    } catch (err) {
      this.#logger.warn(`etcd lease not revoked (${reason(err)}); its keys expire after ${this.#ttlSeconds} s`);
    }
  }
}
