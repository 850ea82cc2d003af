/** A stored network record as the controller writes one, for tests of the layers that read them. */
import type { NetworkRecord } from '../../src/records.js';

export function networkRecord(fields: Partial<NetworkRecord> = {}): NetworkRecord {
  return {
    id: 'a'.repeat(64),
    name: 'web',
    driver: 'bridge',
    scope: 'local',
    created: '2026-01-01T00:00:00.000000000Z',
    internal: false,
    attachable: false,
    ingress: false,
    enableIPv4: true,
    enableIPv6: false,
    ipam: { driver: 'default', options: {}, config: [{ subnet: '10.0.0.0/24', gateway: '10.0.0.1' }] },
    options: {},
    labels: {},
    ...fields,
  };
}
