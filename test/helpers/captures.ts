/**
 * Frames captured with tshark in test namespaces (see test/wire/vxlan.test.ts),
 * shared by the codec tests and the VTEP's proxy tests that hold output
 * against them.
 */

/** Hex with any whitespace, as bytes. */
export const bytes = (hex: string): Uint8Array => new Uint8Array(Buffer.from(hex.replace(/\s+/g, ''), 'hex'));

/** The inner frame: fd00:99::1 (02:42:0a:63:00:01) solicits fd00:99::2 on its solicited-node group. */
export const capturedNeighborSolicitation = bytes(`
  3333ff000002 02420a630001 86dd
  6000000000203aff fd000099000000000000000000000001 ff0200000000000000000001ff000002
  87 00 71c0 00000000 fd000099000000000000000000000002 01 01 02420a630001`);

/** The inner frame: fd00:99::2 (02:42:0a:63:00:02) answers, solicited and override set. */
export const capturedNeighborAdvertisement = bytes(`
  02420a630001 02420a630002 86dd
  6000000000203aff fd000099000000000000000000000002 fd000099000000000000000000000001
  88 00 102a 60000000 fd000099000000000000000000000002 02 01 02420a630002`);
