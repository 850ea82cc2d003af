/**
 * ESP (RFC 4303) with AES-256-GCM (RFC 4106, 16-byte ICV) in the addon, for
 * encrypted overlays: a table of security associations indexed by SPI, filled
 * and emptied from TypeScript, and seal and open of batches. The data path
 * calls the same C core (native/esp.h) without coming here; these batch calls
 * serve tests and the benchmark.
 *
 * A datagram (the UDP payload on the data-path port):
 *
 *   SPI (4) | sequence number, low 32 bits (4) | IV = the 64-bit sequence number (8) |
 *   AES-256-GCM of (Ethernet frame | padding 1, 2, 3… | pad length | next header 143) |
 *   ICV (16)
 *
 * with the nonce salt ‖ IV and the AAD SPI ‖ sequence high ‖ low (ESN,
 * RFC 4106 §5). Every inbound SA keeps a replay window of ESP_REPLAY_WINDOW
 * sequence numbers (RFC 6479). Errors of setup carry a `code`:
 * ESP_SPI_RESERVED, ESP_SPI_IN_USE, ESP_KEY_LENGTH, ESP_SELF_TEST_FAILED,
 * ESP_TABLE_CLOSED, ESP_UNKNOWN_SPI (sealing with an SA that is not there).
 * An inbound SA may be bound to its sender's address (`EspSaKeys.sender`).
 */
import { addon, type NativeEspCounters, type NativeEspDirection, type NativeEspTable } from './addon.js';

/** The constants of native/esp.h; test/sys/esp.test.ts holds them against the addon's. */
export const ESP_KEY_LENGTH = 32;
export const ESP_SALT_LENGTH = 4;
/** Where the plaintext starts in a datagram: SPI, sequence number, IV. */
export const ESP_HEADER_LENGTH = 16;
export const ESP_ICV_LENGTH = 16;
/** Pad length and next header. */
export const ESP_TRAILER_LENGTH = 2;
/** The shortest datagram there is (an empty frame); anything shorter is dropped as truncated. */
export const ESP_MIN_LENGTH = ESP_HEADER_LENGTH + ESP_TRAILER_LENGTH + ESP_ICV_LENGTH;
/** What sealing adds to a frame at most: the overlay MTU is the underlay's minus this, IP, UDP. */
export const ESP_MAX_OVERHEAD = ESP_MIN_LENGTH + 3;
export const ESP_NEXT_HEADER_ETHERNET = 143;
/** Sequence numbers an inbound SA accepts below the highest it has seen, counting that one. */
export const ESP_REPLAY_WINDOW = 1984;

/** What sealing or opening a datagram gave, by the code the addon writes in a batch's results. */
export const ESP_RESULTS = [
  'ok',
  'unknownSpi',
  'truncated',
  'replayed',
  'badIcv',
  'badTrailer',
  'sequenceExhausted',
  'noRoom',
  'cryptoFailed',
  'wrongSender',
] as const;
export type EspResult = (typeof ESP_RESULTS)[number];
export type EspDropReason = Exclude<EspResult, 'ok'>;
export type EspDirection = NativeEspDirection;

export interface EspCounters extends Omit<NativeEspCounters, 'drops'> {
  readonly drops: Readonly<Record<EspDropReason, number>>;
}

/** An SPI as people and Wireshark write it: 0x and 8 hex digits. */
export function formatSpi(spi: number): string {
  return `0x${spi.toString(16).padStart(8, '0')}`;
}

/** The length a frame of `plainLength` bytes seals to. */
export function espSealedLength(plainLength: number): number {
  return ESP_HEADER_LENGTH + ((plainLength + ESP_TRAILER_LENGTH + 3) & ~3) + ESP_ICV_LENGTH;
}

/** True when AES-256-GCM gives a NIST known answer through the addon's code; the daemon refuses encrypted networks otherwise. */
export function espSelfTest(): boolean {
  return addon().espSelfTest();
}

/** One direction of a security association. The key and salt are copied into the addon; wiping the caller's Buffers is the caller's job. */
export interface EspSaKeys {
  readonly spi: number;
  /** 32 bytes. */
  readonly key: Uint8Array;
  /** The 4-byte salt of the RFC 4106 nonce. */
  readonly salt: Uint8Array;
  /** The caller's own number for the SA (a peer and network, say), handed back with each frame it opens. */
  readonly tag: number;
  /**
   * Inbound: the IPv4 address of the one peer that holds the key. Datagrams
   * with its SPI from any other source are dropped as wrongSender, before
   * the replay window is looked at. Absent: any source.
   */
  readonly sender?: string;
}

/**
 * Datagrams for EspTable.seal and open, reused from call to call: datagram i
 * is buffers[i] (its length is the room sealing may use), lengths[i] the
 * plaintext's length before sealing and the datagram's after, the other way
 * round when opening; a plaintext is at ESP_HEADER_LENGTH.
 */
export class EspBatch {
  readonly buffers: Uint8Array[] = [];
  readonly lengths: Uint32Array;
  readonly results: Uint8Array;
  readonly tags: Uint32Array;
  count = 0;

  constructor(readonly capacity: number) {
    this.lengths = new Uint32Array(capacity);
    this.results = new Uint8Array(capacity);
    this.tags = new Uint32Array(capacity);
  }

  result(i: number): EspResult {
    return ESP_RESULTS[this.results[i] ?? 0] ?? 'cryptoFailed';
  }

  /** The frame an open left in datagram i (a view, valid until the buffer is reused). */
  plaintext(i: number): Uint8Array {
    const buffer = this.buffers[i];
    if (buffer === undefined) throw new RangeError(`no datagram ${i} in the batch`);
    return buffer.subarray(ESP_HEADER_LENGTH, ESP_HEADER_LENGTH + (this.lengths[i] ?? 0));
  }
}

/**
 * The SAs of one host. Not shared between threads. After `close`, every
 * call throws ESP_TABLE_CLOSED; the keys are wiped on `remove` and `close`
 * (or when the table is garbage collected).
 */
export class EspTable {
  private constructor(private readonly handle: NativeEspTable) {}

  /** The addon's handle, for a socket that attaches the table (src/sys/udp.ts); never key material. */
  get native(): NativeEspTable {
    return this.handle;
  }

  /** Throws ESP_SELF_TEST_FAILED when AES-256-GCM does not work here. */
  static create(): EspTable {
    return new EspTable(addon().espTableCreate());
  }

  /**
   * Sealing starts at sequence number 1, so a key must never be added
   * twice: GCM with a repeated nonce gives the key away. `firstSequence`
   * is for tests of the end of the sequence space.
   */
  addOutbound(sa: EspSaKeys, options: { firstSequence?: bigint } = {}): void {
    addon().espSaAdd(this.handle, 'outbound', sa.spi, sa.key, sa.salt, sa.tag, options.firstSequence);
  }

  addInbound(sa: EspSaKeys): void {
    addon().espSaAdd(this.handle, 'inbound', sa.spi, sa.key, sa.salt, sa.tag, undefined, sa.sender);
  }

  /** Wipes the SA; false when there was none. */
  remove(direction: EspDirection, spi: number): boolean {
    return addon().espSaRemove(this.handle, direction, spi);
  }

  counters(direction: EspDirection, spi: number): EspCounters | undefined {
    return (addon().espSaCounters(this.handle, direction, spi) as EspCounters | null) ?? undefined;
  }

  /** Every SA of the direction so far, removed ones included, with drops no SA is known for (unknownSpi, truncated). */
  totals(direction: EspDirection): EspCounters {
    return addon().espTableCounters(this.handle, direction) as EspCounters;
  }

  /** Seals the batch in place with the outbound SA `spi`; returns how many were sealed (see `result(i)` for the rest). */
  seal(spi: number, batch: EspBatch): number {
    return addon().espSealBatch(this.handle, spi, batch.buffers, batch.lengths, batch.results, batch.count);
  }

  /**
   * Opens the batch in place, as datagrams from IPv4 `source` (none: unknown,
   * which SAs bound to a sender refuse); returns how many were opened. Dropped ones are garbage.
   */
  open(batch: EspBatch, source?: string): number {
    return addon().espOpenBatch(this.handle, batch.buffers, batch.lengths, batch.results, batch.tags, batch.count, source);
  }

  /**
   * Wipes every SA now. A socket the table is attached to keeps it, empty,
   * until the socket detaches it or closes: its sealed sends are refused and
   * received ESP is dropped as from an unknown SPI.
   */
  close(): void {
    addon().espTableClose(this.handle);
  }
}
