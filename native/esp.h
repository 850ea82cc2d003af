/*
 * ESP (RFC 4303) with AES-256-GCM (RFC 4106, 16-byte ICV) for encrypted
 * overlays, carried as the UDP payload on the data-path port. This is the
 * crypto core: a table of security associations (SAs) indexed by SPI, and
 * seal and open in place, one datagram or a batch at a time. Which SA a frame
 * goes out on, key exchange and rotation are decided in TypeScript.
 *
 * A datagram (the UDP payload):
 *
 *   SPI (4, BE) | sequence number, low 32 bits (4, BE) | IV (8) |
 *   ciphertext of: plaintext | padding 1, 2, 3… | pad length (1) | next header (1) |
 *   ICV (16)
 *
 * - The IV is the full 64-bit sequence number (big endian): unique per SA,
 *   as GCM requires. The nonce is salt (4) ‖ IV (8) (RFC 4106 §4).
 * - Sequence numbers are 64-bit (ESN); only the low half is sent, and the
 *   AAD is SPI ‖ high half ‖ low half (RFC 4106 §5). An outbound SA starts
 *   at 1 and refuses to wrap (RFC 4303 §3.3.3).
 * - Padding makes ciphertext and trailer a multiple of 4 bytes (RFC 4303 §2.4);
 *   GCM itself needs no block alignment.
 * - The plaintext is a whole Ethernet frame (the SA names the network, so no
 *   VXLAN header is carried inside) and next header is 143, Ethernet, which
 *   Wireshark's ip.proto table maps to its Ethernet dissector: a capture
 *   decrypted with the SA's key dissects down to the inner frame.
 * - A receiver tells ESP from plain VXLAN by the first word: a VXLAN header
 *   starts 0x08000000, or 0x08200000 with remote checksum offload (RCO),
 *   SPIs that no SA may have; words below ESP_SPI_MIN (liveness probes) are
 *   not ESP either.
 *
 * Not thread-safe: a table and its SAs belong to one thread (the loop's).
 * No call on the per-packet path allocates.
 *
 * Never add the same key twice as outbound: an SA starts its sequence, and
 * so its IVs, at 1, and a repeated (key, IV) pair gives GCM away. Every SA
 * needs a key derived afresh.
 */
#ifndef NETCTL_ESP_H
#define NETCTL_ESP_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#define ESP_KEY_LEN 32
#define ESP_SALT_LEN 4
/* SPI, sequence number (low half), IV: the plaintext starts this far into a datagram. */
#define ESP_HEADER_LEN 16
#define ESP_ICV_LEN 16
/* Pad length and next header. */
#define ESP_TRAILER_LEN 2
/* The shortest datagram a sender can make: an empty plaintext, no padding. */
#define ESP_MIN_LEN (ESP_HEADER_LEN + ESP_TRAILER_LEN + ESP_ICV_LEN)
/* What sealing adds to a plaintext at most (3 bytes of padding). */
#define ESP_MAX_OVERHEAD (ESP_HEADER_LEN + 3 + ESP_TRAILER_LEN + ESP_ICV_LEN)
#define ESP_NEXT_HEADER_ETHERNET 143
/* SPIs below this are reserved (RFC 4303 §2.1). */
#define ESP_SPI_MIN 256
/* The first word of a VXLAN header (flags with I set), and of one with the RCO flag: never SPIs. */
#define ESP_SPI_VXLAN 0x08000000u
#define ESP_SPI_VXLAN_RCO 0x08200000u
/* Anti-replay bitmap (RFC 6479): 32 blocks of 64 bits, of which all but one are the window. */
#define ESP_REPLAY_BLOCKS 32
#define ESP_REPLAY_WINDOW ((ESP_REPLAY_BLOCKS - 1) * 64)

/* What sealing or opening one datagram gave; the values are part of the addon's interface. */
typedef enum {
  ESP_OK = 0,
  /* open: no inbound SA has the datagram's SPI. */
  ESP_UNKNOWN_SPI = 1,
  /* open: shorter than ESP_MIN_LEN. */
  ESP_TRUNCATED = 2,
  /* open: the sequence number was seen already, or is older than the window. */
  ESP_REPLAYED = 3,
  /* open: the ICV does not verify, or the header contradicts itself (forged or corrupted). */
  ESP_BAD_ICV = 4,
  /* open: authentic, but the padding, pad length or next header is wrong. */
  ESP_BAD_TRAILER = 5,
  /* seal: the SA has sent 2^64 - 1 datagrams; it needs a new key. */
  ESP_SEQUENCE_EXHAUSTED = 6,
  /* seal: the datagram does not fit the buffer. */
  ESP_NO_ROOM = 7,
  /* OpenSSL refused a call (never seen with a library that passes esp_self_test). */
  ESP_CRYPTO_FAILED = 8,
  /* open: the SA is bound to another sender (esp_sa_bind_sender) than the datagram's source address. */
  ESP_WRONG_SENDER = 9,
  ESP_RESULT_COUNT
} esp_result_t;

typedef enum { ESP_INBOUND = 0, ESP_OUTBOUND = 1 } esp_direction_t;

typedef enum {
  ESP_ADD_OK = 0,
  ESP_ADD_RESERVED_SPI,
  ESP_ADD_SPI_IN_USE,
  ESP_ADD_NO_MEMORY,
  ESP_ADD_CRYPTO_FAILED,
} esp_add_result_t;

typedef struct esp_table esp_table_t;
typedef struct esp_sa esp_sa_t;

typedef struct {
  /* Datagrams sealed or opened, and their plaintext bytes. */
  uint64_t packets;
  uint64_t bytes;
  /* Outbound: the last sequence number sent. Inbound: the highest authenticated. Table: unused. */
  uint64_t sequence;
  /* Datagrams refused, by esp_result_t (drops[ESP_OK] stays 0). */
  uint64_t drops[ESP_RESULT_COUNT];
} esp_counters_t;

/* One datagram of a batch. */
typedef struct {
  /* The datagram: ESP_HEADER_LEN bytes of room, then the plaintext (seal), or as received (open). */
  uint8_t *data;
  /* In: the plaintext's length (seal) or the datagram's (open). Out: the other one. */
  uint32_t length;
  /* seal: bytes writable from data on. */
  uint32_t capacity;
  /* open: the SA's tag. */
  uint32_t tag;
  /* esp_result_t */
  uint8_t result;
} esp_packet_t;

/* Runs a GCM known-answer test (McGrew & Viega test case 16, AES-256) through the code SAs use:
 * seal, open, and the refusal of a forged tag. False means encrypted networks must be refused. */
bool esp_self_test(void);

/* The datagram length a plaintext of plain_len seals to. */
static inline size_t esp_sealed_len(size_t plain_len) {
  return ESP_HEADER_LEN + ((plain_len + ESP_TRAILER_LEN + 3) & ~(size_t)3) + ESP_ICV_LEN;
}

/* NULL when out of memory. */
esp_table_t *esp_table_new(void);
/* Wipes and frees every SA, then the table. */
void esp_table_free(esp_table_t *table);
/* Wipes and frees every SA; the table stays, empty, with its totals (a socket may still hold it). */
void esp_table_clear(esp_table_t *table);
/*
 * Adds an SA; its key schedule is made here, once. `tag` is the caller's (a
 * peer and network, say) and comes back from esp_open. An outbound SA's
 * first datagram gets sequence number `first_sequence` (0 and 1 mean 1; other values are for
 * tests of the end of the sequence space).
 */
esp_add_result_t esp_table_add(esp_table_t *table, esp_direction_t direction, uint32_t spi, const uint8_t key[ESP_KEY_LEN],
                               const uint8_t salt[ESP_SALT_LEN], uint32_t tag, uint64_t first_sequence);
/* Wipes and frees the SA; false when there is none. Pointers to it are dangling from then on. */
bool esp_table_remove(esp_table_t *table, esp_direction_t direction, uint32_t spi);
/* The SA, or NULL. Valid until it is removed: look it up again after returning to JavaScript. */
esp_sa_t *esp_table_find(const esp_table_t *table, esp_direction_t direction, uint32_t spi);
/* Totals of one direction over every SA the table has had, with the drops no SA can be blamed for
 * (unknown SPI, truncated: inbound). */
const esp_counters_t *esp_table_counters(const esp_table_t *table, esp_direction_t direction);
const esp_counters_t *esp_sa_counters(const esp_sa_t *sa);
uint32_t esp_sa_tag(const esp_sa_t *sa);
/*
 * Binds an inbound SA to the one sender that holds its key: esp_open then
 * refuses it datagrams from any other source address (IPv4, host order),
 * before the replay window is looked at, so a copy sent from elsewhere
 * neither passes as that sender's nor uses up its sequence number.
 * 0, the default, accepts any source.
 */
void esp_sa_bind_sender(esp_sa_t *sa, uint32_t source);

/*
 * Seals in place with an outbound SA: the plaintext is at
 * datagram + ESP_HEADER_LEN, and datagram has `capacity` bytes; on ESP_OK
 * the datagram is *sealed_len bytes (esp_sealed_len(plain_len)).
 */
esp_result_t esp_seal(esp_sa_t *sa, uint8_t *datagram, size_t plain_len, size_t capacity, size_t *sealed_len);
/*
 * Seals the concatenation of `parts` into `out` (`capacity` bytes), which
 * none of the parts may overlap: one pass over the bytes, so a frame whose
 * headers and payload lie apart (a segment of a super-frame) need not be
 * gathered first.
 */
esp_result_t esp_seal_gather(esp_sa_t *sa, const struct iovec *parts, size_t part_count, uint8_t *out, size_t capacity,
                             size_t *sealed_len);
/*
 * Opens in place a datagram of `len` bytes with the inbound SA its SPI
 * names, which came from `source` (IPv4, host order; 0: unknown, for an SA
 * not bound to a sender). On ESP_OK the frame is *plain_len bytes at datagram + ESP_HEADER_LEN
 * and *tag is the SA's tag; on any other result the datagram is garbage and
 * must be dropped. The replay window is checked before decrypting and moved
 * only once the ICV verifies, so forged datagrams never move it.
 */
esp_result_t esp_open(esp_table_t *table, uint8_t *datagram, size_t len, uint32_t source, size_t *plain_len, uint32_t *tag);

/* Seals each packet in place with one SA (esp_seal); returns how many were sealed. */
size_t esp_seal_batch(esp_sa_t *sa, esp_packet_t *packets, size_t count);
/* Opens each packet, all from `source`, in place (esp_open); returns how many were opened. */
size_t esp_open_batch(esp_table_t *table, esp_packet_t *packets, size_t count, uint32_t source);

#endif
