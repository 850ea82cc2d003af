/*
 * Replies the embedded DNS already gave, given again without waking
 * JavaScript (answers.c): the decision is TypeScript's, the addon replays it.
 */
#ifndef NETCTL_ANSWERS_H
#define NETCTL_ANSWERS_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "addon.h"
#include "socket.h"

typedef struct answer_table answer_table_t;
typedef struct udp udp_t;

/* udp.c */
udp_t *netctl_udp_get(napi_env env, napi_value value);
answer_table_t *netctl_udp_answers(udp_t *udp);
void netctl_udp_set_answers(udp_t *udp, answer_table_t *answers);

/* answers.c */
/* Queues the stored reply to `query` (len bytes from `from`) with the query's ID; false when none is stored.
 * A full queue is sent on `fd` first. */
bool netctl_answers_take(answer_table_t *table, const uint8_t *query, size_t len, const netctl_addr_t *from, socklen_t from_len,
                         int fd);
/* Sends the queued replies on `fd` (best effort, as UDP). */
void netctl_answers_flush(answer_table_t *table, int fd);
void netctl_answers_free(answer_table_t *table);

#endif
