/**
 * `--format` templates as the docker CLI has them: Go's text/template
 * language with docker's helper functions, and docker's `table` and `json`
 * directives for lists.
 *
 * This folder is that implementation, one stage a file, after Go's own
 * layout: lexer.ts → parser.ts (building the tree in ast.ts) → execute.ts,
 * with the callable functions in functions.ts and Go's way of naming,
 * testing and printing values in values.ts. Only this file is imported from
 * outside: `parseTemplate`, `Template` and `formatRows`.
 *
 * How JavaScript values stand for Go values:
 * - plain objects and class instances are structs: naming a field they do not
 *   have is an error ("can't evaluate field"); a field whose value is a
 *   function is a method, called with the action's arguments and `this` bound
 *   to the object (`{{.Label "env"}}`, or `{{.ID}}` for a getter-like method);
 * - `Map` instances are maps: a missing key gives no value, printed
 *   `<no value>` (`{{.Labels.x}}`), and `index` of a missing key gives "" as
 *   for docker's `map[string]string`; `range` and printing visit keys in
 *   sorted order. Callers wrap Labels, Options and the like in `Map`;
 * - arrays are slices; `null` is nil (prints `<nil>`); `undefined` is Go's
 *   invalid value (prints `<no value>`).
 *
 * Parse and execution errors are `InvalidArgument`s worded like Go's.
 * Not supported: `define`, `template`, `block`, and the builtins `html`,
 * `js`, `urlquery`, `slice` and `call`.
 */
import { InvalidArgument } from '../../errors.js';
import { TabWriter } from '../tabwriter.js';
import type { Node } from './ast.js';
import { render } from './execute.js';
import { BASIC_FUNCTIONS, FUNCTION_NAMES, HEADER_FUNCTIONS } from './functions.js';
import { parse } from './parser.js';

/** A parsed template; see the comment above for how data is interpreted. */
export class Template {
  readonly source: string;
  private readonly root: readonly Node[];

  /** Parses `source`; throws InvalidArgument on a syntax error. */
  constructor(source: string) {
    this.source = source;
    this.root = parse(source, FUNCTION_NAMES);
  }

  /** Renders `data`; throws InvalidArgument on an execution error, as Go's Execute fails. */
  execute(data: unknown): string {
    const { output, error } = render(this.source, this.root, data, BASIC_FUNCTIONS);
    if (error !== undefined) throw error;
    return output;
  }

  /** Renders a table header: docker's header functions, and errors end the header silently, as in docker. */
  executeHeader(headers: ReadonlyMap<string, string>): string {
    return render(this.source, this.root, headers, HEADER_FUNCTIONS).output;
  }
}

/**
 * Parses a Go template with docker's functions. Throws InvalidArgument
 * ("template parsing error: template: :1: …") on a syntax error.
 */
export function parseTemplate(source: string): Template {
  return new Template(source);
}

export interface FormatRowsOptions {
  /** Format used when the user gives none or just `table` (e.g. `table {{.ID}}\t{{.Name}}`). */
  readonly defaultTable?: string;
  /** Table header text per field name, e.g. ID → "NETWORK ID". */
  readonly headers?: Readonly<Record<string, string>>;
  /** Minimum column width; docker 28's formatter uses 10 (older releases 20). */
  readonly minWidth?: number;
}

const TABLE = 'table';
const JSON_FORMAT = '{{json .}}';

/**
 * Renders list rows the way docker's `--format` does: `table …` prints a
 * header line (the template run against `headers`) and aligns the columns
 * (tab-separated, minwidth 10, padding 3); `json` prints each row as one line
 * of JSON; any other template prints each row followed by a newline. `\t` and
 * `\n` typed literally in the format stand for a tab and a newline. An empty
 * format, or just `table`, means `defaultTable` (or `json` when none is given).
 * Throws InvalidArgument, worded as docker's errors, when the format does not
 * parse or a row fails to render.
 */
export function formatRows(format: string, rows: readonly unknown[], opts: FormatRowsOptions = {}): string {
  let effective = format;
  if (effective === '' || effective === TABLE) effective = opts.defaultTable ?? 'json';
  if (effective === 'json') effective = JSON_FORMAT;
  const isTable = effective.startsWith(TABLE);
  const body = (isTable ? effective.slice(TABLE.length) : effective)
    .replace(/^ +| +$/g, '')
    .replace(/\\t|\\n/g, (escape) => (escape === '\\t' ? '\t' : '\n'));
  const template = parseTemplate(body);
  let rendered = '';
  for (const row of rows) {
    try {
      rendered += `${template.execute(row)}\n`;
    } catch (err) {
      if (err instanceof InvalidArgument) throw new InvalidArgument(`template parsing error: ${err.message}`, { cause: err });
      throw err;
    }
  }
  if (!isTable) return rendered;
  const writer = new TabWriter(opts.minWidth ?? 10, 1, 3, ' ');
  writer.write(`${template.executeHeader(new Map(Object.entries(opts.headers ?? {})))}\n`);
  writer.write(rendered);
  return writer.flush();
}
