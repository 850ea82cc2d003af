/**
 * Output conventions shared by the commands, each as the docker CLI has it:
 * short IDs, natural name order, Go's time and JSON formatting.
 */
import type { DockerNetwork } from '../api/docker.js';

export function shortId(id: string): string {
  return id.slice(0, 12);
}

/** Natural order (docker's sortorder.NaturalLess): digit runs compare as numbers, so net2 < net10. */
export function naturalCompare(a: string, b: string): number {
  const chunks = (s: string): string[] => s.match(/\d+|\D+/g) ?? [];
  const left = chunks(a);
  const right = chunks(b);
  for (let i = 0; i < Math.min(left.length, right.length); i++) {
    const x = left[i] ?? '';
    const y = right[i] ?? '';
    if (x === y) continue;
    const bothDigits = /^\d/.test(x) && /^\d/.test(y);
    if (bothDigits) {
      const nx = BigInt(x);
      const ny = BigInt(y);
      if (nx !== ny) return nx < ny ? -1 : 1;
      // Equal numbers with different leading zeros: fewer zeros first.
      return x.length - y.length;
    }
    return x < y ? -1 : 1;
  }
  return left.length - right.length;
}

/** Go's time.Time.String() in UTC: `2024-05-01 10:00:00.123 +0000 UTC` (trailing fraction zeros dropped). */
export function goTimeString(rfc3339: string): string {
  const match = /^(\d{4}-\d\d-\d\d)T(\d\d:\d\d:\d\d)(?:\.(\d+))?Z$/.exec(rfc3339);
  if (match === null) return rfc3339;
  const fraction = (match[3] ?? '').replace(/0+$/, '');
  return `${match[1]} ${match[2]}${fraction === '' ? '' : `.${fraction}`} +0000 UTC`;
}

/** Go's json.MarshalIndent escapes these; docker's inspect output does too. */
function goEscape(json: string): string {
  return json.replace(/[<>&\u2028\u2029]/g, (ch) => `\\u${ch.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** `docker … inspect` output: a JSON array indented with 4 spaces. */
export function inspectJson(values: readonly unknown[]): string {
  return `${goEscape(JSON.stringify(values, null, 4))}\n`;
}

function toMap(record: Readonly<Record<string, unknown>> | undefined): Map<string, unknown> {
  return new Map(Object.entries(record ?? {}));
}

/**
 * A network as `inspect -f` templates see it: Docker's maps become Map
 * instances so `index`, `range` and `json` treat them as Go maps.
 */
export function networkTemplateData(network: DockerNetwork): Record<string, unknown> {
  return {
    ...network,
    IPAM: {
      ...network.IPAM,
      Options: toMap(network.IPAM.Options),
      Config: network.IPAM.Config.map((pool) => ({
        ...pool,
        AuxiliaryAddresses: toMap(pool.AuxiliaryAddresses),
      })),
    },
    Containers: toMap(network.Containers),
    Options: toMap(network.Options),
    Labels: toMap(network.Labels),
  };
}

/** Labels as one `k=v,k2=v2` cell, keys sorted so output is stable. */
export function joinLabels(labels: Readonly<Record<string, string>>): string {
  return Object.keys(labels)
    .sort()
    .map((k) => `${k}=${labels[k] ?? ''}`)
    .join(',');
}
