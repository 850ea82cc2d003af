/*
 * JavaScript's handle on the ESP core (esp.h): a table of SAs that
 * TypeScript fills and empties, counters without key material, and seal and
 * open of a batch of Buffers for tests and the benchmark. The data path calls
 * esp.h directly from C, on a table a socket holds (esp_handle.h).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addon.h"
#include "esp.h"
#include "esp_handle.h"

/* A chunk of packets handled per esp_*_batch call, so a batch needs no allocation. */
#define BATCH_CHUNK 64

/* What a napi external points to. */
struct netctl_esp_handle {
  /* NULL once closed and no socket holds it. */
  esp_table_t *table;
  /* Sockets (netctl_esp_handle_hold) that use the table. */
  uint32_t holders;
  /* espTableClose was called: JavaScript may not use the table any more. */
  bool closed;
  /* The garbage collector is done with the external. */
  bool finalized;
};
typedef struct netctl_esp_handle table_handle_t;

static const char *const result_names[ESP_RESULT_COUNT] = {
    [ESP_OK] = "ok",
    [ESP_UNKNOWN_SPI] = "unknownSpi",
    [ESP_TRUNCATED] = "truncated",
    [ESP_REPLAYED] = "replayed",
    [ESP_BAD_ICV] = "badIcv",
    [ESP_BAD_TRAILER] = "badTrailer",
    [ESP_SEQUENCE_EXHAUSTED] = "sequenceExhausted",
    [ESP_NO_ROOM] = "noRoom",
    [ESP_CRYPTO_FAILED] = "cryptoFailed",
    [ESP_WRONG_SENDER] = "wrongSender",
};

/* Frees the table and the handle once neither JavaScript nor a socket can reach them. */
static void free_if_unreachable(table_handle_t *handle) {
  if (handle->holders > 0) return;
  if (handle->closed || handle->finalized) {
    esp_table_free(handle->table);
    handle->table = NULL;
  }
  if (handle->finalized) free(handle);
}

static void finalize(napi_env env, void *data, void *hint) {
  table_handle_t *handle = data;
  handle->finalized = true;
  free_if_unreachable(handle);
}

/* Marks the externals that are table handles: another part's external (a socket) is never taken for one. */
static const napi_type_tag table_tag = {0x6e6574636c657370ull, 0x7461626c65000001ull};

/* The handle behind `value`, open or closed; throws and returns NULL when it is none. */
static table_handle_t *any_handle(napi_env env, napi_value value) {
  table_handle_t *handle;
  napi_valuetype type;
  bool tagged = false;
  if (napi_typeof(env, value, &type) != napi_ok || type != napi_external ||
      napi_check_object_type_tag(env, value, &table_tag, &tagged) != napi_ok || !tagged ||
      napi_get_value_external(env, value, (void **)&handle) != napi_ok || handle == NULL) {
    napi_throw_type_error(env, NULL, "expected an ESP table handle");
    return NULL;
  }
  return handle;
}

static table_handle_t *handle_of(napi_env env, napi_value value) {
  table_handle_t *handle = any_handle(env, value);
  if (handle && handle->closed) {
    napi_throw_error(env, "ESP_TABLE_CLOSED", "the ESP table is closed");
    return NULL;
  }
  return handle;
}

static esp_table_t *get_table(napi_env env, napi_value value) {
  table_handle_t *handle = handle_of(env, value);
  return handle ? handle->table : NULL;
}

netctl_esp_handle_t *netctl_esp_handle_get(napi_env env, napi_value value) {
  return handle_of(env, value);
}

void netctl_esp_handle_hold(netctl_esp_handle_t *handle) {
  handle->holders++;
}

void netctl_esp_handle_release(netctl_esp_handle_t *handle) {
  handle->holders--;
  free_if_unreachable(handle);
}

esp_table_t *netctl_esp_handle_table(const netctl_esp_handle_t *handle) {
  return handle->table;
}

static bool get_direction(napi_env env, napi_value value, esp_direction_t *direction) {
  char name[16];
  size_t len;
  if (!netctl_get_string(env, value, name, sizeof name, &len, "direction must be 'inbound' or 'outbound'")) return false;
  if (strcmp(name, "inbound") == 0) *direction = ESP_INBOUND;
  else if (strcmp(name, "outbound") == 0) *direction = ESP_OUTBOUND;
  else {
    napi_throw_type_error(env, NULL, "direction must be 'inbound' or 'outbound'");
    return false;
  }
  return true;
}

/* espSelfTest(): true when AES-256-GCM gives the known answer; the result is kept. */
static napi_value js_self_test(napi_env env, napi_callback_info info) {
  napi_value result;
  napi_get_boolean(env, esp_self_test(), &result);
  return result;
}

/* espTableCreate(): a table handle; throws ESP_SELF_TEST_FAILED when AES-256-GCM does not work. */
static napi_value js_table_create(napi_env env, napi_callback_info info) {
  if (!esp_self_test()) {
    napi_throw_error(env, "ESP_SELF_TEST_FAILED", "AES-256-GCM failed its known-answer test: encryption is unavailable");
    return NULL;
  }
  table_handle_t *handle = calloc(1, sizeof *handle);
  if (handle && !(handle->table = esp_table_new())) {
    free(handle);
    handle = NULL;
  }
  if (!handle) return netctl_throw_errno(env, ENOMEM, "espTableCreate", NULL);
  napi_value external;
  if (napi_create_external(env, handle, finalize, NULL, &external) != napi_ok) {
    finalize(env, handle, NULL);
    return NULL;
  }
  napi_type_tag_object(env, external, &table_tag);
  return external;
}

/* espTableClose(table): wipes and frees every SA now; later calls on the handle throw. A socket that
 * holds the table keeps it, empty, until it lets go: what it sends or receives sealed then fails as
 * with an unknown SPI. */
static napi_value js_table_close(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 1) {
    napi_throw_type_error(env, NULL, "espTableClose(table)");
    return NULL;
  }
  table_handle_t *handle = any_handle(env, argv[0]);
  if (!handle || handle->closed) return NULL;
  handle->closed = true;
  if (handle->table) esp_table_clear(handle->table);
  free_if_unreachable(handle);
  return NULL;
}

/* An optional IPv4 address (undefined: 0) as a host-order number; false with a RangeError thrown for anything else. */
static bool get_ipv4(napi_env env, napi_value value, uint32_t *out) {
  napi_valuetype type;
  napi_typeof(env, value, &type);
  if (type == napi_undefined) {
    *out = 0;
    return true;
  }
  char text[INET_ADDRSTRLEN];
  size_t text_len = 0;
  struct in_addr address;
  if (type != napi_string || napi_get_value_string_utf8(env, value, text, sizeof text, &text_len) != napi_ok ||
      inet_pton(AF_INET, text, &address) != 1 || address.s_addr == 0) {
    napi_throw_range_error(env, NULL, "an address must be IPv4 in dotted quads, not 0.0.0.0");
    return false;
  }
  *out = ntohl(address.s_addr);
  return true;
}

/* espSaAdd(table, direction, spi, key, salt, tag, firstSequence?: bigint). */
static napi_value js_sa_add(napi_env env, napi_callback_info info) {
  static const char usage[] =
      "espSaAdd(table, direction: 'inbound' | 'outbound', spi: number, key: Uint8Array, salt: Uint8Array, tag: number, "
      "firstSequence?: bigint, sender?: string (inbound: the IPv4 address it takes datagrams from)";
  size_t argc = 8;
  napi_value argv[8];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 6) {
    napi_throw_type_error(env, NULL, usage);
    return NULL;
  }
  esp_table_t *table = get_table(env, argv[0]);
  esp_direction_t direction;
  uint32_t spi, tag;
  uint8_t *key, *salt;
  size_t key_len, salt_len;
  uint64_t first_sequence = 1;
  if (!table || !get_direction(env, argv[1], &direction) || !netctl_get_uint32(env, argv[2], &spi, usage) ||
      !netctl_get_bytes(env, argv[3], &key, &key_len, usage) || !netctl_get_bytes(env, argv[4], &salt, &salt_len, usage) ||
      !netctl_get_uint32(env, argv[5], &tag, usage))
    return NULL;
  if (argc > 6) {
    napi_valuetype type;
    napi_typeof(env, argv[6], &type);
    bool lossless;
    if (type != napi_undefined &&
        (napi_get_value_bigint_uint64(env, argv[6], &first_sequence, &lossless) != napi_ok || !lossless ||
         first_sequence == 0)) {
      napi_throw_range_error(env, NULL, "firstSequence must be a bigint from 1 to 2^64 - 1");
      return NULL;
    }
  }
  uint32_t sender = 0;
  if (argc > 7 && !get_ipv4(env, argv[7], &sender)) return NULL;
  if (sender != 0 && direction != ESP_INBOUND) {
    napi_throw_range_error(env, NULL, "sender binds inbound SAs only");
    return NULL;
  }
  if (key_len != ESP_KEY_LEN) {
    napi_throw_range_error(env, "ESP_KEY_LENGTH", "an AES-256-GCM key has 32 bytes");
    return NULL;
  }
  if (salt_len != ESP_SALT_LEN) {
    napi_throw_range_error(env, "ESP_KEY_LENGTH", "an RFC 4106 salt has 4 bytes");
    return NULL;
  }
  char message[128];
  switch (esp_table_add(table, direction, spi, key, salt, tag, first_sequence)) {
  case ESP_ADD_OK:
    if (sender != 0) esp_sa_bind_sender(esp_table_find(table, direction, spi), sender);
    return NULL;
  case ESP_ADD_RESERVED_SPI:
    if (spi == ESP_SPI_VXLAN || spi == ESP_SPI_VXLAN_RCO)
      snprintf(message, sizeof message, "SPI 0x%08x is how a VXLAN header starts: receivers could not tell the two apart", spi);
    else
      snprintf(message, sizeof message, "SPI %u is reserved: SPIs 0 to 255 are not for use (RFC 4303 §2.1)", spi);
    napi_throw_range_error(env, "ESP_SPI_RESERVED", message);
    return NULL;
  case ESP_ADD_SPI_IN_USE:
    snprintf(message, sizeof message, "an %s SA with SPI 0x%08x exists", direction == ESP_INBOUND ? "inbound" : "outbound",
             spi);
    napi_throw_error(env, "ESP_SPI_IN_USE", message);
    return NULL;
  case ESP_ADD_NO_MEMORY:
    return netctl_throw_errno(env, ENOMEM, "espSaAdd", NULL);
  case ESP_ADD_CRYPTO_FAILED:
    napi_throw_error(env, "ESP_CRYPTO_FAILED", "OpenSSL refused to set up AES-256-GCM");
    return NULL;
  }
  return NULL;
}

/* The (table, direction, spi) arguments that name one SA; false with a TypeError thrown when they do not. */
static bool sa_arguments(napi_env env, napi_callback_info info, const char *usage, esp_table_t **table,
                         esp_direction_t *direction, uint32_t *spi) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc != 3) {
    napi_throw_type_error(env, NULL, usage);
    return false;
  }
  *table = get_table(env, argv[0]);
  return *table && get_direction(env, argv[1], direction) && netctl_get_uint32(env, argv[2], spi, usage);
}

/* espSaRemove(table, direction, spi): wipes the SA; false when there was none. */
static napi_value js_sa_remove(napi_env env, napi_callback_info info) {
  esp_table_t *table;
  esp_direction_t direction;
  uint32_t spi;
  if (!sa_arguments(env, info, "espSaRemove(table, direction: 'inbound' | 'outbound', spi: number)", &table, &direction, &spi))
    return NULL;
  napi_value result;
  napi_get_boolean(env, esp_table_remove(table, direction, spi), &result);
  return result;
}

/* { packets, bytes, sequence: bigint, drops: { unknownSpi, truncated, … } } */
static napi_value counters_object(napi_env env, const esp_counters_t *counters) {
  napi_value object, drops, value;
  napi_create_object(env, &object);
  napi_create_double(env, (double)counters->packets, &value);
  napi_set_named_property(env, object, "packets", value);
  napi_create_double(env, (double)counters->bytes, &value);
  napi_set_named_property(env, object, "bytes", value);
  napi_create_bigint_uint64(env, counters->sequence, &value);
  napi_set_named_property(env, object, "sequence", value);
  napi_create_object(env, &drops);
  for (int reason = ESP_OK + 1; reason < ESP_RESULT_COUNT; reason++) {
    napi_create_double(env, (double)counters->drops[reason], &value);
    napi_set_named_property(env, drops, result_names[reason], value);
  }
  napi_set_named_property(env, object, "drops", drops);
  return object;
}

/* espSaCounters(table, direction, spi): the SA's counters, or null when there is no such SA. */
static napi_value js_sa_counters(napi_env env, napi_callback_info info) {
  esp_table_t *table;
  esp_direction_t direction;
  uint32_t spi;
  if (!sa_arguments(env, info, "espSaCounters(table, direction: 'inbound' | 'outbound', spi: number)", &table, &direction,
                    &spi))
    return NULL;
  napi_value null;
  esp_sa_t *sa = esp_table_find(table, direction, spi);
  if (sa) return counters_object(env, esp_sa_counters(sa));
  napi_get_null(env, &null);
  return null;
}

/* espTableCounters(table, direction): totals of every SA of that direction, past ones included. */
static napi_value js_table_counters(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc != 2) {
    napi_throw_type_error(env, NULL, "espTableCounters(table, direction: 'inbound' | 'outbound')");
    return NULL;
  }
  esp_table_t *table = get_table(env, argv[0]);
  esp_direction_t direction;
  if (!table || !get_direction(env, argv[1], &direction)) return NULL;
  return counters_object(env, esp_table_counters(table, direction));
}

/* The arguments both batch calls share: buffers, lengths, results and count. */
typedef struct {
  napi_value buffers;
  uint32_t *lengths;
  uint8_t *results;
  uint32_t *tags;
  uint32_t count;
} js_batch_t;

static bool get_batch(napi_env env, const napi_value *argv, bool with_tags, js_batch_t *batch, const char *usage) {
  bool is_array = false;
  uint32_t buffer_count;
  size_t lengths_len, results_len, tags_len = 0;
  void *lengths, *results, *tags = NULL;
  napi_is_array(env, argv[0], &is_array);
  if (!is_array || !netctl_typed_array(env, argv[1], napi_uint32_array, &lengths, &lengths_len) ||
      !netctl_typed_array(env, argv[2], napi_uint8_array, &results, &results_len) ||
      (with_tags && !netctl_typed_array(env, argv[3], napi_uint32_array, &tags, &tags_len))) {
    napi_throw_type_error(env, NULL, usage);
    return false;
  }
  if (!netctl_get_uint32(env, argv[with_tags ? 4 : 3], &batch->count, usage)) return false;
  napi_get_array_length(env, argv[0], &buffer_count);
  if (batch->count > buffer_count || batch->count > lengths_len || batch->count > results_len ||
      (with_tags && batch->count > tags_len)) {
    napi_throw_range_error(env, NULL, "count is larger than the batch's arrays");
    return false;
  }
  batch->buffers = argv[0];
  batch->lengths = lengths;
  batch->results = results;
  batch->tags = tags;
  return true;
}

/* Fills packets[0..n) from datagrams first.. of the batch; false (thrown) when a buffer is not one. */
static bool chunk_packets(napi_env env, const js_batch_t *batch, uint32_t first, uint32_t n, esp_packet_t *packets) {
  for (uint32_t i = 0; i < n; i++) {
    napi_value buffer;
    uint8_t *data;
    size_t len;
    if (napi_get_element(env, batch->buffers, first + i, &buffer) != napi_ok ||
        !netctl_get_bytes(env, buffer, &data, &len, "buffers must hold a Uint8Array per datagram"))
      return false;
    packets[i].data = data;
    packets[i].capacity = len > UINT32_MAX ? UINT32_MAX : (uint32_t)len;
    packets[i].length = batch->lengths[first + i];
    packets[i].tag = 0;
    if (packets[i].length > packets[i].capacity) {
      napi_throw_range_error(env, NULL, "a datagram's length is larger than its buffer");
      return false;
    }
  }
  return true;
}

/*
 * espSealBatch(table, spi, buffers, lengths, results, count): seals buffers[i] in place with the
 * outbound SA `spi`, its plaintext being lengths[i] bytes at ESP_HEADER_LEN; lengths[i] becomes the
 * datagram's length and results[i] the esp_result_t. Returns how many were sealed.
 */
static napi_value js_seal_batch(napi_env env, napi_callback_info info) {
  static const char usage[] =
      "espSealBatch(table, spi: number, buffers: Uint8Array[], lengths: Uint32Array, results: Uint8Array, count: number)";
  size_t argc = 6;
  napi_value argv[6], result;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc != 6) {
    napi_throw_type_error(env, NULL, usage);
    return NULL;
  }
  esp_table_t *table = get_table(env, argv[0]);
  uint32_t spi;
  js_batch_t batch;
  if (!table || !netctl_get_uint32(env, argv[1], &spi, usage) || !get_batch(env, argv + 2, false, &batch, usage))
    return NULL;
  esp_sa_t *sa = esp_table_find(table, ESP_OUTBOUND, spi);
  if (!sa) {
    char message[64];
    snprintf(message, sizeof message, "no outbound SA with SPI 0x%08x", spi);
    napi_throw_error(env, "ESP_UNKNOWN_SPI", message);
    return NULL;
  }
  esp_packet_t packets[BATCH_CHUNK];
  size_t sealed = 0;
  for (uint32_t first = 0; first < batch.count; first += BATCH_CHUNK) {
    uint32_t n = batch.count - first < BATCH_CHUNK ? batch.count - first : BATCH_CHUNK;
    if (!chunk_packets(env, &batch, first, n, packets)) return NULL;
    sealed += esp_seal_batch(sa, packets, n);
    for (uint32_t i = 0; i < n; i++) {
      batch.lengths[first + i] = packets[i].length;
      batch.results[first + i] = packets[i].result;
    }
  }
  napi_create_uint32(env, (uint32_t)sealed, &result);
  return result;
}

/*
 * espOpenBatch(table, buffers, lengths, results, tags, count, source?): opens buffers[i] (lengths[i] bytes) in
 * place, as datagrams from IPv4 `source` (none: unknown, which SAs bound to a sender refuse); on success
 * lengths[i] becomes the frame's length (at ESP_HEADER_LEN) and tags[i] the SA's tag; results[i] is the
 * esp_result_t. Returns how many were opened.
 */
static napi_value js_open_batch(napi_env env, napi_callback_info info) {
  static const char usage[] = "espOpenBatch(table, buffers: Uint8Array[], lengths: Uint32Array, results: Uint8Array, "
                              "tags: Uint32Array, count: number, source?: string)";
  size_t argc = 7;
  napi_value argv[7], result;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 6) {
    napi_throw_type_error(env, NULL, usage);
    return NULL;
  }
  esp_table_t *table = get_table(env, argv[0]);
  js_batch_t batch;
  uint32_t source = 0;
  if (!table || !get_batch(env, argv + 1, true, &batch, usage) || (argc > 6 && !get_ipv4(env, argv[6], &source))) return NULL;
  esp_packet_t packets[BATCH_CHUNK];
  size_t opened = 0;
  for (uint32_t first = 0; first < batch.count; first += BATCH_CHUNK) {
    uint32_t n = batch.count - first < BATCH_CHUNK ? batch.count - first : BATCH_CHUNK;
    if (!chunk_packets(env, &batch, first, n, packets)) return NULL;
    opened += esp_open_batch(table, packets, n, source);
    for (uint32_t i = 0; i < n; i++) {
      batch.lengths[first + i] = packets[i].length;
      batch.results[first + i] = packets[i].result;
      batch.tags[first + i] = packets[i].tag;
    }
  }
  napi_create_uint32(env, (uint32_t)opened, &result);
  return result;
}

/* The constants of esp.h that TypeScript needs, as `espLayout` (src/sys/esp.ts holds its own copy; a test compares). */
static napi_status register_layout(napi_env env, napi_value exports) {
  napi_value layout, value, results;
  napi_status status = napi_create_object(env, &layout);
#define EXPORT_CONSTANT(name)                                                                                      \
  if (status == napi_ok) status = napi_create_uint32(env, ESP_##name, &value);                                    \
  if (status == napi_ok) status = napi_set_named_property(env, layout, #name, value);
  EXPORT_CONSTANT(KEY_LEN)
  EXPORT_CONSTANT(SALT_LEN)
  EXPORT_CONSTANT(HEADER_LEN)
  EXPORT_CONSTANT(ICV_LEN)
  EXPORT_CONSTANT(TRAILER_LEN)
  EXPORT_CONSTANT(MIN_LEN)
  EXPORT_CONSTANT(MAX_OVERHEAD)
  EXPORT_CONSTANT(NEXT_HEADER_ETHERNET)
  EXPORT_CONSTANT(REPLAY_WINDOW)
#undef EXPORT_CONSTANT
  if (status == napi_ok) status = napi_create_array_with_length(env, ESP_RESULT_COUNT, &results);
  for (uint32_t i = 0; status == napi_ok && i < ESP_RESULT_COUNT; i++) {
    status = napi_create_string_utf8(env, result_names[i], NAPI_AUTO_LENGTH, &value);
    if (status == napi_ok) status = napi_set_element(env, results, i, value);
  }
  if (status == napi_ok) status = napi_set_named_property(env, layout, "results", results);
  if (status != napi_ok) return status;
  return napi_set_named_property(env, exports, "espLayout", layout);
}

napi_status netctl_register_esp(napi_env env, napi_value exports) {
  napi_property_descriptor properties[] = {
      {"espSelfTest", NULL, js_self_test, NULL, NULL, NULL, napi_enumerable, NULL},
      {"espTableCreate", NULL, js_table_create, NULL, NULL, NULL, napi_enumerable, NULL},
      {"espTableClose", NULL, js_table_close, NULL, NULL, NULL, napi_enumerable, NULL},
      {"espSaAdd", NULL, js_sa_add, NULL, NULL, NULL, napi_enumerable, NULL},
      {"espSaRemove", NULL, js_sa_remove, NULL, NULL, NULL, napi_enumerable, NULL},
      {"espSaCounters", NULL, js_sa_counters, NULL, NULL, NULL, napi_enumerable, NULL},
      {"espTableCounters", NULL, js_table_counters, NULL, NULL, NULL, napi_enumerable, NULL},
      {"espSealBatch", NULL, js_seal_batch, NULL, NULL, NULL, napi_enumerable, NULL},
      {"espOpenBatch", NULL, js_open_batch, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_status status = register_layout(env, exports);
  if (status != napi_ok) return status;
  return napi_define_properties(env, exports, sizeof properties / sizeof properties[0], properties);
}
