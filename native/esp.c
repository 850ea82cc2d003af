/* ESP with AES-256-GCM: the SA table, seal, open, anti-replay. The format is described in esp.h. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "esp.h"

#define NONCE_LEN (ESP_SALT_LEN + 8)
/* SPI ‖ sequence number high half ‖ low half (RFC 4106 §5, with ESN). */
#define AAD_LEN 12
/* Slots of a fresh index; it doubles whenever it would be more than half full. */
#define INDEX_MIN_BITS 4

struct esp_sa {
  /* Holds the key schedule: set once when the SA is made, only the nonce changes per datagram. */
  EVP_CIPHER_CTX *ctx;
  uint32_t spi;
  uint32_t tag;
  /* Inbound: the only source address it takes datagrams from (esp_sa_bind_sender); 0, any. */
  uint32_t sender;
  esp_direction_t direction;
  uint8_t salt[ESP_SALT_LEN];
  /* counters.sequence is the state: the last sequence number sent, or the top of the replay window. */
  esp_counters_t counters;
  /* The table's totals of this direction, which outlive the SA. */
  esp_counters_t *totals;
  /* RFC 6479: bit (n mod 64) of block (n / 64 mod ESP_REPLAY_BLOCKS) is set once n was received. */
  uint64_t replay[ESP_REPLAY_BLOCKS];
};

/* Open addressing with linear probing, keyed by SPI; an empty slot has sa == NULL. */
typedef struct {
  uint32_t spi;
  esp_sa_t *sa;
} slot_t;

typedef struct {
  slot_t *slots;
  uint32_t bits;
  uint32_t used;
} spi_index_t;

struct esp_table {
  spi_index_t index[2];
  esp_counters_t totals[2];
};

static inline uint32_t load32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline void store32(uint8_t *p, uint32_t v) {
  p[0] = v >> 24;
  p[1] = v >> 16;
  p[2] = v >> 8;
  p[3] = v;
}

static inline uint64_t load64(const uint8_t *p) {
  return (uint64_t)load32(p) << 32 | load32(p + 4);
}

static inline void store64(uint8_t *p, uint64_t v) {
  store32(p, v >> 32);
  store32(p + 4, (uint32_t)v);
}

/* SPIs are random when derived, but tests and hand-made ones are sequential: take the product's high bits. */
static inline uint32_t slot_of(uint32_t spi, uint32_t bits) {
  return (uint32_t)(spi * 0x9E3779B1u) >> (32 - bits);
}

static slot_t *find_slot(const spi_index_t *index, uint32_t spi) {
  uint32_t mask = (1u << index->bits) - 1;
  for (uint32_t i = slot_of(spi, index->bits);; i = (i + 1) & mask) {
    slot_t *slot = &index->slots[i];
    if (!slot->sa || slot->spi == spi) return slot;
  }
}

static bool index_init(spi_index_t *index, uint32_t bits) {
  index->slots = calloc((size_t)1 << bits, sizeof *index->slots);
  index->bits = bits;
  index->used = 0;
  return index->slots != NULL;
}

static bool index_grow(spi_index_t *index) {
  spi_index_t bigger;
  if (!index_init(&bigger, index->bits + 1)) return false;
  for (size_t i = 0; i < (size_t)1 << index->bits; i++)
    if (index->slots[i].sa) *find_slot(&bigger, index->slots[i].spi) = index->slots[i];
  bigger.used = index->used;
  free(index->slots);
  *index = bigger;
  return true;
}

/* Empties `slot` and moves later entries of its probe run back, so lookups need no tombstones. */
static void index_delete(spi_index_t *index, slot_t *slot) {
  uint32_t mask = (1u << index->bits) - 1;
  uint32_t hole = (uint32_t)(slot - index->slots);
  for (uint32_t i = (hole + 1) & mask; index->slots[i].sa; i = (i + 1) & mask) {
    uint32_t home = slot_of(index->slots[i].spi, index->bits);
    /* The entry may fill the hole unless its home lies cyclically in (hole, i]. */
    bool stays = hole <= i ? (home > hole && home <= i) : (home > hole || home <= i);
    if (stays) continue;
    index->slots[hole] = index->slots[i];
    hole = i;
  }
  index->slots[hole].sa = NULL;
  index->slots[hole].spi = 0;
  index->used--;
}

static EVP_CIPHER_CTX *gcm_context(const uint8_t key[ESP_KEY_LEN], bool encrypt) {
  EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
  if (!ctx) return NULL;
  if (EVP_CipherInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL, encrypt) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_IVLEN, NONCE_LEN, NULL) != 1 ||
      EVP_CipherInit_ex(ctx, NULL, NULL, key, NULL, encrypt) != 1) {
    EVP_CIPHER_CTX_free(ctx);
    return NULL;
  }
  return ctx;
}

/* Encrypts the parts then `trailer` into `out`, back to back, and writes the tag to `icv`. */
static bool gcm_seal(EVP_CIPHER_CTX *ctx, const uint8_t *nonce, const uint8_t *aad, size_t aad_len, const struct iovec *parts,
                     size_t part_count, const uint8_t *trailer, size_t trailer_len, uint8_t *out, uint8_t *icv) {
  int n;
  if (EVP_EncryptInit_ex(ctx, NULL, NULL, NULL, nonce) != 1 || EVP_EncryptUpdate(ctx, NULL, &n, aad, (int)aad_len) != 1)
    return false;
  for (size_t i = 0; i < part_count; i++) {
    if (parts[i].iov_len == 0) continue;
    if (EVP_EncryptUpdate(ctx, out, &n, parts[i].iov_base, (int)parts[i].iov_len) != 1 || (size_t)n != parts[i].iov_len)
      return false;
    out += n;
  }
  if (trailer_len) {
    if (EVP_EncryptUpdate(ctx, out, &n, trailer, (int)trailer_len) != 1 || (size_t)n != trailer_len) return false;
    out += n;
  }
  return EVP_EncryptFinal_ex(ctx, out, &n) == 1 && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, ESP_ICV_LEN, icv) == 1;
}

/* Decrypts `data` in place; ESP_BAD_ICV when the tag does not verify. */
static esp_result_t gcm_open(EVP_CIPHER_CTX *ctx, const uint8_t *nonce, const uint8_t *aad, size_t aad_len, uint8_t *data,
                             size_t len, const uint8_t *icv) {
  int n;
  if (EVP_DecryptInit_ex(ctx, NULL, NULL, NULL, nonce) != 1 || EVP_DecryptUpdate(ctx, NULL, &n, aad, (int)aad_len) != 1 ||
      EVP_DecryptUpdate(ctx, data, &n, data, (int)len) != 1 || (size_t)n != len ||
      EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, ESP_ICV_LEN, (void *)icv) != 1)
    return ESP_CRYPTO_FAILED;
  return EVP_DecryptFinal_ex(ctx, data + n, &n) == 1 ? ESP_OK : ESP_BAD_ICV;
}

/* AES-256 test case 16 of McGrew & Viega, "The Galois/Counter Mode of Operation (GCM)", as NIST validates it. */
static const uint8_t kat_key[32] = {0xfe, 0xff, 0xe9, 0x92, 0x86, 0x65, 0x73, 0x1c, 0x6d, 0x6a, 0x8f,
                                    0x94, 0x67, 0x30, 0x83, 0x08, 0xfe, 0xff, 0xe9, 0x92, 0x86, 0x65,
                                    0x73, 0x1c, 0x6d, 0x6a, 0x8f, 0x94, 0x67, 0x30, 0x83, 0x08};
static const uint8_t kat_nonce[12] = {0xca, 0xfe, 0xba, 0xbe, 0xfa, 0xce, 0xdb, 0xad, 0xde, 0xca, 0xf8, 0x88};
static const uint8_t kat_aad[20] = {0xfe, 0xed, 0xfa, 0xce, 0xde, 0xad, 0xbe, 0xef, 0xfe, 0xed,
                                    0xfa, 0xce, 0xde, 0xad, 0xbe, 0xef, 0xab, 0xad, 0xda, 0xd2};
static const uint8_t kat_plain[60] = {
    0xd9, 0x31, 0x32, 0x25, 0xf8, 0x84, 0x06, 0xe5, 0xa5, 0x59, 0x09, 0xc5, 0xaf, 0xf5, 0x26, 0x9a, 0x86, 0xa7, 0xa9, 0x53,
    0x15, 0x34, 0xf7, 0xda, 0x2e, 0x4c, 0x30, 0x3d, 0x8a, 0x31, 0x8a, 0x72, 0x1c, 0x3c, 0x0c, 0x95, 0x95, 0x68, 0x09, 0x53,
    0x2f, 0xcf, 0x0e, 0x24, 0x49, 0xa6, 0xb5, 0x25, 0xb1, 0x6a, 0xed, 0xf5, 0xaa, 0x0d, 0xe6, 0x57, 0xba, 0x63, 0x7b, 0x39};
static const uint8_t kat_cipher[60] = {
    0x52, 0x2d, 0xc1, 0xf0, 0x99, 0x56, 0x7d, 0x07, 0xf4, 0x7f, 0x37, 0xa3, 0x2a, 0x84, 0x42, 0x7d, 0x64, 0x3a, 0x8c, 0xdc,
    0xbf, 0xe5, 0xc0, 0xc9, 0x75, 0x98, 0xa2, 0xbd, 0x25, 0x55, 0xd1, 0xaa, 0x8c, 0xb0, 0x8e, 0x48, 0x59, 0x0d, 0xbb, 0x3d,
    0xa7, 0xb0, 0x8b, 0x10, 0x56, 0x82, 0x88, 0x38, 0xc5, 0xf6, 0x1e, 0x63, 0x93, 0xba, 0x7a, 0x0a, 0xbc, 0xc9, 0xf6, 0x62};
static const uint8_t kat_tag[16] = {0x76, 0xfc, 0x6e, 0xce, 0x0f, 0x4e, 0x17, 0x68,
                                    0xcd, 0xdf, 0x88, 0x53, 0xbb, 0x2d, 0x55, 0x1b};

static bool run_self_test(void) {
  EVP_CIPHER_CTX *seal = gcm_context(kat_key, true), *open = gcm_context(kat_key, false);
  bool ok = seal && open;
  uint8_t buffer[sizeof kat_plain], icv[ESP_ICV_LEN];
  /* Whole, then cut at odd places as esp_seal_gather cuts a frame; the last part goes as a trailer. */
  struct iovec whole = {(void *)kat_plain, sizeof kat_plain};
  struct iovec cut[2] = {{(void *)kat_plain, 7}, {(void *)(kat_plain + 7), 30}};
  /* Both on one context, as an SA does: the nonce must be all that is reset between datagrams. */
  ok = ok && gcm_seal(seal, kat_nonce, kat_aad, sizeof kat_aad, &whole, 1, NULL, 0, buffer, icv) &&
       memcmp(buffer, kat_cipher, sizeof buffer) == 0 && memcmp(icv, kat_tag, sizeof icv) == 0;
  ok = ok && gcm_seal(seal, kat_nonce, kat_aad, sizeof kat_aad, cut, 2, kat_plain + 37, sizeof kat_plain - 37, buffer, icv) &&
       memcmp(buffer, kat_cipher, sizeof buffer) == 0 && memcmp(icv, kat_tag, sizeof icv) == 0;
  if (ok)
    ok = gcm_open(open, kat_nonce, kat_aad, sizeof kat_aad, buffer, sizeof buffer, kat_tag) == ESP_OK &&
         memcmp(buffer, kat_plain, sizeof buffer) == 0;
  if (ok) {
    memcpy(buffer, kat_cipher, sizeof buffer);
    memcpy(icv, kat_tag, sizeof icv);
    icv[ESP_ICV_LEN - 1] ^= 1;
    ok = gcm_open(open, kat_nonce, kat_aad, sizeof kat_aad, buffer, sizeof buffer, icv) == ESP_BAD_ICV;
  }
  EVP_CIPHER_CTX_free(seal);
  EVP_CIPHER_CTX_free(open);
  return ok;
}

bool esp_self_test(void) {
  static int passed = -1;
  if (passed < 0) passed = run_self_test();
  return passed;
}

esp_table_t *esp_table_new(void) {
  esp_table_t *table = calloc(1, sizeof *table);
  if (!table) return NULL;
  if (!index_init(&table->index[ESP_INBOUND], INDEX_MIN_BITS) || !index_init(&table->index[ESP_OUTBOUND], INDEX_MIN_BITS)) {
    esp_table_free(table);
    return NULL;
  }
  return table;
}

static void sa_free(esp_sa_t *sa) {
  /* Freeing the context wipes the key schedule (OpenSSL clears it); the rest holds the salt. */
  EVP_CIPHER_CTX_free(sa->ctx);
  OPENSSL_cleanse(sa, sizeof *sa);
  free(sa);
}

/* Wipes and frees the SAs of an index and empties it. */
static void index_clear(spi_index_t *index) {
  if (!index->slots) return;
  size_t slots = (size_t)1 << index->bits;
  for (size_t i = 0; i < slots; i++)
    if (index->slots[i].sa) sa_free(index->slots[i].sa);
  memset(index->slots, 0, slots * sizeof *index->slots);
  index->used = 0;
}

void esp_table_clear(esp_table_t *table) {
  index_clear(&table->index[ESP_INBOUND]);
  index_clear(&table->index[ESP_OUTBOUND]);
}

void esp_table_free(esp_table_t *table) {
  if (!table) return;
  for (int direction = 0; direction < 2; direction++) {
    index_clear(&table->index[direction]);
    free(table->index[direction].slots);
  }
  free(table);
}

esp_add_result_t esp_table_add(esp_table_t *table, esp_direction_t direction, uint32_t spi, const uint8_t key[ESP_KEY_LEN],
                               const uint8_t salt[ESP_SALT_LEN], uint32_t tag, uint64_t first_sequence) {
  if (spi < ESP_SPI_MIN || spi == ESP_SPI_VXLAN || spi == ESP_SPI_VXLAN_RCO) return ESP_ADD_RESERVED_SPI;
  spi_index_t *index = &table->index[direction];
  if (find_slot(index, spi)->sa) return ESP_ADD_SPI_IN_USE;
  if ((index->used + 1) * 2 > 1u << index->bits && !index_grow(index)) return ESP_ADD_NO_MEMORY;
  esp_sa_t *sa = calloc(1, sizeof *sa);
  if (!sa) return ESP_ADD_NO_MEMORY;
  if (!(sa->ctx = gcm_context(key, direction == ESP_OUTBOUND))) {
    free(sa);
    return ESP_ADD_CRYPTO_FAILED;
  }
  sa->spi = spi;
  sa->tag = tag;
  sa->direction = direction;
  memcpy(sa->salt, salt, ESP_SALT_LEN);
  if (direction == ESP_OUTBOUND && first_sequence > 1) sa->counters.sequence = first_sequence - 1;
  sa->totals = &table->totals[direction];
  slot_t *slot = find_slot(index, spi);
  slot->spi = spi;
  slot->sa = sa;
  index->used++;
  return ESP_ADD_OK;
}

bool esp_table_remove(esp_table_t *table, esp_direction_t direction, uint32_t spi) {
  spi_index_t *index = &table->index[direction];
  slot_t *slot = find_slot(index, spi);
  if (!slot->sa) return false;
  esp_sa_t *sa = slot->sa;
  index_delete(index, slot);
  sa_free(sa);
  return true;
}

esp_sa_t *esp_table_find(const esp_table_t *table, esp_direction_t direction, uint32_t spi) {
  return find_slot(&table->index[direction], spi)->sa;
}

const esp_counters_t *esp_table_counters(const esp_table_t *table, esp_direction_t direction) {
  return &table->totals[direction];
}

const esp_counters_t *esp_sa_counters(const esp_sa_t *sa) {
  return &sa->counters;
}

uint32_t esp_sa_tag(const esp_sa_t *sa) {
  return sa->tag;
}

void esp_sa_bind_sender(esp_sa_t *sa, uint32_t source) {
  sa->sender = source;
}

static esp_result_t drop(esp_counters_t *sa_counters, esp_counters_t *totals, esp_result_t reason) {
  if (sa_counters) sa_counters->drops[reason]++;
  totals->drops[reason]++;
  return reason;
}

static void count(esp_sa_t *sa, size_t plain_len) {
  sa->counters.packets++;
  sa->counters.bytes += plain_len;
  sa->totals->packets++;
  sa->totals->bytes += plain_len;
}

/* Seals `body_len` bytes (the parts, then `trailer`) into out + ESP_HEADER_LEN with the next sequence number. */
static esp_result_t seal_parts(esp_sa_t *sa, const struct iovec *parts, size_t part_count, const uint8_t *trailer,
                               size_t trailer_len, uint8_t *out, size_t body_len) {
  /* RFC 4303 §3.3.3: the sequence number never cycles; the SA must be replaced first. */
  if (sa->counters.sequence == UINT64_MAX) return drop(&sa->counters, sa->totals, ESP_SEQUENCE_EXHAUSTED);
  uint64_t sequence = ++sa->counters.sequence;
  uint8_t nonce[NONCE_LEN], aad[AAD_LEN];
  store32(out, sa->spi);
  store32(out + 4, (uint32_t)sequence);
  store64(out + 8, sequence);
  memcpy(nonce, sa->salt, ESP_SALT_LEN);
  memcpy(nonce + ESP_SALT_LEN, out + 8, 8);
  store32(aad, sa->spi);
  store64(aad + 4, sequence);
  if (!gcm_seal(sa->ctx, nonce, aad, sizeof aad, parts, part_count, trailer, trailer_len, out + ESP_HEADER_LEN,
                out + ESP_HEADER_LEN + body_len))
    return drop(&sa->counters, sa->totals, ESP_CRYPTO_FAILED);
  return ESP_OK;
}

/* Writes padding 1, 2, 3… then pad length and next header (RFC 4303 §2.4, §2.5) at `trailer`; returns its length. */
static size_t write_trailer(uint8_t *trailer, size_t plain_len) {
  size_t pad = (4 - (plain_len + ESP_TRAILER_LEN) % 4) % 4;
  for (size_t i = 0; i < pad; i++) trailer[i] = (uint8_t)(i + 1);
  trailer[pad] = (uint8_t)pad;
  trailer[pad + 1] = ESP_NEXT_HEADER_ETHERNET;
  return pad + ESP_TRAILER_LEN;
}

static bool fits(size_t plain_len, size_t capacity) {
  /* OpenSSL counts in int. */
  return plain_len <= INT_MAX - ESP_MAX_OVERHEAD && esp_sealed_len(plain_len) <= capacity;
}

esp_result_t esp_seal(esp_sa_t *sa, uint8_t *datagram, size_t plain_len, size_t capacity, size_t *sealed_len) {
  if (!fits(plain_len, capacity)) return drop(&sa->counters, sa->totals, ESP_NO_ROOM);
  size_t body_len = plain_len + write_trailer(datagram + ESP_HEADER_LEN + plain_len, plain_len);
  /* In place: OpenSSL allows input and output to be the same memory, not to overlap otherwise. */
  struct iovec body = {datagram + ESP_HEADER_LEN, body_len};
  esp_result_t result = seal_parts(sa, &body, 1, NULL, 0, datagram, body_len);
  if (result != ESP_OK) return result;
  count(sa, plain_len);
  *sealed_len = esp_sealed_len(plain_len);
  return ESP_OK;
}

esp_result_t esp_seal_gather(esp_sa_t *sa, const struct iovec *parts, size_t part_count, uint8_t *out, size_t capacity,
                             size_t *sealed_len) {
  size_t plain_len = 0;
  for (size_t i = 0; i < part_count; i++) {
    if (parts[i].iov_len > capacity) return drop(&sa->counters, sa->totals, ESP_NO_ROOM);
    plain_len += parts[i].iov_len;
  }
  if (!fits(plain_len, capacity)) return drop(&sa->counters, sa->totals, ESP_NO_ROOM);
  uint8_t trailer[3 + ESP_TRAILER_LEN];
  size_t trailer_len = write_trailer(trailer, plain_len);
  esp_result_t result = seal_parts(sa, parts, part_count, trailer, trailer_len, out, plain_len + trailer_len);
  if (result != ESP_OK) return result;
  count(sa, plain_len);
  *sealed_len = esp_sealed_len(plain_len);
  return ESP_OK;
}

/*
 * RFC 4303 Appendix A2.1: the full sequence number of a datagram from its
 * low half and the top of the window. When the window lies within one 2^32
 * subspace, a low half below it belongs to the next subspace; when it
 * straddles two, a low half above its bottom belongs to the previous one.
 * At the ends of the 64-bit space there is no other subspace to take.
 */
static uint64_t infer_sequence(uint64_t top, uint32_t low) {
  uint32_t top_low = (uint32_t)top, top_high = (uint32_t)(top >> 32);
  uint32_t bottom = top_low - (ESP_REPLAY_WINDOW - 1); /* modulo 2^32 */
  uint32_t high = top_high;
  if (top_low >= ESP_REPLAY_WINDOW - 1) {
    if (low < bottom && top_high != UINT32_MAX) high = top_high + 1;
  } else {
    if (low >= bottom && top_high != 0) high = top_high - 1;
  }
  return (uint64_t)high << 32 | low;
}

/* RFC 6479: false when `sequence` was received already or is left of the window. */
static bool replay_check(const esp_sa_t *sa, uint64_t sequence) {
  uint64_t top = sa->counters.sequence;
  if (sequence == 0) return false;
  if (sequence > top) return true;
  if (top - sequence >= ESP_REPLAY_WINDOW) return false;
  return !(sa->replay[(sequence / 64) % ESP_REPLAY_BLOCKS] >> (sequence % 64) & 1);
}

/* Marks `sequence` received; moving the top clears only the blocks it passes, never shifts the bitmap. */
static void replay_mark(esp_sa_t *sa, uint64_t sequence) {
  uint64_t top = sa->counters.sequence;
  if (sequence > top) {
    uint64_t passed = sequence / 64 - top / 64;
    if (passed > ESP_REPLAY_BLOCKS) passed = ESP_REPLAY_BLOCKS;
    for (uint64_t i = 1; i <= passed; i++) sa->replay[(top / 64 + i) % ESP_REPLAY_BLOCKS] = 0;
    sa->counters.sequence = sequence;
  }
  sa->replay[(sequence / 64) % ESP_REPLAY_BLOCKS] |= (uint64_t)1 << (sequence % 64);
}

esp_result_t esp_open(esp_table_t *table, uint8_t *datagram, size_t len, uint32_t source, size_t *plain_len, uint32_t *tag) {
  esp_counters_t *totals = &table->totals[ESP_INBOUND];
  if (len < ESP_MIN_LEN) return drop(NULL, totals, ESP_TRUNCATED);
  /* OpenSSL counts in int; no UDP datagram is this long, so it cannot be one we sealed. */
  if (len - ESP_MIN_LEN > INT_MAX) return drop(NULL, totals, ESP_BAD_ICV);
  uint32_t spi = load32(datagram);
  esp_sa_t *sa = esp_table_find(table, ESP_INBOUND, spi);
  if (!sa) return drop(NULL, totals, ESP_UNKNOWN_SPI);
  /* Whoever else sends with its SPI cannot have its key; either way it must not touch the window. */
  if (sa->sender != 0 && sa->sender != source) return drop(&sa->counters, totals, ESP_WRONG_SENDER);

  uint32_t low = load32(datagram + 4);
  uint64_t iv = load64(datagram + 8);
  uint64_t sequence = infer_sequence(sa->counters.sequence, low);
  /*
   * Our senders make the IV the full sequence number, so a datagram whose IV
   * differs from its inferred one is refused before any decryption: as a
   * replay when the IV names an older number with these low bits (Appendix A2
   * would have taken it for the next subspace and failed the ICV, counting a
   * replay as a forgery), as forged otherwise. Both halves are authenticated
   * in the end: the IV through the nonce, the sequence number through the AAD.
   */
  if ((uint32_t)iv != low || iv > sequence) return drop(&sa->counters, totals, ESP_BAD_ICV);
  if (iv < sequence || !replay_check(sa, sequence)) return drop(&sa->counters, totals, ESP_REPLAYED);

  uint8_t nonce[NONCE_LEN], aad[AAD_LEN];
  memcpy(nonce, sa->salt, ESP_SALT_LEN);
  memcpy(nonce + ESP_SALT_LEN, datagram + 8, 8);
  store32(aad, spi);
  store64(aad + 4, sequence);
  size_t body_len = len - ESP_HEADER_LEN - ESP_ICV_LEN;
  uint8_t *body = datagram + ESP_HEADER_LEN;
  esp_result_t result = gcm_open(sa->ctx, nonce, aad, sizeof aad, body, body_len, body + body_len);
  if (result != ESP_OK) return drop(&sa->counters, totals, result);
  /* Authentic: the number is used up even if the trailer turns out wrong, so a copy counts as a replay. */
  replay_mark(sa, sequence);

  size_t pad = body[body_len - 2];
  if (body[body_len - 1] != ESP_NEXT_HEADER_ETHERNET || pad > body_len - ESP_TRAILER_LEN)
    return drop(&sa->counters, totals, ESP_BAD_TRAILER);
  size_t frame_len = body_len - ESP_TRAILER_LEN - pad;
  for (size_t i = 0; i < pad; i++)
    if (body[frame_len + i] != i + 1) return drop(&sa->counters, totals, ESP_BAD_TRAILER);
  count(sa, frame_len);
  *plain_len = frame_len;
  *tag = sa->tag;
  return ESP_OK;
}

size_t esp_seal_batch(esp_sa_t *sa, esp_packet_t *packets, size_t count) {
  size_t sealed = 0;
  for (size_t i = 0; i < count; i++) {
    esp_packet_t *packet = &packets[i];
    size_t len;
    packet->result = esp_seal(sa, packet->data, packet->length, packet->capacity, &len);
    if (packet->result != ESP_OK) continue;
    packet->length = (uint32_t)len;
    sealed++;
  }
  return sealed;
}

size_t esp_open_batch(esp_table_t *table, esp_packet_t *packets, size_t count, uint32_t source) {
  size_t opened = 0;
  for (size_t i = 0; i < count; i++) {
    esp_packet_t *packet = &packets[i];
    size_t len;
    packet->result = esp_open(table, packet->data, packet->length, source, &len, &packet->tag);
    if (packet->result != ESP_OK) continue;
    packet->length = (uint32_t)len;
    opened++;
  }
  return opened;
}
