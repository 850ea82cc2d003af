/**
 * `--format` templates as the docker CLI has them: Go's text/template
 * language with docker's helper functions, and docker's `table` and `json`
 * directives for lists.
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
import { InvalidArgument } from '../cnm/errors.js';
import { TabWriter } from './tabwriter.js';

// ---------------------------------------------------------------------------
// Lexer (after Go's text/template/parse/lex.go)

type TokenType =
  | 'text'
  | 'leftDelim'
  | 'rightDelim'
  | 'space'
  | 'field'
  | 'variable'
  | 'identifier'
  | 'keyword'
  | 'dot'
  | 'nil'
  | 'bool'
  | 'number'
  | 'charConstant'
  | 'string'
  | 'rawString'
  | 'char'
  | 'pipe'
  | 'declare'
  | 'assign'
  | 'leftParen'
  | 'rightParen'
  | 'eof'
  | 'error';

interface Token {
  readonly type: TokenType;
  /** Source text of the token; the message for an error token. */
  readonly value: string;
  readonly pos: number;
}

const KEYWORDS = new Set(['block', 'break', 'continue', 'define', 'else', 'end', 'if', 'range', 'template', 'with']);
const ALPHANUMERIC = /[\p{L}\p{Nd}_]*/uy;
const NUMBER = /[+-]?(?:0[xX][0-9a-fA-F_]*(?:\.[0-9a-fA-F_]*)?(?:[pP][+-]?[0-9_]+)?|0[oO][0-7_]*|0[bB][01_]*|[0-9_]*(?:\.[0-9_]*)?(?:[eE][+-]?[0-9_]+)?)i?/y;

function isSpace(ch: string | undefined): boolean {
  return ch === ' ' || ch === '\t' || ch === '\r' || ch === '\n';
}

function isAlphanumeric(ch: string | undefined): boolean {
  return ch !== undefined && /^[\p{L}\p{Nd}_]$/u.test(ch);
}

function codePointAt(input: string, pos: number): string {
  const cp = input.codePointAt(pos);
  return cp === undefined ? '' : String.fromCodePoint(cp);
}

/** Go's %#U: U+007D '}'. */
function describeRune(ch: string): string {
  const cp = ch.codePointAt(0) ?? 0;
  const hex = cp.toString(16).toUpperCase().padStart(4, '0');
  return /^\P{C}$/u.test(ch) ? `U+${hex} '${ch}'` : `U+${hex}`;
}

function lex(input: string): Token[] {
  const tokens: Token[] = [];
  let pos = 0;
  const emit = (type: TokenType, start: number): void => {
    tokens.push({ type, value: input.slice(start, pos), pos: start });
  };
  const fail = (message: string, at: number): Token[] => {
    tokens.push({ type: 'error', value: message, pos: at });
    return tokens;
  };
  const skipSpace = (): void => {
    while (isSpace(input[pos])) pos++;
  };
  /** A right delimiter here, with its trim marker (" -}}") or without. */
  const atRightDelim = (): 'plain' | 'trim' | null => {
    if (isSpace(input[pos]) && input[pos + 1] === '-' && input.startsWith('}}', pos + 2)) return 'trim';
    return input.startsWith('}}', pos) ? 'plain' : null;
  };
  const atTerminator = (): boolean => {
    const ch = input[pos];
    if (ch === undefined || isSpace(ch) || '.,|:()'.includes(ch)) return true;
    return input.startsWith('}}', pos);
  };
  const scanAlphanumeric = (): void => {
    ALPHANUMERIC.lastIndex = pos;
    ALPHANUMERIC.test(input);
    pos = ALPHANUMERIC.lastIndex;
  };
  /** Scans a quoted literal ending at `quote`; false when unterminated. */
  const scanQuoted = (quote: string): boolean => {
    pos++;
    for (;;) {
      const ch = input[pos++];
      if (ch === '\\') {
        const escaped = input[pos++];
        if (escaped !== undefined && escaped !== '\n') continue;
        return false;
      }
      if (ch === undefined || ch === '\n') return false;
      if (ch === quote) return true;
    }
  };

  for (;;) {
    const open = input.indexOf('{{', pos);
    if (open < 0) {
      if (pos < input.length) {
        const start = pos;
        pos = input.length;
        emit('text', start);
      }
      tokens.push({ type: 'eof', value: '', pos });
      return tokens;
    }
    const trimLeft = input[open + 2] === '-' && isSpace(input[open + 3]);
    let textEnd = open;
    if (trimLeft) while (textEnd > pos && isSpace(input[textEnd - 1])) textEnd--;
    if (textEnd > pos) tokens.push({ type: 'text', value: input.slice(pos, textEnd), pos });
    pos = open + 2 + (trimLeft ? 2 : 0);

    if (input.startsWith('/*', pos)) {
      const close = input.indexOf('*/', pos + 2);
      if (close < 0) return fail('unclosed comment', open);
      pos = close + 2;
      const delim = atRightDelim();
      if (delim === null) return fail('comment ends before closing delimiter', open);
      pos += delim === 'trim' ? 4 : 2;
      if (delim === 'trim') skipSpace();
      continue;
    }

    tokens.push({ type: 'leftDelim', value: '{{', pos: open });
    let parenDepth = 0;
    for (;;) {
      const delim = atRightDelim();
      if (delim !== null) {
        if (parenDepth > 0) return fail('unclosed left paren', pos);
        if (delim === 'trim') pos += 2;
        const start = pos;
        pos += 2;
        emit('rightDelim', start);
        if (delim === 'trim') skipSpace();
        break;
      }
      const start = pos;
      const ch = input[pos];
      if (ch === undefined) return fail('unclosed action', open);
      if (isSpace(ch)) {
        skipSpace();
        // The space right before "-}}" belongs to the trim marker.
        if (input.startsWith('-}}', pos)) {
          pos--;
          if (pos === start) continue;
        }
        emit('space', start);
      } else if (ch === '=') {
        pos++;
        emit('assign', start);
      } else if (ch === ':') {
        if (input[pos + 1] !== '=') return fail('expected :=', pos);
        pos += 2;
        emit('declare', start);
      } else if (ch === '|') {
        pos++;
        emit('pipe', start);
      } else if (ch === '"') {
        if (!scanQuoted('"')) return fail('unterminated quoted string', start);
        emit('string', start);
      } else if (ch === "'") {
        if (!scanQuoted("'")) return fail('unterminated character constant', start);
        emit('charConstant', start);
      } else if (ch === '`') {
        const close = input.indexOf('`', pos + 1);
        if (close < 0) return fail('unterminated raw quoted string', start);
        pos = close + 1;
        emit('rawString', start);
      } else if (ch === '$' || (ch === '.' && pos + 1 < input.length && !/[0-9]/.test(input[pos + 1] ?? ''))) {
        pos++;
        if (atTerminator()) {
          emit(ch === '$' ? 'variable' : 'dot', start);
          continue;
        }
        scanAlphanumeric();
        if (!atTerminator()) return fail(`bad character ${describeRune(codePointAt(input, pos))}`, pos);
        emit(ch === '$' ? 'variable' : 'field', start);
      } else if (ch === '.' || ch === '+' || ch === '-' || /[0-9]/.test(ch)) {
        NUMBER.lastIndex = pos;
        NUMBER.test(input);
        pos = NUMBER.lastIndex;
        if (isAlphanumeric(codePointAt(input, pos))) {
          pos += codePointAt(input, pos).length;
          return fail(`bad number syntax: ${JSON.stringify(input.slice(start, pos))}`, start);
        }
        emit('number', start);
      } else if (isAlphanumeric(codePointAt(input, pos))) {
        scanAlphanumeric();
        if (!atTerminator()) return fail(`bad character ${describeRune(codePointAt(input, pos))}`, pos);
        const word = input.slice(start, pos);
        if (KEYWORDS.has(word)) emit('keyword', start);
        else if (word === 'nil') emit('nil', start);
        else if (word === 'true' || word === 'false') emit('bool', start);
        else emit('identifier', start);
      } else if (ch === '(') {
        pos++;
        parenDepth++;
        emit('leftParen', start);
      } else if (ch === ')') {
        pos++;
        parenDepth--;
        if (parenDepth < 0) return fail('unexpected right paren', start);
        emit('rightParen', start);
      } else if (ch >= ' ' && ch <= '~') {
        pos++;
        emit('char', start);
      } else {
        return fail(`unrecognized character in action: ${describeRune(codePointAt(input, pos))}`, pos);
      }
    }
  }
}

// ---------------------------------------------------------------------------
// Parse tree (after Go's text/template/parse/node.go)

/** Where a node starts in the source, and how Go would print it in an error. */
interface Located {
  readonly pos: number;
  readonly text: string;
}

type Arg =
  | (Located & { readonly kind: 'field'; readonly idents: readonly string[] })
  | (Located & { readonly kind: 'variable'; readonly name: string; readonly idents: readonly string[] })
  | (Located & { readonly kind: 'chain'; readonly node: Arg; readonly idents: readonly string[] })
  | (Located & { readonly kind: 'identifier'; readonly name: string })
  | (Located & { readonly kind: 'dot' })
  | (Located & { readonly kind: 'nil' })
  | (Located & { readonly kind: 'literal'; readonly value: string | number | boolean })
  | (Located & { readonly kind: 'pipe'; readonly pipe: Pipe });

interface Command extends Located {
  readonly args: readonly Arg[];
}

interface Pipe extends Located {
  readonly decl: readonly string[];
  readonly isAssign: boolean;
  readonly cmds: readonly Command[];
}

type Node =
  | { readonly kind: 'text'; readonly text: string }
  | { readonly kind: 'action'; readonly pipe: Pipe }
  | {
      readonly kind: 'if' | 'with' | 'range';
      readonly pipe: Pipe;
      readonly list: readonly Node[];
      readonly elseList: readonly Node[] | null;
    }
  | (Located & { readonly kind: 'break' | 'continue' });

/** `{{end}}` and `{{else}}` only delimit lists; they never stay in the tree. */
type Delimiter = { readonly kind: 'end' } | { readonly kind: 'else' };

class ParseFailure extends Error {
  constructor(
    message: string,
    readonly pos: number,
  ) {
    super(message);
  }
}

function goQuote(text: string): string {
  return JSON.stringify(text).replace(/\u2028/g, '\\u2028').replace(/\u2029/g, '\\u2029');
}

/** How Go prints a token in "unexpected … in …". */
function describeToken(token: Token): string {
  if (token.type === 'eof') return 'EOF';
  if (token.type === 'error') return token.value;
  if (token.type === 'keyword' || token.type === 'dot' || token.type === 'nil') return `<${token.value}>`;
  const chars = Array.from(token.value);
  if (chars.length > 10) return `${goQuote(chars.slice(0, 10).join(''))}...`;
  return goQuote(token.value);
}

const SIMPLE_ESCAPES: Record<string, string> = {
  a: '\x07',
  b: '\b',
  f: '\f',
  n: '\n',
  r: '\r',
  t: '\t',
  v: '\v',
  '\\': '\\',
  "'": "'",
  '"': '"',
};

const HEX_ESCAPE_DIGITS: Record<string, number> = { x: 2, u: 4, U: 8 };

/** Go's strconv.Unquote for "…" and '…' literals; null on invalid syntax. */
function unquote(literal: string): string | null {
  const body = literal.slice(1, -1);
  let out = '';
  for (let i = 0; i < body.length; i++) {
    const ch = body[i] ?? '';
    if (ch !== '\\') {
      out += ch;
      continue;
    }
    const kind = body[++i] ?? '';
    const simple = SIMPLE_ESCAPES[kind];
    if (simple !== undefined) {
      out += simple;
      continue;
    }
    const digits = HEX_ESCAPE_DIGITS[kind];
    if (digits !== undefined) {
      const hex = body.slice(i + 1, i + 1 + digits);
      if (!/^[0-9a-fA-F]+$/.test(hex) || hex.length !== digits) return null;
      const code = Number.parseInt(hex, 16);
      if (code > 0x10ffff) return null;
      out += String.fromCodePoint(code);
      i += digits;
      continue;
    }
    const octal = body.slice(i, i + 3);
    if (!/^[0-7]{3}$/.test(octal)) return null;
    out += String.fromCharCode(Number.parseInt(octal, 8));
    i += 2;
  }
  return out;
}

function parseNumber(token: Token): number | null {
  if (token.type === 'charConstant') {
    const text = unquote(token.value);
    const chars = text === null ? [] : Array.from(text);
    return chars.length === 1 ? (chars[0]?.codePointAt(0) ?? null) : null;
  }
  const text = token.value.replace(/_/g, '');
  if (text.endsWith('i')) return null;
  const sign = text.startsWith('-') ? -1 : 1;
  const unsigned = text.replace(/^[+-]/, '');
  let value: number;
  if (/^0[xX][0-9a-fA-F]+$/.test(unsigned)) value = Number.parseInt(unsigned.slice(2), 16);
  else if (/^0[oO]?[0-7]+$/.test(unsigned)) value = Number.parseInt(unsigned.replace(/^0[oO]?/, ''), 8);
  else if (/^0[bB][01]+$/.test(unsigned)) value = Number.parseInt(unsigned.slice(2), 2);
  else if (/^(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$/.test(unsigned)) value = Number(unsigned);
  else return null;
  return sign * value;
}

class Parser {
  private index = 0;
  private last: Token;
  /** Variables in scope, innermost last. */
  private vars: string[] = ['$'];
  private rangeDepth = 0;

  constructor(
    private readonly tokens: readonly Token[],
    private readonly functions: ReadonlySet<string>,
  ) {
    this.last = this.tokenAt(0);
  }

  parse(): Node[] {
    const root: Node[] = [];
    while (this.peek().type !== 'eof') {
      const node = this.textOrAction();
      if (node.kind === 'end' || node.kind === 'else') this.fail(`unexpected {{${node.kind}}}`);
      root.push(node);
    }
    return root;
  }

  private tokenAt(index: number): Token {
    const token = this.tokens[Math.min(index, this.tokens.length - 1)];
    if (token === undefined) throw new Error('template: empty token stream');
    return token;
  }

  private next(): Token {
    this.last = this.tokenAt(this.index++);
    return this.last;
  }

  private backup(): void {
    this.index--;
  }

  private peek(): Token {
    return this.tokenAt(this.index);
  }

  private nextNonSpace(): Token {
    let token = this.next();
    while (token.type === 'space') token = this.next();
    return token;
  }

  private peekNonSpace(): Token {
    while (this.peek().type === 'space') this.next();
    return this.peek();
  }

  private fail(message: string): never {
    throw new ParseFailure(message, this.last.pos);
  }

  private unexpected(token: Token, context: string): never {
    if (token.type === 'error') this.fail(token.value);
    this.fail(`unexpected ${describeToken(token)} in ${context}`);
  }

  private expect(type: TokenType, context: string): Token {
    const token = this.nextNonSpace();
    if (token.type !== type) this.unexpected(token, context);
    return token;
  }

  private textOrAction(): Node | Delimiter {
    const token = this.nextNonSpace();
    if (token.type === 'text') return { kind: 'text', text: token.value };
    if (token.type === 'leftDelim') return this.action();
    this.unexpected(token, 'input');
  }

  private itemList(): [Node[], Delimiter] {
    const list: Node[] = [];
    while (this.peekNonSpace().type !== 'eof') {
      const node = this.textOrAction();
      if (node.kind === 'end' || node.kind === 'else') return [list, node];
      list.push(node);
    }
    this.fail('unexpected EOF');
  }

  private action(): Node | Delimiter {
    const token = this.nextNonSpace();
    if (token.type === 'keyword') {
      switch (token.value) {
        case 'break':
        case 'continue': {
          const next = this.nextNonSpace();
          if (next.type !== 'rightDelim') this.unexpected(next, `{{${token.value}}}`);
          if (this.rangeDepth === 0) this.fail(`{{${token.value}}} outside {{range}}`);
          return { kind: token.value, pos: token.pos, text: `{{${token.value}}}` };
        }
        case 'else': {
          // "{{else if …" and "{{else with …" leave the keyword for parseControl.
          const peek = this.peekNonSpace();
          if (peek.type !== 'keyword' || (peek.value !== 'if' && peek.value !== 'with')) this.expect('rightDelim', 'else');
          return { kind: 'else' };
        }
        case 'end':
          this.expect('rightDelim', 'end');
          return { kind: 'end' };
        case 'if':
        case 'with':
        case 'range':
          return this.control(token.value);
        default:
          this.fail(`{{${token.value}}} is not supported`);
      }
    }
    this.backup();
    return { kind: 'action', pipe: this.pipeline('command', 'rightDelim') };
  }

  private control(context: 'if' | 'with' | 'range'): Node {
    const scope = this.vars.length;
    const pipe = this.pipeline(context, 'rightDelim');
    if (context === 'range') this.rangeDepth++;
    const [list, next] = this.itemList();
    if (context === 'range') this.rangeDepth--;
    let elseList: Node[] | null = null;
    if (next.kind === 'else') {
      const peek = this.peek();
      if (context !== 'range' && peek.type === 'keyword' && peek.value === context) {
        // {{if a}}…{{else if b}}…{{end}} is {{if a}}…{{else}}{{if b}}…{{end}}{{end}}.
        this.next();
        elseList = [this.control(context)];
      } else {
        const [list2, end] = this.itemList();
        if (end.kind !== 'end') this.fail(`expected end; found {{${end.kind}}}`);
        elseList = list2;
      }
    }
    this.vars.length = scope;
    return { kind: context, pipe, list, elseList };
  }

  private pipeline(context: string, end: 'rightDelim' | 'rightParen'): Pipe {
    const pos = this.peekNonSpace().pos;
    const decl: string[] = [];
    let isAssign = false;
    for (;;) {
      const variable = this.peekNonSpace();
      if (variable.type !== 'variable') break;
      const before = this.index;
      this.next();
      const after = this.peekNonSpace();
      if (after.type === 'assign' || after.type === 'declare') {
        this.next();
        isAssign = after.type === 'assign';
        decl.push(variable.value);
        this.vars.push(variable.value);
        break;
      }
      if (after.type === 'char' && after.value === ',') {
        this.next();
        decl.push(variable.value);
        this.vars.push(variable.value);
        if (context === 'range' && decl.length < 2) {
          const following = this.peekNonSpace().type;
          if (following === 'variable' || following === 'rightDelim' || following === 'rightParen') continue;
          this.fail('range can only initialize variables');
        }
        this.fail(`too many declarations in ${context}`);
      }
      this.index = before;
      break;
    }
    const cmds: Command[] = [];
    for (;;) {
      const token = this.nextNonSpace();
      if (token.type === end) break;
      switch (token.type) {
        case 'bool':
        case 'charConstant':
        case 'dot':
        case 'field':
        case 'identifier':
        case 'number':
        case 'nil':
        case 'rawString':
        case 'string':
        case 'variable':
        case 'leftParen':
          this.backup();
          cmds.push(this.command());
          break;
        default:
          this.unexpected(token, context);
      }
    }
    if (cmds.length === 0) this.fail(`missing value for ${context}`);
    cmds.slice(1).forEach((cmd, i) => {
      const first = cmd.args[0];
      if (first !== undefined && ['literal', 'dot', 'nil'].includes(first.kind)) {
        this.fail(`non executable command in pipeline stage ${i + 2}`);
      }
    });
    const declText = decl.length > 0 ? `${decl.join(', ')} ${isAssign ? '=' : ':='} ` : '';
    return { pos, text: declText + cmds.map((cmd) => cmd.text).join(' | '), decl, isAssign, cmds };
  }

  private command(): Command {
    const pos = this.peekNonSpace().pos;
    const args: Arg[] = [];
    for (;;) {
      this.peekNonSpace();
      const operand = this.operand();
      if (operand !== null) args.push(operand);
      const token = this.next();
      if (token.type === 'space') continue;
      if (token.type === 'rightDelim' || token.type === 'rightParen') this.backup();
      else if (token.type !== 'pipe') this.unexpected(token, 'operand');
      break;
    }
    if (args.length === 0) this.fail('empty command');
    return { pos, text: args.map((arg) => arg.text).join(' '), args };
  }

  private operand(): Arg | null {
    const node = this.term();
    if (node === null || this.peek().type !== 'field') return node;
    // Go places a chain at its first trailing field.
    const pos = this.peek().pos;
    const idents: string[] = [];
    while (this.peek().type === 'field') idents.push(this.next().value.slice(1));
    const suffix = idents.map((ident) => `.${ident}`).join('');
    switch (node.kind) {
      case 'field':
        return { kind: 'field', pos, text: node.text + suffix, idents: [...node.idents, ...idents] };
      case 'variable':
        return { kind: 'variable', pos, text: node.text + suffix, name: node.name, idents: [...node.idents, ...idents] };
      case 'literal':
      case 'nil':
      case 'dot':
        this.fail(`unexpected . after term ${goQuote(node.text)}`);
      default:
        return { kind: 'chain', pos, text: node.text + suffix, node, idents };
    }
  }

  private term(): Arg | null {
    const token = this.nextNonSpace();
    const { pos, value: text } = token;
    switch (token.type) {
      case 'identifier':
        if (!this.functions.has(text)) this.fail(`function ${goQuote(text)} not defined`);
        return { kind: 'identifier', pos, text, name: text };
      case 'dot':
        return { kind: 'dot', pos, text };
      case 'nil':
        return { kind: 'nil', pos, text };
      case 'variable':
        if (!this.vars.includes(text)) this.fail(`undefined variable ${goQuote(text)}`);
        return { kind: 'variable', pos, text, name: text, idents: [] };
      case 'field':
        return { kind: 'field', pos, text, idents: [text.slice(1)] };
      case 'bool':
        return { kind: 'literal', pos, text, value: text === 'true' };
      case 'number':
      case 'charConstant': {
        const value = parseNumber(token);
        if (value === null) this.fail(`illegal number syntax: ${goQuote(text)}`);
        return { kind: 'literal', pos, text, value };
      }
      case 'leftParen': {
        const pipe = this.pipeline('parenthesized pipeline', 'rightParen');
        return { kind: 'pipe', pos, text: `(${pipe.text})`, pipe };
      }
      case 'string': {
        const value = unquote(text);
        if (value === null) this.fail('invalid syntax');
        return { kind: 'literal', pos, text, value };
      }
      case 'rawString':
        return { kind: 'literal', pos, text, value: text.slice(1, -1).replace(/\r/g, '') };
      default:
        this.backup();
        return null;
    }
  }
}

function lineOf(source: string, pos: number): number {
  let line = 1;
  for (let i = source.indexOf('\n'); i >= 0 && i < pos; i = source.indexOf('\n', i + 1)) line++;
  return line;
}

function parse(source: string, functions: ReadonlySet<string>): Node[] {
  try {
    return new Parser(lex(source), functions).parse();
  } catch (err) {
    if (!(err instanceof ParseFailure)) throw err;
    throw new InvalidArgument(`template parsing error: template: :${lineOf(source, err.pos)}: ${err.message}`);
  }
}

// ---------------------------------------------------------------------------
// Values: Go's notion of type names, truth, %v printing and JSON

function isStruct(value: unknown): value is object {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Map);
}

/** A Go-like name for a value's type, for error messages. */
function typeName(value: unknown): string {
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
function isTrue(value: unknown): boolean {
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

function sortedEntries(map: Map<unknown, unknown>): [unknown, unknown][] {
  return [...map.entries()].sort(([a], [b]) => compareKeys(a, b));
}

/** Own enumerable data properties: what Go would show of a struct. */
function structFields(value: object): [string, unknown][] {
  return Object.entries(value).filter(([, field]) => typeof field !== 'function');
}

/** Go's %e layout: mantissa, then e±dd. */
function goExponent(value: number, precision?: number): string {
  const [mantissa = '', exponent = '0'] = value.toExponential(precision).split('e');
  const exp = Number(exponent);
  return `${mantissa}e${exp < 0 ? '-' : '+'}${String(Math.abs(exp)).padStart(2, '0')}`;
}

/** A number as Go's %v prints an int (integral values) or a float64 (%g, shortest). */
function formatNumber(value: number): string {
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
function formatValue(value: unknown): string {
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

class UnsupportedJson extends Error {}

/** Go's encoding/json with HTML escaping off, as docker's `json` function. */
function toJson(value: unknown): string {
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

// ---------------------------------------------------------------------------
// Functions

/** An argument that does not fit the parameter: Go rejects it before the call. */
class WrongType extends Error {}

type ParamKind = 'any' | 'string' | 'int' | 'strings';

interface TemplateFunction {
  readonly params: readonly ParamKind[];
  /** Kind of any further arguments; absent when the function takes exactly `params`. */
  readonly variadic?: ParamKind;
  readonly call: (...args: never[]) => unknown;
}

type FunctionTable = ReadonlyMap<string, TemplateFunction>;

const fn = (
  params: ParamKind[],
  call: (...args: never[]) => unknown,
  variadic?: ParamKind,
): TemplateFunction => (variadic === undefined ? { params, call } : { params, call, variadic });

function convertArg(kind: ParamKind, value: unknown): unknown {
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

const BASIC_FUNCTIONS: FunctionTable = new Map<string, TemplateFunction>([
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
const HEADER_FUNCTIONS: FunctionTable = new Map([
  ...BASIC_FUNCTIONS,
  ['json', fn(['string'], (text: string) => text)],
  ['split', fn(['string', 'string'], (text: string) => text)],
  ['join', fn(['string', 'string'], (text: string) => text)],
  ['title', fn(['string'], (text: string) => text)],
  ['lower', fn(['string'], (text: string) => text)],
  ['upper', fn(['string'], (text: string) => text)],
  ['truncate', fn(['string', 'int'], (text: string) => text)],
]);

const FUNCTION_NAMES: ReadonlySet<string> = new Set(BASIC_FUNCTIONS.keys());

// ---------------------------------------------------------------------------
// Execution (after Go's text/template/exec.go)

/** No final value was piped into a command. */
const MISSING = Symbol('missing');
type Final = unknown;

class BreakSignal {}
class ContinueSignal {}
const BREAK = new BreakSignal();
const CONTINUE = new ContinueSignal();

class ExecFailure extends Error {
  constructor(
    readonly node: Located,
    message: string,
  ) {
    super(message);
  }
}

class Execution {
  output = '';
  private readonly vars: { name: string; value: unknown }[];

  constructor(
    private readonly functions: FunctionTable,
    data: unknown,
  ) {
    this.vars = [{ name: '$', value: data }];
  }

  walkList(dot: unknown, list: readonly Node[]): void {
    for (const node of list) this.walk(dot, node);
  }

  private walk(dot: unknown, node: Node): void {
    switch (node.kind) {
      case 'text':
        this.output += node.text;
        return;
      case 'action': {
        const value = this.evalPipeline(dot, node.pipe);
        if (node.pipe.decl.length === 0) this.print(node.pipe, value);
        return;
      }
      case 'if':
      case 'with': {
        const mark = this.vars.length;
        const value = this.evalPipeline(dot, node.pipe);
        if (isTrue(value)) this.walkList(node.kind === 'with' ? value : dot, node.list);
        else if (node.elseList !== null) this.walkList(dot, node.elseList);
        this.vars.length = mark;
        return;
      }
      case 'range':
        this.walkRange(dot, node.pipe, node.list, node.elseList);
        return;
      case 'break':
        throw BREAK;
      case 'continue':
        throw CONTINUE;
    }
  }

  private walkRange(dot: unknown, pipe: Pipe, list: readonly Node[], elseList: readonly Node[] | null): void {
    const mark = this.vars.length;
    const value = this.evalPipeline(dot, pipe);
    let entries: [unknown, unknown][];
    if (Array.isArray(value)) entries = value.map((item, i) => [i, item]);
    else if (value instanceof Map) entries = sortedEntries(value);
    else if (typeof value === 'number' && Number.isInteger(value)) {
      if (pipe.decl.length > 1) throw new ExecFailure(pipe, `can't use ${value} to iterate over more than one variable`);
      entries = Array.from({ length: Math.max(0, value) }, (_, i) => [i, i]);
    } else if (value === null || value === undefined) entries = [];
    else throw new ExecFailure(pipe, `range can't iterate over ${formatValue(value)}`);

    for (const [key, item] of entries) {
      if (pipe.decl.length > 0) {
        const [first, second] = pipe.decl;
        if (pipe.isAssign) {
          if (second === undefined) this.setVar(pipe, first ?? '', item);
          else {
            this.setVar(pipe, first ?? '', key);
            this.setVar(pipe, second, item);
          }
        } else {
          // Declared variables sit on top of the stack: the element last, the key below it.
          this.setTopVar(1, item);
          if (second !== undefined) this.setTopVar(2, key);
        }
      }
      const iterationMark = this.vars.length;
      try {
        this.walkList(item, list);
      } catch (signal) {
        if (signal === BREAK) break;
        if (signal !== CONTINUE) throw signal;
      } finally {
        this.vars.length = iterationMark;
      }
    }
    if (entries.length === 0 && elseList !== null) this.walkList(dot, elseList);
    this.vars.length = mark;
  }

  private print(node: Located, value: unknown): void {
    if (value === undefined) {
      this.output += '<no value>';
      return;
    }
    if (typeof value === 'function') throw new ExecFailure(node, `can't print ${node.text} of type func`);
    this.output += formatValue(value);
  }

  private setVar(node: Located, name: string, value: unknown): void {
    for (let i = this.vars.length - 1; i >= 0; i--) {
      const variable = this.vars[i];
      if (variable?.name === name) {
        variable.value = value;
        return;
      }
    }
    throw new ExecFailure(node, `undefined variable: ${name}`);
  }

  private setTopVar(depth: number, value: unknown): void {
    const variable = this.vars[this.vars.length - depth];
    if (variable !== undefined) variable.value = value;
  }

  private varValue(node: Located, name: string): unknown {
    for (let i = this.vars.length - 1; i >= 0; i--) {
      const variable = this.vars[i];
      if (variable?.name === name) return variable.value;
    }
    throw new ExecFailure(node, `undefined variable: ${name}`);
  }

  private evalPipeline(dot: unknown, pipe: Pipe): unknown {
    let value: Final = MISSING;
    for (const cmd of pipe.cmds) value = this.evalCommand(dot, cmd, value);
    for (const name of pipe.decl) {
      if (pipe.isAssign) this.setVar(pipe, name, value);
      else this.vars.push({ name, value });
    }
    return value;
  }

  private notAFunction(args: readonly Arg[], final: Final): void {
    const first = args[0];
    if (first !== undefined && (args.length > 1 || final !== MISSING)) {
      throw new ExecFailure(first, `can't give argument to non-function ${first.text}`);
    }
  }

  private evalCommand(dot: unknown, cmd: Command, final: Final): unknown {
    const first = cmd.args[0];
    if (first === undefined) throw new ExecFailure(cmd, 'empty command');
    switch (first.kind) {
      case 'field':
        return this.evalFieldChain(dot, dot, first, first.idents, cmd.args, final);
      case 'chain':
        return this.evalFieldChain(dot, this.evalArg(dot, first.node), first, first.idents, cmd.args, final);
      case 'variable': {
        const value = this.varValue(first, first.name);
        if (first.idents.length === 0) {
          this.notAFunction(cmd.args, final);
          return value;
        }
        return this.evalFieldChain(dot, value, first, first.idents, cmd.args, final);
      }
      case 'identifier':
        return this.evalFunction(dot, first.name, cmd, cmd.args, final);
      case 'pipe':
        this.notAFunction(cmd.args, final);
        return this.evalPipeline(dot, first.pipe);
      case 'nil':
        this.notAFunction(cmd.args, final);
        throw new ExecFailure(first, 'nil is not a command');
      case 'dot':
        this.notAFunction(cmd.args, final);
        return dot;
      case 'literal':
        this.notAFunction(cmd.args, final);
        return first.value;
    }
  }

  private evalArg(dot: unknown, arg: Arg): unknown {
    switch (arg.kind) {
      case 'dot':
        return dot;
      case 'nil':
        return null;
      case 'literal':
        return arg.value;
      case 'field':
        return this.evalFieldChain(dot, dot, arg, arg.idents, [arg], MISSING);
      case 'chain':
        return this.evalFieldChain(dot, this.evalArg(dot, arg.node), arg, arg.idents, [arg], MISSING);
      case 'variable': {
        const value = this.varValue(arg, arg.name);
        return arg.idents.length === 0 ? value : this.evalFieldChain(dot, value, arg, arg.idents, [arg], MISSING);
      }
      case 'identifier':
        return this.evalFunction(dot, arg.name, arg, [arg], MISSING);
      case 'pipe':
        return this.evalPipeline(dot, arg.pipe);
    }
  }

  private evalFieldChain(
    dot: unknown,
    receiver: unknown,
    node: Located,
    idents: readonly string[],
    args: readonly Arg[],
    final: Final,
  ): unknown {
    let current = receiver;
    idents.forEach((name, i) => {
      const last = i === idents.length - 1;
      current = last ? this.evalField(dot, name, node, args, final, current) : this.evalField(dot, name, node, [], MISSING, current);
    });
    return current;
  }

  private evalField(dot: unknown, name: string, node: Located, args: readonly Arg[], final: Final, receiver: unknown): unknown {
    // An invalid receiver (a missing map key further up) yields no value, as in Go.
    if (receiver === undefined) return undefined;
    if (receiver === null) throw new ExecFailure(node, `nil pointer evaluating interface {}.${name}`);
    const hasArgs = args.length > 1 || final !== MISSING;
    if (receiver instanceof Map) {
      if (hasArgs) throw new ExecFailure(node, `${name} is not a method but has arguments`);
      return receiver.get(name);
    }
    if (isStruct(receiver) && hasField(receiver, name)) {
      const field: unknown = (receiver as Record<string, unknown>)[name];
      if (typeof field === 'function') {
        return this.callMethod(dot, receiver, field as (...values: unknown[]) => unknown, name, node, args, final);
      }
      if (hasArgs) throw new ExecFailure(node, `${name} has arguments but cannot be invoked as function`);
      return field;
    }
    throw new ExecFailure(node, `can't evaluate field ${name} in type ${typeName(receiver)}`);
  }

  private callMethod(
    dot: unknown,
    receiver: object,
    method: (...args: unknown[]) => unknown,
    name: string,
    node: Located,
    args: readonly Arg[],
    final: Final,
  ): unknown {
    const argv = args.slice(1).map((arg) => this.evalArg(dot, arg));
    if (final !== MISSING) argv.push(final);
    if (argv.length < method.length) {
      throw new ExecFailure(node, `wrong number of args for ${name}: want ${method.length} got ${argv.length}`);
    }
    try {
      return method.apply(receiver, argv);
    } catch (err) {
      throw new ExecFailure(node, `error calling ${name}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }

  private evalFunction(dot: unknown, name: string, node: Located, args: readonly Arg[], final: Final): unknown {
    const func = this.functions.get(name);
    if (func === undefined) throw new ExecFailure(node, `${goQuote(name)} is not a defined function`);
    const operands = args.slice(1);
    const count = operands.length + (final === MISSING ? 0 : 1);
    const fixed = func.params.length;
    if (func.variadic === undefined ? count !== fixed : count < fixed) {
      const want = func.variadic === undefined ? `${fixed}` : `at least ${fixed}`;
      throw new ExecFailure(node, `wrong number of args for ${name}: want ${want} got ${count}`);
    }
    const kindAt = (i: number): ParamKind => func.params[i] ?? func.variadic ?? 'any';
    const convert = (i: number, value: unknown, at: Located): unknown => {
      try {
        return convertArg(kindAt(i), value);
      } catch (err) {
        if (err instanceof WrongType) throw new ExecFailure(at, err.message);
        throw err;
      }
    };
    if (name === 'and' || name === 'or') {
      // Short-circuit: stop at the first argument that decides the result.
      let value: unknown;
      for (const [i, arg] of operands.entries()) {
        value = convert(i, this.evalArg(dot, arg), arg);
        if (isTrue(value) === (name === 'or')) return value;
      }
      return final === MISSING ? value : final;
    }
    const argv = operands.map((arg, i) => convert(i, this.evalArg(dot, arg), arg));
    if (final !== MISSING) argv.push(convert(operands.length, final, node));
    try {
      return (func.call as (...values: unknown[]) => unknown)(...argv);
    } catch (err) {
      throw new ExecFailure(node, `error calling ${name}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
}

/** A field of a struct: own or inherited from a class, never from Object.prototype. */
function hasField(value: object, name: string): boolean {
  for (let proto: object | null = value; proto !== null && proto !== Object.prototype; proto = Object.getPrototypeOf(proto)) {
    if (Object.prototype.hasOwnProperty.call(proto, name)) return true;
  }
  return false;
}

interface Rendered {
  readonly output: string;
  /** Set when execution stopped early; `output` holds what was written before. */
  readonly error?: InvalidArgument;
}

function render(source: string, root: readonly Node[], data: unknown, functions: FunctionTable): Rendered {
  const execution = new Execution(functions, data);
  try {
    execution.walkList(data, root);
    return { output: execution.output };
  } catch (err) {
    if (!(err instanceof ExecFailure)) throw err;
    const { pos, text } = err.node;
    const lineStart = source.lastIndexOf('\n', pos - 1) + 1;
    const where = `${lineOf(source, pos)}:${pos - lineStart}`;
    const error = new InvalidArgument(`template: :${where}: executing "" at <${text}>: ${err.message}`);
    return { output: execution.output, error };
  }
}

// ---------------------------------------------------------------------------
// Public API

/** A parsed template; see the module comment for how data is interpreted. */
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
