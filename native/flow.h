/*
 * The fast path (flow.c) and what it uses of tap.c and udp.c: a flow cache
 * that TypeScript fills and empties, and that moves frames from a TAP to the
 * underlay and datagrams from the underlay to a TAP without waking
 * JavaScript (shared/DESIGN.md, "Rules for the hot path").
 */
#ifndef NETCTL_FLOW_H
#define NETCTL_FLOW_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "addon.h"
#include "esp.h"
#include "offload.h"
#include "socket.h"

typedef struct tap tap_t;
typedef struct udp udp_t;
typedef struct flow_table flow_table_t;
typedef struct flow_network flow_network_t;

/* Where a receive hands on the runs it does not take itself; false stops it. */
typedef bool (*run_sink_t)(void *context, const uint8_t *data, size_t len, uint32_t segment_size, uint32_t flags);

/* udp.c */
udp_t *netctl_udp_get(napi_env env, napi_value value);
flow_table_t *netctl_udp_flows(udp_t *udp);
void netctl_udp_set_flows(udp_t *udp, flow_table_t *flows);
/* The outbound SA with `spi`, when it has sequence numbers to spare for any one send; else NULL. */
esp_sa_t *netctl_udp_outbound_sa(udp_t *udp, uint32_t spi);
int netctl_udp_send_frames(udp_t *udp, const uint8_t *prefix, size_t prefix_len, const offload_frame_t *frames, uint32_t count,
                           bool vnet_hdr, const netctl_addr_t *dest, socklen_t dest_len, bool remote_csum, esp_sa_t *sa,
                           uint32_t *datagrams, uint32_t *sent);

/* tap.c */
tap_t *netctl_tap_get(napi_env env, napi_value value);
bool netctl_tap_vnet_hdr(const tap_t *tap);
flow_network_t *netctl_tap_flow(const tap_t *tap);
void netctl_tap_set_flow(tap_t *tap, flow_network_t *network);
int netctl_tap_write_frames(tap_t *tap, offload_frame_t *frames, uint32_t count, uint32_t *written);

/* flow.c */
/* Takes the frames of a TAP wake-up it can forward (frame i: lengths[i] bytes at arena + i * stride,
 * each with a virtio_net_hdr), sends them, and marks them in taken[]; returns how many it took. */
uint32_t netctl_flow_from_tap(flow_network_t *network, uint8_t *arena, size_t stride, const size_t *lengths, uint32_t count,
                              bool *taken);
/* Takes the datagrams of a receive (a GRO run of `size`, or one) it can forward, queueing their frames
 * for their TAPs (netctl_flow_write_pending), and hands the rest to `miss` in runs, in order. */
bool netctl_flow_from_underlay(flow_table_t *table, const uint8_t *data, size_t len, uint32_t size, uint32_t flags,
                               const netctl_addr_t *from, run_sink_t miss, void *context);
/* Writes the frames queued by netctl_flow_from_underlay: before their memory is reused, and before
 * JavaScript runs (it may detach a network). */
void netctl_flow_write_pending(flow_table_t *table);
/* The socket is closing: every network is detached. */
void netctl_flow_close(flow_table_t *table);
/* The socket is freed. */
void netctl_flow_free(flow_table_t *table);
/* The TAP is closing: its network leaves the table. */
void netctl_flow_detach_network(flow_network_t *network);

#endif
