/*
 * The embedded DNS's replies, given again in the wake-up that read the
 * query, without calling JavaScript (shared/DESIGN.md, "Rules for the hot
 * path"). TypeScript answers a query itself and, when the reply is a
 * function of the query's bytes and the record table alone (one record or
 * none: nothing shuffled), stores it here keyed by the query's bytes after
 * its ID. A later query of the same bytes gets that reply under its own ID.
 * TypeScript empties the cache before a change of the table can be seen by
 * any query, so no reply outlives the records it came from; and counts the
 * replies given here (udpAnswersTaken) as answered queries.
 *
 * A two-way cache of ANSWER_SLOTS entries per socket (a query's hash picks
 * a pair of slots; a new reply takes the pair's empty or older one), made
 * when TypeScript first stores one: a stub resolver asks for a few names
 * again and again, and a miss only costs the JavaScript path it would have
 * taken.
 */
#define _GNU_SOURCE
#include "answers.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* A power of two. */
#define ANSWER_SLOTS 256
/* The longest query (after its ID) and reply kept: a stub's common question and its answer are far shorter. */
#define ANSWER_MAX 512
/* Replies queued for one sendmmsg. */
#define ANSWER_BATCH 16
#define DNS_HEADER 12

typedef struct {
  /* When it was stored: of a full pair, the older goes. */
  uint64_t stamp;
  uint32_t hash;
  uint16_t key_len;
  uint16_t reply_len;
  /* key_len bytes of query (after the ID), then reply_len bytes of reply. */
  uint8_t bytes[];
} answer_t;

struct answer_table {
  answer_t *slots[ANSWER_SLOTS];
  uint64_t stores;
  /* Replies given since udpAnswersTaken last read them. */
  double taken;
  uint32_t queued;
  struct mmsghdr msgs[ANSWER_BATCH];
  struct iovec iovs[ANSWER_BATCH];
  netctl_addr_t addrs[ANSWER_BATCH];
  uint8_t replies[ANSWER_BATCH][ANSWER_MAX];
};

/* FNV-1a: a handful of bytes per query, spread well enough for ANSWER_SLOTS. */
static uint32_t hash_of(const uint8_t *bytes, size_t len) {
  uint32_t hash = 2166136261u;
  for (size_t i = 0; i < len; i++) hash = (hash ^ bytes[i]) * 16777619u;
  return hash;
}

/* A datagram of `len` bytes can be a key: more than a DNS header, and no more than ANSWER_MAX after its ID. */
static bool keyable(size_t len) { return len > DNS_HEADER && len - 2 <= ANSWER_MAX; }

static bool holds(const answer_t *answer, const uint8_t *key, size_t key_len, uint32_t hash) {
  return answer && answer->hash == hash && answer->key_len == key_len && memcmp(answer->bytes, key, key_len) == 0;
}

/* The pair of slots a hash may be in: the first of them. */
static answer_t **pair_of(answer_table_t *table, uint32_t hash) { return &table->slots[hash & (ANSWER_SLOTS - 2)]; }

static answer_t *find(answer_table_t *table, const uint8_t *key, size_t key_len, uint32_t hash) {
  answer_t **pair = pair_of(table, hash);
  if (holds(pair[0], key, key_len, hash)) return pair[0];
  if (holds(pair[1], key, key_len, hash)) return pair[1];
  return NULL;
}

static void clear(answer_table_t *table) {
  for (int i = 0; i < ANSWER_SLOTS; i++) {
    free(table->slots[i]);
    table->slots[i] = NULL;
  }
}

void netctl_answers_flush(answer_table_t *table, int fd) {
  uint32_t done = 0;
  while (done < table->queued) {
    int n = sendmmsg(fd, table->msgs + done, table->queued - done, MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) continue;
      /* A full send buffer or a closed peer: the rest are lost, as datagrams may be; the stub asks again. */
      break;
    }
    done += (uint32_t)n;
  }
  table->queued = 0;
}

bool netctl_answers_take(answer_table_t *table, const uint8_t *query, size_t len, const netctl_addr_t *from, socklen_t from_len,
                         int fd) {
  if (!keyable(len)) return false;
  const uint8_t *key = query + 2;
  size_t key_len = len - 2;
  answer_t *answer = find(table, key, key_len, hash_of(key, key_len));
  if (!answer) return false;
  if (table->queued == ANSWER_BATCH) netctl_answers_flush(table, fd);
  uint32_t i = table->queued++;
  uint8_t *reply = table->replies[i];
  memcpy(reply, answer->bytes + answer->key_len, answer->reply_len);
  reply[0] = query[0];
  reply[1] = query[1];
  table->addrs[i] = *from;
  table->iovs[i].iov_base = reply;
  table->iovs[i].iov_len = answer->reply_len;
  struct msghdr *hdr = &table->msgs[i].msg_hdr;
  memset(hdr, 0, sizeof *hdr);
  hdr->msg_name = &table->addrs[i];
  hdr->msg_namelen = from_len;
  hdr->msg_iov = &table->iovs[i];
  hdr->msg_iovlen = 1;
  table->taken++;
  return true;
}

void netctl_answers_free(answer_table_t *table) {
  if (!table) return;
  clear(table);
  free(table);
}

static answer_table_t *table_of(udp_t *udp) {
  answer_table_t *table = netctl_udp_answers(udp);
  if (!table) {
    table = calloc(1, sizeof *table);
    if (table) netctl_udp_set_answers(udp, table);
  }
  return table;
}

/* Reads `value` as the bytes [start, end) of a buffer; throws (usage) and returns false when they are not in it. */
static bool get_range(napi_env env, napi_value buffer, napi_value start_value, napi_value end_value, const uint8_t **data,
                      size_t *len, const char *usage) {
  uint8_t *bytes;
  size_t size;
  uint32_t start, end;
  if (!netctl_get_bytes(env, buffer, &bytes, &size, usage) || !netctl_get_uint32(env, start_value, &start, usage) ||
      !netctl_get_uint32(env, end_value, &end, usage))
    return false;
  if (start > end || end > size) {
    napi_throw_range_error(env, NULL, "the range is not inside the buffer");
    return false;
  }
  *data = bytes + start;
  *len = end - start;
  return true;
}

/* udpAnswersStore(udp, query, start, end, reply, replyStart, replyEnd) -> boolean: false when either is too long to keep. */
static napi_value answers_store(napi_env env, napi_callback_info info) {
  size_t argc = 7;
  napi_value argv[7];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  const char *usage =
      "udpAnswersStore(udp, query: Uint8Array, start: number, end: number, reply: Uint8Array, replyStart: number, replyEnd: number)";
  if (argc < 7) {
    napi_throw_type_error(env, NULL, usage);
    return NULL;
  }
  udp_t *udp = netctl_udp_get(env, argv[0]);
  const uint8_t *query, *reply;
  size_t query_len, reply_len;
  if (!udp || !get_range(env, argv[1], argv[2], argv[3], &query, &query_len, usage) ||
      !get_range(env, argv[4], argv[5], argv[6], &reply, &reply_len, usage))
    return NULL;
  napi_value result;
  if (!keyable(query_len) || reply_len < DNS_HEADER || reply_len > ANSWER_MAX) {
    napi_get_boolean(env, false, &result);
    return result;
  }
  answer_table_t *table = table_of(udp);
  answer_t *answer = table ? malloc(sizeof *answer + (query_len - 2) + reply_len) : NULL;
  if (!answer) return netctl_throw_errno(env, ENOMEM, "malloc", NULL);
  answer->key_len = (uint16_t)(query_len - 2);
  answer->reply_len = (uint16_t)reply_len;
  answer->hash = hash_of(query + 2, answer->key_len);
  memcpy(answer->bytes, query + 2, answer->key_len);
  memcpy(answer->bytes + answer->key_len, reply, reply_len);
  answer->stamp = ++table->stores;
  answer_t **pair = pair_of(table, answer->hash);
  /* The same query's old reply, else an empty slot, else the older of the two. */
  answer_t **slot;
  if (holds(pair[0], answer->bytes, answer->key_len, answer->hash))
    slot = &pair[0];
  else if (!pair[1] || holds(pair[1], answer->bytes, answer->key_len, answer->hash))
    slot = &pair[1];
  else if (!pair[0])
    slot = &pair[0];
  else
    slot = pair[1]->stamp < pair[0]->stamp ? &pair[1] : &pair[0];
  free(*slot);
  *slot = answer;
  napi_get_boolean(env, true, &result);
  return result;
}

/* The table of the socket that is a call's one argument (NULL when it has none yet); false, having
 * thrown, when the argument is missing or not an open socket. */
static bool table_argument(napi_env env, napi_callback_info info, const char *usage, answer_table_t **table) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 1) {
    napi_throw_type_error(env, NULL, usage);
    return false;
  }
  udp_t *udp = netctl_udp_get(env, argv[0]);
  if (!udp) return false;
  *table = netctl_udp_answers(udp);
  return true;
}

/* udpAnswersClear(udp): forgets every reply; takes effect before it returns. */
static napi_value answers_clear(napi_env env, napi_callback_info info) {
  answer_table_t *table;
  if (table_argument(env, info, "udpAnswersClear(udp)", &table) && table) clear(table);
  return NULL;
}

/* udpAnswersTaken(udp) -> number: replies given since the last call. */
static napi_value answers_taken(napi_env env, napi_callback_info info) {
  answer_table_t *table;
  if (!table_argument(env, info, "udpAnswersTaken(udp)", &table)) return NULL;
  double taken = table ? table->taken : 0;
  if (table) table->taken = 0;
  napi_value result;
  napi_create_double(env, taken, &result);
  return result;
}

napi_status netctl_register_answers(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"udpAnswersStore", NULL, answers_store, NULL, NULL, NULL, napi_enumerable, NULL},
      {"udpAnswersClear", NULL, answers_clear, NULL, NULL, NULL, napi_enumerable, NULL},
      {"udpAnswersTaken", NULL, answers_taken, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  return napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
