/*
 * The C API the data path calls (native/esp.h), built against the system's
 * OpenSSL with AddressSanitizer and UBSan by test/sys/esp-native.test.ts:
 * esp_seal_gather, which no JavaScript call reaches, must give what
 * esp_seal gives in place, and esp_open must take both back. Prints "ok N"
 * and exits 0, or names the first difference and exits 1.
 */
#include <stdio.h>
#include <string.h>

#include "esp.h"

#define SPI 0x4e455443u
#define MAX_FRAME 3000

int main(void) {
  static const uint8_t key[ESP_KEY_LEN] = {1, 2, 3}, salt[ESP_SALT_LEN] = {4, 5, 6, 7};
  esp_table_t *in_place = esp_table_new(), *gather = esp_table_new(), *receiver = esp_table_new();
  if (!esp_self_test() || esp_table_add(in_place, ESP_OUTBOUND, SPI, key, salt, 0, 1) != ESP_ADD_OK ||
      esp_table_add(gather, ESP_OUTBOUND, SPI, key, salt, 0, 1) != ESP_ADD_OK ||
      esp_table_add(receiver, ESP_INBOUND, SPI, key, salt, 77, 1) != ESP_ADD_OK) {
    puts("setup failed");
    return 1;
  }
  static uint8_t frame[MAX_FRAME], a[MAX_FRAME + ESP_MAX_OVERHEAD], b[MAX_FRAME + ESP_MAX_OVERHEAD];
  for (size_t len = 0; len < MAX_FRAME; len++) {
    for (size_t i = 0; i < len; i++) frame[i] = (uint8_t)(i * 13 + len);
    memcpy(a + ESP_HEADER_LEN, frame, len);
    /* Headers and payload apart, as a segment of a super-frame is: three pieces of any length. */
    struct iovec parts[3] = {{frame, len / 3}, {frame + len / 3, len / 2 - len / 3}, {frame + len / 2, len - len / 2}};
    size_t a_len, b_len, plain_len;
    uint32_t tag;
    esp_result_t sealed = esp_seal(esp_table_find(in_place, ESP_OUTBOUND, SPI), a, len, esp_sealed_len(len), &a_len);
    esp_result_t gathered = esp_seal_gather(esp_table_find(gather, ESP_OUTBOUND, SPI), parts, 3, b, esp_sealed_len(len), &b_len);
    if (sealed != ESP_OK || gathered != ESP_OK || a_len != b_len || memcmp(a, b, a_len) != 0) {
      printf("length %zu: in place %d, gathered %d, not the same datagram\n", len, sealed, gathered);
      return 1;
    }
    esp_result_t opened = esp_open(receiver, b, b_len, 0, &plain_len, &tag);
    if (opened != ESP_OK || plain_len != len || tag != 77 || memcmp(b + ESP_HEADER_LEN, frame, len) != 0) {
      printf("length %zu: open gave %d\n", len, opened);
      return 1;
    }
  }
  size_t len;
  struct iovec part = {frame, 100};
  if (esp_seal_gather(esp_table_find(gather, ESP_OUTBOUND, SPI), &part, 1, b, esp_sealed_len(100) - 1, &len) != ESP_NO_ROOM) {
    puts("a gather without room was not refused");
    return 1;
  }
  printf("ok %llu\n", (unsigned long long)esp_table_counters(receiver, ESP_INBOUND)->packets);
  esp_table_free(in_place);
  esp_table_free(gather);
  esp_table_free(receiver);
  return 0;
}
