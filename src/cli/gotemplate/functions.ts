/**
 * The functions a template can call: Go's builtins (`and`, `index`, `printf`,
 * `eq` …) and docker's additions (`json`, `join`, `pad` …), each with the
 * parameter kinds Go would check before the call. Docker renders table headers
 * with a second table whose string functions leave the header text alone.
 */
import { formatNumber, formatValue, goExponent, goQuote, isTrue, toJson, typeName, UnsupportedJson } from './values.js';

/** An argument that does not fit the parameter: Go rejects it before the call. */
export class WrongType extends Error {}

export type ParamKind = 'any' | 'string' | 'int' | 'strings';

interface TemplateFunction {
  readonly params: readonly ParamKind[];
  /** Kind of any further arguments; absent when the function takes exactly `params`. */
  readonly variadic?: ParamKind;
  readonly call: (...args: never[]) => unknown;
}

export type FunctionTable = ReadonlyMap<string, TemplateFunction>;

const fn = (
  params: ParamKind[],
  call: (...args: never[]) => unknown,
  variadic?: ParamKind,
): TemplateFunction => (variadic === undefined ? { params, call } : { params, call, variadic });

export function convertArg(kind: ParamKind, value: unknown): unknown {
  switch (kind) {
    case 'any':
      return value === undefined ? null : value;
    case 'string':
      if (typeof value === 'string') return value;
      break;
    case 'int':
      if (typeof value === 'number' && Number.isInteger(value)) return value;
      break;
    case 'strings':
      if (Array.isArray(value) && value.every((item) => typeof item === 'string')) return value;
      break;
  }
  const expected = { string: 'string', int: 'int', strings: '[]string' }[kind];
  if (value === undefined) throw new WrongType(`invalid value; expected ${expected}`);
  throw new WrongType(`wrong type for value; expected ${expected}; got ${typeName(value)}`);
}

const utf8 = new TextEncoder();

/** Go's strings.Title: upper-case the first letter of each word. */
function title(text: string): string {
  let previous = ' ';
  let out = '';
  for (const ch of text) {
    const separator = /[\s]/u.test(previous) || (previous <= '\x7f' && !/[A-Za-z0-9_]/.test(previous));
    out += separator ? ch.toUpperCase() : ch;
    previous = ch;
  }
  return out;
}

type Kind = 'nil' | 'bool' | 'number' | 'string' | 'other';

function basicKind(value: unknown): Kind {
  if (value === null || value === undefined) return 'nil';
  if (typeof value === 'boolean') return 'bool';
  if (typeof value === 'number') return 'number';
  if (typeof value === 'string') return 'string';
  return 'other';
}

function eq(first: unknown, ...others: unknown[]): boolean {
  if (others.length === 0) throw new Error('missing argument for comparison');
  const firstKind = basicKind(first);
  return others.some((other) => {
    const otherKind = basicKind(other);
    if (firstKind === 'nil' || otherKind === 'nil') return firstKind === otherKind;
    if (firstKind !== otherKind) throw new Error('incompatible types for comparison');
    if (firstKind === 'other') throw new Error(`non-comparable type ${typeName(first)}`);
    return first === other;
  });
}

function lessThan(a: unknown, b: unknown): boolean {
  const kind = basicKind(a);
  if (kind !== 'number' && kind !== 'string') throw new Error('invalid type for comparison');
  if (basicKind(b) !== kind) throw new Error('incompatible types for comparison');
  return (a as number | string) < (b as number | string);
}

function indexInto(item: unknown, ...indexes: unknown[]): unknown {
  let current = item;
  for (const key of indexes) {
    if (current === null || current === undefined) throw new Error('index of untyped nil');
    if (current instanceof Map) {
      // Docker's maps hold strings: a missing key reads as the empty string.
      current = current.has(key) ? current.get(key) : '';
    } else if (Array.isArray(current) || typeof current === 'string') {
      if (typeof key !== 'number' || !Number.isInteger(key)) {
        throw new Error(`cannot index slice/array with type ${typeName(key)}`);
      }
      const length = typeof current === 'string' ? utf8.encode(current).length : current.length;
      if (key < 0 || key >= length) throw new Error(`index out of range: ${key}`);
      current = typeof current === 'string' ? utf8.encode(current)[key] : current[key];
    } else {
      throw new Error(`can't index item of type ${typeName(current)}`);
    }
  }
  return current;
}

function length(item: unknown): number {
  if (typeof item === 'string') return utf8.encode(item).length;
  if (Array.isArray(item)) return item.length;
  if (item instanceof Map) return item.size;
  if (item === null || item === undefined) throw new Error('len of nil pointer');
  throw new Error(`len of type ${typeName(item)}`);
}

/** Go's fmt.Sprint: a space between operands when neither is a string. */
function sprint(...args: unknown[]): string {
  let out = '';
  args.forEach((arg, i) => {
    if (i > 0 && typeof arg !== 'string' && typeof args[i - 1] !== 'string') out += ' ';
    out += formatValue(arg);
  });
  return out;
}

function badVerb(verb: string, arg: unknown): string {
  return arg === null || arg === undefined ? `%!${verb}(<nil>)` : `%!${verb}(${typeName(arg)}=${formatValue(arg)})`;
}

/** Go's fmt.Sprintf for the common verbs (v s d q x X f e g t c) with flags, width and precision. */
function sprintf(format: string, ...args: unknown[]): string {
  let out = '';
  let argIndex = 0;
  const spec = /%([-+# 0]*)(\d+)?(?:\.(\d*))?(.?)/y;
  for (let i = 0; i < format.length; ) {
    const percent = format.indexOf('%', i);
    if (percent < 0) {
      out += format.slice(i);
      break;
    }
    out += format.slice(i, percent);
    spec.lastIndex = percent;
    const match = spec.exec(format);
    if (match === null) break;
    i = spec.lastIndex;
    const [, flags = '', widthText, precisionText, verb = ''] = match;
    if (verb === '%') {
      out += '%';
      continue;
    }
    if (verb === '') {
      out += '%!(NOVERB)';
      continue;
    }
    if (argIndex >= args.length) {
      out += `%!${verb}(MISSING)`;
      continue;
    }
    const arg = args[argIndex++];
    const precision = precisionText === undefined ? undefined : Number(precisionText || '0');
    let text: string;
    let numeric = false;
    switch (verb) {
      case 'v':
        text = formatValue(arg);
        break;
      case 's':
        text = typeof arg === 'number' || typeof arg === 'boolean' ? badVerb(verb, arg) : formatValue(arg);
        if (precision !== undefined) text = Array.from(text).slice(0, precision).join('');
        break;
      case 'q':
        if (typeof arg === 'string') text = goQuote(arg);
        else if (typeof arg === 'number' && Number.isInteger(arg)) text = `'${String.fromCodePoint(arg)}'`;
        else text = badVerb(verb, arg);
        break;
      case 'd':
        numeric = typeof arg === 'number' && Number.isInteger(arg);
        text = numeric ? formatNumber(arg as number) : badVerb(verb, arg);
        if (numeric && flags.includes('+') && (arg as number) >= 0) text = `+${text}`;
        break;
      case 'x':
      case 'X': {
        if (typeof arg === 'number' && Number.isInteger(arg)) text = arg.toString(16);
        else if (typeof arg === 'string') text = Array.from(utf8.encode(arg), (byte) => byte.toString(16).padStart(2, '0')).join('');
        else text = badVerb(verb, arg);
        if (verb === 'X') text = text.toUpperCase();
        numeric = typeof arg === 'number';
        break;
      }
      case 'f':
      case 'e':
      case 'g':
        numeric = typeof arg === 'number';
        if (typeof arg !== 'number') text = badVerb(verb, arg);
        else if (verb === 'f') text = arg.toFixed(precision ?? 6);
        else if (verb === 'e') text = goExponent(arg, precision ?? 6);
        else text = formatNumber(arg);
        break;
      case 't':
        text = typeof arg === 'boolean' ? String(arg) : badVerb(verb, arg);
        break;
      case 'c':
        text = typeof arg === 'number' && Number.isInteger(arg) ? String.fromCodePoint(arg) : badVerb(verb, arg);
        break;
      default:
        text = badVerb(verb, arg);
    }
    const width = widthText === undefined ? 0 : Number(widthText);
    const padding = Math.max(0, width - Array.from(text).length);
    if (flags.includes('-')) text += ' '.repeat(padding);
    else if (flags.includes('0') && numeric) {
      const sign = /^[+-]/.test(text) ? text.slice(0, 1) : '';
      text = sign + '0'.repeat(padding) + text.slice(sign.length);
    } else text = ' '.repeat(padding) + text;
    out += text;
  }
  if (argIndex < args.length) {
    const extra = args.slice(argIndex).map((arg) => (arg === null ? '<nil>' : `${typeName(arg)}=${formatValue(arg)}`));
    out += `%!(EXTRA ${extra.join(', ')})`;
  }
  return out;
}

export const BASIC_FUNCTIONS: FunctionTable = new Map<string, TemplateFunction>([
  // Go's builtins; `and` and `or` are evaluated lazily by the executor.
  ['and', fn(['any'], () => undefined, 'any')],
  ['or', fn(['any'], () => undefined, 'any')],
  ['not', fn(['any'], (value: unknown) => !isTrue(value))],
  ['len', fn(['any'], length)],
  ['index', fn(['any'], indexInto, 'any')],
  ['print', fn([], sprint, 'any')],
  ['println', fn([], (...args: unknown[]) => `${args.map(formatValue).join(' ')}\n`, 'any')],
  ['printf', fn(['string'], sprintf, 'any')],
  ['eq', fn(['any'], eq, 'any')],
  ['ne', fn(['any', 'any'], (a: unknown, b: unknown) => !eq(a, b))],
  ['lt', fn(['any', 'any'], lessThan)],
  ['le', fn(['any', 'any'], (a: unknown, b: unknown) => lessThan(a, b) || eq(a, b))],
  ['gt', fn(['any', 'any'], (a: unknown, b: unknown) => !lessThan(a, b) && !eq(a, b))],
  ['ge', fn(['any', 'any'], (a: unknown, b: unknown) => !lessThan(a, b))],
  // Docker's additions (github.com/docker/cli/templates).
  [
    'json',
    fn(['any'], (value: unknown) => {
      try {
        return toJson(value);
      } catch (err) {
        // Docker ignores the encoder's error and prints what it produced: nothing.
        if (err instanceof UnsupportedJson) return '';
        throw err;
      }
    }),
  ],
  ['split', fn(['string', 'string'], (text: string, sep: string) => (sep === '' ? Array.from(text) : text.split(sep)))],
  ['join', fn(['strings', 'string'], (items: string[], sep: string) => items.join(sep))],
  ['title', fn(['string'], title)],
  ['lower', fn(['string'], (text: string) => text.toLowerCase())],
  ['upper', fn(['string'], (text: string) => text.toUpperCase())],
  [
    'pad',
    fn(['string', 'int', 'int'], (text: string, prefix: number, suffix: number) => {
      if (text === '') return text;
      if (prefix < 0 || suffix < 0) throw new Error('negative Repeat count');
      return ' '.repeat(prefix) + text + ' '.repeat(suffix);
    }),
  ],
  [
    'truncate',
    fn(['string', 'int'], (text: string, max: number) => {
      if (max < 0) throw new Error(`slice bounds out of range [:${max}]`);
      return Array.from(text).slice(0, max).join('');
    }),
  ],
]);

/** Docker renders table headers with these: they leave the header text as it is (except `pad`). */
export const HEADER_FUNCTIONS: FunctionTable = new Map([
  ...BASIC_FUNCTIONS,
  ['json', fn(['string'], (text: string) => text)],
  ['split', fn(['string', 'string'], (text: string) => text)],
  ['join', fn(['string', 'string'], (text: string) => text)],
  ['title', fn(['string'], (text: string) => text)],
  ['lower', fn(['string'], (text: string) => text)],
  ['upper', fn(['string'], (text: string) => text)],
  ['truncate', fn(['string', 'int'], (text: string) => text)],
]);

export const FUNCTION_NAMES: ReadonlySet<string> = new Set(BASIC_FUNCTIONS.keys());
