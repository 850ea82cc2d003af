/**
 * Command-line parsing with the docker CLI's (cobra/pflag) conventions:
 * `--flag value`, `--flag=value`, `-f value`, `-fvalue`, grouped short
 * booleans (`-qf`), flags anywhere among the arguments, `--` ends flags.
 * Also renders docker-style usage and help text.
 */

export type FlagType = 'bool' | 'string' | 'list';

export interface FlagSpec {
  readonly name: string;
  readonly short?: string;
  readonly type: FlagType;
  /** Word after the flag in help ("string", "list", "map"…). */
  readonly valueName?: string;
  readonly help: string;
  /** Shown in help as `(default …)`. */
  readonly defaultText?: string;
}

/** Arguments a command takes, for cobra's messages ("requires exactly 1 argument"). */
export type ArgCount =
  | { readonly exactly: number }
  | { readonly atLeast: number };

/** A usage mistake: printed with a pointer to the command's help. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

export class ParsedArgs {
  readonly args: readonly string[];
  private readonly values: ReadonlyMap<string, readonly string[]>;

  constructor(args: readonly string[], values: ReadonlyMap<string, readonly string[]>) {
    this.args = args;
    this.values = values;
  }

  bool(name: string): boolean {
    return this.values.get(name)?.at(-1) === 'true';
  }

  /** True when the flag appeared on the command line. */
  has(name: string): boolean {
    return this.values.has(name);
  }

  /** The last value given for a string flag. */
  string(name: string): string | undefined {
    return this.values.get(name)?.at(-1);
  }

  /** Every value given for a repeatable flag, in order. */
  list(name: string): string[] {
    return [...(this.values.get(name) ?? [])];
  }
}

const HELP_FLAG: FlagSpec = { name: 'help', type: 'bool', help: 'Print usage' };

function parseBoolValue(flag: string, value: string): string {
  const v = value.toLowerCase();
  if (['1', 't', 'true'].includes(v)) return 'true';
  if (['0', 'f', 'false'].includes(v)) return 'false';
  throw new UsageError(`invalid argument "${value}" for "${flag}" flag: strconv.ParseBool: parsing "${value}": invalid syntax`);
}

/** Parses `argv` against the flags; `--help` is always known. */
export function parseArgs(argv: readonly string[], flags: readonly FlagSpec[]): ParsedArgs {
  const all = [...flags, HELP_FLAG];
  const byName = new Map(all.map((f) => [f.name, f]));
  const byShort = new Map(all.filter((f) => f.short !== undefined).map((f) => [f.short ?? '', f]));
  const values = new Map<string, string[]>();
  const args: string[] = [];
  const set = (flag: FlagSpec, value: string): void => {
    const list = values.get(flag.name) ?? [];
    list.push(value);
    values.set(flag.name, list);
  };

  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? '';
    if (arg === '--') {
      args.push(...argv.slice(i + 1));
      break;
    }
    if (arg.startsWith('--')) {
      const eq = arg.indexOf('=');
      const name = eq < 0 ? arg.slice(2) : arg.slice(2, eq);
      const flag = byName.get(name);
      if (flag === undefined) throw new UsageError(`unknown flag: --${name}`);
      if (flag.type === 'bool') {
        set(flag, eq < 0 ? 'true' : parseBoolValue(`--${name}`, arg.slice(eq + 1)));
      } else if (eq >= 0) {
        set(flag, arg.slice(eq + 1));
      } else {
        const next = argv[i + 1];
        if (next === undefined) throw new UsageError(`flag needs an argument: --${name}`);
        set(flag, next);
        i++;
      }
      continue;
    }
    if (arg.startsWith('-') && arg.length > 1) {
      // A group of short flags; a value flag takes the rest of the group or the next argument.
      for (let j = 1; j < arg.length; j++) {
        const letter = arg[j] ?? '';
        const flag = byShort.get(letter);
        if (flag === undefined) throw new UsageError(`unknown shorthand flag: '${letter}' in ${arg}`);
        if (flag.type === 'bool') {
          if (arg[j + 1] === '=') {
            set(flag, parseBoolValue(`-${letter}`, arg.slice(j + 2)));
            break;
          }
          set(flag, 'true');
          continue;
        }
        const rest = arg.slice(j + 1);
        if (rest !== '') {
          set(flag, rest.startsWith('=') ? rest.slice(1) : rest);
        } else {
          const next = argv[i + 1];
          if (next === undefined) throw new UsageError(`flag needs an argument: '${letter}' in -${letter}`);
          set(flag, next);
          i++;
        }
        break;
      }
      continue;
    }
    args.push(arg);
  }
  return new ParsedArgs(args, values);
}

/** cobra's messages for a wrong number of arguments. */
export function checkArgCount(commandPath: string, count: ArgCount, args: readonly string[]): void {
  const plural = (n: number): string => (n === 1 ? 'argument' : 'arguments');
  if ('exactly' in count && args.length !== count.exactly) {
    if (count.exactly === 0) throw new UsageError(`"${commandPath}" accepts no arguments.`);
    throw new UsageError(`"${commandPath}" requires exactly ${count.exactly} ${plural(count.exactly)}.`);
  }
  if ('atLeast' in count && args.length < count.atLeast) {
    throw new UsageError(`"${commandPath}" requires at least ${count.atLeast} ${plural(count.atLeast)}.`);
  }
}

/** The Options block of help text, aligned like cobra's. */
export function renderFlags(flags: readonly FlagSpec[]): string {
  const left = flags.map((f) => {
    const names = f.short !== undefined ? `-${f.short}, --${f.name}` : `    --${f.name}`;
    const value = f.type === 'bool' ? '' : ` ${f.valueName ?? (f.type === 'list' ? 'list' : 'string')}`;
    return `  ${names}${value}`;
  });
  const width = Math.max(0, ...left.map((l) => l.length));
  return flags
    .map((f, i) => {
      const defaultText = f.defaultText !== undefined ? ` (default ${f.defaultText})` : '';
      return `${(left[i] ?? '').padEnd(width)}   ${f.help}${defaultText}`;
    })
    .join('\n');
}
