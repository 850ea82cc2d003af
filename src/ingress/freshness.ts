import type { WatchEvent } from '../store/types.js';

/**
 * Which store events are news for one reader that follows keys with a
 * watch and also reads some of them straight from the store (`reread`),
 * so that the watch lagging behind a read never undoes what it applied:
 *
 * - a put is news when newer than what was applied of its key;
 * - a deletion read from the store (revision +Infinity: a read gives none)
 *   of a key held is news, and counts as newer than anything the watch can
 *   still report, until the watch reports that deletion;
 * - the watch's deletion of a key is news, and after it nothing older of
 *   the key can come, so its revision is forgotten; except while a read of
 *   that key is under way, whose answer may predate the deletion: it is
 *   kept until the read is done.
 *
 * Keys carry their store's name, since revisions count per store.
 */
export class Freshness {
  /** The revision last applied, per key. */
  private readonly revisions = new Map<string, number>();
  /** Keys being read now (how many reads), and those of them whose deletion the watch reported meanwhile. */
  private readonly reading = new Map<string, number>();
  private readonly deletedWhileReading = new Set<string>();

  /** Whether `event` of `key` is news; if so, it counts as applied. */
  accept(key: string, event: WatchEvent): boolean {
    const revision = event.type === 'put' ? event.kv.modRevision : event.modRevision;
    const known = this.revisions.get(key);
    if (known !== undefined && revision <= known) {
      // The watch's report of a deletion a read found first: nothing older of the key can come now.
      if (event.type === 'delete' && known === Number.POSITIVE_INFINITY) this.revisions.delete(key);
      return false;
    }
    if (event.type === 'put') {
      this.revisions.set(key, revision);
    } else if (revision === Number.POSITIVE_INFINITY) {
      // Not held: the watch reported the deletion already, or has yet to report the key, its deletion last.
      if (known === undefined) return false;
      this.revisions.set(key, revision);
    } else if (this.reading.has(key)) {
      this.revisions.set(key, revision);
      this.deletedWhileReading.add(key);
    } else {
      this.revisions.delete(key);
    }
    return true;
  }

  /** Runs a read of `key` from the store and the apply of what it found; deletions the watch reports meanwhile outlive it. */
  async whileReading<T>(key: string, read: () => Promise<T>): Promise<T> {
    this.reading.set(key, (this.reading.get(key) ?? 0) + 1);
    try {
      return await read();
    } finally {
      const left = (this.reading.get(key) ?? 1) - 1;
      if (left > 0) {
        this.reading.set(key, left);
      } else {
        this.reading.delete(key);
        if (this.deletedWhileReading.delete(key)) this.revisions.delete(key);
      }
    }
  }
}
