/*
 * An ESP table as JavaScript holds it (a napi external, esp_napi.c), for the
 * other parts of the addon that use one: udp.c attaches a table to a socket.
 *
 * Lifetime: the handle counts its holders. espTableClose wipes every SA at
 * once, but while a socket holds the table the table itself (empty, with its
 * totals) stays until the last holder lets go; the handle's memory goes when
 * the garbage collector is done with the JavaScript value and no holder is
 * left, in either order. Loop thread only, like the table.
 */
#ifndef NETCTL_ESP_HANDLE_H
#define NETCTL_ESP_HANDLE_H
#include <node_api.h>

#include "esp.h"

typedef struct netctl_esp_handle netctl_esp_handle_t;

/* The handle behind `value`; throws and returns NULL when it is not an ESP table, or is closed. */
netctl_esp_handle_t *netctl_esp_handle_get(napi_env env, napi_value value);
void netctl_esp_handle_hold(netctl_esp_handle_t *handle);
/* Lets go of a hold; may free the handle and its table. */
void netctl_esp_handle_release(netctl_esp_handle_t *handle);
/* The table, never NULL while held (empty once closed from JavaScript). */
esp_table_t *netctl_esp_handle_table(const netctl_esp_handle_t *handle);

#endif
