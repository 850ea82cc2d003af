/*
 * The fast path: per overlay network a flow cache keyed by MAC, which the
 * VTEP in TypeScript fills with decisions it has made (frames to this MAC go
 * to that VTEP, within this frame limit, sealed with this SA) and empties
 * whenever they may no longer hold, as Open vSwitch's datapath serves
 * ovs-vswitchd. The underlay socket owns the table (udp.c); each network's
 * TAP points at its entry in it (tap.c).
 *
 * From a TAP: a unicast IPv4 or IPv6 frame (never ARP or ICMPv6, which may
 * want an answer) to a cached MAC that fits the frame limit is sent here,
 * exactly as the send path in send.ts would (VXLAN header, remote checksum,
 * segmentation, sealing). From the underlay: a datagram of a cached network
 * whose inner source MAC is cached as behind the VTEP it came from is
 * written to the TAP with the checksum state receive.ts would give it.
 * Anything else goes up to JavaScript unchanged, which decides and may fill
 * the cache. Counters go to a Float64Array JavaScript reads.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "batch_layout.h"
#include "flow.h"

#define ETHERNET_HEADER_LEN 14
#define ETHERTYPE_IPV4 0x0800
#define ETHERTYPE_IPV6 0x86dd
#define IPV6_HEADER_LEN 40
#define IPV6_NEXT_HEADER 6
#define IPPROTO_ICMPV6_NUMBER 58
#define VXLAN_HEADER_LEN 8
#define VXLAN_FLAG_I 0x08
#define TCP_CHECKSUM_OFFSET 16
#define UDP_CHECKSUM_OFFSET 6
#define FLOW_EMPTY UINT64_MAX
#define FLOW_MIN_CAPACITY 16

typedef struct {
  uint64_t mac; /* FLOW_EMPTY: a free slot */
  netctl_addr_t dest;
  socklen_t dest_len;
  uint32_t vtep; /* the VTEP's IPv4, host order: datagrams from the MAC must come from it */
  uint32_t frame_limit;
  uint32_t spi; /* 0: plain */
  uint32_t slot;
  bool remote_csum;
} flow_entry_t;

struct flow_network {
  flow_table_t *table;
  tap_t *tap;
  napi_ref tap_ref; /* the TAP's handle, held while attached */
  uint32_t vni;
  uint8_t header[VXLAN_HEADER_LEN];
  bool encrypted;
  uint32_t max_frame;
  uint32_t slot;
  /* Open addressing, linear probing, at most half full. */
  flow_entry_t *entries;
  uint32_t capacity, count;
  /* Frames of the current underlay receive for the TAP. */
  offload_frame_t *inbound;
  uint32_t inbound_count, inbound_cap;
  bool touched;
};

/* The hits of one TAP wake-up to one destination. */
typedef struct {
  const flow_entry_t *entry;
  esp_sa_t *sa;
  uint32_t count;
  double bytes;
  offload_frame_t frames[NETCTL_TAP_BATCH];
} flow_group_t;

struct flow_table {
  udp_t *udp;
  napi_env env;
  flow_network_t **networks;
  uint32_t network_count, network_cap;
  flow_network_t **touched;
  uint32_t touched_count;
  double *counters;
  size_t counters_len;
  napi_ref counters_ref;
  flow_group_t *groups; /* NETCTL_TAP_BATCH, made on first use */
};

static inline void add_count(flow_table_t *table, uint32_t slot, int field, double value) {
  size_t at = (size_t)slot * NETCTL_FLOW_FIELDS + (size_t)field;
  if (at < table->counters_len) table->counters[at] += value;
}

static inline uint64_t read_mac(const uint8_t *p) {
  return (uint64_t)p[0] << 40 | (uint64_t)p[1] << 32 | (uint64_t)p[2] << 24 | (uint64_t)p[3] << 16 | (uint64_t)p[4] << 8 | p[5];
}

static inline uint32_t mac_home(uint64_t mac, uint32_t capacity) {
  return (uint32_t)((mac * 0x9E3779B97F4A7C15ull) >> 32) & (capacity - 1);
}

static flow_entry_t *lookup(const flow_network_t *network, uint64_t mac) {
  if (network->count == 0) return NULL;
  uint32_t mask = network->capacity - 1;
  for (uint32_t i = mac_home(mac, network->capacity);; i = (i + 1) & mask) {
    flow_entry_t *entry = &network->entries[i];
    if (entry->mac == mac) return entry;
    if (entry->mac == FLOW_EMPTY) return NULL;
  }
}

/* The slot for `mac`: its entry, or the free slot it would take. */
static flow_entry_t *slot_for(flow_entry_t *entries, uint32_t capacity, uint64_t mac) {
  uint32_t mask = capacity - 1;
  for (uint32_t i = mac_home(mac, capacity);; i = (i + 1) & mask)
    if (entries[i].mac == mac || entries[i].mac == FLOW_EMPTY) return &entries[i];
}

static bool grow(flow_network_t *network) {
  uint32_t capacity = network->capacity ? network->capacity * 2 : FLOW_MIN_CAPACITY;
  flow_entry_t *entries = malloc(capacity * sizeof *entries);
  if (!entries) return false;
  for (uint32_t i = 0; i < capacity; i++) entries[i].mac = FLOW_EMPTY;
  for (uint32_t i = 0; i < network->capacity; i++)
    if (network->entries[i].mac != FLOW_EMPTY) *slot_for(entries, capacity, network->entries[i].mac) = network->entries[i];
  free(network->entries);
  network->entries = entries;
  network->capacity = capacity;
  return true;
}

/* Removes `mac`, moving later entries of its probe run back so that lookups still find them. */
static void forget(flow_network_t *network, uint64_t mac) {
  flow_entry_t *entry = lookup(network, mac);
  if (!entry) return;
  uint32_t mask = network->capacity - 1;
  uint32_t hole = (uint32_t)(entry - network->entries);
  network->entries[hole].mac = FLOW_EMPTY;
  network->count--;
  for (uint32_t next = (hole + 1) & mask; network->entries[next].mac != FLOW_EMPTY; next = (next + 1) & mask) {
    uint32_t home = mac_home(network->entries[next].mac, network->capacity);
    /* It stays when its home lies cyclically in (hole, next]. */
    bool stays = hole <= next ? (hole < home && home <= next) : (hole < home || home <= next);
    if (stays) continue;
    network->entries[hole] = network->entries[next];
    network->entries[next].mac = FLOW_EMPTY;
    hole = next;
  }
}

static void flush(flow_network_t *network) {
  for (uint32_t i = 0; i < network->capacity; i++) network->entries[i].mac = FLOW_EMPTY;
  network->count = 0;
}

static flow_network_t *find_network(const flow_table_t *table, uint32_t vni) {
  for (uint32_t i = 0; i < table->network_count; i++)
    if (table->networks[i]->vni == vni) return table->networks[i];
  return NULL;
}

/* ---- TAP to underlay ---- */

/* The entry a frame read from a TAP (virtio_net_hdr first) goes out by, or NULL when JavaScript must decide. */
static const flow_entry_t *tap_hit(const flow_network_t *network, const uint8_t *frame, size_t len) {
  if (len < VNET_HDR_LEN + ETHERNET_HEADER_LEN) return NULL;
  bool gso = frame[1] != 0;
  if (!gso && len - VNET_HDR_LEN > network->max_frame) return NULL;
  const uint8_t *ethernet = frame + VNET_HDR_LEN;
  /* Broadcast and multicast are flooded. */
  if (ethernet[0] & 1) return NULL;
  uint16_t type = (uint16_t)(ethernet[12] << 8 | ethernet[13]);
  /* ARP and ICMPv6 (neighbour discovery) may be answered from the peer table; tagged frames and the rest go up too. */
  if (type == ETHERTYPE_IPV6) {
    if (len <= VNET_HDR_LEN + ETHERNET_HEADER_LEN + IPV6_HEADER_LEN ||
        ethernet[ETHERNET_HEADER_LEN + IPV6_NEXT_HEADER] == IPPROTO_ICMPV6_NUMBER)
      return NULL;
  } else if (type != ETHERTYPE_IPV4) {
    return NULL;
  }
  const flow_entry_t *entry = lookup(network, read_mac(ethernet));
  if (!entry) return NULL;
  /* The longest frame it makes on the wire (mtu.ts largestFrame): a super-frame's segments, or itself. */
  size_t largest = len - VNET_HDR_LEN;
  if (gso) {
    size_t tcp_offset = (size_t)(frame[6] | frame[7] << 8);
    size_t tcp = VNET_HDR_LEN + tcp_offset;
    if (tcp + 12 >= len) return NULL;
    size_t segment = tcp_offset + (size_t)(frame[tcp + 12] >> 4) * 4 + (size_t)(frame[4] | frame[5] << 8);
    if (segment < largest) largest = segment;
  }
  /* Too big for the path: JavaScript fragments it or answers as a router. */
  if (largest > entry->frame_limit) return NULL;
  return entry;
}

uint32_t netctl_flow_from_tap(flow_network_t *network, uint8_t *arena, size_t stride, const size_t *lengths, uint32_t count,
                              bool *taken) {
  flow_table_t *table = network->table;
  if (network->count == 0) {
    memset(taken, 0, count * sizeof *taken);
    return 0;
  }
  if (!table->groups && !(table->groups = malloc(NETCTL_TAP_BATCH * sizeof *table->groups))) {
    memset(taken, 0, count * sizeof *taken);
    return 0;
  }
  uint32_t groups = 0, hits = 0;
  for (uint32_t i = 0; i < count; i++) {
    const uint8_t *frame = arena + (size_t)i * stride;
    const flow_entry_t *entry = tap_hit(network, frame, lengths[i]);
    esp_sa_t *sa = NULL;
    /* Without an SA to spare, JavaScript drops and counts it: never a frame in clear. */
    if (entry && entry->spi != 0 && !(sa = netctl_udp_outbound_sa(table->udp, entry->spi))) entry = NULL;
    taken[i] = entry != NULL;
    if (!entry) continue;
    flow_group_t *group = NULL;
    for (uint32_t g = 0; g < groups && !group; g++) {
      const flow_entry_t *other = table->groups[g].entry;
      if (other->vtep == entry->vtep && other->spi == entry->spi && other->remote_csum == entry->remote_csum &&
          other->slot == entry->slot)
        group = &table->groups[g];
    }
    if (!group) {
      group = &table->groups[groups++];
      group->entry = entry;
      group->sa = sa;
      group->count = 0;
      group->bytes = 0;
    }
    group->frames[group->count].data = frame;
    group->frames[group->count].len = lengths[i];
    group->count++;
    group->bytes += (double)(lengths[i] - VNET_HDR_LEN);
    hits++;
  }
  add_count(table, network->slot, NETCTL_FLOW_NET_RX_FRAMES, hits);
  for (uint32_t g = 0; g < groups; g++) {
    flow_group_t *group = &table->groups[g];
    const flow_entry_t *entry = group->entry;
    uint32_t datagrams = 0, sent = 0;
    /* A socket error is counted as datagrams not taken, as the underlay port does. */
    netctl_udp_send_frames(table->udp, network->header, VXLAN_HEADER_LEN, group->frames, group->count, true, &entry->dest,
                           entry->dest_len, entry->remote_csum, group->sa, &datagrams, &sent);
    add_count(table, entry->slot, NETCTL_FLOW_REMOTE_TX_DATAGRAMS, datagrams);
    add_count(table, entry->slot, NETCTL_FLOW_REMOTE_TX_BYTES, group->bytes);
    add_count(table, 0, NETCTL_FLOW_SEND_DROPPED, datagrams - sent);
  }
  return hits;
}

/* ---- underlay to TAP ---- */

/* The network a datagram's frame is for when the fast path may take it, with its checksum state; else NULL. */
static flow_network_t *underlay_hit(const flow_table_t *table, const uint8_t *datagram, size_t len, uint32_t flags,
                                    uint32_t source, const flow_entry_t **sender, uint8_t *checksum) {
  if (len < VXLAN_HEADER_LEN + ETHERNET_HEADER_LEN || !(datagram[0] & VXLAN_FLAG_I)) return NULL;
  uint32_t vni = (uint32_t)datagram[4] << 16 | (uint32_t)datagram[5] << 8 | datagram[6];
  flow_network_t *network = find_network(table, vni);
  if (!network || len - VXLAN_HEADER_LEN > network->max_frame) return NULL;
  /* An encrypted network takes only what its SAs opened, a plain one nothing sealed. */
  if (((flags & NETCTL_DATAGRAM_SEALED) != 0) != network->encrypted) return NULL;
  const flow_entry_t *entry = lookup(network, read_mac(datagram + VXLAN_HEADER_LEN + 6));
  if (!entry || entry->vtep != source) return NULL;
  *sender = entry;
  *checksum = OFFLOAD_CSUM_TRUSTED;
  if (datagram[VXLAN_RCO_FLAG_BYTE] & VXLAN_RCO_FLAG) {
    uint8_t rco = datagram[VXLAN_RCO_START_BYTE];
    size_t start = 2 * (size_t)(rco & ~VXLAN_RCO_UDP);
    size_t field = start + ((rco & VXLAN_RCO_UDP) ? UDP_CHECKSUM_OFFSET : TCP_CHECKSUM_OFFSET);
    if (start < ETHERNET_HEADER_LEN || field + 2 > len - VXLAN_HEADER_LEN) return NULL;
    *checksum = rco;
  }
  return network;
}

static bool queue_inbound(flow_network_t *network, const uint8_t *frame, size_t len, uint8_t checksum) {
  if (network->inbound_count == network->inbound_cap) {
    uint32_t cap = network->inbound_cap ? network->inbound_cap * 2 : 256;
    offload_frame_t *grown = realloc(network->inbound, cap * sizeof *grown);
    if (!grown) return false;
    network->inbound = grown;
    network->inbound_cap = cap;
  }
  offload_frame_t *queued = &network->inbound[network->inbound_count++];
  queued->data = frame;
  queued->len = len;
  queued->checksum = checksum;
  return true;
}

bool netctl_flow_from_underlay(flow_table_t *table, const uint8_t *data, size_t len, uint32_t size, uint32_t flags,
                               const netctl_addr_t *from, run_sink_t miss, void *context) {
  if (table->network_count == 0 || from->sa.sa_family != AF_INET) return miss(context, data, len, size, flags);
  uint32_t source = ntohl(from->in4.sin_addr.s_addr);
  size_t step = size ? size : len;
  /* The datagrams not taken since the last one taken: handed on as one run. */
  size_t miss_start = 0, miss_count = 0;
  for (size_t at = 0; at < len; at += step) {
    size_t piece = len - at < step ? len - at : step;
    uint8_t checksum;
    const flow_entry_t *entry;
    flow_network_t *network = underlay_hit(table, data + at, piece, flags, source, &entry, &checksum);
    if (network && queue_inbound(network, data + at + VXLAN_HEADER_LEN, piece - VXLAN_HEADER_LEN, checksum)) {
      if (!network->touched) {
        network->touched = true;
        table->touched[table->touched_count++] = network;
      }
      add_count(table, entry->slot, NETCTL_FLOW_REMOTE_RX_DATAGRAMS, 1);
      add_count(table, entry->slot, NETCTL_FLOW_REMOTE_RX_BYTES, (double)(piece - VXLAN_HEADER_LEN));
      if (miss_count > 0) {
        if (!miss(context, data + miss_start, at - miss_start, miss_count > 1 ? (uint32_t)step : 0, flags)) return false;
        miss_count = 0;
      }
      continue;
    }
    if (miss_count++ == 0) miss_start = at;
  }
  return miss_count == 0 || miss(context, data + miss_start, len - miss_start, miss_count > 1 ? (uint32_t)step : 0, flags);
}

void netctl_flow_write_pending(flow_table_t *table) {
  for (uint32_t i = 0; i < table->touched_count; i++) {
    flow_network_t *network = table->touched[i];
    uint32_t written = 0;
    /* An error other than a full queue is counted as frames not written, as writeToPort does. */
    netctl_tap_write_frames(network->tap, network->inbound, network->inbound_count, &written);
    add_count(table, network->slot, NETCTL_FLOW_NET_TX_FRAMES, written);
    add_count(table, network->slot, NETCTL_FLOW_NET_DROP_WRITE_FAILED, network->inbound_count - written);
    network->inbound_count = 0;
    network->touched = false;
  }
  table->touched_count = 0;
}

/* ---- attach and detach ---- */

static void free_network(flow_table_t *table, flow_network_t *network) {
  netctl_tap_set_flow(network->tap, NULL);
  napi_delete_reference(table->env, network->tap_ref);
  free(network->entries);
  free(network->inbound);
  free(network);
}

/* Removes the network at `index` from the table. Frames it queued are written first. */
static void remove_network(flow_table_t *table, uint32_t index) {
  netctl_flow_write_pending(table);
  flow_network_t *network = table->networks[index];
  table->networks[index] = table->networks[--table->network_count];
  free_network(table, network);
}

void netctl_flow_detach_network(flow_network_t *network) {
  flow_table_t *table = network->table;
  for (uint32_t i = 0; i < table->network_count; i++)
    if (table->networks[i] == network) {
      remove_network(table, i);
      return;
    }
}

void netctl_flow_close(flow_table_t *table) {
  while (table->network_count > 0) remove_network(table, table->network_count - 1);
  if (table->counters_ref) {
    napi_delete_reference(table->env, table->counters_ref);
    table->counters_ref = NULL;
  }
  table->counters = NULL;
  table->counters_len = 0;
}

void netctl_flow_free(flow_table_t *table) {
  if (!table) return;
  netctl_flow_close(table);
  free(table->networks);
  free(table->touched);
  free(table->groups);
  free(table);
}

static flow_table_t *table_of(napi_env env, udp_t *udp) {
  flow_table_t *table = netctl_udp_flows(udp);
  if (table) return table;
  if (!(table = calloc(1, sizeof *table))) return NULL;
  table->udp = udp;
  table->env = env;
  netctl_udp_set_flows(udp, table);
  return table;
}

/* ---- JavaScript ---- */

static bool get_vni(napi_env env, napi_value value, uint32_t *vni, const char *usage) {
  if (!netctl_get_uint32(env, value, vni, usage)) return false;
  if (*vni > 0xffffff) {
    napi_throw_range_error(env, NULL, "VNI beyond 24 bits");
    return false;
  }
  return true;
}

static bool get_mac(napi_env env, napi_value value, uint64_t *mac, const char *usage) {
  int64_t number;
  if (napi_get_value_int64(env, value, &number) != napi_ok || number < 0 || number > 0xffffffffffffLL) {
    napi_throw_type_error(env, NULL, usage);
    return false;
  }
  *mac = (uint64_t)number;
  return true;
}

/* udpFlowAttach(udp, vni, tap, header, encrypted, maxFrame, slot) -> boolean: the fast path serves `vni`
 * between the socket and the TAP (which must have IFF_VNET_HDR; false, and nothing done, when it has not),
 * with an empty cache; `header` is its VXLAN header, `slot` its counters'. */
static napi_value flow_attach(napi_env env, napi_callback_info info) {
  size_t argc = 7;
  napi_value argv[7];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  const char *usage =
      "udpFlowAttach(udp, vni: number, tap, header: Uint8Array(8), encrypted: boolean, maxFrame: number, slot: number)";
  uint32_t vni, max_frame, slot;
  uint8_t *header;
  size_t header_len;
  bool encrypted;
  if (argc < 7) {
    napi_throw_type_error(env, NULL, usage);
    return NULL;
  }
  udp_t *udp = netctl_udp_get(env, argv[0]);
  if (!udp || !get_vni(env, argv[1], &vni, usage)) return NULL;
  tap_t *tap = netctl_tap_get(env, argv[2]);
  if (!tap || !netctl_get_bytes(env, argv[3], &header, &header_len, usage) || !netctl_get_bool(env, argv[4], &encrypted, usage) ||
      !netctl_get_uint32(env, argv[5], &max_frame, usage) || !netctl_get_uint32(env, argv[6], &slot, usage))
    return NULL;
  if (header_len != VXLAN_HEADER_LEN) {
    napi_throw_range_error(env, NULL, "the VXLAN header is 8 bytes");
    return NULL;
  }
  napi_value result;
  if (!netctl_tap_vnet_hdr(tap)) {
    napi_get_boolean(env, false, &result);
    return result;
  }
  flow_table_t *table = table_of(env, udp);
  if (!table) return netctl_throw_errno(env, ENOMEM, "calloc", NULL);
  if (find_network(table, vni) || netctl_tap_flow(tap)) {
    napi_throw_error(env, "ERR_FLOW_ATTACHED", "the VNI or the TAP is attached already");
    return NULL;
  }
  if (table->network_count == table->network_cap) {
    uint32_t cap = table->network_cap ? table->network_cap * 2 : 8;
    flow_network_t **networks = realloc(table->networks, cap * sizeof *networks);
    if (networks) table->networks = networks;
    flow_network_t **touched = networks ? realloc(table->touched, cap * sizeof *touched) : NULL;
    if (touched) table->touched = touched;
    if (!networks || !touched) return netctl_throw_errno(env, ENOMEM, "realloc", NULL);
    table->network_cap = cap;
  }
  flow_network_t *network = calloc(1, sizeof *network);
  if (!network || !grow(network)) {
    free(network);
    return netctl_throw_errno(env, ENOMEM, "malloc", NULL);
  }
  network->table = table;
  network->tap = tap;
  network->vni = vni;
  memcpy(network->header, header, VXLAN_HEADER_LEN);
  network->encrypted = encrypted;
  network->max_frame = max_frame;
  network->slot = slot;
  napi_create_reference(env, argv[2], 1, &network->tap_ref);
  netctl_tap_set_flow(tap, network);
  table->networks[table->network_count++] = network;
  napi_get_boolean(env, true, &result);
  return result;
}

/* The attached network `vni` of the socket in argv[0], or NULL (nothing thrown) when there is none. */
static flow_network_t *network_arg(napi_env env, napi_value *argv, uint32_t *vni, const char *usage, bool *failed) {
  *failed = true;
  udp_t *udp = netctl_udp_get(env, argv[0]);
  if (!udp || !get_vni(env, argv[1], vni, usage)) return NULL;
  *failed = false;
  flow_table_t *table = netctl_udp_flows(udp);
  return table ? find_network(table, *vni) : NULL;
}

/* udpFlowDetach(udp, vni): the fast path no longer serves `vni` (unknown ones are ignored). */
static napi_value flow_detach(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  const char *usage = "udpFlowDetach(udp, vni: number)";
  uint32_t vni;
  bool failed;
  if (argc < 2) {
    napi_throw_type_error(env, NULL, usage);
    return NULL;
  }
  flow_network_t *network = network_arg(env, argv, &vni, usage, &failed);
  if (network) netctl_flow_detach_network(network);
  return NULL;
}

/* udpFlowInstall(udp, vni, mac, address, port, frameLimit, spi, remoteChecksum, slot) -> boolean: frames of `vni`
 * to `mac` go to address:port (sealed with outbound SA `spi` unless 0; with RCO when remoteChecksum) if no longer
 * than frameLimit, and datagrams from `address` with source `mac` go to the TAP; `slot` counts them. False when
 * `vni` is not attached. */
static napi_value flow_install(napi_env env, napi_callback_info info) {
  size_t argc = 9;
  napi_value argv[9];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  const char *usage =
      "udpFlowInstall(udp, vni: number, mac: number, address: string, port: number, frameLimit: number, spi: number, "
      "remoteChecksum: boolean, slot: number)";
  uint32_t vni, port, frame_limit, spi, slot;
  uint64_t mac;
  char text[INET_ADDRSTRLEN + 1];
  size_t text_len;
  bool remote_csum, failed;
  if (argc < 9) {
    napi_throw_type_error(env, NULL, usage);
    return NULL;
  }
  flow_network_t *network = network_arg(env, argv, &vni, usage, &failed);
  if (failed || !get_mac(env, argv[2], &mac, usage) || !netctl_get_string(env, argv[3], text, sizeof text, &text_len, usage) ||
      !netctl_get_uint32(env, argv[4], &port, usage) || !netctl_get_uint32(env, argv[5], &frame_limit, usage) ||
      !netctl_get_uint32(env, argv[6], &spi, usage) || !netctl_get_bool(env, argv[7], &remote_csum, usage) ||
      !netctl_get_uint32(env, argv[8], &slot, usage))
    return NULL;
  netctl_addr_t dest;
  socklen_t dest_len = port == 0 || port > 65535 ? 0 : netctl_parse_address(AF_INET, text, (uint16_t)port, &dest);
  if (dest_len == 0) {
    napi_throw_range_error(env, NULL, "the VTEP must be an IPv4 address and a port");
    return NULL;
  }
  napi_value result;
  napi_get_boolean(env, network != NULL, &result);
  if (!network) return result;
  if (!lookup(network, mac) && (network->count + 1) * 2 > network->capacity && !grow(network))
    return netctl_throw_errno(env, ENOMEM, "malloc", NULL);
  flow_entry_t *entry = slot_for(network->entries, network->capacity, mac);
  if (entry->mac == FLOW_EMPTY) network->count++;
  entry->mac = mac;
  entry->dest = dest;
  entry->dest_len = dest_len;
  entry->vtep = ntohl(dest.in4.sin_addr.s_addr);
  entry->frame_limit = frame_limit;
  entry->spi = spi;
  entry->slot = slot;
  entry->remote_csum = remote_csum;
  return result;
}

/* udpFlowForget(udp, vni, mac?): drops the entry of `mac`, or every entry of `vni` without one. */
static napi_value flow_forget(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  const char *usage = "udpFlowForget(udp, vni: number, mac?: number)";
  uint32_t vni;
  uint64_t mac;
  bool failed;
  if (argc < 2) {
    napi_throw_type_error(env, NULL, usage);
    return NULL;
  }
  flow_network_t *network = network_arg(env, argv, &vni, usage, &failed);
  if (failed) return NULL;
  napi_valuetype type = napi_undefined;
  if (argc >= 3) napi_typeof(env, argv[2], &type);
  if (type != napi_undefined && !get_mac(env, argv[2], &mac, usage)) return NULL;
  if (!network) return NULL;
  if (type == napi_undefined)
    flush(network);
  else
    forget(network, mac);
  return NULL;
}

/* udpFlowCounters(udp, counters: Float64Array): where the fast path adds its counts from now on (NETCTL_FLOW_FIELDS
 * per slot); JavaScript reads and zeroes them. */
static napi_value flow_counters(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  const char *usage = "udpFlowCounters(udp, counters: Float64Array)";
  double *counters;
  size_t length;
  if (argc < 2) {
    napi_throw_type_error(env, NULL, usage);
    return NULL;
  }
  udp_t *udp = netctl_udp_get(env, argv[0]);
  if (!udp) return NULL;
  if (!netctl_typed_array(env, argv[1], napi_float64_array, (void **)&counters, &length)) {
    napi_throw_type_error(env, NULL, usage);
    return NULL;
  }
  flow_table_t *table = table_of(env, udp);
  if (!table) return netctl_throw_errno(env, ENOMEM, "calloc", NULL);
  if (table->counters_ref) napi_delete_reference(env, table->counters_ref);
  /* Held, so its memory stays where the pointer says. */
  napi_create_reference(env, argv[1], 1, &table->counters_ref);
  table->counters = counters;
  table->counters_len = length;
  return NULL;
}

napi_status netctl_register_flow(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"udpFlowAttach", NULL, flow_attach, NULL, NULL, NULL, napi_enumerable, NULL},
      {"udpFlowDetach", NULL, flow_detach, NULL, NULL, NULL, napi_enumerable, NULL},
      {"udpFlowInstall", NULL, flow_install, NULL, NULL, NULL, napi_enumerable, NULL},
      {"udpFlowForget", NULL, flow_forget, NULL, NULL, NULL, napi_enumerable, NULL},
      {"udpFlowCounters", NULL, flow_counters, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  return napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
