/** Checks shared by every store: the request is well formed before any store looks at it. */
import type { TxnRequest } from './types.js';

export function validateTxn(request: TxnRequest): void {
  const seen = new Set<string>();
  const claim = (key: unknown): void => {
    if (typeof key !== 'string' || key === '') throw new TypeError('store keys must be non-empty strings');
    if (seen.has(key)) throw new TypeError(`key ${JSON.stringify(key)} appears twice in one transaction`);
    seen.add(key);
  };
  for (const compare of request.compare ?? []) {
    if (!Number.isSafeInteger(compare.modRevision) || compare.modRevision < 0) {
      throw new TypeError(`compare on ${JSON.stringify(compare.key)}: modRevision must be a non-negative integer`);
    }
    if (compare.prefix === true && compare.modRevision !== 0) {
      throw new TypeError(`compare on prefix ${JSON.stringify(compare.key)}: only modRevision 0 (no key under it) is supported`);
    }
  }
  for (const put of request.put ?? []) {
    claim(put.key);
    if (typeof put.value !== 'string') throw new TypeError(`value of ${JSON.stringify(put.key)} must be a string`);
  }
  for (const key of request.delete ?? []) claim(key);
}
