/**
 * Go values as JavaScript stands for them (see index.ts): Go's type names for
 * error messages, its notion of truth, fmt's %v printing, strconv's quoting
 * and encoding/json's output. Pure functions with no knowledge of templates,
 * shared by the parser, the functions and the executor.
 */

export function isStruct(value: unknown): value is object {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Map);
}

export function goQuote(text: string): string {
  return JSON.stringify(text).replace(/\u2028/g, '\\u2028').replace(/\u2029/g, '\\u2029');
}

/** A Go-like name for a value's type, for error messages. */
export function typeName(value: unknown): string {
  if (value === null) return 'nil';
  if (value === undefined) return 'invalid value';
  if (typeof value === 'string') return 'string';
  if (typeof value === 'number') return Number.isInteger(value) ? 'int' : 'float64';
  if (typeof value === 'boolean') return 'bool';
  if (typeof value === 'function') return 'func';
  if (Array.isArray(value)) return value.every((item) => typeof item === 'string') ? '[]string' : '[]interface {}';
  if (value instanceof Map) {
    const values = [...value.values()];
    return values.every((item) => typeof item === 'string') ? 'map[string]string' : 'map[string]interface {}';
  }
  const name = Object.getPrototypeOf(value)?.constructor?.name;
  return typeof name === 'string' && name !== 'Object' ? name : 'object';
}

/** Go's truth: false, 0, nil and empty strings, slices and maps are false. */
export function isTrue(value: unknown): boolean {
  if (value === undefined || value === null) return false;
  if (typeof value === 'boolean') return value;
  if (typeof value === 'number') return value !== 0;
  if (typeof value === 'string' || Array.isArray(value)) return value.length > 0;
  if (value instanceof Map) return value.size > 0;
  return true;
}

function compareKeys(a: unknown, b: unknown): number {
  if (typeof a === 'number' && typeof b === 'number') return a - b;
  const left = String(a);
  const right = String(b);
  return left < right ? -1 : left > right ? 1 : 0;
}

export function sortedEntries(map: Map<unknown, unknown>): [unknown, unknown][] {
  return [...map.entries()].sort(([a], [b]) => compareKeys(a, b));
}

/** Own enumerable data properties: what Go would show of a struct. */
function structFields(value: object): [string, unknown][] {
  return Object.entries(value).filter(([, field]) => typeof field !== 'function');
}

/** Go's %e layout: mantissa, then e±dd. */
export function goExponent(value: number, precision?: number): string {
  const [mantissa = '', exponent = '0'] = value.toExponential(precision).split('e');
  const exp = Number(exponent);
  return `${mantissa}e${exp < 0 ? '-' : '+'}${String(Math.abs(exp)).padStart(2, '0')}`;
}

/** A number as Go's %v prints an int (integral values) or a float64 (%g, shortest). */
export function formatNumber(value: number): string {
  if (Number.isNaN(value)) return 'NaN';
  if (!Number.isFinite(value)) return value > 0 ? '+Inf' : '-Inf';
  if (Number.isInteger(value) && Math.abs(value) < 1e21) return BigInt(value).toString();
  // Go's shortest %g switches to an exponent below 1e-4 and from 1e6 (strconv/ftoa.go: eprec = 6).
  const exp = Number(value.toExponential().split('e')[1]);
  return exp < -4 || exp >= 6 ? goExponent(value) : String(value);
}

/** Go's time.Time String(), in UTC. */
function formatDate(date: Date): string {
  const iso = date.toISOString();
  const fraction = iso.slice(20, 23).replace(/0+$/, '');
  return `${iso.slice(0, 10)} ${iso.slice(11, 19)}${fraction === '' ? '' : `.${fraction}`} +0000 UTC`;
}

/** Objects with their own toString are like Go values with a String method. */
function hasStringer(value: object): value is { toString(): string } {
  return value.toString !== Object.prototype.toString && value.toString !== Array.prototype.toString;
}

/** Go's fmt %v. */
export function formatValue(value: unknown): string {
  if (value === null || value === undefined) return '<nil>';
  if (typeof value === 'string') return value;
  if (typeof value === 'number') return formatNumber(value);
  if (typeof value === 'boolean' || typeof value === 'bigint') return String(value);
  if (typeof value === 'function') return '<func>';
  if (Array.isArray(value)) return `[${value.map(formatValue).join(' ')}]`;
  if (value instanceof Map) {
    return `map[${sortedEntries(value)
      .map(([k, v]) => `${formatValue(k)}:${formatValue(v)}`)
      .join(' ')}]`;
  }
  if (value instanceof Date) return formatDate(value);
  if (typeof value === 'object' && hasStringer(value)) return value.toString();
  return `{${structFields(value as object)
    .map(([, field]) => formatValue(field))
    .join(' ')}}`;
}

export class UnsupportedJson extends Error {}

/** Go's encoding/json with HTML escaping off, as docker's `json` function. */
export function toJson(value: unknown): string {
  if (value === null || value === undefined) return 'null';
  if (typeof value === 'object' && 'toJSON' in value && typeof value.toJSON === 'function') {
    return toJson(value.toJSON());
  }
  if (typeof value === 'string') return goQuote(value);
  if (typeof value === 'boolean') return String(value);
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new UnsupportedJson(`unsupported value: ${formatNumber(value)}`);
    return JSON.stringify(value);
  }
  if (typeof value === 'bigint') return value.toString();
  if (typeof value === 'function') throw new UnsupportedJson('unsupported type: func');
  if (Array.isArray(value)) return `[${value.map(toJson).join(',')}]`;
  if (value instanceof Map) {
    return `{${sortedEntries(value)
      .map(([k, v]) => `${goQuote(String(k))}:${toJson(v)}`)
      .join(',')}}`;
  }
  return `{${structFields(value as object)
    .filter(([, field]) => field !== undefined)
    .map(([k, v]) => `${goQuote(k)}:${toJson(v)}`)
    .join(',')}}`;
}
